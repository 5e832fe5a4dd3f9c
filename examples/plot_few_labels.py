"""
Few labels: the semi-supervised case
====================================

With few labeled instances, a combiner fitted on the labels alone (here
logistic-regression stacking) has little to learn from, while the plain mean of the
classifiers needs no labels at all. CF-Ensemble factorises the probabilities of every
instance, labeled or not, and its cross-validated aggregator prior keeps it near the
mean of the classifiers when labels are few and lets the labels decide when they are
many. The data are :func:`cfe_fast.make_ensemble`'s: classifiers with correlated
errors and 10 % positives; every score is on the unlabeled instances.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score

from cfe_fast import CFEnsembleClassifier, make_ensemble

fractions = [0.01, 0.02, 0.05, 0.2, 0.5]
results = {"mean of R": [], "LR stacking": [], "CF-Ensemble": []}
for fraction in fractions:
    data = make_ensemble(n_classifiers=10, n_instances=3000, labeled_fraction=fraction, random_state=1)
    P, labels = data.P, data.labels
    labeled = ~np.isnan(labels)
    truth = data.y_true[~labeled]
    model = CFEnsembleClassifier(latent_dim=4, random_state=0).fit(P, labels)
    stacking = LogisticRegression().fit(P[labeled], labels[labeled].astype(int))
    results["mean of R"].append(average_precision_score(truth, P[~labeled].mean(axis=1)))
    results["LR stacking"].append(average_precision_score(truth, stacking.predict_proba(P[~labeled])[:, 1]))
    results["CF-Ensemble"].append(average_precision_score(truth, model.transductive_proba_[~labeled]))
    print(f"{fraction:5.0%} labeled ({labeled.sum():4d} instances): "
          + ", ".join(f"{name} {scores[-1]:.3f}" for name, scores in results.items()))

# %%
# PR-AUC on the unlabeled instances against the labeled fraction.
fig, ax = plt.subplots(figsize=(6, 4))
for name, scores in results.items():
    ax.plot(fractions, scores, marker="o", label=name)
ax.set_xscale("log")
ax.set_xticks(fractions, [f"{f:.0%}" for f in fractions])
ax.set_xlabel("labeled fraction")
ax.set_ylabel("PR-AUC on the unlabeled instances")
ax.legend()
plt.show()
