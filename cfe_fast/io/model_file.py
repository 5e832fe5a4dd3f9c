"""Model files that cannot run code: what a fitted estimator is, in a safe archive.

Format (``format_version`` 2, an archive of :mod:`.archive` with format name
"cfe_fast.model"): the metadata holds ``estimator`` (class name), ``params``
(every ``get_params()`` value; an array parameter such as a user confidence
matrix appears as ``{"__array__": member}``), ``attributes`` (fitted
scalars, e.g. ``intercept_``, ``n_iter_``, ``aggregator_``), ``arrays`` (the
names of the fitted array attributes) and ``history`` (key order and, per
key, whether its entries are scalars or vectors); the members
``param/<name>``, ``attr/<name>`` and ``history/<key>`` hold the arrays.

What prediction needs does not depend on the number n of fitted instances;
the values of size n (:data:`TRAINING_ATTRIBUTES`: the fitted instances'
factors and probabilities) are optional, and a file holds both of them or
neither, so files of either kind, older ones included, are read alike. A
user confidence matrix is a parameter (n x m) and is kept as given.

Reading checks what :func:`~.archive.read_archive` checks (format, version,
members, headers and sizes before data, checksum), refuses pickled (object)
members and unknown parameters, and checks every fitted value against
:data:`SCHEMA`: its name, type, shape (in terms of m, d and n) and range,
numbers finite. The estimator validates the parameters as ``fit`` does. Every
refusal is a :class:`~.archive.ModelFileError` naming the file. This module
reads and writes :class:`ModelContent`; the estimator provides and restores it.
"""

from dataclasses import dataclass

import numpy as np

from .archive import (
    ModelFileError,
    history_payload,
    params_payload,
    read_archive,
    require,
    restore_history,
    restore_params,
    safe_array,
    json_scalar,
    write_archive,
)

MODEL_FORMAT = "cfe_fast.model"


@dataclass(frozen=True)
class Fitted:
    """The rule of one fitted value of a model file.

    ``shape``: None for a JSON scalar, else the array's shape in terms of m
    (classifiers), d (latent dimension), n (fitted instances) or numbers.
    ``kinds``: the allowed numpy dtype kinds (arrays) or Python types
    (scalars). ``low``/``high``: inclusive bounds of every number (numbers
    are finite). ``choices``: the allowed values of a text scalar.
    ``required``: predict needs it. ``none``: a scalar may be None.
    """

    shape: tuple | None = None
    kinds: object = "f"
    low: float | None = None
    high: float | None = None
    choices: tuple | None = None
    required: bool = False
    none: bool = False


_NUMBER = (int, float)
#: every fitted value a model file may hold; anything else is refused
SCHEMA = {
    "classes_": Fitted((2,), kinds="biufU", required=True),
    "n_features_in_": Fitted(kinds=(int,), low=1, required=True),
    "feature_names_in_": Fitted(("m",), kinds="U"),
    "latent_dim_": Fitted(kinds=(int,), low=1, required=True),
    "aggregator_": Fitted(kinds=(str,), choices=("weighted", "mean"), required=True),
    "classifier_factors_": Fitted(("d", "m"), required=True),
    "instance_factors_": Fitted(("d", "n")),
    "coef_": Fitted(("m",), required=True),
    "intercept_": Fitted(kinds=_NUMBER, required=True),
    "classifier_quality_": Fitted(("m",)),
    "transductive_proba_": Fitted(("n",), low=0, high=1),
    "n_iter_": Fitted(kinds=(int,), low=0),
    "converged_": Fitted(kinds=(bool,)),
    "aggregator_prior_": Fitted(kinds=_NUMBER, low=0, none=True),
    "aggregator_prior_center_": Fitted(kinds=(str,), choices=("equal", "zero"), none=True),
    "score_quantiles_": Fitted(("q", "m")),
    "prior_correction_": Fitted(kinds=_NUMBER),
    "held_out_average_precision_": Fitted(kinds=_NUMBER, low=0, high=1, none=True),
    "held_out_average_precision_of_mean_": Fitted(kinds=_NUMBER, low=0, high=1, none=True),
    "held_out_positive_rate_": Fitted(kinds=_NUMBER, low=0, high=1, none=True),
    "held_out_mean_better_share_": Fitted(kinds=_NUMBER, low=0, high=1, none=True),
}


#: the fitted values of size n (the fitted instances'): a file holds all of them or none
TRAINING_ATTRIBUTES = tuple(name for name, rule in SCHEMA.items() if rule.shape is not None and "n" in rule.shape)


def _check_numbers(path, name, rule, values):
    values = np.asarray(values, dtype=np.float64)
    require(np.isfinite(values).all(), path, f"fitted {name} holds NaN or infinite values")
    if values.size:
        require(rule.low is None or values.min() >= rule.low, path, f"fitted {name} is below {rule.low}")
        require(rule.high is None or values.max() <= rule.high, path, f"fitted {name} is above {rule.high}")


def _check_scalar(path, name, rule, value):
    if value is None:
        require(rule.none, path, f"fitted attribute {name} is None")
        return
    exact_bool = isinstance(value, bool)
    require(isinstance(value, rule.kinds) and (exact_bool == (rule.kinds == (bool,))), path,
            f"fitted attribute {name} is {value!r}, expected {' or '.join(t.__name__ for t in rule.kinds)}")
    if rule.choices is not None:
        require(value in rule.choices, path, f"fitted attribute {name} is {value!r}, expected one of {rule.choices}")
    elif not exact_bool and not isinstance(value, str):
        _check_numbers(path, name, rule, value)


def _check_array(path, name, rule, arr, sizes):
    expected = tuple(sizes.get(dim, dim) for dim in rule.shape)
    require(arr.shape == expected, path, f"fitted array {name} has shape {arr.shape}, expected {expected}")
    require(arr.dtype.kind in rule.kinds, path, f"fitted array {name} has dtype {arr.dtype}")
    if arr.dtype.kind in "biuf":
        _check_numbers(path, name, rule, arr)


def check_fitted(path, fitted):
    """Check the fitted values of a model file against :data:`SCHEMA` (names, types, shapes, ranges)."""
    unknown = sorted(set(fitted) - set(SCHEMA))
    require(not unknown, path, f"unknown fitted attribute(s) {unknown}")
    for name, rule in SCHEMA.items():
        require(name in fitted or not rule.required, path, f"missing fitted attribute {name}")
    present = [name for name in TRAINING_ATTRIBUTES if name in fitted]
    require(len(present) in (0, len(TRAINING_ATTRIBUTES)), path,
            f"it holds {present} without {sorted(set(TRAINING_ATTRIBUTES) - set(present))}: the fitted "
            "instances' values are stored all together or not at all")
    for name, value in fitted.items():
        require((SCHEMA[name].shape is None) != isinstance(value, np.ndarray), path,
                f"fitted attribute {name} is stored as {'an array' if isinstance(value, np.ndarray) else 'a scalar'}")
    for name, rule in SCHEMA.items():
        if name in fitted and rule.shape is None:
            _check_scalar(path, name, rule, fitted[name])
    sizes = {"m": fitted["n_features_in_"], "d": fitted["latent_dim_"]}
    if "instance_factors_" in fitted:
        sizes["n"] = fitted["instance_factors_"].shape[-1]
    elif "transductive_proba_" in fitted:
        sizes["n"] = fitted["transductive_proba_"].shape[0]
    if "score_quantiles_" in fitted:
        sizes["q"] = max(2, fitted["score_quantiles_"].shape[0])
    for name, rule in SCHEMA.items():
        if name in fitted and rule.shape is not None:
            _check_array(path, name, rule, fitted[name], sizes)
    require(np.unique(fitted["classes_"]).size == 2, path, f"fitted classes_ {fitted['classes_']} are not two classes")
    if "score_quantiles_" in fitted:
        require(bool((np.diff(fitted["score_quantiles_"], axis=0) >= 0).all()), path,
                "fitted array score_quantiles_ is not finite and non-decreasing down each column")


@dataclass
class ModelContent:
    """A fitted estimator as data: its class name, parameters, fitted values and history.

    ``fitted`` maps attribute names to NumPy arrays or JSON scalars.
    """

    estimator: str
    params: dict
    fitted: dict
    history: dict | None


def write_model(path, content, *, overwrite=False):
    """Write :class:`ModelContent` to ``path`` (as given, no suffix added), atomically."""
    params, arrays = params_payload(content.params)
    attributes, array_names, history = {}, [], None
    if content.history is not None:
        history, history_arrays = history_payload(content.history)
        arrays.update(history_arrays)
    for name, value in content.fitted.items():
        if isinstance(value, np.ndarray):
            arrays[f"attr/{name}"] = safe_array(value, f"attribute {name}")
            array_names.append(name)
        else:
            attributes[name] = json_scalar(value, f"attribute {name}")
    metadata = {
        "estimator": content.estimator,
        "params": params,
        "attributes": attributes,
        "arrays": array_names,
        "history": history,
    }
    write_archive(path, MODEL_FORMAT, metadata, arrays, overwrite)


def read_model(path, known_params, required_history=()):
    """The :class:`ModelContent` of a model file, checked; ``known_params``: the estimator's parameter names.

    ``required_history``: the history entries a model must have.

    Raises
    ------
    ModelFileError
        Not a cfe_fast model file, an incompatible format version, a truncated
        or corrupt archive, pickled members, or inconsistent content.
    """
    metadata, arrays = read_archive(path, MODEL_FORMAT)
    params = restore_params(path, metadata, arrays, known_params)
    history = restore_history(path, metadata.get("history"), arrays, required_history)
    attributes, names = metadata.get("attributes"), metadata.get("arrays")
    require(isinstance(attributes, dict) and isinstance(names, list), path, "its metadata lacks the fitted values")
    fitted = dict(attributes)
    for name in names:
        member = f"attr/{name}"
        require(isinstance(name, str) and member in arrays and name not in fitted, path,
                f"missing member {member!r}")
        fitted[name] = arrays.pop(member)
    require(not arrays, path, f"unexpected member(s) {sorted(arrays)}")
    check_fitted(path, fitted)
    if history is not None and "n_iter_" in fitted:
        lengths = {len(values) for values in history.values()}
        require(lengths <= {fitted["n_iter_"]}, path,
                f"its history has {sorted(lengths)} entries for n_iter_={fitted['n_iter_']}")
    return ModelContent(metadata.get("estimator"), params, fitted, history)


__all__ = ["MODEL_FORMAT", "SCHEMA", "TRAINING_ATTRIBUTES", "ModelContent", "ModelFileError", "read_model", "write_model"]
