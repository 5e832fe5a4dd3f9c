"""The backend contract, run over every registered backend against the NumPy reference.

One suite for all backends (as implicit runs one test mixin over each of
its backends): the registry entry, the kernels of the contract, the kernels
the exact and joint trainers need (where the capabilities declare those
trainers), and a fit's problem -- its first sweep, objective, aggregator
terms and fold-in -- started by the backend itself. Per-backend extras are in
test_numba_kernels.py, test_solvers.py, test_cupy_backend.py and
test_dask_backend.py. Tolerances: relative error <= 1e-10 in float64 and
<= 1e-4 in float32 (against the reference on the same float32 inputs).
"""

import functools

import numpy as np
import pytest

from cfe_fast import reference as ref
from cfe_fast.backends import BACKENDS, CAPABILITIES, SOLVERS, Backend, get_backend
from cfe_fast.core.confidence import confidence_chunk
from cfe_fast.core.losses import AggregatorPenalty
from cfe_fast.errors import SingularSystemError
from cfe_fast.training.problem import FitData, Settings
from cfe_fast.training.state import initial_instance_factors
from conftest import aggregator_case, random_problem, rel_error

TOL = {np.float64: 1e-10, np.float32: 1e-4}
DTYPES = [np.float64, np.float32]
SHAPES = [(1, 9, 1), (4, 30, 2), (5, 40, 6), (9, 300, 4)]  # m = 1, d < m, d > m (dual forms), a larger n
EXACT_SOLVERS = ("auto", "dual", "primal")


def _exact_solvers(name):
    return [s for s in EXACT_SOLVERS if s in CAPABILITIES[name].solvers]


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        with distributed.Client(cluster) as client:
            yield client


@pytest.fixture(params=BACKENDS)
def name(request):
    if request.param == "dask":
        pytest.importorskip("distributed")
    return request.param


def host(backend, a):
    return np.asarray(backend.to_host(a))


# --------------------------------------------------------------- registry
def test_registry_entry_implements_the_contract(name):
    backend = get_backend(name)
    assert isinstance(backend, Backend)
    assert backend.name == name and backend.capabilities is CAPABILITIES[name]
    caps = backend.capabilities
    assert "als" in caps.trainers and "auto" in caps.solvers and "numpy" in caps.inputs
    assert set(caps.solvers) <= set(SOLVERS)
    for m, d in ((3, 5), (6, 5), (40, 8)):
        assert backend.choose_solver(m, d, 0.1) in ("dual", "primal")
    assert backend.choose_solver(40, 8, 0.1) == "primal"  # m >> d: the d x d systems are the small ones


def test_unsupported_values_are_refused_naming_them(name):
    caps = CAPABILITIES[name]
    for trainer in ("als", "exact", "joint"):
        message = caps.breach(name, trainer=trainer)
        assert (message is None) == (trainer in caps.trainers)
        if message:
            assert f"trainer={trainer!r}" in message and name in message
    for solver in SOLVERS:
        assert (caps.breach(name, solver=solver) is None) == (solver in caps.solvers)
    with pytest.raises(ValueError, match="solver must be one of"):
        caps.check(name, solver="lu")


# ---------------------------------------------------------------- kernels
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,n,d", SHAPES)
def test_half_steps_and_losses_match_reference(name, dtype, m, n, d):
    backend = get_backend(name)
    X, Y, R, C = random_problem(m, n, d, seed=m * n + d, dtype=dtype, zero_conf=0.2, extremes=0.2)
    for solver in _exact_solvers(name):
        Y_fast, loss = backend.update_instance_factors(X, R, C, 0.3, solver=solver, with_loss=True)
        Y_fast = host(backend, Y_fast)
        X_fast = host(backend, backend.update_classifier_factors(Y, R, C, 0.3, solver=solver))
        assert Y_fast.dtype == (np.float64 if name == "numpy" else dtype) == X_fast.dtype
        assert rel_error(Y_fast, ref.update_instance_factors(X, R, C, 0.3)) < TOL[dtype]
        assert rel_error(X_fast, ref.update_classifier_factors(Y, R, C, 0.3)) < TOL[dtype]
        assert loss == pytest.approx(ref.reconstruction_loss(X, Y_fast, R, C, 0.3), rel=TOL[dtype])
    assert backend.reconstruction_loss(X, Y, R, C, 0.3) == pytest.approx(
        ref.reconstruction_loss(X, Y, R, C, 0.3), rel=TOL[dtype])
    assert rel_error(host(backend, backend.fold_in(X, R, C, 0.3)), ref.update_instance_factors(X, R, C, 0.3)) < TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gamma,variant", [(0.0, "exact"), (2.0, "exact"), (1.5, "weighted_bce")])
def test_aggregator_terms_match_reference(name, dtype, gamma, variant):
    backend = get_backend(name)
    X, Y, y, omega, w, b = aggregator_case(200, dtype)
    fast = backend.aggregator_terms(X, Y, y, omega, w, b, gamma, variant, True)
    slow = ref.aggregator_terms(X, Y, y, omega, w, b, gamma, variant, True)
    assert fast.loss == pytest.approx(slow.loss, rel=1e-10)
    assert rel_error(fast.grad_w, slow.grad_w) < 1e-10 and fast.grad_b == pytest.approx(slow.grad_b, rel=1e-10)
    assert rel_error(fast.hessian, slow.hessian) < 1e-10
    assert backend.aggregator_terms(X, Y, y, omega, w, b, gamma, variant, False).hessian is None
    latent = backend.aggregator_terms(X, Y, y, omega, w, b, gamma, variant, "latent")
    assert latent.hessian is None
    assert rel_error(latent.latent_hessian, ref.aggregator_terms(X, Y, y, omega, w, b, gamma, variant,
                                                                 "latent").latent_hessian) < 1e-10


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,n,d", SHAPES)
def test_trainer_kernels_match_reference(name, dtype, m, n, d):
    """The kernels of the exact and joint trainers: correct where a backend has them, and a clear
    NotImplementedError only where its capabilities leave those trainers out."""
    backend = get_backend(name)
    caps = backend.capabilities
    X, Y, R, C = random_problem(m, n, d, seed=3 * m + n, dtype=dtype, zero_conf=0.2)
    w = np.linspace(-1.0, 1.0, m)
    try:
        Yf, Zf, loss = backend.instance_solves(X, R, C, 0.3, w, with_loss=True)
    except NotImplementedError as error:  # allowed only where the capabilities say so, and said clearly
        assert "exact" not in caps.trainers and "trainer='als' only" in str(error)
        return
    Yr, Zr, loss_ref = ref.instance_solves(X, R, C, 0.3, w, with_loss=True)
    assert rel_error(Yf, Yr) < TOL[dtype] and rel_error(Zf, Zr) < TOL[dtype]
    assert loss == pytest.approx(loss_ref, rel=TOL[dtype])
    assert all(rel_error(a, b) == 0 for a, b in zip(backend.instance_solves(X, R, C, 0.3, w), (Yf, Zf)))
    for fast, slow in zip(backend.classifier_gram_terms(Y, R, C), ref.classifier_gram_terms(Y, R, C)):
        assert rel_error(fast, slow) < TOL[dtype]
    if "joint" in caps.trainers:
        for fast, slow in zip(backend.reconstruction_gradient(X, Y, R, C, 0.3),
                              ref.reconstruction_gradient(X, Y, R, C, 0.3)):
            assert rel_error(fast, slow) < TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,n,d", SHAPES)
def test_confidence_none_is_one_everywhere(name, dtype, m, n, d):
    """C None (confidence 1 at every entry, one shared Gram) gives the reference's results with C = 1."""
    backend = get_backend(name)
    X, Y, R, _ = random_problem(m, n, d, seed=7 * m + n + d, dtype=dtype, extremes=0.2)
    ones = np.ones(R.shape)
    Y_fast, loss = backend.update_instance_factors(X, R, None, 0.3, with_loss=True)
    Y_fast, X_fast = host(backend, Y_fast), host(backend, backend.update_classifier_factors(Y, R, None, 0.3))
    assert Y_fast.dtype == (np.float64 if name == "numpy" else dtype) == X_fast.dtype
    assert rel_error(Y_fast, ref.update_instance_factors(X, R, ones, 0.3)) < TOL[dtype]
    assert rel_error(X_fast, ref.update_classifier_factors(Y, R, ones, 0.3)) < TOL[dtype]
    assert loss == pytest.approx(ref.reconstruction_loss(X, Y_fast, R, ones, 0.3), rel=TOL[dtype])
    assert backend.reconstruction_loss(X, Y, R, None, 0.3) == pytest.approx(
        ref.reconstruction_loss(X, Y, R, ones, 0.3), rel=TOL[dtype])
    assert rel_error(host(backend, backend.fold_in(X, R, None, 0.3)), ref.update_instance_factors(X, R, ones, 0.3)) \
        < TOL[dtype]
    if "exact" in backend.capabilities.trainers:
        w = np.linspace(-1.0, 1.0, m)
        Yf, Zf, loss = backend.instance_solves(X, R, None, 0.3, w, with_loss=True)
        Yr, Zr, loss_ref = ref.instance_solves(X, R, ones, 0.3, w, with_loss=True)
        assert rel_error(host(backend, Yf), Yr) < TOL[dtype] and rel_error(host(backend, Zf), Zr) < TOL[dtype]
        assert loss == pytest.approx(loss_ref, rel=TOL[dtype])
        for fast, slow in zip(backend.classifier_gram_terms(Y, R, None), ref.classifier_gram_terms(Y, R, ones)):
            assert rel_error(host(backend, fast), slow) < TOL[dtype]
    if "joint" in backend.capabilities.trainers:
        for fast, slow in zip(backend.reconstruction_gradient(X, Y, R, None, 0.3),
                              ref.reconstruction_gradient(X, Y, R, ones, 0.3)):
            assert rel_error(host(backend, fast), slow) < TOL[dtype]


def test_singular_shared_gram_is_refused_naming_the_system(name):
    """lam = 0 with more latent dimensions than classifiers: X X^T is singular for every instance."""
    backend = get_backend(name)
    X, Y, R, _ = random_problem(3, 20, 5, seed=1, dtype=np.float64)
    with pytest.raises(SingularSystemError, match="instance 0"):
        backend.update_instance_factors(X, R, None, 0.0)
    with pytest.raises(SingularSystemError, match="classifier 0"):
        backend.update_classifier_factors(np.zeros_like(Y), R, None, 0.0)


# --------------------------------------------------------------- a fit's problem
def _fit_data(backend, name, dtype, client, strategy):
    n, m, d = 240, 6, 3
    _, _, R, _ = random_problem(m, n, d, seed=21, dtype=dtype, extremes=0.1)
    rng = np.random.default_rng(4)
    labels = np.where(rng.random(n) < 0.5, (rng.random(n) < 0.3).astype(float), np.nan)
    labels[:2] = [0.0, 1.0]
    P, labels = backend.check_data(R.T.copy(), labels, dtype, client if name == "dask" else None)
    y = labels[~np.isnan(labels)]
    data = FitData(P=P, labels=labels, omega=ref.class_weights(y), lam=0.3, latent_dim=d, confidence=strategy,
                   confidence_alpha=0.7, settings=Settings(rho=0.6, penalty=AggregatorPenalty(l2=1e-3, prior=0.2)), rng=np.random.default_rng(8),
                   client=client if name == "dask" else None)
    return data, R.astype(np.float64), labels


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("strategy", ["label_aware", "calibration"])
def test_problem_started_by_the_backend_sweeps_like_the_reference(name, dtype, strategy, request):
    """start_fit's problem: confidence, the first ALS sweep, L_rec, L and the aggregator terms."""
    backend = get_backend(name)
    client = request.getfixturevalue("client") if name == "dask" else None
    data, R, labels = _fit_data(backend, name, dtype, client, strategy)
    problem, state, progress = backend.start_fit(data)
    assert progress.iteration == 0 and np.allclose(state.w, 1.0 / R.shape[0]) and state.b == 0.0
    C = ref.confidence(R, labels, strategy, alpha=0.7).astype(dtype)
    if strategy == "calibration":
        assert rel_error(problem.classifier_quality, C[:, 0]) < TOL[dtype]
    Y0 = initial_instance_factors(np.random.default_rng(8), R.shape[1], 3, dtype).T
    problem.classifier_step(state)
    X = host(backend, state.X)
    assert rel_error(X, ref.update_classifier_factors(Y0, R, C, 0.3)) < TOL[dtype]
    problem.instance_step(state)
    Y = host(backend, state.Y)
    assert rel_error(Y, ref.update_instance_factors(X, R, C, 0.3)) < TOL[dtype]
    total, rec, sup = problem.objective(state)
    expected = ref.objective(X, Y, R, C, 0.3, labels, state.w, state.b, 0.6, l2=1e-3, shrinkage=0.2)
    np.testing.assert_allclose((total, rec, sup), expected, rtol=TOL[dtype])
    terms = problem.evaluator(state)(state.w, state.b, True)
    labeled = ~np.isnan(labels)
    slow = ref.aggregator_terms(X, Y[:, labeled], labels[labeled], ref.class_weights(labels[labeled]), state.w,
                                state.b, hessian=True)
    assert rel_error(terms.hessian, slow.hessian) < TOL[dtype]
    state.Y = state.Y  # new factors: every derived value is forgotten
    assert state.reconstruction is None and state.evaluator is None


@pytest.mark.parametrize("dtype", DTYPES)
def test_fold_in_of_new_data_matches_reference(name, dtype, request):
    backend = get_backend(name)
    X, _, R, _ = random_problem(5, 70, 3, seed=2, dtype=dtype, extremes=0.2)
    P = backend.check_new_data(np.ascontiguousarray(R.T), dtype)
    if name == "dask":
        request.getfixturevalue("client")
        P = pytest.importorskip("dask.array").from_array(np.ascontiguousarray(R.T), chunks=(25, 5))
        P = backend.check_new_data(P, dtype)
    confidence = functools.partial(confidence_chunk, labels=None, strategy="certainty")
    Y = np.asarray(backend.to_host(backend.fold_in_data(X, P, 0.2, confidence, dtype)))
    expected = ref.update_instance_factors(X, R, np.abs(R.astype(np.float64) - 0.5), 0.2)
    assert rel_error(Y, expected) < TOL[dtype]
