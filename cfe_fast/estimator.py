"""CFEnsembleClassifier: the scikit-learn estimator over the backends and trainers.

It validates its parameters (:mod:`cfe_fast.parameters`) against the
backend's capabilities, hands the data to the backend
(:meth:`~cfe_fast.backends.contract.Backend.start_fit`), runs the outer loop
(:func:`cfe_fast.training.loop.run`) and publishes the fitted attributes.
"""

import functools
import os
import warnings

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.validation import check_is_fitted, validate_data

from . import diagnostics, multiclass
from ._float64 import matvec64
from ._threads import single_threaded_blas
from ._validation import (
    AUTO_UNLABELED,
    as_float_array,
    check_not_empty,
    check_sample_weight,
    encode_labels,
    refuse_1d,
)
from .backends import CAPABILITIES, get_backend
from .core.confidence import confidence_chunk, fold_in_strategy
from .core.missing import mean_of_observed
from .core.sparse import has_sparse_chunks, is_sparse, row_means, sparse_confidence_block
from .core.losses import AggregatorPenalty
from .errors import CollapseWarning, QualityWarning
from .io.checkpoint import Checkpointer, read_checkpoint
from .io.model_file import (
    MULTICLASS_SCHEMA,
    TRAINING_ATTRIBUTES,
    ClassModel,
    ModelContent,
    ModelFileError,
    read_model,
    write_model,
)
from .parameters import DTYPES, validate_params
from .scores import fit_quantiles, to_unit_interval
from .training import loop
from .training.aggregator import PRIOR_FALLBACK, prior_grid
from .training.problem import FitData, Settings, mean_of_reconstruction
from .training.trainers import ALSTrainer, ExactTrainer, JointTrainer

#: the fitted attributes a model file holds (besides ``history_``), when set
FITTED_ATTRIBUTES = (
    "classes_", "n_features_in_", "feature_names_in_", "latent_dim_", "aggregator_", "classifier_factors_",
    "instance_factors_", "coef_", "intercept_", "classifier_quality_", "transductive_proba_", "n_iter_",
    "converged_", "aggregator_prior_", "aggregator_prior_center_", "prior_correction_", "held_out_average_precision_",
    "held_out_average_precision_of_mean_", "held_out_positive_rate_", "held_out_mean_better_share_",
    "score_quantiles_",
)
#: the fitted attributes of a model of more than two classes (:mod:`cfe_fast.multiclass`) besides
#: ``classes_``, the column names and the fit's summary
MULTICLASS_ATTRIBUTES = ("estimators_",)


class CFEnsembleClassifier(ClassifierMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Combine the probability outputs of many classifiers with CF-Ensemble.

    The classifiers x instances probability matrix R is factorised by
    confidence-weighted alternating least squares (R ~ X^T Y), using labeled and
    unlabeled instances alike; an aggregator ``sigma(w^T r_hat + b)`` fitted on
    the labeled instances reads the prediction off the reconstruction.

    Parameters
    ----------
    latent_dim : int or None, default=None
        Latent dimension d. None picks ``max(1, min(20, n_classifiers - 1))``.
        At most n_classifiers: there the factorisation can copy R (it warns);
        above it each dimension only adds cost, so it is refused, as is a
        value whose factors would not fit in memory.
    rho : float in [0, 1], default=0.9
        Weight of the reconstruction term in the objective (docs/method.md). It
        shapes the fit of the "exact" and "joint" trainers (the "als"
        half-steps ignore the supervised term). L_rec averages over all m n
        entries and L_sup over the labeled instances, so at 0.5 the labels
        dominate the factors.
    lam : float, default=0.1
        Ridge penalty of the ALS half-steps (> 0 recommended; 0 is refused
        where a system would be singular).
    confidence : {"label_aware", "certainty", "uniform", "calibration"} or array, default="uniform"
        Confidence strategy, or a user matrix C of shape (n_instances,
        n_classifiers) that is used exactly as given. "uniform" is the
        default because it predicted best on the real-data benchmark
        (``benchmarks/results/quality_cpu2.md``: its ablation rows);
        "label_aware" was the original implementation's default.
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
        True focal gradient, or the original implementation's (1 - p_t)^gamma-weighted
        BCE gradient.
    aggregator_l2 : float, default=1.0
        Strength, in labeled instances, of a ridge on w: the penalty
        (aggregator_l2 / n_labeled / 2) ||w||^2, with n_labeled the total class
        weight of the labeled instances; 1 is the ridge of scikit-learn's
        ``LogisticRegression(C=1)``. It keeps the Newton fit well posed when
        r_hat is collinear (it has rank d) or the labels are separable, and
        fades as labels grow. On the real-data benchmark 1 lowered the
        shortfall to max(mean, LR stacking) on two sets of re-drawn splits
        where 0.1 and 10 did not, and a fixed ridge on the mean loss (its
        strength growing with the labels) fell 0.01 PR-AUC behind LR stacking
        with 27,000 labels (``benchmarks/results/quality_cpu2.md``).
    aggregator_prior : float or "auto", default="auto"
        Strength, in labeled instances, of a prior on the weights w toward
        the centre ``aggregator_prior_center``, never on b: the penalty
        (aggregator_prior / n_labeled / 2) ||w - centre(w)||^2. With few
        labels the ensemble stays near the centre; with many the labels
        decide. "auto" (the default) chooses the strength and the centre
        from :data:`cfe_fast.training.aggregator.PRIOR_GRID` by stratified
        cross-validation of the aggregator on the labeled instances, with
        the final factors fixed (``aggregator_prior_``,
        ``aggregator_prior_center_``), where the factors do not depend on
        the aggregator: with trainer="als" and aggregator_solver="newton";
        elsewhere "auto" is 0. On the real-data benchmark
        (``benchmarks/results/quality_cpu2.md``) it keeps few-label fits
        near the mean of the classifiers, where a free aggregator fell up to
        0.3 PR-AUC below it, and lets a ridge follow a dominant classifier.
    aggregator_prior_center : {"auto", "consensus", "equal", "zero"}, default="auto"
        The prior's centre: "consensus", the classifiers' agreement weights
        at any common scale (each classifier weighted by its correlation with
        the others' reconstructions, to the 4th power, over all instances,
        labeled or not: :func:`cfe_fast.core.consensus.consensus_weights`;
        trainer="als" only), "equal" weights at any common scale (a strong
        prior gives the mean of the reconstruction) or "zero" (a ridge, as in
        logistic-regression stacking: a strong prior weights each classifier
        by the class-weighted difference of the classes' mean r_hat). "auto":
        chosen with the strength by aggregator_prior="auto" between
        "consensus" and "zero" (the one whose held-out predictions rank the
        labeled instances with the higher average precision), and "equal"
        with a given strength.
    freeze_aggregator_iters : int, default=0
        Keep (w, b) at its initial value (w = 1/m, b = 0) for this many iterations.
    trainer : {"als", "exact", "joint"}, default="als"
        "als": ALS half-steps on the reconstruction, then the aggregator (the
        published method; the objective may increase). "exact": block-coordinate
        descent on the whole objective with majorised block steps (it never
        increases; needs rho > 0). "joint": Adam on all parameters together.
        See :mod:`cfe_fast.training.trainers`. On the real-data benchmark
        (``benchmarks/results/quality_cpu2.md``) "exact" and "joint" predict
        worse than "als" (19 and 13 of 33 cells within 0.002 PR-AUC of the
        better of the mean and LR stacking, against 28): their factors follow the few
        labels too, so the aggregator's cross-validation cannot be run on
        fixed factors ("auto" is 0 for them) and they overfit where labels
        are few. Use them to study the joint objective, not for prediction.
    aggregator_solver : {"newton", "gd", "adam"}, default="newton"
        How the "als" trainer updates (w, b) each iteration: Newton to
        convergence, or ``aggregator_steps`` gradient / Adam steps of size
        ``aggregator_lr`` ("gd" with lr 0.01 and 1 step is the original
        implementation's procedure).
    aggregator_lr : float, default=0.01
    aggregator_steps : int, default=1
    reinit_collapsed_aggregator : bool, default=False
        Reset (w, b) to the mean (with a CollapseWarning) when ||w|| falls below
        ``diagnostics.WEIGHT_NORM_MIN`` or sum(w) <= 0 during training.
    learning_rate : float, default=0.01
        Adam step size of the "joint" trainer. A fit whose objective becomes
        non-finite or explodes stops with a ``FloatingPointError`` naming the
        remedy (a smaller learning_rate, clip_norm).
    joint_steps_per_iter : int, default=20
        Adam steps per iteration of the "joint" trainer.
    lr_schedule : {"warmup_cosine", "constant"}, default="warmup_cosine"
    clip_norm : float or None, default=None
        Clip the global gradient norm of the "joint" trainer.
    max_iter : int, default=50
    tol : float, default=1e-5
        Stop when the relative change of the objective falls below tol (tol=0: run max_iter iterations).
    random_state : int, numpy Generator or None
        Seeds the model's own Generator (the global RNG is never used), which
        draws the initial factors. With confidence="uniform" on data without
        missing entries (and lam > 0) the fit starts from ALS's fixed point,
        computed exactly, and does not depend on it (docs/method.md, "Training").
    backend : {"numba", "numpy", "cupy", "dask"}, default="numba"
        "numpy" is the reference; "cupy" runs on an NVIDIA GPU when one is usable
        (float32 recommended there; every trainer) and on NumPy otherwise;
        "dask" fits on a dask cluster (trainer="als" only): X may then be a dask
        array (n, m) chunked along instances, in memory or lazy (e.g. Zarr), and
        need not fit in memory (see :mod:`cfe_fast.backends.dask`).
    client : dask.distributed.Client or None, default=None
        Cluster of the "dask" backend. None uses the active default client if
        there is one (as dask-ml and xgboost.dask do), else starts a
        ``LocalCluster`` for the duration of ``fit``; either way the fitted
        factors come back as NumPy arrays. With a client they stay on the
        cluster as dask arrays.
    solver : {"auto", "dual", "primal", "cg"}, default="auto"
        How the "als" half-steps solve their ridge systems (Numba backend; the
        NumPy reference is exact and ignores it; other backends take "auto").
        "auto": exact, dual m x m systems when n_classifiers <= 1.2 latent_dim,
        else primal d x d systems (:func:`cfe_fast.backends.numba.instance_step.choose_solver`).
        "cg": approximate, 3 conjugate-gradient steps per system per iteration,
        warm-started from the previous factors (faster for large latent_dim and
        n_classifiers; the factors trail those of exact ALS).
    dtype : {"float64", "float32"}, default="float64"
    threshold : float in [0, 1], default=0.5
        :meth:`predict` says ``classes_[1]`` where its probability is >=
        threshold. The probabilities follow the labeled data's class balance
        (see ``prior_correction_``), so with rare positives a threshold near
        their rate flags more of them.
    unlabeled : "auto", a label or None, default="auto"
        The value of y that marks an unlabeled instance, besides NaN and None
        (which always do). "auto": -1 too where the labels are numbers (the
        scikit-learn semi-supervised convention); None: NaN and None only
        (so that -1 can be a class, e.g. labels {-1, 1}).
    input_type : {"probabilities", "scores"}, default="probabilities"
        What X holds. "probabilities": each classifier's probability of
        ``classes_[1]``, in [0, 1]. "scores": any real-valued outputs that
        grow with the odds of ``classes_[1]`` (``decision_function``,
        margins, log-odds); each classifier's scores are mapped into [0, 1]
        by their rank among the fitted instances, labeled or not
        (:mod:`cfe_fast.scores`; ``score_quantiles_``), before the
        factorisation, and new instances the same way. Not with backend="dask".
    verbose : bool, default=False

    Attributes
    ----------
    classes_ : ndarray (n_classes,)
        The classes of the labeled instances, sorted (as
        :class:`~sklearn.preprocessing.LabelEncoder` sorts them); column j of
        :meth:`predict_proba` is the probability of ``classes_[j]``. [0, 1]
        when y has no labeled instance.
    estimators_ : list of CFEnsembleClassifier
        With more than two classes only (:mod:`cfe_fast.multiclass`): the
        binary model of each class against the rest, in ``classes_`` order;
        the attributes below are then theirs, not the model's, except
        ``latent_dim_``, ``n_iter_``, ``converged_`` and ``transductive_proba_``.
    n_features_in_ : int
        Number of classifiers m.
    feature_names_in_ : ndarray (m,) of str
        The column names of X, where X was a DataFrame with string column
        names. :meth:`predict_proba` and :meth:`transform` then match the
        columns of a DataFrame by name: the same names in another order give
        the same result; missing or unknown names are an error naming them.
    latent_dim_ : int
    classifier_factors_ : ndarray (d, m)
        X.
    instance_factors_ : ndarray (d, n)
        Y of the fitted instances (a dask array with backend="dask" and a client). Like
        ``transductive_proba_``, absent from a model loaded from a file saved without
        ``include_training_factors=True`` (see :meth:`save`).
    coef_ : ndarray (m,)
        The aggregator's weights w.
    intercept_ : float
        The aggregator's intercept b. With class weights, the fitted
        intercept minus ``prior_correction_``, so that probabilities follow
        the labeled data's class balance (docs/method.md, "Calibration").
    prior_correction_ : float
        log(n_negative / n_positive) of the labeled instances (their total
        sample weights) with ``class_weight="balanced"``: the shift the
        balanced weights give the fitted intercept (0 without class weights).
    transductive_proba_ : ndarray (n,) or (n, n_classes)
        P(y = classes_[1]) for every fitted instance, labeled or not (a dask array with
        backend="dask" and a client); with more than two classes the probability of
        every class.
    history_ : dict of lists
        Per iteration: "loss", "reconstruction", "supervised", "aggregator_steps",
        "time", and the collapse monitors "coef" (w), "intercept", "w_norm",
        "w_sum", "bias_share", "pred_std", "prediction_spread", "variance_ratio",
        "effective_rank_X", "effective_rank_Y", "frac_positive"
        (see :mod:`cfe_fast.diagnostics`).
    n_iter_ : int
    converged_ : bool
    held_out_average_precision_, held_out_average_precision_of_mean_, held_out_positive_rate_ : float or None
        Out of fold on the labeled instances (the aggregator cross-validated
        with the factors fixed; at most ``config.PRIOR_CV_INSTANCES`` of them):
        the average precision of the ensemble, that of the mean of R, and the
        positive rate (chance); ``held_out_mean_better_share_``: the share of
        bootstrap resamples in which the mean ranks better. :meth:`diagnose`
        compares them, and ``fit`` raises a :class:`~cfe_fast.QualityWarning`
        when the ensemble is worse than the mean by more than
        ``diagnostics.HELD_OUT_MARGIN`` in at least
        ``diagnostics.HELD_OUT_CONFIDENCE`` of the resamples, or no better
        than chance. Optimistic where the factors used the labels
        (``confidence="label_aware"``, the exact and joint trainers). None
        without two labeled instances of each class.
    score_quantiles_ : ndarray (q, m)
        With input_type="scores": the quantiles of each classifier's fitted
        scores that map scores into [0, 1].
    aggregator_prior_ : float or None
        The prior strength of the fitted aggregator (the cross-validated
        one with ``aggregator_prior="auto"``; None with the mean aggregator).
    aggregator_prior_center_ : str or None
        Its centre, "equal" or "zero" (None with the mean aggregator).
    """

    def __init__(
        self,
        latent_dim=None,
        rho=0.9,
        lam=0.1,
        confidence="uniform",
        confidence_alpha=1.0,
        aggregator="weighted",
        class_weight="balanced",
        focal_gamma=0.0,
        focal_variant="exact",
        aggregator_l2=1.0,
        aggregator_prior="auto",
        aggregator_prior_center="auto",
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
        threshold=0.5,
        unlabeled=AUTO_UNLABELED,
        input_type="probabilities",
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
        self.aggregator_prior = aggregator_prior
        self.aggregator_prior_center = aggregator_prior_center
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
        self.threshold = threshold
        self.unlabeled = unlabeled
        self.input_type = input_type
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = self.input_type == "probabilities"  # values above 1 are refused too
        tags.input_tags.allow_nan = True  # NaN marks an unobserved entry (a classifier that abstains)
        # scipy.sparse probabilities: stored entries are the observed ones, where the backend takes them
        tags.input_tags.sparse = (self.input_type == "probabilities" and self.backend in CAPABILITIES
                                  and "sparse" in CAPABILITIES[self.backend].inputs)
        # K > 2 classes need the per-classifier class layout (cfe_fast.multiclass), which generic
        # multi-class data lacks: scikit-learn's checks then test the binary case only
        tags.classifier_tags.multi_class = False
        return tags

    def __getattr__(self, name):
        """Only for attributes not found: say why a loaded model lacks its training instances' values."""
        fitted = "classifier_factors_" in vars(self) or ("estimators_" in vars(self) and name == "transductive_proba_")
        if name in TRAINING_ATTRIBUTES and fitted:
            raise AttributeError(f"this model holds no {name}: it was loaded from a model file saved without "
                                 "the fitted instances' values (save(path, include_training_factors=True) "
                                 "keeps them; 'cfe-fast fit' writes their probabilities to its predictions file)")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # ------------------------------------------------------------ checks
    def _checked_backend(self):
        """The backend, once every parameter is valid and supported by it (its capabilities)."""
        validate_params(self.get_params(deep=False))
        return get_backend(self.backend)

    def _latent_dim(self, P):
        """The latent dimension for the data P (warns where it makes the factorisation trivial).

        Refused above n_classifiers (R is reproduced exactly at n_classifiers;
        each dimension more only adds cost, cubic in latent_dim) and where the
        factors would not fit in this machine's memory.
        """
        n_instances, n_classifiers = P.shape
        if self.latent_dim is None:
            return max(1, min(20, n_classifiers - 1))
        d = int(self.latent_dim)
        if d > n_classifiers:
            raise ValueError(
                f"latent_dim={d} > n_classifiers={n_classifiers} (X has {n_classifiers} feature(s), one per "
                "classifier): at latent_dim = n_classifiers the factorisation "
                "already reproduces R exactly and each dimension more only adds cost; use latent_dim <= "
                f"{n_classifiers} (below it for a factorisation that does something)"
            )
        factor_bytes = 2 * d * (n_instances + n_classifiers) * P.dtype.itemsize  # X, Y and one working copy
        memory = _physical_memory()
        if isinstance(P, np.ndarray) and memory is not None and factor_bytes > memory:
            raise ValueError(f"latent_dim={d} needs about {factor_bytes / 2**30:.3g} GiB for the factors of "
                             f"{n_instances} instances, more than this machine's {memory / 2**30:.3g} GiB; "
                             "use a smaller latent_dim")
        if d == n_classifiers:
            warnings.warn(
                f"latent_dim={d} >= n_classifiers={n_classifiers}: the factorisation can "
                "reproduce R exactly and the collaborative-filtering step does nothing; "
                "use a latent_dim below the number of classifiers",
                UserWarning,
                stacklevel=5,
            )
        return d

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

    def fit(self, X, y, sample_weight=None, *, checkpoint=None, checkpoint_every=1, resume_from=None,
            callback=None):
        """Fit on the probability matrix X = P (n_instances, n_classifiers) and labels y.

        y holds the class of each labeled instance and marks unlabeled ones
        (NaN, None, or as ``unlabeled`` says). All instances take part in
        the factorisation (transductive); the probabilities of the fitted
        instances end up in ``transductive_proba_``. A
        :class:`~cfe_fast.CollapseWarning` is raised for every collapse check
        that fires on the final state (see :meth:`diagnose`).

        Parameters
        ----------
        X : array, DataFrame or sparse matrix (n_instances, n_classifiers)
            Probabilities in [0, 1], NaN where unobserved (a dask array, possibly
            lazy, with backend="dask"; a ``scipy.sparse`` matrix, its stored
            entries the observed ones, with backend "numba", "cupy" or "dask");
            column j holds classifier j's probability of
            ``classes_[1]``. A DataFrame's column names become ``feature_names_in_``.
            With K > 2 classes: (n_instances, n_classifiers, K), or the
            (n_instances, n_classifiers * K) layout of StackingClassifier
            (classifier j's probability of ``classes_[k]`` in column j K + k;
            the only layout of a sparse X).
        y : array (n_instances,)
            Classes of any kind :class:`~sklearn.preprocessing.LabelEncoder`
            accepts (numbers, strings, booleans), and unlabeled marks.
        sample_weight : array (n_instances,) or None
            Non-negative weight of each labeled instance in the supervised
            term: it multiplies the class weights (and "balanced" class
            weights count classes by total weight), so an integer weight k
            weighs an instance as k copies of it would in the aggregator's
            loss, and weight 0 leaves it out of the supervised term as if it
            were unlabeled. The reconstruction term is not weighted: with
            trainer="als" the factors do not depend on the weights; with
            "exact" and "joint" they follow the weighted supervised term. The
            weights of unlabeled instances are ignored.
        checkpoint : path or None  (not with backend="dask")
            Write the fit state to this file (safe format of
            :mod:`cfe_fast.io.archive`, replaced atomically) every
            ``checkpoint_every`` iterations.
        checkpoint_every : int, default=1
        resume_from : path or None
            Continue from a checkpoint written by a fit with the same parameters
            and data; the result is bit-identical to an uninterrupted fit.
        callback : callable (iteration, history) or None
            Called after every iteration (e.g. a progress bar).
        """
        backend = self._checked_backend()
        if not backend.capabilities.checkpoints and (checkpoint is not None or resume_from is not None):
            raise ValueError(f"checkpoints are not supported with backend={self.backend!r}")
        classes, codes = encode_labels(y, unlabeled=self.unlabeled, max_classes=None)
        if is_sparse(X) or has_sparse_chunks(X):
            self._check_sparse(backend, X, fitting=True)
        if classes.size > 2:
            if checkpoint is not None or resume_from is not None:
                raise ValueError(f"checkpoints are not supported with more than two classes (y has {classes.size}): "
                                 "fit without checkpoint and resume_from, or fit one two-class model per class "
                                 "(labels 'this class or not', X's columns of that class), each with its own "
                                 "checkpoint")
            for name in (*FITTED_ATTRIBUTES, "history_"):
                vars(self).pop(name, None)
            weights = check_sample_weight(sample_weight, codes.size, ~np.isnan(codes))
            multiclass.fit(self, X, classes, codes, sample_weight, weights, callback)
            return self
        for name in MULTICLASS_ATTRIBUTES:
            vars(self).pop(name, None)
        # the kernels parallelise themselves: idle BLAS threads would spin
        with single_threaded_blas(), backend.session(self.client) as client:
            self._fit(backend, X, classes, codes, sample_weight, client, checkpoint, checkpoint_every, resume_from,
                      callback)
        return self

    def _fit(self, backend, X, classes, codes, sample_weight, client, checkpoint, checkpoint_every, resume_from,
             callback):
        """Check the data, start the backend's problem, run the loop, publish the result."""
        P, labels = self._checked_data(backend, X, codes, client)
        d = self._latent_dim(P)
        labeled = ~np.isnan(labels)
        y_labeled = labels[labeled]
        weights = check_sample_weight(sample_weight, labels.size, labeled)
        aggregator = self.aggregator
        if not labeled.any():
            warnings.warn(
                "y has no labeled instance: fitting the reconstruction only; predictions are the "
                "mean of the reconstruction (aggregator='mean')",
                UserWarning,
                stacklevel=3,
            )
            aggregator = "mean"
            classes = np.array([0, 1])
        else:
            _check_both_classes(classes, y_labeled, weights)
        self.classes_ = classes
        self.latent_dim_ = d
        self.aggregator_ = aggregator
        omega = _instance_weights(y_labeled, weights, self.class_weight == "balanced")
        prior_grid = self._prior_grid()
        center = "equal" if self.aggregator_prior_center == "auto" else self.aggregator_prior_center
        if prior_grid is not None:
            strength = PRIOR_FALLBACK
        else:
            strength = 0.0 if self.aggregator_prior == "auto" else float(self.aggregator_prior)
        penalty = AggregatorPenalty(l2=float(self.aggregator_l2), prior=strength,
                                    weight_total=max(float(omega.sum()), 1.0), center=center)
        settings = Settings(rho=float(self.rho), focal_gamma=float(self.focal_gamma), focal_variant=self.focal_variant,
                            penalty=penalty, weighted_aggregator=aggregator == "weighted")
        params = self.get_params(deep=False)
        resume = read_checkpoint(resume_from, params, P, labels) if resume_from is not None else None
        data = FitData(P=P, labels=labels, omega=omega,
                       lam=float(self.lam), latent_dim=d, confidence=self.confidence,
                       confidence_alpha=self.confidence_alpha, settings=settings,
                       rng=np.random.default_rng(self.random_state), resume=resume, client=client,
                       classifier_names=getattr(self, "feature_names_in_", None))
        problem, state, progress = backend.start_fit(data)
        trainer = self._make_trainer()
        if resume is None:
            trainer.initialize(problem, state)
        else:
            trainer.load_state(progress.trainer)
        options = loop.LoopOptions(max_iter=self.max_iter, tol=self.tol, weighted=aggregator == "weighted",
                                   freeze_aggregator_iters=self.freeze_aggregator_iters,
                                   reinit_collapsed_aggregator=self.reinit_collapsed_aggregator, verbose=self.verbose,
                                   prior_grid=prior_grid)
        checkpointer = Checkpointer(checkpoint, checkpoint_every, P, labels, params) if checkpoint else None
        result = loop.run(problem, state, trainer, options, progress, _spread_of_R(P), checkpointer, callback)
        self.prior_correction_ = self._prior_correction(y_labeled, weights)
        self._publish(backend, problem, result, client)

    def _check_sparse(self, backend, X, fitting=False):
        """Refuse, by name, what a sparse X (stored entries = observed; a ``scipy.sparse`` matrix or a dask
        array of them) cannot be used with."""
        if "sparse" not in backend.capabilities.inputs:
            *others, last = [repr(name) for name, c in CAPABILITIES.items() if "sparse" in c.inputs]
            raise TypeError(f"backend={self.backend!r} does not take a sparse X; use backend={', '.join(others)} or "
                            f"{last}, or a dense X with NaN at the unobserved entries")
        if has_sparse_chunks(X) and "dask" not in backend.capabilities.inputs:
            raise TypeError(f"a dask array of sparse chunks needs backend='dask', got "
                            f"backend={self.backend!r}; or pass a scipy.sparse X")
        if self.input_type != "probabilities":
            raise ValueError(f"a sparse X holds probabilities: input_type={self.input_type!r} needs a dense X")
        if not fitting:
            return
        trainers = backend.capabilities.sparse_trainers
        if self.trainer not in trainers or self.solver not in ("auto", "primal"):
            raise ValueError(f"a sparse X is fitted by backend={self.backend!r} with trainer "
                             f"{' or '.join(map(repr, trainers))} and solver 'auto' or 'primal' (the d x d "
                             f"systems), got trainer={self.trainer!r}, solver={self.solver!r}")

    def _checked_data(self, backend, X, codes, client):
        """(P, labels): the probabilities and the labels' 0/1 ``codes`` checked (NaN where unlabeled).

        Sets ``feature_names_in_``, ``n_features_in_`` and, for scores, ``score_quantiles_``.
        """
        validate_data(self, X, reset=True, skip_check_array=True)
        vars(self).pop("score_quantiles_", None)
        if self.input_type == "scores":
            scores = check_not_empty(as_float_array(X, "X", 2, missing=True), "X")
            self.score_quantiles_ = fit_quantiles(scores)
            X = to_unit_interval(scores, self.score_quantiles_, DTYPES[self.dtype])
        names = getattr(self, "feature_names_in_", None)
        return backend.check_data(X, codes, DTYPES[self.dtype], client, names)

    def _publish(self, backend, problem, result, client):
        """Set the fitted attributes from a loop's result and warn of every collapse check that fires."""
        state = result.state
        vars(self).pop("classifier_quality_", None)
        if problem.classifier_quality is not None:
            self.classifier_quality_ = problem.classifier_quality
        self.classifier_factors_ = np.ascontiguousarray(backend.to_host(state.X))
        self.instance_factors_ = backend.to_host(state.Y)
        self.coef_ = np.asarray(state.w, dtype=np.float64)
        self.intercept_ = float(state.b) - self.prior_correction_
        self.history_ = result.history
        self.n_iter_ = result.n_iter
        self.converged_ = result.converged
        weighted = self.aggregator_ == "weighted"
        self.aggregator_prior_center_, self.aggregator_prior_ = result.aggregator_prior if weighted else (None, None)
        self.transductive_proba_ = self._proba_from_factors(self.instance_factors_)
        held_out = result.held_out or {}
        self.held_out_average_precision_ = held_out.get("average_precision")
        self.held_out_average_precision_of_mean_ = held_out.get("mean_of_R")
        self.held_out_positive_rate_ = held_out.get("chance")
        self.held_out_mean_better_share_ = held_out.get("mean_of_R_better")
        for check in self.diagnose().checks:
            if check.collapsed:
                category = QualityWarning if check.category == "quality" else CollapseWarning
                warnings.warn(f"{check.name}: {check.cause} ({check.monitor} = {check.value:.3g}). "
                              f"Remedy: {check.remedy}", category, stacklevel=4)
        if self.client is None:  # the fit's own cluster closes: bring the fitted factors back
            self.instance_factors_, self.transductive_proba_ = backend.gather(
                client, self.instance_factors_, self.transductive_proba_)

    def diagnose(self):
        """Report of the fitted model: the collapse failure modes of docs/method.md, and the
        held-out comparison with the mean of the classifiers and chance (``held_out_*_``).

        Returns
        -------
        CollapseReport
            ``str(report)`` is a readable table; ``report.to_dict()`` is JSON-ready.
        """
        check_is_fitted(self, "classes_")
        if self._multiclass:
            return multiclass.diagnose(self)
        check_is_fitted(self, "history_")
        missing = sorted(set(diagnostics.MONITORS) - set(self.history_))
        if missing:
            raise ValueError(f"the fit history has no collapse monitors {missing}; refit to record them")
        last = {key: values[-1] for key, values in self.history_.items()}
        both_classes = last["prediction_spread"] == last["prediction_spread"]  # not NaN: labels of both classes
        checks = diagnostics.checks(last, self.latent_dim_, self.aggregator_ == "weighted", both_classes)
        if getattr(self, "held_out_average_precision_", None) is not None:
            checks += diagnostics.held_out_checks({"average_precision": self.held_out_average_precision_,
                                                   "mean_of_R": self.held_out_average_precision_of_mean_,
                                                   "chance": self.held_out_positive_rate_,
                                                   "mean_of_R_better": self.held_out_mean_better_share_})
        return diagnostics.CollapseReport(self.n_iter_, checks)

    def _prior_grid(self):
        """The aggregator priors that aggregator_prior="auto" cross-validates, or None where none is chosen."""
        if self.aggregator_prior != "auto" or self.trainer != "als" or self.aggregator_solver != "newton":
            return None
        center = self.aggregator_prior_center
        return prior_grid() if center == "auto" else prior_grid((center,))

    def _prior_correction(self, y_labeled, weights):
        """The intercept's shift by balanced class weights: log(W_neg / W_pos), W a class's total weight; else 0."""
        if self.class_weight != "balanced" or self.aggregator_ != "weighted":
            return 0.0
        positive = float(weights[y_labeled == 1].sum())
        return float(np.log((float(weights.sum()) - positive) / positive))

    def _proba_from_factors(self, Y):
        """P(y = classes_[1]) from instance factors, via v = X w (R_hat never formed; lazy for dask)."""
        X = np.asarray(self.classifier_factors_, dtype=np.float64)
        if self.aggregator_ == "mean":
            return np.clip(mean_of_reconstruction(X, Y), 0.0, 1.0)
        return expit(matvec64(X @ self.coef_, Y) + self.intercept_)

    # ----------------------------------------------------------- predict
    @property
    def _multiclass(self):
        """Whether the fitted model has more than two classes (:mod:`cfe_fast.multiclass`)."""
        return hasattr(self, "estimators_")

    def transform(self, X):
        """Instance factors (n_new, d) of new instances, folded in with X fixed (with K > 2 classes:
        (n_new, K d), the per-class factors side by side)."""
        if self._multiclass:
            return multiclass.transform(self, self._in_fitted_column_order(X))
        return self._fold_in(X).T

    def _fold_in(self, X, values=None):
        """Instance factors Y (d, n_new) of new instances (a lazy dask array for dask input).

        With ``values``, a function of a block's factors: its (n_new,) values
        instead, computed block by block (Y is never whole; see the backend's
        :meth:`~cfe_fast.backends.contract.Backend.fold_in_data`).
        """
        check_is_fitted(self, "classifier_factors_")
        backend = get_backend(self.backend)
        X = self._in_fitted_column_order(refuse_1d(X))
        validate_data(self, X, reset=False, skip_check_array=True)  # column names and count as in fit
        if is_sparse(X) or has_sparse_chunks(X):
            self._check_sparse(backend, X)
        if self.input_type == "scores":
            X = to_unit_interval(check_not_empty(as_float_array(X, "X", 2, missing=True), "X"), self.score_quantiles_,
                                 DTYPES[self.dtype])
        dtype = DTYPES[self.dtype]
        P = backend.check_new_data(X, dtype)
        sparse = is_sparse(P) or has_sparse_chunks(P)
        confidence = functools.partial(sparse_confidence_block if sparse else confidence_chunk, labels=None,
                                       strategy=fold_in_strategy(self._strategy()),
                                       quality=getattr(self, "classifier_quality_", None))
        return backend.fold_in_data(self.classifier_factors_, P, float(self.lam), confidence, dtype, values)

    def _in_fitted_column_order(self, X):
        """A DataFrame holding the fitted column names in another order, reordered to the fitted order."""
        names = getattr(self, "feature_names_in_", None)
        columns = getattr(X, "columns", None)
        if names is None or columns is None or len(columns) != len(names):
            return X
        if list(columns) != list(names) and set(columns) == set(names):
            return X[list(names)]
        return X

    @property
    def _n_features_out(self):
        """The number of columns of :meth:`transform` (its names: ``get_feature_names_out()``)."""
        return self.latent_dim_ * (self.classes_.size if self._multiclass else 1)

    def predict_proba(self, X):
        """Class probabilities (n_new, n_classes) of new instances (inductive fold-in), columns in ``classes_`` order.

        The instances are folded in block by block, so the memory this takes
        beyond X and the result is bounded (``cfe_fast.config.FLOAT64_BLOCK_BYTES``
        of X's rows per block). A lazy dask array for dask input with backend="dask"
        (two classes).
        """
        if self._multiclass:
            return multiclass.predict_proba(self, self._in_fitted_column_order(X))
        p = self._fold_in(X, values=self._proba_from_factors)
        return np.stack([1.0 - p, p], axis=1)

    def predict(self, X):
        """Class labels of new instances: ``classes_[1]`` where its probability is >= ``threshold``; with
        more than two classes the most probable class (``threshold`` is not used)."""
        if self._multiclass:
            return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
        positive = self.predict_proba(X)[:, 1] >= self.threshold  # first: raises NotFittedError before fit
        negative_class, positive_class = self.classes_
        return np.where(positive, positive_class, negative_class).astype(self.classes_.dtype)  # lazy for dask

    # ------------------------------------------------------------ files
    def save(self, path, *, overwrite=False, include_training_factors=False):
        """Save the fitted model to a file that cannot run code (see :mod:`cfe_fast.io.model_file`).

        By default the file holds what prediction needs (the classifier
        factors, the aggregator, the parameters, the fitted score transform,
        the column names and classes, the history), so its size does not grow
        with the fitted instances; ``include_training_factors=True`` also
        keeps ``instance_factors_`` and ``transductive_proba_`` (n values
        each). A model of more than two classes holds each class's model
        (``estimators_``), each as a two-class model is held, and its
        ``classes_`` (of any kind, as a plain array). A model fitted with a
        dask ``client`` is saved with its fitted arrays computed and ``client=None``.
        """
        check_is_fitted(self, "classes_")
        params = {**self.get_params(deep=False), "client": None}  # a live connection, not part of the model
        if not self._multiclass:
            fitted, history = _fitted_values(self, include_training_factors)
            write_model(path, ModelContent(type(self).__name__, params, fitted, history), overwrite=overwrite)
            return
        per_class = [ClassModel(*_fitted_values(member, include_training_factors)) for member in self.estimators_]
        fitted = {name: getattr(self, name) for name in MULTICLASS_SCHEMA if name in vars(self)}
        write_model(path, ModelContent(type(self).__name__, params, fitted, None, per_class), overwrite=overwrite)

    @classmethod
    def load(cls, path):
        """Load a model written by :meth:`save`; it predicts bit-identically.

        A model saved without its training factors has no ``instance_factors_``
        and ``transductive_proba_`` (reading them raises an AttributeError that
        says so).

        The file is validated like ``fit``'s inputs: its fitted values against
        :data:`cfe_fast.io.model_file.SCHEMA` (and, with more than two classes,
        :data:`~cfe_fast.io.model_file.MULTICLASS_SCHEMA`) and its parameters by
        :func:`~cfe_fast.parameters.validate_params`; anything else is a
        :class:`~cfe_fast.ModelFileError` naming the file.
        """
        content = read_model(path, cls().get_params(deep=False), required_history=loop.LOSSES)
        if content.estimator != cls.__name__:
            raise ModelFileError(f"{path}: holds a {content.estimator!r}, not a {cls.__name__}")
        try:
            validate_params(content.params)
        except ValueError as error:
            raise ModelFileError(f"{path}: invalid parameter: {error}") from None
        estimator = cls(**content.params)
        if content.per_class is None:
            return _restored(estimator, content.fitted, content.history, path)
        members = [_restored(multiclass.member_of(estimator), part.fitted, part.history,
                             f"{path}: the model of class {name!r}")
                   for name, part in zip(content.fitted["classes_"].tolist(), content.per_class)]
        _set_fitted(estimator, content.fitted)
        multiclass.publish(estimator, members)
        return estimator


def save_model(estimator, path, *, overwrite=False, include_training_factors=False):
    """Save a fitted :class:`CFEnsembleClassifier` to ``path`` (a safe ``.npz``; see :meth:`~CFEnsembleClassifier.save`)."""
    estimator.save(path, overwrite=overwrite, include_training_factors=include_training_factors)


def load_model(path):
    """Load a model saved by :func:`save_model`; it predicts bit-identically."""
    return CFEnsembleClassifier.load(path)


def _fitted_values(model, include_training_factors):
    """(fitted values, history) of a fitted two-class model (or one class's model) for its model file.

    A model fitted with a dask client: its factors on the cluster come back as NumPy arrays.
    """
    check_is_fitted(model, "classifier_factors_")
    names = [name for name in FITTED_ATTRIBUTES if name in vars(model)]
    if include_training_factors:
        missing = [name for name in TRAINING_ATTRIBUTES if name not in names]
        if missing:
            raise ValueError(f"include_training_factors=True: this model holds no {missing}; "
                             "it was loaded from a file saved without them")
    else:
        names = [name for name in names if name not in TRAINING_ATTRIBUTES]
    fitted = {}
    for name in names:
        value = getattr(model, name)
        fitted[name] = np.asarray(value) if hasattr(value, "dask") else value
    return fitted, model.history_


def _set_fitted(model, fitted):
    """Set the fitted values of a model file on ``model`` (text arrays as object arrays, as scikit-learn has them)."""
    for name, value in fitted.items():
        is_text = isinstance(value, np.ndarray) and value.dtype.kind == "U"
        setattr(model, name, value.astype(object) if is_text else value)


def _restored(model, fitted, history, path):
    """``model`` (unfitted, its parameters those of the file) with the fitted values and history of a two-class
    model (or one class's model) set, once they agree with its parameters."""
    factors = fitted["classifier_factors_"]
    if factors.dtype != np.dtype(model.dtype):
        raise ModelFileError(f"{path}: classifier_factors_ has dtype {factors.dtype} but dtype={model.dtype!r}")
    if (model.input_type == "scores") != ("score_quantiles_" in fitted):
        raise ModelFileError(f"{path}: input_type={model.input_type!r} but the file "
                             f"{'lacks' if model.input_type == 'scores' else 'has'} score_quantiles_")
    _set_fitted(model, fitted)
    if history is not None:
        model.history_ = history
    return model


def _check_both_classes(classes, y_labeled, weights):
    """Refuse labeled instances of one class only, or weights that leave one class weightless."""
    present = np.unique(y_labeled).astype(np.intp)
    if present.size < 2:
        raise ValueError(f"y has labeled instances of one class only ({classes.tolist()[present[0]]!r}); "
                         "the aggregator needs both classes")
    for code in (0, 1):
        if not weights[y_labeled == code].sum() > 0:
            raise ValueError(f"sample_weight is zero on every labeled instance of class {classes.tolist()[code]!r}; "
                             "the aggregator needs both classes")


def _instance_weights(y_labeled, weights, balanced):
    """omega of the labeled instances: the sample weights times the class weights.

    "balanced" class weights are W / (2 W_class), W being total weights (scikit-learn's
    :func:`~sklearn.utils.class_weight.compute_class_weight` with sample weights).
    """
    if not balanced or y_labeled.size == 0:
        return weights
    per_class = compute_class_weight("balanced", classes=np.array([0.0, 1.0]), y=y_labeled, sample_weight=weights)
    return weights * per_class[y_labeled.astype(np.intp)]


def _physical_memory():
    """Bytes of physical memory, or None where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def _spread_of_R(P):
    """std over instances of the mean of the observed entries of R (a dask reduction for dask arrays)."""
    return float((row_means(P) if is_sparse(P) or has_sparse_chunks(P) else mean_of_observed(P)).std())
