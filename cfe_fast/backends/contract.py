"""The contract every backend implements, and the table of what each supports.

A backend is an object with the attributes and methods of :class:`Backend`.
Kernels take the layout of docs/method.md: R and C are (m, n) =
(classifiers, instances), X is (d, m), Y is (d, n); C may be None, which
means confidence 1 at every entry (every system then shares one Gram, and
the solves are exact whatever ``solver`` says); they return arrays where
the backend computes (``to_host`` brings them back). What a backend does not
support is declared in its :class:`Capabilities`, which the estimator and
the functional API check before anything runs.
"""

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

#: every value of ``solver=``: "auto" (the backend's own rule, :meth:`Backend.choose_solver`),
#: the exact "dual" (m x m) and "primal" (d x d) forms of the instance step, and the approximate "cg"
SOLVERS = ("auto", "dual", "primal", "cg")
#: every trainer of :mod:`cfe_fast.training.trainers`
TRAINERS = ("als", "exact", "joint")


@dataclass(frozen=True)
class Capabilities:
    """What a backend supports.

    Attributes
    ----------
    trainers : tuple of str
        Trainers it runs (a subset of :data:`TRAINERS`).
    solvers : tuple of str
        Values of ``solver=`` it accepts (a subset of :data:`SOLVERS`).
    inputs : tuple of str
        Kinds of data ``fit`` and ``predict_proba`` take: "numpy" (array-likes
        in memory), "sparse" (``scipy.sparse`` matrices and arrays whose
        stored entries are the observed ones; the trainers of
        ``sparse_trainers`` and solver "auto" or "primal") and "dask" (dask arrays, lazy or not; with
        "sparse" also dask arrays whose chunks are ``scipy.sparse``).
    focal_variants : tuple of str
        Focal-loss variants of the aggregator it fits.
    checkpoints : bool
        Whether a fit can write and resume checkpoints.
    sparse_trainers : tuple of str
        Trainers it runs on a sparse X (with "sparse" in ``inputs``).
    """

    trainers: tuple
    solvers: tuple
    inputs: tuple = ("numpy",)
    focal_variants: tuple = ("exact", "weighted_bce")
    checkpoints: bool = True
    sparse_trainers: tuple = ("als",)

    def breach(self, backend, *, trainer="als", solver="auto", focal_variant="exact", focal_gamma=0.0):
        """The message naming what ``backend`` does not support of these values, or None."""
        if trainer not in self.trainers:
            return f"backend={backend!r} supports trainer={self._one_of(self.trainers)}, got trainer={trainer!r}"
        if solver not in SOLVERS:
            return f"solver must be one of {SOLVERS}, got {solver!r}"
        if solver not in self.solvers:
            return f"solver={solver!r} is not available with backend={backend!r} (it takes {self.solvers})"
        if focal_gamma > 0 and focal_variant not in self.focal_variants:
            return (f"backend={backend!r} supports focal_variant={self._one_of(self.focal_variants)}, "
                    f"got focal_variant={focal_variant!r}")
        return None

    def check(self, backend, **values):
        """Raise ValueError with the message of :meth:`breach`, if any."""
        message = self.breach(backend, **values)
        if message:
            raise ValueError(message)

    @staticmethod
    def _one_of(values):
        return f"{values[0]!r} only" if len(values) == 1 else f"one of {values}"


@runtime_checkable
class Backend(Protocol):
    """The kernels and data placement of one backend.

    Every kernel that takes ``solver`` accepts each value in
    ``capabilities.solvers``; ``init`` (the previous factors) is the start of
    the approximate "cg" solver and ignored by the exact ones.
    """

    name: str
    capabilities: Capabilities

    def choose_solver(self, m, d, lam):
        """The exact instance-step form ("dual" or "primal") that ``solver="auto"`` takes."""

    def place(self, *arrays):
        """The arrays where the backend computes (the GPU for CuPy); ``None`` entries stay ``None``."""

    def to_host(self, array):
        """A NumPy array of a result of this backend."""

    def update_instance_factors(self, X, R, C, lam, *, solver="auto", init=None, with_loss=False):
        """Y (d, n) from X: the instance half-step; with ``with_loss`` also L_rec at (X, Y)."""

    def update_classifier_factors(self, Y, R, C, lam, *, solver="auto", init=None):
        """X (d, m) from Y: the classifier half-step."""

    def fold_in(self, X, R, C, lam):
        """Instance factors (d, n_new) of new instances with X fixed (the exact instance step)."""

    def reconstruction_loss(self, X, Y, R, C, lam):
        """The normalised reconstruction term L_rec at (X, Y)."""

    def aggregator_terms(self, X, Y_labeled, y_labeled, omega, w, b, focal_gamma, focal_variant, hessian):
        """:class:`~cfe_fast.core.losses.AggregatorTerms` of the labeled instances at (X, Y, w, b).

        ``hessian``: False (none), True (over (w, b)) or "latent" (over (X w, b)).
        """

    def instance_solves(self, X, R, C, lam, w, *, with_loss=False):
        """(Y, Z) with Z[:, i] = A_i^-1 X w from the instance step's systems A_i (the exact trainer);
        with ``with_loss`` also L_rec at (X, Y), as :meth:`update_instance_factors` gives it."""

    def classifier_gram_terms(self, Y, R, C):
        """Grams (m, d, d) and right-hand sides (m, d) of the classifier step (the exact trainer)."""

    def reconstruction_gradient(self, X, Y, R, C, lam):
        """(dL_rec/dX, dL_rec/dY) (the joint trainer)."""

    def start_fit(self, data):
        """``(problem, state)`` for a fit on :class:`cfe_fast.training.problem.FitData`."""

    def fold_in_data(self, X, P, lam, confidence, dtype, values=None):
        """Instance factors (d, n_new) of instance-major probabilities P (as the
        backend's ``check_new_data`` returns them) in ``dtype``, with
        ``confidence(P_chunk) -> C_chunk`` the label-free confidence; with
        ``values(Y_block) -> (rows,)``, those values (n_new,) of every block's
        factors instead. Built block by block of instances: the confidence,
        the factors and the values of one block at a time."""
