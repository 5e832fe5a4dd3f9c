"""Every way the aggregator theta = (w, b) is fitted with the factors fixed.

* :func:`fit` -- to convergence: damped Newton on ``f(w, b) = L_sup +
  penalty(w)`` (:func:`newton`; :class:`~cfe_fast.core.losses.AggregatorPenalty`),
  which is convex for BCE, so Newton
  with backtracking converges in a handful of steps on the m + 1
  parameters; each step costs one pass of the fused kernel over the labeled
  instances (O(n_L d^2) with the Hessian): the evaluation at the full step
  includes the Hessian, which the next step uses when the full step is
  accepted. Focal loss is not convex: the same safeguarded Newton
  (Levenberg damping plus backtracking on f) applies. The "weighted_bce"
  focal variant of the original implementation has no loss: it is driven
  as a sequence of single Newton steps on a frozen-weight surrogate
  (:func:`_weighted_bce_fixed_point`).
* :func:`gradient_steps` -- a fixed number of plain gradient or Adam steps
  (the original implementation's procedure, kept to reproduce its collapse).
"""

from dataclasses import dataclass, replace

import numpy as np
from scipy.special import expit

from .. import config
from .._float64 import matvec64
from ..core.consensus import consensus_weights
from ..core.losses import AggregatorPenalty, AggregatorTerms, sample_loss_terms
from ..core.ranking import average_precision

#: relative size of the Newton decrement below which f cannot decrease measurably
_ROUNDING = 4 * np.finfo(np.float64).eps


def _penalised(terms, w, penalty):
    value = terms.loss + penalty.value(w)
    grad = np.append(terms.grad_w + penalty.gradient(w), terms.grad_b)
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


def newton(evaluate, w, b, penalty=AggregatorPenalty(), max_steps=20, tol=1e-9):
    """Minimise f(w, b) = L_sup + penalty(w) from (w, b) by damped Newton.

    Parameters
    ----------
    evaluate : callable (w, b, hessian) -> AggregatorTerms
        The fused aggregator kernel bound to the current factors and labels.
    w : ndarray (m,), b : float
        Starting point (warm start from the previous outer iteration).
    penalty : AggregatorPenalty
        The penalty on w (a ridge, and a pull toward its centre).
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
    penalty_hessian = np.zeros((w.size + 1, w.size + 1))
    penalty_hessian[:-1, :-1] = penalty.hessian(w.size)
    terms = evaluate(w, b, True)
    steps = 0
    while steps < max_steps:
        f, g = _penalised(terms, w, penalty)
        delta = _newton_direction(terms.hessian + penalty_hessian, g)
        decrement = float(g @ delta)
        if decrement / 2 <= _ROUNDING * max(abs(f), 1e-300):
            break  # nothing left to gain above rounding (a line search would only backtrack)
        alpha = 1.0
        while True:
            w_new, b_new = w - alpha * delta[:-1], b - alpha * delta[-1]
            # the full step is the usual outcome: its Hessian then serves the next step (one pass per step)
            trial = evaluate(w_new, b_new, alpha == 1.0 and steps + 1 < max_steps)
            f_new, _ = _penalised(trial, w_new, penalty)
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


def newton_in_span(evaluate, X, w, b, penalty=AggregatorPenalty(), max_steps=20, tol=1e-9):
    """:func:`newton` for an aggregator whose logits depend on w only through X w, in d + 1 unknowns.

    The minimiser of L_sup(X w, b) + (1/2) w^T A w (A: the penalty's Hessian,
    see :class:`~cfe_fast.core.losses.AggregatorPenalty`; the penalty is
    quadratic with its minimum at w = 0) satisfies A w = -X^T g for the
    gradient g of L_sup in v = X w, so it lies in the span of B = A^-1 X^T
    (m x d). With w = B alpha, v = K alpha (K = X B) and the penalty is
    (1/2) alpha^T K alpha: Newton runs on (alpha, b), d + 1 unknowns instead
    of m + 1, from the alpha that gives the starting point's logits. Where
    that does not pay (m < 2 (d + 1)) or A is singular, it is :func:`newton`
    on (w, b).

    Parameters
    ----------
    evaluate : callable (w, b, hessian) -> AggregatorTerms
        As for :func:`newton`.
    X : ndarray (d, m)
        The classifier factors.
    w, b, penalty, max_steps, tol
        As for :func:`newton`.

    Returns
    -------
    w, b, n_steps
    """
    X = np.asarray(X, dtype=np.float64)
    d, m = X.shape
    B = penalty.solve(X.T) if m >= 2 * (d + 1) else None
    if B is None:
        return newton(evaluate, w, b, penalty, max_steps, tol)
    K = X @ B
    latent_lift = np.zeros((d + 1, d + 1))  # (alpha, b) -> (v, b): v = X B alpha = K alpha
    latent_lift[:-1, :-1], latent_lift[-1, -1] = K, 1.0

    def evaluate_span(alpha, b_, hessian=False):
        terms = evaluate(B @ alpha, b_, "latent" if hessian else False)
        H = None
        if hessian:
            H = latent_lift.T @ terms.latent_hessian @ latent_lift
            H[:-1, :-1] += K
        return AggregatorTerms(terms.loss + 0.5 * float(alpha @ K @ alpha), B.T @ terms.grad_w + K @ alpha,
                               terms.grad_b, H)

    alpha = np.linalg.lstsq(K, X @ np.asarray(w, dtype=np.float64), rcond=None)[0]
    alpha, b, steps = newton(evaluate_span, alpha, b, AggregatorPenalty(), max_steps, tol)
    return B @ alpha, b, steps


def follow_factors(problem, state):
    """Point the "consensus" centre of the problem's prior at the factors of ``state`` (other centres: nothing)."""
    penalty = problem.settings.penalty
    if penalty.center == "consensus" and penalty.shrinkage:
        direction = consensus_weights(problem.to_host(state.X), *problem.factor_moments(state.Y))
        problem.settings = replace(problem.settings, penalty=replace(penalty, direction=direction))


def fit(problem, state, max_steps=20):
    """Fit (w, b) of ``state`` to convergence at its factors; returns the steps taken."""
    follow_factors(problem, state)
    evaluate = problem.evaluator(state)
    settings = problem.settings
    if settings.focal_gamma == 0 or settings.focal_variant == "exact":
        state.w, state.b, steps = newton_in_span(evaluate, problem.to_host(state.X), state.w, state.b,
                                                 settings.penalty, max_steps)
    else:
        state.w, state.b, steps = _weighted_bce_fixed_point(problem, state, evaluate, max_steps)
    return steps


#: the ridge of the scale refit, on the mean loss: it only keeps the scale finite where the labels are
#: separable. The aggregator's ridge, in labeled instances, is no fit here: with a few labels it shrank
#: the scale, and the multi-class benchmark's log-loss rose from 0.03 to 0.18 (penguins, 1 % labeled)
SCALE_RIDGE = 1e-3


def fit_scale(problem, state, max_steps=20):
    """Refit the scale a of the logit and b with the direction of w fixed, without the prior; returns the steps.

    The prior decides which classifiers count; the labels then decide how
    confident the ensemble is (a strong ridge shrinks every logit toward b,
    and the probabilities toward the class balance). Minimises
    L_sup(a w, b) + (SCALE_RIDGE / 2) a^2 ||w||^2 over (a, b) by :func:`newton`, the
    derivatives lifted from the aggregator's evaluator by the chain rule. A
    positive a leaves the ranking of the instances unchanged.
    """
    evaluate = problem.evaluator(state)
    direction = np.asarray(state.w, dtype=np.float64)
    lift = np.zeros((direction.size + 1, 2))
    lift[:-1, 0], lift[-1, 1] = direction, 1.0

    def evaluate_scale(a, b, hessian=False):
        terms = evaluate(a[0] * direction, b, hessian)
        return AggregatorTerms(terms.loss, np.array([terms.grad_w @ direction]), terms.grad_b,
                               None if terms.hessian is None else lift.T @ terms.hessian @ lift)

    penalty = AggregatorPenalty(l2=SCALE_RIDGE * float(direction @ direction))
    a, state.b, steps = newton(evaluate_scale, np.ones(1), state.b, penalty, max_steps)
    state.w = a[0] * direction
    return steps


def _weighted_bce_fixed_point(problem, state, evaluate, max_steps):
    """(w, b, steps) solving F(w, b) = 0, F being the "weighted_bce" gradient plus the ridge.

    The variant is no gradient of a loss. Each step is the Newton step of BCE
    with the factors (1 - p_t)^gamma frozen at the current point (IRLS),
    shortened until ||F|| decreases.
    """
    gamma, penalty = problem.settings.focal_gamma, problem.settings.penalty
    omega, y_labeled = problem.omega, problem.y_labeled

    def residual(theta):
        t = evaluate(theta[:-1], theta[-1], False)
        return np.linalg.norm(np.append(t.grad_w + penalty.gradient(theta[:-1]), t.grad_b))

    X64, Y_labeled = np.asarray(state.X, dtype=np.float64), problem.labeled_factors(state.Y)
    theta = np.append(state.w, state.b)
    norm = residual(theta)
    for step in range(1, max_steps + 1):
        logit = matvec64(X64 @ theta[:-1], Y_labeled) + theta[-1]  # w^T r_hat_i without the n_L x m R_hat
        q = expit(-(2 * y_labeled - 1) * logit)  # 1 - p_t
        scale = float(np.sum(omega * q**gamma) / omega.sum())
        w_new, b_new, _ = newton(
            lambda w_, b_, hess: _scaled(evaluate(w_, b_, hess, omega * q**gamma, 0.0), scale),
            theta[:-1], theta[-1], penalty, max_steps=1,
        )
        direction = np.append(w_new, b_new) - theta
        for t in 0.5 ** np.arange(20):
            new_norm = residual(theta + t * direction)
            if new_norm < (1 - 1e-4 * t) * norm:
                break
        else:
            break  # no decrease of ||F|| possible: at the fixed point to rounding
        theta, norm = theta + t * direction, new_norm
        if norm <= 1e-10:
            break
    return theta[:-1], float(theta[-1]), step


def _scaled(terms, scale):
    """AggregatorTerms with loss and derivatives multiplied by ``scale``."""
    return terms._replace(loss=scale * terms.loss, grad_w=scale * terms.grad_w, grad_b=scale * terms.grad_b,
                          hessian=None if terms.hessian is None else scale * terms.hessian)


def gradient_steps(problem, state, solver, lr, steps, adam):
    """``steps`` plain gradient ("gd") or Adam ("adam", with the :class:`~.adam.Adam` ``adam``) steps on (w, b)."""
    follow_factors(problem, state)
    theta = np.append(state.w, state.b)
    evaluate = problem.evaluator(state)
    penalty = problem.settings.penalty
    for _ in range(steps):
        terms = evaluate(theta[:-1], theta[-1])
        grad = np.append(terms.grad_w + penalty.gradient(theta[:-1]), terms.grad_b)
        if solver == "gd":
            theta -= lr * grad
        else:
            adam.step([theta], [grad], lr)
    state.w, state.b = theta[:-1].copy(), float(theta[-1])


#: the strengths of the aggregator's prior that ``aggregator_prior="auto"`` chooses from, in
#: labeled instances (1000: the limit of the prior's centre with a fitted scale). No prior at all
#: is not among them: on the real-data benchmark cross-validation chose it by chance with a few
#: dozen labels and lost up to 0.04 PR-AUC, while with many labels a strength of 1 weighs nothing
PRIOR_STRENGTHS = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
#: the centres ``aggregator_prior_center="auto"`` chooses from: the classifiers' agreement weights
#: replace equal weights, which they beat in 10 of 11 tasks of the real-data benchmark as a plain
#: weighting, and as the centre lower the shortfall to max(mean, LR stacking) on two sets of
#: re-drawn splits (benchmarks/results/quality_cpu2.md)
AUTO_PRIOR_CENTERS = ("consensus", "zero")


def prior_grid(centers=AUTO_PRIOR_CENTERS):
    """The (centre, strength) pairs of every strength of :data:`PRIOR_STRENGTHS` toward each of ``centers``."""
    return tuple((center, strength) for center in centers for strength in PRIOR_STRENGTHS)


#: the (centre, strength) pairs ``aggregator_prior="auto"`` chooses from
PRIOR_GRID = prior_grid()
#: the prior strength a fit uses while it runs under ``aggregator_prior="auto"``, and where no
#: cross-validation is possible (fewer than two labeled instances of a class), toward equal
#: weights unless ``aggregator_prior_center`` says otherwise
PRIOR_FALLBACK = 10.0


@dataclass
class CrossValidation:
    """The aggregator cross-validated on the labeled instances with the factors fixed.

    Attributes
    ----------
    prior : (str, float) or None
        The chosen prior, (centre, strength) (None: too few labels of a
        class to cross-validate).
    grid : tuple of (str, float)
        The priors tried.
    losses : ndarray (len(grid),)
        Their cross-validated class-weighted cross-entropy.
    positions : ndarray (k,)
        The labeled instances used, as positions in labeled order.
    y : ndarray (k,)
        Their labels.
    logits : ndarray (len(grid), k)
        The held-out logits of each prior.
    """

    prior: tuple | None
    grid: tuple
    losses: np.ndarray
    positions: np.ndarray
    y: np.ndarray
    logits: np.ndarray

    @property
    def held_out_logits(self):
        """The held-out logits of the chosen prior."""
        return self.logits[self.grid.index(self.prior)]


def cross_validate(problem, state, grid=PRIOR_GRID, folds=5, seed=0):
    """:class:`CrossValidation` of the aggregator over the priors ``grid``.

    Stratified K-fold over the labeled instances (K = min(folds, n_pos,
    n_neg); a stratified sample of ``config.PRIOR_CV_INSTANCES`` of them
    where there are more) with the factors fixed: for every prior
    (centre, strength) the aggregator is fitted on K - 1 folds (Newton, BCE
    or exact focal loss) and scored on the held-out one by the
    class-weighted cross-entropy of its predictions. The unlabeled
    instances have shaped the factors the folds share. The choice is
    :func:`choose_prior`. With fewer labeled instances of a class than
    ``folds``, nothing is chosen: the prior of :func:`few_labels_prior` is
    taken (the strongest toward the consensus, where the grid has it), so
    the ensemble is that weighted mean of the reconstruction with a fitted
    scale. A direction estimated from so few instances of a class, and a
    comparison held out on them, are noise: on the real-data benchmark a
    cross-validated strength then often chose a weak prior and fell below
    the mean.

    Returns
    -------
    CrossValidation
    """
    from sklearn.model_selection import StratifiedKFold, train_test_split

    y = np.asarray(problem.to_host(problem.y_labeled), dtype=np.float64)
    omega = np.asarray(problem.to_host(problem.omega), dtype=np.float64)
    grid = tuple((str(center), float(strength)) for center, strength in grid)
    n_splits = min(folds, int(np.sum(y == 1)), int(np.sum(y == 0)))
    if n_splits < 2:
        empty = np.empty(0)
        return CrossValidation(None, grid, np.full(len(grid), np.nan), empty.astype(int), empty,
                               np.empty((len(grid), 0)))
    if n_splits < folds:  # fewer labeled instances of a class than folds: too few to tell which classifiers count
        grid = (few_labels_prior(grid),)
    positions = np.arange(y.size)
    if y.size > config.PRIOR_CV_INSTANCES:
        positions = np.sort(train_test_split(positions, train_size=config.PRIOR_CV_INSTANCES, stratify=y,
                                             random_state=seed)[0])
        y, omega = y[positions], omega[positions]
    X = np.asarray(problem.to_host(state.X), dtype=np.float64)
    Y_labeled = np.asarray(problem.to_host(problem.labeled_factors(state.Y, positions)), dtype=np.float64)
    direction = None
    if any(center == "consensus" for center, _ in grid):
        direction = consensus_weights(X, *problem.factor_moments(state.Y))
    settings, backend = problem.settings, problem.backend
    gamma = settings.focal_gamma if settings.focal_variant == "exact" else 0.0
    held_out_losses = np.zeros((len(grid), y.size))
    logits = np.zeros((len(grid), y.size))
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for train, test in splitter.split(np.zeros(y.size), y):
        Y_train = np.ascontiguousarray(Y_labeled[:, train].T).T

        def evaluate(w, b, hessian=False):
            return backend.aggregator_terms(X, Y_train, y[train], omega[train], w, b, gamma, "exact", hessian)

        for center in dict.fromkeys(center for center, _ in grid):
            w, b = state.w, state.b
            family = sorted((k for k in range(len(grid)) if grid[k][0] == center), key=lambda k: -grid[k][1])
            for k in family:  # strong to weak: each fit starts from the previous solution
                penalty = AggregatorPenalty(settings.penalty.l2, grid[k][1], omega[train].sum(), center, direction)
                w, b, _ = newton_in_span(evaluate, X, w, b, penalty)
                logits[k, test] = (X @ w) @ Y_labeled[:, test] + b
                held_out_losses[k, test], _, _ = sample_loss_terms(logits[k, test], y[test])
    losses = held_out_losses @ (omega / omega.sum())
    return CrossValidation(choose_prior(grid, losses, y, logits), grid, losses, positions, y, logits)


#: the centres whose strongest prior serves where the labels are too few to cross-validate, in order of preference
FEW_LABELS_CENTERS = ("consensus", "equal")


def few_labels_prior(grid):
    """The prior of ``grid`` taken with fewer labeled instances of a class than folds.

    The strongest toward the first centre of :data:`FEW_LABELS_CENTERS` in
    the grid (the ensemble is then that weighted mean of the reconstruction
    with a fitted scale), else the grid's strongest of any centre.
    """
    for center in FEW_LABELS_CENTERS:
        family = [prior for prior in grid if prior[0] == center]
        if family:
            return max(family, key=lambda prior: prior[1])
    return max(grid, key=lambda prior: prior[1])


def choose_prior(grid, losses, y, logits):
    """The prior to fit with, from the held-out losses and logits of every prior in ``grid``.

    Within each centre, the strength with the smallest held-out loss
    ``losses`` (the stronger on a tie). Between
    the centres' choices, the one whose held-out logits rank the labels ``y``
    with the highest average precision, "zero" (a ridge) on a tie. On two
    sets of re-draws of the real-data benchmark
    (``benchmarks/results/quality_cpu2.md``, ``quality_redraw_cpu2.md``) the
    smallest loss within a centre left a smaller shortfall to max(mean, LR
    stacking) than the strongest strength within one standard error of it,
    and the average precision between the centres than their losses.
    """
    chosen = [min((k for k in range(len(grid)) if grid[k][0] == center), key=lambda k: (losses[k], -grid[k][1]))
              for center in dict.fromkeys(center for center, _ in grid)]
    everyone = np.ones((1, y.size))
    return grid[max(chosen, key=lambda k: (average_precision(y, logits[k], everyone)[0], grid[k][0] == "zero"))]
