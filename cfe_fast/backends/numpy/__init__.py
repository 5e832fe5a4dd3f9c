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

    def instance_solves(self, X, R, C, lam, w):
        return reference.instance_solves(X, R, C, lam, w)

    def classifier_gram_terms(self, Y, R, C):
        return reference.classifier_gram_terms(Y, R, C)

    def reconstruction_gradient(self, X, Y, R, C, lam):
        return reference.reconstruction_gradient(X, Y, R, C, lam)


BACKEND = NumpyBackend()
