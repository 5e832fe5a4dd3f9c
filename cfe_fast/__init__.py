"""cfe_fast: fast CF-Ensemble -- combine many classifiers' probabilities.

The classifiers x instances probability matrix is factorised by
confidence-weighted ALS and a class-weighted aggregator reads the prediction
off the reconstruction. The math contract is docs/method.md.
"""

from importlib.metadata import PackageNotFoundError, version

from .backends import BACKENDS
from .datasets import make_ensemble
from .errors import CollapseWarning, QualityWarning, SingularSystemError
from .estimator import CFEnsembleClassifier, load_model, save_model
from .io.archive import ModelFileError
from .kernels import aggregator_loss_grad, update_classifier_factors, update_instance_factors
from .scoring import labeled_scorer
from .stacking import prediction_matrix

try:
    __version__ = version("cfe_fast")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

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
