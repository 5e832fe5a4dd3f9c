"""Shared helpers: random CF-Ensemble problems in the layout of docs/method.md."""

import numpy as np
import pytest


def random_problem(m, n, d, seed=0, dtype=np.float64, zero_conf=0.0, extremes=0.0):
    """X (d, m), Y (d, n), R and C (m, n) with optional zero confidences and 0/1 probabilities."""
    rng = np.random.default_rng(seed)
    R = rng.random((m, n))
    if extremes:
        mask = rng.random((m, n)) < extremes
        R[mask] = rng.integers(0, 2, size=mask.sum())
    C = rng.uniform(0.1, 1.0, (m, n))
    if zero_conf:
        C[rng.random((m, n)) < zero_conf] = 0.0
    X = rng.standard_normal((d, m))
    Y = rng.standard_normal((d, n))
    return tuple(a.astype(dtype) for a in (X, Y, R, C))


def aggregator_case(n_labeled, dtype, m=7, d=4):
    """(X, Y, labels, class weights, w, b) of a random aggregator problem on n_labeled instances."""
    from cfe_fast.reference import class_weights

    X, Y, _, _ = random_problem(m, n_labeled, d, seed=n_labeled, dtype=dtype)
    rng = np.random.default_rng(1)
    y = (rng.random(n_labeled) < 0.3).astype(float)
    return X, Y, y, class_weights(y), rng.normal(size=m), -0.4


def rel_error(actual, expected):
    """Norm-wise relative error ||a - e|| / max(||e||, tiny)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    return float(np.linalg.norm(actual - expected) / max(np.linalg.norm(expected), 1e-300))


@pytest.fixture
def seed_data():
    from cfe_fast import make_ensemble

    return make_ensemble(n_classifiers=10, n_instances=400, random_state=3)
