"""cfe_fast.parameters: every rule refuses bad values by name, accepts the good ones, and agrees with the estimator."""

import inspect
import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cfe_fast import CFEnsembleClassifier
from cfe_fast import parameters as pm
from cfe_fast.backends import BACKENDS, SOLVERS
from cfe_fast.parameters import (
    CROSS_RULES,
    KINDS,
    PARAMETERS,
    InvalidParameterError,
    Interval,
    describe,
    validate_params,
)
from cfe_fast.core.confidence import CONFIDENCE_STRATEGIES
from cfe_fast.core.losses import FOCAL_VARIANTS

SIGNATURE = inspect.signature(CFEnsembleClassifier).parameters
DEFAULTS = {name: p.default for name, p in SIGNATURE.items()}


def refused(params, start):
    """The message of validate_params(params), checked to be a ValueError and a TypeError starting with `start`."""
    with pytest.raises(InvalidParameterError) as error:
        validate_params(params)
    assert isinstance(error.value, ValueError) and isinstance(error.value, TypeError)
    message = str(error.value)
    assert message.startswith(start), message
    return message


# --------------------------------------------------------------- the table
def test_every_parameter_of_the_estimator_is_declared_in_order():
    assert list(PARAMETERS) == list(SIGNATURE)
    for name, param in PARAMETERS.items():
        assert param.name == name and param.kind in KINDS
        assert (param.choices is not None) == (param.kind in ("choice", "str-or-array"))
        assert param.interval is None or param.kind in ("int", "float")


def test_the_defaults_pass():
    validate_params(CFEnsembleClassifier().get_params())
    validate_params(DEFAULTS)
    for name, value in DEFAULTS.items():
        PARAMETERS[name].check(value)


def test_choice_lists():
    assert PARAMETERS["backend"].choices == BACKENDS
    assert PARAMETERS["solver"].choices == SOLVERS
    assert PARAMETERS["confidence"].choices == CONFIDENCE_STRATEGIES
    assert PARAMETERS["focal_variant"].choices == FOCAL_VARIANTS
    assert PARAMETERS["trainer"].choices == pm.TRAINERS == ("als", "exact", "joint")
    assert PARAMETERS["aggregator"].choices == pm.AGGREGATORS
    assert PARAMETERS["aggregator_solver"].choices == pm.AGGREGATOR_SOLVERS
    assert PARAMETERS["lr_schedule"].choices == pm.LR_SCHEDULES
    assert PARAMETERS["dtype"].choices == tuple(pm.DTYPES) == ("float64", "float32")
    assert PARAMETERS["class_weight"].choices == ("balanced", None)


def test_describe_is_plain_data():
    table = describe()
    assert list(table) == list(SIGNATURE)
    json.dumps(table)  # a tool can read it without importing the package's classes
    assert table["rho"] == {"kind": "float", "choices": None, "range": {"low": 0, "high": 1, "closed": "both"},
                            "none": False, "words": []}
    assert table["aggregator_prior"]["words"] == ["auto"]
    assert table["latent_dim"]["range"] == {"low": 1, "high": None, "closed": "left"} and table["latent_dim"]["none"]
    assert table["class_weight"] == {"kind": "choice", "choices": ["balanced", None], "range": None, "none": True,
                                     "words": []}
    assert table["reinit_collapsed_aggregator"]["kind"] == "bool"
    assert table["random_state"]["kind"] == "seed" and table["confidence"]["kind"] == "str-or-array"
    assert table["client"]["kind"] == "object"
    json.dumps([rule.as_dict() for rule in CROSS_RULES])


# ------------------------------------------------------- one rule at a time
def bad_values(param):
    """Values that break the rule of `param`."""
    kind, interval = param.kind, param.interval
    if kind == "int":
        out = [1.5, 2.0, "1", True, np.nan, [1], np.bool_(True)]
        if interval is not None:
            out.append(interval.low - 1)
    elif kind == "float":
        out = ["0.5", np.nan, np.inf, -np.inf, True, 1 + 2j, [0.5], np.float64("nan"), 10**400]
        if interval is not None:
            out += [interval.low - 1e-9, interval.low - 1, -np.inf]
            if interval.closed in ("neither", "right"):
                out.append(interval.low)
            if interval.high is not None:
                out += [interval.high + 1e-12, np.nextafter(interval.high, 2)]
    elif kind == "bool":
        out = [1, 0, "yes", "False", 0.0]
    elif kind == "choice":
        out = ["nope", 3, 1.5, [param.choices[0]], np.array([param.choices[0]]), param.choices[0].upper()]
    elif kind == "str-or-array":
        out = ["nope", 3.0, np.ones(3), np.ones((2, 2, 2)), [[1, 2], [3]], object()]
    elif kind == "seed":
        out = [-1, 1.5, "0", True, np.random.RandomState(0), np.nan]
    elif kind == "label":
        out = [np.nan, np.inf, 1 + 2j, [1], np.array([1]), object()]
    else:
        out = []
    if not param.as_dict()["none"] and kind not in ("seed", "object"):
        out.append(None)
    return out


CASES = [(name, value) for name, param in PARAMETERS.items() for value in bad_values(param)]


@pytest.mark.parametrize("name, value", CASES, ids=[f"{n}={v!r}"[:40] for n, v in CASES])
def test_each_rule_refuses_a_bad_value_by_name(name, value):
    refused({name: value}, f"{name} ")
    refused({**DEFAULTS, name: value}, f"{name} ")  # the parameter's own rule comes before any cross rule


@pytest.mark.parametrize(
    "change, text",
    [
        ({"latent_dim": 0}, "latent_dim must be an integer >= 1"),
        ({"lam": -0.1}, "lam must be >= 0"),
        ({"lam": float("nan")}, "lam must be a finite real"),
        ({"rho": 1.5}, "rho must be in"),
        ({"aggregator": "median"}, "aggregator must be one of"),
        ({"confidence": "psychic"}, "unknown confidence strategy"),
        ({"dtype": "float16"}, "dtype must be one of"),
        ({"backend": "fortran"}, "unknown backend"),
        ({"class_weight": "auto"}, "class_weight must be"),
        ({"max_iter": 0}, "max_iter must be"),
        ({"solver": "qr"}, "solver must be one of"),
        ({"solver": "cg", "trainer": "exact"}, "trainer='als' only"),
        ({"backend": "dask", "trainer": "exact"}, "trainer='als' only"),
        ({"aggregator_steps": 0}, "aggregator_steps"),
        ({"joint_steps_per_iter": -2}, "joint_steps_per_iter"),
        ({"clip_norm": 0.0}, "clip_norm must be None or > 0"),
        ({"focal_variant": "x"}, "focal_variant must be one of"),
        ({"freeze_aggregator_iters": 1.5}, "freeze_aggregator_iters must be an integer >= 0"),
        ({"freeze_aggregator_iters": -1}, "freeze_aggregator_iters must be an integer >= 0"),
        ({"rho": "0.5"}, "rho must be a finite real number in [0, 1], got '0.5'"),
        ({"tol": None}, "tol must be a finite real number >= 0, got None"),
        ({"random_state": -3}, "random_state must be None, an integer >= 0 or a numpy.random.Generator"),
    ],
)
def test_messages_keep_the_texts_callers_match(change, text):
    message = refused({**DEFAULTS, **change}, "")
    assert text in message
    assert any(message.startswith(name) for name in change), message


def test_bounds_and_values_are_printed_exactly():
    assert refused({"rho": 1.000000000001}, "rho") == "rho must be in [0, 1], got 1.000000000001"
    assert refused({"rho": np.float32(1.1)}, "rho") == f"rho must be in [0, 1], got {float(np.float32(1.1))!r}"
    assert refused({"clip_norm": -1}, "clip_norm") == "clip_norm must be None or > 0, got -1"
    assert str(Interval(0.1 + 0.2, 1e-300 + 1, "neither")) == "in (0.30000000000000004, 1.0)"
    assert str(Interval(None, 2.5e-17, "right")) == "<= 2.5e-17"
    assert 0.30000000000000004 not in Interval(0.1 + 0.2, None, "neither")


@pytest.mark.parametrize(
    "change",
    [
        {"latent_dim": np.int64(3)}, {"latent_dim": None}, {"rho": np.float32(0.5)}, {"rho": 0}, {"rho": 1},
        {"lam": 0}, {"confidence": np.ones((4, 3))}, {"confidence": [[0.5, 1.0]]}, {"class_weight": None},
        {"clip_norm": 1e-300}, {"random_state": np.random.default_rng(0)}, {"random_state": 2**80},
        {"random_state": np.int32(7)}, {"reinit_collapsed_aggregator": np.bool_(True)}, {"verbose": True},
        {"freeze_aggregator_iters": 0}, {"tol": 0.0}, {"solver": "cg"}, {"solver": "primal", "backend": "numpy"},
        {"trainer": "joint", "clip_norm": 5.0}, {"trainer": "exact", "rho": 0.1},
        {"backend": "dask", "focal_gamma": 2.0}, {"backend": "dask", "focal_variant": "weighted_bce"},
        {"client": object()},
    ],
)
def test_good_values_pass(change):
    validate_params({**DEFAULTS, **change})


# ------------------------------------------------------------ cross rules
@pytest.mark.parametrize(
    "change, start",
    [
        ({"trainer": "exact", "aggregator": "mean"}, "trainer='exact' fits the weighted aggregator"),
        ({"trainer": "joint", "aggregator": "mean"}, "trainer='joint' fits the weighted aggregator"),
        ({"backend": "dask", "trainer": "exact"}, "backend='dask' supports trainer='als' only"),
        ({"backend": "dask", "trainer": "joint"}, "backend='dask' supports trainer='als' only"),
        ({"backend": "dask", "focal_gamma": 1.0, "focal_variant": "weighted_bce"},
         "backend='dask' supports focal_variant='exact' only"),
        ({"trainer": "exact", "rho": 0.0}, "trainer='exact' needs rho > 0 and focal_variant='exact'"),
        ({"trainer": "exact", "focal_variant": "weighted_bce"}, "trainer='exact' needs rho > 0"),
        ({"trainer": "joint", "solver": "dual"}, "solver='dual' applies to trainer='als' only"),
        ({"backend": "cupy", "solver": "cg"}, "solver='cg' is not available with backend='cupy'"),
        ({"backend": "dask", "solver": "primal"}, "solver='primal' is not available with backend='dask'"),
    ],
)
def test_cross_rules(change, start):
    refused({**DEFAULTS, **change}, start)


def test_a_cross_rule_without_all_its_parameters_is_skipped():
    validate_params({"trainer": "exact", "aggregator": "weighted"})
    validate_params({"trainer": "exact"})
    validate_params({})
    refused({"aggregator": "mean", "trainer": "joint"}, "trainer='joint'")


def test_an_unknown_name_is_refused():
    refused({"rhoo": 0.5}, "rhoo is not a parameter of CFEnsembleClassifier")


COMBINATIONS = list(itertools.product(
    pm.TRAINERS, pm.AGGREGATORS, BACKENDS, SOLVERS, FOCAL_VARIANTS, (0.0, 0.5), (0.0, 1.0)
))


def documented_rules_accept(p):
    """The cross-parameter rules as the estimator's docstring states them, written independently."""
    if p["trainer"] != "als" and p["aggregator"] != "weighted":
        return False
    if p["trainer"] == "exact" and (p["rho"] <= 0 or p["focal_variant"] != "exact"):
        return False
    if p["solver"] != "auto" and (p["trainer"] != "als" or p["backend"] not in ("numba", "numpy")):
        return False
    if p["backend"] == "dask" and p["trainer"] != "als":
        return False
    return not (p["backend"] == "dask" and p["focal_gamma"] > 0 and p["focal_variant"] != "exact")


def test_the_cross_rules_agree_with_the_documented_rules_on_every_combination():
    names = ("trainer", "aggregator", "backend", "solver", "focal_variant", "rho", "focal_gamma")
    disagree = []
    for values in COMBINATIONS:
        params = {**DEFAULTS, **dict(zip(names, values))}
        try:
            validate_params(params)
            ours = True
        except InvalidParameterError:
            ours = False
        if ours != documented_rules_accept(params):
            disagree.append(values)
    assert not disagree, disagree[:5]


# --------------------------------------------------------------- hypothesis
JUNK = st.one_of(
    st.none(), st.booleans(), st.text(max_size=12), st.sampled_from([1.5, -1, -0.5, 0, 1, 2.0, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=-10**30, max_value=10**30),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1 + 1j, [], [1.0], {}, (), b"x", object()]),
    st.sampled_from([np.float32(np.nan), np.int64(-1), np.bool_(False), np.ones(2), np.ones((2, 2)), np.float64(2)]),
    st.sampled_from([c for p in PARAMETERS.values() if p.choices for c in p.choices if c is not None]),
)


def as_float(value):
    try:
        return float(value)
    except OverflowError:  # an int beyond the floats
        return math.inf


def passes_its_kind(param, value):
    """What an accepted value must be, stated independently of the implementation."""
    kind, interval = param.kind, param.interval
    if value is None:
        return param.as_dict()["none"] or kind in ("seed", "object")
    if kind == "int":
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= interval.low
    if kind == "float":
        if isinstance(value, str):
            return value in param.words
        return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
                and math.isfinite(as_float(value)) and value in interval)
    if kind == "bool":
        return isinstance(value, (bool, np.bool_))
    if kind == "choice":
        return isinstance(value, str) and value in param.choices
    if kind == "str-or-array":
        return value in param.choices if isinstance(value, str) else np.ndim(value) == 2
    if kind == "label":
        return isinstance(value, (str, bool, np.bool_, int, np.integer)) or (
            isinstance(value, (float, np.floating)) and math.isfinite(value))
    if kind == "seed":
        return isinstance(value, np.random.Generator) or (
            isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0)
    return True


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(list(PARAMETERS)), value=JUNK)
def test_junk_raises_only_a_named_value_or_type_error(name, value):
    try:
        validate_params({name: value})
    except InvalidParameterError as error:
        assert str(error).startswith(f"{name} "), str(error)
        assert not passes_its_kind(PARAMETERS[name], value), (name, value)
    else:
        assert passes_its_kind(PARAMETERS[name], value), (name, value)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=st.dictionaries(st.sampled_from([n for n in PARAMETERS if n != "client"]), JUNK, max_size=4))
def test_an_accepted_dict_obeys_every_stated_rule(changes):
    """Whatever validate_params lets through obeys each parameter's kind and the documented
    cross rules, stated independently above; every refusal names a parameter."""
    params = {**DEFAULTS, **changes}
    try:
        validate_params(params)
    except InvalidParameterError as error:
        assert str(error).split("=")[0].split(" ")[0] in PARAMETERS, str(error)
        return
    assert all(passes_its_kind(PARAMETERS[name], value) for name, value in params.items()), params
    assert documented_rules_accept(params), params
