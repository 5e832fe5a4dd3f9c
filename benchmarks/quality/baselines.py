"""Simple combiners of base-classifier probabilities.

Each baseline sees the probability matrix of the labeled rows with their
labels, and predicts P(y=1) for the unlabeled rows. All return a
:class:`Prediction`: the scores and a small dict of what was chosen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score


@dataclass
class Prediction:
    """Scores for the unlabeled rows and what the method chose.

    Attributes
    ----------
    score : ndarray of shape (n_unlabeled,)
        Predicted P(y=1), in [0, 1].
    info : dict
        Method-specific details (chosen classifier, weights, ...), JSON-able.
    """

    score: np.ndarray
    info: dict = field(default_factory=dict)


def mean_proba(P_lab, y_lab, P_unl):
    """Row mean of the probability matrix (uses no labels).

    Parameters
    ----------
    P_lab : ndarray of shape (n_labeled, m)
    y_lab : ndarray of shape (n_labeled,)
    P_unl : ndarray of shape (n_unlabeled, m)

    Returns
    -------
    Prediction
    """
    return Prediction(P_unl.mean(axis=1))


def best_single(P_lab, y_lab, P_unl, names=None):
    """The one classifier with the highest PR-AUC on the labeled rows.

    Parameters
    ----------
    P_lab, y_lab, P_unl : see :func:`mean_proba`
    names : list of str, optional
        Classifier names, reported in ``info["chosen"]``.

    Returns
    -------
    Prediction
        ``info``: ``index`` and ``chosen`` (name) of the classifier.
    """
    scores = [average_precision_score(y_lab, P_lab[:, j]) for j in range(P_lab.shape[1])]
    j = int(np.argmax(scores))
    chosen = names[j] if names is not None else str(j)
    return Prediction(P_unl[:, j].copy(), {"index": j, "chosen": chosen})


def lr_stacking(P_lab, y_lab, P_unl, C=1.0):
    """Class-balanced logistic regression on the labeled rows' probabilities.

    Parameters
    ----------
    P_lab, y_lab, P_unl : see :func:`mean_proba`
    C : float
        Inverse L2 strength of the logistic regression.

    Returns
    -------
    Prediction
    """
    lr = LogisticRegression(class_weight="balanced", max_iter=1000, C=C)
    lr.fit(P_lab, y_lab)
    return Prediction(lr.predict_proba(P_unl)[:, 1])


def greedy_weights(P_lab, y_lab, rounds=25):
    """Greedy ensemble selection with replacement (Caruana et al., 2004).

    Starting from an empty ensemble, each round adds the classifier (possibly
    one already in) whose addition gives the running average the highest
    PR-AUC on the labeled rows. The ensemble of the best round is kept (as
    AutoGluon does), so the weights are selection counts over that round's
    size. Ties go to the lowest column index.

    Parameters
    ----------
    P_lab : ndarray of shape (n_labeled, m)
    y_lab : ndarray of shape (n_labeled,)
    rounds : int
        Number of additions.

    Returns
    -------
    weights : ndarray of shape (m,)
        Non-negative, summing to 1.
    trajectory : list of float
        Labeled-row PR-AUC after each round.
    """
    m = P_lab.shape[1]
    counts = np.zeros(m)
    total = np.zeros(P_lab.shape[0])
    trajectory, history = [], []
    for k in range(1, rounds + 1):
        cand = (total[:, None] + P_lab) / k
        scores = np.array([average_precision_score(y_lab, cand[:, j]) for j in range(m)])
        j = int(np.argmax(scores))
        counts[j] += 1
        total += P_lab[:, j]
        trajectory.append(float(scores[j]))
        history.append(counts.copy())
    best = int(np.argmax(trajectory))
    w = history[best] / history[best].sum()
    return w, trajectory


def greedy(P_lab, y_lab, P_unl, rounds=25, names=None):
    """Weighted average of the classifiers chosen by :func:`greedy_weights`.

    Parameters
    ----------
    P_lab, y_lab, P_unl : see :func:`mean_proba`
    rounds : int
    names : list of str, optional

    Returns
    -------
    Prediction
        ``info``: ``weights`` (name -> weight, non-zero only) and
        ``rounds_kept``.
    """
    w, traj = greedy_weights(P_lab, y_lab, rounds=rounds)
    names = names if names is not None else [str(j) for j in range(len(w))]
    info = {"weights": {names[j]: float(w[j]) for j in np.flatnonzero(w)},
            "rounds_kept": int(np.argmax(traj)) + 1}
    return Prediction(P_unl @ w, info)


BASELINES = {
    "mean": mean_proba,
    "best_single": best_single,
    "lr_stacking": lr_stacking,
    "greedy": greedy,
}
"""Baseline name -> function(P_lab, y_lab, P_unl, **params)."""
