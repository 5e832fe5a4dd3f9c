"""The outer loop of a fit: trainer steps, losses, collapse monitors, remedies, stop test, checkpoints."""

import time
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.special import expit

from .. import diagnostics
from .._float64 import blocks, matvec64
from ..core.ranking import average_precision
from ..errors import CollapseWarning, SingularSystemError
from .aggregator import cross_validate, fit_scale
from .aggregator import fit as fit_aggregator
from .state import FitState

#: the per-iteration losses and counts, in ``history_`` order, before the collapse monitors
LOSSES = ("loss", "reconstruction", "supervised", "aggregator_steps", "time")
#: the fit has diverged once the objective exceeds this multiple of its first value (or of 1, if larger):
#: its terms are a mean squared error of probabilities and a cross-entropy, of order 1 in a sane fit
DIVERGENCE_FACTOR = 1e6
DIVERGENCE_REMEDY = ("lower learning_rate or set clip_norm (trainer='joint'), lower aggregator_lr "
                     "(aggregator_solver='gd' or 'adam'), or raise lam")


@dataclass
class History:
    """Per-iteration records of a fit: the values of :data:`LOSSES`, then the collapse monitors."""

    records: dict = field(default_factory=lambda: {key: [] for key in LOSSES})

    def append(self, values):
        for key, value in values.items():
            self.records.setdefault(key, []).append(value)

    @property
    def elapsed(self):
        """Seconds of the iterations recorded so far (a resumed fit continues the clock)."""
        return self.records["time"][-1] if self.records["time"] else 0.0


@dataclass(frozen=True)
class LoopOptions:
    """The estimator's parameters that steer the outer loop."""

    max_iter: int
    tol: float
    weighted: bool
    freeze_aggregator_iters: int = 0
    reinit_collapsed_aggregator: bool = False
    verbose: bool = False
    prior_grid: tuple | None = None


@dataclass
class FitResult:
    """What a fit produced: the final state, its history, the iterations run and whether tol was met."""

    state: object
    history: dict
    n_iter: int
    converged: bool
    aggregator_prior: tuple = ("equal", 0.0)
    held_out: dict | None = None


def weights_collapsed(w):
    """||w|| below ``diagnostics.WEIGHT_NORM_MIN`` or sum(w) <= 0: the aggregator no longer reads the classifiers."""
    return np.linalg.norm(w) < diagnostics.WEIGHT_NORM_MIN or w.sum() <= 0


def monitor_values(problem, state, weighted, spread_of_R):
    """The collapse monitors at the state (on the problem's monitor sample of Y)."""
    X = np.asarray(problem.to_host(state.X), dtype=np.float64)
    Y = problem.to_host(problem.monitor_factors(state.Y))
    w = state.w if weighted else np.full(X.shape[1], 1.0 / X.shape[1])
    logit_part = matvec64(X @ w, Y)
    if weighted:
        proba, b = expit(logit_part + state.b), state.b
    else:
        proba, b = np.clip(logit_part, 0.0, 1.0), 0.0
    y_labeled = problem.to_host(problem.y_labeled)
    return diagnostics.monitors(X, Y, w, b, proba, logit_part, y_labeled, spread_of_R)


def run(problem, state, trainer, options, progress, spread_of_R, checkpoint=None, callback=None):
    """Iterate until convergence or ``options.max_iter``.

    Parameters
    ----------
    problem : Problem
    state : State
        Updated in place.
    trainer : a trainer of :mod:`cfe_fast.training.trainers`
    options : LoopOptions
    progress : FitState
        Where the fit starts: iteration, history and previous objective (0, empty and None afresh).
    spread_of_R : float
        std over instances of the mean of R (a collapse monitor's scale).
    checkpoint : callable (iteration, make_state) or None
        Called after every iteration that did not stop the fit, with a
        function that returns the :class:`FitState` to write (built only when asked).
    callback : callable (iteration, history dict) or None

    Returns
    -------
    FitResult
        ``aggregator_prior`` is the aggregator's prior (centre, strength)
        in force at the end. With ``options.prior_grid`` it is chosen from it by
        cross-validation on the final factors
        (:func:`~cfe_fast.training.aggregator.cross_validate`), the
        aggregator refitted with it, and the last history entry recomputed
        for the refitted aggregator.
    """
    history = History(progress.history or {key: [] for key in LOSSES})
    previous = progress.previous
    converged = False
    start = time.perf_counter() - history.elapsed
    iteration = progress.iteration
    for iteration in range(progress.iteration + 1, options.max_iter + 1):
        frozen = options.weighted and iteration <= options.freeze_aggregator_iters
        try:
            steps = trainer.step(problem, state, fit_aggregator=options.weighted and not frozen)
        except np.linalg.LinAlgError as error:
            if isinstance(error, SingularSystemError):
                raise
            raise FloatingPointError(f"the fit diverged at iteration {iteration} ({error}): "
                                     f"{DIVERGENCE_REMEDY}") from error
        loss, rec, sup = problem.objective(state)
        _check_divergence(loss, history.records["loss"][0] if history.records["loss"] else None, iteration)
        history.append(dict(zip(LOSSES, (loss, rec, sup, steps, time.perf_counter() - start))))
        history.append(monitor_values(problem, state, options.weighted, spread_of_R))
        if options.verbose:
            print(f"iter {iteration:4d}  loss {loss:.6e}  rec {rec:.6e}  sup {sup:.6e}")
        if callback is not None:
            callback(iteration, history.records)
        if options.weighted and not frozen and options.reinit_collapsed_aggregator and weights_collapsed(state.w):
            warnings.warn(
                f"the aggregator collapsed at iteration {iteration} (||w|| = {np.linalg.norm(state.w):.3g}, "
                f"sum w = {state.w.sum():.3g}); re-initialising it to the mean (w = 1/m)",
                CollapseWarning, stacklevel=4,
            )
            state.w, state.b = np.full(state.w.size, 1.0 / state.w.size), 0.0
            previous = None
            continue
        if previous is not None and not frozen and abs(loss - previous) < options.tol * max(abs(loss), 1e-300):
            converged = True
            break
        previous = loss
        if checkpoint is not None:
            checkpoint(iteration, lambda: FitState(problem.to_host(state.Y), problem.to_host(state.X), state.w,
                                                   state.b, history.records, iteration, previous, trainer.state()))
    held_out = None
    if options.weighted and problem.has_labels:
        last_frozen = iteration <= options.freeze_aggregator_iters
        select = options.prior_grid is not None and not last_frozen
        penalty = problem.settings.penalty
        validation = cross_validate(problem, state,
                                    grid=options.prior_grid if select else ((penalty.center, penalty.prior),))
        if select and validation.prior is not None:  # else the prior in force stays (too few labels to choose)
            _refit_with_prior(problem, state, history, options, spread_of_R, validation.prior)
        held_out = _held_out_check(problem, validation)
    penalty = problem.settings.penalty
    return FitResult(state, history.records, iteration, converged, (penalty.center, penalty.prior), held_out)


def _check_divergence(loss, first_loss, iteration):
    """Raise FloatingPointError, naming the remedy, when the objective is not finite or has exploded
    (``first_loss``: that of the first iteration, None at the first)."""
    if not np.isfinite(loss) or loss > DIVERGENCE_FACTOR * max(first_loss or 0.0, 1.0):
        raise FloatingPointError(
            f"the fit diverged: the objective is {loss:.3g} at iteration {iteration}; {DIVERGENCE_REMEDY}"
        )


#: bootstrap resamples of the held-out comparison with the mean of R
HELD_OUT_RESAMPLES = 100


def _held_out_check(problem, validation, seed=0):
    """Held-out average precision of the aggregator, of the mean of R and of chance on the same labeled instances.

    ``mean_of_R_better``: the share of bootstrap resamples of those instances
    in which the mean of R has the higher average precision.
    """
    if validation.prior is None:
        return None
    y, ours, mean = validation.y, validation.held_out_logits, problem.labeled_mean_of_R(validation.positions)
    rng = np.random.default_rng(seed)
    better = []
    # resamples in blocks (the sums over a block hold several arrays of its size): a resample with
    # replacement is the labeled instances weighted by how often it draws each
    for start, stop in blocks(HELD_OUT_RESAMPLES, 8 * y.size):
        counts = np.array([np.bincount(rng.integers(0, y.size, y.size), minlength=y.size)
                           for _ in range(start, stop)], dtype=np.float64)
        positives = counts @ y
        counts = counts[(positives > 0) & (positives < y.size)]  # both classes drawn
        better.extend(average_precision(y, mean, counts) > average_precision(y, ours, counts))
    everything = np.ones((1, y.size))
    return {
        "average_precision": float(average_precision(y, ours, everything)[0]),
        "mean_of_R": float(average_precision(y, mean, everything)[0]),
        "chance": float(np.mean(y)),
        "mean_of_R_better": float(np.mean(better)) if better else 0.0,
    }


def _refit_with_prior(problem, state, history, options, spread_of_R, prior):
    """Refit the aggregator with the prior ``prior`` = (centre, strength), then its scale without it; redo the last record."""
    center, strength = prior
    penalty = replace(problem.settings.penalty, center=center, prior=strength)
    problem.settings = replace(problem.settings, penalty=penalty)
    steps = fit_aggregator(problem, state)
    if problem.settings.focal_gamma == 0 or problem.settings.focal_variant == "exact":  # a loss to minimise
        steps += fit_scale(problem, state)
    loss, rec, sup = problem.objective(state)
    last = dict(zip(LOSSES[:4], (loss, rec, sup, history.records["aggregator_steps"][-1] + steps)))
    last.update(monitor_values(problem, state, options.weighted, spread_of_R))
    for key, value in last.items():
        history.records[key][-1] = value
