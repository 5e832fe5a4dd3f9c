"""Training algorithms behind :class:`~cfe_fast.CFEnsembleClassifier`.

All three minimise (or, for "als", approximately minimise) the objective of
SPEC.md, L = rho L_rec + (1 - rho) (L_sup + (l2 / 2) ||w||^2), and share one
:class:`Problem` (data, weights, backend kernels) and one :class:`State`
(X, Y, w, b):

* ``"als"`` — the method as published: exact ALS half-steps on L_rec, then the
  aggregator fitted on the reconstruction (Newton by default). The half-steps
  ignore L_sup, so L may increase.
* ``"exact"`` — block-coordinate descent on L itself: each block step
  minimises a quadratic majoriser of L, so L never increases (BCE; focal loss
  has no curvature bound and gets a backtracking safeguard instead).
* ``"joint"`` — Adam on (X, Y, w, b) together with analytic gradients.
"""

from dataclasses import dataclass, field

import numpy as np

from . import reference
from ._float64 import matvec64
from .aggregator import fit_aggregator
from .backends import to_host
from .kernels import solver_options


@dataclass
class Problem:
    """Everything a trainer needs that does not change during a fit.

    It owns the data placement: the methods ``classifier_step``,
    ``instance_step``, ``reconstruction_loss``, ``labeled_factors``,
    ``aggregator_evaluator`` and ``monitor_factors`` are all a trainer and the
    estimator use to touch R and C. This class runs them with a backend's
    kernels on arrays in memory (or on a GPU); :class:`cfe_fast.dask_backend.DaskProblem`
    runs them as per-chunk passes on a cluster.
    """

    kernels: object  # backend module
    R: np.ndarray  # (m, n)
    C: np.ndarray  # (m, n)
    lam: float
    rho: float
    labeled: np.ndarray  # (n,) bool
    y_labeled: np.ndarray  # (n_L,)
    omega: np.ndarray  # (n_L,) class weights
    focal_gamma: float = 0.0
    focal_variant: str = "exact"
    l2: float = 0.0
    weighted_aggregator: bool = True
    a: np.ndarray = field(init=False)  # (n_L,) weights of the labeled instances in L
    s: float = field(init=False)  # rho / (m n)
    _evaluator: tuple = field(init=False, default=None, repr=False)  # (X, Y, evaluate) of aggregator_evaluator
    _instance_loss: tuple = field(init=False, default=None, repr=False)  # (X, Y, L_rec) of the last instance step
    _labeled_index: np.ndarray = field(init=False, repr=False)  # positions of the labeled instances

    def __post_init__(self):
        m, n = self.C.shape
        self.s = self.rho / (m * n)
        self.a = reference.supervised_weights(self.omega, self.rho) if self.omega.size else self.omega
        self._labeled_index = np.flatnonzero(self.labeled)

    @property
    def has_labels(self):
        return self.y_labeled.size > 0

    # ------------------------------------------------ data-touching steps
    def classifier_step(self, Y, solver="auto", init=None):
        """ALS classifier half-step: X from Y (``init``: the previous X, for ``solver="cg"``)."""
        options = solver_options(self.kernels, solver, init)
        return self.kernels.update_classifier_factors(Y, self.R, self.C, self.lam, **options)

    def instance_step(self, X, solver="auto", init=None):
        """ALS instance half-step: Y from X (``init``: the previous Y, for ``solver="cg"``).

        The kernel also returns L_rec at (X, Y), computed in the same pass over
        R and C; :meth:`reconstruction_loss` returns it for these factors (the
        trainers replace the factors, never modify them in place).
        """
        options = solver_options(self.kernels, solver, init)
        self._evaluator = None  # it holds the labeled factors of the Y being replaced: free them first
        Y, loss = self.kernels.update_instance_factors(X, self.R, self.C, self.lam, with_loss=True, **options)
        self._instance_loss = (X, Y, loss)
        return Y

    def reconstruction_loss(self, X, Y):
        """Normalised L_rec at (X, Y)."""
        loss = _kept_for(self._instance_loss, X, Y)
        if loss is None:
            loss = self.kernels.reconstruction_loss(X, Y, self.R, self.C, self.lam)
        return loss

    def labeled_factors(self, Y):
        """Y of the labeled instances (d, n_L), gathered instance by instance.

        Y (d, n) is the transposed view of the kernels' instance-major
        factors, so the gather copies whole rows (``take`` with indices: 7x
        faster than a boolean mask at n = 60,000) and the result is again a
        transposed view of contiguous (n_L, d) data, which the kernels read
        without another copy.
        """
        return np.take(Y.T, self._labeled_index, axis=0).T

    def aggregator_evaluator(self, X, Y):
        """``evaluate(w, b, hessian, omega=None, gamma=None) -> AggregatorTerms`` at fixed (X, Y).

        The fused kernel over the labeled instances (L_sup without the ridge);
        ``omega`` and ``gamma`` override the class weights and the focal gamma.
        The evaluator of the latest (X, Y) is kept (the trainers replace the
        factors, never modify them in place), and it remembers its latest
        result: the labeled factors are gathered once per iteration, and the
        objective after the aggregator fit reuses the fit's last evaluation.
        """
        kept = _kept_for(self._evaluator, X, Y)
        if kept is not None:
            return kept
        Y_labeled = self.labeled_factors(Y)
        last = {}

        def evaluate(w, b, hessian=False, omega=None, gamma=None):
            default = omega is None and gamma is None
            if default:
                key = (np.asarray(w, dtype=np.float64).tobytes(), float(b))
                if last.get("key") == key and (last["terms"].hessian is not None or not hessian):
                    return last["terms"]
            terms = self.kernels.aggregator_terms(
                X, Y_labeled, self.y_labeled, self.omega if omega is None else omega, w, b,
                self.focal_gamma if gamma is None else gamma, self.focal_variant, hessian,
            )
            if default:
                last.update(key=key, terms=terms)
            return terms

        self._evaluator = (X, Y, evaluate)
        return evaluate

    def monitor_factors(self, Y):
        """The instance factors the collapse monitors look at (all of them, in memory)."""
        return Y

    # ------------------------------------------------------------ losses
    def supervised_terms(self, X, Y, w, b, hessian=False):
        """Fused aggregator kernel on the labeled instances (L_sup without the ridge)."""
        return self.aggregator_evaluator(X, Y)(w, b, hessian)

    def supervised_loss(self, X, Y, w, b):
        """L_sup + (l2 / 2) ||w||^2 for the weighted aggregator, BCE of the mean otherwise."""
        if not self.has_labels:
            return 0.0
        if self.weighted_aggregator:
            return self.supervised_terms(X, Y, w, b).loss + 0.5 * self.l2 * float(w @ w)
        p = np.clip(mean_of_reconstruction(X, self.labeled_factors(Y)), 1e-12, 1 - 1e-12)
        y_labeled, omega = to_host(self.y_labeled), to_host(self.omega)
        loss, _, _ = reference.sample_loss_terms(np.log(p) - np.log1p(-p), y_labeled, self.focal_gamma)
        return float(omega @ loss / omega.sum())

    def objective(self, X, Y, w, b):
        """(L, L_rec, L_sup) at the given parameters."""
        rec = self.reconstruction_loss(X, Y)
        sup = self.supervised_loss(X, Y, w, b)
        return self.rho * rec + (1 - self.rho) * sup, rec, sup

    def fit_aggregator(self, X, Y, w, b, max_steps=20):
        """Newton on the aggregator with X, Y fixed; returns (w, b, steps).

        The seeds' "weighted_bce" focal variant is no gradient of a loss: its
        fitted (w, b) solves F(w, b) = 0, F being the seeds' gradient plus the
        ridge. Each step is the Newton step of BCE with the factors
        (1 - p_t)^gamma frozen at the current point (IRLS), shortened until
        ||F|| decreases.
        """
        evaluate = self.aggregator_evaluator(X, Y)
        if self.focal_gamma == 0 or self.focal_variant == "exact":
            return fit_aggregator(evaluate, w, b, self.l2, max_steps)

        def residual(theta):
            t = evaluate(theta[:-1], theta[-1], False)
            return np.linalg.norm(np.append(t.grad_w + self.l2 * theta[:-1], t.grad_b))

        X64, Y_labeled = np.asarray(X, dtype=np.float64), self.labeled_factors(Y)
        theta = np.append(w, b)
        norm = residual(theta)
        for step in range(1, max_steps + 1):
            logit = matvec64(X64 @ theta[:-1], Y_labeled) + theta[-1]  # w^T r_hat_i without the n_L x m R_hat
            q = reference.expit(-(2 * self.y_labeled - 1) * logit)  # 1 - p_t
            scale = float(np.sum(self.omega * q**self.focal_gamma) / self.omega.sum())
            w_new, b_new, _ = fit_aggregator(
                lambda w_, b_, hess: _scaled(evaluate(w_, b_, hess, self.omega * q**self.focal_gamma, 0.0), scale),
                theta[:-1], theta[-1], self.l2, max_steps=1,
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


def _kept_for(memo, X, Y):
    """The value of a ``(X, Y, value)`` memo if it was made for these very factors, else None."""
    if memo is not None and memo[0] is X and memo[1] is Y:
        return memo[2]
    return None


def _scaled(terms, scale):
    """AggregatorTerms with loss and derivatives multiplied by ``scale``."""
    return terms._replace(loss=scale * terms.loss, grad_w=scale * terms.grad_w, grad_b=scale * terms.grad_b,
                          hessian=None if terms.hessian is None else scale * terms.hessian)


def mean_of_reconstruction(X, Y):
    """Mean over classifiers of r_hat = X^T Y, as (mean of X's columns)^T Y.

    On the host for GPU arrays; a dask Y stays lazy.
    """
    return matvec64(np.asarray(to_host(X), dtype=np.float64).mean(axis=1), to_host(Y))


@dataclass
class State:
    """The parameters being fitted."""

    X: np.ndarray  # (d, m)
    Y: np.ndarray  # (d, n)
    w: np.ndarray  # (m,)
    b: float


class Adam:
    """Adam (Kingma & Ba) over a list of arrays, updated in place."""

    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.m = [np.zeros_like(p, dtype=np.float64) for p in params]
        self.v = [np.zeros_like(p, dtype=np.float64) for p in params]
        self.t = 0

    def state(self):
        """Moments and step count as named arrays (for checkpoints)."""
        arrays = {"adam/t": np.array(self.t)}
        for i, (m, v) in enumerate(zip(self.m, self.v)):
            arrays[f"adam/m{i}"], arrays[f"adam/v{i}"] = m, v
        return arrays

    @classmethod
    def from_state(cls, arrays, lr):
        """An Adam continuing from :meth:`state`'s arrays."""
        count = sum(1 for key in arrays if key.startswith("adam/m"))
        adam = cls([arrays[f"adam/m{i}"] for i in range(count)], lr)
        adam.m = [np.array(arrays[f"adam/m{i}"]) for i in range(count)]
        adam.v = [np.array(arrays[f"adam/v{i}"]) for i in range(count)]
        adam.t = int(arrays["adam/t"])
        return adam

    def step(self, params, grads, lr):
        self.t += 1
        c1, c2 = 1 - self.beta1**self.t, 1 - self.beta2**self.t
        for p, g, m, v in zip(params, grads, self.m, self.v):
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * g * g
            p -= lr * (m / c1) / (np.sqrt(v / c2) + self.eps)


class _AdamState:
    """Checkpoint support for a trainer whose only internal state is an optional
    :class:`Adam` in ``self._adam`` with step size ``self._adam_lr``."""

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
    seeds' procedure, kept to reproduce their collapse); "adam" takes that many
    Adam steps (a momentum remedy, seed 000). ``solver``: how the half-steps
    solve their systems (see :func:`cfe_fast.kernels.update_instance_factors`);
    "cg" starts from the previous factors.
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
        state.X = problem.classifier_step(state.Y, self.solver, state.X)
        state.Y = problem.instance_step(state.X, self.solver, state.Y)
        if not fit_aggregator:
            return 0
        if self.aggregator_solver == "newton":
            state.w, state.b, steps = problem.fit_aggregator(state.X, state.Y, state.w, state.b)
            return steps
        theta = np.append(state.w, state.b)
        if self._adam is None:
            self._adam = Adam([theta], self.aggregator_lr)
        for _ in range(self.aggregator_steps):
            terms = problem.supervised_terms(state.X, state.Y, theta[:-1], theta[-1])
            grad = np.append(terms.grad_w + problem.l2 * theta[:-1], terms.grad_b)
            if self.aggregator_solver == "gd":
                theta -= self.aggregator_lr * grad
            else:
                self._adam.step([theta], [grad], self.aggregator_lr)
        state.w, state.b = theta[:-1].copy(), float(theta[-1])
        return self.aggregator_steps


# ---------------------------------------------------------------- exact
def exact_instance_step(problem, X, Y0, w, b):
    """Instance block of the exact trainer via Sherman-Morrison.

    The labeled systems are the ALS systems A_i plus kappa_i v v^T (SPEC.md);
    the backend returns A_i^-1 b_i and A_i^-1 v from one factorisation each,
    and the rank-one correction is applied in O(d) per instance. Matches
    :func:`cfe_fast.reference.exact_instance_step`.
    """
    p = problem
    Y, Z = p.kernels.instance_solves(X, p.R, p.C, p.lam, w)
    Y = np.array(Y, dtype=np.float64)
    labeled = p.labeled
    v = np.asarray(X, dtype=np.float64) @ w
    Y0_labeled = np.asarray(p.labeled_factors(Y0), dtype=np.float64)
    _, g, _ = reference.sample_loss_terms(v @ Y0_labeled + b, p.y_labeled, p.focal_gamma)
    kappa = p.a / (8 * p.s)
    shift = kappa * (v @ Y0_labeled) - p.a * g / (2 * p.s)
    Z_labeled = np.asarray(p.labeled_factors(Z), dtype=np.float64)
    U = Y[:, labeled] + shift * Z_labeled
    Y[:, labeled] = U - kappa * Z_labeled * (v @ U) / (1 + kappa * (v @ Z_labeled))
    return Y


def exact_classifier_step(problem, X0, Y, w, b):
    """Classifier block of the exact trainer: Grams from the backend, then the
    sequential solves of :func:`cfe_fast.reference.exact_classifier_step`."""
    p = problem
    return reference.exact_classifier_step(
        Y, p.R, p.C, p.lam, X0, w, b, p.labeled, p.y_labeled, p.a, p.s, p.focal_gamma,
        grams=p.kernels.classifier_gram_terms(Y, p.R, p.C),
    )


class ExactTrainer:
    """Block-coordinate descent on L: X block, Y block, aggregator (Newton).

    With BCE each block minimises a majoriser, so L never increases. With focal
    loss (no curvature bound) a block step that would increase L is shortened
    by backtracking towards the previous block value.
    """

    def initialize(self, problem, state):
        """X from one ALS classifier half-step: the majorisers are taken around it."""
        state.X = problem.classifier_step(state.Y)

    def state(self):
        """No internal state: (X, Y, w, b) is everything."""
        return {}

    def load_state(self, arrays):
        """Nothing to restore."""

    def step(self, problem, state, fit_aggregator):
        dtype = state.Y.dtype
        self._safeguarded(problem, state, "X", exact_classifier_step(problem, state.X, state.Y, state.w, state.b))
        self._safeguarded(problem, state, "Y", exact_instance_step(problem, state.X, state.Y, state.w, state.b))
        state.X = np.asarray(state.X, dtype=dtype)
        state.Y = np.asarray(state.Y, dtype=dtype)
        if not fit_aggregator:
            return 0
        state.w, state.b, steps = problem.fit_aggregator(state.X, state.Y, state.w, state.b)
        return steps

    @staticmethod
    def _safeguarded(problem, state, name, proposal):
        if problem.focal_gamma == 0:
            setattr(state, name, proposal)
            return
        old = getattr(state, name)
        before = problem.objective(state.X, state.Y, state.w, state.b)[0]
        step = proposal - old
        for t in 0.5 ** np.arange(30):
            setattr(state, name, old + t * step)
            if problem.objective(state.X, state.Y, state.w, state.b)[0] <= before:
                return
        setattr(state, name, old)


# ---------------------------------------------------------------- joint
def joint_gradients(problem, X, Y, w, b):
    """L and its gradients with respect to X (d, m), Y (d, n), w (m,) and b.

    The reconstruction part comes from the backend's fused kernel; the
    supervised part adds a_i g_i v to labeled columns of dY, (sum a_i g_i y_i) w^T
    to dX, and X^T sum a_i g_i y_i, sum a_i g_i to (dw, db).
    """
    p = problem
    rec = p.reconstruction_loss(X, Y)
    gX, gY = p.kernels.reconstruction_gradient(X, Y, p.R, p.C, p.lam)
    gX, gY = p.rho * np.asarray(gX, dtype=np.float64), p.rho * np.asarray(gY, dtype=np.float64)
    gw, gb, sup = np.zeros_like(w), 0.0, 0.0
    if p.has_labels:
        X64 = np.asarray(X, dtype=np.float64)
        Y_labeled = np.asarray(p.labeled_factors(Y), dtype=np.float64)
        v = X64 @ w
        loss, g, _ = reference.sample_loss_terms(v @ Y_labeled + b, p.y_labeled, p.focal_gamma, p.focal_variant)
        sup = float(p.omega @ loss / p.omega.sum()) + 0.5 * p.l2 * float(w @ w)
        e = p.a * g
        q = Y_labeled @ e
        gY[:, p.labeled] += np.outer(v, e)
        gX += np.outer(q, w)
        gw = X64.T @ q + (1 - p.rho) * p.l2 * w
        gb = float(e.sum())
    return p.rho * rec + (1 - p.rho) * sup, gX, gY, gw, gb


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
            state.X = problem.classifier_step(state.Y)
            state.Y = problem.instance_step(state.X)
        if problem.has_labels:
            state.w, state.b, _ = problem.fit_aggregator(state.X, state.Y, state.w, state.b)

    def step(self, problem, state, fit_aggregator):
        params = [np.array(state.X, dtype=np.float64), np.array(state.Y, dtype=np.float64),
                  np.array(state.w, dtype=np.float64), np.array([state.b], dtype=np.float64)]
        if self._adam is None:
            self._adam = Adam(params, self.learning_rate)
        for _ in range(self.steps_per_iter):
            _, gX, gY, gw, gb = joint_gradients(problem, params[0], params[1], params[2], params[3][0])
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
