"""The Dask backend against the NumPy reference and the in-memory Numba path.

Tolerances: the half-steps, losses and aggregator terms of :class:`DaskEngine`
match the reference to 1e-10 relative in float64 (1e-4 in float32, on the same
float32 inputs). A whole fit matches the in-memory Numba fit, and fits with
different chunkings match each other, to 1e-10 relative in float64 (1e-3 in
float32 after 4 iterations): the only difference is the order in which partial
sums over chunks are added (observed ~1e-13 in float64).
"""

import functools

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from cfe_fast import CFEnsembleClassifier, SingularSystemError, make_ensemble  # noqa: E402
from cfe_fast.backends.dask import data as dk_data  # noqa: E402
from cfe_fast.backends.dask.engine import DaskEngine  # noqa: E402
from cfe_fast.core.confidence import confidence_chunk  # noqa: E402
from cfe_fast import reference as ref  # noqa: E402
from cfe_fast.training.state import initial_instance_factors  # noqa: E402
from conftest import random_problem, rel_error  # noqa: E402

TOL = {np.float64: 1e-10, np.float32: 1e-4}
FIT_TOL = {np.float64: 1e-10, np.float32: 1e-3}  # float32 rounding grows over the iterations of a fit
FIT = dict(latent_dim=4, max_iter=4, tol=0.0, random_state=3)


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", memory_limit="2GB"
    ) as cluster, distributed.Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def data():
    ens = make_ensemble(n_classifiers=9, n_instances=1500, labeled_fraction=0.4, random_state=5)
    return np.ascontiguousarray(ens.P), ens.labels


@pytest.fixture(scope="module")
def numba_fit(data):
    return CFEnsembleClassifier(**FIT).fit(*data)


def _labels(n, seed, fraction=0.3):
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(float)
    labels[rng.random(n) > fraction] = np.nan
    return labels


def _assert_fit_matches(model, expected, tol=FIT_TOL[np.float64]):
    Y, p = (np.asarray(a) for a in (model.instance_factors_, model.transductive_proba_))
    assert rel_error(Y, expected.instance_factors_) < tol
    assert rel_error(model.classifier_factors_, expected.classifier_factors_) < tol
    assert rel_error(p, expected.transductive_proba_) < tol
    assert rel_error(model.coef_, expected.coef_) < tol
    assert rel_error(model.history_["loss"], expected.history_["loss"]) < tol


# ------------------------------------------------------------------ engine
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("rows,m,d", [((40,), 6, 3), ((1, 17, 40, 22), 6, 3), ((25, 25, 30), 2, 5), ((13, 50), 12, 12)])
@pytest.mark.parametrize("stored_confidence", [True, False])
def test_engine_steps_match_reference(client, dtype, rows, m, d, stored_confidence):
    n = sum(rows)
    X0, _, R, C = random_problem(m, n, d, seed=n + m, dtype=dtype, zero_conf=0.2, extremes=0.1)
    labels = _labels(n, seed=m)
    labels[:3] = [1.0, 0.0, 1.0]  # at least one labeled instance of each class
    lam = 0.3
    P = da.from_array(R.T, chunks=(rows, m))
    if stored_confidence:
        confidence = da.from_array(C.T, chunks=(rows, m))
    else:
        confidence = functools.partial(confidence_chunk, strategy="label_aware", alpha=0.7)
        C = ref.confidence(R.astype(np.float64), labels, "label_aware", 0.7).astype(dtype)
    y = labels[~np.isnan(labels)]
    omega = ref.class_weights(y)
    engine = DaskEngine(client, P, labels, omega, lam, confidence)
    np.testing.assert_array_equal(engine.C.compute(), C)

    rng = np.random.default_rng(0)
    draw = functools.partial(initial_instance_factors, d=d, dtype=dtype)
    engine.init_instance_factors(rng, draw)
    Y0 = draw(np.random.default_rng(0), n).T
    X = engine.classifier_step()
    assert X.dtype == dtype and X.shape == (d, m)
    assert rel_error(X, ref.update_classifier_factors(Y0, R, C, lam)) < TOL[dtype]

    engine.instance_step(X0)
    Y = engine.instance_factors()
    assert isinstance(Y, da.Array) and Y.shape == (d, n) and Y.dtype == dtype
    Y = Y.compute()
    assert rel_error(Y, ref.update_instance_factors(X0, R, C, lam)) < TOL[dtype]
    assert rel_error(engine.reconstruction_loss(), ref.reconstruction_loss(X0, Y, R, C, lam)) < TOL[dtype]
    np.testing.assert_array_equal(engine.labeled_factors(), Y[:, ~np.isnan(labels)])
    w, b = np.linspace(-1.0, 2.0, m), 0.3
    for gamma, variant in [(0.0, "exact"), (2.0, "exact"), (2.0, "weighted_bce")]:
        got = engine.aggregator_terms(w, b, gamma, variant, hessian=True)
        want = ref.aggregator_terms(X0, Y[:, ~np.isnan(labels)], y, omega, w, b, gamma, variant, hessian=True)
        for field in ("loss", "grad_w", "grad_b", "hessian"):
            assert rel_error(getattr(got, field), getattr(want, field)) < TOL[dtype]
    assert rel_error(engine.classifier_step(), ref.update_classifier_factors(Y, R, C, lam)) < TOL[dtype]


def test_singular_chunk_system_names_its_chunk(client):
    _, _, R, C = random_problem(3, 30, 2, seed=1)
    C[:, 17] = 0.0
    P = da.from_array(R.T, chunks=(10, 3))
    engine = DaskEngine(client, P, np.full(30, np.nan), np.empty(0), 0.0, da.from_array(C.T, chunks=(10, 3)))
    with pytest.raises(SingularSystemError, match="instance 7 .*chunk of instances starting at 10"):
        engine.instance_step(np.random.default_rng(0).standard_normal((2, 3)))


def test_each_chunk_is_read_once_per_sweep(client, tmp_path):
    _, _, R, C = random_problem(5, 600, 2, seed=2)
    np.save(tmp_path / "P.npy", R.T)
    P = dk_data.from_npy(str(tmp_path / "P.npy"), chunk_rows=100)
    certainty = functools.partial(confidence_chunk, strategy="certainty")
    engine = DaskEngine(client, P, np.full(600, np.nan), np.empty(0), 0.1, certainty)
    with distributed.get_task_stream(client) as stream:
        engine.instance_step(np.ones((2, 5)))
    reads = [t for t in stream.data if "npy_rows" in str(t["key"])]
    assert len(reads) == 6


# --------------------------------------------------------------- estimator
@pytest.mark.parametrize("chunk_rows", [1500, 400, 150])
def test_fit_equals_in_memory_numba_for_any_chunking(client, data, numba_fit, chunk_rows):
    P, labels = data
    model = CFEnsembleClassifier(backend="dask", client=client, **FIT).fit(da.from_array(P, chunks=(chunk_rows, -1)), labels)
    assert isinstance(model.transductive_proba_, da.Array)
    _assert_fit_matches(model, numba_fit)


@pytest.mark.parametrize("confidence", ["calibration", "uniform", "user"])
def test_fit_confidence_strategies_match_numba(client, data, confidence):
    P, labels = data
    if confidence == "user":
        confidence = np.random.default_rng(0).uniform(0.1, 1.0, P.shape)
    expected = CFEnsembleClassifier(confidence=confidence, **FIT).fit(P, labels)
    model = CFEnsembleClassifier(backend="dask", client=client, confidence=confidence, **FIT)
    model.fit(da.from_array(P, chunks=(500, -1)), labels)
    _assert_fit_matches(model, expected)
    new = P[:300] * 0.9 + 0.05
    np.testing.assert_allclose(model.predict_proba(new), expected.predict_proba(new), rtol=1e-10, atol=1e-12)


def test_float32_fit_matches_numba_float32(client, data):
    P, labels = data
    kw = dict(FIT, dtype="float32")
    expected = CFEnsembleClassifier(**kw).fit(P, labels)
    model = CFEnsembleClassifier(backend="dask", client=client, **kw).fit(da.from_array(P, chunks=(300, -1)), labels)
    assert model.instance_factors_.dtype == np.float32
    _assert_fit_matches(model, expected, tol=FIT_TOL[np.float32])


def test_zarr_and_npy_inputs(client, data, numba_fit, tmp_path):
    zarr = pytest.importorskip("zarr")
    P, labels = data
    store = zarr.create_array(str(tmp_path / "P.zarr"), shape=P.shape, chunks=(256, P.shape[1]), dtype=P.dtype)
    store[:] = P
    np.save(tmp_path / "P.npy", P)
    for lazy in (da.from_zarr(str(tmp_path / "P.zarr")), dk_data.from_npy(str(tmp_path / "P.npy"), 333)):
        model = CFEnsembleClassifier(backend="dask", client=client, **FIT).fit(lazy, labels)
        _assert_fit_matches(model, numba_fit)


def test_chunked_fold_in_predictions(client, data, numba_fit):
    P, labels = data
    model = CFEnsembleClassifier(backend="dask", client=client, **FIT).fit(da.from_array(P, chunks=(700, -1)), labels)
    new = np.ascontiguousarray(P[::-1][:500])
    proba = model.predict_proba(da.from_array(new, chunks=(128, -1)))
    assert isinstance(proba, da.Array) and proba.shape == (500, 2)
    np.testing.assert_allclose(proba.compute(), numba_fit.predict_proba(new), rtol=1e-10, atol=1e-12)
    labels_pred = model.predict(da.from_array(new, chunks=(128, -1)))
    np.testing.assert_array_equal(labels_pred.compute(), numba_fit.predict(new))
    np.testing.assert_allclose(model.predict_proba(new), numba_fit.predict_proba(new), rtol=1e-10, atol=1e-12)


def test_numpy_input_without_client_starts_and_closes_a_cluster(data, numba_fit):
    P, labels = data
    model = CFEnsembleClassifier(backend="dask", **FIT).fit(P, labels)
    assert isinstance(model.instance_factors_, np.ndarray)
    assert isinstance(model.transductive_proba_, np.ndarray)
    _assert_fit_matches(model, numba_fit)


# -------------------------------------------------------- missing entries
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.99])
@pytest.mark.parametrize("stored_confidence", [True, False])
def test_engine_steps_with_missing_entries_match_reference(client, dtype, fraction, stored_confidence):
    """NaN in P: each chunk has confidence 0 and a neutral value there; the reference reads NaN as c = 0."""
    m, n, d, lam = 6, 90, 3, 0.3
    X0, _, R, C = random_problem(m, n, d, seed=7, dtype=dtype)
    R[np.random.default_rng(1).random(R.shape) < fraction] = np.nan
    labels = _labels(n, seed=2)
    P = da.from_array(R.T, chunks=((20, 40, 30), m))
    if stored_confidence:
        confidence = dk_data.check_confidence(da.from_array(np.where(np.isnan(R), np.inf, C).T, chunks=(30, m)), P,
                                              "confidence", has_missing=True)
    else:
        confidence = functools.partial(confidence_chunk, strategy="certainty")
        C = ref.certainty_confidence(R).astype(dtype)
    engine = DaskEngine(client, P, labels, ref.class_weights(labels[~np.isnan(labels)]), lam, confidence,
                        has_missing=True)
    np.testing.assert_array_equal(engine.C.compute(), np.where(np.isnan(R), 0, C))
    engine.instance_step(X0)
    Y = engine.instance_factors().compute()
    assert rel_error(Y, ref.update_instance_factors(X0, R, C, lam)) < TOL[dtype]
    assert rel_error(engine.classifier_step(), ref.update_classifier_factors(Y, R, C, lam)) < TOL[dtype]


def test_fit_with_missing_entries_equals_in_memory_numba(client, data):
    P, labels = data
    P = np.where(np.random.default_rng(3).random(P.shape) < 0.4, np.nan, P)
    for confidence in ("label_aware", "calibration"):
        expected = CFEnsembleClassifier(confidence=confidence, **FIT).fit(P, labels)
        model = CFEnsembleClassifier(backend="dask", client=client, confidence=confidence, **FIT)
        model.fit(da.from_array(P, chunks=(400, -1)), labels)
        _assert_fit_matches(model, expected)
    new = np.where(np.random.default_rng(4).random((300, P.shape[1])) < 0.5, np.nan, data[0][:300])
    np.testing.assert_allclose(model.predict_proba(da.from_array(new, chunks=(100, -1))).compute(),
                               expected.predict_proba(new), rtol=1e-10, atol=1e-12)
    held_out = model.held_out_average_precision_of_mean_, expected.held_out_average_precision_of_mean_
    assert held_out[0] == pytest.approx(held_out[1], rel=1e-12)


def test_dask_names_a_classifier_with_no_observed_entry(client, data):
    P, labels = data
    P = P.copy()
    P[:, 2] = np.nan
    with pytest.raises(ValueError, match="classifier column 2 of X has no observed entry"):
        CFEnsembleClassifier(backend="dask", client=client, **FIT).fit(da.from_array(P, chunks=(500, -1)), labels)


# -------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "mutate,error,match",
    [
        (lambda P: np.where(P > 0.9, np.inf, P), ValueError, "X contains NaN or infinite"),
        (lambda P: P * 1.5, ValueError, r"probabilities in \[0, 1\]"),
        (lambda P: P[:, 0], ValueError, "X must be 2-dimensional"),
        (lambda P: P.astype(complex), TypeError, "X must hold real numbers"),
        (lambda P: P[:0], ValueError, "X is empty"),
    ],
)
def test_bad_dask_input_is_refused(client, data, mutate, error, match):
    P, labels = data
    with pytest.raises(error, match=match):
        CFEnsembleClassifier(backend="dask", client=client, **FIT).fit(da.from_array(mutate(P)), labels)


def test_bad_confidence_and_client_are_refused(client, data):
    P, labels = data
    lazy = da.from_array(P, chunks=(500, -1))
    for C, match in [(-np.ones_like(P), "confidence must be non-negative"), (np.ones((5, 2)), "confidence has shape")]:
        with pytest.raises(ValueError, match=match):
            CFEnsembleClassifier(backend="dask", client=client, confidence=da.from_array(C), **FIT).fit(lazy, labels)
    C = np.ones_like(P)
    C[1234] = 0.0
    with pytest.raises(ValueError, match="instance 1234 has zero confidence"):
        CFEnsembleClassifier(backend="dask", client=client, confidence=C, **dict(FIT, lam=0.0)).fit(lazy, labels)
    with pytest.raises(TypeError, match="client must be a dask.distributed.Client"):
        CFEnsembleClassifier(backend="dask", client="tcp://nowhere", **FIT).fit(lazy, labels)


@pytest.mark.slow
def test_out_of_core_fit_with_memory_limited_workers(tmp_path):
    """R + C on disk (1.28 GB) exceed the two workers' memory (2 x 600 MB); the fit completes
    without losing a worker and equals the in-memory fit."""
    zarr = pytest.importorskip("zarr")
    n, m, rows = 4_000_000, 20, 50_000
    rng = np.random.default_rng(11)
    stores = [zarr.create_array(str(tmp_path / name), shape=(n, m), chunks=(rows, m), dtype="f8", compressors=None)
              for name in ("P.zarr", "C.zarr")]
    P = rng.random((n, m))
    stores[0][:] = P
    stores[1][:] = np.abs(P - 0.5)
    labels = np.where(rng.random(n) < 0.3, 1.0, 0.0)
    labels[rng.random(n) > 0.05] = np.nan
    kw = dict(latent_dim=4, max_iter=2, tol=0.0, random_state=0)
    expected = CFEnsembleClassifier(confidence=np.abs(P - 0.5), **kw).fit(P, labels)
    del P
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="600MB",
                                  dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
        workers = set(client.scheduler_info()["workers"])
        model = CFEnsembleClassifier(backend="dask", client=client, confidence=da.from_zarr(str(tmp_path / "C.zarr")), **kw)
        model.fit(da.from_zarr(str(tmp_path / "P.zarr")), labels)
        assert set(client.scheduler_info()["workers"]) == workers
        _assert_fit_matches(model, expected)


def test_client_none_uses_the_active_default_client(client, data, monkeypatch):
    """With a client active, client=None fits on it (as dask-ml and xgboost.dask do): no LocalCluster of its own."""
    from cfe_fast.backends.dask import data as dask_data

    def no_cluster(*args, **kwargs):
        raise AssertionError("started a LocalCluster although a client is active")

    monkeypatch.setattr(dask_data, "LocalCluster", no_cluster)
    assert distributed.default_client() is client
    model = CFEnsembleClassifier(backend="dask", **FIT).fit(*data)
    assert isinstance(model.transductive_proba_, np.ndarray)  # client=None: results come back as NumPy arrays
