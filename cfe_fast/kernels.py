"""Public functional API: the hot kernels with input checks and a ``backend=`` switch.

All functions take the layout of docs/method.md: R and C are (m, n) =
(classifiers, instances), X is (d, m), Y is (d, n). The result dtype is
float32 when R is float32 (Numba and CuPy backends) and float64 otherwise;
the NumPy reference always computes in float64.
"""

import numpy as np

from ._validation import (
    as_float_array,
    check_confidence,
    check_labels,
    check_lam,
    check_probabilities,
    check_real,
    check_solvable,
)
from .backends import get_backend
from .core.losses import class_weights
from .parameters import PARAMETERS


def _check_problem(F, R, C, lam, factor_name, factor_axis):
    R = check_probabilities(R, "R")
    dtype = R.dtype
    C = check_confidence(C, R.shape, "C", dtype)
    F = as_float_array(F, factor_name, 2, dtype)
    if F.shape[1] != R.shape[factor_axis]:
        raise ValueError(
            f"{factor_name} has shape {F.shape} but R has shape {R.shape}: "
            f"expected {factor_name}.shape[1] == {R.shape[factor_axis]}"
        )
    if F.shape[0] < 1:
        raise ValueError(f"{factor_name} must have latent dimension >= 1")
    lam = check_lam(lam)
    check_solvable(C, lam, F.shape[0], axis=factor_axis)
    return F, R, C, lam


def _backend_for(name, solver, init, init_shape):
    """The backend ``name``, with ``solver`` checked against its capabilities and ``init`` against its shape."""
    backend = get_backend(name)
    backend.capabilities.check(name, solver=solver)
    if init is not None:
        init = as_float_array(init, "init", 2)
        if init.shape != init_shape:
            raise ValueError(f"init has shape {init.shape}; expected {init_shape}")
    return backend, init


def update_instance_factors(X, R, C, lam, *, backend="numba", solver="auto", init=None):
    """Instance half-step of confidence-weighted ALS.

    Solves ``y_i = (X C_i X^T + lam I)^-1 X C_i r_i`` for every instance i.

    Parameters
    ----------
    X : array (d, m)
        Classifier factors.
    R : array (m, n)
        Probabilities in [0, 1].
    C : array (m, n)
        Non-negative confidences.
    lam : float
        Ridge penalty (>= 0; 0 is refused where a system would be singular).
    backend : {"numba", "numpy", "cupy", "dask"}
    solver : {"auto", "dual", "primal", "cg"}, default="auto"
        Exact ``"dual"`` (m x m systems) or ``"primal"`` (d x d systems);
        ``"auto"`` takes the backend's own rule
        (:meth:`~cfe_fast.backends.contract.Backend.choose_solver`). ``"cg"``
        is approximate: a few Jacobi-preconditioned conjugate-gradient steps
        per system, warm-started from ``init``. The NumPy reference is exact
        and ignores the solver; what each backend accepts is in its
        ``capabilities.solvers``.
    init : array (d, n), optional
        Start of the CG iterations (e.g. the previous Y); zeros if None.

    Returns
    -------
    Y : ndarray (d, n)

    Raises
    ------
    SingularSystemError
        If a system is numerically singular.
    """
    X, R, C, lam = _check_problem(X, R, C, lam, "X", 0)
    kernels, init = _backend_for(backend, solver, init, (X.shape[0], R.shape[1]))
    return kernels.update_instance_factors(X, R, C, lam, solver=solver, init=init)


def update_classifier_factors(Y, R, C, lam, *, backend="numba", solver="auto", init=None):
    """Classifier half-step: ``x_u = (Y C_u Y^T + lam I)^-1 Y C_u r_u`` for every u.

    Parameters are as in :func:`update_instance_factors` with Y (d, n) in place
    of X and ``init`` of shape (d, m). Every exact solver builds the m d x d
    Grams; ``"cg"`` runs a few CG steps instead (approximate). Returns X of shape (d, m).
    """
    Y, R, C, lam = _check_problem(Y, R, C, lam, "Y", 1)
    kernels, init = _backend_for(backend, solver, init, (Y.shape[0], R.shape[0]))
    return kernels.update_classifier_factors(Y, R, C, lam, solver=solver, init=init)


def aggregator_loss_grad(X, Y, labels, w, b, *, class_weight=True, focal_gamma=0.0,
                         focal_variant="exact", backend="numba"):
    """Supervised loss of the aggregator and its gradient, without forming R_hat.

    ``L_sup = sum_i omega_i loss(y_i, sigma(w^T X^T y_i + b)) / sum_i omega_i``
    over the labeled instances, computed from ``v = X w`` in O(n_labeled d).

    Parameters
    ----------
    X : array (d, m)
    Y : array (d, n)
    labels : array (n,)
        0/1, NaN or -1 for unlabeled.
    w : array (m,), b : float
    class_weight : bool
        Inverse class-frequency weights (docs/method.md); unit weights when False.
    focal_gamma : float
        0 for binary cross-entropy, > 0 for focal loss.
    focal_variant : {"exact", "weighted_bce"}
        True focal gradient, or the original implementation's BCE gradient
        weighted by (1 - p_t)^gamma.

    Returns
    -------
    loss : float
    grad_w : ndarray (m,)
    grad_b : float
    """
    X = as_float_array(X, "X", 2)
    Y = as_float_array(Y, "Y", 2)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X {X.shape} and Y {Y.shape} must have the same latent dimension")
    labels = check_labels(labels, Y.shape[1], "labels")
    w = as_float_array(w, "w", 1, np.float64)
    if w.shape[0] != X.shape[1]:
        raise ValueError(f"w has {w.shape[0]} entries but X has {X.shape[1]} classifiers")
    b = check_real(b, "b")
    PARAMETERS["focal_gamma"].check(focal_gamma)
    PARAMETERS["focal_variant"].check(focal_variant)
    if not isinstance(class_weight, (bool, np.bool_)):
        raise TypeError(f"class_weight must be True or False, got {class_weight!r}")
    labeled = ~np.isnan(labels)
    if not labeled.any():
        raise ValueError("labels has no labeled instance: the supervised loss is undefined")
    y = labels[labeled]
    terms = get_backend(backend).aggregator_terms(
        X, Y[:, labeled], y, class_weights(y, class_weight), w, b, float(focal_gamma), focal_variant, False
    )
    return terms.loss, terms.grad_w, terms.grad_b
