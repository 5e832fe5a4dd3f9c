"""The ALS kernels when every entry has confidence 1 (``C is None`` in the contract): one shared Gram.

With c_ui = 1 at every (u, i) (the "uniform" strategy on data without
missing entries), every instance system of docs/method.md is X Xᵀ + λI and
every classifier system Y Yᵀ + λI, so a half-step is one d × d
factorisation and two matrix products over R, 2 m n d + n d² flops
instead of the m n d² of the per-system Grams:

    Y = (X Xᵀ + λI)⁻¹ X R,      X = (Y Yᵀ + λI)⁻¹ Y Rᵀ.

The functions take the array module ``xp`` (NumPy or CuPy) of the backend
that calls them; R is read in blocks of instances converted to float64
(about ``config.FLOAT64_BLOCK_BYTES`` each), so no m × n temporary is made;
sums, the factorisation and the right-hand sides are float64, the factors
come back in R's working dtype as the backends' other kernels give them.
The shared system is factorised on the host and refused, as the
per-system kernels refuse theirs, when a pivot falls to
``PIVOT_RTOL`` times its diagonal entry or below.
"""

import numpy as np
from scipy.sparse import issparse
from sklearn.utils.extmath import svd_flip

from .._float64 import blocks, gram64, working_dtype
from ..core.losses import normalised_reconstruction_loss
from ..errors import PIVOT_RTOL, singular_system_error


def _host(a):
    """A NumPy copy of a (small) array of either module."""
    return a.get() if hasattr(a, "get") else np.asarray(a)


def shared_inverse(G, lam, what, xp):
    """(G + lam I)⁻¹ (d, d) float64 where ``xp`` computes, from a Cholesky factorisation on the host.

    Raises
    ------
    SingularSystemError
        The system is singular or numerically so (the pivot rule of the
        per-system kernels); it is that of every ``what`` ("instance" or
        "classifier"), the first of which is named.
    """
    A = _host(G) + lam * np.eye(G.shape[0])
    try:
        L = np.linalg.cholesky(A)
    except np.linalg.LinAlgError:
        raise singular_system_error(what, 0) from None
    if not np.all(np.diag(L) ** 2 > PIVOT_RTOL * np.diag(A)):
        raise singular_system_error(what, 0)
    L_inv = np.linalg.solve(L, np.eye(A.shape[0]))  # triangular, d x d
    return xp.asarray(L_inv.T @ L_inv)


def _rows64(F, s, e, xp):
    """Rows s:e of the instance-major view F.T of F (k, n), i.e. (e - s, k), as float64 where ``xp`` computes."""
    return xp.asarray(F.T[s:e], dtype=np.float64)


def instance_factors(X, R, lam, xp, w=None, with_loss=False):
    """The instance half-step at confidence 1: Yt (n, d) C-contiguous in R's working dtype.

    Parameters
    ----------
    X : array (d, m)
    R : array (m, n)
        Read by instances (rows of R.T, contiguous where R is the transposed
        view of instance-major data, as the backends hold it).
    lam : float
    xp : module
        NumPy or CuPy, where the products are computed.
    w : array (m,), optional
        Also return Zt (n, d) float64, every row (X Xᵀ + lam I)⁻¹ X w (a
        read-only broadcast: the systems are one).
    with_loss : bool
        Also return the normalised L_rec at (X, Y), from the returned
        (rounded) Y and X read in R's working dtype, as the other kernels give it.

    Returns
    -------
    tuple
        (Yt,), then Zt if ``w`` is given, then L_rec if ``with_loss``.
    """
    m, n = R.shape
    dtype = working_dtype(R)
    X64 = xp.asarray(X, dtype=np.float64)
    Xw64 = X64.astype(dtype).astype(np.float64)  # X as the loss of the other kernels reads it
    Xw_gram = Xw64 @ Xw64.T
    solve_t = (shared_inverse(X64 @ X64.T, lam, "instance", xp) @ X64).T  # (m, d): y_i^T = r_i^T solve_t
    Yt = xp.empty((n, X64.shape[0]), dtype=dtype)
    sse = y_squared = 0.0
    for s, e in blocks(n, m):
        rows = _rows64(R, s, e, xp)
        Yt[s:e] = rows @ solve_t
        if with_loss:
            factors = Yt[s:e].astype(np.float64)
            sse += _block_squared_residual(rows, factors, Xw64, Xw_gram, xp)
            y_squared += float(xp.einsum("ij,ij->", factors, factors))
    result = [Yt]
    if w is not None:
        result.append(xp.broadcast_to(xp.asarray(w, dtype=np.float64) @ solve_t, Yt.shape))
    if with_loss:
        result.append(normalised_reconstruction_loss(sse, float(xp.trace(Xw_gram)), y_squared, lam, m, n))
    return tuple(result)


def _block_squared_residual(rows, factors, X64, gram, xp):
    """sum over a block of ||r_i - Xᵀ y_i||² = ||r_i||² - 2 (X r_i)ᵀ y_i + y_iᵀ (X Xᵀ) y_i, float64, with
    ``gram`` = X Xᵀ: no (rows, m) temporary; the terms are within a factor ~||r||² / L_rec of each other,
    far from float64's cancellation."""
    return float(xp.einsum("ij,ij->", rows, rows) - 2 * xp.einsum("ij,ij->", rows @ X64.T, factors)
                 + xp.einsum("ij,ij->", factors @ gram, factors))


def classifier_sums(Y, R, xp):
    """The classifier step's shared Gram Y Yᵀ (d, d) and right-hand sides Y Rᵀ (d, m), float64."""
    m, n = R.shape
    d = Y.shape[0]
    G, B = xp.zeros((d, d)), xp.zeros((d, m))
    for s, e in blocks(n, m + d):
        factors = _rows64(Y, s, e, xp)
        G += factors.T @ factors
        B += factors.T @ _rows64(R, s, e, xp)
    return G, B


def classifier_factors(Y, R, lam, xp):
    """The classifier half-step at confidence 1: X (d, m) in R's working dtype."""
    G, B = classifier_sums(Y, R, xp)
    return (shared_inverse(G, lam, "classifier", xp) @ B).astype(working_dtype(R))


def gram_terms(Y, R, xp):
    """Grams (m, d, d) (one shared Gram, broadcast, read-only) and right-hand sides (m, d) of the classifier step."""
    G, B = classifier_sums(Y, R, xp)
    return xp.broadcast_to(G, (R.shape[0],) + G.shape), B.T


def reconstruction_loss(X, Y, R, lam, xp):
    """The normalised L_rec at confidence 1, X read in R's working dtype as the other kernels read it."""
    m, n = R.shape
    Xw64 = xp.asarray(X).astype(working_dtype(R)).astype(np.float64)
    gram = Xw64 @ Xw64.T
    sse = y_squared = 0.0
    for s, e in blocks(n, m + Y.shape[0]):
        factors = _rows64(Y, s, e, xp)
        sse += _block_squared_residual(_rows64(R, s, e, xp), factors, Xw64, gram, xp)
        y_squared += float(xp.einsum("ij,ij->", factors, factors))
    return normalised_reconstruction_loss(sse, float(xp.trace(gram)), y_squared, lam, m, n)


def reconstruction_gradient(X, Y, R, lam, xp):
    """(dL_rec/dX (d, m), dL_rec/dY (d, n)) at confidence 1, float64; dL_rec/dY is the transposed view of (n, d)."""
    m, n = R.shape
    X64 = xp.asarray(X, dtype=np.float64)
    gX = xp.zeros(X64.shape)
    gYt = xp.empty((n, X64.shape[0]))
    for s, e in blocks(n, m + X64.shape[0]):
        factors = _rows64(Y, s, e, xp)
        E = _rows64(R, s, e, xp) - factors @ X64  # (rows, m)
        gX -= 2 * (factors.T @ E)
        gYt[s:e] = (2 * lam * factors - 2 * (E @ X64.T)) / (m * n)
    return (gX + 2 * lam * X64) / (m * n), gYt.T


def optimal_projection(gram, d, lam):
    """(m, d) float64 on the host, Yt = Rᵀ projection at the minimiser of ||R - XᵀY||² + lam (||X||² + ||Y||²).

    With R = U Σ Vᵀ, the minimiser (the fixed point ALS converges to) keeps
    the d largest singular values, shrunk to s_k = max(σ_k - lam, 0), split
    evenly: Y = diag(√s) V_dᵀ and X = diag(√s) U_dᵀ, which the classifier
    half-step from this Y gives. U and σ² are the eigenvectors and
    eigenvalues of ``gram`` = R Rᵀ (m, m), so Yt = Rᵀ U_d diag(√s / σ).
    Directions past the rank of R (and d > m) get zero columns. Each
    column of U_d has its largest entry in magnitude positive (scikit-learn's
    ``svd_flip``): the eigensolver's signs would otherwise depend on the
    rounding of ``gram``, and so on how a backend summed it.
    """
    eigenvalues, vectors = np.linalg.eigh(_host(gram))
    m = eigenvalues.size
    top = np.arange(m - 1, max(m - 1 - d, -1), -1)  # the d largest, in descending order
    sigma = np.sqrt(np.maximum(eigenvalues[top], 0.0))
    scale = np.sqrt(np.maximum(sigma - lam, 0.0)) / np.where(sigma > 0, sigma, 1.0)
    projection = np.zeros((m, d))
    projection[:, :top.size] = svd_flip(vectors[:, top], None)[0] * scale
    return projection


def gram_of_rows(P):
    """Pᵀ P (m, m) in float64 for instance-major P (n, m): a NumPy array (converted in blocks) or a
    ``scipy.sparse`` matrix."""
    if issparse(P):
        P64 = P.astype(np.float64)
        return (P64.T @ P64).toarray()
    return gram64(P.T)


def project_rows(P, projection):
    """Yt = P projection (n, d) C-contiguous in P's dtype, for P as in :func:`gram_of_rows`."""
    if issparse(P):
        return np.ascontiguousarray(P.astype(np.float64) @ projection, dtype=P.dtype)
    n, m = P.shape
    Yt = np.empty((n, projection.shape[1]), dtype=P.dtype)
    for s, e in blocks(n, m):
        Yt[s:e] = np.asarray(P[s:e], dtype=np.float64) @ projection
    return Yt


def starts_at_fixed_point(strategy, complete, lam):
    """Whether a fit starts at :func:`optimal_projection`'s Y: every confidence 1 (the "uniform"
    ``strategy`` on ``complete`` data) and ``lam > 0`` (else directions past R's rank would make the
    systems singular)."""
    return strategy == "uniform" and complete and lam > 0


def optimal_start(P, d, lam):
    """Y0 (d, n) of :func:`optimal_projection` for instance-major P (n, m) holding every entry (as in
    :func:`gram_of_rows`): in P's dtype, the transposed view of (n, d); two passes over P."""
    return project_rows(P, optimal_projection(gram_of_rows(P), d, lam)).T
