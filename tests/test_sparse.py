"""Sparse P (scipy.sparse: stored entries = observed) against the NumPy reference on the dense P with NaN
at the unstored entries.

The sparse kernels (:mod:`cfe_fast.backends.numba.sparse_steps`) and fits
must give what the reference gives on that dense equivalent, for 0 % to
99 % of the entries unstored. Tolerances: relative error <= 1e-10 in
float64 and <= 1e-4 in float32 for the kernels (as in tests/test_missing.py);
for whole fits (several iterations, the aggregator's Newton fit on top)
1e-8 in float64 and 2e-3 in float32.
"""


import numba
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import expit

from cfe_fast import CFEnsembleClassifier, config, make_ensemble
from cfe_fast import reference as ref
from cfe_fast.backends.numba import sparse_steps
from cfe_fast.backends.numba.losses import normalised_loss
from cfe_fast.backends.numba.sparse import layouts
from cfe_fast.backends.numba.sparse_objective import sparse_labeled_solves, sparse_reconstruction_gradient
from cfe_fast.backends.numba.sparse_steps import (
    solve_sparse_classifiers,
    solve_sparse_instances,
    sparse_squared_residual,
)
from cfe_fast.core.sparse import check_sparse_probabilities, row_means
from conftest import random_problem, rel_error

TOL = {np.float64: 1e-10, np.float32: 1e-4}
FIT_TOL = {"float64": 1e-8, "float32": 2e-3}
MISSING = [0.0, 0.2, 0.5, 0.9, 0.99]
FIT = dict(latent_dim=3, max_iter=4, tol=0.0, random_state=0)


pytestmark = pytest.mark.filterwarnings("ignore")  # collapse and quality warnings of tiny fits


def sparse_and_dense(P, fraction, seed=0):
    """(CSR with a random ``fraction`` of P's entries unstored, the dense P with NaN there)."""
    keep = np.random.default_rng(seed).random(P.shape) >= fraction
    rows, cols = np.nonzero(keep)
    return sp.csr_array((P[keep], (rows, cols)), shape=P.shape), np.where(keep, P, np.nan)


@pytest.fixture
def ensemble():
    data = make_ensemble(n_classifiers=8, n_instances=240, labeled_fraction=0.5, random_state=2)
    return np.ascontiguousarray(data.P), data.labels


def _fit(P, labels, **params):
    return CFEnsembleClassifier(**{**FIT, **params}).fit(P, labels)


# ------------------------------------------------------------------ kernels
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("fraction", MISSING)
@pytest.mark.parametrize("m,n,d", [(6, 80, 3), (3, 40, 5), (40, 30, 8), (70, 60, 32)])
def test_half_steps_loss_and_fold_in_match_the_reference(dtype, fraction, m, n, d):
    X, Y, R, C = random_problem(m, n, d, seed=m + n, dtype=dtype)
    P, dense = sparse_and_dense(R.T, fraction, seed=d)
    P = check_sparse_probabilities(P, dtype=dtype)
    C_values = C.T[np.nonzero(~np.isnan(dense))].astype(dtype)  # CSR order: by row, then column
    by_instance, by_classifier = layouts(P, C_values)
    lam = 0.3
    Y_ref, loss_ref = ref.update_instance_factors(X, dense.T, C, lam, with_loss=True)
    Yt, sse = solve_sparse_instances(X, by_instance, lam, loss=True)
    assert Yt.dtype == dtype
    assert rel_error(Yt.T, Y_ref) < TOL[dtype]
    n_observed = max(P.nnz, 1)
    assert rel_error(normalised_loss(sse, X, Yt, lam) * m * n / n_observed, loss_ref) < TOL[dtype]
    X_ref = ref.update_classifier_factors(Y, dense.T, C, lam)
    X_got = solve_sparse_classifiers(np.ascontiguousarray(Y.T), by_classifier, lam)
    assert X_got.dtype == dtype
    assert rel_error(X_got, X_ref) < TOL[dtype]
    sse = sparse_squared_residual(X, np.ascontiguousarray(Y.T), by_instance)
    assert rel_error(normalised_loss(sse, X, Y.T, lam) * m * n / n_observed,
                     ref.reconstruction_loss(X, Y, dense.T, C, lam)) < TOL[dtype]


@pytest.mark.parametrize("fraction", MISSING)
@pytest.mark.parametrize("m,n,d", [(6, 80, 3), (40, 30, 8)])
def test_the_exact_and_joint_kernels_match_the_reference(fraction, m, n, d):
    X, Y, R, C = random_problem(m, n, d, seed=m + d)
    P, dense = sparse_and_dense(R.T, fraction, seed=d)
    P = check_sparse_probabilities(P)
    by_instance, by_classifier = layouts(P, C.T[np.nonzero(~np.isnan(dense))])
    lam, w = 0.3, np.random.default_rng(1).normal(size=m)
    _, Z_ref = ref.instance_solves(X, dense.T, C, lam, w)
    rows = np.arange(0, n, 3)
    assert rel_error(sparse_labeled_solves(X, by_instance, lam, X @ w, rows), Z_ref[:, rows].T) < TOL[np.float64]
    gX_ref, gY_ref = ref.reconstruction_gradient(X, Y, dense.T, C, lam)
    gX, gYt = sparse_reconstruction_gradient(X, Y.T, by_instance, by_classifier, lam)
    n_observed = max(P.nnz, 1)
    assert rel_error(gX / n_observed, gX_ref) < TOL[np.float64]
    assert rel_error(gYt.T / n_observed, gY_ref) < TOL[np.float64]


def test_a_singular_labeled_system_names_its_instance():
    from cfe_fast.errors import SingularSystemError

    X, _, R, _ = random_problem(4, 10, 2, seed=1)
    P = R.T.copy()
    P[6] = 0.0  # instance 6 stores nothing: with lam = 0 its system is singular
    by_instance, _ = layouts(check_sparse_probabilities(sp.csr_array(P)), np.empty(0))
    with pytest.raises(SingularSystemError, match="instance 6"):
        sparse_labeled_solves(X, by_instance, 0.0, X @ np.ones(4), np.array([2, 6, 8]))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("uniform", [False, True])
def test_the_classifier_step_in_blocks_groups_and_runs_matches_the_reference(monkeypatch, dtype, uniform):
    """The classifier step reads the instances a block at a time for a group of classifiers, in GEMM
    runs: with blocks of 7 instances, groups of 64 of m = 150 classifiers and runs of 3 entries, every
    seam (a classifier with nothing in a block, a run cut inside a block, a last partial group) is
    crossed; at d = 32 as in the benchmarks."""
    m, n, d = 150, 300, 32
    X, Y, R, C = random_problem(m, n, d, seed=7, dtype=dtype)
    if uniform:
        C = np.ones_like(C)
    P, dense = sparse_and_dense(R.T, 0.6, seed=1)
    P = check_sparse_probabilities(P, dtype=dtype)
    C_values = np.empty(0, dtype) if uniform else C.T[np.nonzero(~np.isnan(dense))].astype(dtype)
    by_classifier = layouts(P, C_values)[1]
    Yt = np.ascontiguousarray(Y.T)
    whole = solve_sparse_classifiers(Yt, by_classifier, 0.3)
    monkeypatch.setattr(sparse_steps, "CLASSIFIER_BLOCK_BYTES", 7 * d * np.dtype(dtype).itemsize)
    monkeypatch.setattr(sparse_steps, "CLASSIFIER_GROUP", 64)
    monkeypatch.setattr(sparse_steps, "CLASSIFIER_RUN", 3)
    X_got = solve_sparse_classifiers(Yt, by_classifier, 0.3)
    X_ref = ref.update_classifier_factors(Y, dense.T, C, 0.3)
    assert X_got.dtype == dtype
    assert rel_error(X_got, X_ref) < TOL[dtype]
    assert rel_error(whole, X_ref) < TOL[dtype]


def test_the_sparse_half_steps_do_not_depend_on_the_thread_count(monkeypatch):
    """Bit for bit: the classifier step's groups are sized by the thread count, its sums are not."""
    monkeypatch.setattr(config, "PARALLEL_MIN_FLOPS", 0)  # parallel regions even for this small problem
    X, Y, R, C = random_problem(150, 400, 8, seed=3)
    P, dense = sparse_and_dense(R.T, 0.7, seed=2)
    P = check_sparse_probabilities(P)
    by_instance, by_classifier = layouts(P, C.T[np.nonzero(~np.isnan(dense))])
    results = []
    before = numba.get_num_threads()
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            results.append((solve_sparse_classifiers(np.ascontiguousarray(Y.T), by_classifier, 0.3),
                            *solve_sparse_instances(X, by_instance, 0.3, loss=True)))
    finally:
        numba.set_num_threads(before)
    for first, second in zip(*results):
        np.testing.assert_array_equal(first, second)


def test_an_empty_confidence_is_confidence_one_everywhere():
    X, Y, R, _ = random_problem(9, 60, 3, seed=2)
    P = check_sparse_probabilities(sparse_and_dense(R.T, 0.5)[0])
    ones, empty = layouts(P, np.ones(P.nnz)), layouts(P, np.empty(0))
    Yt = np.ascontiguousarray(Y.T)
    np.testing.assert_array_equal(solve_sparse_instances(X, empty[0], 0.2, loss=True)[0],
                                  solve_sparse_instances(X, ones[0], 0.2, loss=True)[0])
    np.testing.assert_array_equal(solve_sparse_classifiers(Yt, empty[1], 0.2), solve_sparse_classifiers(Yt, ones[1], 0.2))
    assert sparse_squared_residual(X, Yt, empty[0]) == sparse_squared_residual(X, Yt, ones[0])


def test_an_instance_or_classifier_with_nothing_observed_gets_zero_factors():
    X, Y, R, C = random_problem(4, 10, 2, seed=1)
    P = R.T.copy()
    P[3] = 0.0
    P[:, 2] = 0.0
    S = check_sparse_probabilities(sp.csr_array(P))  # the zeros are not stored
    by_instance, by_classifier = layouts(S, np.ones(S.nnz))
    np.testing.assert_array_equal(solve_sparse_instances(X, by_instance, 0.5)[3], 0.0)
    np.testing.assert_array_equal(solve_sparse_classifiers(np.ascontiguousarray(Y.T), by_classifier, 0.5)[:, 2], 0.0)


# ----------------------------------------------------------------- the fit
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("confidence,fraction", [(confidence, fraction)
                                                 for confidence in ("uniform", "certainty", "label_aware")
                                                 for fraction in (0.0, 0.3, 0.9)]
                         + [("calibration", 0.0), ("calibration", 0.6)])  # at 0.9 a classifier scores no label
def test_a_sparse_fit_matches_the_reference_on_the_dense_equivalent(ensemble, dtype, confidence, fraction):
    P, labels = ensemble
    S, dense = sparse_and_dense(P, fraction, seed=4)
    got = _fit(S, labels, dtype=dtype, confidence=confidence)
    want = _fit(dense, labels, dtype=dtype, confidence=confidence, backend="numpy")
    tol = FIT_TOL[dtype]
    assert rel_error(got.transductive_proba_, want.transductive_proba_) < tol
    assert rel_error(got.history_["loss"], want.history_["loss"]) < tol
    assert rel_error(got.history_["reconstruction"], want.history_["reconstruction"]) < tol
    assert got.held_out_average_precision_of_mean_ == pytest.approx(want.held_out_average_precision_of_mean_)
    new, new_dense = sparse_and_dense(P[:50], 0.5, seed=7)
    assert rel_error(got.predict_proba(new), want.predict_proba(new_dense)) < tol
    assert rel_error(got.transform(new), want.transform(new_dense)) < tol


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("params,fraction", [(dict(trainer="exact"), 0.0), (dict(trainer="exact"), 0.5),
                                             (dict(trainer="exact", confidence="label_aware", focal_gamma=2.0), 0.3),
                                             (dict(trainer="joint", joint_steps_per_iter=5), 0.0),
                                             (dict(trainer="joint", joint_steps_per_iter=5, rho=0.5,
                                                   confidence="certainty"), 0.9)])
def test_the_exact_and_joint_trainers_on_a_sparse_x_match_the_reference(ensemble, dtype, params, fraction):
    P, labels = ensemble
    S, dense = sparse_and_dense(P, fraction, seed=4)
    got = _fit(S, labels, dtype=dtype, **params)
    want = _fit(dense, labels, dtype=dtype, backend="numpy", **params)
    tol = FIT_TOL[dtype]
    assert rel_error(got.transductive_proba_, want.transductive_proba_) < tol
    assert rel_error(got.history_["loss"], want.history_["loss"]) < tol
    assert rel_error(got.classifier_factors_, want.classifier_factors_) < tol
    new, new_dense = sparse_and_dense(P[:50], 0.5, seed=7)
    assert rel_error(got.predict_proba(new), want.predict_proba(new_dense)) < tol


@pytest.mark.parametrize("kind", ["sparse", "dense"])
def test_a_user_confidence_is_read_at_the_observed_entries(ensemble, kind):
    P, labels = ensemble
    S, dense = sparse_and_dense(P, 0.4, seed=1)
    C = np.abs(P - 0.5) + 0.1
    want = _fit(dense, labels, confidence=C, backend="numpy")
    C_given = sp.csr_array(np.where(np.isnan(dense), 0.0, C)) if kind == "sparse" else np.where(np.isnan(dense),
                                                                                                 -5.0, C)
    got = _fit(S, labels, confidence=C_given)
    assert rel_error(got.transductive_proba_, want.transductive_proba_) < FIT_TOL["float64"]
    bad = C.copy()
    bad[np.nonzero(~np.isnan(dense))[0][3], np.nonzero(~np.isnan(dense))[1][3]] = np.inf
    with pytest.raises(ValueError, match="confidence at row .*, column .* holds inf"):
        _fit(S, labels, confidence=bad)
    with pytest.raises(ValueError, match="confidence has shape"):
        _fit(S, labels, confidence=C[:5])


def test_an_entry_a_sparse_confidence_does_not_store_has_confidence_zero(ensemble):
    P, labels = ensemble
    S, dense = sparse_and_dense(P, 0.3, seed=2)
    C = np.where(np.random.default_rng(3).random(P.shape) < 0.2, 0.0, np.abs(P - 0.5) + 0.1)
    got = _fit(S, labels, confidence=sp.csr_array(C))  # zeros unstored
    want = _fit(dense, labels, confidence=C, backend="numpy")
    assert rel_error(got.transductive_proba_, want.transductive_proba_) < FIT_TOL["float64"]


@pytest.mark.parametrize("form", ["coo_array", "csc_array", "csr_matrix", "coo_matrix"])
def test_every_sparse_format_gives_the_same_fit(ensemble, form):
    P, labels = ensemble
    S, _ = sparse_and_dense(P, 0.5, seed=3)
    given = getattr(sp, form)(S)
    before = given.copy()
    np.testing.assert_array_equal(_fit(given, labels).transductive_proba_, _fit(S, labels).transductive_proba_)
    np.testing.assert_array_equal(given.toarray(), before.toarray())  # the input is not modified


def test_stored_nan_is_unobserved_and_duplicates_are_summed(ensemble):
    P, labels = ensemble
    S, dense = sparse_and_dense(P, 0.5, seed=3)
    entries = S.tocoo()
    unstored_rows, unstored_cols = np.nonzero(np.isnan(dense))
    rows = np.concatenate([entries.row, unstored_rows[:5]])
    cols = np.concatenate([entries.col, unstored_cols[:5]])
    nan_stored = sp.coo_array((np.concatenate([entries.data, np.full(5, np.nan)]), (rows, cols)), shape=P.shape)
    np.testing.assert_array_equal(_fit(nan_stored, labels).transductive_proba_, _fit(S, labels).transductive_proba_)
    halves = sp.coo_array((np.tile(entries.data / 2, 2), (np.tile(entries.row, 2), np.tile(entries.col, 2))),
                          shape=P.shape)
    np.testing.assert_allclose(check_sparse_probabilities(halves).toarray(), S.toarray(), rtol=1e-15)


def test_an_instance_with_no_stored_entry_is_predicted_from_r_hat_zero(ensemble):
    P, labels = ensemble
    S, dense = sparse_and_dense(P, 0.3, seed=6)
    S = S.tolil()
    S[5, :] = 0
    S = sp.csr_array(S)
    S.eliminate_zeros()
    dense[5] = np.nan
    model = _fit(S, labels)
    np.testing.assert_array_equal(model.instance_factors_[:, 5], 0.0)
    assert rel_error(model.transductive_proba_, _fit(dense, labels, backend="numpy").transductive_proba_) < 1e-8
    empty = sp.csr_array((2, P.shape[1]))
    np.testing.assert_array_equal(model.transform(empty), 0.0)
    np.testing.assert_allclose(model.predict_proba(empty)[:, 1], expit(model.intercept_), rtol=1e-15)
    with pytest.raises(ValueError, match="instance 5 has zero confidence everywhere"):
        _fit(S, labels, lam=0.0)


def test_a_classifier_with_no_stored_entry_is_named(ensemble):
    P, labels = ensemble
    P = P.copy()
    P[:, 3] = 0.0
    with pytest.raises(ValueError, match="classifier column 3 of X has no observed entry"):
        _fit(sp.csr_array(P), labels)
    only_unlabeled = P.copy()
    only_unlabeled[:, 3] = np.where(np.isnan(labels), 0.4, 0.0)
    with pytest.raises(ValueError, match="classifier column 3 has no observed entry on a labeled"):
        _fit(sp.csr_array(only_unlabeled), labels, confidence="calibration")


@pytest.mark.parametrize("value,why", [(1.5, "outside \\[0, 1\\]"), (-0.2, "outside \\[0, 1\\]"),
                                       (np.inf, "is infinite")])
def test_stored_values_outside_the_unit_interval_are_named(ensemble, value, why):
    P, labels = ensemble
    S, _ = sparse_and_dense(P, 0.2, seed=0)
    S = S.tolil()
    S[7, 2] = value
    with pytest.raises(ValueError, match=f"X at row 7, column 2 holds .*{why}"):
        _fit(sp.csr_array(S), labels)
    model = _fit(P, labels)
    with pytest.raises(ValueError, match=f"X at row 7, column 2 holds .*{why}"):
        model.predict_proba(sp.csr_array(S))


def test_row_means_of_the_stored_entries():
    S = sp.csr_array(np.array([[0.0, 0.0, 0.0], [0.2, 0.0, 0.4], [0.0, 0.0, 0.0], [0.1, 0.2, 0.3], [0.0, 0.0, 0.0]]))
    np.testing.assert_allclose(row_means(S), [0.5, 0.3, 0.5, 0.2, 0.5])
    np.testing.assert_allclose(row_means(sp.csr_array((2, 3))), [0.5, 0.5])


# ------------------------------------------------------- what is refused
def test_the_reference_backend_refuses_a_sparse_x_and_names_those_that_take_one(ensemble):
    P, labels = ensemble
    with pytest.raises(TypeError, match="backend='numpy' does not take a sparse X; use backend='numba', 'cupy' or "
                                        "'dask'"):
        _fit(sp.csr_array(P), labels, backend="numpy")


@pytest.mark.parametrize("params", [dict(solver="cg"), dict(solver="dual"), dict(input_type="scores"),
                                    dict(trainer="exact", backend="cupy"), dict(trainer="joint", backend="cupy")])
def test_settings_a_sparse_fit_does_not_support_are_named(ensemble, params):
    P, labels = ensemble
    name = next(iter(params))
    with pytest.raises(ValueError, match=f"{name}={params[name]!r}"):
        _fit(sp.csr_array(P), labels, **params)


class _Killed(Exception):
    pass


@pytest.mark.parametrize("params", [dict(dtype="float64"), dict(dtype="float32", confidence="calibration"),
                                    dict(aggregator_solver="adam", aggregator_steps=2), dict(backend="cupy"),
                                    dict(trainer="exact"), dict(trainer="joint", joint_steps_per_iter=3)])
def test_an_interrupted_sparse_fit_resumes_bit_identically(ensemble, tmp_path, params):
    P, labels = ensemble
    S, _ = sparse_and_dense(P, 0.5, seed=8)
    settings = {**FIT, "max_iter": 9, **params}
    full = CFEnsembleClassifier(**settings).fit(S, labels)
    checkpoint = tmp_path / "c.npz"

    def kill_after_five(iteration, history):
        if iteration == 5:
            raise _Killed

    with pytest.raises(_Killed):
        CFEnsembleClassifier(**settings).fit(S, labels, checkpoint=checkpoint, checkpoint_every=2,
                                             callback=kill_after_five)
    resumed = CFEnsembleClassifier(**settings).fit(S.tocoo(), labels, resume_from=checkpoint)  # after iteration 4
    np.testing.assert_array_equal(resumed.transductive_proba_, full.transductive_proba_)
    np.testing.assert_array_equal(resumed.classifier_factors_, full.classifier_factors_)
    np.testing.assert_array_equal(resumed.coef_, full.coef_)
    assert resumed.history_["loss"] == full.history_["loss"] and resumed.n_iter_ == full.n_iter_


def test_a_sparse_checkpoint_refuses_other_data(ensemble, tmp_path):
    from cfe_fast import ModelFileError

    P, labels = ensemble
    S, dense = sparse_and_dense(P, 0.5, seed=8)
    checkpoint = tmp_path / "c.npz"
    CFEnsembleClassifier(**FIT).fit(S, labels, checkpoint=checkpoint)
    other = S.copy()
    other.data[0] = 0.5 * other.data[0] + 0.25
    moved = S.tolil()
    moved[0, np.flatnonzero(np.isnan(dense[0]))[0]] = S.data[0]  # one entry more, at an unstored place
    for data in (other, sp.csr_array(moved), dense):  # the dense P with NaN: other kernels, other rounding
        with pytest.raises(ModelFileError, match="other data"):
            CFEnsembleClassifier(**FIT).fit(data, labels, resume_from=checkpoint)
    with pytest.raises(ModelFileError, match="other data"):
        CFEnsembleClassifier(**FIT).fit(S, np.where(np.isnan(labels), 0.0, labels), resume_from=checkpoint)
    with_int64 = sp.csr_array((S.data, S.indices.astype(np.int64), S.indptr.astype(np.int64)), shape=S.shape)
    CFEnsembleClassifier(**FIT).fit(with_int64, labels, resume_from=checkpoint)  # the same entries resume


def test_checkpoints_of_a_dask_array_of_sparse_chunks_are_refused_with_the_backend(ensemble, tmp_path):
    P, labels = ensemble
    with pytest.raises(ValueError, match="checkpoints are not supported with backend='dask'"):
        CFEnsembleClassifier(**FIT, backend="dask").fit(sp.csr_array(P), labels, checkpoint=tmp_path / "c.npz")


def test_the_functional_kernels_take_dense_arrays_and_say_where_sparse_is_fitted():
    from cfe_fast import kernels

    X, _, R, C = random_problem(3, 10, 2)
    with pytest.raises(TypeError, match="R is a sparse matrix.*backend='numba' fits a sparse P"):
        kernels.update_instance_factors(X, sp.csr_array(R), C, 0.1)
