"""Numba backend: the kernels compiled for the CPU, parallel over instances.

R and C are used instance-major (n, m), the estimator's native layout
(``P = R.T``), so every chunk of instances is a contiguous block; the kernels
of :mod:`.instance_step`, :mod:`.classifier_step` and :mod:`.losses` work on
that layout, and this module adapts them to the contract's (m, n) layout.
BLAS runs on one thread inside the kernels, which parallelise themselves.
With C None (confidence 1 everywhere) the half-steps are those of
:mod:`..shared_gram`: one Gram for every system, a few BLAS products.
A sparse P (``scipy.sparse``, stored entries = observed) takes the path of
:mod:`.sparse`, whose kernels cost time proportional to the observed entries.
"""

import numpy as np

from ... import config
from ..._float64 import working_dtype
from .. import CAPABILITIES, shared_gram
from ...core.confidence import ConfidenceRule
from ...core.sparse import is_sparse
from ..in_memory import InMemoryBackend
from . import compile_notice, sparse
from .classifier_step import classifier_sums, solve_classifiers
from .instance_step import choose_solver, solve_instances
from .losses import aggregator_terms_t, normalised_loss, reconstruction_loss_grad_t, reconstruction_loss_t

# Numba's threading layer loads OpenMP at the first parallel kernel, after this
config.apply_openmp_wait_policy()
compile_notice.install()


def _instance_major(A, dtype):
    return np.ascontiguousarray(np.asarray(A).T, dtype=dtype)


def _confidence(C, dtype):
    """The kernels' instance-major C: a rule as it is (the kernels compute its blocks), an array transposed."""
    return C if isinstance(C, ConfidenceRule) else _instance_major(C, dtype)


class NumbaBackend(InMemoryBackend):
    """The contract of :class:`~cfe_fast.backends.contract.Backend` on Numba kernels.

    Results are float32 for float32 R and float64 otherwise; systems are
    factorised in float64 either way.
    """

    name = "numba"
    capabilities = CAPABILITIES["numba"]
    confidence_rules = True

    def choose_solver(self, m, d, lam):
        return choose_solver(m, d, lam)

    def start_fit(self, data):
        return sparse.start_fit(self, data) if is_sparse(data.P) else super().start_fit(data)

    def fold_in_block(self, X, rows, C, lam):
        return sparse.fold_in_block(X, rows, C, lam) if is_sparse(rows) else super().fold_in_block(X, rows, C, lam)

    def update_instance_factors(self, X, R, C, lam, *, solver="auto", init=None, with_loss=False):
        if C is None:
            Yt, *loss = shared_gram.instance_factors(X, R, lam, np, with_loss=with_loss)
            return (Yt.T, *loss) if with_loss else Yt.T
        dtype = working_dtype(np.asarray(R))
        start = _instance_major(init, dtype) if solver == "cg" and init is not None else None
        result = solve_instances(X, _instance_major(R, dtype), _confidence(C, dtype), lam,
                                 solver=solver, init=start, loss=with_loss)
        if not with_loss:
            return result.T
        Yt, sse = result
        return Yt.T, normalised_loss(sse, X, Yt, lam)

    def update_classifier_factors(self, Y, R, C, lam, *, solver="auto", init=None):
        if C is None:
            return shared_gram.classifier_factors(Y, R, lam, np)
        dtype = working_dtype(np.asarray(R))
        return solve_classifiers(_instance_major(Y, dtype), _instance_major(R, dtype), _confidence(C, dtype), lam,
                                 solver=solver, init=init if solver == "cg" else None)

    def fold_in(self, X, R, C, lam):
        return self.update_instance_factors(X, R, C, lam)

    def reconstruction_loss(self, X, Y, R, C, lam):
        if C is None:
            return shared_gram.reconstruction_loss(X, Y, R, lam, np)
        dtype = working_dtype(np.asarray(R))
        return reconstruction_loss_t(X, _instance_major(Y, dtype), _instance_major(R, dtype),
                                     _confidence(C, dtype), lam)

    def aggregator_terms(self, X, Y_labeled, y_labeled, omega, w, b, focal_gamma=0.0, focal_variant="exact",
                         hessian=False):
        return aggregator_terms_t(X, np.asarray(Y_labeled).T, y_labeled, omega, w, b, focal_gamma, focal_variant,
                                  hessian)

    def instance_solves(self, X, R, C, lam, w, *, with_loss=False):
        if C is None:
            Yt, Zt, *loss = shared_gram.instance_factors(X, R, lam, np, w=w, with_loss=with_loss)
            return (Yt.T, Zt.T, *loss)
        dtype = working_dtype(np.asarray(R))
        Yt, Zt, *sse = solve_instances(X, _instance_major(R, dtype), _confidence(C, dtype), lam, w,
                                       loss=with_loss)
        return (Yt.T, Zt.T, normalised_loss(sse[0], X, Yt, lam)) if with_loss else (Yt.T, Zt.T)

    def classifier_gram_terms(self, Y, R, C):
        if C is None:
            return shared_gram.gram_terms(Y, R, np)
        dtype = working_dtype(np.asarray(R))
        G, B = classifier_sums(_instance_major(Y, dtype), _instance_major(R, dtype), _confidence(C, dtype))
        d = B.shape[0]
        rows, cols = np.tril_indices(d)
        full = np.zeros((G.shape[1], d, d))
        full[:, rows, cols] = G.T
        full[:, cols, rows] = G.T
        return full, B.T

    def reconstruction_gradient(self, X, Y, R, C, lam):
        if C is None:
            return shared_gram.reconstruction_gradient(X, Y, R, lam, np)
        dtype = working_dtype(np.asarray(R))
        _, gX, gYt = reconstruction_loss_grad_t(
            np.asarray(X, dtype=dtype), _instance_major(Y, dtype), _instance_major(R, dtype),
            _confidence(C, dtype), lam,
        )
        return gX, gYt.T


BACKEND = NumbaBackend()
