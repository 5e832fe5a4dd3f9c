"""Missing entries (NaN in P: not observed) against the NumPy reference, which reads NaN in R as c = 0.

The fast paths never see NaN: the data layer gives an unobserved entry
confidence 0 and a neutral value in R. Every fast backend's kernels on that
data are compared with the reference on R with NaN, for 0 % to 99 % of the
entries missing. Tolerances as in the backends' own tests: relative error
<= 1e-10 in float64 and <= 1e-4 in float32 (the reference on the same
float32 inputs).
"""


import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

import cfe_fast.config
import cfe_fast.core.missing
from cfe_fast import CFEnsembleClassifier, make_ensemble
from cfe_fast import reference as ref
from cfe_fast.backends import get_backend
from cfe_fast.core.confidence import classifier_quality, confidence_chunk
from cfe_fast.core.missing import fill_missing, mean_of_observed, missing_entries
from conftest import random_problem, rel_error

TOL = {np.float64: 1e-10, np.float32: 1e-4}
MISSING = [0.0, 0.2, 0.5, 0.9, 0.99]
FAST = ["numba", "cupy"]  # cupy computes with NumPy as its array module where no GPU is usable
FIT = dict(latent_dim=3, max_iter=4, tol=0.0, random_state=0)


pytestmark = pytest.mark.filterwarnings("ignore")  # cupy without a GPU, collapse and quality warnings of tiny fits


def knock_out(R, fraction, seed=0):
    """R (m, n) with a random ``fraction`` of its entries set to NaN."""
    R = np.array(R)
    R[np.random.default_rng(seed).random(R.shape) < fraction] = np.nan
    return R


def fast_inputs(R, C):
    """What the data layer hands the kernels: R filled where NaN, C zero there."""
    missing = missing_entries(R)
    return fill_missing(R, missing), np.where(np.isnan(R), 0, C).astype(C.dtype)


@pytest.fixture
def ensemble():
    data = make_ensemble(n_classifiers=8, n_instances=240, labeled_fraction=0.5, random_state=2)
    return np.ascontiguousarray(data.P), data.labels


# ------------------------------------------------------------------ kernels
@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("fraction", MISSING)
@pytest.mark.parametrize("m,n,d", [(6, 80, 3), (3, 40, 5)])  # d < m (primal) and d > m (dual form)
def test_half_steps_and_loss_match_the_reference(backend, dtype, fraction, m, n, d):
    X, Y, R, C = random_problem(m, n, d, seed=m + n, dtype=dtype)
    R = knock_out(R, fraction, seed=d)
    R[0, 0] = 0.25  # at least one observed entry
    C_garbage = np.where(np.isnan(R), -7.0, C).astype(dtype)  # the reference ignores C where R is NaN
    R_fast, C_fast = fast_inputs(R, C)
    lam, kernels = 0.3, get_backend(backend)
    Y_ref, loss_ref = ref.update_instance_factors(X, R, C_garbage, lam, with_loss=True)
    Y_got, loss_got = kernels.update_instance_factors(X, R_fast, C_fast, lam, with_loss=True)
    assert rel_error(kernels.to_host(Y_got), Y_ref) < TOL[dtype]
    X_ref = ref.update_classifier_factors(Y, R, C_garbage, lam)
    assert rel_error(kernels.to_host(kernels.update_classifier_factors(Y, R_fast, C_fast, lam)), X_ref) < TOL[dtype]
    # the kernels normalise by m n; the problem renormalises by the observed entries
    assert rel_error(loss_got * (m * n) / np.count_nonzero(~np.isnan(R)), loss_ref) < TOL[dtype]
    assert rel_error(kernels.to_host(kernels.fold_in(X, R_fast, C_fast, lam)), Y_ref) < TOL[dtype]


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("fraction", MISSING)
def test_exact_trainer_kernels_match_the_reference(backend, fraction):
    X, Y, R, C = random_problem(6, 50, 3, seed=4)
    R = knock_out(R, fraction, seed=1)
    R_fast, C_fast = fast_inputs(R, C)
    kernels, w = get_backend(backend), np.linspace(-1.0, 1.0, 6)
    *got, loss_got = kernels.instance_solves(X, R_fast, C_fast, 0.2, w, with_loss=True)
    *want, loss_ref = ref.instance_solves(X, R, C, 0.2, w, with_loss=True)
    for a, b in zip(got, want):
        assert rel_error(kernels.to_host(a), b) < TOL[np.float64]
    # the kernels normalise by m n; the problem renormalises by the observed entries
    assert rel_error(loss_got * R.size / np.count_nonzero(~np.isnan(R)), loss_ref) < TOL[np.float64]
    for got, want in zip(kernels.classifier_gram_terms(Y, R_fast, C_fast), ref.classifier_gram_terms(Y, R, C)):
        assert rel_error(kernels.to_host(got), want) < TOL[np.float64]
    if fraction < 0.99:
        scale = R.size / np.count_nonzero(~np.isnan(R))
        for got, want in zip(kernels.reconstruction_gradient(X, Y, R_fast, C_fast, 0.2),
                             ref.reconstruction_gradient(X, Y, R, C, 0.2)):
            assert rel_error(kernels.to_host(got) * scale, want) < TOL[np.float64]


@pytest.mark.parametrize("strategy", ["uniform", "certainty", "label_aware", "calibration"])
@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.9])
def test_confidence_is_zero_where_missing_and_matches_the_reference(strategy, fraction):
    _, _, R, _ = random_problem(7, 300, 2, seed=3)
    R = knock_out(R, fraction, seed=2)
    labels = np.where(np.random.default_rng(0).random(300) < 0.5, np.nan, np.arange(300) % 2.0)
    quality = classifier_quality(R, labels) if strategy == "calibration" else None
    C = confidence_chunk(R.T, labels, strategy, 0.6, quality).T
    np.testing.assert_allclose(C, ref.confidence(R, labels, strategy, 0.6), rtol=1e-14, atol=0)
    assert (C[np.isnan(R)] == 0).all()


def test_calibration_names_a_classifier_without_observed_labeled_entries():
    R = np.full((3, 6), 0.7)
    labels = np.array([1.0, 0.0, np.nan, np.nan, np.nan, np.nan])
    R[1, :2] = np.nan
    with pytest.raises(ValueError, match="classifier 'b' \\(column 1\\) has no observed entry on a labeled"):
        classifier_quality(R, labels, names=["a", "b", "c"])
    with pytest.raises(ValueError, match="classifier 1 has no observed entry on a labeled"):
        ref.calibration_confidence(R, labels)


def test_mean_of_observed():
    P = np.array([[0.2, np.nan, 0.4], [np.nan, np.nan, np.nan], [0.1, 0.2, 0.3]])
    np.testing.assert_allclose(mean_of_observed(P), [0.3, cfe_fast.core.missing.FILL_VALUE, 0.2])
    complete = np.random.default_rng(0).random((5, 4)).astype(np.float32)
    np.testing.assert_array_equal(mean_of_observed(complete), complete.mean(axis=1))


# ----------------------------------------------------------------- the fit
def _fit(P, labels, **params):
    return CFEnsembleClassifier(**{**FIT, **params}).fit(P, labels)


@pytest.mark.parametrize("trainer", ["als", "exact", "joint"])
@pytest.mark.parametrize("confidence", ["uniform", "label_aware", "calibration"])
def test_results_do_not_depend_on_the_fill_value(ensemble, monkeypatch, trainer, confidence):
    P, labels = ensemble
    P = knock_out(P, 0.4)
    fits = []
    for fill in (0.5, 0.0, 1.0):
        monkeypatch.setattr(cfe_fast.core.missing, "FILL_VALUE", fill)
        fits.append(_fit(P, labels, trainer=trainer, confidence=confidence))
    for other in fits[1:]:
        np.testing.assert_array_equal(other.transductive_proba_, fits[0].transductive_proba_)
        np.testing.assert_array_equal(other.predict_proba(P[:40]), fits[0].predict_proba(P[:40]))


def test_a_user_confidence_is_zero_where_missing_whatever_it_holds(ensemble):
    P, labels = ensemble
    P = knock_out(P, 0.3)
    C = np.abs(np.nan_to_num(P, nan=0.5) - 0.5) + 0.1
    garbage = np.where(np.isnan(P), np.nan, C)
    garbage[np.isnan(P) & (np.arange(P.shape[1]) % 2 == 0)] = -3.0  # negative, NaN or infinite: ignored there
    garbage[np.isnan(P) & (np.arange(P.shape[1]) == 1)] = np.inf
    zeroed = np.where(np.isnan(P), 0.0, C)
    a, b = _fit(P, labels, confidence=garbage), _fit(P, labels, confidence=zeroed)
    np.testing.assert_array_equal(a.transductive_proba_, b.transductive_proba_)
    with pytest.raises(ValueError, match="confidence at row .* holds inf, which is not finite at an observed"):
        _fit(P, labels, confidence=np.where(np.isnan(P), 0.0, np.inf))


@pytest.mark.parametrize("backend", ["numpy", "cupy"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("fraction", [0.2, 0.7])
def test_fits_of_every_in_memory_backend_agree(ensemble, backend, dtype, fraction):
    P, labels = ensemble
    P = knock_out(P, fraction, seed=5)
    tol = 1e-8 if dtype == "float64" else 2e-3
    want = _fit(P, labels, dtype=dtype)
    got = _fit(P, labels, dtype=dtype, backend=backend)
    assert rel_error(got.transductive_proba_, want.transductive_proba_) < tol
    assert rel_error(got.history_["loss"], want.history_["loss"]) < tol
    assert rel_error(got.predict_proba(P)[:, 1], want.predict_proba(P)[:, 1]) < tol


@pytest.mark.parametrize("trainer", ["exact", "joint"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_exact_and_joint_fits_on_cupy_agree_with_numba(ensemble, trainer, dtype):
    P, labels = ensemble
    P = knock_out(P, 0.5, seed=6)
    tol = 1e-8 if dtype == "float64" else 2e-3
    want = _fit(P, labels, dtype=dtype, trainer=trainer)
    got = _fit(P, labels, dtype=dtype, trainer=trainer, backend="cupy")
    assert rel_error(got.history_["loss"], want.history_["loss"]) < tol
    assert rel_error(got.transductive_proba_, want.transductive_proba_) < tol


@pytest.mark.parametrize("backend", FAST)
def test_blocked_fold_in_reads_missing_entries_as_unobserved(ensemble, monkeypatch, backend):
    """fold_in_data in blocks of a few rows: each block filled and weighted 0 where NaN, results in place."""
    P, labels = ensemble
    model = _fit(P, labels, confidence="certainty", backend=backend)
    new = knock_out(P[:70], 0.4, seed=11)
    new[3] = np.nan  # a row with nothing observed
    monkeypatch.setattr(cfe_fast.config, "FLOAT64_BLOCK_BYTES", 8 * 8 * P.shape[1])  # blocks of 8 rows
    kernels, widths = get_backend(backend), []
    fold_in = kernels.fold_in

    def counted(X, R, C, lam):
        assert not np.isnan(R).any() and (C[np.isnan(new[len(widths) * 8:][:R.shape[1]].T)] == 0).all()
        widths.append(R.shape[1])
        return fold_in(X, R, C, lam)

    monkeypatch.setattr(kernels, "fold_in", counted)
    want = ref.fold_in(model.classifier_factors_, new.T, ref.certainty_confidence(new.T), model.lam)
    got = model.transform(new).T
    assert widths == [8] * 8 + [6]
    assert rel_error(got, want) < 1e-10
    np.testing.assert_array_equal(got[:, 3], 0.0)


@pytest.mark.parametrize("trainer", ["als", "exact"])
def test_the_reconstruction_term_is_normalised_by_the_observed_entries(ensemble, trainer):
    P, labels = ensemble
    P = knock_out(P, 0.5, seed=3)
    model = _fit(P, labels, trainer=trainer, confidence="certainty", backend="numpy")
    R = P.T
    C = ref.certainty_confidence(R)
    want = ref.reconstruction_loss(model.classifier_factors_, model.instance_factors_, R, C, model.lam)
    assert rel_error(model.history_["reconstruction"][-1], want) < 1e-10


def test_new_instances_fold_in_with_zero_confidence_where_missing(ensemble):
    P, labels = ensemble
    model = _fit(P, labels, confidence="uniform")
    new = knock_out(P[:60], 0.5, seed=9)
    want = ref.fold_in(model.classifier_factors_, new.T, ref.uniform_confidence(new.T), model.lam)
    assert rel_error(model.transform(new).T, want) < 1e-10


def test_an_instance_with_no_observed_entry_is_predicted_from_r_hat_zero(ensemble):
    P, labels = ensemble
    P = P.copy()
    P[5] = np.nan
    model = _fit(P, labels)
    np.testing.assert_array_equal(model.instance_factors_[:, 5], 0.0)
    new = np.full((2, P.shape[1]), np.nan)
    np.testing.assert_array_equal(model.transform(new), 0.0)
    np.testing.assert_allclose(model.predict_proba(new)[:, 1], expit(model.intercept_), rtol=1e-15)
    with pytest.raises(ValueError, match="instance 5 has zero confidence everywhere"):
        _fit(P, labels, lam=0.0)


def test_a_classifier_with_no_observed_entry_is_named(ensemble):
    P, labels = ensemble
    frame = pd.DataFrame(P, columns=[f"model_{j}" for j in range(P.shape[1])])
    frame["model_3"] = np.nan
    with pytest.raises(ValueError, match="classifier 'model_3' \\(column 3\\) of X has no observed entry"):
        _fit(frame, labels)
    calibration = frame.assign(model_3=np.where(np.isnan(labels), 0.4, np.nan))
    with pytest.raises(ValueError, match="classifier 'model_3' \\(column 3\\) has no observed entry on a labeled"):
        _fit(calibration, labels, confidence="calibration")


def test_pandas_missing_values_are_unobserved_entries(ensemble):
    P, labels = ensemble
    P = knock_out(P, 0.2, seed=4)
    frame = pd.DataFrame(P).astype("Float64")  # NaN becomes pd.NA
    assert frame.isna().to_numpy().sum() == np.isnan(P).sum()
    np.testing.assert_array_equal(_fit(frame, labels).transductive_proba_, _fit(P, labels).transductive_proba_)


def test_infinite_and_out_of_range_entries_stay_errors(ensemble):
    P, labels = ensemble
    P = knock_out(P, 0.2)
    with pytest.raises(ValueError, match="X at row 0, column 2 holds -inf"):
        _fit(np.where(np.arange(P.size).reshape(P.shape) == 2, -np.inf, P), labels)
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\].*first at row 1, column 0"):
        _fit(np.where(np.arange(P.size).reshape(P.shape) == P.shape[1], 1.5, P), labels)


def test_scores_with_missing_entries_rank_over_the_observed_ones():
    rng = np.random.default_rng(0)
    S = rng.normal(size=(200, 5))
    S[rng.random(S.shape) < 0.3] = np.nan
    y = np.where(rng.random(200) < 0.5, np.nan, (rng.random(200) < 0.4).astype(float))
    model = CFEnsembleClassifier(input_type="scores", **FIT).fit(S, y)
    for j in range(5):
        observed = ~np.isnan(S[:, j])
        np.testing.assert_allclose(model.score_quantiles_[[0, -1], j], [S[observed, j].min(), S[observed, j].max()])
    assert np.isfinite(model.predict_proba(S)).all()


def test_the_report_baselines_read_observed_entries_only(ensemble):
    from cfe_fast.comparison import METHODS, cross_validated_comparison

    P, labels = ensemble
    P = knock_out(P, 0.4, seed=6)
    model = _fit(P, labels)
    comparison = cross_validated_comparison(model, P, labels, folds=3)
    assert np.isfinite(comparison.scores).all() and np.isfinite(comparison.proba).all()
    rows = np.flatnonzero(~np.isnan(labels))
    np.testing.assert_allclose(comparison.proba[METHODS.index("mean of R")], mean_of_observed(P[rows]), rtol=1e-15)
