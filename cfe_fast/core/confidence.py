"""Confidence strategies: the weight c_ui of every entry of R (docs/method.md).

Production code works on instance-major blocks of P = R^T (rows are
instances). Every strategy but "calibration" is element-wise, so it is
evaluated block by block; "calibration" needs per-classifier statistics over
all labeled instances first (:func:`classifier_quality`), then broadcasts them.
An unobserved entry (NaN in P) has confidence 0 under every strategy, and
statistics are taken over observed entries only.
"""

from dataclasses import dataclass

import numpy as np

from .._float64 import blocks
from .._validation import classifier_label
from . import missing as missing_module
from .missing import missing_entries, zero_missing

CONFIDENCE_STRATEGIES = ("uniform", "certainty", "label_aware", "calibration")
#: floor of the per-classifier quality of the "calibration" strategy
CALIBRATION_FLOOR = 0.05


def classifier_quality(R, labels, floor=CALIBRATION_FLOOR, names=None):
    """Per classifier: 1 - Brier score over its observed labeled instances, floored. R is (m, n); returns (m,).

    A classifier with no observed labeled instance is an error naming it
    (by ``names[u]`` when given).
    """
    R = np.asarray(R, dtype=np.float64)
    labeled = ~np.isnan(labels)
    if not labeled.any():
        raise ValueError("the 'calibration' confidence needs labeled instances")
    squared = (R[:, labeled] - labels[labeled]) ** 2
    missing = missing_entries(squared)
    if missing is None:
        return np.maximum(1.0 - np.mean(squared, axis=1), floor)
    return quality_from_sums(zero_missing(squared, missing).sum(axis=1), np.count_nonzero(~missing, axis=1),
                             names, floor)


def quality_from_sums(squared_sums, counts, names=None, floor=CALIBRATION_FLOOR):
    """The floored 1 - Brier score of every classifier from its sums of squared errors and counts of
    observed labeled entries; a count of 0 is an error naming the classifier."""
    if not counts.all():
        raise ValueError(f"the 'calibration' confidence needs labeled instances that each classifier scores: "
                         f"classifier {classifier_label(int(np.argmin(counts)), names)} has no observed entry "
                         "on a labeled instance")
    return np.maximum(1.0 - squared_sums / counts, floor)


def confidence_chunk(P_chunk, labels, strategy, alpha=1.0, quality=None):
    """Confidence (rows, m) of a block of instance-major probabilities P_chunk (rows, m).

    "certainty": |r - 0.5|; "label_aware": |r - 0.5| (1 + alpha s) on the
    labeled rows, with s = r for positives and 1 - r for negatives (a
    classifier that is right about a labeled instance weighs more there),
    |r - 0.5| on the others; "uniform": ones; "calibration": the
    per-classifier ``quality`` fitted beforehand, broadcast. ``labels``
    (rows,) holds NaN where unlabeled, or is None (new instances). NaN
    entries of P_chunk (unobserved) have confidence 0.
    """
    return zero_missing(_strategy_chunk(P_chunk, labels, strategy, alpha, quality), missing_entries(P_chunk))


def _strategy_chunk(P_chunk, labels, strategy, alpha, quality):
    """:func:`confidence_chunk` before the unobserved entries are zeroed."""
    if strategy == "calibration":
        return np.broadcast_to(quality, P_chunk.shape)
    if strategy == "uniform":
        return np.ones(P_chunk.shape)
    if strategy not in CONFIDENCE_STRATEGIES:
        raise ValueError(f"unknown confidence strategy {strategy!r}; choose one of {CONFIDENCE_STRATEGIES}")
    P = np.asarray(P_chunk, dtype=np.float64)
    C = np.abs(P - 0.5)
    if strategy == "label_aware" and labels is not None:
        rows = np.flatnonzero(~np.isnan(labels))
        positive = (labels[rows] == 1)[:, None]
        C[rows] *= 1.0 + alpha * np.where(positive, P[rows], 1.0 - P[rows])
    return C


def entry_confidence(values, labels, strategy, alpha=1.0, quality=None):
    """Confidence of single observed entries (a sparse P's stored values), as :func:`confidence_chunk` gives it.

    ``values`` (k,): probabilities; ``labels`` (k,): the label of each
    entry's instance (NaN where unlabeled), or None; ``quality`` (k,): the
    "calibration" quality of each entry's classifier. Returns (k,) float64.
    """
    column = None if quality is None else quality[:, None]
    return _strategy_chunk(values[:, None], labels, strategy, alpha, column)[:, 0]


def fold_in_strategy(strategy):
    """The label-free strategy that serves new instances for a fit's ``strategy``.

    "label_aware", "certainty" and a user matrix (None) fold in with
    |r - 0.5|; "uniform" with ones; "calibration" with the fitted
    per-classifier quality.
    """
    return strategy if strategy in ("uniform", "calibration") else "certainty"


def strategy_quality(P, labels, strategy, dtype, names=None):
    """The "calibration" quality (m,) of instance-major P as a C in ``dtype`` holds it (rounded to ``dtype``,
    float64), or None for any other strategy. ``names``: the classifiers' names for errors."""
    if strategy != "calibration":
        return None
    return classifier_quality(P.T, labels, names=names).astype(dtype).astype(np.float64)


def instance_major_confidence(P, labels, strategy, alpha, dtype, names=None):
    """C (n, m) of instance-major P (NaN = unobserved) for a named strategy, and the fitted quality.

    Returns ``(C, quality)``: ``quality`` is the per-classifier quality (m,)
    of "calibration" (as C holds it, rounded to ``dtype``) and None
    otherwise. Strategies are evaluated in blocks of instances, so no n x m
    float64 temporary exists. ``names``: the classifiers' names for errors.
    """
    quality = strategy_quality(P, labels, strategy, dtype, names)
    C = np.empty(P.shape, dtype=dtype)
    for s, e in blocks(P.shape[0], P.shape[1]):
        C[s:e] = confidence_chunk(P[s:e], labels[s:e], strategy, alpha, quality)
    return C, quality


#: strategies whose confidence of an unobserved entry, read at the fill value 0.5, is already 0
#: (|0.5 - 0.5| = 0), so a rule needs no mask of the missing entries (while the fill value is 0.5)
ZERO_AT_FILL = ("certainty", "label_aware")


@dataclass(frozen=True)
class ConfidenceRule:
    """The confidence C (m, n) of a named strategy, as a rule instead of an array.

    Every strategy is element-wise given the labels and the "calibration"
    quality, so a kernel that reads C can compute each block of it from the
    block of R it reads (:meth:`block` defines the values: those of
    :func:`confidence_chunk` in ``dtype``) and C is never stored whole, which
    halves the memory of a fit. R must hold no NaN: it is the filled R the
    kernels read, so the rule serves data with unobserved entries only for
    :data:`ZERO_AT_FILL` strategies (:func:`confidence_rule`).

    Attributes
    ----------
    strategy : str
        One of :data:`CONFIDENCE_STRATEGIES`.
    alpha : float
        Of "label_aware".
    labels : ndarray (n,)
        float64, NaN where unlabeled.
    quality : ndarray (m,) or None
        The "calibration" quality (float64, rounded to ``dtype``).
    shape : tuple
        (m, n), the shape of the C it stands for.
    dtype : numpy dtype
        Of the C it stands for (that of R).
    """

    strategy: str
    alpha: float
    labels: np.ndarray
    quality: object
    shape: tuple
    dtype: object

    def block(self, P_chunk, start):
        """C (rows, m) of the rows ``start:start + rows`` of filled instance-major P, in ``dtype``."""
        labels = self.labels[start:start + P_chunk.shape[0]]
        return np.asarray(confidence_chunk(P_chunk, labels, self.strategy, self.alpha, self.quality), dtype=self.dtype)


def confidence_rule(P, labels, strategy, alpha, dtype, missing=None, names=None):
    """The :class:`ConfidenceRule` of filled instance-major P (n, m), or None where a rule cannot stand for C.

    None for a user matrix (``strategy`` None) and, with unobserved entries
    (``missing`` not None), for the strategies not in :data:`ZERO_AT_FILL`
    and for any fill value but 0.5 (the confidence of an unobserved entry
    would need the mask).
    """
    zero_at_fill = strategy in ZERO_AT_FILL and missing_module.FILL_VALUE == 0.5
    if strategy is None or (missing is not None and not zero_at_fill):
        return None
    if strategy not in CONFIDENCE_STRATEGIES:
        raise ValueError(f"unknown confidence strategy {strategy!r}; choose one of {CONFIDENCE_STRATEGIES}")
    quality = strategy_quality(P, labels, strategy, dtype, names)
    return ConfidenceRule(strategy, float(alpha), np.ascontiguousarray(labels, dtype=np.float64), quality,
                          P.shape[::-1], np.dtype(dtype))
