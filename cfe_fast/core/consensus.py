"""Label-free weights of the classifiers: how much each agrees with the others (docs/method.md, "Consensus").

A classifier whose reconstruction r_hat_u = X[:, u]^T Y correlates more with
the sum of the other classifiers' reconstructions gets a larger weight:
w_u proportional to max(corr(r_hat_u, sum_{v != u} r_hat_v), 0)^power over
the instances, labeled or not. The correlations need only the moments of
the instance factors: with S the covariance of the columns of Y and
s = sum_u X[:, u], cov(r_hat_u, r_hat_v) = X[:, u]^T S X[:, v], so
corr(r_hat_u, sum of the others) = x_u^T S (s - x_u) / sqrt(x_u^T S x_u (s - x_u)^T S (s - x_u)).
"""

import numpy as np

#: the exponent of the agreement: on the real-data benchmark's pools the weighted mean of the
#: classifiers beats their plain mean in 10 of 11 tasks at 4; higher powers trust fewer classifiers
#: (16 loses on one task; benchmarks/results/consensus_power_cpu2.md)
CONSENSUS_POWER = 4


def consensus_weights(X, mean_Y, second_moment_Y, power=CONSENSUS_POWER):
    """Classifier weights (m,) summing to 1 from the classifier factors and the instance factors' moments.

    Parameters
    ----------
    X : ndarray (d, m)
        Classifier factors.
    mean_Y : ndarray (d,)
        Mean of the instance factors' columns.
    second_moment_Y : ndarray (d, d)
        Mean of y_i y_i^T over the instances.
    power : float
        Exponent of the (clipped) correlation.

    Returns
    -------
    ndarray (m,)
        Equal weights where no classifier correlates positively with the others.
    """
    X = np.asarray(X, dtype=np.float64)
    mean_Y = np.asarray(mean_Y, dtype=np.float64)
    S = np.asarray(second_moment_Y, dtype=np.float64) - np.outer(mean_Y, mean_Y)
    others = X.sum(axis=1, keepdims=True) - X
    SX = S @ X
    covariance = np.einsum("du,du->u", SX, others)
    variance = np.einsum("du,du->u", SX, X) * np.einsum("du,du->u", S @ others, others)
    correlation = np.divide(covariance, np.sqrt(np.maximum(variance, 0.0)), out=np.zeros_like(covariance),
                            where=variance > 0)
    weights = np.maximum(correlation, 0.0) ** power
    total = weights.sum()
    return weights / total if total > 0 else np.full(X.shape[1], 1.0 / X.shape[1])
