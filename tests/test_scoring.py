"""Model selection with unlabeled rows: the labeled scorer against scikit-learn's metric on the
labeled rows, and GridSearchCV / cross_validate with unlabeled rows in every fit."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_validate

from cfe_fast import CFEnsembleClassifier, labeled_scorer, make_ensemble


@pytest.fixture(scope="module")
def data():
    ens = make_ensemble(n_classifiers=8, n_instances=600, labeled_fraction=0.5, random_state=2)
    y = np.where(np.isnan(ens.labels), -1, ens.labels)  # the scikit-learn convention: splitters refuse NaN
    return ens.P, y


def test_the_scorer_scores_the_labeled_rows_only(data):
    P, y = data
    model = CFEnsembleClassifier(latent_dim=3, max_iter=5, random_state=0).fit(P, y)
    labeled = y != -1
    p = model.predict_proba(P)[:, 1]
    assert labeled_scorer()(model, P, y) == pytest.approx(average_precision_score(y[labeled], p[labeled]), rel=1e-12)
    assert labeled_scorer("roc_auc")(model, P, np.where(labeled, y, np.nan)) == pytest.approx(
        roc_auc_score(y[labeled], p[labeled]), rel=1e-12)
    assert np.isnan(labeled_scorer()(model, P, np.full(len(y), -1.0)))  # nothing labeled: undefined
    assert np.isnan(labeled_scorer()(model, P[labeled & (y == 1)], y[labeled & (y == 1)]))  # one class


def test_grid_search_and_cross_validate_keep_unlabeled_rows(data):
    P, y = data
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    search = GridSearchCV(CFEnsembleClassifier(max_iter=5, random_state=0), {"latent_dim": [2, 4]},
                          scoring=labeled_scorer(), cv=cv).fit(P, y)
    scores = search.cv_results_["mean_test_score"]
    assert np.all(np.isfinite(scores)) and search.best_score_ == scores.max()
    result = cross_validate(CFEnsembleClassifier(latent_dim=3, max_iter=5, random_state=0), P, y, cv=cv,
                            scoring={"ap": labeled_scorer(), "brier": labeled_scorer("neg_brier_score")})
    assert np.all(np.isfinite(result["test_ap"])) and np.all(result["test_brier"] <= 0)
