"""Reductions over instances: the reconstruction loss and its gradients, and the fused aggregator kernel.

Each sums float64 partials of fixed-size chunks in a fixed order, so results
do not depend on the number of threads. The aggregator kernel reads the
labeled instance factors only: z_i = v^T y_i + b with v = X w, never R_hat.
"""

import numpy as np
from numba import prange

from ... import config
from ..._float64 import squared_norm
from ...core.losses import aggregator_terms_from_sums, normalised_reconstruction_loss
from .common import as_float64, assign, jit, kernel_threads, ordered_sum, run_tasks
from .confidence import chunk_confidence, kernel_confidence


@jit
def squared_residual(R_hat, Rc, Cc):
    """sum c (r - r_hat)^2 over a block of instances (nc, m), in float64."""
    acc = 0.0
    for i in range(Rc.shape[0]):
        for u in range(Rc.shape[1]):
            r = np.float64(Rc[i, u]) - np.float64(R_hat[i, u])
            acc += np.float64(Cc[i, u]) * r * r
    return acc


@jit(parallel=True)
def _weighted_squared_residual(X, Yt, Rt, conf, chunk):
    n = Rt.shape[0]
    n_chunks = (n + chunk - 1) // chunk
    partial = np.empty(n_chunks)
    for c in prange(n_chunks):
        s = c * chunk
        e = min(n, s + chunk)
        partial[c] = squared_residual(np.dot(Yt[s:e], X), Rt[s:e], chunk_confidence(conf, Rt, s, e))
    total = 0.0
    for c in range(n_chunks):
        total += partial[c]
    return total


@jit(parallel=True)
def _weighted_residual_grads(X, Yt, Rt, conf, chunk, lam, scale, gYt):
    """Fused pass over chunks with E = c (r - r_hat): returns sum c (r - r_hat)^2 and
    gX = -2 sum_i y_i e_i^T (d, m), and writes the whole instance gradient
    gYt[i] = scale (2 lam y_i - 2 X e_i) (float64, fixed-order reduction)."""
    n, m = Rt.shape
    d = X.shape[0]
    n_chunks = (n + chunk - 1) // chunk
    sse_p = np.empty(n_chunks)
    gX_p = np.empty((n_chunks, d, m))
    X64 = as_float64(X)
    for c in prange(n_chunks):
        s = c * chunk
        e = min(n, s + chunk)
        Yc = as_float64(Yt[s:e])
        residual = as_float64(Rt[s:e]) - np.dot(Yc, X64)
        E = as_float64(chunk_confidence(conf, Rt, s, e)) * residual
        acc = 0.0
        for i in range(e - s):
            for u in range(m):
                acc += E[i, u] * residual[i, u]
        sse_p[c] = acc
        assign(gX_p[c], -2.0 * np.dot(Yc.T, E))
        XE = np.dot(E, X64.T)
        for i in range(e - s):
            for a in range(d):
                gYt[s + i, a] = scale * (2.0 * lam * Yc[i, a] - 2.0 * XE[i, a])
    sse = 0.0
    for c in range(n_chunks):
        sse += sse_p[c]
    return sse, ordered_sum(gX_p)


@jit
def sample_terms(z, y, gamma, exact_focal):
    """Per-instance loss, dloss/dz and curvature (see :func:`cfe_fast.core.losses.sample_loss_terms`).

    One exp and one log1p per instance (two exps with focal loss): with
    e = exp(-|z|), p_t and 1 - p_t are 1 / (1 + e) and e / (1 + e) in the
    order the sign of a = (2y - 1) z gives, and -log p_t = max(-a, 0) + log1p(e).
    """
    sign = 2.0 * y - 1.0
    a = sign * z
    e = np.exp(-abs(z))
    log1p_e = np.log1p(e)
    big = 1.0 / (1.0 + e)
    small = e * big
    pt, q = (big, small) if a >= 0.0 else (small, big)  # p_t, 1 - p_t
    nlog_pt = max(-a, 0.0) + log1p_e
    bce_grad = -sign * q  # = sigmoid(z) - y, without cancellation
    bce_curv = pt * q
    if gamma == 0.0:
        return nlog_pt, bce_grad, bce_curv
    qg = np.exp(-gamma * (max(a, 0.0) + log1p_e))  # (1 - p_t)^gamma
    loss = qg * nlog_pt
    if not exact_focal:
        return loss, qg * bce_grad, qg * bce_curv
    log_pt = -nlog_pt
    grad = sign * (gamma * qg * pt * log_pt - qg * q)
    curv = gamma * qg * q * pt * (log_pt + 1.0) - gamma * gamma * qg * pt * pt * log_pt + (gamma + 1.0) * qg * q * pt
    return loss, grad, curv


@jit(nogil=True)
def _aggregator_chunks(v, b, YtL, yL, omega, gamma, exact_focal, want_hessian, chunk, loss_p, grad_p, hess_p,
                       first, stop):
    """Chunks first <= c < stop of the fused pass over labeled instances: z_i = v^T y_i + b, never R_hat.

    Writes chunk c's weighted loss sum to loss_p[c], g = sum e_i [y_i; 1] to
    grad_p[c] and, if asked, H = sum h_i [y_i; 1][y_i; 1]^T to hess_p[c]
    (all float64; :func:`aggregator_sums_t` adds the chunks in order).
    Per chunk, in separate passes: z by one matrix-vector product, the
    per-instance terms (one scalar loop), then g; H's y-block is one small
    GEMM, Y^T (h * Y).
    """
    n, d = YtL.shape
    for c in range(first, stop):
        s = c * chunk
        nc = min(n, s + chunk) - s
        Yc = as_float64(YtL[s:s + nc])
        z = np.dot(Yc, v)
        e = np.empty(nc)  # omega * dloss/dz
        h = np.empty(nc if want_hessian else 0)  # omega * curvature
        loss_sum = 0.0
        for r in range(nc):
            loss, grad, curv = sample_terms(z[r] + b, yL[s + r], gamma, exact_focal)
            loss_sum += omega[s + r] * loss
            e[r] = omega[s + r] * grad
            if want_hessian:
                h[r] = omega[s + r] * curv
        loss_p[c] = loss_sum
        weighted_row_sums(grad_p[c], e, Yc)
        if want_hessian:
            hY = np.empty((nc, d))
            for r in range(nc):
                for a in range(d):
                    hY[r, a] = h[r] * Yc[r, a]
            H = hess_p[c]
            weighted_row_sums(H[d], h, Yc)
            HYY = np.dot(Yc.T, hY)
            for a in range(d):
                for a2 in range(d):
                    H[a, a2] = HYY[a, a2]
                H[a, d] = H[d, a]


@jit
def weighted_row_sums(out, weights, rows):
    """out = [weights @ rows; sum(weights)] (out one longer than a row), summed over the rows in order."""
    d = rows.shape[1]
    out[:] = 0.0
    for r in range(rows.shape[0]):
        wr = weights[r]
        for a in range(d):
            out[a] += wr * rows[r, a]
        out[d] += wr


def reconstruction_loss_grad_t(X, Yt, Rt, Ct, lam):
    """Normalised L_rec and its gradients (dX (d, m), dYt (n, d)) on instance-major data, float64.

    Ct: the (n, m) array or a :class:`~cfe_fast.core.confidence.ConfidenceRule`, as for every kernel here.
    """
    n, m = Rt.shape
    scale = 1.0 / (m * n)
    gYt = np.empty((n, X.shape[0]))
    with kernel_threads(4 * n * m * X.shape[0]):
        sse, gX = _weighted_residual_grads(np.ascontiguousarray(X), np.ascontiguousarray(Yt), Rt,
                                           kernel_confidence(Ct, Rt.dtype), config.REDUCE_CHUNK, float(lam), scale, gYt)
    gX += 2 * lam * np.asarray(X, dtype=np.float64)
    gX *= scale
    return normalised_loss(sse, X, Yt, lam), gX, gYt


def weighted_squared_residual_t(X, Yt, Rt, Ct):
    """``sum_{u,i} c_ui (r_ui - x_u^T y_i)^2`` over a block of instances (float64)."""
    X = np.ascontiguousarray(X, dtype=Rt.dtype)
    with kernel_threads(2 * Rt.shape[0] * Rt.shape[1] * X.shape[0]):
        return _weighted_squared_residual(X, np.ascontiguousarray(Yt, dtype=Rt.dtype), Rt,
                                          kernel_confidence(Ct, Rt.dtype), config.REDUCE_CHUNK)


def reconstruction_loss_t(X, Yt, Rt, Ct, lam):
    """Normalised reconstruction term on instance-major data."""
    return normalised_loss(weighted_squared_residual_t(X, Yt, Rt, Ct), X, Yt, lam)


def normalised_loss(sse, X, Yt, lam):
    """L_rec from the weighted squared residual ``sse`` of factors X (d, m) and Yt (n, d)."""
    return normalised_reconstruction_loss(sse, squared_norm(X), squared_norm(Yt), lam, X.shape[1], Yt.shape[0])


def aggregator_sums_t(v, b, YtL, y_labeled, omega, focal_gamma=0.0, focal_variant="exact", hessian=False):
    """Unnormalised sums of the fused aggregator kernel over labeled factors YtL (n_L, d).

    With ``z_i = v^T y_i + b`` (v = X w) returns the weighted loss sum, the
    gradient sum g (d + 1,) over ``[y_i; 1]`` and, if asked, the Hessian sum
    H (d + 1, d + 1) (else (0, 0)). Sums over disjoint blocks add up.
    """
    n, d = YtL.shape
    chunk = config.REDUCE_CHUNK
    n_chunks = -(-n // chunk)
    k = d + 1
    loss_p = np.empty(n_chunks)
    grad_p = np.empty((n_chunks, k))
    hess_p = np.empty((n_chunks, k, k) if hessian else (n_chunks, 0, 0))
    with kernel_threads(n * (d + 2) ** (2 if hessian else 1) * 4):
        run_tasks(_aggregator_chunks, n_chunks,
                  np.asarray(v, dtype=np.float64), float(b), np.ascontiguousarray(YtL),
                  np.asarray(y_labeled, dtype=np.float64), np.asarray(omega, dtype=np.float64),
                  float(focal_gamma), focal_variant == "exact", bool(hessian), chunk, loss_p, grad_p, hess_p)
    loss_total = 0.0
    for loss in loss_p.tolist():  # in order, as the chunks' other sums
        loss_total += loss
    return loss_total, ordered_sum(grad_p), ordered_sum(hess_p)


def aggregator_terms_t(X, YtL, y_labeled, omega, w, b, focal_gamma=0.0, focal_variant="exact", hessian=False):
    """Fused aggregator loss/gradient/Hessian on instance-major labeled factors (n_L, d)."""
    v = np.asarray(X, dtype=np.float64) @ np.asarray(w, dtype=np.float64)
    loss, g, H = aggregator_sums_t(v, b, YtL, y_labeled, omega, focal_gamma, focal_variant, hessian)
    return aggregator_terms_from_sums(X, loss, g, H if hessian else None, float(np.sum(omega)), hessian)
