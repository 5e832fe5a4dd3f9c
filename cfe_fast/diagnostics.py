"""Collapse monitors: the failure modes of docs/method.md, measured and explained.

Each monitor is a number recorded in ``history_`` every iteration; a check
compares the final value with a documented threshold and, when it fires, a
:class:`~cfe_fast.CollapseWarning` names the cause and the remedy.
"""

from dataclasses import asdict, dataclass

import numpy as np

from ._float64 import gram64

#: ||w||_2 below this: the aggregator ignores the reconstruction
WEIGHT_NORM_MIN = 1e-2
#: |b| / (|b| + std_i(w^T r_hat_i)) above this: the bias decides every prediction
BIAS_SHARE_MAX = 0.95
#: std(p) / std(labels) below this: predictions are (nearly) constant
PREDICTION_SPREAD_MIN = 0.05
#: std(p) / std(mean of R) below this: predictions vary far less than the classifiers do
VARIANCE_RATIO_MIN = 0.05
#: effective rank of Y below this (with d >= 2): instance factors nearly rank one
EFFECTIVE_RANK_MIN = 1.1

#: the held-out average precision of the ensemble below that of the mean of R by more than this,
#: with the mean of R ahead in at least HELD_OUT_CONFIDENCE of bootstrap resamples: the fitted
#: ensemble ranks the labeled instances worse than the plain mean of the classifiers
HELD_OUT_MARGIN = 0.01
HELD_OUT_CONFIDENCE = 0.95

#: the keys :func:`monitors` records in ``history_`` every iteration
MONITORS = ("coef", "intercept", "w_norm", "w_sum", "bias_share", "pred_std", "prediction_spread",
            "variance_ratio", "effective_rank_X", "effective_rank_Y", "frac_positive")


def effective_rank(F):
    """exp(entropy) of the normalised singular values of F (d, k): 1 = rank one, d = isotropic.

    Computed from the d x d Gram F F^T, so it costs one pass over F.
    """
    if F.size == 0:
        return 0.0
    sigma = np.sqrt(np.clip(np.linalg.eigvalsh(gram64(F)), 0.0, None))
    total = sigma.sum()
    if total == 0:
        return 0.0
    p = sigma[sigma > 0] / total
    return float(np.exp(-np.sum(p * np.log(p))))


def monitors(X, Y, w, b, proba, logit_part, y_labeled, spread_of_R):
    """Per-iteration monitor values (a dict of floats; "coef" is the m-vector w).

    Parameters
    ----------
    X : ndarray (d, m)
        Classifier factors.
    Y : ndarray (d, n)
        Instance factors.
    w : ndarray (m,)
        The aggregator's weights.
    b : float
        Its intercept.
    proba : ndarray (n,)
        P(y = 1) of the fitted instances.
    logit_part : ndarray (n,)
        w^T r_hat_i, the part of the logit that depends on the instance.
    y_labeled : ndarray (n_L,)
        Labels of the labeled instances.
    spread_of_R : float
        std over instances of the mean of R.
    """
    label_spread = float(np.std(y_labeled)) if len(y_labeled) else 0.0
    pred_std = float(np.std(proba))
    logit_spread = float(np.std(logit_part))
    return {
        "coef": np.array(w, dtype=np.float64),
        "intercept": float(b),
        "w_norm": float(np.linalg.norm(w)),
        "w_sum": float(np.sum(w)),
        "bias_share": abs(b) / (abs(b) + logit_spread) if abs(b) + logit_spread > 0 else 0.0,
        "pred_std": pred_std,
        "prediction_spread": pred_std / label_spread if label_spread > 0 else np.nan,
        "variance_ratio": pred_std / spread_of_R if spread_of_R > 0 else np.nan,
        "effective_rank_X": effective_rank(X),
        "effective_rank_Y": effective_rank(Y),
        "frac_positive": float(np.mean(proba >= 0.5)),
    }


@dataclass
class Check:
    """One check: the monitor, its value, the rule, the verdict and what to do.

    ``category`` is "collapse" (a documented failure mode of training) or
    "quality" (the fitted ensemble against simple alternatives, held out).
    """

    name: str
    monitor: str
    value: float
    rule: str
    collapsed: bool
    cause: str
    remedy: str
    category: str = "collapse"


def checks(last, latent_dim, weighted_aggregator, both_classes):
    """Evaluate every collapse check on the final monitor values ``last``."""
    out = []

    def add(name, monitor, rule, collapsed, cause, remedy):
        out.append(Check(name, monitor, float(last[monitor]), rule, bool(collapsed), cause, remedy))

    if weighted_aggregator:
        add("aggregator weight collapse (norm)", "w_norm", f"w_norm < {WEIGHT_NORM_MIN}",
            last["w_norm"] < WEIGHT_NORM_MIN,
            "the aggregator weights shrank to ~0, so the reconstruction no longer affects the prediction "
            "(the majority class dominates the gradient)",
            "keep class_weight='balanced', lower aggregator_l2, or use freeze_aggregator_iters / aggregator='mean'")
        add("aggregator weight collapse (sign)", "w_sum", "w_sum <= 0", last["w_sum"] <= 0,
            "the aggregator weights are negative on balance: the ensemble votes against its own members",
            "keep class_weight='balanced'; set reinit_collapsed_aggregator=True or use aggregator='mean'")
        add("bias dominates the logit", "bias_share", f"bias_share > {BIAS_SHARE_MAX}",
            last["bias_share"] > BIAS_SHARE_MAX,
            "the intercept outweighs the instance-dependent part of the logit",
            "keep class_weight='balanced'; check that the base classifiers carry signal")
    if both_classes:
        add("prediction collapse (vs labels)", "prediction_spread", f"prediction_spread < {PREDICTION_SPREAD_MIN}",
            last["prediction_spread"] < PREDICTION_SPREAD_MIN,
            "the predictions are nearly constant compared with the spread of the labels",
            "keep class_weight='balanced'; try trainer='exact' or a smaller aggregator_l2")
        add("prediction collapse (variance ratio)", "variance_ratio", f"variance_ratio < {VARIANCE_RATIO_MIN}",
            last["variance_ratio"] < VARIANCE_RATIO_MIN,
            "the predictions vary far less than the mean of the base classifiers does",
            "keep class_weight='balanced'; try trainer='exact' or aggregator='mean'")
        add("class collapse", "frac_positive", "frac_positive in {0, 1}", last["frac_positive"] in (0.0, 1.0),
            "every prediction falls on the same side of 0.5",
            "keep class_weight='balanced' (it centres the threshold); check the labels")
    if latent_dim >= 2:
        add("representational collapse", "effective_rank_Y", f"effective_rank_Y < {EFFECTIVE_RANK_MIN}",
            last["effective_rank_Y"] < EFFECTIVE_RANK_MIN,
            "the instance factors are nearly rank one: instances are no longer told apart",
            "raise lam less, lower latent_dim, or change the confidence strategy (e.g. 'certainty')")
    return out


def held_out_checks(scores):
    """Checks of the ensemble's held-out average precision against the mean of R's and chance's.

    ``scores``: the average precision of the cross-validated aggregator on
    held-out labeled instances, that of the mean of R on the same instances,
    their positive rate (chance), and the share of bootstrap resamples in
    which the mean of R ranks them better.
    """
    ap, ap_mean, chance = scores["average_precision"], scores["mean_of_R"], scores["chance"]
    share = scores["mean_of_R_better"]
    return [
        Check("worse than the mean of the classifiers (held out)", "held_out_average_precision", ap,
              f"held_out_average_precision < {ap_mean:.4g} (the mean of R's) - {HELD_OUT_MARGIN} in "
              f">= {HELD_OUT_CONFIDENCE:.0%} of bootstrap resamples (here {share:.0%})",
              ap < ap_mean - HELD_OUT_MARGIN and share >= HELD_OUT_CONFIDENCE,
              "out of fold on the labeled instances, the fitted ensemble ranks them worse than the plain "
              "mean of the base classifiers",
              "use aggregator='mean', keep aggregator_prior='auto', or add labels", "quality"),
        Check("no better than chance (held out)", "held_out_average_precision", ap,
              f"held_out_average_precision <= {chance:.4g} (the positive rate)", ap <= chance,
              "out of fold on the labeled instances, the fitted ensemble ranks them no better than chance",
              "check the labels and that the base classifiers carry signal", "quality"),
    ]


@dataclass
class CollapseReport:
    """Structured result of :meth:`CFEnsembleClassifier.diagnose`."""

    iteration: int
    checks: list

    @property
    def collapsed(self):
        """True when any check fired."""
        return any(c.collapsed for c in self.checks)

    def to_dict(self):
        """Plain-Python form (JSON-serialisable)."""
        return {"iteration": self.iteration, "collapsed": self.collapsed, "checks": [asdict(c) for c in self.checks]}

    def __str__(self):
        lines = [f"collapse report after iteration {self.iteration}: "
                 + ("COLLAPSE DETECTED" if self.collapsed else "healthy")]
        width = max(len(c.name) for c in self.checks) if self.checks else 0
        for c in self.checks:
            verdict = "COLLAPSED" if c.collapsed else "ok"
            lines.append(f"  {c.name:<{width}}  {verdict:<9}  {c.monitor} = {c.value:.4g}  (collapsed if {c.rule})")
            if c.collapsed:
                lines.append(f"  {'':<{width}}    cause: {c.cause}")
                lines.append(f"  {'':<{width}}    remedy: {c.remedy}")
        return "\n".join(lines)
