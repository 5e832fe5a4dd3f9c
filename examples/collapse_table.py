"""Reproduce the aggregator-collapse table of the original CF-Ensemble implementation with cfe_fast's trainers.

Scenario: 10 classifiers, 500 instances, half labeled, 10 % positives, base
quality (PR-AUC) about 0.7. "hard": the built-in generator with correlated
errors and spread-out classifier quality (the mean of R is not perfect);
"easy": independent errors and equal quality (the mean of R is nearly perfect,
as in the original implementation's generator). Rows: trainer x class weights, plus
the original implementation's procedure (ALS + one gradient step of lr 0.01 on the aggregator per
iteration, 200 iterations). Scores are on the unlabeled (held-out) instances,
averaged over random draws; "warned" counts the fits that raised a CollapseWarning.

    python examples/collapse_table.py [--draws 5]
"""

import argparse
import warnings

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from cfe_fast import CFEnsembleClassifier, CollapseWarning, make_ensemble

SCENARIOS = {
    "hard": {},
    "easy": dict(common_correlation=0.0, group_correlation=0.0, quality_spread=0.0),
}
TRAINERS = {
    "als": dict(trainer="als"),
    "exact": dict(trainer="exact"),
    "joint": dict(trainer="joint"),
    "original GD": dict(trainer="als", aggregator_solver="gd", aggregator_lr=0.01, max_iter=200),
}


def fit_and_score(data, params):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = CFEnsembleClassifier(latent_dim=5, random_state=0, **params).fit(data.P, data.labels)
    held_out = np.isnan(data.labels)
    truth, proba = data.y_true[held_out], model.transductive_proba_[held_out]
    return dict(
        pr=average_precision_score(truth, proba), roc=roc_auc_score(truth, proba),
        w_min=model.coef_.min(), w_max=model.coef_.max(), w_std=model.coef_.std(), p_std=proba.std(),
        warned=any(issubclass(w.category, CollapseWarning) for w in caught), iters=model.n_iter_,
        converged=model.converged_,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=5, help="random data sets per scenario")
    args = parser.parse_args()
    for scenario, knobs in SCENARIOS.items():
        datasets = [make_ensemble(n_classifiers=10, n_instances=500, labeled_fraction=0.5, positive_rate=0.1,
                                  quality=0.7, random_state=seed, **knobs) for seed in range(args.draws)]
        mean_pr = np.mean([average_precision_score(d.y_true[np.isnan(d.labels)], d.R.mean(axis=0)[np.isnan(d.labels)])
                           for d in datasets])
        print(f"\n### {scenario} scenario ({args.draws} draws): mean of R PR-AUC {mean_pr:.3f}\n")
        print("| trainer | class weights | PR-AUC | ROC-AUC | w min | w max | w std | pred std | warned | iterations (converged) |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for name, params in TRAINERS.items():
            for class_weight in ("balanced", None):
                rows = [fit_and_score(d, {**params, "class_weight": class_weight}) for d in datasets]
                avg = {k: np.mean([r[k] for r in rows]) for k in ("pr", "roc", "w_min", "w_max", "w_std", "p_std")}
                warned = sum(r["warned"] for r in rows)
                iters = "/".join(str(r["iters"]) for r in rows)
                converged = sum(r["converged"] for r in rows)
                print(f"| {name} | {'on' if class_weight else 'off'} | {avg['pr']:.3f} | {avg['roc']:.3f} | "
                      f"{avg['w_min']:.3f} | {avg['w_max']:.3f} | {avg['w_std']:.3f} | {avg['p_std']:.3f} | "
                      f"{warned}/{len(rows)} | {iters} ({converged}/{len(rows)}) |", flush=True)


if __name__ == "__main__":
    main()
