"""Exact-objective and joint trainers: the block steps against the dense
reference, monotone descent, analytic gradients against finite differences."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfe_fast.backends import get_backend
from cfe_fast import reference as ref
from cfe_fast.core.losses import AggregatorPenalty
from cfe_fast.training import aggregator, exact_steps
from cfe_fast.training.problem import InMemoryProblem, Settings
from cfe_fast.training.state import State
from cfe_fast.training.trainers import ExactTrainer, joint_gradients
from conftest import random_problem, rel_error

nb, numpy_backend = get_backend("numba"), get_backend("numpy")


def make_problem(m, n, d, seed, kernels=None, rho=0.7, labeled_fraction=0.5, balanced=True, gamma=0.0, l2=1e-3,
                 variant="exact", shrinkage=0.0):
    X, Y, R, C = random_problem(m, n, d, seed=seed, zero_conf=0.1)
    rng = np.random.default_rng(seed + 1)
    labeled = rng.random(n) < labeled_fraction
    labeled[:2] = True
    y = (rng.random(n) < 0.3).astype(float)
    y[:2] = [0.0, 1.0]
    y_labeled = y[labeled]
    settings = Settings(rho=rho, focal_gamma=gamma, focal_variant=variant,
                        penalty=AggregatorPenalty(l2=l2, prior=shrinkage))
    problem = InMemoryProblem(kernels or nb, R, C, 0.2, settings, labeled, y_labeled,
                              ref.class_weights(y_labeled, balanced))
    return problem, State(0.5 * X, Y, rng.normal(size=m), -0.3)


def reference_objective(p, state):
    labels = np.full(p.R.shape[1], np.nan)
    labels[p.labeled] = p.y_labeled
    balanced = not np.allclose(p.omega, 1.0)
    return ref.objective(state.X, state.Y, p.R, p.C, p.lam, labels, state.w, state.b, p.settings.rho, balanced,
                         p.settings.focal_gamma, "exact", p.settings.penalty.l2, p.settings.penalty.shrinkage)[0]


def as_dtype(p, s, dtype):
    """The problem's data and the state's factors in ``dtype`` (the reference reads the same rounded values)."""
    p.R, p.C = p.R.astype(dtype), p.C.astype(dtype)
    s.X, s.Y = s.X.astype(dtype), np.asarray(s.Y.T, dtype=dtype, order="C").T  # instance-major, as a fit holds it


@pytest.mark.parametrize("kernels", [nb, numpy_backend])
@pytest.mark.parametrize("m,n,d", [(6, 40, 3), (3, 30, 5), (1, 8, 1), (8, 2500, 4)])
@pytest.mark.parametrize("gamma", [0.0, 2.0])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_exact_instance_step_matches_dense_reference(kernels, m, n, d, gamma, dtype, tol):
    p, s = make_problem(m, n, d, seed=m + n + d, kernels=kernels, gamma=gamma)
    as_dtype(p, s, dtype)
    fast, reconstruction = exact_steps.instance_step(p, s.X, s.Y, s.w, s.b)
    dense = ref.exact_instance_step(s.X, p.R, p.C, p.lam, s.Y, s.w, s.b, p.labeled, p.y_labeled, p.a, p.s, gamma)
    assert rel_error(fast, dense) < tol
    # L_rec at the new factors without a pass over R and C (p.R, p.C have no missing entries)
    assert reconstruction == pytest.approx(ref.reconstruction_loss(s.X, fast, p.R, p.C, p.lam), rel=tol)


@pytest.mark.parametrize("m,n,d", [(6, 40, 3), (3, 30, 5), (1, 8, 1), (8, 2500, 4)])
@pytest.mark.parametrize("gamma", [0.0, 2.0])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_exact_classifier_step_with_fast_grams_matches_reference(m, n, d, gamma, dtype, tol):
    p, s = make_problem(m, n, d, seed=2 * m + n, gamma=gamma)
    as_dtype(p, s, dtype)
    fast = exact_steps.classifier_step(p, s.X, s.Y, s.w, s.b)
    dense = ref.exact_classifier_step(s.Y, p.R, p.C, p.lam, s.X, s.w, s.b, p.labeled, p.y_labeled, p.a, p.s, gamma)
    assert rel_error(fast, dense) < tol


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(1, 8), n=st.integers(4, 50), d=st.integers(1, 6), seed=st.integers(0, 2**31),
    rho=st.floats(0.05, 0.95), labeled_fraction=st.floats(0.1, 1.0), balanced=st.booleans(),
    shrinkage=st.sampled_from([0.0, 0.5]),
)
def test_exact_trainer_never_increases_the_objective(m, n, d, seed, rho, labeled_fraction, balanced, shrinkage):
    """Property: every block step (X, Y, aggregator) of the exact trainer keeps L from increasing."""
    p, s = make_problem(m, n, d, seed, rho=rho, labeled_fraction=labeled_fraction, balanced=balanced,
                        shrinkage=shrinkage)
    values = [reference_objective(p, s)]
    for _ in range(3):
        s.X = exact_steps.classifier_step(p, s.X, s.Y, s.w, s.b)
        values.append(reference_objective(p, s))
        s.Y = exact_steps.instance_step(p, s.X, s.Y, s.w, s.b)[0]
        values.append(reference_objective(p, s))
        aggregator.fit(p, s)
        values.append(reference_objective(p, s))
    increases = np.diff(values)
    assert np.all(increases <= 1e-10 * np.abs(values[:-1])), (values, increases)


def test_exact_trainer_with_focal_loss_never_increases_the_objective():
    p, s = make_problem(6, 60, 3, seed=5, gamma=2.0)
    trainer = ExactTrainer()
    values = [reference_objective(p, s)]
    for _ in range(5):
        trainer.step(p, s, fit_aggregator=True)
        values.append(reference_objective(p, s))
    assert np.all(np.diff(values) <= 1e-10 * np.abs(values[:-1]))


def _finite_difference(f, x, h=1e-6):
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = h
        grad[idx] = (f(x + e) - f(x - e)) / (2 * h)
    return grad


@pytest.mark.parametrize("gamma,balanced,shrinkage", [(0.0, True, 0.0), (0.0, False, 0.0), (2.0, True, 0.0),
                                                      (0.0, True, 0.3)])
def test_joint_gradients_match_finite_differences(gamma, balanced, shrinkage):
    p, s = make_problem(4, 12, 2, seed=3, kernels=numpy_backend, gamma=gamma, balanced=balanced, l2=0.05,
                        shrinkage=shrinkage)
    value, gX, gY, gw, gb = joint_gradients(p, s.X, s.Y, s.w, s.b)
    assert value == pytest.approx(reference_objective(p, s), rel=1e-12)

    def at(**changes):
        current = dict(X=s.X, Y=s.Y, w=s.w, b=s.b)
        return reference_objective(p, State(**{**current, **changes}))

    np.testing.assert_allclose(gX, _finite_difference(lambda X: at(X=X), s.X), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(gY, _finite_difference(lambda Y: at(Y=Y), s.Y), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(gw, _finite_difference(lambda w: at(w=w), s.w), rtol=1e-5, atol=1e-9)
    assert gb == pytest.approx(_finite_difference(lambda b: at(b=b[0]), np.array([s.b]))[0], rel=1e-5, abs=1e-9)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_joint_gradients_numba_match_reference(dtype, tol):
    p_fast, s = make_problem(7, 3000, 3, seed=9)
    p_ref, _ = make_problem(7, 3000, 3, seed=9, kernels=numpy_backend)
    if dtype == np.float32:
        p_fast.R, p_fast.C = p_fast.R.astype(dtype), p_fast.C.astype(dtype)
        p_ref.R, p_ref.C = p_fast.R.astype(np.float64), p_fast.C.astype(np.float64)
        s.X, s.Y = s.X.astype(dtype), s.Y.astype(dtype)
    fast = joint_gradients(p_fast, s.X, s.Y, s.w, s.b)
    slow = joint_gradients(p_ref, s.X, s.Y, s.w, s.b)
    assert abs(fast[0] - slow[0]) <= tol * abs(slow[0])
    for a, b in zip(fast[1:4], slow[1:4]):
        assert rel_error(a, b) < tol
    assert fast[4] == pytest.approx(slow[4], rel=tol)


@pytest.mark.parametrize("kernels", [nb, numpy_backend])
def test_weighted_bce_aggregator_reaches_its_fixed_point(kernels):
    """focal_variant="weighted_bce" has no loss: the aggregator fit must find (w, b) where the
    variant's gradient plus the ridge, computed by the dense reference, vanishes."""
    p, s = make_problem(6, 400, 3, seed=11, kernels=kernels, gamma=1.5, l2=1e-2, variant="weighted_bce")
    s.w, s.b = np.zeros(6), 0.0
    aggregator.fit(p, s, max_steps=50)
    w, b = s.w, s.b
    terms = ref.aggregator_terms(s.X, s.Y[:, p.labeled], p.y_labeled, p.omega, w, b, 1.5, "weighted_bce")
    residual = np.append(terms.grad_w + p.settings.penalty.gradient(w), terms.grad_b)
    start = ref.aggregator_terms(s.X, s.Y[:, p.labeled], p.y_labeled, p.omega, np.zeros(6), 0.0, 1.5, "weighted_bce")
    assert np.linalg.norm(residual) <= 1e-5 * np.linalg.norm(np.append(start.grad_w, start.grad_b))


def test_adam_steps_equal_the_textbook_update_whatever_the_layouts():
    from cfe_fast.training.adam import Adam

    rng = np.random.default_rng(0)
    params = [rng.random((100, 5)).T.copy(order="F"), rng.random(7), np.array([0.3])]
    expected = [p.copy(order="K") for p in params]
    moments = [(np.zeros_like(p), np.zeros_like(p)) for p in params]
    adam = Adam(params, 0.01)
    for t in range(1, 6):
        grads = [np.ascontiguousarray(rng.standard_normal(p.shape)) for p in params]  # C order for an F-order Y
        adam.step(params, grads, 0.01 * t)
        c1, c2 = 1 - 0.9**t, 1 - 0.999**t
        for p, g, (m, v) in zip(expected, grads, moments):
            m *= 0.9
            m += (1 - 0.9) * g
            v *= 0.999
            v += (1 - 0.999) * g * g
            p -= 0.01 * t * (m / c1) / (np.sqrt(v / c2) + 1e-8)
    for p, q in zip(params, expected):
        np.testing.assert_array_equal(p, q)

