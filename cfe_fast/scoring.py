"""Model selection on semi-supervised data: scorers that score the labeled rows only.

``GridSearchCV``, ``cross_val_score`` and ``cross_validate`` split all rows,
labeled and unlabeled; every fit then keeps the unlabeled rows of its
training part (they take part in the factorisation), and the scorer skips the
unlabeled rows of the held-out part, which have no label to score against
(NaN, None, or as the estimator's ``unlabeled`` says). Mark unlabeled rows
with -1 (numeric labels) or a declared ``unlabeled`` value there:
scikit-learn's stratified splitters refuse NaN labels.
"""

import numpy as np
from sklearn.metrics import get_scorer

from ._validation import AUTO_UNLABELED, unlabeled_mask


def labeled_scorer(scoring="average_precision"):
    """A scorer for ``scoring`` (a scikit-learn scorer name) computed on the labeled rows of the test part.

    Parameters
    ----------
    scoring : str or callable, default="average_precision"
        Any name or scorer :func:`sklearn.metrics.get_scorer` accepts
        ("roc_auc", "neg_brier_score", "neg_log_loss", ...).

    Returns
    -------
    callable (estimator, X, y) -> float
        NaN when the test part has no labeled row, or labels of one class
        only (where the metric is undefined). The labeled rows are scored
        with their labels as given, as scikit-learn scores them: with
        classes other than 0/1 or -1/1, a ranking metric needs its
        ``pos_label`` (scikit-learn's rule), so pass a scorer made with
        :func:`sklearn.metrics.make_scorer` and ``pos_label=classes_[1]``.

    Examples
    --------
    >>> from sklearn.model_selection import GridSearchCV
    >>> search = GridSearchCV(CFEnsembleClassifier(), {"latent_dim": [3, 6]},
    ...                       scoring=labeled_scorer("average_precision"))  # doctest: +SKIP
    """
    base = get_scorer(scoring)

    def score(estimator, X, y):
        labels, unlabeled = unlabeled_mask(y, _unlabeled_mark(estimator))
        labeled = np.flatnonzero(~np.ravel(unlabeled))
        labels = np.ravel(labels)[labeled]
        if labeled.size == 0 or np.unique(labels).size < 2:
            return np.nan
        rows = X.iloc[labeled] if hasattr(X, "iloc") else np.asarray(X)[labeled]
        return base(estimator, rows, labels)

    score.__name__ = f"labeled_{scoring if isinstance(scoring, str) else getattr(scoring, '__name__', 'score')}"
    return score


def _unlabeled_mark(estimator):
    """The ``unlabeled`` parameter of the estimator, or of the last step of a pipeline."""
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    return getattr(final, "unlabeled", AUTO_UNLABELED)
