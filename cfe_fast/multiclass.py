"""K >= 3 classes: one binary CF-Ensemble per class, its probabilities normalised over the classes.

The probabilities of class k, one column per classifier, form a matrix
R_k that is factorised on its own, with its own aggregator, against the
labels "class k or not" (all instances take part, as in the binary case).
Each per-class ensemble's probability q_ik is calibrated on the labeled
instances (the aggregator's scale refit); the class probabilities are
p_ik = q_ik / sum_l q_il. docs/method.md ("Multi-class") gives the
measurements behind this layout.
:class:`~cfe_fast.CFEnsembleClassifier` calls these functions when its
labels hold more than two classes.

Input layouts: (n, m, K) probabilities, or scikit-learn's
StackingClassifier layout (n, m K), classifier j's probability of
``classes_[k]`` in column j K + k. A sparse X (``scipy.sparse``, or a dask
array of ``scipy.sparse`` chunks; stored entries = observed) has the
StackingClassifier layout; each class's columns are a sparse matrix too, so
no (n, m) array is formed.
"""

import warnings

import numpy as np
import scipy.sparse
from sklearn.base import clone
from sklearn.utils.validation import validate_data

from ._validation import refuse_1d
from .core.sparse import is_sparse
from .diagnostics import CollapseReport

#: the smallest per-class probability normalised (no row of zeros to divide by)
_PROBABILITY_FLOOR = 1e-300


def stacking_layout(X, n_classes, name="X"):
    """X as the (n, m K) StackingClassifier layout: a 3-D (n, m, K) array is reshaped, 2-D input kept.

    A sparse X of a format without column slices (COO, DOK, ...) becomes CSR.

    Raises
    ------
    ValueError
        A 3-D array whose last axis is not the number of classes, a 3-D
        sparse array, or 2-D input whose columns are not a multiple of it.
    """
    shape = np.shape(refuse_1d(X))
    if is_sparse(X):
        if len(shape) != 2:
            raise ValueError(f"{name} is a sparse array of shape {shape}: a sparse {name} must be 2-D, in "
                             f"StackingClassifier's layout (n, n_classifiers * {n_classes}), classifier j's "
                             f"probability of classes_[k] in column j * {n_classes} + k")
        if X.format not in ("csr", "csc"):
            X = scipy.sparse.csr_array(X)
    if len(shape) == 3:
        if shape[2] != n_classes:
            raise ValueError(f"{name} has shape {shape}: its last axis must hold the {n_classes} classes of y")
        return np.reshape(np.asarray(X), (shape[0], shape[1] * shape[2]))
    if len(shape) == 2 and shape[1] % n_classes:
        raise ValueError(f"{name} has {shape[1]} columns, not a multiple of the {n_classes} classes of y: give "
                         f"(n, n_classifiers, {n_classes}) probabilities, or n_classifiers x {n_classes} columns "
                         f"with classifier j's probability of classes_[k] in column j * {n_classes} + k")
    return X


def class_columns(X, k, n_classes):
    """The columns of class k (one per classifier) of the StackingClassifier layout."""
    return X.iloc[:, k::n_classes] if hasattr(X, "iloc") else X[:, k::n_classes]


def check_every_class_labeled(classes, codes, weights):
    """Refuse a class without a labeled instance of positive weight (its ensemble would have no positives)."""
    labeled = ~np.isnan(codes)
    for k, name in enumerate(classes.tolist()):
        if not weights[codes[labeled] == k].sum() > 0:
            raise ValueError(f"class {name!r} has no labeled instance of positive weight; every class "
                             "needs labeled instances")


def fit(estimator, X, classes, codes, sample_weight, weights, callback):
    """Fit ``estimator`` (its parameters) on K >= 3 classes; sets its fitted attributes.

    Parameters
    ----------
    estimator : CFEnsembleClassifier
        Its parameters serve every per-class fit.
    X : array, DataFrame or sparse matrix
        (n, m, K) or (n, m K) probabilities (a sparse X: (n, m K)).
    classes : ndarray (K,)
    codes : ndarray (n,)
        Class indices, NaN where unlabeled.
    sample_weight : array (n,) or None
        As given to ``fit``; ``weights`` are those of the labeled instances.
    callback : callable or None
        Passed to each per-class fit in turn.
    """
    K = classes.size
    X = stacking_layout(X, K)
    validate_data(estimator, X, reset=True, skip_check_array=True)
    check_every_class_labeled(classes, codes, weights)
    labeled = ~np.isnan(codes)
    estimators = []
    for k in range(K):
        member = member_of(estimator)
        target = np.where(labeled, (codes == k).astype(np.float64), np.nan)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            member.fit(class_columns(X, k, K), target, sample_weight=sample_weight, callback=callback)
        for warning in caught:  # say which class's ensemble warned
            warnings.warn(f"class {classes[k]!r}: {warning.message}", warning.category, stacklevel=4)
        estimators.append(member)
    estimator.classes_ = classes
    publish(estimator, estimators)


def member_of(estimator):
    """An unfitted per-class model of ``estimator``: its parameters, labels 0/1 with NaN where unlabeled.

    The parameters are copied as ``sklearn.base.clone`` copies them, except a dask ``client``, which
    cannot be copied: every class's fit runs on the estimator's own.
    """
    params = estimator.get_params(deep=False)
    return clone(type(estimator)(**{**params, "client": None})).set_params(client=params["client"], unlabeled="auto")


def publish(estimator, estimators):
    """Set ``estimators_`` and the fit's summary from the per-class models (after a fit or a load).

    ``transductive_proba_`` is set where the per-class models hold their fitted instances' probabilities.
    """
    estimator.estimators_ = estimators
    estimator.latent_dim_ = estimators[0].latent_dim_
    estimator.n_iter_ = max(member.n_iter_ for member in estimators)
    estimator.converged_ = all(member.converged_ for member in estimators)
    vars(estimator).pop("transductive_proba_", None)
    if all("transductive_proba_" in vars(member) for member in estimators):
        estimator.transductive_proba_ = normalised([member.transductive_proba_ for member in estimators])


def normalised(probabilities):
    """Class probabilities (n, K) from the K per-class ensembles' probabilities of their class; rows sum to 1."""
    q = np.maximum(np.column_stack([np.asarray(column, dtype=np.float64) for column in probabilities]),
                   _PROBABILITY_FLOOR)
    return q / q.sum(axis=1, keepdims=True)


def predict_proba(estimator, X):
    """Class probabilities (n_new, K) of new instances; rows sum to 1."""
    K = estimator.classes_.size
    X = stacking_layout(X, K)
    validate_data(estimator, X, reset=False, skip_check_array=True)
    return normalised([member.predict_proba(class_columns(X, k, K))[:, 1]
                       for k, member in enumerate(estimator.estimators_)])


def transform(estimator, X):
    """Instance factors of new instances, the K per-class blocks side by side: (n_new, K latent_dim)."""
    K = estimator.classes_.size
    X = stacking_layout(X, K)
    validate_data(estimator, X, reset=False, skip_check_array=True)
    return np.hstack([member.transform(class_columns(X, k, K)) for k, member in enumerate(estimator.estimators_)])


def diagnose(estimator):
    """One report of every class's checks, each named after its class."""
    checks = []
    for name, member in zip(estimator.classes_.tolist(), estimator.estimators_):
        for check in member.diagnose().checks:
            check.name = f"class {name!r}: {check.name}"
            checks.append(check)
    return CollapseReport(estimator.n_iter_, checks)
