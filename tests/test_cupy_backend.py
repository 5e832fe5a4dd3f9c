"""The CuPy backend against the NumPy reference.

Every comparison runs in three modes: "numpy" (the array-module-generic code
with NumPy as the module: runs everywhere, so CI covers the logic), and, marked
``gpu`` and skipped cleanly without CuPy or a CUDA device, "device" (CuPy
arrays, device-resident) and "streamed" (NumPy arrays streamed to the GPU in
chunks through pinned memory). Tolerances: relative error <= 1e-10 in float64
and <= 1e-4 in float32 (against the reference on the same float32 inputs).
"""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cfe_fast
from cfe_fast import CFEnsembleClassifier, SingularSystemError
from cfe_fast import reference as ref
from cfe_fast.backends import get_backend
from cfe_fast.backends.cupy import arrays, kernels, solve
from cfe_fast.core.losses import sample_loss_terms
from conftest import aggregator_case, random_problem, rel_error

TOL = {np.float64: 1e-10, np.float32: 1e-4}
EDGE_SHAPES = [  # (m, n, d): m=1, d=1, n=1, d > m (dual form), d < m, d = m
    (1, 7, 1), (1, 5, 3), (4, 1, 2), (3, 9, 1), (3, 25, 6), (12, 40, 4), (5, 30, 5), (2, 3000, 9),
]
NO_GPU = "needs CuPy and a CUDA device"


@pytest.fixture(params=[
    pytest.param("numpy", id="numpy"),
    pytest.param("device", marks=pytest.mark.gpu, id="cupy-device"),
    pytest.param("streamed", marks=pytest.mark.gpu, id="cupy-streamed"),
])
def mode(request):
    if request.param != "numpy" and arrays.gpu_module() is None:
        pytest.skip(NO_GPU)
    return request.param


def place(mode, *arrays):
    """The arrays and the array module of a mode."""
    if mode == "numpy":
        return arrays, np
    cupy = arrays.gpu_module()
    return (tuple(cupy.asarray(a) for a in arrays) if mode == "device" else arrays), cupy


def host(a, mode):
    """Result on the host, checking it came back where the mode says."""
    assert (arrays.array_module(a) is np) == (mode != "device")
    return arrays.to_host(a)


# ----------------------------------------------------------- half-steps
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("m,n,d", EDGE_SHAPES)
@pytest.mark.parametrize("zero_conf,extremes", [(0.0, 0.0), (0.3, 0.2)])
def test_half_steps_match_reference(mode, m, n, d, dtype, zero_conf, extremes):
    X, Y, R, C = random_problem(m, n, d, seed=m * 100 + n + d, dtype=dtype, zero_conf=zero_conf, extremes=extremes)
    (Xd, Yd, Rd, Cd), xp = place(mode, X, Y, R, C)
    Y_fast = host(kernels.update_instance_factors(Xd, Rd, Cd, 0.5, xp=xp), mode)
    X_fast = host(kernels.update_classifier_factors(Yd, Rd, Cd, 0.5, xp=xp), mode)
    assert Y_fast.dtype == dtype and X_fast.dtype == dtype
    assert Y_fast.shape == (d, n) and X_fast.shape == (d, m)
    assert rel_error(Y_fast, ref.update_instance_factors(X, R, C, 0.5)) < TOL[dtype]
    assert rel_error(X_fast, ref.update_classifier_factors(Y, R, C, 0.5)) < TOL[dtype]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("m,d", [(6, 3), (2, 5)])  # primal and dual instance step
def test_results_do_not_depend_on_chunking(mode, m, d, dtype):
    X, Y, R, C = random_problem(m, 53, d, seed=5, dtype=dtype, zero_conf=0.2)
    (Xd, Yd, Rd, Cd), xp = place(mode, X, Y, R, C)
    results = [
        (host(kernels.update_instance_factors(Xd, Rd, Cd, 0.3, xp=xp, chunk=chunk), mode),
         host(kernels.update_classifier_factors(Yd, Rd, Cd, 0.3, xp=xp, chunk=chunk), mode),
         kernels.reconstruction_loss(Xd, Yd, Rd, Cd, 0.3, xp=xp, chunk=chunk))
        for chunk in (None, 1, 7, 53, 1000)
    ]
    for Y_c, X_c, loss in results[1:]:
        assert rel_error(Y_c, results[0][0]) < TOL[dtype]
        assert rel_error(X_c, results[0][1]) < TOL[dtype]
        assert abs(loss - results[0][2]) <= TOL[dtype] * results[0][2]


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(1, 12), n=st.integers(1, 60), d=st.integers(1, 10),
    lam=st.floats(0.05, 10.0), seed=st.integers(0, 2**32 - 1), chunk=st.sampled_from([None, 1, 4, 17]),
    zero_conf=st.sampled_from([0.0, 0.5]), extremes=st.sampled_from([0.0, 0.3]),
    dtype=st.sampled_from([np.float64, np.float32]),
)
def test_half_steps_match_reference_property(m, n, d, lam, seed, chunk, zero_conf, extremes, dtype):
    X, Y, R, C = random_problem(m, n, d, seed=seed, dtype=dtype, zero_conf=zero_conf, extremes=extremes)
    Y_fast = kernels.update_instance_factors(X, R, C, lam, xp=np, chunk=chunk)
    X_fast = kernels.update_classifier_factors(Y, R, C, lam, xp=np, chunk=chunk)
    assert rel_error(Y_fast, ref.update_instance_factors(X, R, C, lam)) < TOL[dtype]
    assert rel_error(X_fast, ref.update_classifier_factors(Y, R, C, lam)) < TOL[dtype]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_zero_confidence_instance_with_ridge_gives_zero_factor(mode, dtype):
    X, _, R, C = random_problem(4, 6, 3, dtype=dtype)
    C[:, 2] = 0.0
    (Xd, Rd, Cd), xp = place(mode, X, R, C)
    Y = host(kernels.update_instance_factors(Xd, Rd, Cd, 0.1, xp=xp), mode)
    np.testing.assert_array_equal(Y[:, 2], 0.0)
    assert rel_error(Y, ref.update_instance_factors(X, R, C, 0.1)) < TOL[dtype]


# ------------------------------------------------------ singular systems
def test_singular_systems_are_reported_by_index(mode):
    X, Y, R, C = random_problem(3, 8, 2)
    X[:, 0] = X[:, 1]  # lam = 0: a 2-d system from classifiers 0 and 1 alone has rank 1
    C[:] = 1.0
    C[2, 5] = 0.0  # instance 5 sees only classifiers 0 and 1
    (Xd, Rd, Cd), xp = place(mode, X, R, C)
    for chunk in (None, 2):
        with pytest.raises(SingularSystemError, match="instance 5 "):
            kernels.update_instance_factors(Xd, Rd, Cd, 0.0, xp=xp, chunk=chunk)
    C[:] = 1.0
    C[1] = 0.0  # classifier 1 has no confidence anywhere
    (Yd, Rd, Cd), xp = place(mode, Y, R, C)
    with pytest.raises(SingularSystemError, match="classifier 1 "):
        kernels.update_classifier_factors(Yd, Rd, Cd, 0.0, xp=xp)


def test_tiny_positive_pivot_counts_as_singular():
    A = np.array([[[4.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [1.0, 1.0 + 1e-14]]])  # pivot 1e-14 <= PIVOT_RTOL
    solution, failed = solve.spd_solve(A, np.ones((2, 2)), np)
    assert failed.tolist() == [False, True]
    np.testing.assert_allclose(solution[0], [0.25, 1.0])
    assert np.all(np.isfinite(solution))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", [1, 2, 7, 20, 64, 65])  # 65: past the CUDA kernel, the library path
def test_packed_spd_solve_matches_dense_solve(mode, k, dtype):
    if mode == "streamed":
        pytest.skip("packed_spd_solve takes arrays where it computes")
    rng = np.random.default_rng(k)
    nb = 37
    M = rng.standard_normal((nb, k, 2 * k))
    A = M @ M.transpose(0, 2, 1) / (2 * k) + 0.5 * np.eye(k)  # condition number below ~20
    B = rng.standard_normal((nb, k))
    v = np.arange(k) % 3 + 1.0
    A[5] = np.outer(v, v) if k > 1 else 0.0  # exactly rank one in float32 too: singular without lam
    A[9, 0, 0] = np.nan
    A = A.astype(dtype).astype(np.float64)  # the systems exactly as the solver receives them
    rows, cols = np.tril_indices(k)
    (G, Bd), xp = place(mode, A[:, rows, cols].astype(dtype), B)
    for lam in (0.0, 0.4):
        solution, failed = solve.packed_spd_solve(G, Bd, lam, xp)
        solution, failed = arrays.to_host(solution), arrays.to_host(failed)
        assert solution.dtype == np.float64 and solution.shape == (nb, k)
        assert np.flatnonzero(failed).tolist() == ([5, 9] if lam == 0.0 else [9])
        assert np.all(np.isfinite(solution))
        ok = ~failed
        expected = np.linalg.solve(A[ok] + lam * np.eye(k), B[ok][..., None])[..., 0]
        assert rel_error(solution[ok], expected) < 1e-10


def test_solve_kernel_launch_fits_every_k(monkeypatch):
    """For every k the kernel takes: static shared memory under 48 KiB, at most 1024 threads,
    (k + 1) / 2 threads per system, and a register cap the SM can hold (checked without a GPU)."""
    fake = type("cupy", (), {"RawKernel": staticmethod(lambda code, name: code)})
    monkeypatch.setattr(solve, "gpu_module", lambda: fake)
    solve._packed_solve_kernel.cache_clear()
    try:
        for k in range(1, solve._KERNEL_MAX_K + 1):
            code, systems, threads = solve._packed_solve_kernel(k, np.float32)
            defines = dict(line.split()[1:] for line in code.splitlines() if line.startswith("#define ") and
                           line.split()[1] in ("K", "SYSTEMS", "MIN_BLOCKS"))
            assert int(defines["K"]) == k and int(defines["SYSTEMS"]) == systems
            assert threads == systems * ((k + 1) // 2) <= 1024
            shared = systems * (8 * (k * (k + 1) // 2 + 5 * k) + 4)  # the kernel's __shared__ arrays
            assert shared <= 48 * 1024
            assert int(defines["MIN_BLOCKS"]) * threads * (2 * k + 40) <= solve._REGISTERS_PER_SM or k <= 32
    finally:
        solve._packed_solve_kernel.cache_clear()


def test_pivot_rule_holds_whatever_a_failed_factorisation_left():
    """cuSOLVER does not raise: a factor may stop at the failing column j and keep A there."""
    A = np.array([[[1.0, 2.0], [2.0, 1.0]]])  # indefinite: pivot of column 1 is 1 - 4 < 0
    for left_behind in (1.0, -3.0, 2.0):  # A_11, the raw pivot, an arbitrary positive value
        L = np.array([[[1.0, 0.0], [2.0, left_behind]]])
        assert solve.pivot_failures(A, L, np).tolist() == [True]
    assert solve.pivot_failures(A, np.full_like(A, np.nan), np).tolist() == [True]
    good = np.array([[[4.0, 2.0], [2.0, 5.0]]])
    assert solve.pivot_failures(good, np.linalg.cholesky(good), np).tolist() == [False]


# ------------------------------------------------------------ losses
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("m,n,d", [(6, 50, 3), (3, 2500, 5), (1, 3, 1)])
def test_reconstruction_loss_matches_reference(mode, m, n, d, dtype):
    X, Y, R, C = random_problem(m, n, d, seed=7, dtype=dtype, zero_conf=0.2)
    (Xd, Yd, Rd, Cd), xp = place(mode, X, Y, R, C)
    expected = ref.reconstruction_loss(X, Y, R, C, 0.2)
    for chunk in (None, 3):
        assert abs(kernels.reconstruction_loss(Xd, Yd, Rd, Cd, 0.2, xp=xp, chunk=chunk) - expected) <= TOL[dtype] * expected


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("m,n,d", [(6, 50, 3), (3, 40, 5), (1, 3, 1)])
def test_instance_step_loss_matches_reference(mode, m, n, d, dtype):
    X, _, R, C = random_problem(m, n, d, seed=8, dtype=dtype, zero_conf=0.2)
    (Xd, Rd, Cd), xp = place(mode, X, R, C)
    for chunk in (None, 7):
        Y, loss = kernels.update_instance_factors(Xd, Rd, Cd, 0.2, xp=xp, chunk=chunk, with_loss=True)
        Y = host(Y, mode)
        assert rel_error(Y, ref.update_instance_factors(X, R, C, 0.2)) < TOL[dtype]
        assert abs(loss - ref.reconstruction_loss(X, Y, R, C, 0.2)) <= TOL[dtype] * loss


@pytest.mark.parametrize("gamma,variant", [(0.0, "exact"), (2.0, "exact"), (0.5, "exact"), (1.5, "weighted_bce")])
def test_sample_terms_match_reference(gamma, variant):
    """The shared loss terms through the array-module path CuPy takes (NumPy's: tests/test_core.py)."""
    xp = _StandInCupy()
    z = np.concatenate([np.linspace(-40, 40, 161), [-700.0, 700.0, 0.0]])
    for label in (0.0, 1.0):
        y = np.full(z.size, label)
        expected = ref.sample_loss_terms(z, y, gamma, variant)
        for actual, wanted in zip(sample_loss_terms(z, y, gamma, variant, xp), expected):
            np.testing.assert_allclose(np.asarray(actual), wanted, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("gamma,variant", [(0.0, "exact"), (2.0, "exact"), (1.5, "weighted_bce")])
@pytest.mark.parametrize("n_labeled", [1, 37, 2600])
def test_fused_aggregator_matches_reference(mode, gamma, variant, n_labeled, dtype):
    X, Y, y, omega, w, b = aggregator_case(n_labeled, dtype)
    slow = ref.aggregator_terms(X, Y, y, omega, w, b, gamma, variant, hessian=True)
    (Xd, Yd, yd, omd), xp = place(mode, X, Y, y, omega)
    for chunk in (None, 5):
        fast = kernels.aggregator_terms(Xd, Yd, yd, omd, w, b, gamma, variant, hessian=True, xp=xp, chunk=chunk)
        assert abs(fast.loss - slow.loss) <= 1e-10 * abs(slow.loss)
        assert rel_error(np.append(fast.grad_w, fast.grad_b), np.append(slow.grad_w, slow.grad_b)) < 1e-10
        assert rel_error(fast.hessian, slow.hessian) < 1e-10
    assert kernels.aggregator_terms(Xd, Yd, yd, omd, w, b, gamma, variant, xp=xp).hessian is None


# ------------------------------------------------------ array modules
def test_stream_columns_covers_every_column_in_order():
    A = np.arange(30.0).reshape(3, 10)
    v = np.arange(10.0)
    blocks = list(arrays.stream_columns((A, np.asfortranarray(A), v), 4, np))
    assert [(s, e) for s, e, _ in blocks] == [(0, 4), (4, 8), (8, 10)]
    for s, e, (a, f, u) in blocks:
        np.testing.assert_array_equal(a, A[:, s:e])
        np.testing.assert_array_equal(f, A[:, s:e])
        np.testing.assert_array_equal(u, v[s:e])


def test_array_modules_without_cupy_arrays():
    a = np.ones(3)
    assert arrays.array_module(a, 1.0) is np
    assert arrays.to_host(a) is a
    assert arrays.compute_module(a) is (arrays.gpu_module() or np)
    assert get_backend("numba").place(a)[0] is a
    if arrays.gpu_module() is None:
        assert arrays.to_device(a)[0] is a


def test_tf32_is_reported_for_float32(monkeypatch):
    monkeypatch.setenv("CUPY_TF32", "1")
    with pytest.warns(RuntimeWarning, match="CUPY_TF32"):
        arrays.warn_if_tf32(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        arrays.warn_if_tf32(np.float64)
        monkeypatch.setenv("CUPY_TF32", "0")
        arrays.warn_if_tf32(np.float32)


# ------------------------------------------- kernels of the exact and joint trainers
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("m,n,d", EDGE_SHAPES)
@pytest.mark.parametrize("chunk", [None, 4])
def test_trainer_kernels_match_reference(mode, m, n, d, dtype, chunk):
    X, Y, R, C = random_problem(m, n, d, seed=m * 10 + n + d, dtype=dtype, zero_conf=0.3, extremes=0.2)
    w = np.linspace(-1.0, 1.5, m)
    (Xd, Yd, Rd, Cd), xp = place(mode, X, Y, R, C)
    Y_fast, Z_fast, loss = kernels.instance_solves(Xd, Rd, Cd, 0.4, w, xp=xp, chunk=chunk, with_loss=True)
    Y_ref, Z_ref, loss_ref = ref.instance_solves(X, R, C, 0.4, w, with_loss=True)
    assert loss == pytest.approx(loss_ref, rel=TOL[dtype])
    assert host(Y_fast, mode).dtype == dtype and host(Z_fast, mode).dtype == np.float64
    assert rel_error(host(Y_fast, mode), Y_ref) < TOL[dtype] and rel_error(host(Z_fast, mode), Z_ref) < TOL[dtype]
    G, B = kernels.classifier_gram_terms(Yd, Rd, Cd, xp=xp, chunk=chunk)
    G_ref, B_ref = ref.classifier_gram_terms(Y, R, C)
    assert host(G, mode).shape == (m, d, d) and host(B, mode).shape == (m, d)
    assert rel_error(host(G, mode), G_ref) < TOL[dtype] and rel_error(host(B, mode), B_ref) < TOL[dtype]
    gX, gY = kernels.reconstruction_gradient(Xd, Yd, Rd, Cd, 0.4, xp=xp, chunk=chunk)
    gX_ref, gY_ref = ref.reconstruction_gradient(X, Y, R, C, 0.4)
    assert rel_error(host(gX, mode), gX_ref) < TOL[dtype] and rel_error(host(gY, mode), gY_ref) < TOL[dtype]


def test_instance_solves_report_a_singular_system_by_index(mode):
    X, _, R, C = random_problem(3, 8, 2)
    X[:, 0] = X[:, 1]
    C[:] = 1.0
    C[2, 6] = 0.0  # lam = 0: instance 6 sees only two identical classifiers
    (Xd, Rd, Cd), xp = place(mode, X, R, C)
    for chunk in (None, 3):
        with pytest.raises(SingularSystemError, match="instance 6 "):
            kernels.instance_solves(Xd, Rd, Cd, 0.0, np.ones(3), xp=xp, chunk=chunk)


@pytest.mark.parametrize("trainer", ["exact", "joint"])
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-8), ("float32", 2e-3)])
@pytest.mark.parametrize("focal_gamma", [0.0, 1.0])
def test_exact_and_joint_fits_match_numba(seed_data, trainer, dtype, tol, focal_gamma):
    """Same trainer code on the backends' kernels; float32 differs by the kernels' float32 rounding."""
    P, y = seed_data.P, seed_data.labels
    params = dict(latent_dim=3, max_iter=4, tol=0.0, random_state=0, trainer=trainer, dtype=dtype,
                  focal_gamma=focal_gamma)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # cupy computing with NumPy here
        got, want = (CFEnsembleClassifier(backend=b, **params).fit(P, y) for b in ("cupy", "numba"))
    assert type(got.instance_factors_) is np.ndarray and got.instance_factors_.dtype == dtype
    assert got.n_iter_ == want.n_iter_
    assert rel_error(got.history_["loss"], want.history_["loss"]) < tol
    assert rel_error(got.transductive_proba_, want.transductive_proba_) < tol
    assert rel_error(got.predict_proba(P[:60]), want.predict_proba(P[:60])) < tol


# -------------------------------------------------- API and estimator
def test_functional_api_backend():
    """The functional API takes host arrays: NumPy here, streamed to the GPU where there is one."""
    X, Y, R, C = random_problem(5, 40, 3, seed=2)
    Y_api = cfe_fast.update_instance_factors(X, R, C, 0.4, backend="cupy")
    assert rel_error(Y_api, ref.update_instance_factors(X, R, C, 0.4)) < 1e-10
    labels = np.where(np.arange(40) % 3 == 0, np.nan, np.arange(40) % 2)
    api = cfe_fast.aggregator_loss_grad(X, Y, labels, np.ones(5), 0.1, backend="cupy")
    expected = cfe_fast.aggregator_loss_grad(X, Y, labels, np.ones(5), 0.1, backend="numpy")
    assert abs(api[0] - expected[0]) <= 1e-10 * expected[0]
    assert rel_error(api[1], expected[1]) < 1e-10


@pytest.mark.parametrize("aggregator", ["weighted", "mean"])
def test_estimator_cupy_backend_matches_numpy(seed_data, aggregator):
    P, y = seed_data.P, seed_data.labels
    fits = [
        CFEnsembleClassifier(latent_dim=3, max_iter=6, random_state=0, backend=b, aggregator=aggregator).fit(P, y)
        for b in ("cupy", "numpy")
    ]
    assert type(fits[0].instance_factors_) is np.ndarray and type(fits[0].classifier_factors_) is np.ndarray
    assert rel_error(fits[0].transductive_proba_, fits[1].transductive_proba_) < 1e-8
    assert fits[0].n_iter_ == fits[1].n_iter_
    assert rel_error(fits[0].predict_proba(P[:50]), fits[1].predict_proba(P[:50])) < 1e-8


def test_estimator_cupy_backend_float32(seed_data):
    P, y = seed_data.P, seed_data.labels
    p64 = CFEnsembleClassifier(latent_dim=3, max_iter=5, random_state=0, backend="numpy").fit(P, y).transductive_proba_
    model = CFEnsembleClassifier(latent_dim=3, max_iter=5, random_state=0, backend="cupy", dtype="float32").fit(P, y)
    assert model.instance_factors_.dtype == np.float32
    assert np.abs(model.transductive_proba_ - p64).max() < 1e-3


# ------------------------------------------------------------ GPU only
@pytest.mark.gpu
def test_to_device_places_data_on_the_gpu():
    cupy = arrays.gpu_module()
    if cupy is None:
        pytest.skip(NO_GPU)
    placed = arrays.to_device(np.ones((3, 4)), np.zeros(4))
    assert all(isinstance(a, cupy.ndarray) for a in placed)


@pytest.mark.gpu
def test_float32_gram_is_not_computed_in_tf32():
    """TF32 would give ~1e-3 relative error on a float32 Gram; full float32 gives ~1e-6."""
    cupy = arrays.gpu_module()
    if cupy is None:
        pytest.skip(NO_GPU)
    rng = np.random.default_rng(0)
    P = rng.random((2080, 100)).astype(np.float32)
    Cc = rng.random((100, 4096)).astype(np.float32)
    gram = cupy.asarray(P) @ cupy.asarray(Cc)
    assert rel_error(arrays.to_host(gram), P.astype(np.float64) @ Cc.astype(np.float64)) < 1e-5


# ----------------------- CuPy-only control flow on a NumPy-backed stand-in
class _StandInArray(np.ndarray):
    """A "device" array: NumPy memory, CuPy's transfer methods."""

    def set(self, arr, stream=None):
        assert type(arr) is np.ndarray and arr.shape == self.shape and arr.dtype == self.dtype
        assert stream is not None  # staged copies are asynchronous on the side stream
        # same memory order, or CuPy would first make a pageable (slow, synchronous) copy
        assert (arr.flags.c_contiguous, arr.flags.f_contiguous) == (self.flags.c_contiguous, self.flags.f_contiguous)
        _StandInStream.log.append((stream, "copy", None))
        self[...] = arr

    def get(self):
        return self.view(np.ndarray).copy()


class _StandInEvent:
    def __init__(self, stream):
        self.stream = stream

    def synchronize(self):
        pass


class _StandInStream:
    log = []  # (stream, "copy" or "wait", stream waited for), in call order

    def __init__(self, non_blocking=False):
        self.non_blocking = non_blocking

    def record(self):
        return _StandInEvent(self)

    def wait_event(self, event):
        assert isinstance(event, _StandInEvent)
        self.log.append((self, "wait", event.stream))


class _StandInCupy:
    """The part of the cupy namespace cfe_fast uses, computing with NumPy."""

    __name__ = "cupy"
    ndarray = _StandInArray
    cuda = type("cuda", (), {"Stream": _StandInStream, "get_current_stream": staticmethod(_StandInStream)})

    def __getattr__(self, name):
        return getattr(np, name)

    def asarray(self, a, dtype=None):
        return np.asarray(a, dtype=dtype).view(_StandInArray)

    def empty(self, shape, dtype=np.float64):
        return np.empty(shape, dtype).view(_StandInArray)

    def zeros(self, shape, dtype=np.float64):
        return np.zeros(shape, dtype).view(_StandInArray)


@pytest.fixture
def stand_in(monkeypatch):
    if arrays.gpu_module() is not None:
        pytest.skip("a GPU is present: the real CuPy paths are tested")
    cupy = _StandInCupy()
    cupyx = type("cupyx", (), {"empty_pinned": staticmethod(lambda size, dtype: np.empty(size, dtype))})
    monkeypatch.setitem(__import__("sys").modules, "cupy", cupy)
    monkeypatch.setitem(__import__("sys").modules, "cupyx", cupyx)
    return cupy


def test_staged_streaming_yields_each_block_intact(stand_in):
    A = np.random.default_rng(0).random((3, 23))
    F, v, dev = np.asfortranarray(A), np.arange(23.0), stand_in.asarray(A)
    seen = []
    for s, e, blocks in arrays.stream_columns((A, F, v, dev), 5, stand_in):
        assert all(isinstance(b, _StandInArray) for b in blocks)
        assert blocks[1].flags.f_contiguous  # staged in the host array's memory order
        seen.append((s, e, [b.get() for b in blocks]))  # copy while valid...
    for s, e, (a, f, u, d) in seen:  # ... and check after later blocks were staged
        np.testing.assert_array_equal(a, A[:, s:e])
        np.testing.assert_array_equal(f, A[:, s:e])
        np.testing.assert_array_equal(u, v[s:e])
        np.testing.assert_array_equal(d, A[:, s:e])
    assert [(s, e) for s, e, _ in seen] == [(0, 5), (5, 10), (10, 15), (15, 20), (20, 23)]


def test_side_stream_waits_for_pending_compute_before_its_first_copy(stand_in):
    """The staging buffers come from CuPy's memory pool, whose reuse is ordered for the compute
    stream only: memory a pending kernel still reads can be handed out again. The side stream
    must wait for the compute stream before it copies into them (seen on an H100: streamed
    results went wrong only while other processes loaded the GPU)."""
    _StandInStream.log.clear()
    for _ in arrays.stream_columns((np.ones((2, 10)),), 4, stand_in):
        pass
    side = [(what, waited) for stream, what, waited in _StandInStream.log if stream.non_blocking]
    assert [what for what, _ in side].count("copy") == 3
    assert side[0][0] == "wait" and not side[0][1].non_blocking


@pytest.mark.parametrize("data", ["device", "streamed"])
@pytest.mark.parametrize("m,d", [(6, 3), (2, 5)])
def test_kernels_place_results_like_cupy(stand_in, data, m, d):
    X, Y, R, C = random_problem(m, 41, d, seed=3, dtype=np.float32)
    y = (np.arange(41) % 3 == 0).astype(float)
    omega = ref.class_weights(y)
    args = [stand_in.asarray(a) for a in (X, Y, R, C, y, omega)] if data == "device" else [X, Y, R, C, y, omega]
    Xd, Yd, Rd, Cd, yd, omd = args
    Y_fast = kernels.update_instance_factors(Xd, Rd, Cd, 0.3, xp=stand_in, chunk=6)
    X_fast = kernels.update_classifier_factors(Yd, Rd, Cd, 0.3, xp=stand_in, chunk=6)
    on_device = data == "device"
    assert isinstance(Y_fast, _StandInArray) == on_device and isinstance(X_fast, _StandInArray) == on_device
    assert rel_error(arrays.to_host(Y_fast), ref.update_instance_factors(X, R, C, 0.3)) < TOL[np.float32]
    assert rel_error(arrays.to_host(X_fast), ref.update_classifier_factors(Y, R, C, 0.3)) < TOL[np.float32]
    loss = kernels.reconstruction_loss(Xd, Yd, Rd, Cd, 0.3, xp=stand_in, chunk=6)
    assert abs(loss - ref.reconstruction_loss(X, Y, R, C, 0.3)) <= TOL[np.float32] * loss
    terms = kernels.aggregator_terms(Xd, Yd, yd, omd, np.ones(m), 0.2, hessian=True, xp=stand_in, chunk=6)
    expected = ref.aggregator_terms(X, Y, y, omega, np.ones(m), 0.2, hessian=True)
    assert abs(terms.loss - expected.loss) <= 1e-10 * expected.loss
    assert rel_error(terms.hessian, expected.hessian) < 1e-10


@pytest.mark.parametrize("aggregator,trainer", [("weighted", "als"), ("mean", "als"), ("weighted", "exact"),
                                                ("weighted", "joint")])
def test_estimator_keeps_data_on_the_device_and_returns_host_arrays(stand_in, monkeypatch, seed_data, aggregator,
                                                                    trainer):
    placed = []

    def to_stand_in(*arrays):
        placed.append(len(arrays))
        return tuple(None if a is None else stand_in.asarray(a) for a in arrays)

    monkeypatch.setattr(get_backend("cupy"), "place", to_stand_in)
    P, y = seed_data.P, seed_data.labels
    params = dict(latent_dim=3, max_iter=4, random_state=0, aggregator=aggregator, trainer=trainer)
    model = CFEnsembleClassifier(backend="cupy", **params).fit(P, y)
    assert placed == [7]  # R, C, Y, X (None unless resuming), the labeled mask, labels, weights: once
    assert type(model.instance_factors_) is np.ndarray and type(model.classifier_factors_) is np.ndarray
    expected = CFEnsembleClassifier(backend="numpy", **params).fit(P, y)
    assert rel_error(model.transductive_proba_, expected.transductive_proba_) < 1e-8
    assert rel_error(model.predict_proba(P[:30]), expected.predict_proba(P[:30])) < 1e-8


def test_cupy_without_a_gpu_says_once_that_it_runs_on_numpy(seed_data):
    if arrays.gpu_module() is not None:
        pytest.skip("a GPU is present")
    from cfe_fast.backends import cupy as cupy_backend

    cupy_backend._warn_without_gpu.cache_clear()
    P, y = seed_data.P, seed_data.labels
    with pytest.warns(RuntimeWarning, match='backend="cupy": .*computing with NumPy'):
        CFEnsembleClassifier(backend="cupy", latent_dim=3, max_iter=2, random_state=0).fit(P, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # once per process
        CFEnsembleClassifier(backend="cupy", latent_dim=3, max_iter=2, random_state=0).fit(P, y)
