"""Bounded float64 temporaries: the helpers of cfe_fast._float64 against plain NumPy, and the
memory a fit allocates (traced by tracemalloc, so the figure is exact and does not depend on
the machine) against the issue's bound of 1.5x the bytes of R, C and the factors."""

import tracemalloc

import numpy as np
import pytest

from cfe_fast import CFEnsembleClassifier, _float64, config
from cfe_fast.training.state import initial_instance_factors


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 3 columns of d = 5 (120 bytes): every helper crosses many block boundaries."""
    monkeypatch.setattr(config, "FLOAT64_BLOCK_BYTES", 120)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 3, 7, 200])
def test_float64_helpers_match_numpy(small_blocks, dtype, n):
    rng = np.random.default_rng(n)
    Yt = rng.standard_normal((n, 5)).astype(dtype)  # instance-major, as the kernels return it
    F = Yt.T
    v = rng.standard_normal(5)
    F64 = F.astype(np.float64)
    np.testing.assert_allclose(_float64.matvec64(v, F), v @ F64, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(_float64.gram64(F), F64 @ F64.T, rtol=1e-12, atol=1e-12)
    assert _float64.squared_norm(Yt) == pytest.approx(float(np.sum(F64**2)), rel=1e-12)
    assert _float64.matvec64(v, F).dtype == np.float64


def test_blocks_cover_the_range_once():
    ranges = list(_float64.blocks(10, config.FLOAT64_BLOCK_BYTES // 24))  # 3 items of that many float64 per block
    assert ranges == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert list(_float64.blocks(0, 4)) == []


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_initial_factors_drawn_in_blocks_equal_one_draw(small_blocks, dtype):
    Y = initial_instance_factors(np.random.default_rng(7), 11, 5, dtype)
    expected = (np.random.default_rng(7).standard_normal((11, 5)) / np.sqrt(5)).astype(dtype)
    assert Y.dtype == dtype
    np.testing.assert_array_equal(Y, expected)


def _fit_peak(monkeypatch, dtype, **params):
    """(traced peak bytes of a fit on data allocated before, P) at n = 200,000, m = 18, d = 9."""
    n, m, d = 200_000, 18, 9
    monkeypatch.setattr(config, "FLOAT64_BLOCK_BYTES", 256 * 1024)  # blocks of 4 MiB weigh on a small n
    rng = np.random.default_rng(0)
    P = rng.random((n, m)).astype(dtype)
    labels = np.where(rng.random(n) < 0.5, (rng.random(n) < 0.3).astype(float), np.nan)
    model = CFEnsembleClassifier(latent_dim=d, max_iter=3, tol=0.0, dtype=dtype, random_state=0, **params)
    model.fit(P[:300], labels[:300])  # JIT compile outside the traced window
    return _traced_peak(lambda: model.fit(P, labels)), P


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("solver", ["auto", "cg"])
def test_fit_allocates_at_most_half_the_data_on_top(monkeypatch, dtype, solver):
    """Peak traced allocations of a fit (R allocated before) <= 1.5 (R + C + factors) bytes.

    This caught a float64 copy of Y per step (the CG start, converted for the
    exact solvers too), float64 copies of float32 factors in the monitors, and
    an n x d float64 draw of the initial factors.
    """
    peak, P = _fit_peak(monkeypatch, dtype, solver=solver, confidence="certainty")
    (n, m), d = P.shape, 9
    data = 2 * P.nbytes + (n + m) * d * P.itemsize
    print(f"{dtype} {solver}: peak {(peak + P.nbytes) / data:.3f} x data")
    assert (peak + P.nbytes) / data <= 1.5


def _traced_peak(call):
    """Peak bytes that tracemalloc traces while ``call()`` runs (what existed before it is not counted)."""
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def fold_in_data():
    from cfe_fast import make_ensemble

    train = make_ensemble(n_classifiers=12, n_instances=400, random_state=0)
    return train, make_ensemble(n_classifiers=12, n_instances=301, random_state=1).P


@pytest.mark.parametrize("params", [
    {}, {"dtype": "float32"}, {"backend": "numpy"}, {"backend": "numpy", "dtype": "float32"},
    {"confidence": "certainty"}, {"confidence": "calibration"},
    {"confidence": "label_aware", "aggregator": "mean", "backend": "numpy"}, {"input_type": "scores"},
])
def test_predictions_in_small_blocks_match_those_in_one_block(monkeypatch, fold_in_data, params):
    """Blocks of 2 rows against one block: equal up to the order of floating-point sums.

    Every instance's system is solved on its own, but a kernel's GEMM over a
    run of instances (Numba) and the product v^T Y (NumPy's gemv) may add in
    another order for another number of columns: a few units in the last place.
    """
    train, P_new = fold_in_data
    model = CFEnsembleClassifier(latent_dim=4, max_iter=4, random_state=0, **params).fit(train.P, train.labels)
    monkeypatch.setattr(config, "FLOAT64_BLOCK_BYTES", 2**62)
    whole_proba, whole_factors = model.predict_proba(P_new), model.transform(P_new)
    monkeypatch.setattr(config, "FLOAT64_BLOCK_BYTES", 2 * 12 * 8)
    factors = model.transform(P_new)
    assert factors.dtype == whole_factors.dtype and factors.shape == whole_factors.shape
    eps = np.finfo(factors.dtype).eps
    np.testing.assert_allclose(factors, whole_factors, rtol=0, atol=16 * eps * np.abs(whole_factors).max())
    np.testing.assert_allclose(model.predict_proba(P_new), whole_proba, rtol=0, atol=16 * eps)


def test_a_singular_system_of_a_later_block_is_located(monkeypatch, fold_in_data):
    train, P_new = fold_in_data
    model = CFEnsembleClassifier(latent_dim=4, max_iter=2, lam=0.0, confidence="certainty",
                                 random_state=0).fit(train.P, train.labels)
    P_new = P_new.copy()
    P_new[7] = 0.5  # certainty 0 everywhere: with lam=0 its system is singular
    monkeypatch.setattr(config, "FLOAT64_BLOCK_BYTES", 5 * 12 * 8)
    with pytest.raises(ValueError, match="instance 2 .* block of new instances starting at row 5"):
        model.predict_proba(P_new)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_predict_proba_allocates_a_quarter_of_the_input_at_most(monkeypatch, dtype):
    """Peak traced allocations of predict_proba on new float64 rows <= 0.25 x their bytes.

    Folded in one block (the confidence, Y and, for a float32 model, a float32
    copy of the rows, whole) it takes more than the input itself.
    """
    from cfe_fast import make_ensemble

    train = make_ensemble(n_classifiers=50, n_instances=2_000, random_state=0)
    model = CFEnsembleClassifier(latent_dim=10, max_iter=3, dtype=dtype, random_state=0).fit(train.P, train.labels)
    P = np.random.default_rng(1).random((100_000, 50))
    model.predict_proba(P[:10])  # JIT compile outside the traced window
    monkeypatch.setattr(config, "FLOAT64_BLOCK_BYTES", 512 * 1024)  # blocks of 4 MiB weigh on a small n
    peak = _traced_peak(lambda: model.predict_proba(P))
    print(f"{dtype}: peak {peak / P.nbytes:.3f} x input")
    assert peak / P.nbytes <= 0.25


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("confidence", ["label_aware", "uniform"])
def test_fit_with_a_named_strategy_stores_no_confidence(monkeypatch, dtype, confidence):
    """With C computed per chunk from R (the Numba backend's ConfidenceRule), or no C at all (uniform: one
    shared Gram), the traced peak of a fit is R and temporaries independent of n: 0.62 (float64) and 0.75
    (float32) x (R + C + factors) here for label_aware, where R and a stored C alone would be 0.96."""
    n, m, d = 100_000, 100, 9
    monkeypatch.setattr(config, "FLOAT64_BLOCK_BYTES", 256 * 1024)
    rng = np.random.default_rng(0)
    P = rng.random((n, m)).astype(dtype)
    labels = np.where(rng.random(n) < 0.5, (rng.random(n) < 0.3).astype(float), np.nan)
    model = CFEnsembleClassifier(latent_dim=d, max_iter=2, tol=0.0, dtype=dtype, confidence=confidence,
                                 random_state=0)
    model.fit(P[:300], labels[:300])  # JIT compile outside the traced window
    peak = _traced_peak(lambda: model.fit(P, labels))
    data = 2 * P.nbytes + (n + m) * d * P.itemsize
    print(f"{dtype} {confidence}: peak {(peak + P.nbytes) / data:.3f} x data")
    assert (peak + P.nbytes) / data <= 0.85
