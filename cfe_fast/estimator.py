"""CFEnsembleClassifier: the scikit-learn style estimator over the kernels."""

import functools
import time
import warnings

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from . import diagnostics, reference
from ._errors import CollapseWarning
from ._float64 import blocks, matvec64
from ._threads import single_threaded_blas
from ._validation import (
    as_float_array,
    check_confidence,
    check_labels,
    check_lam,
    check_positive_int,
    check_probabilities,
    check_probability_range,
    check_solvable,
)
from .backends import get_backend, to_device, to_host
from .checkpoint import Checkpointer, FitState, read_checkpoint
from .kernels import solver_options
from .trainers import ALSTrainer, ExactTrainer, JointTrainer, Problem, State, mean_of_reconstruction

AGGREGATORS = ("weighted", "mean")
TRAINERS = ("als", "exact", "joint")
AGGREGATOR_SOLVERS = ("newton", "gd", "adam")
LR_SCHEDULES = ("warmup_cosine", "constant")
DTYPES = {"float64": np.float64, "float32": np.float32}


class CFEnsembleClassifier(ClassifierMixin, TransformerMixin, BaseEstimator):
    """Combine the probability outputs of many classifiers with CF-Ensemble.

    The classifiers x instances probability matrix R is factorised by
    confidence-weighted alternating least squares (R ~ X^T Y), using labeled and
    unlabeled instances alike; an aggregator ``sigma(w^T r_hat + b)`` fitted on
    the labeled instances reads the prediction off the reconstruction.

    Parameters
    ----------
    latent_dim : int or None, default=None
        Latent dimension d. None picks ``max(1, min(20, n_classifiers // 2))``.
        A value >= n_classifiers warns: the factorisation can then copy R.
    rho : float in [0, 1], default=0.9
        Weight of the reconstruction term in the objective (SPEC.md). It shapes
        the fit of the "exact" and "joint" trainers (the "als" half-steps ignore
        the supervised term). L_rec averages over all m n entries and L_sup over
        the labeled instances, so at 0.5 the labels dominate the factors; on the
        seed scenario 0.9 beat the mean of R on 7-9 of 10 seeds, 0.5 on 3-7.
    lam : float, default=0.1
        Ridge penalty of the ALS half-steps (> 0 recommended; 0 is refused
        where a system would be singular).
    confidence : {"label_aware", "certainty", "uniform", "calibration"} or array, default="label_aware"
        Confidence strategy, or a user matrix C of shape (n_instances,
        n_classifiers) that is used exactly as given.
    confidence_alpha : float, default=1.0
        Strength of the label reward of the "label_aware" strategy.
    aggregator : {"weighted", "mean"}, default="weighted"
        "weighted" fits (w, b) of ``sigma(w^T r_hat + b)``; "mean" predicts
        the mean of r_hat, clipped to [0, 1], and fits nothing.
    class_weight : "balanced" or None, default="balanced"
        Inverse class-frequency weights of the supervised loss.
    focal_gamma : float, default=0.0
        0 for cross-entropy, > 0 for focal loss.
    focal_variant : {"exact", "weighted_bce"}, default="exact"
        True focal gradient, or the seeds' (1 - p_t)^gamma-weighted BCE gradient.
    aggregator_l2 : float, default=1e-3
        Ridge on w; keeps the Newton fit well posed when r_hat is collinear
        (it has rank d) or the labels are separable.
    freeze_aggregator_iters : int, default=0
        Keep (w, b) at its initial value (w = 1/m, b = 0) for this many iterations.
    trainer : {"als", "exact", "joint"}, default="als"
        "als": ALS half-steps on the reconstruction, then the aggregator (the
        published method; the objective may increase). "exact": block-coordinate
        descent on the whole objective with majorised block steps (it never
        increases; needs rho > 0). "joint": Adam on all parameters together.
        See :mod:`cfe_fast.trainers`.
    aggregator_solver : {"newton", "gd", "adam"}, default="newton"
        How the "als" trainer updates (w, b) each iteration: Newton to
        convergence, or ``aggregator_steps`` gradient / Adam steps of size
        ``aggregator_lr`` ("gd" with lr 0.01 and 1 step is the seeds' procedure).
    aggregator_lr : float, default=0.01
    aggregator_steps : int, default=1
    reinit_collapsed_aggregator : bool, default=False
        Reset (w, b) to the mean (with a CollapseWarning) when ||w|| falls below
        ``diagnostics.WEIGHT_NORM_MIN`` or sum(w) <= 0 during training.
    learning_rate : float, default=0.01
        Adam step size of the "joint" trainer.
    joint_steps_per_iter : int, default=20
        Adam steps per iteration of the "joint" trainer.
    lr_schedule : {"warmup_cosine", "constant"}, default="warmup_cosine"
    clip_norm : float or None, default=None
        Clip the global gradient norm of the "joint" trainer.
    max_iter : int, default=50
    tol : float, default=1e-5
        Stop when the relative change of the objective falls below tol.
    random_state : int, numpy Generator or None
        Seeds the model's own Generator (the global RNG is never used).
    backend : {"numba", "numpy", "cupy", "dask"}, default="numba"
        "numpy" is the reference; "cupy" runs on an NVIDIA GPU when one is usable
        (float32 recommended there; trainer="als" only) and on NumPy otherwise;
        "dask" fits on a dask cluster (trainer="als" only): X may then be a dask
        array (n, m) chunked along instances, in memory or lazy (e.g. Zarr), and
        need not fit in memory (see :mod:`cfe_fast.dask_backend`).
    client : dask.distributed.Client or None, default=None
        Cluster of the "dask" backend. None starts a ``LocalCluster`` for the
        duration of ``fit`` and brings the fitted factors back as NumPy arrays;
        with a client they stay on the cluster as dask arrays.
    solver : {"auto", "dual", "primal", "cg"}, default="auto"
        How the "als" half-steps solve their ridge systems (Numba backend; the
        NumPy reference is exact and ignores it; other backends take "auto").
        "auto": exact, dual m x m systems when n_classifiers <= 1.2 latent_dim,
        else primal d x d systems (:func:`cfe_fast.numba_backend.choose_solver`).
        "cg": approximate, 3 conjugate-gradient steps per system per iteration,
        warm-started from the previous factors (faster for large latent_dim and
        n_classifiers; the factors trail those of exact ALS).
    dtype : {"float64", "float32"}, default="float64"
    verbose : bool, default=False

    Attributes
    ----------
    classes_ : ndarray [0, 1]
    n_features_in_ : int
        Number of classifiers m.
    latent_dim_ : int
    classifier_factors_ : ndarray (d, m)
        X.
    instance_factors_ : ndarray (d, n)
        Y of the fitted instances (a dask array with backend="dask" and a client).
    coef_ : ndarray (m,), intercept_ : float
        Aggregator (w, b).
    transductive_proba_ : ndarray (n,)
        P(y = 1) for every fitted instance, labeled or not (a dask array with
        backend="dask" and a client).
    history_ : dict of lists
        Per iteration: "loss", "reconstruction", "supervised", "aggregator_steps",
        "time", and the collapse monitors "coef" (w), "intercept", "w_norm",
        "w_sum", "bias_share", "pred_std", "prediction_spread", "variance_ratio",
        "effective_rank_X", "effective_rank_Y", "frac_positive"
        (see :mod:`cfe_fast.diagnostics`).
    n_iter_ : int
    converged_ : bool
    """

    def __init__(
        self,
        latent_dim=None,
        rho=0.9,
        lam=0.1,
        confidence="label_aware",
        confidence_alpha=1.0,
        aggregator="weighted",
        class_weight="balanced",
        focal_gamma=0.0,
        focal_variant="exact",
        aggregator_l2=1e-3,
        freeze_aggregator_iters=0,
        trainer="als",
        aggregator_solver="newton",
        aggregator_lr=0.01,
        aggregator_steps=1,
        reinit_collapsed_aggregator=False,
        learning_rate=0.01,
        joint_steps_per_iter=20,
        lr_schedule="warmup_cosine",
        clip_norm=None,
        max_iter=50,
        tol=1e-5,
        random_state=None,
        backend="numba",
        client=None,
        solver="auto",
        dtype="float64",
        verbose=False,
    ):
        self.latent_dim = latent_dim
        self.rho = rho
        self.lam = lam
        self.confidence = confidence
        self.confidence_alpha = confidence_alpha
        self.aggregator = aggregator
        self.class_weight = class_weight
        self.focal_gamma = focal_gamma
        self.focal_variant = focal_variant
        self.aggregator_l2 = aggregator_l2
        self.freeze_aggregator_iters = freeze_aggregator_iters
        self.trainer = trainer
        self.aggregator_solver = aggregator_solver
        self.aggregator_lr = aggregator_lr
        self.aggregator_steps = aggregator_steps
        self.reinit_collapsed_aggregator = reinit_collapsed_aggregator
        self.learning_rate = learning_rate
        self.joint_steps_per_iter = joint_steps_per_iter
        self.lr_schedule = lr_schedule
        self.clip_norm = clip_norm
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.backend = backend
        self.client = client
        self.solver = solver
        self.dtype = dtype
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True  # probabilities; values above 1 are refused too
        tags.classifier_tags.multi_class = False
        return tags

    # ------------------------------------------------------------ checks
    def _check_params(self, n_classifiers):
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {self.dtype!r}")
        if self.aggregator not in AGGREGATORS:
            raise ValueError(f"aggregator must be one of {AGGREGATORS}, got {self.aggregator!r}")
        if self.class_weight not in ("balanced", None):
            raise ValueError(f"class_weight must be 'balanced' or None, got {self.class_weight!r}")
        for name, allowed in (("trainer", TRAINERS), ("aggregator_solver", AGGREGATOR_SOLVERS),
                              ("lr_schedule", LR_SCHEDULES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.trainer != "als" and self.aggregator != "weighted":
            raise ValueError(f"trainer={self.trainer!r} fits the weighted aggregator; use aggregator='weighted'")
        if self.backend in ("cupy", "dask") and self.trainer != "als":
            raise ValueError(f"backend={self.backend!r} supports trainer='als' only, got trainer={self.trainer!r}")
        if self.backend == "dask" and self.focal_gamma > 0 and self.focal_variant != "exact":
            raise ValueError("backend='dask' supports focal_variant='exact' only")
        if self.trainer == "exact" and (self.rho <= 0 or self.focal_variant != "exact"):
            raise ValueError("trainer='exact' needs rho > 0 and focal_variant='exact' (the seeds' variant has no loss)")
        check_positive_int(self.aggregator_steps, "aggregator_steps")
        check_positive_int(self.joint_steps_per_iter, "joint_steps_per_iter")
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ValueError(f"clip_norm must be None or > 0, got {self.clip_norm!r}")
        if self.focal_variant not in reference.FOCAL_VARIANTS:
            raise ValueError(f"focal_variant must be one of {reference.FOCAL_VARIANTS}, got {self.focal_variant!r}")
        if not 0 <= self.rho <= 1:
            raise ValueError(f"rho must be in [0, 1], got {self.rho}")
        for name in ("focal_gamma", "aggregator_l2", "tol", "confidence_alpha", "aggregator_lr", "learning_rate"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        check_lam(self.lam)
        check_positive_int(self.max_iter, "max_iter")
        if self.freeze_aggregator_iters < 0:
            raise ValueError(f"freeze_aggregator_iters must be >= 0, got {self.freeze_aggregator_iters}")
        solver_options(get_backend(self.backend), self.solver)
        if self.solver != "auto" and self.trainer != "als":
            raise ValueError(f"solver={self.solver!r} applies to trainer='als' only (the others solve exactly)")
        if self.latent_dim is None:
            return max(1, min(20, n_classifiers // 2))
        d = check_positive_int(self.latent_dim, "latent_dim")
        if d >= n_classifiers:
            warnings.warn(
                f"latent_dim={d} >= n_classifiers={n_classifiers}: the factorisation can "
                "reproduce R exactly and the collaborative-filtering step does nothing; "
                "use a latent_dim below the number of classifiers",
                UserWarning,
                stacklevel=3,
            )
        return d

    def _confidence_matrix(self, P, labels):
        """C (n, m) for the instances in P; labels NaN where unknown."""
        dtype = DTYPES[self.dtype]
        strategy = self._strategy()
        if strategy == "calibration":  # per-classifier statistics over all labeled instances
            C = reference.confidence(P.T, labels, strategy, self.confidence_alpha).T
            return np.ascontiguousarray(C, dtype=dtype)
        if strategy is not None:  # elementwise: blocks of instances, no n x m temporaries
            C = np.empty(P.shape, dtype=dtype)
            for s, e in blocks(P.shape[0], P.shape[1]):
                C[s:e] = reference.confidence_chunk(P[s:e], labels[s:e], strategy, self.confidence_alpha)
            return C
        return np.ascontiguousarray(check_confidence(self.confidence, P.shape, "confidence", dtype))

    def _dask_confidence(self, P, labels, client):
        """A dask array for a user matrix, else a per-chunk function (C is never stored)."""
        from . import dask_backend

        strategy = self._strategy()
        if strategy is None:
            C = dask_backend.as_instance_chunks(self.confidence, "confidence", client, DTYPES[self.dtype])
            return dask_backend.check_confidence(C, P, "confidence")
        quality = None
        if strategy == "calibration":
            quality = self.classifier_quality_ = dask_backend.calibration_quality(P, labels)
        return functools.partial(
            reference.confidence_chunk, strategy=strategy, alpha=self.confidence_alpha, quality=quality
        )

    def _fold_in_strategy(self):
        """The label-free strategy of the fold-in (see :meth:`_fold_in_confidence`)."""
        strategy = self._strategy()
        return strategy if strategy in ("uniform", "calibration") else "certainty"

    def _fold_in_confidence(self, P):
        """Label-free confidence for new instances (SPEC.md, inductive prediction).

        "label_aware", "certainty" and a user matrix fold in with |r - 0.5|;
        "uniform" with ones; "calibration" with the fitted per-classifier quality.
        """
        quality = getattr(self, "classifier_quality_", None)
        C = reference.confidence_chunk(P, None, self._fold_in_strategy(), quality=quality)
        return np.ascontiguousarray(C, dtype=DTYPES[self.dtype])

    def _strategy(self):
        """The confidence strategy name, or None for a user-supplied matrix."""
        return self.confidence if isinstance(self.confidence, str) else None

    # --------------------------------------------------------------- fit
    def _make_trainer(self):
        if self.trainer == "als":
            return ALSTrainer(self.aggregator_solver, self.aggregator_lr, self.aggregator_steps, self.solver)
        if self.trainer == "exact":
            return ExactTrainer()
        return JointTrainer(self.max_iter, self.learning_rate, self.joint_steps_per_iter,
                            self.lr_schedule, clip_norm=self.clip_norm)

    def fit(self, X, y, *, checkpoint=None, checkpoint_every=1, resume_from=None, callback=None):
        """Fit on the probability matrix X = P (n_instances, n_classifiers) and labels y.

        y holds 0/1 for labeled instances and NaN or -1 for unlabeled ones. All
        instances take part in the factorisation (transductive); the
        probabilities of the fitted instances end up in ``transductive_proba_``.
        A :class:`~cfe_fast.CollapseWarning` is raised for every collapse check
        that fires on the final state (see :meth:`diagnose`).

        Parameters
        ----------
        X : array (n_instances, n_classifiers)
            Probabilities in [0, 1] (a dask array, possibly lazy, with backend="dask").
        y : array (n_instances,)
            0/1, NaN or -1 for unlabeled.
        checkpoint : path or None  (not with backend="dask")
            Write the fit state to this file (safe format of
            :mod:`cfe_fast.model_io`, replaced atomically) every
            ``checkpoint_every`` iterations.
        checkpoint_every : int, default=1
        resume_from : path or None
            Continue from a checkpoint written by a fit with the same parameters
            and data; the result is bit-identical to an uninterrupted fit.
        callback : callable (iteration, history) or None
            Called after every iteration (e.g. a progress bar).
        """
        if self.backend != "dask":
            with single_threaded_blas():  # the kernels parallelise; idle BLAS threads would spin
                self._fit(X, y, None, checkpoint, checkpoint_every, resume_from, callback)
            return self
        if checkpoint is not None or resume_from is not None:
            raise ValueError("checkpoints are not supported with backend='dask'")
        from .dask_backend import client_scope

        with client_scope(self.client) as client, single_threaded_blas():
            self._fit(X, y, client, None, checkpoint_every, None, callback)
            if self.client is None:  # the cluster closes: bring the fitted factors back
                self.instance_factors_, self.transductive_proba_ = client.compute(
                    [self.instance_factors_, self.transductive_proba_], sync=True
                )
        return self

    def _fit(self, X, y, client, checkpoint, checkpoint_every, resume_from, callback):
        """The fit itself, on NumPy arrays or (with ``client``) on a dask cluster."""
        P, labels = self._check_fit_data(X, y, client)
        n, m = P.shape
        d = self._check_params(m)
        labeled = ~np.isnan(labels)
        y_labeled = labels[labeled]
        aggregator = self.aggregator
        if not labeled.any():
            warnings.warn(
                "y has no labeled instance: fitting the reconstruction only; predictions are the "
                "mean of the reconstruction (aggregator='mean')",
                UserWarning,
                stacklevel=2,
            )
            aggregator = "mean"
        elif np.unique(y_labeled).size < 2:
            raise ValueError(
                f"y has labeled instances of one class only ({int(y_labeled[0])}); "
                "the aggregator needs both classes"
            )
        lam = float(self.lam)
        omega = reference.class_weights(y_labeled, self.class_weight == "balanced")
        trainer = self._make_trainer()
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = m
        self.latent_dim_ = d
        self.aggregator_ = aggregator
        settings = dict(rho=float(self.rho), focal_gamma=float(self.focal_gamma), focal_variant=self.focal_variant,
                        l2=float(self.aggregator_l2), weighted_aggregator=aggregator == "weighted")
        if self.backend == "dask":
            from .dask_backend import DaskEngine, DaskProblem

            engine = DaskEngine(client, P, labels, omega, lam, self._dask_confidence(P, labels, client))
            check_solvable(engine.C, lam, d, axis=0)
            check_solvable(engine.C, lam, d, axis=1)
            engine.init_instance_factors(np.random.default_rng(self.random_state),
                                         functools.partial(_initial_instance_factors, d=d, dtype=P.dtype))
            problem = DaskProblem(engine, labeled=labeled, y_labeled=y_labeled, omega=omega, **settings)
            progress = FitState(Y=None, X=None, w=np.full(m, 1.0 / m), b=0.0, history=_empty_history())
            self._run(problem, State(None, None, progress.w, progress.b), trainer, _spread_of_R(P), progress,
                      None, callback)
            return
        C = self._confidence_matrix(P, labels)
        check_solvable(C.T, lam, d, axis=0)
        check_solvable(C.T, lam, d, axis=1)
        if self._strategy() == "calibration":
            self.classifier_quality_ = C[0].astype(np.float64)
        kernels = get_backend(self.backend)
        if resume_from is None:
            Y = _initial_instance_factors(np.random.default_rng(self.random_state), n, d, P.dtype).T
            progress = FitState(Y=Y, X=None, w=np.full(m, 1.0 / m), b=0.0, history=_empty_history())
        else:
            progress = read_checkpoint(resume_from, self, P, labels)
            trainer.load_state(progress.trainer)
        # R, C as (m, n) views of the instance-major arrays; on a GPU backend they move to the device once
        R, C, Y, X, labeled, y_labeled, omega = to_device(kernels, P.T, C.T, progress.Y, progress.X, labeled,
                                                          y_labeled, omega)
        problem = Problem(kernels, R, C, lam, labeled=labeled, y_labeled=y_labeled, omega=omega, **settings)
        state = State(X, Y, progress.w, progress.b)
        del X, Y
        progress.X = progress.Y = None  # the state owns the factors: the initial Y is freed once replaced
        if resume_from is None:
            trainer.initialize(problem, state)
        checkpointer = Checkpointer(checkpoint, checkpoint_every, P, labels) if checkpoint else None
        self._run(problem, state, trainer, _spread_of_R(P), progress, checkpointer, callback)

    def _check_fit_data(self, X, y, client):
        """P (n, m) checked (a lazy row-chunked dask array for the dask backend) and labels (n,)."""
        dtype = DTYPES[self.dtype] if self.dtype in DTYPES else None
        if self.backend == "dask":
            from . import dask_backend

            P = dask_backend.check_probabilities(dask_backend.as_instance_chunks(X, "X", client, dtype), "X")
            return P, check_labels(y, P.shape[0], "y")
        P = as_float_array(X, "X", 2, dtype)
        labels = check_labels(y, P.shape[0], "y")  # before the range check: label errors come first
        return np.ascontiguousarray(check_probability_range(P, "X")), labels

    def _run(self, problem, state, trainer, spread_of_R, progress, checkpointer, callback):
        """The outer loop: trainer step, losses, monitors, remedies, stop test, checkpoints."""
        history, previous = progress.history, progress.previous
        self.converged_ = False
        start = time.perf_counter() - (history["time"][-1] if history["time"] else 0.0)
        weighted = self.aggregator_ == "weighted"
        iteration = progress.iteration
        for iteration in range(progress.iteration + 1, self.max_iter + 1):
            frozen = weighted and iteration <= self.freeze_aggregator_iters
            steps = trainer.step(problem, state, fit_aggregator=weighted and not frozen)
            loss, rec, sup = problem.objective(state.X, state.Y, state.w, state.b)
            for key, value in zip(history, (loss, rec, sup, steps, time.perf_counter() - start)):
                history[key].append(value)
            monitored = self._monitors(state, problem.monitor_factors(state.Y), to_host(problem.y_labeled), spread_of_R)
            for key, value in monitored.items():
                history.setdefault(key, []).append(value)
            if self.verbose:
                print(f"iter {iteration:4d}  loss {loss:.6e}  rec {rec:.6e}  sup {sup:.6e}")
            if callback is not None:
                callback(iteration, history)
            if not np.isfinite(loss):
                raise FloatingPointError(f"the objective became {loss} at iteration {iteration}")
            if weighted and not frozen and self.reinit_collapsed_aggregator and self._weights_collapsed(state.w):
                warnings.warn(
                    f"the aggregator collapsed at iteration {iteration} (||w|| = {np.linalg.norm(state.w):.3g}, "
                    f"sum w = {state.w.sum():.3g}); re-initialising it to the mean (w = 1/m)",
                    CollapseWarning, stacklevel=3,
                )
                state.w, state.b = np.full(state.w.size, 1.0 / state.w.size), 0.0
                previous = None
                continue
            if previous is not None and not frozen and abs(loss - previous) <= self.tol * max(abs(loss), 1e-300):
                self.converged_ = True
                break
            previous = loss
            if checkpointer is not None:
                checkpointer.maybe_write(self, FitState(to_host(state.Y), to_host(state.X), state.w, state.b, history,
                                                        iteration, previous, trainer.state()))
        self.classifier_factors_ = np.ascontiguousarray(to_host(state.X))
        self.instance_factors_ = to_host(state.Y)
        self.coef_ = np.asarray(state.w, dtype=np.float64)
        self.intercept_ = float(state.b)
        self.history_ = history
        self.n_iter_ = iteration
        self.transductive_proba_ = self._proba_from_factors(self.instance_factors_)
        for check in self.diagnose().checks:
            if check.collapsed:
                warnings.warn(f"{check.name}: {check.cause} ({check.monitor} = {check.value:.3g}). "
                              f"Remedy: {check.remedy}", CollapseWarning, stacklevel=3)

    @staticmethod
    def _weights_collapsed(w):
        return np.linalg.norm(w) < diagnostics.WEIGHT_NORM_MIN or w.sum() <= 0

    def _monitors(self, state, Y, y_labeled, spread_of_R):
        """Monitor values at the state; ``Y`` is the problem's monitor_factors (all or a sample)."""
        X = np.asarray(to_host(state.X), dtype=np.float64)
        Y = to_host(Y)
        w = state.w if self.aggregator_ == "weighted" else np.full(X.shape[1], 1.0 / X.shape[1])
        logit_part = matvec64(X @ w, Y)
        if self.aggregator_ == "weighted":
            proba, b = expit(logit_part + state.b), state.b
        else:
            proba, b = np.clip(logit_part, 0.0, 1.0), 0.0
        return diagnostics.monitors(X, Y, w, b, proba, logit_part, y_labeled, spread_of_R)

    def diagnose(self):
        """Collapse report of the fitted model (SPEC.md's failure modes).

        Returns
        -------
        CollapseReport
            ``str(report)`` is a readable table; ``report.to_dict()`` is JSON-ready.
        """
        check_is_fitted(self, "history_")
        missing = sorted(set(diagnostics.MONITORS) - set(self.history_))
        if missing:
            raise ValueError(f"the fit history has no collapse monitors {missing}; refit to record them")
        last = {key: values[-1] for key, values in self.history_.items()}
        both_classes = last["prediction_spread"] == last["prediction_spread"]  # not NaN: labels of both classes
        return diagnostics.CollapseReport(
            self.n_iter_, diagnostics.checks(last, self.latent_dim_, self.aggregator_ == "weighted", both_classes)
        )

    def _proba_from_factors(self, Y):
        """P(y = 1) from instance factors, via v = X w (R_hat never formed)."""
        X = np.asarray(self.classifier_factors_, dtype=np.float64)
        if self.aggregator_ == "mean":
            return np.clip(mean_of_reconstruction(X, Y), 0.0, 1.0)
        return expit(matvec64(X @ self.coef_, Y) + self.intercept_)  # lazy for dask

    # ----------------------------------------------------------- predict
    def transform(self, X):
        """Instance factors (n_new, d) of new instances, folded in with X fixed."""
        return self._fold_in(X).T

    def _fold_in(self, X):
        """Instance factors Y (d, n_new) of new instances (SPEC layout); lazy for dask input."""
        check_is_fitted(self, "classifier_factors_")
        if self.backend == "dask" and not isinstance(X, np.ndarray):
            return self._fold_in_chunks(X)
        P = np.ascontiguousarray(check_probabilities(X, "X", DTYPES[self.dtype]))
        if P.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {P.shape[1]} classifiers; the model was fitted on {self.n_features_in_}")
        C = self._fold_in_confidence(P)
        check_solvable(C.T, float(self.lam), self.latent_dim_, axis=0)
        return get_backend(self.backend).fold_in(self.classifier_factors_, P.T, C.T, float(self.lam))

    def _fold_in_chunks(self, X):
        """Lazy chunked fold-in of a dask array (dask backend): Y (d, n_new) as a dask array."""
        from . import dask_backend

        P = dask_backend.check_probabilities(dask_backend.as_instance_chunks(X, "X", None, DTYPES[self.dtype]), "X")
        if P.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {P.shape[1]} classifiers; the model was fitted on {self.n_features_in_}")
        confidence = functools.partial(
            reference.confidence_chunk, labels=None, strategy=self._fold_in_strategy(),
            quality=getattr(self, "classifier_quality_", None),
        )
        return dask_backend.fold_in_chunks(self.classifier_factors_, P, float(self.lam), confidence).T

    def predict_proba(self, X):
        """Class probabilities (n_new, 2) of new instances (inductive fold-in).

        A lazy dask array for dask input with backend="dask".
        """
        p = self._proba_from_factors(self._fold_in(X))
        return np.stack([1.0 - p, p], axis=1)

    def predict(self, X):
        """Class labels (0/1) of new instances, thresholded at 0.5."""
        positive = self.predict_proba(X)[:, 1] >= 0.5  # first: raises NotFittedError before fit
        return positive.astype(self.classes_.dtype)  # classes_ is [0, 1]

    # ------------------------------------------------------------ files
    def save(self, path, *, overwrite=False):
        """Save the fitted model to a file that cannot run code (see :mod:`cfe_fast.model_io`)."""
        from .model_io import save_model

        save_model(self, path, overwrite=overwrite)

    @classmethod
    def load(cls, path):
        """Load a model written by :meth:`save`; it predicts bit-identically."""
        from .model_io import load_model

        return load_model(path, cls)


def _empty_history():
    return {key: [] for key in ("loss", "reconstruction", "supervised", "aggregator_steps", "time")}


def _spread_of_R(P):
    """std over instances of the mean of R (a dask reduction for dask arrays)."""
    return float(P.mean(axis=1).std())


def _initial_instance_factors(rng, n, d, dtype):
    """Y0 (n, d): standard normal / sqrt(d) drawn from the model's Generator.

    Consumes ``rng`` sequentially, so drawing consecutive blocks of rows gives
    the rows of one draw (the dask backend draws chunk by chunk).
    """
    Y = np.empty((n, d), dtype=dtype)
    for s, e in blocks(n, d):  # float64 draws a block at a time: no n x d float64 temporary for float32
        Y[s:e] = rng.standard_normal((e - s, d)) / np.sqrt(d)
    return Y
