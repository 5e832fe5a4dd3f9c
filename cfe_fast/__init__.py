"""cfe_fast: fast CF-Ensemble -- combine many classifiers' probabilities.

The classifiers x instances probability matrix is factorised by
confidence-weighted ALS and a class-weighted aggregator reads the prediction
off the reconstruction. The math contract is docs/method.md.

The public names are imported when first used (``cfe_fast.CFEnsembleClassifier``
loads scikit-learn then), so ``import cfe_fast`` itself stays quick.
"""

import importlib
from importlib.metadata import PackageNotFoundError, version

from .backends import BACKENDS
from .errors import CollapseWarning, QualityWarning, SingularSystemError

try:
    __version__ = version("cfe_fast")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

#: public name -> the module that defines it, imported on first use
_LAZY = {
    "CFEnsembleClassifier": ".estimator",
    "load_model": ".estimator",
    "save_model": ".estimator",
    "make_ensemble": ".datasets",
    "ModelFileError": ".io.archive",
    "aggregator_loss_grad": ".kernels",
    "update_classifier_factors": ".kernels",
    "update_instance_factors": ".kernels",
    "labeled_scorer": ".scoring",
    "prediction_matrix": ".stacking",
}


def __getattr__(name):
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "BACKENDS",
    "CFEnsembleClassifier",
    "CollapseWarning",
    "ModelFileError",
    "QualityWarning",
    "SingularSystemError",
    "aggregator_loss_grad",
    "labeled_scorer",
    "load_model",
    "make_ensemble",
    "prediction_matrix",
    "save_model",
    "update_classifier_factors",
    "update_instance_factors",
]
