"""The math every backend shares, written once and free of any backend.

:mod:`~cfe_fast.core.confidence` (the confidence strategies),
:mod:`~cfe_fast.core.losses` (class weights, per-instance loss terms, the
aggregator terms assembled from sums, the normalised reconstruction loss).
The functions take an array module ``xp`` where NumPy and CuPy share them.
The NumPy reference (:mod:`cfe_fast.reference`) writes the same formulas
again on its own, as the independent oracle the tests compare with.
"""
