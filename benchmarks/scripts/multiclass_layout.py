"""Which multi-class layout: one factorisation per class, or one over (classifier, class) rows?

On the multi-class pools of ``benchmarks/quality/multiclass.py`` (run it first: it caches them),
one re-draw per labeled fraction, metrics on the unlabeled rows:

* per class: ``CFEnsembleClassifier()`` (each class's m x n matrix factorised with its own
  aggregator, the probabilities normalised over the classes);
* per class, softmax layer: the same ensembles combined by softmax(a_k s_ik + c_k) with a scale
  and an intercept per class fitted on the labeled instances (s = the ensembles' logits);
* (classifier, class) rows: one factorisation of the (m K) x n matrix, then a multinomial
  LogisticRegression(class_weight="balanced", C) on the reconstruction r_hat;
* LR stacking: the same multinomial model on R itself.

Usage: ``python benchmarks/scripts/multiclass_layout.py`` (writes
benchmarks/results/multiclass_layout_<machine>.md).
"""

import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax, logit, softmax
from sklearn.linear_model import LogisticRegression

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.quality.multiclass import LOADERS, lr_stacking, metrics, pool_probabilities  # noqa: E402
from benchmarks.quality.run import draw_labeled, git_commit, machine_kind  # noqa: E402
from cfe_fast import CFEnsembleClassifier  # noqa: E402

FRACTIONS = (0.01, 0.05, 0.5)


def quiet_fit(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(X, y)


def softmax_layer(scores, codes, labeled):
    """Class probabilities of softmax(a_k s_ik + c_k), (a, c) fitted on the labeled rows (a >= 0)."""
    K = scores.shape[1]
    onehot = np.eye(K)[codes[labeled]]

    def loss(theta):
        z = scores[labeled] * theta[:K] + theta[K:]
        log_p = log_softmax(z, axis=1)
        residual = (np.exp(log_p) - onehot) / labeled.sum()
        return -np.mean(np.sum(onehot * log_p, axis=1)), np.r_[np.sum(residual * scores[labeled], 0), residual.sum(0)]

    theta = minimize(loss, np.r_[np.ones(K), np.zeros(K)], jac=True, method="L-BFGS-B",
                     bounds=[(0, None)] * K + [(None, None)] * K).x
    return softmax(scores * theta[:K] + theta[K:], axis=1)


def main():
    rows = []
    for task in LOADERS:
        P, codes, _, _, _ = pool_probabilities(task)
        n, m, K = P.shape
        unlabeled = np.full(n, np.nan)
        factorised = quiet_fit(CFEnsembleClassifier(random_state=0), P.reshape(n, m * K), unlabeled)
        r_hat = (factorised.classifier_factors_.T @ factorised.instance_factors_).T
        for fraction in FRACTIONS:
            labeled = draw_labeled(codes, fraction, 0)
            model = quiet_fit(CFEnsembleClassifier(random_state=0), P, np.where(labeled, codes, -1))
            q = np.column_stack([member.transductive_proba_ for member in model.estimators_])
            methods = {
                "per class": model.transductive_proba_[~labeled],
                "per class, softmax layer": softmax_layer(logit(np.clip(q, 1e-12, 1 - 1e-12)), codes, labeled)[~labeled],
            }
            for C in (0.1, 1.0):
                lr = quiet_fit(LogisticRegression(C=C, class_weight="balanced", max_iter=3000), r_hat[labeled],
                               codes[labeled])
                methods[f"(classifier, class) rows, C={C}"] = lr.predict_proba(r_hat[~labeled])
            methods["LR stacking"] = lr_stacking(P, labeled, codes)
            for name, proba in methods.items():
                rows.append((task, fraction, name, metrics(codes[~labeled], proba, K)))
                print(task, fraction, name, rows[-1][3], flush=True)
    names = list(dict.fromkeys(row[2] for row in rows))
    lines = [f"# Multi-class layout ({machine_kind()[0]})", "",
             f"- Command: `python benchmarks/scripts/multiclass_layout.py`; git commit {git_commit()}; "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             "- Pools: benchmarks/quality/multiclass.py (17 classifiers); re-draw 0 of each labeled fraction; "
             "metrics on the unlabeled rows", ""]
    for metric in ("log_loss", "accuracy"):
        lines += [f"## {metric}", "", "| task | fraction | " + " | ".join(names) + " |",
                  "|---|---|" + "---|" * len(names)]
        for task in LOADERS:
            for fraction in FRACTIONS:
                values = {row[2]: row[3][metric] for row in rows if row[0] == task and row[1] == fraction}
                lines.append(f"| {task} | {fraction} | " + " | ".join(f"{values[k]:.4f}" for k in names) + " |")
        lines.append("")
    out = ROOT / "benchmarks" / "results" / f"multiclass_layout_{machine_kind()[1]}.md"
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
