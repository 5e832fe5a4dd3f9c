"""Decision scores into [0, 1]: each classifier's empirical distribution function.

With ``input="scores"`` the estimator takes any real-valued base outputs
(``decision_function``, margins, log-odds). Each classifier's scores are
mapped by a monotone transform fitted on all instances of the fit, labeled
or not: the share of the fitted scores at or below the score, i.e. the
score's rank, read off ``n_quantiles`` quantiles of the classifier's scores
and interpolated linearly between them (scikit-learn's ``QuantileTransformer``
with a uniform output). Scores below (above) the fitted range map to 0 (1).
The transform needs no labels and keeps each classifier's ranking; the
quantiles are stored in the model, so new instances are mapped the same way.
A missing score (NaN, not observed) is left out of the quantiles and stays
NaN.
"""

import numpy as np

from .core.missing import has_missing

#: quantiles per classifier the transform keeps (fewer when there are fewer instances)
N_QUANTILES = 1000


def fit_quantiles(S, n_quantiles=N_QUANTILES):
    """The quantiles (q, m) of each column's observed scores S (n, m), q = min(n_quantiles, n), at least 2."""
    q = max(2, min(n_quantiles, S.shape[0]))
    S = np.asarray(S, dtype=np.float64)
    quantile = np.nanquantile if has_missing(S) else np.quantile
    return quantile(S, np.linspace(0.0, 1.0, q), axis=0)


def to_unit_interval(S, quantiles, dtype):
    """The scores S (n, m) mapped into [0, 1] by the quantiles of :func:`fit_quantiles`, as ``dtype``.

    Where several quantiles are equal (a classifier with few distinct
    scores) a score equal to them maps to the middle of their ranks: the
    mean of the interpolations from below and from above, as scikit-learn's
    ``QuantileTransformer`` does inside the fitted range (it maps the
    lowest and the highest fitted score to 0 and 1 instead).
    """
    S = np.asarray(S, dtype=np.float64)
    levels = np.linspace(0.0, 1.0, quantiles.shape[0])
    out = np.empty(S.shape, dtype=dtype)
    for j in range(S.shape[1]):
        column = quantiles[:, j]
        up = np.interp(S[:, j], column, levels)
        down = -np.interp(-S[:, j], -column[::-1], -levels[::-1])
        out[:, j] = 0.5 * (up + down)
    return out
