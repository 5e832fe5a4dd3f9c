"""CuPy backend: the kernels on an NVIDIA GPU, and on NumPy where no GPU is usable.

See :mod:`.kernels` for the design, :mod:`.arrays` for data placement and
streaming, :mod:`.solve` for the batched SPD solves. It runs the "als"
trainer with the exact solvers chosen by its own rule (:func:`.kernels.choose_solver`).
"""

from .. import CAPABILITIES
from ..in_memory import InMemoryBackend
from . import kernels
from .arrays import to_device, to_host


class CupyBackend(InMemoryBackend):
    """The contract on :mod:`.kernels`; results are float32 for float32 R, else float64."""

    name = "cupy"
    capabilities = CAPABILITIES["cupy"]

    def choose_solver(self, m, d, lam):
        return kernels.choose_solver(m, d, lam)

    def place(self, *arrays):
        return to_device(*arrays)

    def to_host(self, array):
        return to_host(array)

    def update_instance_factors(self, X, R, C, lam, *, solver="auto", init=None, with_loss=False):
        return kernels.update_instance_factors(X, R, C, lam, with_loss=with_loss)

    def update_classifier_factors(self, Y, R, C, lam, *, solver="auto", init=None):
        return kernels.update_classifier_factors(Y, R, C, lam)

    def fold_in(self, X, R, C, lam):
        return kernels.update_instance_factors(X, R, C, lam)

    def reconstruction_loss(self, X, Y, R, C, lam):
        return kernels.reconstruction_loss(X, Y, R, C, lam)

    def aggregator_terms(self, X, Y_labeled, y_labeled, omega, w, b, focal_gamma=0.0, focal_variant="exact",
                         hessian=False):
        return kernels.aggregator_terms(X, Y_labeled, y_labeled, omega, w, b, focal_gamma, focal_variant, hessian)

    def _unsupported(self, *args, **kwargs):
        raise NotImplementedError(f"backend={self.name!r} runs trainer='als' only (see its capabilities)")

    instance_solves = classifier_gram_terms = reconstruction_gradient = _unsupported


BACKEND = CupyBackend()
