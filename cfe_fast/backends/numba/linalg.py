"""Batched Cholesky factorisation and solves of packed SPD systems, SIMD across systems.

A chunk's systems are stored packed, one system per column: the lower
triangle of system b, row by row, in column b of a (k (k + 1) / 2, nb)
array, so every innermost loop runs over the systems and vectorises.
Factorisation and solves run in float64 whatever the data's dtype.
"""

import numpy as np

from ... import config
from ...errors import PIVOT_RTOL, singular_system_error
from .common import jit, tri


@jit
def scaled_product(out, a, g, b):
    """out = a * g * b elementwise (a, b rows, g a scalar), without temporaries."""
    for i in range(out.shape[0]):
        out[i] = a[i] * g * b[i]


@jit
def add_ridge(G, k, lam):
    for j in range(k):
        diagonal = G[tri(j) + j]  # through a view: see common.assign
        diagonal += lam


@jit(fastmath={"contract"})
def subtract_products(t, A, L, n):
    """t[b] -= sum_{p<n} A[p, b] * L[p, b] for every system b.

    Four terms per pass over t: one load and store of t per four fused
    multiply-adds instead of per one (the loop over b is SIMD across systems).
    The grouping is fixed, so results do not depend on anything but the data.
    """
    nb = t.shape[0]
    p = 0
    while p + 4 <= n:
        a0, a1, a2, a3 = A[p], A[p + 1], A[p + 2], A[p + 3]
        l0, l1, l2, l3 = L[p], L[p + 1], L[p + 2], L[p + 3]
        for b in range(nb):
            t[b] -= (a0[b] * l0[b] + a1[b] * l1[b]) + (a2[b] * l2[b] + a3[b] * l3[b])
        p += 4
    while p < n:
        a0, l0 = A[p], L[p]
        for b in range(nb):
            t[b] -= a0[b] * l0[b]
        p += 1


@jit(fastmath={"contract"})
def packed_cholesky(G, failed):
    """Factorise nb SPD systems at once, in place: G = L L^T per column.

    G : (k (k + 1) / 2, nb) float64, packed lower triangles, one system per
        column (the innermost index, so every loop below is SIMD across systems).
    failed : (nb,) bool, set where a pivot L_jj**2 <= PIVOT_RTOL * A_jj.

    Left-looking (one column of L at a time, from the rows above it), with
    the dot products of four columns of L per pass (:func:`subtract_products`).
    """
    nb = G.shape[1]
    k = int((np.sqrt(8 * G.shape[0] + 1) - 1) / 2 + 0.5)
    inv = np.empty(nb)
    for j in range(k):
        rj = tri(j)
        Lj = G[rj:rj + j]
        for b in range(nb):
            inv[b] = G[rj + j, b]  # A_jj, kept for the pivot test
        subtract_products(G[rj + j], Lj, Lj, j)
        for b in range(nb):
            pivot = G[rj + j, b]
            if not pivot > PIVOT_RTOL * inv[b]:
                failed[b] = True
                pivot = 1.0
            pivot = np.sqrt(pivot)
            G[rj + j, b] = pivot
            inv[b] = 1.0 / pivot
        for i in range(j + 1, k):
            ri = tri(i)
            subtract_products(G[ri + j], G[ri:ri + j], Lj, j)
            for b in range(nb):
                G[ri + j, b] *= inv[b]


@jit(fastmath={"contract"})
def packed_solve(L, B):
    """Solve L L^T x = B in place for nb factorised systems; B is (k, nb).

    Forward substitution takes the dot products four terms per pass
    (:func:`subtract_products`); back substitution is right-looking: once
    x_i is known, it leaves the rows p < i of B, which are the contiguous
    row i of the packed L (a left-looking pass would read a column of L).
    """
    k, nb = B.shape
    for i in range(k):  # L z = B
        ri = tri(i)
        subtract_products(B[i], L[ri:ri + i], B, i)
        divide(B[i], L[ri + i])
    for i in range(k - 1, -1, -1):  # L^T x = z
        ri = tri(i)
        xi = B[i]
        divide(xi, L[ri + i])
        for p in range(i):
            lp = L[ri + p]
            bp = B[p]
            for b in range(nb):
                bp[b] -= lp[b] * xi[b]


@jit
def divide(row, by):
    for b in range(row.shape[0]):
        row[b] /= by[b]


@jit
def packed_cholesky_solve(G, B, failed):
    """Factorise the packed systems G and solve them for B, both in place."""
    packed_cholesky(G, failed)
    packed_solve(G, B)


@jit
def packed_outer_rows(F, a0, a1):
    """Rows a0 <= a < a1 of the packed f f^T of every column of F (k, nb).

    Returns the (tri(a1) - tri(a0), nb) block of entries t(a, c), c <= a.
    """
    nb = F.shape[1]
    P = np.empty((tri(a1) - tri(a0), nb), dtype=F.dtype)
    for a in range(a0, a1):
        fa = F[a]
        for c in range(a + 1):
            fc = F[c]
            row = P[tri(a) - tri(a0) + c]
            for b in range(nb):
                row[b] = fa[b] * fc[b]
    return P


@jit
def cg_step(matvec_P, P, R, Y, diag, rz):
    """One preconditioned CG step on nb independent systems (columns), in place.

    matvec_P = A P; R the residual; rz[b] = r_b^T z_b. Systems whose search
    direction has no curvature (converged, or zero) are left unchanged. Every
    loop runs over the systems innermost (rows are contiguous), so it
    vectorises; each system's sums still run over a in order.
    """
    k, nb = P.shape
    pap = np.zeros(nb)
    for a in range(k):
        for b in range(nb):
            pap[b] += P[a, b] * matvec_P[a, b]
    step = np.empty(nb)  # alpha, then beta
    for b in range(nb):
        step[b] = rz[b] / pap[b] if pap[b] > 0.0 else 0.0
    rz_new = np.zeros(nb)
    for a in range(k):
        for b in range(nb):
            Y[a, b] += step[b] * P[a, b]
            R[a, b] -= step[b] * matvec_P[a, b]
            rz_new[b] += R[a, b] * R[a, b] / diag[a, b]
    for b in range(nb):
        step[b] = rz_new[b] / rz[b] if rz[b] > 0.0 else 0.0
        rz[b] = rz_new[b]
    for a in range(k):
        for b in range(nb):
            P[a, b] = R[a, b] / diag[a, b] + step[b] * P[a, b]


@jit
def cg_start(R, diag):
    """Jacobi-preconditioned first direction P = D^-1 R and rz = r^T D^-1 r per column."""
    P = R / diag
    rz = np.sum(R * P, axis=0)
    return P, rz


def systems_per_chunk(k):
    """Systems factorised together so that their packed triangles fit in ``config.SYSTEMS_BYTES``."""
    return int(np.clip(config.SYSTEMS_BYTES // (8 * max(k * (k + 1) // 2, 1)) // 8 * 8, 8, 512))


def raise_if_failed(failed, what):
    """Raise :class:`~cfe_fast.errors.SingularSystemError` naming the first failed system."""
    if failed.any():
        raise singular_system_error(what, int(np.flatnonzero(failed)[0]))
