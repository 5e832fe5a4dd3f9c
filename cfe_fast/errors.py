"""Exception and warning classes shared by every backend."""

import numpy as np

#: A Cholesky pivot L_jj**2 at or below this fraction of the diagonal entry A_jj
#: marks the system as numerically singular (condition number beyond ~1e12).
#: The reference and every fast kernel apply the same rule.
PIVOT_RTOL = 1e-12


class SingularSystemError(np.linalg.LinAlgError, ValueError):
    """A ridge system of an ALS half-step is singular (or numerically so).

    Raised instead of returning NaN or garbage; the message names the first
    failing instance or classifier and how to fix it (raise ``lam``).
    """


class CollapseWarning(UserWarning):
    """The fitted ensemble shows a documented collapse failure mode."""


class QualityWarning(UserWarning):
    """Held out on the labeled instances, the fitted ensemble is worse than the mean of its classifiers or chance."""


def singular_system_error(what, index):
    """The error of a singular ridge system: ``what`` ("instance", "classifier") and its index."""
    return SingularSystemError(f"the ridge system of {what} {index} is singular (or numerically so); increase lam")
