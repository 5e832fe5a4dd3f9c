"""The in-memory ALS engine: how the estimator drives a backend's kernels.

An engine owns the placement of R, C and the factors, and exposes one
iteration of ALS as steps. :class:`InMemoryEngine` holds NumPy arrays and
calls a kernel module (Numba or the NumPy reference);
:class:`cfe_fast.dask_backend.DaskEngine` has the same methods over chunks on
a cluster. Methods:

``init_instance_factors(rng, draw)``
    Y0 = ``draw(rng, n)`` (instance-major rows).
``classifier_step() -> X``
    X-step from the current Y.
``instance_step(X)``
    Y-step with X (remembered as the current X).
``reconstruction_loss()``, ``aggregator_terms(w, b, focal_gamma, focal_variant, hessian)``
    Objective terms at the current (X, Y).
``labeled_factors()``, ``instance_factors()``
    Y of the labeled instances (d, n_L) and of all instances (d, n).
"""

import numpy as np


class InMemoryEngine:
    """ALS over in-memory arrays with a kernel module of :mod:`cfe_fast.backends`.

    Parameters
    ----------
    kernels : module
        Backend kernel module (SPEC layout).
    R, C : ndarray (m, n)
    labels : ndarray (n,)
        0/1 for labeled instances, NaN for unlabeled ones.
    omega : ndarray (n_L,)
        Weights of the labeled instances.
    lam : float
    """

    def __init__(self, kernels, R, C, labels, omega, lam):
        self.kernels = kernels
        self.R, self.C, self.lam = R, C, lam
        self._labeled = ~np.isnan(labels)
        self._y_labeled = labels[self._labeled]
        self._omega = omega
        self.X = self.Y = self._Y_labeled = None

    def init_instance_factors(self, rng, draw):
        self.Y = draw(rng, self.R.shape[1]).T

    def classifier_step(self):
        return self.kernels.update_classifier_factors(self.Y, self.R, self.C, self.lam)

    def instance_step(self, X):
        self.X = X
        self.Y = self.kernels.update_instance_factors(X, self.R, self.C, self.lam)
        self._Y_labeled = self.Y[:, self._labeled]

    def reconstruction_loss(self):
        return self.kernels.reconstruction_loss(self.X, self.Y, self.R, self.C, self.lam)

    def aggregator_terms(self, w, b, focal_gamma=0.0, focal_variant="exact", hessian=False):
        return self.kernels.aggregator_terms(
            self.X, self._Y_labeled, self._y_labeled, self._omega, w, b, focal_gamma, focal_variant, hessian
        )

    def labeled_factors(self):
        return self._Y_labeled

    def instance_factors(self):
        return self.Y
