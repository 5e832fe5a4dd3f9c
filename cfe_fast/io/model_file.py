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

A model of K >= 3 classes (:mod:`cfe_fast.multiclass`) holds, besides its
parameters, its ``classes_``, ``n_features_in_`` and ``feature_names_in_``
(:data:`MULTICLASS_SCHEMA`) and, under ``per_class`` in the metadata, the
fitted values and history of each class's two-class model, in ``classes_``
order, as above (members ``class/<k>/attr/<name>`` and
``class/<k>/history/<key>``); the rest of the model (``latent_dim_``,
``n_iter_``, ``converged_``, ``transductive_proba_``) is derived from them.
Classes are stored as a numeric, boolean or unicode array, whatever their kind.

Reading checks what :func:`~.archive.read_archive` checks (format, version,
members, headers and sizes before data, checksum), refuses pickled (object)
members and unknown parameters, and checks every fitted value against
:data:`SCHEMA`: its name, type, shape (in terms of m, d and n) and range,
numbers finite (with K >= 3 classes: one model per class, each of classes
[0, 1], all of m = n_features_in_ / K classifiers and the same latent
dimension, column names those of their class). The estimator validates the
parameters as ``fit`` does. Every refusal is a :class:`~.archive.ModelFileError`
naming the file. This module reads and writes :class:`ModelContent`; the
estimator provides and restores it.
"""

from dataclasses import dataclass

import numpy as np

from ..core.losses import PRIOR_CENTERS
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
    "aggregator_prior_center_": Fitted(kinds=(str,), choices=PRIOR_CENTERS, none=True),
    "score_quantiles_": Fitted(("q", "m")),
    "prior_correction_": Fitted(kinds=_NUMBER),
    "held_out_average_precision_": Fitted(kinds=_NUMBER, low=0, high=1, none=True),
    "held_out_average_precision_of_mean_": Fitted(kinds=_NUMBER, low=0, high=1, none=True),
    "held_out_positive_rate_": Fitted(kinds=_NUMBER, low=0, high=1, none=True),
    "held_out_mean_better_share_": Fitted(kinds=_NUMBER, low=0, high=1, none=True),
}


#: what a model of K >= 3 classes holds besides its per-class models (each as :data:`SCHEMA` says);
#: m is its number of columns, K m (:mod:`cfe_fast.multiclass`); the rest is derived from the per-class models
MULTICLASS_SCHEMA = {
    "classes_": Fitted(("K",), kinds="biufU", required=True),
    "n_features_in_": Fitted(kinds=(int,), low=1, required=True),
    "feature_names_in_": Fitted(("m",), kinds="U"),
}
#: the prefix of the members of class k's model: ``class/<k>/attr/<name>``, ``class/<k>/history/<key>``
PER_CLASS = "class/"

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


def _check_classes(path, classes, multiclass):
    """classes_: two distinct classes, or (multi-class) at least three, distinct and sorted."""
    if not multiclass:
        require(np.unique(classes).size == 2, path, f"fitted classes_ {classes} are not two classes")
        return
    require(classes.size >= 3, path, f"fitted classes_ {classes.tolist()} are {classes.size}: a model with "
            "per-class models has at least three classes")
    require(np.array_equal(np.unique(classes), classes), path,
            f"fitted classes_ {classes.tolist()} are not distinct classes in sorted order")


def check_fitted(path, fitted, schema=None):
    """Check the fitted values of a model file against ``schema`` (names, types, shapes, ranges).

    ``schema``: :data:`SCHEMA` (a binary model or one class's model, the default) or
    :data:`MULTICLASS_SCHEMA` (what a multi-class model holds besides its per-class models).
    """
    schema = SCHEMA if schema is None else schema
    unknown = sorted(set(fitted) - set(schema))
    require(not unknown, path, f"unknown fitted attribute(s) {unknown}")
    for name, rule in schema.items():
        require(name in fitted or not rule.required, path, f"missing fitted attribute {name}")
    present = [name for name in TRAINING_ATTRIBUTES if name in fitted]
    require(len(present) in (0, len(TRAINING_ATTRIBUTES)), path,
            f"it holds {present} without {sorted(set(TRAINING_ATTRIBUTES) - set(present))}: the fitted "
            "instances' values are stored all together or not at all")
    for name, value in fitted.items():
        require((schema[name].shape is None) != isinstance(value, np.ndarray), path,
                f"fitted attribute {name} is stored as {'an array' if isinstance(value, np.ndarray) else 'a scalar'}")
    for name, rule in schema.items():
        if name in fitted and rule.shape is None:
            _check_scalar(path, name, rule, fitted[name])
    classes = fitted["classes_"]
    sizes = {"m": fitted["n_features_in_"], "d": fitted.get("latent_dim_"),
             "K": classes.shape[0] if classes.ndim else None}
    if "instance_factors_" in fitted:
        sizes["n"] = fitted["instance_factors_"].shape[-1]
    elif "transductive_proba_" in fitted:
        sizes["n"] = fitted["transductive_proba_"].shape[0]
    if "score_quantiles_" in fitted:
        sizes["q"] = max(2, fitted["score_quantiles_"].shape[0])
    for name, rule in schema.items():
        if name in fitted and rule.shape is not None:
            _check_array(path, name, rule, fitted[name], sizes)
    _check_classes(path, fitted["classes_"], schema is MULTICLASS_SCHEMA)
    if "score_quantiles_" in fitted:
        require(bool((np.diff(fitted["score_quantiles_"], axis=0) >= 0).all()), path,
                "fitted array score_quantiles_ is not finite and non-decreasing down each column")


def check_per_class(path, fitted, per_class):
    """Check the per-class models of a multi-class model against it and each other.

    One model per class, each checked against :data:`SCHEMA` with classes
    [0, 1] ("its class or not"), all with the same classifiers (m columns,
    the multi-class model's K m) and latent dimension, all with the fitted
    instances' values or none, and column names those of the model's
    columns of their class.
    """
    classes = fitted["classes_"]
    require(len(per_class) == classes.size, path,
            f"it holds {len(per_class)} per-class models for the {classes.size} fitted classes_ {classes.tolist()}")
    first = per_class[0].fitted if per_class else {}
    for k, (name, part) in enumerate(zip(classes.tolist(), per_class)):
        where = f"{path}: the model of class {name!r}"
        check_fitted(where, part.fitted)
        require(np.array_equal(part.fitted["classes_"], [0, 1]), where,
                f"fitted classes_ {part.fitted['classes_'].tolist()} are not [0, 1] (its class or not)")
        require(part.fitted["n_features_in_"] * classes.size == fitted["n_features_in_"], where,
                f"fitted n_features_in_ is {part.fitted['n_features_in_']}, expected {fitted['n_features_in_']} / "
                f"{classes.size} (one column per classifier)")
        require(part.fitted["latent_dim_"] == first["latent_dim_"], where,
                f"fitted latent_dim_ is {part.fitted['latent_dim_']}, that of the first class {first['latent_dim_']}")
        held = [len(values["transductive_proba_"]) if "transductive_proba_" in values else None
                for values in (first, part.fitted)]
        require(held[0] == held[1], where, f"it holds the values of {held[1]} fitted instances, the model of the "
                f"first class those of {held[0]} (None: not held); every class's model holds the same or none")
        if "feature_names_in_" in fitted:
            expected = fitted["feature_names_in_"][k::classes.size]
            names = part.fitted.get("feature_names_in_")
            require(names is not None and np.array_equal(names, expected), where,
                    f"fitted feature_names_in_ {None if names is None else names.tolist()} are not the model's "
                    f"columns of its class {expected.tolist()}")


@dataclass
class ClassModel:
    """The fitted values and history of one class's binary model in a multi-class :class:`ModelContent`."""

    fitted: dict
    history: dict | None


@dataclass
class ModelContent:
    """A fitted estimator as data: its class name, parameters, fitted values and history.

    ``fitted`` maps attribute names to NumPy arrays or JSON scalars. A model
    of more than two classes has ``per_class``: one :class:`ClassModel` per
    class, in ``classes_`` order; its own ``fitted`` then follows
    :data:`MULTICLASS_SCHEMA` and it has no history.
    """

    estimator: str
    params: dict
    fitted: dict
    history: dict | None
    per_class: list | None = None


def _fitted_payload(fitted, history, prefix=""):
    """(metadata, arrays) of fitted values and a history; the members are named ``<prefix>attr/<name>``."""
    attributes, array_names, arrays, described = {}, [], {}, None
    if history is not None:
        described, history_arrays = history_payload(history, prefix)
        arrays.update(history_arrays)
    for name, value in fitted.items():
        if isinstance(value, np.ndarray):
            arrays[f"{prefix}attr/{name}"] = safe_array(value, f"attribute {name}")
            array_names.append(name)
        else:
            attributes[name] = json_scalar(value, f"attribute {name}")
    return {"attributes": attributes, "arrays": array_names, "history": described}, arrays


def write_model(path, content, *, overwrite=False):
    """Write :class:`ModelContent` to ``path`` (as given, no suffix added), atomically."""
    params, arrays = params_payload(content.params)
    fitted, fitted_arrays = _fitted_payload(content.fitted, content.history)
    arrays.update(fitted_arrays)
    metadata = {"estimator": content.estimator, "params": params, **fitted}
    if content.per_class is not None:
        metadata["per_class"] = []
        for k, part in enumerate(content.per_class):
            described, part_arrays = _fitted_payload(part.fitted, part.history, f"{PER_CLASS}{k}/")
            metadata["per_class"].append(described)
            arrays.update(part_arrays)
    write_archive(path, MODEL_FORMAT, metadata, arrays, overwrite)


def _restore_fitted(path, description, arrays, required_history, prefix=""):
    """(fitted, history) of one model's description, its members taken from ``arrays``; checked by
    :func:`check_fitted` by the caller."""
    require(isinstance(description, dict), path, "its metadata lacks the fitted values")
    history = restore_history(path, description.get("history"), arrays, required_history, prefix)
    attributes, names = description.get("attributes"), description.get("arrays")
    require(isinstance(attributes, dict) and isinstance(names, list), path, "its metadata lacks the fitted values")
    fitted = dict(attributes)
    for name in names:
        member = f"{prefix}attr/{name}"
        require(isinstance(name, str) and member in arrays and name not in fitted, path,
                f"missing member {member!r}")
        fitted[name] = arrays.pop(member)
    return fitted, history


def _check_history_length(path, fitted, history):
    if history is not None and "n_iter_" in fitted:
        lengths = {len(values) for values in history.values()}
        require(lengths <= {fitted["n_iter_"]}, path,
                f"its history has {sorted(lengths)} entries for n_iter_={fitted['n_iter_']}")


def read_model(path, known_params, required_history=()):
    """The :class:`ModelContent` of a model file, checked; ``known_params``: the estimator's parameter names.

    ``required_history``: the history entries a model (of two classes, or of one class of a
    multi-class model) must have.

    Raises
    ------
    ModelFileError
        Not a cfe_fast model file, an incompatible format version, a truncated
        or corrupt archive, pickled members, or inconsistent content.
    """
    metadata, arrays = read_archive(path, MODEL_FORMAT)
    params = restore_params(path, metadata, arrays, known_params)
    described = metadata.get("per_class")
    require(described is None or isinstance(described, list), path, "its per_class metadata is not a list")
    fitted, history = _restore_fitted(path, metadata, arrays, () if described is not None else required_history)
    per_class = None
    if described is not None:
        require(history is None, path, "a multi-class model holds its history in its per-class models")
        per_class = [ClassModel(*_restore_fitted(path, part, arrays, required_history, f"{PER_CLASS}{k}/"))
                     for k, part in enumerate(described)]
    require(not arrays, path, f"unexpected member(s) {sorted(arrays)}")
    check_fitted(path, fitted, MULTICLASS_SCHEMA if per_class is not None else SCHEMA)
    _check_history_length(path, fitted, history)
    if per_class is not None:
        check_per_class(path, fitted, per_class)
        for name, part in zip(fitted["classes_"].tolist(), per_class):
            _check_history_length(f"{path}: the model of class {name!r}", part.fitted, part.history)
    return ModelContent(metadata.get("estimator"), params, fitted, history, per_class)


__all__ = ["MODEL_FORMAT", "MULTICLASS_SCHEMA", "SCHEMA", "TRAINING_ATTRIBUTES", "ClassModel", "ModelContent",
           "ModelFileError", "read_model", "write_model"]
