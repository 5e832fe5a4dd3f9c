"""Is the ensemble better than the simple choices? A cross-validated comparison on the labeled rows.

Stratified K-fold over the labeled instances: each fold's labels are hidden,
the model is refitted with its own parameters (the fold's instances stay in
the factorisation, unlabeled: the transductive setting of a fit), and its
predictions on the fold are scored next to three baselines that see the same
training labels:

* the mean of the classifiers' probabilities (the mean of R);
* the best single classifier, chosen by its PR-AUC on the training folds;
* LR stacking: a logistic regression on the classifiers' probabilities.

With missing entries (NaN) the mean of R is over each instance's observed
entries, the best single classifier is scored on the instances it scores and
stands in for the mean of R where it scores none, and LR stacking reads a
missing entry as its classifier's mean on the training folds.

Where there are more instances than ``config.REPORT_CV_INSTANCES``, the
refits use a random sample of that many (labeled and unlabeled alike).

A sparse P (``scipy.sparse``, stored entries = observed) is refitted sparse;
the baselines read the labeled rows of the sample as a dense P with NaN at
the unstored entries (at most ``config.REPORT_CV_INSTANCES`` rows).
"""

import warnings
from typing import NamedTuple

import numpy as np

from . import config
from .core.missing import mean_of_observed
from .core.sparse import check_sparse_probabilities, dense_with_nan, is_sparse

METHODS = ("CF-Ensemble", "mean of R", "best single classifier", "LR stacking")


class Comparison(NamedTuple):
    """Per-fold PR-AUC of each method and the out-of-fold predictions.

    scores : (len(METHODS), folds) average precision on each held-out fold.
    y : (k,) the labels of the labeled instances compared.
    proba : (len(METHODS), k) each method's out-of-fold P(y = 1) of them.
    n_instances : instances of the refits (a sample where the data are larger).
    """

    scores: np.ndarray
    y: np.ndarray
    proba: np.ndarray
    n_instances: int

    @property
    def folds(self):
        return self.scores.shape[1]


def _baselines(P_train, y_train, P_test):
    """Out-of-fold P(y = 1) of the mean of R, the best single classifier and LR stacking."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score
    from sklearn.pipeline import make_pipeline

    def single_score(u):
        scored = ~np.isnan(P_train[:, u])
        if np.unique(y_train[scored]).size < 2:
            return -np.inf
        return average_precision_score(y_train[scored], P_train[scored, u])

    best = int(np.argmax([single_score(u) for u in range(P_train.shape[1])]))
    mean = mean_of_observed(P_test)
    stacking = make_pipeline(SimpleImputer(keep_empty_features=True), LogisticRegression(max_iter=1000))
    stacking.fit(P_train, y_train)
    single = np.where(np.isnan(P_test[:, best]), mean, P_test[:, best])
    return mean, single, stacking.predict_proba(P_test)[:, 1]


def cross_validated_comparison(model, P, labels, folds=5, seed=0):
    """:class:`Comparison` of a fitted ``model`` with the baselines on the labeled rows of (P, labels).

    Parameters
    ----------
    model : fitted CFEnsembleClassifier
        Refitted (a clone with the same parameters) once per fold.
    P : array or scipy.sparse matrix (n_instances, n_classifiers)
        The probabilities the model was fitted on.
    labels : array (n_instances,)
        0/1, NaN for unlabeled.
    folds : int, default=5
        At most this many folds (fewer where a class has fewer labeled instances).

    Returns
    -------
    Comparison or None
        None where a class has fewer than two labeled instances.
    """
    from sklearn.base import clone
    from sklearn.metrics import average_precision_score
    from sklearn.model_selection import StratifiedKFold

    sparse = is_sparse(P)
    P = check_sparse_probabilities(P, "P", np.float64) if sparse else np.asarray(P, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    rng = np.random.default_rng(seed)
    rows = np.arange(P.shape[0])
    if rows.size > config.REPORT_CV_INSTANCES:
        rows = np.sort(rng.choice(rows, config.REPORT_CV_INSTANCES, replace=False))
    P, labels = P[rows], labels[rows]
    labeled = np.flatnonzero(~np.isnan(labels))
    y = labels[labeled].astype(int)
    n_splits = min(folds, int(np.sum(y == 1)), int(np.sum(y == 0)))
    if n_splits < 2:
        return None
    scores = np.empty((len(METHODS), n_splits))
    proba = np.empty((len(METHODS), y.size))
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    P_labeled = dense_with_nan(P[labeled]) if sparse else P[labeled]  # what the baselines read
    for k, (train, test) in enumerate(splitter.split(np.zeros(y.size), y)):
        hidden = labels.copy()
        hidden[labeled[test]] = np.nan
        with warnings.catch_warnings():  # the refits' warnings repeat those of the fit itself
            warnings.simplefilter("ignore")
            ensemble = clone(model).fit(P, hidden).transductive_proba_[labeled[test]]
        predictions = (ensemble, *_baselines(P_labeled[train], y[train], P_labeled[test]))
        for j, p in enumerate(predictions):
            proba[j, test] = p
            scores[j, k] = average_precision_score(y[test], p)
    return Comparison(scores, y, proba, int(rows.size))
