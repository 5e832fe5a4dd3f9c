"""Model selection on semi-supervised data: scorers that score the labeled rows only.

``GridSearchCV``, ``cross_val_score`` and ``cross_validate`` split all rows,
labeled and unlabeled; every fit then keeps the unlabeled rows of its
training part (they take part in the factorisation), and the scorer skips the
unlabeled rows of the held-out part, which have no label to score against.
Mark unlabeled rows with -1 there: scikit-learn's stratified splitters refuse
NaN labels.
"""

import numpy as np
from sklearn.metrics import get_scorer

from ._validation import check_labels


def labeled_scorer(scoring="average_precision"):
    """A scorer for ``scoring`` (a scikit-learn scorer name) computed on the labeled rows of the test part.

    Parameters
    ----------
    scoring : str, default="average_precision"
        Any name :func:`sklearn.metrics.get_scorer` accepts ("roc_auc",
        "neg_brier_score", "neg_log_loss", ...).

    Returns
    -------
    callable (estimator, X, y) -> float
        NaN when the test part has no labeled row, or labels of one class
        only (where the metric is undefined).

    Examples
    --------
    >>> from sklearn.model_selection import GridSearchCV
    >>> search = GridSearchCV(CFEnsembleClassifier(), {"latent_dim": [3, 6]},
    ...                       scoring=labeled_scorer("average_precision"))  # doctest: +SKIP
    """
    base = get_scorer(scoring)

    def score(estimator, X, y):
        labels = check_labels(y, len(y), "y")
        labeled = np.flatnonzero(~np.isnan(labels))
        if labeled.size == 0 or np.unique(labels[labeled]).size < 2:
            return np.nan
        rows = X.iloc[labeled] if hasattr(X, "iloc") else np.asarray(X)[labeled]
        return base(estimator, rows, labels[labeled].astype(int))

    score.__name__ = f"labeled_{scoring}"
    return score
