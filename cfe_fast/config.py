"""Tunables of the kernels, in one place.

Every value here changes speed or memory only, never results beyond the
order of floating-point sums that the docstrings name. The kernels read them
at call time, so a setting made here (``cfe_fast.config.NAME = value``)
applies to the next call. The measurements behind the defaults are in
``benchmarks/results/``.
"""

import os

# ----------------------------------------------------------------- float64 blocks
#: bytes of one float64 block when float32 factors are reduced or converted in
#: float64 (monitors, final probabilities, initial factors): bounds the
#: temporary memory of a float32 fit
FLOAT64_BLOCK_BYTES = 4 * 1024 * 1024

# ------------------------------------------------------------------ the aggregator
#: labeled instances the cross-validation of aggregator_prior="auto" uses at most (a
#: stratified sample beyond): its compute and memory stay bounded whatever n_labeled
PRIOR_CV_INSTANCES = 10_000

# ---------------------------------------------------------------------- the report
#: instances the report's cross-validated comparison refits on at most (a random sample
#: beyond): its K refits stay quick whatever the size of the data
REPORT_CV_INSTANCES = 20_000

# --------------------------------------------------------------------- Numba (CPU)
#: bytes of packed float64 systems factorised together (about the L2 cache)
SYSTEMS_BYTES = 1024 * 1024
#: instances per partial sum of the classifier Grams
GRAM_CHUNK = 256
#: bytes of the packed outer products y_i y_i^T one classifier-Gram GEMM reads (in L2)
GRAM_BLOCK_BYTES = 512 * 1024
#: instances per partial sum of a reduction over instances (losses, gradients)
REDUCE_CHUNK = 1024
#: parallel tasks of the classifier-step reductions, each a contiguous run of chunks
#: with one partial sum: a fixed number, so results do not depend on the thread count
REDUCE_BLOCKS = 32
#: kernels estimated below this many flops run on one thread (a parallel region
#: costs a thread wake-up; two threads break even near this size)
PARALLEL_MIN_FLOPS = 2e6
#: conjugate-gradient steps per half-step of solver="cg"
CG_STEPS = 3
#: the Numba instance step takes the dual m x m form while m <= DUAL_MAX_RATIO * d
DUAL_MAX_RATIO = 1.2
#: OpenMP wait policy set for Numba's threading layer unless the user set one:
#: spinning idle threads take the cores from the working ones on a busy machine
OMP_WAIT_POLICY = "PASSIVE"

# ----------------------------------------------------------------------- CuPy (GPU)
#: working memory of one chunk of instances, by array module (bytes)
CHUNK_BYTES = {"numpy": 64 * 2**20, "cupy": 2 * 2**30}
#: share of free device memory that the data may fill to stay on the GPU across iterations
DEVICE_FRACTION = 0.5

# ------------------------------------------------------------------------ files
#: the most bytes one member of an .npz file (input table, model, checkpoint) may
#: decompress to; checked from the member's header before anything is decompressed
NPZ_MEMBER_MAX_BYTES = 8 * 2**30

# ----------------------------------------------------------------------------- Dask
#: partial sums added per task of the tree reduction
DASK_SPLIT_EVERY = 8
#: bytes of one chunk of P when a NumPy array is split for the cluster
DASK_CHUNK_BYTES = 64 * 2**20
#: instances the collapse monitors look at under Dask (a fixed sample)
DASK_MONITOR_SAMPLE = 100_000


def apply_openmp_wait_policy():
    """Set ``OMP_WAIT_POLICY`` for Numba's OpenMP layer unless the user has set it.

    Called when the Numba backend is first used, before its threading layer
    loads; ``import cfe_fast`` changes no environment variable.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", OMP_WAIT_POLICY)
