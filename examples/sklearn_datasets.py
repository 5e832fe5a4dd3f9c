"""cfe_fast on scikit-learn's bundled data: breast cancer and digits (9 vs rest).

A pool of scikit-learn classifiers is trained on half of the data; their
out-of-fold probabilities (``cfe_fast.prediction_matrix``) train the
combiners, which are scored on the other half against the mean of the pool,
the best single model (chosen by out-of-fold PR-AUC) and scikit-learn's
``StackingClassifier`` (logistic regression on the same probabilities).
"transductive" fits CF-Ensemble on the training and test probabilities
together, with the test labels hidden. Run: ``python examples/sklearn_datasets.py``.
"""

import time

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier, StackingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from cfe_fast import CFEnsembleClassifier, prediction_matrix


def pool():
    return [
        ("logreg", make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=2000))),
        ("naive_bayes", GaussianNB()),
        ("knn", make_pipeline(StandardScaler(), KNeighborsClassifier(15))),
        ("svm", CalibratedClassifierCV(make_pipeline(StandardScaler(), SVC(C=0.5)), ensemble=False)),
        ("tree", DecisionTreeClassifier(max_depth=4, random_state=0)),
        ("forest", RandomForestClassifier(n_estimators=100, max_depth=6, random_state=0)),
        ("extra_trees", ExtraTreesClassifier(n_estimators=100, max_depth=6, random_state=0)),
    ]


def compare(name, X, y, seed=0):
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.5, stratify=y, random_state=seed)
    cv = StratifiedKFold(5, shuffle=True, random_state=seed)
    P_train = prediction_matrix(pool(), X_train, y_train, cv=cv)
    P_test = np.column_stack([est.fit(X_train, y_train).predict_proba(X_test)[:, 1] for _, est in pool()])
    best = max(range(P_train.shape[1]), key=lambda j: average_precision_score(y_train, P_train[:, j]))
    stack = StackingClassifier(pool(), final_estimator=LogisticRegression(), stack_method="predict_proba", cv=cv)
    cfe = CFEnsembleClassifier(latent_dim=3, random_state=0)
    start = time.perf_counter()
    cfe_scores = cfe.fit(P_train, y_train).predict_proba(P_test)[:, 1]
    seconds = time.perf_counter() - start
    both = np.vstack([P_train, P_test])
    hidden = np.concatenate([y_train, np.full(len(y_test), -1)])
    transductive = CFEnsembleClassifier(latent_dim=3, random_state=0).fit(both, hidden).transductive_proba_
    rows = [
        ("mean of the pool", P_test.mean(axis=1)),
        (f"best single ({pool()[best][0]})", P_test[:, best]),
        ("StackingClassifier (logistic)", stack.fit(X_train, y_train).predict_proba(X_test)[:, 1]),
        ("cfe_fast", cfe_scores),
        ("cfe_fast transductive", transductive[len(y_train):]),
    ]
    print(f"\n{name}: {len(y_train)} train / {len(y_test)} test, {y.mean():.1%} positives, "
          f"{P_train.shape[1]} base models (cfe_fast fit {seconds:.2f} s)")
    print(f"| {'method':<30} | PR-AUC | ROC-AUC |\n|{'-' * 32}|--------|---------|")
    for label, scores in rows:
        print(f"| {label:<30} | {average_precision_score(y_test, scores):.4f} | {roc_auc_score(y_test, scores):.4f}  |")


if __name__ == "__main__":
    cancer = load_breast_cancer()
    compare("breast cancer (malignant = 1)", cancer.data, (cancer.target == 0).astype(int))
    digits = load_digits()
    compare("digits (9 vs rest)", digits.data, (digits.target == 9).astype(int))
