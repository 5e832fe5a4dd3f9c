"""NumPy backend: the reference implementation run as a backend.

Every kernel is :mod:`cfe_fast.reference`'s, one Python-level loop
iteration per ridge system: slow, exact for every ``solver`` value (which it
ignores), and meant for checking results on small problems.
"""

from ... import reference
from .. import CAPABILITIES
from ..in_memory import InMemoryBackend


class NumpyBackend(InMemoryBackend):
    """The contract on :mod:`cfe_fast.reference`; results are float64."""

    name = "numpy"
    capabilities = CAPABILITIES["numpy"]

    def choose_solver(self, m, d, lam):
        return "primal"  # the reference solves the d x d systems as written

    def update_instance_factors(self, X, R, C, lam, *, solver="auto", init=None, with_loss=False):
        return reference.update_instance_factors(X, R, C, lam, with_loss=with_loss)

    def update_classifier_factors(self, Y, R, C, lam, *, solver="auto", init=None):
        return reference.update_classifier_factors(Y, R, C, lam)

    def fold_in(self, X, R, C, lam):
        return reference.update_instance_factors(X, R, C, lam)

    def reconstruction_loss(self, X, Y, R, C, lam):
        return reference.reconstruction_loss(X, Y, R, C, lam)

    def aggregator_terms(self, X, Y_labeled, y_labeled, omega, w, b, focal_gamma=0.0, focal_variant="exact",
                         hessian=False):
        return reference.aggregator_terms(X, Y_labeled, y_labeled, omega, w, b, focal_gamma, focal_variant, hessian)

    def instance_solves(self, X, R, C, lam, w):
        return reference.instance_solves(X, R, C, lam, w)

    def classifier_gram_terms(self, Y, R, C):
        return reference.classifier_gram_terms(Y, R, C)

    def reconstruction_gradient(self, X, Y, R, C, lam):
        return reference.reconstruction_gradient(X, Y, R, C, lam)


BACKEND = NumpyBackend()
