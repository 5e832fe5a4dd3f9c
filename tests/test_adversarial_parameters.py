"""Hostile parameter values and arguments: every refusal names the parameter, nothing fails late or silently."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cfe_fast
from cfe_fast import CFEnsembleClassifier, make_ensemble
from cfe_fast.cli import build_parser, main
from cfe_fast.parameters import PARAMETERS, InvalidParameterError, validate_params


@pytest.fixture(scope="module")
def data():
    return make_ensemble(n_classifiers=6, n_instances=150, random_state=5)


# ------------------------------------------------------------ the estimator
HOSTILE = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6), st.lists(st.integers(), max_size=3), st.just(1 + 1e-12), st.just(-1),
)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from([n for n, p in PARAMETERS.items() if p.kind != "object"]), value=HOSTILE)
def test_any_value_is_valid_or_refused_naming_the_parameter(name, value):
    try:
        validate_params({name: value})
    except InvalidParameterError as error:
        assert str(error).startswith(name), error
        return
    param = PARAMETERS[name]  # accepted: it obeys the declaration
    if param.kind in ("int", "float") and value is not None and not isinstance(value, str):
        assert not isinstance(value, bool) and math.isfinite(value)
        assert param.interval is None or value in param.interval
    if param.kind == "int" and value is not None:
        assert isinstance(value, int)


@pytest.mark.parametrize("params, match", [
    ({"rho": "0.5"}, "rho must be a finite real number"),
    ({"tol": None}, "tol must be a finite real number"),
    ({"focal_gamma": float("nan")}, "focal_gamma must be a finite real number"),
    ({"clip_norm": "1"}, "clip_norm must be a finite real number"),
    ({"freeze_aggregator_iters": 1.5}, "freeze_aggregator_iters must be an integer"),
    ({"random_state": -1}, "random_state must be None, an integer >= 0"),
    ({"random_state": 1.5}, "random_state must be None"),
    ({"random_state": "abc"}, "random_state must be None"),
    ({"rho": 1 + 1e-12}, r"rho must be in \[0, 1\], got 1.000000000001"),
    ({"reinit_collapsed_aggregator": "no"}, "reinit_collapsed_aggregator must be True or False"),
])
def test_fit_refuses_bad_parameters_before_the_data(params, match):
    with pytest.raises(InvalidParameterError, match=match):
        CFEnsembleClassifier(**params).fit(np.full((4, 2), 0.5), [0, 1, 0, 1])


def test_latent_dim_is_capped_by_the_classifiers(data):
    for d in (7, 2000, 2**63):
        with pytest.raises(ValueError, match=rf"latent_dim={d} > n_classifiers=6.*use latent_dim <= 6"):
            CFEnsembleClassifier(latent_dim=d).fit(data.P, data.labels)
    with pytest.warns(UserWarning, match="latent_dim=6 >= n_classifiers=6"):
        CFEnsembleClassifier(latent_dim=6, max_iter=2).fit(data.P, data.labels)


def test_latent_dim_beyond_the_memory_is_refused_before_allocating(data, monkeypatch):
    monkeypatch.setattr(cfe_fast.estimator, "_physical_memory", lambda: 10_000)
    with pytest.raises(ValueError, match=r"latent_dim=5 needs about .* GiB for the factors of 150 instances"):
        CFEnsembleClassifier(latent_dim=5).fit(data.P, data.labels)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow on the way to a non-finite objective
@pytest.mark.parametrize("learning_rate", [1e3, 1e6, 1e300])
def test_a_diverging_joint_fit_stops_naming_the_remedy(data, learning_rate):
    model = CFEnsembleClassifier(trainer="joint", learning_rate=learning_rate, max_iter=5, random_state=0)
    with pytest.raises(FloatingPointError, match="the fit diverged.*lower learning_rate or set clip_norm"):
        model.fit(data.P, data.labels)


def test_a_sane_joint_fit_is_not_called_divergent(data):
    model = CFEnsembleClassifier(trainer="joint", learning_rate=0.05, max_iter=5, random_state=0)
    assert np.isfinite(model.fit(data.P, data.labels).history_["loss"]).all()


@pytest.mark.parametrize("P, match", [
    ([[0.1, 0.2], [0.3]], "X is ragged"),
    ([[0.1, np.inf], [0.3, 0.4]], r"X at row 0, column 1 holds inf"),
    ([[0.1, np.nan], [0.3, np.nan]], "classifier column 1 of X has no observed entry"),
    ([["a", "b"], ["c", "d"]], "X must hold real numbers"),
])
def test_bad_matrices_are_named(P, match):
    with pytest.raises((TypeError, ValueError), match=match):
        CFEnsembleClassifier(max_iter=1).fit(P, [0, 1])


def test_ragged_labels_are_named():
    with pytest.raises(ValueError, match="y is ragged"):
        CFEnsembleClassifier(max_iter=1).fit(np.full((3, 2), 0.5), [0, 1, [1]])


# ------------------------------------------------------ the functional API
@pytest.fixture
def aggregator_args():
    rng = np.random.default_rng(0)
    return dict(X=rng.normal(size=(2, 4)), Y=rng.normal(size=(2, 10)), labels=np.arange(10) % 2, w=np.ones(4),
                b=0.0)


@pytest.mark.parametrize("change, match", [
    ({"b": "0"}, "b must be a finite real number, got '0'"),
    ({"b": None}, "b must be a finite real number"),
    ({"b": float("inf")}, "b must be a finite real number"),
    ({"focal_gamma": float("nan")}, "focal_gamma must be a finite real number"),
    ({"focal_gamma": float("inf")}, "focal_gamma must be a finite real number"),
    ({"focal_gamma": "x"}, "focal_gamma must be a finite real number"),
    ({"focal_gamma": -1.0}, "focal_gamma must be >= 0"),
    ({"focal_variant": None}, "focal_variant must be one of"),
    ({"class_weight": "yes"}, "class_weight must be True or False"),
    ({"w": [1, [2, 3]]}, "w is ragged"),
    ({"labels": [0, 1, [1]]}, "labels is ragged"),
])
def test_aggregator_loss_grad_names_the_bad_argument(aggregator_args, change, match):
    args = {**aggregator_args, **change}
    with pytest.raises((TypeError, ValueError), match=match):
        cfe_fast.aggregator_loss_grad(args.pop("X"), args.pop("Y"), args.pop("labels"), args.pop("w"),
                                      args.pop("b"), **args)


@settings(max_examples=50, deadline=None)
@given(gamma=st.floats(0, 50), b=st.floats(-30, 30))
def test_aggregator_loss_grad_is_finite_for_every_accepted_argument(gamma, b):
    rng = np.random.default_rng(1)
    loss, grad_w, grad_b = cfe_fast.aggregator_loss_grad(rng.normal(size=(2, 4)), rng.normal(size=(2, 10)),
                                                         np.arange(10) % 2, np.ones(4), b, focal_gamma=gamma)
    assert np.isfinite(loss) and np.isfinite(grad_w).all() and np.isfinite(grad_b)


@pytest.mark.parametrize("R, lam, match", [
    ([[0.1, 0.2], [0.3]], 0.1, "R is ragged"),
    (np.full((4, 10), 0.5), "0.1", "lam must be a finite real number"),
    (np.full((4, 10), 0.5), None, "lam must be a finite real number"),
])
def test_update_instance_factors_names_the_bad_argument(R, lam, match):
    with pytest.raises((TypeError, ValueError), match=match):
        cfe_fast.update_instance_factors(np.ones((2, 4)), R, np.ones((4, 10)), lam)


# ------------------------------------------------------------ the command line
@pytest.mark.parametrize("word, value", [
    ("no", False), ("No", False), ("false", False), ("FALSE", False), ("off", False), ("0", False),
    ("yes", True), ("true", True), ("on", True), ("1", True),
])
def test_boolean_options_are_strict(word, value):
    args = build_parser().parse_args(["fit", "x.csv", "--reinit-collapsed-aggregator", word])
    assert args.param_reinit_collapsed_aggregator is value


@pytest.mark.parametrize("word", ["nope", "", "2", "yes please", "none"])
def test_an_unknown_boolean_word_is_refused(word, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["fit", "x.csv", "--reinit-collapsed-aggregator", word])
    assert exit_.value.code == 2 and "invalid boolean" in capsys.readouterr().err


@pytest.mark.parametrize("option, value", [
    ("--labeled", "0"), ("--labeled", "1"), ("--labeled", "nan"), ("--positive-rate", "0"),
    ("--quality", "1.5"), ("--instances", "-5"),
])
def test_demo_refuses_options_it_cannot_use_in_one_line(option, value, capsys):
    assert main(["demo", "--instances", "200", option, value]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cfe-fast: error:") and len(err.splitlines()) == 1


def test_demo_refuses_example_data_it_cannot_score(capsys):
    assert main(["demo", "--instances", "10", "--positive-rate", "0.01"]) == 2
    assert "do not hold both classes" in capsys.readouterr().err
