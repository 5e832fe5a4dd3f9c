"""Fitting the aggregator theta = (w, b) by damped Newton / IRLS.

The supervised objective ``f(w, b) = L_sup + (l2 / 2) ||w||^2`` is convex for
BCE, so Newton with backtracking converges in a handful of steps on the m + 1
parameters; each step costs one pass of the fused kernel over the labeled
instances (O(n_L d^2) with the Hessian): the evaluation at the full step
includes the Hessian, which the next step uses when the full step is
accepted. Focal loss is not convex: the same safeguarded Newton (Levenberg
damping plus backtracking on f) applies. The seeds' ``"weighted_bce"``
variant has no loss: :class:`cfe_fast.trainers.Problem` drives it as a
sequence of single steps on a frozen-weight surrogate.
"""

import numpy as np

#: relative size of the Newton decrement below which f cannot decrease measurably
_ROUNDING = 4 * np.finfo(np.float64).eps


def _penalised(terms, w, l2):
    value = terms.loss + 0.5 * l2 * float(w @ w)
    grad = np.append(terms.grad_w + l2 * w, terms.grad_b)
    return value, grad


def _newton_direction(H, g):
    """Solve (H + mu I) delta = g with the smallest mu that makes it SPD."""
    scale = max(float(np.max(np.abs(np.diag(H)))), 1e-12)
    mu = 1e-10 * scale
    eye = np.eye(H.shape[0])
    while True:
        try:
            L = np.linalg.cholesky(H + mu * eye)
            return np.linalg.solve(L.T, np.linalg.solve(L, g))
        except np.linalg.LinAlgError:
            mu *= 10.0


def fit_aggregator(evaluate, w, b, l2=0.0, max_steps=20, tol=1e-9):
    """Minimise f(w, b) from (w, b) by damped Newton.

    Parameters
    ----------
    evaluate : callable (w, b, hessian) -> AggregatorTerms
        The fused aggregator kernel bound to the current factors and labels.
    w : ndarray (m,), b : float
        Starting point (warm start from the previous outer iteration).
    l2 : float
        Ridge on w.
    max_steps : int
        Newton steps at most (each backtracks on f, Armijo rule).
    tol : float
        Stop after a step from a point where half the Newton decrement, an
        estimate of f - min f, was at most ``tol |f|`` (so the last step
        squares the remaining error); no step is taken where the decrement
        is at rounding level.

    Returns
    -------
    w, b, n_steps
        n_steps: the Newton steps taken (0 if the start is converged).
    """
    w = np.array(w, dtype=np.float64)
    b = float(b)
    penalty_hessian = np.diag(np.append(np.full(w.size, l2), 0.0))
    terms = evaluate(w, b, True)
    steps = 0
    while steps < max_steps:
        f, g = _penalised(terms, w, l2)
        delta = _newton_direction(terms.hessian + penalty_hessian, g)
        decrement = float(g @ delta)
        if decrement / 2 <= _ROUNDING * max(abs(f), 1e-300):
            break  # nothing left to gain above rounding (a line search would only backtrack)
        alpha = 1.0
        while True:
            w_new, b_new = w - alpha * delta[:-1], b - alpha * delta[-1]
            # the full step is the usual outcome: its Hessian then serves the next step (one pass per step)
            trial = evaluate(w_new, b_new, alpha == 1.0 and steps + 1 < max_steps)
            f_new, _ = _penalised(trial, w_new, l2)
            if f_new <= f - 1e-4 * alpha * decrement or alpha < 1e-10:
                break
            alpha *= 0.5
        if not f_new <= f:
            break  # no descent possible: already at the minimum to rounding
        w, b, steps = w_new, b_new, steps + 1
        if decrement / 2 <= tol * max(abs(f), 1e-12) or steps == max_steps:
            break  # converged: half the Newton decrement estimated f - min f before this step
        terms = trial if trial.hessian is not None else evaluate(w, b, True)
    return w, b, steps
