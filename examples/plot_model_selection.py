"""
Model selection with unlabeled rows
===================================

scikit-learn's ``GridSearchCV`` splits every row, labeled or not. Mark the unlabeled
rows -1 (its stratified splitters refuse NaN) and score with
:func:`cfe_fast.labeled_scorer`, which scores the labeled rows of each test fold only;
every training fold keeps its unlabeled rows in the fit, where they take part in the
factorisation.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from cfe_fast import CFEnsembleClassifier, labeled_scorer, make_ensemble

data = make_ensemble(n_classifiers=12, n_instances=2000, labeled_fraction=0.3, random_state=2)
y = np.where(np.isnan(data.labels), -1, data.labels)  # -1 = unlabeled

search = GridSearchCV(
    CFEnsembleClassifier(random_state=0),
    {"latent_dim": [1, 2, 4, 8]},
    scoring=labeled_scorer("average_precision"),
    cv=StratifiedKFold(3, shuffle=True, random_state=0),
).fit(data.P, y)
print("best:", search.best_params_, f"cross-validated PR-AUC {search.best_score_:.3f}")

# %%
# One fit of the search (``latent_dim=1`` on one training fold) raised a
# :class:`~cfe_fast.QualityWarning`: each fit checks itself, out of fold on its labeled
# rows, against the mean of the classifiers, and a single latent dimension is too few
# for these twelve classifiers.

# %%
# The cross-validated PR-AUC of the labeled rows for each latent dimension.
results = search.cv_results_
fig, ax = plt.subplots(figsize=(6, 4))
ax.errorbar(results["param_latent_dim"].astype(int), results["mean_test_score"],
            yerr=results["std_test_score"], marker="o", capsize=3)
ax.set_xlabel("latent_dim")
ax.set_ylabel("PR-AUC of the labeled test rows")
plt.show()
