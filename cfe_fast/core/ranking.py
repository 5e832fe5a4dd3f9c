"""Average precision under instance weights, for many weightings at once (the held-out checks of a fit)."""

import numpy as np


def average_precision(y, scores, weights):
    """Average precision of ``scores`` for the 0/1 labels ``y`` under each row of instance ``weights``.

    ``sklearn.metrics.average_precision_score(y, scores, sample_weight=row)``
    for every row of weights (k, n) at once, from one sort of the scores:
    the sum over distinct thresholds of the recall step times the precision.
    Integer weights make it the average precision of a resample.
    """
    order = np.argsort(-scores, kind="mergesort")
    y, weights = y[order], weights[:, order]
    last_of_tie = np.append(np.flatnonzero(np.diff(scores[order])), y.size - 1)
    true_pos = np.cumsum(weights * y, axis=1)[:, last_of_tie]
    predicted_pos = np.cumsum(weights, axis=1)[:, last_of_tie]
    precision = np.divide(true_pos, predicted_pos, out=np.zeros_like(true_pos), where=predicted_pos > 0)
    recall_step = np.diff(true_pos, axis=1, prepend=0.0) / true_pos[:, -1:]
    return np.sum(recall_step * precision, axis=1)
