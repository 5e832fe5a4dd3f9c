"""C as a rule (computed per chunk inside the Numba kernels, never stored whole) against the stored C:
the blocks of C, every kernel that reads C, and whole fits are bit-identical; and against the reference."""

import numpy as np
import pytest

from cfe_fast import CFEnsembleClassifier, make_ensemble
from cfe_fast import reference as ref
from cfe_fast.backends.numba import NumbaBackend
from cfe_fast.backends.numba.classifier_step import classifier_sums, solve_classifiers
from cfe_fast.backends.numba.confidence import chunk_confidence, kernel_confidence
from cfe_fast.backends.numba.instance_step import solve_instances
from cfe_fast.backends.numba.losses import reconstruction_loss_grad_t, reconstruction_loss_t
from cfe_fast.core.confidence import (
    CONFIDENCE_STRATEGIES,
    ConfidenceRule,
    confidence_rule,
    instance_major_confidence,
)

DTYPES = [np.float64, np.float32]


def _data(n, m, dtype, seed=0, extremes=True):
    """Instance-major P (n, m) with exact 0, 0.5 and 1 entries, and labels (NaN, 0, 1)."""
    rng = np.random.default_rng(seed)
    P = rng.random((n, m)).astype(dtype)
    if extremes:
        P.flat[rng.choice(P.size, size=P.size // 10, replace=False)] = rng.choice([0.0, 0.5, 1.0], size=P.size // 10)
    labels = np.where(rng.random(n) < 0.6, (rng.random(n) < 0.4).astype(float), np.nan)
    return P, labels


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("strategy", CONFIDENCE_STRATEGIES)
def test_rule_blocks_are_the_stored_confidence(dtype, strategy):
    """ConfidenceRule.block and the kernels' chunk_confidence give the stored C bit for bit, at any chunk."""
    P, labels = _data(301, 7, dtype)
    C, quality = instance_major_confidence(P, labels, strategy, 0.7, dtype)
    rule = confidence_rule(P, labels, strategy, 0.7, dtype)
    assert rule.shape == (7, 301) and rule.dtype == dtype
    if quality is not None:
        np.testing.assert_array_equal(rule.quality, quality)
    conf = kernel_confidence(rule, dtype)
    for s, e in [(0, 301), (0, 1), (17, 140), (300, 301)]:
        block = rule.block(P[s:e], s)
        assert block.dtype == dtype
        np.testing.assert_array_equal(block, C[s:e])
        np.testing.assert_array_equal(chunk_confidence(conf, P, s, e), C[s:e])
    # the reference's confidence (float64, layout (m, n)) within the dtype's rounding
    expected = ref.confidence(P.T.astype(np.float64), labels, strategy, alpha=0.7)
    np.testing.assert_allclose(rule.block(P, 0).T, expected, rtol=1e-6 if dtype == np.float32 else 1e-15)


def test_rule_where_it_can_stand_for_C():
    P, labels = _data(20, 4, np.float64)
    missing = np.zeros(P.shape, dtype=bool)
    assert confidence_rule(P, labels, None, 1.0, np.float64) is None  # a user matrix
    for strategy in CONFIDENCE_STRATEGIES:  # unobserved entries: only where 0.5 already gives confidence 0
        rule = confidence_rule(P, labels, strategy, 1.0, np.float64, missing)
        assert (rule is not None) == (strategy in ("certainty", "label_aware"))
    with pytest.raises(ValueError, match="unknown confidence strategy 'sure'"):
        confidence_rule(P, labels, "sure", 1.0, np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("strategy", ["label_aware", "calibration"])
def test_every_kernel_gives_the_same_with_the_rule(dtype, strategy):
    """Half-steps (dual, primal, CG; the exact trainer's second right-hand side; the loss), the classifier
    sums and the losses and gradients read the rule exactly as the stored C."""
    n, d = 700, 3
    for m in (2, 9):  # the dual and the primal forms
        P, labels = _data(n, m, dtype, seed=m)
        C, _ = instance_major_confidence(P, labels, strategy, 0.7, dtype)
        rule = confidence_rule(P, labels, strategy, 0.7, dtype)
        rng = np.random.default_rng(1)
        X = rng.standard_normal((d, m)).astype(dtype)
        Yt = rng.standard_normal((n, d)).astype(dtype)
        w = rng.standard_normal(m)
        for solver in ("auto", "primal", "cg"):
            same = [solve_instances(X, P, Ct, 0.3, solver=solver, init=Yt, loss=True) for Ct in (C, rule)]
            np.testing.assert_array_equal(same[0][0], same[1][0])
            assert same[0][1] == same[1][1]
            same = [solve_classifiers(Yt, P, Ct, 0.3, solver=solver, init=X) for Ct in (C, rule)]
            np.testing.assert_array_equal(*same)
        for a, b in zip(solve_instances(X, P, C, 0.3, w, loss=True), solve_instances(X, P, rule, 0.3, w, loss=True)):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(classifier_sums(Yt, P, C), classifier_sums(Yt, P, rule)):
            np.testing.assert_array_equal(a, b)
        assert reconstruction_loss_t(X, Yt, P, C, 0.3) == reconstruction_loss_t(X, Yt, P, rule, 0.3)
        for a, b in zip(reconstruction_loss_grad_t(X, Yt, P, C, 0.3), reconstruction_loss_grad_t(X, Yt, P, rule, 0.3)):
            np.testing.assert_array_equal(a, b)


def _fit(P, labels, rules, monkeypatch, **params):
    monkeypatch.setattr(NumbaBackend, "confidence_rules", rules)
    return CFEnsembleClassifier(latent_dim=4, max_iter=4, tol=0.0, random_state=0, **params).fit(P, labels)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("strategy,trainer,solver", [
    ("label_aware", "als", "auto"), ("label_aware", "als", "cg"), ("certainty", "als", "dual"),
    ("calibration", "exact", "auto"), ("uniform", "joint", "auto"), ("label_aware", "exact", "auto"),
])
def test_fit_with_the_rule_is_the_fit_with_stored_C(monkeypatch, dtype, strategy, trainer, solver):
    data = make_ensemble(n_classifiers=12, n_instances=900, random_state=3)
    fits = [_fit(data.P, data.labels, rules, monkeypatch, dtype=dtype, confidence=strategy, trainer=trainer,
                 solver=solver) for rules in (False, True)]
    np.testing.assert_array_equal(fits[0].transductive_proba_, fits[1].transductive_proba_)
    np.testing.assert_array_equal(fits[0].instance_factors_, fits[1].instance_factors_)
    np.testing.assert_array_equal(fits[0].history_["loss"], fits[1].history_["loss"])


@pytest.mark.parametrize("strategy", ["label_aware", "uniform"])
def test_fit_with_missing_entries_is_the_fit_with_stored_C(monkeypatch, strategy):
    """With unobserved entries a rule stands for C under "label_aware" (0 at the fill value);
    "uniform" keeps a stored C (it needs the mask): both fit as with the stored C."""
    data = make_ensemble(n_classifiers=10, n_instances=600, random_state=4)
    P = data.P.copy()
    P[np.random.default_rng(0).random(P.shape) < 0.2] = np.nan
    fits = [_fit(P, data.labels, rules, monkeypatch, confidence=strategy) for rules in (False, True)]
    np.testing.assert_array_equal(fits[0].transductive_proba_, fits[1].transductive_proba_)


def test_the_numba_backend_stores_no_C_for_a_named_strategy():
    from cfe_fast.backends.numba import BACKEND
    from cfe_fast.core.losses import AggregatorPenalty
    from cfe_fast.training.problem import FitData, Settings

    P, labels = _data(50, 6, np.float32)
    settings = Settings(rho=0.5, penalty=AggregatorPenalty())
    for strategy, lam, stored in (("label_aware", 0.1, False), ("label_aware", 0.0, True), (P.copy(), 0.1, True)):
        data = FitData(P=P, labels=labels, omega=np.ones(int(np.sum(~np.isnan(labels)))), lam=lam, latent_dim=2,
                       confidence=strategy, confidence_alpha=1.0, settings=settings, rng=np.random.default_rng(0))
        problem, _, _ = BACKEND.start_fit(data)
        assert isinstance(problem.C, ConfidenceRule) != stored
        assert problem.C.shape == (6, 50)
