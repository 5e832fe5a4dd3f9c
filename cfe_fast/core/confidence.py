"""Confidence strategies: the weight c_ui of every entry of R (docs/method.md).

Production code works on instance-major blocks of P = R^T (rows are
instances). Every strategy but "calibration" is element-wise, so it is
evaluated block by block; "calibration" needs per-classifier statistics over
all labeled instances first (:func:`classifier_quality`), then broadcasts them.
"""

import numpy as np

from .._float64 import blocks

CONFIDENCE_STRATEGIES = ("uniform", "certainty", "label_aware", "calibration")
#: floor of the per-classifier quality of the "calibration" strategy
CALIBRATION_FLOOR = 0.05


def classifier_quality(R, labels, floor=CALIBRATION_FLOOR):
    """Per classifier: 1 - Brier score over the labeled instances, floored. R is (m, n); returns (m,)."""
    R = np.asarray(R, dtype=np.float64)
    labeled = ~np.isnan(labels)
    if not labeled.any():
        raise ValueError("the 'calibration' confidence needs labeled instances")
    brier = np.mean((R[:, labeled] - labels[labeled]) ** 2, axis=1)
    return np.maximum(1.0 - brier, floor)


def confidence_chunk(P_chunk, labels, strategy, alpha=1.0, quality=None):
    """Confidence (rows, m) of a block of instance-major probabilities P_chunk (rows, m).

    "certainty": |r - 0.5|; "label_aware": |r - 0.5| (1 + alpha s) on the
    labeled rows, with s = r for positives and 1 - r for negatives (a
    classifier that is right about a labeled instance weighs more there),
    |r - 0.5| on the others; "uniform": ones; "calibration": the
    per-classifier ``quality`` fitted beforehand, broadcast. ``labels``
    (rows,) holds NaN where unlabeled, or is None (new instances).
    """
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


def fold_in_strategy(strategy):
    """The label-free strategy that serves new instances for a fit's ``strategy``.

    "label_aware", "certainty" and a user matrix (None) fold in with
    |r - 0.5|; "uniform" with ones; "calibration" with the fitted
    per-classifier quality.
    """
    return strategy if strategy in ("uniform", "calibration") else "certainty"


def instance_major_confidence(P, labels, strategy, alpha, dtype):
    """C (n, m) of instance-major P for a named strategy, and the fitted quality.

    Returns ``(C, quality)``: ``quality`` is the per-classifier quality (m,)
    of "calibration" (as C holds it, in ``dtype``) and None otherwise.
    Element-wise strategies are evaluated in blocks of instances, so no
    n x m float64 temporary exists.
    """
    if strategy == "calibration":
        C = np.ascontiguousarray(np.broadcast_to(classifier_quality(P.T, labels), P.shape), dtype=dtype)
        return C, C[0].astype(np.float64)
    C = np.empty(P.shape, dtype=dtype)
    for s, e in blocks(P.shape[0], P.shape[1]):
        C[s:e] = confidence_chunk(P[s:e], labels[s:e], strategy, alpha)
    return C, None
