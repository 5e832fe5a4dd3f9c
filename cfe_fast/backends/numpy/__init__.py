"""NumPy backend: the reference implementation run as a backend.

Every kernel is :mod:`cfe_fast.reference`'s, one Python-level loop
iteration per ridge system: slow, exact for every ``solver`` value (which it
ignores), and meant for checking results on small problems.
"""

from ... import reference
from .. import CAPABILITIES
from ..in_memory import ModuleBackend


class NumpyBackend(ModuleBackend):
    """The contract on :mod:`cfe_fast.reference`; results are float64."""

    name = "numpy"
    capabilities = CAPABILITIES["numpy"]
    kernels = reference

    def choose_solver(self, m, d, lam):
        return "primal"  # the reference solves the d x d systems as written


BACKEND = NumpyBackend()
