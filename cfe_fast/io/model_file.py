"""Model files that cannot run code: what a fitted estimator is, in a safe archive.

Format (``format_version`` 1, an archive of :mod:`.archive` with format name
"cfe_fast.model"): the metadata holds ``estimator`` (class name), ``params``
(every ``get_params()`` value; an array parameter such as a user confidence
matrix appears as ``{"__array__": member}``), ``attributes`` (fitted
scalars, e.g. ``intercept_``, ``n_iter_``, ``aggregator_``), ``arrays`` (the
names of the fitted array attributes) and ``history`` (key order and, per
key, whether its entries are scalars or vectors); the members
``param/<name>``, ``attr/<name>`` and ``history/<key>`` hold the arrays.

Reading checks the format name and version, refuses pickled (object)
members, unknown members, unknown parameters, and missing or inconsistent
fitted arrays, and reports a truncated or corrupt archive as such; every
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

#: Fitted arrays that predict_proba needs: name -> shape in terms of m, d, n.
REQUIRED_ARRAYS = {
    "classifier_factors_": ("d", "m"),
    "coef_": ("m",),
    "classes_": (2,),
}
OPTIONAL_ARRAYS = {
    "instance_factors_": ("d", "n"),
    "transductive_proba_": ("n",),
    "classifier_quality_": ("m",),
    "score_quantiles_": ("q", "m"),
}
REQUIRED_SCALARS = ("intercept_", "n_features_in_", "latent_dim_", "aggregator_")
#: dtype kinds of the fitted arrays: numbers, except the class labels (numbers, booleans or text)
ARRAY_KINDS = {"classes_": "biufU"}


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


def _check_fitted_arrays(path, attributes, arrays):
    """Shapes and dtypes of the fitted arrays against m, d and n."""
    for name in REQUIRED_SCALARS:
        require(name in attributes, path, f"missing fitted attribute {name}")
    sizes = {"m": attributes["n_features_in_"], "d": attributes["latent_dim_"], 2: 2}
    if "instance_factors_" in arrays:
        sizes["n"] = arrays["instance_factors_"].shape[-1]
    if "score_quantiles_" in arrays:
        sizes["q"] = max(2, arrays["score_quantiles_"].shape[0])
    for name, dims in {**REQUIRED_ARRAYS, **OPTIONAL_ARRAYS}.items():
        if name not in arrays:
            require(name not in REQUIRED_ARRAYS, path, f"missing fitted array {name}")
            continue
        arr = arrays[name]
        expected = tuple(sizes.get(dim) for dim in dims)
        require(arr.shape == expected, path, f"fitted array {name} has shape {arr.shape}, expected {expected}")
        kinds = ARRAY_KINDS.get(name, "fi")
        require(arr.dtype.kind in kinds, path, f"fitted array {name} has dtype {arr.dtype}, expected "
                                               f"{'labels' if name in ARRAY_KINDS else 'numbers'}")
    if "score_quantiles_" in arrays:
        quantiles = arrays["score_quantiles_"]
        require(bool(np.isfinite(quantiles).all() and (np.diff(quantiles, axis=0) >= 0).all()), path,
                "fitted array score_quantiles_ is not finite and non-decreasing down each column")
    if "feature_names_in_" in arrays:
        names = arrays["feature_names_in_"]
        require(names.dtype.kind == "U" and names.shape == (sizes["m"],), path,
                f"fitted array feature_names_in_ has dtype {names.dtype} and shape {names.shape}, expected "
                f"{sizes['m']} names")


def read_model(path, known_params):
    """The :class:`ModelContent` of a model file, checked; ``known_params``: the estimator's parameter names.

    Raises
    ------
    ModelFileError
        Not a cfe_fast model file, an incompatible format version, a truncated
        or corrupt archive, pickled members, or inconsistent content.
    """
    metadata, arrays = read_archive(path, MODEL_FORMAT)
    params = restore_params(path, metadata, arrays, known_params)
    history = restore_history(path, metadata.get("history"), arrays)
    fitted = {}
    for name in metadata.get("arrays", []):
        member = f"attr/{name}"
        require(member in arrays, path, f"missing member {member!r}")
        fitted[name] = arrays.pop(member)
    require(not arrays, path, f"unexpected member(s) {sorted(arrays)}")
    attributes = metadata.get("attributes", {})
    _check_fitted_arrays(path, attributes, fitted)
    return ModelContent(metadata.get("estimator"), params, {**attributes, **fitted}, history)


__all__ = ["MODEL_FORMAT", "ModelContent", "ModelFileError", "read_model", "write_model"]
