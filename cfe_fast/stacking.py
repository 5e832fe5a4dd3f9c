"""scikit-learn integration: the out-of-fold probability matrix of a pool of models."""

import numpy as np
from sklearn.base import clone, is_classifier
from sklearn.model_selection import cross_val_predict


def prediction_matrix(estimators, X, y, cv=5, n_jobs=None):
    """Out-of-fold P(y = 1) of each scikit-learn classifier: the input of CF-Ensemble.

    Parameters
    ----------
    estimators : list of classifiers or of (name, classifier) pairs
        Binary classifiers with ``predict_proba``; each is cloned, never fitted in place.
    X, y : training data of the base classifiers (y binary).
    cv : int or cross-validation splitter, default=5
        Passed to :func:`sklearn.model_selection.cross_val_predict`.
    n_jobs : int or None

    Returns
    -------
    P : ndarray (n_samples, n_estimators)
        Column j holds classifier j's out-of-fold probability of the second
        class (``np.unique(y)[1]``), for :class:`~cfe_fast.CFEnsembleClassifier`.
    """
    pairs = [item if isinstance(item, tuple) else (type(item).__name__, item) for item in estimators]
    if not pairs:
        raise ValueError("estimators is empty: pass at least one scikit-learn classifier")
    classes = np.unique(y)
    if classes.size != 2:
        raise ValueError(f"y must have exactly two classes, found {classes.size}")
    columns = []
    for name, estimator in pairs:
        if not is_classifier(estimator) or not hasattr(estimator, "predict_proba"):
            raise TypeError(f"estimator {name!r} is not a classifier with predict_proba")
        proba = cross_val_predict(clone(estimator), X, y, cv=cv, method="predict_proba", n_jobs=n_jobs)
        columns.append(proba[:, 1])
    return np.column_stack(columns)
