"""Training algorithms behind :class:`~cfe_fast.CFEnsembleClassifier`.

All three minimise (or, for "als", approximately minimise) the objective of
docs/method.md, L = rho L_rec + (1 - rho) (L_sup + penalty(w)), through
one :class:`~cfe_fast.training.problem.Problem` (data, weights, backend
kernels) and one :class:`~cfe_fast.training.state.State` (X, Y, w, b):

* ``"als"`` — the method as published: exact ALS half-steps on L_rec, then the
  aggregator fitted on the reconstruction (Newton by default). The half-steps
  ignore L_sup, so L may increase.
* ``"exact"`` — block-coordinate descent on L itself: each block step
  minimises a quadratic majoriser of L, so L never increases (BCE; focal loss
  has no curvature bound and gets a backtracking safeguard instead).
* ``"joint"`` — Adam on (X, Y, w, b) together with analytic gradients.
"""

import numpy as np

from . import aggregator, exact_steps
from .adam import Adam
from .joint_steps import joint_gradients


class _AdamState:
    """Checkpoint support for a trainer whose only internal state is an optional
    :class:`~.adam.Adam` in ``self._adam`` with step size ``self._adam_lr``."""

    _adam = None

    def state(self):
        """Internal state beyond (X, Y, w, b): Adam's moments and step count, if any."""
        return {} if self._adam is None else self._adam.state()

    def load_state(self, arrays):
        """Continue from :meth:`state` (checkpoint resume)."""
        if arrays:
            self._adam = Adam.from_state(arrays, self._adam_lr)


# ------------------------------------------------------------------ ALS
class ALSTrainer(_AdamState):
    """ALS half-steps on L_rec, then the aggregator on the reconstruction.

    ``aggregator_solver``: "newton" fits (w, b) to convergence; "gd" takes
    ``aggregator_steps`` plain gradient steps of size ``aggregator_lr`` (the
    original implementation's procedure, kept to reproduce its collapse);
    "adam" takes that many Adam steps (a momentum remedy). ``solver``: how
    the half-steps solve their systems (see
    :func:`cfe_fast.kernels.update_instance_factors`); "cg" starts from the
    previous factors.
    """

    def __init__(self, aggregator_solver="newton", aggregator_lr=0.01, aggregator_steps=1, solver="auto"):
        self.solver = solver
        self.aggregator_solver = aggregator_solver
        self.aggregator_lr = aggregator_lr
        self.aggregator_steps = aggregator_steps
        self._adam_lr = aggregator_lr

    def initialize(self, problem, state):
        """Nothing to do: the first step starts with the classifier half-step from Y."""

    def step(self, problem, state, fit_aggregator):
        """One sweep (X, then Y), then the aggregator; returns the aggregator steps taken."""
        problem.classifier_step(state, self.solver)
        problem.instance_step(state, self.solver)
        if not fit_aggregator:
            return 0
        if self.aggregator_solver == "newton":
            return aggregator.fit(problem, state)
        if self._adam is None:
            self._adam = Adam([np.append(state.w, state.b)], self.aggregator_lr)
        aggregator.gradient_steps(problem, state, self.aggregator_solver, self.aggregator_lr,
                                  self.aggregator_steps, self._adam)
        return self.aggregator_steps


# ---------------------------------------------------------------- exact
class ExactTrainer:
    """Block-coordinate descent on L: X block, Y block, aggregator (Newton).

    With BCE each block minimises a majoriser, so L never increases. With focal
    loss (no curvature bound) a block step that would increase L is shortened
    by backtracking towards the previous block value.
    """

    def initialize(self, problem, state):
        """X from one ALS classifier half-step: the majorisers are taken around it."""
        problem.classifier_step(state)

    def state(self):
        """No internal state: (X, Y, w, b) is everything."""
        return {}

    def load_state(self, arrays):
        """Nothing to restore."""

    def step(self, problem, state, fit_aggregator):
        dtype = state.Y.dtype
        proposal = exact_steps.classifier_step(problem, state.X, state.Y, state.w, state.b)
        self._safeguarded(problem, state, "X", proposal)
        proposal, reconstruction = exact_steps.instance_step(problem, state.X, state.Y, state.w, state.b)
        self._safeguarded(problem, state, "Y", proposal)
        state.X = np.asarray(state.X, dtype=dtype)
        state.Y = np.asarray(state.Y, dtype=dtype)
        if problem.settings.focal_gamma == 0 and dtype == np.float64:  # the factors are the proposal's
            state.reconstruction = reconstruction
        if not fit_aggregator:
            return 0
        return aggregator.fit(problem, state)

    @staticmethod
    def _safeguarded(problem, state, name, proposal):
        """Take the block's proposal; with focal loss, shortened until L does not increase."""
        if problem.settings.focal_gamma == 0:
            setattr(state, name, proposal)
            return
        old = problem.to_host(getattr(state, name))
        before = problem.objective(state)[0]
        step = proposal - old
        for t in 0.5 ** np.arange(30):
            setattr(state, name, old + t * step)
            if problem.objective(state)[0] <= before:
                return
        setattr(state, name, old)


# ---------------------------------------------------------------- joint
class JointTrainer(_AdamState):
    """Adam on all parameters; one iteration = ``steps_per_iter`` Adam steps.

    Starts from a few ALS sweeps and a Newton-fitted aggregator. Learning rate:
    linear warm-up over the first ``warmup`` fraction of all steps, then cosine
    decay to 10 % (``schedule="warmup_cosine"``), or constant. ``clip_norm``
    clips the global gradient norm.
    """

    def __init__(self, max_iter, learning_rate=0.01, steps_per_iter=20, schedule="warmup_cosine",
                 warmup=0.05, clip_norm=None):
        self.total = max_iter * steps_per_iter
        self.learning_rate = learning_rate
        self.steps_per_iter = steps_per_iter
        self.schedule = schedule
        self.warmup = warmup
        self.clip_norm = clip_norm
        self._adam_lr = learning_rate

    def rate(self, t):
        """Learning rate of step t (0-based)."""
        if self.schedule == "constant":
            return self.learning_rate
        warm = max(1, int(self.warmup * self.total))
        if t < warm:
            return self.learning_rate * (t + 1) / warm
        progress = (t - warm) / max(1, self.total - warm)
        return self.learning_rate * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * min(progress, 1.0))))

    def initialize(self, problem, state, sweeps=3):
        """A warm start: a few ALS sweeps, then the aggregator fitted by Newton."""
        for _ in range(sweeps):
            problem.classifier_step(state)
            problem.instance_step(state)
        if problem.has_labels:
            aggregator.fit(problem, state)

    def step(self, problem, state, fit_aggregator):
        params = [np.array(problem.to_host(state.X), dtype=np.float64),
                  np.array(problem.to_host(state.Y), dtype=np.float64),
                  np.array(state.w, dtype=np.float64), np.array([state.b], dtype=np.float64)]
        if self._adam is None:
            self._adam = Adam(params, self.learning_rate)
        for _ in range(self.steps_per_iter):
            _, gX, gY, gw, gb = joint_gradients(problem, params[0], params[1], params[2], params[3][0],
                                                 with_loss=False)
            grads = [gX, gY, gw if fit_aggregator else 0 * gw, np.array([gb if fit_aggregator else 0.0])]
            if self.clip_norm is not None:
                norm = np.sqrt(sum(float(np.sum(g * g)) for g in grads))
                if norm > self.clip_norm:
                    grads = [g * (self.clip_norm / norm) for g in grads]
            self._adam.step(params, grads, self.rate(self._adam.t))
        dtype = state.Y.dtype
        state.X, state.Y = params[0].astype(dtype), params[1].astype(dtype)
        state.w, state.b = params[2], float(params[3][0])
        return self.steps_per_iter if fit_aggregator else 0
