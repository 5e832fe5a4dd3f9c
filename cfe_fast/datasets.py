"""Built-in example data: a seeded generator of ensemble probability matrices."""

from functools import lru_cache
from typing import NamedTuple

import numpy as np
from scipy.special import expit


class EnsembleData(NamedTuple):
    """Output of :func:`make_ensemble`.

    R : (m, n) probabilities (classifiers x instances, as in docs/method.md).
    y_true : (n,) true 0/1 labels of every instance.
    labels : (n,) float, y_true where labeled and NaN elsewhere.
    """

    R: np.ndarray
    y_true: np.ndarray
    labels: np.ndarray

    @property
    def P(self):
        """R transposed: the (n_instances, n_classifiers) matrix the estimator takes."""
        return self.R.T


def _shifted_average_precision(pos_noise_desc, neg_noise_sorted, shift):
    """PR-AUC (average precision) of the scores ``shift + pos_noise`` (positives)
    and ``-shift + neg_noise`` (negatives), for continuous noise (no ties).

    Average precision is the mean over positives of the precision at that
    positive's score. With the positives' noise sorted in descending order,
    positive j has j + 1 positives at or above it and, above it, the negatives
    whose noise exceeds its noise + 2 shift: one binary search per positive,
    the noise sorted once for every shift (sklearn's average_precision_score
    sorts all scores again for every call).
    """
    ranks = np.arange(1, pos_noise_desc.size + 1)
    negatives_above = neg_noise_sorted.size - np.searchsorted(neg_noise_sorted, pos_noise_desc + 2 * shift, side="right")
    return float(np.mean(ranks / (ranks + negatives_above)))


@lru_cache(maxsize=64)
def _signal_for_quality(quality, positive_rate):
    """Signal strength a with which one classifier's PR-AUC is about ``quality``.

    A classifier's logit is a (2y - 1) + N(0, 1); PR-AUC grows with a, so a
    bisection on a fixed pilot sample (its own seed) finds a.
    """
    pilot = np.random.default_rng(20260125)
    y = pilot.random(40_000) < positive_rate
    noise = pilot.standard_normal(y.size)
    pos_noise_desc = np.sort(noise[y])[::-1]
    neg_noise_sorted = np.sort(noise[~y])
    lo, hi = 0.0, 8.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if _shifted_average_precision(pos_noise_desc, neg_noise_sorted, mid) < quality:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def make_ensemble(
    n_classifiers=10,
    n_instances=500,
    labeled_fraction=0.5,
    positive_rate=0.1,
    quality=0.7,
    quality_spread=0.15,
    n_groups=3,
    group_correlation=0.4,
    common_correlation=0.4,
    n_subgroups=1,
    expertise=0.5,
    random_state=0,
):
    """Probabilities of a pool of classifiers with correlated errors.

    Each classifier u belongs to one of ``n_groups`` groups; its logit on
    instance i is ``a_ui (2 y_i - 1) + e_ui`` with unit-variance errors

        e_ui = sqrt(kappa) h_i + sqrt(rho) g_{group(u), i} + sqrt(1 - kappa - rho) o_ui,

    ``kappa = common_correlation`` (instance hardness every classifier shares),
    ``rho = group_correlation`` (errors shared within a group). Averaging does not
    cancel shared errors, so the mean of R is better than one classifier but not
    perfect. ``a_u`` is set so that classifier u's PR-AUC is about ``quality_u``;
    the qualities are evenly spread over ``quality +- quality_spread`` (clipped
    to stay above the positive rate and below 1), in a random order, so that some
    classifiers deserve more weight than others. With ``n_subgroups > 1`` instances fall into subgroups and
    group g is an expert (signal x (1 + expertise)) on subgroup g mod n_subgroups
    and weaker (x (1 - expertise)) elsewhere.

    Labeled instances are drawn stratified, at least one per class.

    Returns
    -------
    EnsembleData(R (m, n), y_true (n,), labels (n,) with NaN for unlabeled)
    """
    if not 0 < positive_rate < 1:
        raise ValueError(f"positive_rate must be in (0, 1), got {positive_rate}")
    if not positive_rate < quality < 1:
        raise ValueError(f"quality (a PR-AUC) must be in (positive_rate, 1), got {quality}")
    if quality_spread < 0:
        raise ValueError(f"quality_spread must be >= 0, got {quality_spread}")
    if not 0 <= labeled_fraction <= 1 or not 0 <= expertise < 1:
        raise ValueError("labeled_fraction must be in [0, 1] and expertise in [0, 1)")
    if min(group_correlation, common_correlation) < 0 or group_correlation + common_correlation > 1:
        raise ValueError("group_correlation and common_correlation must be >= 0 with a sum <= 1")
    if min(n_classifiers, n_instances, n_groups, n_subgroups) < 1:
        raise ValueError("n_classifiers, n_instances, n_groups and n_subgroups must be >= 1")
    rng = np.random.default_rng(random_state)
    m, n = n_classifiers, n_instances
    y = (rng.random(n) < positive_rate).astype(np.int64)
    y[rng.choice(n, size=min(2, n), replace=False)[: int(y.sum() == 0)]] = 1
    group = np.arange(m) % n_groups
    subgroup = rng.integers(0, n_subgroups, size=n)
    spread = np.linspace(-quality_spread, quality_spread, m) if m > 1 else np.zeros(1)
    qualities = np.clip(quality + rng.permutation(spread), positive_rate + 0.02, 0.995)
    signal = np.array([_signal_for_quality(round(float(q), 4), float(positive_rate)) for q in qualities])
    signal = np.repeat(signal[:, None], n, axis=1)
    if n_subgroups > 1:
        expert = (group[:, None] % n_subgroups) == subgroup[None, :]
        signal *= np.where(expert, 1.0 + expertise, 1.0 - expertise)
    errors = (
        np.sqrt(common_correlation) * rng.standard_normal(n)
        + np.sqrt(group_correlation) * rng.standard_normal((n_groups, n))[group]
        + np.sqrt(1 - common_correlation - group_correlation) * rng.standard_normal((m, n))
    )
    logit = signal * (2 * y - 1) + errors
    R = expit(logit)

    labels = np.full(n, np.nan)
    for cls in (0, 1):
        members = rng.permutation(np.flatnonzero(y == cls))
        k = int(round(labeled_fraction * members.size))
        if labeled_fraction > 0 and members.size:
            k = max(k, 1)
        labels[members[:k]] = cls
    return EnsembleData(R, y, labels)
