"""
Combining scikit-learn classifiers
==================================

A pool of scikit-learn classifiers is trained on half of the digits data (the digit
9 against the rest, 10 % positives); their out-of-fold probabilities on that half
(:func:`cfe_fast.prediction_matrix`) train the combiners, which are scored on the other
half: the mean of the pool, logistic-regression stacking on the same probabilities,
and CF-Ensemble.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import PrecisionRecallDisplay, average_precision_score
from sklearn.model_selection import train_test_split
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from cfe_fast import CFEnsembleClassifier, prediction_matrix

digits = load_digits()
X, y = digits.data, (digits.target == 9).astype(int)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.5, stratify=y, random_state=0)

pool = [
    ("logreg", make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=2000))),
    ("naive_bayes", GaussianNB()),
    ("knn", make_pipeline(StandardScaler(), KNeighborsClassifier(15))),
    ("tree", DecisionTreeClassifier(max_depth=4, random_state=0)),
    ("forest", RandomForestClassifier(n_estimators=50, max_depth=6, random_state=0)),
]

# %%
# The combiners' training data: out-of-fold probabilities (one column per classifier).
# Their test data: each classifier refitted on the whole training half.
P_train = prediction_matrix(pool, X_train, y_train, cv=5)
P_test = np.column_stack([model.fit(X_train, y_train).predict_proba(X_test)[:, 1] for _, model in pool])

stacking = LogisticRegression().fit(P_train, y_train)
cfe = CFEnsembleClassifier(latent_dim=3, random_state=0).fit(P_train, y_train)

scores = {
    "mean of the pool": P_test.mean(axis=1),
    "LR stacking": stacking.predict_proba(P_test)[:, 1],
    "CF-Ensemble": cfe.predict_proba(P_test)[:, 1],
}
for (name, _), column in zip(pool, P_test.T):
    print(f"{name:>16}: PR-AUC {average_precision_score(y_test, column):.3f}")
for name, score in scores.items():
    print(f"{name:>16}: PR-AUC {average_precision_score(y_test, score):.3f}")

# %%
# Precision-recall curves of the combiners on the test half.
fig, ax = plt.subplots(figsize=(6, 4.5))
for name, score in scores.items():
    PrecisionRecallDisplay.from_predictions(y_test, score, name=name, ax=ax)
ax.set_title("digits, 9 vs rest: test half")
ax.legend(loc="lower left")
plt.show()
