"""A pool of scikit-learn base classifiers and their out-of-fold probabilities.

The pool mixes strong and deliberately weak or unusual models so that the
probability matrix has the spread a combiner should exploit. Probabilities are
out-of-fold: ``cross_val_predict(method="predict_proba")`` over a 5-fold
stratified split with a fixed seed, so every row's probability comes from
models that never saw that row. Results are cached in ``.cache/`` beside this
file (one ``.npz`` per task and pool) so that reruns take seconds.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.discriminant_analysis import (
    LinearDiscriminantAnalysis,
    QuadraticDiscriminantAnalysis,
)
from sklearn.ensemble import (
    AdaBoostClassifier,
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.naive_bayes import BernoulliNB, GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import QuantileTransformer, StandardScaler
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier

CACHE_DIR = Path(__file__).resolve().parent / ".cache"
N_FOLDS = 5
CV_SEED = 0
MAX_ROWS = 60_000
"""Tasks with more rows are subsampled (stratified, fixed seed) to this many."""


def _scaled(model):
    return make_pipeline(StandardScaler(), model)


def make_pool(kind="full", seed=0):
    """Build the base classifiers.

    Parameters
    ----------
    kind : {"full", "small"}
        "full": 16 models of many families. "small": 6 fast ones (for tests
        and the quick profile when no cache exists).
    seed : int
        random_state of the randomised models.

    Returns
    -------
    dict of str to estimator
        Name -> unfitted scikit-learn classifier with ``predict_proba``.
    """
    pool = {
        "logreg": _scaled(LogisticRegression(max_iter=1000)),
        "logreg_strong_l2": _scaled(LogisticRegression(C=1e-3, max_iter=1000)),
        "gaussian_nb": GaussianNB(),
        "bernoulli_nb": _scaled(BernoulliNB()),
        "stump_tree": DecisionTreeClassifier(max_depth=2, random_state=seed),
        "deep_tree": DecisionTreeClassifier(min_samples_leaf=5, random_state=seed),
        "random_forest": RandomForestClassifier(
            n_estimators=100, min_samples_leaf=2, n_jobs=1, random_state=seed),
        "extra_trees": ExtraTreesClassifier(
            n_estimators=100, min_samples_leaf=2, n_jobs=1, random_state=seed),
        "hist_gbm": HistGradientBoostingClassifier(random_state=seed),
        "adaboost": AdaBoostClassifier(n_estimators=50, random_state=seed),
        "knn_15": _scaled(KNeighborsClassifier(n_neighbors=15)),
        "knn_3": _scaled(KNeighborsClassifier(n_neighbors=3)),
        "mlp": _scaled(MLPClassifier(
            hidden_layer_sizes=(32,), max_iter=200, early_stopping=True, random_state=seed)),
        "linear_svm_calibrated": _scaled(CalibratedClassifierCV(LinearSVC(C=0.1), cv=3)),
        "lda": LinearDiscriminantAnalysis(),
        "qda": QuadraticDiscriminantAnalysis(reg_param=0.5),
        "sgd_modified_huber": make_pipeline(
            QuantileTransformer(n_quantiles=100, random_state=seed),
            SGDClassifier(loss="modified_huber", alpha=1e-3, random_state=seed)),
    }
    if kind == "full":
        return pool
    if kind == "small":
        keep = ["logreg", "gaussian_nb", "stump_tree", "deep_tree", "knn_15", "lda"]
        return {k: pool[k] for k in keep}
    raise ValueError(f"unknown pool kind {kind!r}; use 'full' or 'small'")


def subsample(X, y, max_rows=MAX_ROWS, seed=0):
    """Stratified subsample of at most ``max_rows`` rows (sorted indices)."""
    if len(y) <= max_rows:
        return X, y
    rng = np.random.default_rng(seed)
    keep = []
    for c in (0, 1):
        idx = np.flatnonzero(y == c)
        k = int(round(max_rows * len(idx) / len(y)))
        keep.append(rng.choice(idx, size=k, replace=False))
    keep = np.sort(np.concatenate(keep))
    return X[keep], y[keep]


def out_of_fold(X, y, pool, n_folds=N_FOLDS, seed=CV_SEED, n_jobs=2, verbose=False):
    """Out-of-fold P(y=1) of every model in the pool.

    Parameters
    ----------
    X : ndarray of shape (n, p)
    y : ndarray of shape (n,)
    pool : dict of str to estimator
    n_folds, seed : int
        The stratified shuffled K-fold split (the same for every model).
    n_jobs : int
        Folds fitted in parallel.

    Returns
    -------
    P : ndarray of shape (n, n_models), float64 in [0, 1]
    seconds : dict of str to float
        Wall time of each model's cross-validation.
    """
    cv = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    cols, seconds = [], {}
    for name, model in pool.items():
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            proba = cross_val_predict(model, X, y, cv=cv, method="predict_proba", n_jobs=n_jobs)
        seconds[name] = time.perf_counter() - t0
        p = np.nan_to_num(proba[:, 1], nan=0.5)
        cols.append(np.clip(p, 0.0, 1.0))
        if verbose:
            print(f"    {name:24s} {seconds[name]:6.1f} s", flush=True)
    return np.column_stack(cols), seconds


def _pool_key(task, kind):
    spec = {name: repr(m) for name, m in make_pool(kind).items()}
    spec.update(n=int(task.n), p=int(task.X.shape[1]), y=int(task.y.sum()),
                folds=N_FOLDS, cv_seed=CV_SEED, max_rows=MAX_ROWS)
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def load_or_build(task, kind="full", cache_dir=CACHE_DIR, verbose=True, n_jobs=2):
    """Out-of-fold probability matrix of a task, from the cache or built now.

    Parameters
    ----------
    task : tasks.Task
    kind : {"full", "small"}
        Pool, see :func:`make_pool`.
    cache_dir : path or None
        Where ``<task>-<kind>.npz`` lives; None disables the cache.
    verbose : bool
        Print the build time of the task (and of each model).

    Returns
    -------
    dict
        ``P`` (n, m) probabilities, ``y`` (n,) labels, ``names`` (m,) model
        names, ``seconds`` (m,) per-model build time, ``build_s`` total build
        time, ``n_full`` rows of the task before subsampling, ``cached`` bool.
    """
    key = _pool_key(task, kind)
    path = None if cache_dir is None else Path(cache_dir) / f"{task.name}-{kind}.npz"
    if path is not None and path.exists():
        z = np.load(path, allow_pickle=False)
        if str(z["key"]) == key:
            out = {k: z[k] for k in ("P", "y", "names", "seconds")}
            out.update(build_s=float(z["build_s"]), n_full=int(z["n_full"]), cached=True)
            out["names"] = [str(s) for s in out["names"]]
            return out
    X, y = subsample(task.X, task.y)
    if verbose:
        print(f"  building pool '{kind}' for {task.name} (n={len(y)}, p={X.shape[1]}) ...", flush=True)
    t0 = time.perf_counter()
    pool = make_pool(kind)
    P, seconds = out_of_fold(X, y, pool, verbose=verbose, n_jobs=n_jobs)
    build_s = time.perf_counter() - t0
    if verbose:
        print(f"  {task.name}: pool built in {build_s:.1f} s", flush=True)
    names = list(pool)
    secs = np.array([seconds[k] for k in names])
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, P=P, y=y, names=np.array(names), seconds=secs, key=key,
                            build_s=build_s, n_full=task.n)
        tmp.replace(path)
    return dict(P=P, y=y, names=names, seconds=secs, build_s=build_s, n_full=task.n, cached=False)
