"""
Collapse diagnostics
====================

The original CF-Ensemble implementation fits the aggregator (w, b) with one gradient
step of size 0.01 per iteration and no class weights; on imbalanced data w stays
near its start and the bias decides every prediction. cfe_fast keeps that procedure
(``aggregator_solver="gd"``) so that the collapse can be reproduced; the monitors in
``history_`` show it, ``fit`` raises a :class:`~cfe_fast.CollapseWarning` naming the
cause and the remedy, and ``diagnose()`` gives the whole report. The defaults (Newton
to convergence, balanced class weights) do not collapse.
"""

import warnings

import matplotlib.pyplot as plt

from cfe_fast import CFEnsembleClassifier, CollapseWarning, make_ensemble

data = make_ensemble(n_classifiers=10, n_instances=1000, positive_rate=0.1, random_state=0)
settings = {
    "original procedure": dict(aggregator_solver="gd", aggregator_lr=0.01, class_weight=None,
                               aggregator_prior=0, max_iter=100),
    "defaults": dict(max_iter=100),
}
models = {}
for name, params in settings.items():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CollapseWarning)
        models[name] = CFEnsembleClassifier(latent_dim=5, random_state=0, **params).fit(data.P, data.labels)
    print(f"{name}: {sum(issubclass(w.category, CollapseWarning) for w in caught)} collapse warning(s)")
    for warning in caught:
        if issubclass(warning.category, CollapseWarning):
            print("   ", str(warning.message).splitlines()[0])

# %%
# The report of the collapsed model:
print(models["original procedure"].diagnose())

# %%
# Two monitors per iteration: the norm of the aggregator's weights and the spread of
# the predictions relative to that of the labels (near 0: nearly constant predictions).
fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), layout="constrained")
for name, model in models.items():
    axes[0].plot(model.history_["w_norm"], label=name)
    axes[1].plot(model.history_["prediction_spread"], label=name)
axes[0].set(xlabel="iteration", ylabel="||w||", yscale="log")
axes[1].set(xlabel="iteration", ylabel="std(p) / std(labels)")
axes[0].legend()
plt.show()
