"""asv benchmarks of the Numba kernels: both ALS half-steps per solver, the
fused aggregator gradient; time, peak memory and the error against the NumPy
reference (``track_``). The JIT is warmed up in ``setup`` on a tiny input."""

import numpy as np

from ._common import LAM, MANY_CLASSIFIERS, N, SHAPES, numba_kernels, problem, shape, solver_kwargs


class HalfSteps:
    """Instance and classifier half-steps, per shape, dtype and solver."""

    params = (SHAPES, ["float64", "float32"], ["auto", "dual", "primal", "cg"])
    param_names = ["m x d", "dtype", "solver"]
    timeout = 600
    number = 1
    repeat = (1, 3, 120.0)

    def setup(self, mxd, dtype, solver):
        self.nb = nb = numba_kernels()
        m, d = shape(mxd)
        self.kw = solver_kwargs(nb, solver, m, d)
        self.Rt, self.Ct, self.X, self.Yt = problem(m, d, N, np.dtype(dtype).type)
        if solver == "cg":  # warm start from the current factors, as in a fit
            self.kw_i = dict(self.kw, init=self.Yt)
            self.kw_c = dict(self.kw, init=self.X)
        else:
            self.kw_i = self.kw_c = self.kw
        small = slice(0, 64)
        nb.solve_instances(self.X, self.Rt[small], self.Ct[small], LAM, **dict(self.kw_i, **(
            {"init": self.Yt[small]} if solver == "cg" else {})))
        nb.solve_classifiers(self.Yt[small], self.Rt[small], self.Ct[small], LAM, **self.kw_c)

    def time_instance_step(self, *params):
        self.nb.solve_instances(self.X, self.Rt, self.Ct, LAM, **self.kw_i)

    def time_classifier_step(self, *params):
        self.nb.solve_classifiers(self.Yt, self.Rt, self.Ct, LAM, **self.kw_c)

    def peakmem_instance_step(self, *params):
        self.nb.solve_instances(self.X, self.Rt, self.Ct, LAM, **self.kw_i)

    def peakmem_classifier_step(self, *params):
        self.nb.solve_classifiers(self.Yt, self.Rt, self.Ct, LAM, **self.kw_c)

    def track_max_error(self, *params):
        """Largest relative error of either half-step against the reference (first 2000 instances).

        CG starts from 0 here (in a fit it starts from the previous factors).
        """
        from cfe_fast import reference as ref

        k = slice(0, 2000)
        Rt, Ct, Yt = self.Rt[k], self.Ct[k], self.Yt[k]
        fast_y = self.nb.solve_instances(self.X, Rt, Ct, LAM, **self.kw)
        fast_x = self.nb.solve_classifiers(Yt, Rt, Ct, LAM, **self.kw)
        exact_y = ref.update_instance_factors(self.X, Rt.T, Ct.T, LAM).T
        exact_x = ref.update_classifier_factors(Yt.T, Rt.T, Ct.T, LAM)
        return max(
            float(np.linalg.norm(fast_y - exact_y) / np.linalg.norm(exact_y)),
            float(np.linalg.norm(fast_x - exact_x) / np.linalg.norm(exact_x)),
        )

    track_max_error.unit = "relative error"


class Aggregator:
    """The fused aggregator loss + gradient (+ Hessian) over the labeled instances."""

    params = (["10x20", "100x64"], [False, True])
    param_names = ["m x d", "hessian"]
    number = 1
    repeat = (1, 5, 60.0)

    def setup(self, mxd, hessian):
        from cfe_fast.core.losses import class_weights

        self.nb = nb = numba_kernels()
        m, d = shape(mxd)
        _, _, self.X, self.Yt = problem(m, d, N, np.float64)
        rng = np.random.default_rng(1)
        self.y = (rng.random(N) < 0.2).astype(float)
        self.omega = class_weights(self.y)
        self.w = rng.normal(size=m)
        nb.aggregator_terms_t(self.X, self.Yt[:64], self.y[:64], self.omega[:64], self.w, 0.1, hessian=hessian)

    def time_aggregator_terms(self, mxd, hessian):
        self.nb.aggregator_terms_t(self.X, self.Yt, self.y, self.omega, self.w, 0.1, hessian=hessian)

    def peakmem_aggregator_terms(self, mxd, hessian):
        self.nb.aggregator_terms_t(self.X, self.Yt, self.y, self.omega, self.w, 0.1, hessian=hessian)


class ManyClassifiers:
    """Thousands of classifiers, float32 in memory: both half-steps (``solver="auto"``) and the
    classifier Gram build alone, at the n of ``MANY_CLASSIFIERS``; error against the reference."""

    params = (list(MANY_CLASSIFIERS),)
    param_names = ["m x d"]
    timeout = 1200
    number = 1
    repeat = (1, 2, 300.0)

    def setup(self, mxd):
        self.nb = nb = numba_kernels()
        m, d = shape(mxd)
        self.Rt, self.Ct, self.X, self.Yt = problem(m, d, MANY_CLASSIFIERS[mxd], np.float32)
        small = slice(0, 64)
        nb.solve_instances(self.X, self.Rt[small], self.Ct[small], LAM)
        nb.solve_classifiers(self.Yt[small], self.Rt[small], self.Ct[small], LAM)

    def time_instance_step(self, mxd):
        self.nb.solve_instances(self.X, self.Rt, self.Ct, LAM)

    def time_classifier_step(self, mxd):
        self.nb.solve_classifiers(self.Yt, self.Rt, self.Ct, LAM)

    def time_classifier_grams(self, mxd):
        self.nb.classifier_sums(self.Yt, self.Rt, self.Ct)

    def peakmem_classifier_step(self, mxd):
        self.nb.solve_classifiers(self.Yt, self.Rt, self.Ct, LAM)

    def track_max_error(self, mxd):
        """Largest relative error of either float32 half-step against the float64 reference (first 200 instances)."""
        from cfe_fast import reference as ref

        k = slice(0, 200)
        Rt, Ct, Yt = self.Rt[k], self.Ct[k], self.Yt[k]
        exact_y = ref.update_instance_factors(self.X, Rt.T, Ct.T, LAM).T
        exact_x = ref.update_classifier_factors(Yt.T, Rt.T, Ct.T, LAM)
        return max(
            float(np.linalg.norm(self.nb.solve_instances(self.X, Rt, Ct, LAM) - exact_y) / np.linalg.norm(exact_y)),
            float(np.linalg.norm(self.nb.solve_classifiers(Yt, Rt, Ct, LAM) - exact_x) / np.linalg.norm(exact_x)),
        )

    track_max_error.unit = "relative error"
