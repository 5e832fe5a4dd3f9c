"""How to map decision scores into [0, 1] for input_type="scores": ranks over all instances or Platt.

A pool of scikit-learn classifiers scored by ``decision_function`` (out of
fold, on all instances of a data set); a share of the instances is labeled
and CF-Ensemble fits on all of them. Compared on the unlabeled instances
(PR-AUC, mean over seeds):

* rank: ``input_type="scores"`` (each classifier's empirical distribution
  function over all instances);
* platt: each classifier's scores through a logistic regression fitted on
  the labeled instances, then the default ``input_type="probabilities"``;
* proba: the same pool's ``predict_proba`` (where a classifier has one; the
  SVMs via Platt inside scikit-learn), as a reference.

Run: ``python benchmarks/scripts/score_transform.py`` (writes the Markdown
table to stdout).
"""

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import load_breast_cancer, load_digits, make_classification
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.metrics import average_precision_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC

from cfe_fast import CFEnsembleClassifier

SEEDS = range(5)
LABELED = (0.05, 0.5)


def tasks():
    cancer = load_breast_cancer()
    digits = load_digits()
    X, y = make_classification(n_samples=3000, n_features=20, n_informative=6, weights=[0.9], flip_y=0.05,
                               random_state=0)
    return {"breast cancer": (cancer.data, 1 - cancer.target), "digits 9 vs rest": (digits.data, digits.target == 9),
            "synthetic (10 % positives)": (X, y)}


def pool():
    scaled = lambda model: make_pipeline(StandardScaler(), model)  # noqa: E731
    return [scaled(SVC(C=0.5)), scaled(SVC(C=5.0, gamma=0.1)), scaled(LinearSVC(C=0.01)), scaled(RidgeClassifier()),
            scaled(LogisticRegression(C=0.05, max_iter=2000)), LinearDiscriminantAnalysis()]


def out_of_fold(X, y, method):
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    columns = []
    for model in pool():
        if method == "predict_proba" and not hasattr(model, "predict_proba"):
            model = CalibratedClassifierCV(model, ensemble=False)
        out = cross_val_predict(model, X, y, cv=cv, method=method)
        columns.append(out[:, 1] if out.ndim == 2 else out)
    return np.column_stack(columns)


def platt(S, labels):
    labeled = ~np.isnan(labels)
    return np.column_stack([
        LogisticRegression().fit(S[labeled, j:j + 1], labels[labeled]).predict_proba(S[:, j:j + 1])[:, 1]
        for j in range(S.shape[1])])


def main():
    rows = []
    for name, (X, y) in tasks().items():
        y = np.asarray(y, dtype=float)
        S, P = out_of_fold(X, y, "decision_function"), out_of_fold(X, y, "predict_proba")
        for share in LABELED:
            results = {"rank": [], "platt": [], "proba": []}
            for seed in SEEDS:
                rng = np.random.default_rng(seed)
                labels = np.where(rng.random(y.size) < share, y, np.nan)
                hidden = np.isnan(labels)
                base = dict(latent_dim=3, random_state=seed)
                fits = {"rank": CFEnsembleClassifier(input_type="scores", **base).fit(S, labels),
                        "platt": CFEnsembleClassifier(**base).fit(platt(S, labels), labels),
                        "proba": CFEnsembleClassifier(**base).fit(P, labels)}
                for method, model in fits.items():
                    results[method].append(average_precision_score(y[hidden], model.transductive_proba_[hidden]))
            rows.append((name, share, {k: float(np.mean(v)) for k, v in results.items()}))
    print("| task | labeled | rank (input_type='scores') | Platt on the labeled | predict_proba |")
    print("|---|---|---|---|---|")
    for name, share, means in rows:
        print(f"| {name} | {share:.0%} | {means['rank']:.4f} | {means['platt']:.4f} | {means['proba']:.4f} |")


if __name__ == "__main__":
    import warnings

    warnings.simplefilter("ignore")  # QualityWarning and convergence notes: the table is the result
    main()
