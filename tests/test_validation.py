"""Bad input gets a clear error naming the argument, never a silent NaN."""

import numpy as np
import pytest

import cfe_fast
from cfe_fast import CFEnsembleClassifier
from conftest import random_problem


@pytest.fixture
def problem():
    return random_problem(4, 10, 2, seed=0)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize(
    "mutate,error,match",
    [
        (lambda X, R, C: (X, np.where(R > 0.9, np.nan, R), C), ValueError, "R contains NaN"),
        (lambda X, R, C: (X, np.where(R > 0.9, np.inf, R), C), ValueError, "R contains NaN or infinite"),
        (lambda X, R, C: (X, R * 1.5, C), ValueError, r"probabilities in \[0, 1\]"),
        (lambda X, R, C: (X, R - 0.5, C), ValueError, r"probabilities in \[0, 1\]"),
        (lambda X, R, C: (X, R, -C), ValueError, "C must be non-negative"),
        (lambda X, R, C: (X, R, np.where(C > 0.5, np.nan, C)), ValueError, "C contains NaN"),
        (lambda X, R, C: (X, R, C[:, :-1]), ValueError, "C has shape"),
        (lambda X, R, C: (X[:, :-1], R, C), ValueError, "X has shape"),
        (lambda X, R, C: (X, R.astype(str), C), TypeError, "R must hold real numbers"),
        (lambda X, R, C: (X, R.astype(complex), C), TypeError, "R must hold real numbers"),
        (lambda X, R, C: (X, R[0], C), ValueError, "R must be 2-dimensional"),
        (lambda X, R, C: (X[:0], R, C), ValueError, "latent dimension >= 1"),
    ],
)
def test_functional_api_rejects_bad_input(problem, backend, mutate, error, match):
    X, _, R, C = problem
    X, R, C = mutate(X, R, C)
    with pytest.raises(error, match=match):
        cfe_fast.update_instance_factors(X, R, C, 0.1, backend=backend)


def test_lam_checks(problem):
    X, Y, R, C = problem
    with pytest.raises(ValueError, match="lam must be >= 0"):
        cfe_fast.update_instance_factors(X, R, C, -1.0)
    with pytest.raises(TypeError, match="lam must be a finite real"):
        cfe_fast.update_instance_factors(X, R, C, float("nan"))
    C[:, 3] = 0.0
    with pytest.raises(ValueError, match="instance 3 has zero confidence"):
        cfe_fast.update_instance_factors(X, R, C, 0.0)
    C[:, 3] = 0.5
    C[2] = 0.0
    with pytest.raises(ValueError, match="classifier 2 has zero confidence"):
        cfe_fast.update_classifier_factors(Y, R, C, 0.0)
    X3 = np.ones((6, 4))
    with pytest.raises(ValueError, match="latent_dim=6 > 4"):
        cfe_fast.update_instance_factors(X3, R, np.ones_like(R), 0.0)


def test_inputs_are_not_modified(problem):
    X, Y, R, C = problem
    copies = [a.copy() for a in (X, Y, R, C)]
    cfe_fast.update_instance_factors(X, R, C, 0.1)
    cfe_fast.update_classifier_factors(Y, R, C, 0.1)
    for before, after in zip(copies, (X, Y, R, C)):
        np.testing.assert_array_equal(before, after)


def test_unknown_backend(problem):
    X, _, R, C = problem
    with pytest.raises(ValueError, match="unknown backend"):
        cfe_fast.update_instance_factors(X, R, C, 0.1, backend="fortran")


def test_aggregator_loss_grad_checks(problem):
    X, Y, _, _ = problem
    labels = np.array([1, 0, np.nan, -1, 1, 0, 0, 0, 1, 0], dtype=float)
    loss, gw, gb = cfe_fast.aggregator_loss_grad(X, Y, labels, np.ones(4), 0.0)
    assert np.isfinite(loss) and gw.shape == (4,) and np.isfinite(gb)
    with pytest.raises(ValueError, match="labels must hold 0, 1"):
        cfe_fast.aggregator_loss_grad(X, Y, np.where(labels == 1, 2, labels), np.ones(4), 0.0)
    with pytest.raises(ValueError, match="no labeled instance"):
        cfe_fast.aggregator_loss_grad(X, Y, np.full(10, np.nan), np.ones(4), 0.0)
    with pytest.raises(ValueError, match="w has 3 entries"):
        cfe_fast.aggregator_loss_grad(X, Y, labels, np.ones(3), 0.0)
    with pytest.raises(ValueError, match="focal_variant"):
        cfe_fast.aggregator_loss_grad(X, Y, labels, np.ones(4), 0.0, focal_gamma=1, focal_variant="x")


@pytest.fixture
def fit_data(seed_data):
    return seed_data.P, seed_data.labels


@pytest.mark.parametrize(
    "params,y_change,error,match",
    [
        ({}, lambda y: np.where(y == 1, 0.5, y), ValueError, r"continuous values \[0.5\]"),
        ({}, lambda y: np.where(np.isnan(y), np.nan, 0.0), ValueError, "one class only"),
        ({}, lambda y: y[:-1], ValueError, "entries but there are"),
        ({}, lambda y: np.where(y == 1, "yes", y.astype(object)), TypeError, "y mixes numbers and other labels"),
        ({"latent_dim": 0}, None, ValueError, "latent_dim must be an integer >= 1"),
        ({"lam": -0.1}, None, ValueError, "lam must be >= 0"),
        ({"rho": 1.5}, None, ValueError, "rho must be in"),
        ({"aggregator": "median"}, None, ValueError, "aggregator must be one of"),
        ({"confidence": "psychic"}, None, ValueError, "unknown confidence strategy"),
        ({"confidence": np.ones((3, 3))}, None, ValueError, "confidence has shape"),
        ({"dtype": "float16"}, None, ValueError, "dtype must be one of"),
        ({"backend": "fortran"}, None, ValueError, "unknown backend"),
        ({"class_weight": "auto"}, None, ValueError, "class_weight must be"),
        ({"max_iter": 0}, None, ValueError, "max_iter must be"),
    ],
)
def test_estimator_rejects_bad_input(fit_data, params, y_change, error, match):
    P, y = fit_data
    y = y_change(y) if y_change else y
    with pytest.raises(error, match=match):
        CFEnsembleClassifier(**{"max_iter": 2, **params}).fit(P, y)


def test_estimator_rejects_bad_probabilities(fit_data):
    P, y = fit_data
    with pytest.raises(ValueError, match="X at row .* holds inf"):
        CFEnsembleClassifier(max_iter=2).fit(np.where(P > 0.9, np.inf, P), y)
    with pytest.raises(ValueError, match=r"X must hold probabilities in \[0, 1\]"):
        CFEnsembleClassifier(max_iter=2).fit(P * 2, y)
    model = CFEnsembleClassifier(max_iter=2, latent_dim=3).fit(P, y)
    with pytest.raises(ValueError, match="X has 9 features, but CFEnsembleClassifier is expecting 10"):
        model.predict_proba(P[:, :-1])
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        model.predict_proba(P + 1)


def test_lam_zero_with_zero_confidence_row(fit_data):
    P, y = fit_data
    C = np.ones_like(P)
    C[5] = 0.0
    with pytest.raises(ValueError, match="instance 5 has zero confidence"):
        CFEnsembleClassifier(lam=0.0, latent_dim=3, confidence=C, max_iter=2).fit(P, y)
