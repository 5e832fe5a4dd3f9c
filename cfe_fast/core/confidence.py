"""Confidence strategies: the weight c_ui of every entry of R (docs/method.md).

Every strategy but "calibration" is element-wise, so it can be evaluated on
any block of instances; "calibration" needs per-classifier statistics over
all labeled instances first (:func:`classifier_quality`), then broadcasts them.
"""

import numpy as np

from .._float64 import blocks

CONFIDENCE_STRATEGIES = ("uniform", "certainty", "label_aware", "calibration")
#: floor of the per-classifier quality of the "calibration" strategy
CALIBRATION_FLOOR = 0.05


def certainty(R):
    """c = |r - 0.5|: confident predictions weigh more."""
    return np.abs(np.asarray(R, dtype=np.float64) - 0.5)


def label_aware(R, labels, alpha=1.0):
    """|r - 0.5| (1 + alpha s) on labeled columns, |r - 0.5| elsewhere.

    s = r for positives and 1 - r for negatives: a classifier that is right
    about a labeled instance weighs more there.
    """
    R = np.asarray(R, dtype=np.float64)
    C = certainty(R)
    labeled = ~np.isnan(labels)
    y = labels[labeled]
    s = np.where(y == 1, R[:, labeled], 1.0 - R[:, labeled])
    C[:, labeled] *= 1.0 + alpha * s
    return C


def classifier_quality(R, labels, floor=CALIBRATION_FLOOR):
    """Per classifier: 1 - Brier score over the labeled instances, floored. R is (m, n); returns (m,)."""
    R = np.asarray(R, dtype=np.float64)
    labeled = ~np.isnan(labels)
    if not labeled.any():
        raise ValueError("the 'calibration' confidence needs labeled instances")
    brier = np.mean((R[:, labeled] - labels[labeled]) ** 2, axis=1)
    return np.maximum(1.0 - brier, floor)


def confidence(R, labels, strategy, alpha=1.0):
    """Confidence matrix C (m, n) of R (m, n) for a named strategy."""
    if strategy == "uniform":
        return np.ones(np.shape(R))
    if strategy == "certainty":
        return certainty(R)
    if strategy == "label_aware":
        return label_aware(R, labels, alpha)
    if strategy == "calibration":
        quality = classifier_quality(R, labels)
        return np.repeat(quality[:, None], np.shape(R)[1], axis=1)
    raise ValueError(f"unknown confidence strategy {strategy!r}; choose one of {CONFIDENCE_STRATEGIES}")


def confidence_chunk(P_chunk, labels, strategy, alpha=1.0, quality=None):
    """Confidence (rows, m) of a chunk of instance-major P for a named strategy.

    Element-wise strategies are evaluated on the chunk (the result equals that
    chunk of :func:`confidence` of the whole matrix); "calibration" broadcasts
    the per-classifier ``quality`` fitted beforehand on all labeled instances.
    Serves the fit in blocks, the fold-in of new instances (labels None) and
    the Dask backend's chunks.
    """
    if strategy == "calibration":
        return np.broadcast_to(quality, P_chunk.shape)
    return confidence(P_chunk.T, labels, strategy, alpha).T


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
    of "calibration" and None otherwise. Element-wise strategies are
    evaluated in blocks of instances, so no n x m float64 temporary exists.
    """
    if strategy == "calibration":  # per-classifier statistics over all labeled instances
        C = confidence(P.T, labels, strategy, alpha).T
        C = np.ascontiguousarray(C, dtype=dtype)
        return C, C[0].astype(np.float64)
    C = np.empty(P.shape, dtype=dtype)
    for s, e in blocks(P.shape[0], P.shape[1]):
        C[s:e] = confidence_chunk(P[s:e], labels[s:e], strategy, alpha)
    return C, None
