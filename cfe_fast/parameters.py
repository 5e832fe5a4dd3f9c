"""The parameters of :class:`cfe_fast.CFEnsembleClassifier`, declared once.

Each parameter of ``CFEnsembleClassifier.__init__`` has one :class:`Param`
in :data:`PARAMETERS`: its kind, its choices and its range. The rules that
tie parameters together are :data:`CROSS_RULES`. :func:`validate_params`
checks a ``get_params()`` dict against both; the command line
(:mod:`cfe_fast.cli`) builds its options from the same table, so a choice or
a range is written down in one place only.

Like scikit-learn's ``_parameter_constraints`` (``sklearn.utils._param_validation``),
but with messages that start with the parameter's name and print bounds and
values exactly (``rho must be in [0, 1], got 1.000000000001``). Every error is
an :class:`InvalidParameterError`, a ``ValueError`` and a ``TypeError`` at
once (sklearn's convention), so callers that catch either keep working.

Defaults are not declared here: they are the estimator's signature
(``inspect.signature(CFEnsembleClassifier)``). The rules that depend on the
data (``latent_dim`` against the number of classifiers, the shape of a
confidence matrix) are checked in ``fit``.
"""

import math
import numbers
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from .backends import BACKENDS, CAPABILITIES, SOLVERS, TRAINERS
from .core.confidence import CONFIDENCE_STRATEGIES
from .core.losses import FOCAL_VARIANTS, PRIOR_CENTERS

AGGREGATORS = ("weighted", "mean")
INPUT_TYPES = ("probabilities", "scores")
AGGREGATOR_SOLVERS = ("newton", "gd", "adam")
LR_SCHEDULES = ("warmup_cosine", "constant")
DTYPES = MappingProxyType({"float64": np.float64, "float32": np.float32})

#: the kinds of :attr:`Param.kind`
KINDS = ("int", "float", "bool", "choice", "str-or-array", "seed", "label", "object")


class InvalidParameterError(ValueError, TypeError):
    """A parameter of wrong type or value; the message starts with the parameter's name."""


def _show(value):
    """A value in a message: numbers exactly (repr of the float / int), anything else by repr."""
    if isinstance(value, (bool, np.bool_)):
        return repr(bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return repr(float(value))
    return repr(value)


def _finite(value):
    """A real number that is finite as a float (an int too large for a float is not)."""
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


@dataclass(frozen=True)
class Interval:
    """The real numbers between ``low`` and ``high`` (None: unbounded); ``closed`` as in sklearn."""

    low: float | None = None
    high: float | None = None
    closed: str = "both"  # "both", "left", "right" or "neither"

    def __contains__(self, value):
        if self.low is not None and not (value >= self.low if self.closed in ("both", "left") else value > self.low):
            return False
        if self.high is not None and not (
            value <= self.high if self.closed in ("both", "right") else value < self.high
        ):
            return False
        return True

    def __str__(self):
        if self.low is not None and self.high is not None:
            left = "[" if self.closed in ("both", "left") else "("
            right = "]" if self.closed in ("both", "right") else ")"
            return f"in {left}{_show(self.low)}, {_show(self.high)}{right}"
        if self.low is not None:
            return (">= " if self.closed in ("both", "left") else "> ") + _show(self.low)
        if self.high is not None:
            return ("<= " if self.closed in ("both", "right") else "< ") + _show(self.high)
        return "any value"

    def as_dict(self):
        return {"low": self.low, "high": self.high, "closed": self.closed}


@dataclass(frozen=True)
class Param:
    """The rule of one parameter.

    kind: one of :data:`KINDS`. ``choices``: the allowed values of a "choice"
    (None may be one of them) or the strategy names of a "str-or-array".
    ``interval``: the range of an "int" or "float". ``none``: None is allowed
    too (for "int", "float" and "label"). ``words``: strings allowed besides the numbers
    of a "float" (e.g. "auto"). ``unknown``: the noun of the message for a
    value that is not one of the choices ("unknown backend 'x'"); None gives
    "must be one of".
    """

    name: str
    kind: str
    choices: tuple | None = None
    interval: Interval | None = None
    none: bool = False
    words: tuple = ()
    unknown: str | None = None

    def as_dict(self):
        """The declaration as plain data (for tools: a command line, a config schema, docs)."""
        return {
            "kind": self.kind,
            "choices": None if self.choices is None else list(self.choices),
            "range": None if self.interval is None else self.interval.as_dict(),
            "none": self.none or (self.choices is not None and None in self.choices),
            "words": list(self.words),
        }

    # -------------------------------------------------------------- checks
    def check(self, value):
        """Raise :class:`InvalidParameterError` unless ``value`` obeys this rule."""
        getattr(self, "_check_" + self.kind.replace("-", "_"))(value)

    def _fail(self, message):
        raise InvalidParameterError(f"{self.name} {message}")

    def _range(self):
        return "" if self.interval is None else " " + str(self.interval)

    def _check_int(self, value):
        if value is None and self.none:
            return
        if (
            isinstance(value, (bool, np.bool_))
            or not isinstance(value, numbers.Integral)
            or (self.interval is not None and value not in self.interval)
        ):
            self._fail(f"must be an integer{self._range()}{' or None' if self.none else ''}, got {_show(value)}")

    def _check_float(self, value):
        if (value is None and self.none) or (isinstance(value, str) and value in self.words):
            return
        alternatives = "".join(f" or {word!r}" for word in self.words) + (" or None" if self.none else "")
        if (
            isinstance(value, (bool, np.bool_))
            or not isinstance(value, numbers.Real)
            or not _finite(value)
        ):
            self._fail(f"must be a finite real number{self._range()}{alternatives}, got {_show(value)}")
        if self.interval is not None and value not in self.interval:
            self._fail(f"must be {'None or ' if self.none else ''}{self.interval}, got {_show(value)}")

    def _check_bool(self, value):
        if not isinstance(value, (bool, np.bool_)):
            self._fail(f"must be True or False, got {_show(value)}")

    def _is_choice(self, value):
        # strings and None only: comparing an array with `in` would be elementwise
        return (value is None or isinstance(value, str)) and value in self.choices

    def _check_choice(self, value):
        if self._is_choice(value):
            return
        if self.unknown and isinstance(value, str):
            self._fail(f"has an unknown {self.unknown} {value!r}; choose one of {self.choices}")
        self._fail(f"must be one of {self.choices}, got {_show(value)}")

    def _check_str_or_array(self, value):
        if isinstance(value, str):
            if value not in self.choices:
                self._fail(f"has an unknown {self.unknown} {value!r}; choose one of {self.choices} "
                           "or pass a 2-D array (n_instances, n_classifiers)")
            return
        ndim = getattr(value, "ndim", None)
        if ndim is None and isinstance(value, (list, tuple)):
            try:
                ndim = np.asarray(value, dtype=np.float64).ndim
            except (TypeError, ValueError):
                ndim = None
        if ndim is None or isinstance(ndim, bool) or not isinstance(ndim, numbers.Integral):
            self._fail(f"must be one of {self.choices} or a 2-D array (n_instances, n_classifiers), "
                       f"got {type(value).__name__} {_show(value)}")
        if ndim != 2:
            self._fail(f"must be one of {self.choices} or a 2-D array (n_instances, n_classifiers), "
                       f"got a {ndim}-D array")

    def _check_seed(self, value):
        if value is None or isinstance(value, np.random.Generator):
            return
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 0:
            self._fail(f"must be None, an integer >= 0 or a numpy.random.Generator, got {_show(value)}")

    def _check_label(self, value):
        """A class label: a string (including words such as "auto"), a finite number or a bool; None if allowed."""
        if (value is None and self.none) or isinstance(value, (str, bool, np.bool_)):
            return
        if not isinstance(value, numbers.Integral) and not (isinstance(value, numbers.Real) and _finite(value)):
            self._fail(f"must be a label (a string, a finite number or a bool){' or None' if self.none else ''}, "
                       f"got {type(value).__name__} {_show(value)}")

    def _check_object(self, value):
        """Anything: checked where it is used (the dask backend checks its client)."""


def _declare(*params):
    return MappingProxyType({p.name: p for p in params})


_NON_NEGATIVE = Interval(0, None, "left")
_POSITIVE = Interval(0, None, "neither")
_AT_LEAST_1 = Interval(1, None, "left")

#: every parameter of ``CFEnsembleClassifier.__init__``, in the signature's order
PARAMETERS = _declare(
    Param("latent_dim", "int", interval=_AT_LEAST_1, none=True),
    Param("rho", "float", interval=Interval(0, 1, "both")),
    Param("lam", "float", interval=_NON_NEGATIVE),
    Param("confidence", "str-or-array", choices=CONFIDENCE_STRATEGIES, unknown="confidence strategy"),
    Param("confidence_alpha", "float", interval=_NON_NEGATIVE),
    Param("aggregator", "choice", choices=AGGREGATORS),
    Param("class_weight", "choice", choices=("balanced", None)),
    Param("focal_gamma", "float", interval=_NON_NEGATIVE),
    Param("focal_variant", "choice", choices=FOCAL_VARIANTS),
    Param("aggregator_l2", "float", interval=_NON_NEGATIVE),
    Param("aggregator_prior", "float", interval=_NON_NEGATIVE, words=("auto",)),
    Param("aggregator_prior_center", "choice", choices=("auto",) + PRIOR_CENTERS),
    Param("freeze_aggregator_iters", "int", interval=_NON_NEGATIVE),
    Param("trainer", "choice", choices=TRAINERS),
    Param("aggregator_solver", "choice", choices=AGGREGATOR_SOLVERS),
    Param("aggregator_lr", "float", interval=_NON_NEGATIVE),
    Param("aggregator_steps", "int", interval=_AT_LEAST_1),
    Param("reinit_collapsed_aggregator", "bool"),
    Param("learning_rate", "float", interval=_NON_NEGATIVE),
    Param("joint_steps_per_iter", "int", interval=_AT_LEAST_1),
    Param("lr_schedule", "choice", choices=LR_SCHEDULES),
    Param("clip_norm", "float", interval=_POSITIVE, none=True),
    Param("max_iter", "int", interval=_AT_LEAST_1),
    Param("tol", "float", interval=_NON_NEGATIVE),
    Param("random_state", "seed"),
    Param("backend", "choice", choices=BACKENDS, unknown="backend"),
    Param("client", "object"),
    Param("solver", "choice", choices=SOLVERS),
    Param("dtype", "choice", choices=tuple(DTYPES)),
    Param("threshold", "float", interval=Interval(0, 1, "both")),
    Param("unlabeled", "label", none=True),
    Param("input_type", "choice", choices=INPUT_TYPES),
    Param("verbose", "bool"),
)


# ------------------------------------------------------------ cross rules
def _aggregator_of_trainer(p):
    if p["trainer"] != "als" and p["aggregator"] != "weighted":
        return f"trainer={p['trainer']!r} fits the weighted aggregator; use aggregator='weighted'"


def _exact_trainer(p):
    if p["trainer"] == "exact" and (p["rho"] <= 0 or p["focal_variant"] != "exact"):
        return ("trainer='exact' needs rho > 0 and focal_variant='exact' (the 'weighted_bce' variant has no loss), "
                f"got rho={_show(p['rho'])}, focal_variant={p['focal_variant']!r}")


def _solver_of_trainer(p):
    if p["solver"] != "auto" and p["trainer"] != "als":
        return f"solver={p['solver']!r} applies to trainer='als' only (the others solve exactly)"


def _consensus_of_trainer(p):
    if p["aggregator_prior_center"] == "consensus" and p["trainer"] != "als":
        return ("aggregator_prior_center='consensus' follows the factors (its direction is recomputed at each "
                "aggregator fit), which trainer='als' alone allows: its factors do not depend on the aggregator; "
                "use aggregator_prior_center='equal' or 'zero'")


def _scores_in_memory(p):
    if p["input_type"] == "scores" and p["backend"] == "dask":
        return ("input_type='scores' maps each classifier's scores by their quantiles over all instances, "
                "in memory: use an in-memory backend, or map the scores into [0, 1] before a dask fit")


def _backend_capabilities(p):
    return CAPABILITIES[p["backend"]].breach(p["backend"], trainer=p["trainer"], solver=p["solver"],
                                             focal_variant=p["focal_variant"], focal_gamma=p["focal_gamma"])


@dataclass(frozen=True)
class CrossRule:
    """A rule over several parameters: ``check(params)`` returns the message of a breach, or None."""

    names: tuple
    description: str
    check: object

    def as_dict(self):
        return {"parameters": list(self.names), "rule": self.description}


#: the rules that tie parameters together, checked after each parameter's own rule
CROSS_RULES = (
    CrossRule(("trainer", "aggregator"), "trainer != 'als' needs aggregator='weighted'", _aggregator_of_trainer),
    CrossRule(("trainer", "rho", "focal_variant"),
              "trainer='exact' needs rho > 0 and focal_variant='exact'", _exact_trainer),
    CrossRule(("solver", "trainer"), "solver != 'auto' needs trainer='als'", _solver_of_trainer),
    CrossRule(("aggregator_prior_center", "trainer"), "aggregator_prior_center='consensus' needs trainer='als'",
              _consensus_of_trainer),
    CrossRule(("input_type", "backend"), "input_type='scores' needs backend != 'dask'", _scores_in_memory),
    CrossRule(("backend", "trainer", "solver", "focal_gamma", "focal_variant"),
              "the backend supports the trainer, the solver and the focal variant (cfe_fast.backends.CAPABILITIES)",
              _backend_capabilities),
)


def validate_params(params):
    """Check a ``get_params()`` dict; raise :class:`InvalidParameterError` at the first breach.

    Each parameter's own rule (:data:`PARAMETERS`) first, in the signature's
    order, then :data:`CROSS_RULES`. A name that is not a parameter is
    refused; a cross rule whose parameters are not all in ``params`` is
    skipped (so a partial dict checks what it holds).
    """
    for name in params:
        if name not in PARAMETERS:
            raise InvalidParameterError(f"{name} is not a parameter of CFEnsembleClassifier; "
                                        f"the parameters are {tuple(PARAMETERS)}")
    for name, param in PARAMETERS.items():
        if name in params:
            param.check(params[name])
    for rule in CROSS_RULES:
        if all(name in params for name in rule.names):
            message = rule.check(params)
            if message:
                raise InvalidParameterError(message)


def describe():
    """Every declaration as plain data: ``{name: {"kind", "choices", "range", "none"}}``."""
    return {name: param.as_dict() for name, param in PARAMETERS.items()}
