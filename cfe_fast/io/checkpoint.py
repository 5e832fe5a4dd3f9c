"""Checkpoint / resume of a fit, in the safe archive format of :mod:`.archive`.

The whole state of the training loop after iteration k is (Y, X, w, b,
history, previous loss, k) plus the trainer's own arrays (Adam moments for the
"joint" trainer and the "adam" aggregator solver): the random generator is only
used to initialise Y.
A checkpoint stores that state, every parameter of the estimator and a SHA-256
digest of the data (of a sparse P, of its stored entries), so a resumed fit refuses other data or other parameters
and continues bit-identically (``max_iter`` and ``verbose`` may differ).
"""

import hashlib

import numpy as np

from .._validation import check_positive_int
from ..core.sparse import is_sparse
from ..training.loop import LOSSES
from ..training.state import FitState
from .archive import ModelFileError, history_payload, params_payload, read_archive, restore_history, write_archive

CHECKPOINT_FORMAT = "cfe_fast.checkpoint"
#: Parameters that may change between the interrupted and the resumed fit.
RESUMABLE_CHANGES = ("max_iter", "verbose")


def data_digest(P, labels):
    """SHA-256 of the probability matrix (with its shape and dtype) and the labels.

    A checked sparse P (canonical CSR, :func:`~cfe_fast.core.sparse.check_sparse_probabilities`) is hashed
    by its stored entries, never densified: its pointers and column indices (as int64, so the index dtype
    does not matter) and values, after a marker that tells it from a dense P of the same values (the sparse
    and dense kernels round differently, so one's checkpoint does not resume the other).
    """
    digest = hashlib.sha256()
    digest.update(f"{P.shape}{P.dtype.str}".encode())
    if is_sparse(P):
        digest.update(b"csr")
        for part in (P.indptr.astype(np.int64), P.indices.astype(np.int64), P.data):
            digest.update(np.ascontiguousarray(part).data)
    else:
        digest.update(np.ascontiguousarray(P).data)
    digest.update(np.ascontiguousarray(labels, dtype=np.float64).data)
    return digest.hexdigest()


def _comparable_params(parameters):
    params, arrays = params_payload(parameters)
    for name in RESUMABLE_CHANGES:
        params.pop(name, None)
    return params, arrays


class Checkpointer:
    """Writes the fit state to ``path`` every ``every`` iterations (atomically replaced).

    ``parameters``: the estimator's ``get_params()``, stored so that a resume
    can refuse other parameters.
    """

    def __init__(self, path, every, P, labels, parameters):
        self.path = path
        self.every = check_positive_int(every, "checkpoint_every")
        self.digest = data_digest(P, labels)
        self.parameters = parameters

    def __call__(self, iteration, make_state):
        """Write the state ``make_state()`` of ``iteration`` if it is a multiple of ``every``."""
        if iteration % self.every:
            return
        state = make_state()
        params, arrays = params_payload(self.parameters)
        history, history_arrays = history_payload(state.history)
        arrays.update(history_arrays)
        arrays.update({"state/X": state.X, "state/Y": state.Y, "state/w": state.w})
        arrays.update({f"trainer/{key}": value for key, value in state.trainer.items()})
        metadata = {
            "params": params,
            "history": history,
            "data_digest": self.digest,
            "iteration": state.iteration,
            "previous": state.previous,
            "b": float(state.b),
        }
        write_archive(self.path, CHECKPOINT_FORMAT, metadata, arrays, overwrite=True)


def read_checkpoint(path, parameters, P, labels):
    """The :class:`~cfe_fast.training.state.FitState` stored in ``path``, checked against
    the estimator's ``get_params()`` ``parameters`` and the data."""
    metadata, arrays = read_archive(path, CHECKPOINT_FORMAT)
    if metadata.get("data_digest") != data_digest(P, labels):
        raise ModelFileError(f"{path} is a checkpoint of a fit on other data (or other labels); cannot resume")
    mine, my_arrays = _comparable_params(parameters)
    saved = {name: value for name, value in metadata.get("params", {}).items() if name not in RESUMABLE_CHANGES}
    differ = sorted(
        name for name in set(mine) | set(saved)
        if mine.get(name) != saved.get(name)
        or not np.array_equal(my_arrays.get(f"param/{name}"), arrays.get(f"param/{name}"))
    )
    if differ:
        raise ModelFileError(f"{path} was written with other values of {differ}; cannot resume with these parameters")
    try:
        state = FitState(
            Y=arrays["state/Y"], X=arrays["state/X"], w=arrays["state/w"], b=float(metadata["b"]),
            history=restore_history(path, metadata["history"], arrays, LOSSES),
            iteration=int(metadata["iteration"]), previous=metadata["previous"],
            trainer={key[len("trainer/"):]: value for key, value in arrays.items() if key.startswith("trainer/")},
        )
    except KeyError as error:
        raise ModelFileError(f"{path}: incomplete checkpoint, missing {error}") from None
    except (TypeError, ValueError) as error:
        raise ModelFileError(f"{path}: malformed checkpoint ({error})") from None
    d = parameters["latent_dim"] if parameters["latent_dim"] is not None else state.Y.shape[0]
    if state.Y.shape != (d, P.shape[0]) or state.X.shape != (d, P.shape[1]) or state.w.shape != (P.shape[1],):
        raise ModelFileError(f"{path}: checkpoint arrays do not match the data's shape {P.shape}")
    if not all(np.isfinite(a).all() for a in (state.Y, state.X, state.w, state.b)):
        raise ModelFileError(f"{path}: the checkpoint's factors or weights hold NaN or infinite values")
    if state.iteration > parameters["max_iter"]:
        raise ModelFileError(
            f"{path} is at iteration {state.iteration}, beyond max_iter={parameters['max_iter']}; "
            f"use max_iter >= {state.iteration} to resume it"
        )
    return state
