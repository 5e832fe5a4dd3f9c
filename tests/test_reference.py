"""The reference checked independently of its own code.

Half-step solutions must zero the gradient of the ridge objective they solve;
the aggregator gradient and Hessian must match finite differences of the loss.
"""

import numpy as np
import pytest
from scipy.special import expit

from cfe_fast import reference as ref
from conftest import random_problem


@pytest.mark.parametrize("m,n,d", [(6, 30, 3), (3, 20, 5), (1, 4, 1), (8, 1, 2)])
def test_instance_step_zeroes_its_gradient(m, n, d):
    X, _, R, C = random_problem(m, n, d, seed=1, zero_conf=0.2)
    lam = 0.3
    Y = ref.update_instance_factors(X, R, C, lam)
    residual = R - X.T @ Y
    grad = -2 * X @ (C * residual) + 2 * lam * Y  # d/dY of sum c (r - x^T y)^2 + lam |Y|^2
    assert np.abs(grad).max() < 1e-10 * max(1.0, np.abs(X).max() ** 2)
    Y_again, loss = ref.update_instance_factors(X, R, C, lam, with_loss=True)
    np.testing.assert_array_equal(Y_again, Y)
    assert loss == pytest.approx((np.sum(C * residual**2) + lam * (np.sum(X**2) + np.sum(Y**2))) / R.size, rel=1e-12)


@pytest.mark.parametrize("m,n,d", [(6, 30, 3), (3, 20, 5), (1, 4, 1)])
def test_classifier_step_zeroes_its_gradient(m, n, d):
    _, Y, R, C = random_problem(m, n, d, seed=2, zero_conf=0.2)
    lam = 0.3
    X = ref.update_classifier_factors(Y, R, C, lam)
    grad = -2 * Y @ (C * (R - X.T @ Y)).T + 2 * lam * X
    assert np.abs(grad).max() < 1e-10 * max(1.0, n * np.abs(Y).max() ** 2)


def test_singular_system_raises():
    X = np.ones((2, 3))
    R = np.full((3, 2), 0.5)
    C = np.zeros((3, 2))
    with pytest.raises(ref.SingularSystemError, match="instance 0"):
        ref.update_instance_factors(X, R, C, 0.0)


def _fd_grad(f, theta, h=1e-6):
    return np.array([(f(theta + h * e) - f(theta - h * e)) / (2 * h) for e in np.eye(theta.size)])


@pytest.mark.parametrize("gamma,variant", [(0.0, "exact"), (2.0, "exact"), (0.5, "exact")])
@pytest.mark.parametrize("balanced", [True, False])
def test_aggregator_gradient_and_hessian_match_finite_differences(gamma, variant, balanced):
    m, n, d = 5, 40, 3
    X, Y, _, _ = random_problem(m, n, d, seed=4)
    X *= 0.5
    rng = np.random.default_rng(5)
    y = (rng.random(n) < 0.3).astype(float)
    omega = ref.class_weights(y, balanced)
    theta = np.append(rng.normal(size=m), 0.2)

    def loss(t):
        return ref.aggregator_terms(X, Y, y, omega, t[:-1], t[-1], gamma, variant).loss

    def grad(t):
        terms = ref.aggregator_terms(X, Y, y, omega, t[:-1], t[-1], gamma, variant)
        return np.append(terms.grad_w, terms.grad_b)

    terms = ref.aggregator_terms(X, Y, y, omega, theta[:-1], theta[-1], gamma, variant, hessian=True)
    np.testing.assert_allclose(np.append(terms.grad_w, terms.grad_b), _fd_grad(loss, theta), rtol=1e-6, atol=1e-8)
    fd_hessian = np.array([_fd_grad(lambda t: grad(t)[k], theta) for k in range(m + 1)])
    np.testing.assert_allclose(terms.hessian, fd_hessian, rtol=1e-5, atol=1e-7)
    latent = ref.aggregator_terms(X, Y, y, omega, theta[:-1], theta[-1], gamma, variant, hessian="latent")
    lift = np.zeros((X.shape[0] + 1, m + 1))  # (w, b) -> (X w, b)
    lift[:-1, :-1], lift[-1, -1] = X, 1.0
    np.testing.assert_allclose(lift.T @ latent.latent_hessian @ lift, terms.hessian, rtol=1e-10, atol=1e-12)


def test_bce_loss_is_stable_at_extreme_logits():
    z = np.array([-800.0, -40.0, 0.0, 40.0, 800.0])
    for label in (0.0, 1.0):
        loss, grad, curv = ref.sample_loss_terms(z, np.full(z.size, label))
        assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad)) and np.all(np.isfinite(curv))
        expected = np.logaddexp(0, z) - label * z
        np.testing.assert_allclose(loss, expected, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(grad, expit(z) - label, atol=1e-15)


def test_seeds_focal_variant_is_not_the_focal_gradient():
    z = np.linspace(-3, 3, 7)
    y = np.ones(7)
    _, exact, _ = ref.sample_loss_terms(z, y, 2.0, "exact")
    _, weighted_bce, _ = ref.sample_loss_terms(z, y, 2.0, "weighted_bce")
    assert np.abs(exact - weighted_bce).max() > 1e-2


def test_class_weights_balance_the_classes():
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 0], dtype=float)
    omega = ref.class_weights(y)
    assert omega[y == 1].sum() == pytest.approx(omega[y == 0].sum())
    assert omega[0] == pytest.approx(10 / 2)
    np.testing.assert_array_equal(ref.class_weights(np.zeros(4)), np.ones(4))  # a class absent
    np.testing.assert_array_equal(ref.class_weights(y, balanced=False), np.ones(10))


def test_confidence_strategies():
    R = np.array([[0.9, 0.2, 0.5], [0.4, 0.7, 0.0]])
    labels = np.array([1.0, 0.0, np.nan])
    np.testing.assert_allclose(ref.confidence(R, labels, "certainty"), np.abs(R - 0.5))
    np.testing.assert_allclose(ref.confidence(R, labels, "uniform"), np.ones_like(R))
    la = ref.confidence(R, labels, "label_aware", alpha=1.0)
    np.testing.assert_allclose(la[:, 0], np.abs(R[:, 0] - 0.5) * (1 + R[:, 0]))  # positive
    np.testing.assert_allclose(la[:, 1], np.abs(R[:, 1] - 0.5) * (1 + 1 - R[:, 1]))  # negative
    np.testing.assert_allclose(la[:, 2], np.abs(R[:, 2] - 0.5))  # unlabeled unchanged
    cal = ref.confidence(R, labels, "calibration", floor=0.05)
    brier = np.mean((R[:, :2] - [1, 0]) ** 2, axis=1)
    np.testing.assert_allclose(cal[:, 0], 1 - brier)
    with pytest.raises(ValueError, match="unknown confidence"):
        ref.confidence(R, labels, "nope")
