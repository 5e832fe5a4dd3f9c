"""The confidence of a chunk of instances inside the kernels: a block of the stored C, or of a rule's C.

Every kernel that reads C takes it as one argument, the tuple of
:func:`kernel_confidence`, and reads the block of its chunk with
:func:`chunk_confidence`. A :class:`~cfe_fast.core.confidence.ConfidenceRule`
is evaluated there from the chunk of R being read (an element-wise formula, a
few flops per entry against the d^2 of the Grams), so C is never stored whole;
the values are those of :meth:`ConfidenceRule.block`, bit for bit.
"""

import numpy as np

from ...core.confidence import ConfidenceRule
from .common import jit

#: how a kernel gets C: the stored array, or the rule of a strategy
STORED, UNIFORM, CERTAINTY, LABEL_AWARE, CALIBRATION = range(5)
_CODES = {"uniform": UNIFORM, "certainty": CERTAINTY, "label_aware": LABEL_AWARE, "calibration": CALIBRATION}


def kernel_confidence(Ct, dtype):
    """The kernels' confidence argument ``(Ct, labels, code, alpha, quality)`` of instance-major C.

    Parameters
    ----------
    Ct : (n, m) C-contiguous array or ConfidenceRule
        The stored confidences (used as they are), or the rule of a strategy.
    dtype : numpy dtype
        Of R: the dtype of an empty stand-in for the stored array of a rule.
    """
    if isinstance(Ct, ConfidenceRule):
        quality = np.empty(0) if Ct.quality is None else np.ascontiguousarray(Ct.quality, dtype=np.float64)
        return np.empty((0, Ct.shape[0]), dtype=dtype), Ct.labels, _CODES[Ct.strategy], Ct.alpha, quality
    return Ct, np.empty(0), STORED, 0.0, np.empty(0)


@jit
def chunk_confidence(conf, Rt, s, e):
    """C (e - s, m) of the instances s <= i < e: a view of the stored array, or a new array from Rt's rows.

    The rule's arithmetic is float64 on the float64 value of r, then rounded
    to R's dtype, in the order of :func:`cfe_fast.core.confidence.confidence_chunk`.
    """
    Ct, labels, code, alpha, quality = conf
    if code == STORED:
        return Ct[s:e]
    m = Rt.shape[1]
    C = np.empty((e - s, m), dtype=Rt.dtype)
    for i in range(e - s):
        label = labels[s + i]
        aware = code == LABEL_AWARE and not np.isnan(label)
        positive = label == 1.0
        for u in range(m):
            if code == UNIFORM:
                c = 1.0
            elif code == CALIBRATION:
                c = quality[u]
            else:
                r = np.float64(Rt[s + i, u])
                c = abs(r - 0.5)
                if aware:
                    c *= 1.0 + alpha * (r if positive else 1.0 - r)
            C[i, u] = c
    return C
