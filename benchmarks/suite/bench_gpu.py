"""asv benchmarks of the CuPy backend on a GPU.

Every ``setup`` raises ``NotImplementedError`` where CuPy or a CUDA device is
missing, so asv skips these benchmarks there. Every timed method ends with a
device synchronisation, so the time covers the GPU work, not just its launch.
The data helpers are those of ``scripts/gpu_sweep.py`` (loaded by path, so
this file works however asv imports the suite).
"""

import importlib.util
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location("_cfe_gpu_sweep", Path(__file__).parents[1] / "scripts" / "gpu_sweep.py")
gpu_sweep = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_sweep)

N = 10**6


def _gpu():
    """(the CuPy backend's kernels module, cupy); NotImplementedError (asv: skip) without a GPU."""
    from cfe_fast.backends.cupy import arrays, kernels

    cupy = arrays.gpu_module()
    if cupy is None:
        raise NotImplementedError("CuPy with a CUDA device is needed")
    return kernels, cupy


class GpuHalfSteps:
    """ALS half-steps at n = 1e6: data on the device, or streamed from host memory."""

    params = (["100x64", "10x20"], ["float32", "float64"], ["device", "streamed"])
    param_names = ["m x d", "dtype", "data"]
    timeout = 300

    def setup(self, shape, dtype, data):
        self.cb, self.cupy = _gpu()
        m, d = (int(v) for v in shape.split("x"))
        X, Y, R, C = gpu_sweep.problem(self.cupy, m, d, N, dtype)
        if data == "streamed":
            Y, R, C = (self.cupy.asnumpy(a) for a in (Y, R, C))
        self.X, self.Y, self.R, self.C = X, Y, R, C
        gpu_sweep._sweep(self.cupy, Y[:, :1024], R[:, :1024], C[:, :1024])  # warm caches, plans

    def _sync(self):
        self.cupy.cuda.Device().synchronize()

    def time_sweep(self, shape, dtype, data):
        gpu_sweep._sweep(self.cupy, self.Y, self.R, self.C)
        self._sync()

    def time_instance_step(self, shape, dtype, data):
        self.cb.update_instance_factors(self.X, self.R, self.C, 0.1, xp=self.cupy)
        self._sync()

    def time_classifier_step(self, shape, dtype, data):
        self.cb.update_classifier_factors(self.Y, self.R, self.C, 0.1, xp=self.cupy)
        self._sync()

    def time_reconstruction_loss(self, shape, dtype, data):
        self.cb.reconstruction_loss(self.X, self.Y, self.R, self.C, 0.1, xp=self.cupy)
        self._sync()


class GpuAggregator:
    """Fused aggregator pass over 1e6 labeled instances (d = 64, m = 100)."""

    params = ([False, True],)
    param_names = ["hessian"]

    def setup(self, hessian):
        self.cb, self.cupy = _gpu()
        X, Y, _, _ = gpu_sweep.problem(self.cupy, 100, 64, N, "float32")
        self.X, self.Y = X, Y
        self.y = (self.cupy.arange(N) % 7 == 0).astype(np.float64)
        self.omega = self.cupy.ones(N)
        self.w = np.full(100, 0.01)

    def time_aggregator_terms(self, hessian):
        self.cb.aggregator_terms(self.X, self.Y, self.y, self.omega, self.w, 0.0, hessian=hessian, xp=self.cupy)
        self.cupy.cuda.Device().synchronize()


class GpuGemm:
    """The device's measured cuBLAS GEMM rate: the yardstick of the Gram build."""

    params = (["float32", "float64"],)
    param_names = ["dtype"]
    unit = "GFLOP/s"

    def setup(self, dtype):
        self.cb, self.cupy = _gpu()

    def track_gemm_rate(self, dtype):
        return gpu_sweep.gemm_rate(self.cupy, dtype, 8192, 3) / 1e9  # synchronises around every call

    def track_gram_rate_100x64(self, dtype):
        X, Y, _, C = gpu_sweep.problem(self.cupy, 100, 64, N, dtype)
        seconds, flops = gpu_sweep.gram_seconds(self.cupy, X, Y, C, 3)
        return flops / seconds / 1e9
