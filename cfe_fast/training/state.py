"""The parameters being fitted, and the values derived from them that a step already computed."""

from dataclasses import dataclass, field

import numpy as np

from .._float64 import blocks


class State:
    """X (d, m), Y (d, n), w (m,), b of a fit, with values derived from (X, Y).

    ``reconstruction`` (L_rec at (X, Y), when the step that made Y computed
    it in the same pass) and ``evaluator`` (the aggregator's evaluator at
    (X, Y)) belong to the current factors: assigning X or Y forgets both, so
    a value computed for other factors can never be reused.
    """

    def __init__(self, X, Y, w, b):
        self._X, self._Y = X, Y
        self.w, self.b = w, b
        self.forget_derived()

    def forget_derived(self):
        """Drop the values derived from the factors (e.g. to free them before a step replaces Y)."""
        self.reconstruction = None
        self.evaluator = None

    @property
    def X(self):
        return self._X

    @X.setter
    def X(self, value):
        self._X = value
        self.forget_derived()

    @property
    def Y(self):
        return self._Y

    @Y.setter
    def Y(self, value):
        self._Y = value
        self.forget_derived()


@dataclass
class FitState:
    """Everything the outer loop needs to continue a fit after ``iteration`` iterations (0: initial).

    ``trainer`` holds the trainer's own arrays (e.g. Adam moments), ``previous``
    the objective of the last iteration, for the stop test.
    """

    Y: np.ndarray | None
    X: np.ndarray | None
    w: np.ndarray
    b: float
    history: dict = field(default_factory=dict)
    iteration: int = 0
    previous: float | None = None
    trainer: dict = field(default_factory=dict)


def initial_instance_factors(rng, n, d, dtype):
    """Y0 (n, d): standard normal / sqrt(d) drawn from the model's Generator.

    Consumes ``rng`` sequentially, so drawing consecutive blocks of rows gives
    the rows of one draw (the Dask backend draws chunk by chunk).
    """
    Y = np.empty((n, d), dtype=dtype)
    for s, e in blocks(n, d):  # float64 draws a block at a time: no n x d float64 temporary for float32
        Y[s:e] = rng.standard_normal((e - s, d)) / np.sqrt(d)
    return Y


def initial_fit_state(rng, n, m, d, dtype, Y=None):
    """The state before the first iteration: Y0 = ``Y`` (d, n) or random, no X yet, w = 1/m (the mean), b = 0."""
    Y = initial_instance_factors(rng, n, d, dtype).T if Y is None else Y
    return FitState(Y=Y, X=None, w=np.full(m, 1.0 / m), b=0.0)
