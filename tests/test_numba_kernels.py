"""Every Numba kernel against the NumPy reference: random and edge-case inputs,
float64 (relative error <= 1e-10) and float32 (<= 1e-4, against the reference on
the same float32-rounded inputs)."""

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfe_fast import config
from cfe_fast.backends import get_backend
from cfe_fast.backends.numba.common import run_tasks
from cfe_fast.errors import SingularSystemError
from cfe_fast import reference as ref
from conftest import aggregator_case, random_problem, rel_error

nb = get_backend("numba")

TOL = {np.float64: 1e-10, np.float32: 1e-4}

EDGE_SHAPES = [  # (m, n, d): m=1, d=1, n=1, d > m (dual form), d < m, d = m
    (1, 7, 1), (1, 5, 3), (4, 1, 2), (3, 9, 1), (3, 25, 6), (12, 40, 4), (5, 30, 5), (2, 3000, 9),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("m,n,d", EDGE_SHAPES)
@pytest.mark.parametrize("zero_conf,extremes", [(0.0, 0.0), (0.3, 0.2)])
def test_half_steps_match_reference(m, n, d, dtype, zero_conf, extremes):
    X, Y, R, C = random_problem(m, n, d, seed=m * 100 + n + d, dtype=dtype, zero_conf=zero_conf, extremes=extremes)
    lam = 0.5
    Y_fast = nb.update_instance_factors(X, R, C, lam)
    X_fast = nb.update_classifier_factors(Y, R, C, lam)
    assert Y_fast.dtype == dtype and X_fast.dtype == dtype
    assert Y_fast.shape == (d, n) and X_fast.shape == (d, m)
    assert rel_error(Y_fast, ref.update_instance_factors(X, R, C, lam)) < TOL[dtype]
    assert rel_error(X_fast, ref.update_classifier_factors(Y, R, C, lam)) < TOL[dtype]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_zero_confidence_instance_with_ridge_gives_zero_factor(dtype):
    X, _, R, C = random_problem(4, 6, 3, dtype=dtype)
    C[:, 2] = 0.0
    Y = nb.update_instance_factors(X, R, C, 0.1)
    np.testing.assert_array_equal(Y[:, 2], 0.0)
    assert rel_error(Y, ref.update_instance_factors(X, R, C, 0.1)) < TOL[dtype]


@settings(max_examples=60, deadline=None)
@given(
    m=st.integers(1, 12), n=st.integers(1, 60), d=st.integers(1, 10),
    lam=st.floats(0.05, 10.0), seed=st.integers(0, 2**32 - 1),
    zero_conf=st.sampled_from([0.0, 0.5]), extremes=st.sampled_from([0.0, 0.3]),
    dtype=st.sampled_from([np.float64, np.float32]),
)
def test_half_steps_match_reference_property(m, n, d, lam, seed, zero_conf, extremes, dtype):
    X, Y, R, C = random_problem(m, n, d, seed=seed, dtype=dtype, zero_conf=zero_conf, extremes=extremes)
    assert rel_error(nb.update_instance_factors(X, R, C, lam), ref.update_instance_factors(X, R, C, lam)) < TOL[dtype]
    assert rel_error(nb.update_classifier_factors(Y, R, C, lam), ref.update_classifier_factors(Y, R, C, lam)) < TOL[dtype]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("m,n,d", [(6, 50, 3), (3, 2500, 5), (1, 3, 1)])
def test_reconstruction_loss_matches_reference(m, n, d, dtype):
    X, Y, R, C = random_problem(m, n, d, seed=7, dtype=dtype)
    expected = ref.reconstruction_loss(X, Y, R, C, 0.2)
    assert abs(nb.reconstruction_loss(X, Y, R, C, 0.2) - expected) <= TOL[dtype] * abs(expected)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("gamma,variant", [(0.0, "exact"), (2.0, "exact"), (1.5, "weighted_bce")])
@pytest.mark.parametrize("n_labeled", [1, 37, 2600])
def test_fused_aggregator_matches_reference(gamma, variant, n_labeled, dtype):
    X, Y, y, omega, w, b = aggregator_case(n_labeled, dtype)
    fast = nb.aggregator_terms(X, Y, y, omega, w, b, gamma, variant, hessian=True)
    slow = ref.aggregator_terms(X, Y, y, omega, w, b, gamma, variant, hessian=True)
    assert abs(fast.loss - slow.loss) <= 1e-10 * abs(slow.loss)
    assert rel_error(np.append(fast.grad_w, fast.grad_b), np.append(slow.grad_w, slow.grad_b)) < 1e-10
    assert rel_error(fast.hessian, slow.hessian) < 1e-10


def test_results_do_not_depend_on_thread_count(monkeypatch):
    monkeypatch.setattr(config, "PARALLEL_MIN_FLOPS", 0)  # parallel regions even for this small problem
    X, Y, R, C = random_problem(9, 5000, 6, seed=11)
    y = (np.random.default_rng(2).random(5000) < 0.2).astype(float)
    omega = ref.class_weights(y)
    w = np.linspace(-1, 1, 9)
    results = []
    before = numba.get_num_threads()
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            agg = nb.aggregator_terms(X, Y, y, omega, w, 0.1, hessian=True)
            results.append((
                nb.update_instance_factors(X, R, C, 0.3), nb.update_classifier_factors(Y, R, C, 0.3),
                nb.reconstruction_loss(X, Y, R, C, 0.3), agg.loss, agg.grad_w, agg.hessian,
            ))
    finally:
        numba.set_num_threads(before)
    for first, second in zip(*results):
        np.testing.assert_array_equal(first, second)


@numba.njit(nogil=True)
def _count_tasks(counts, first, stop):
    for task in range(first, stop):
        counts[task] += 1


@pytest.mark.parametrize("n_tasks", [0, 1, 5, 33])  # none, fewer than the threads, uneven splits
def test_run_tasks_runs_every_task_once_at_any_thread_count(n_tasks):
    counts = np.zeros(n_tasks, dtype=np.int64)
    thread_counts = range(1, numba.config.NUMBA_NUM_THREADS + 1)
    before = numba.get_num_threads()
    try:
        for threads in thread_counts:
            numba.set_num_threads(threads)
            run_tasks(_count_tasks, n_tasks, counts)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(counts, len(thread_counts))


def _tasks_in_child(queue):
    counts = np.zeros(8, dtype=np.int64)
    run_tasks(_count_tasks, 8, counts)
    queue.put(counts.tolist())


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="one thread: no task threads")
def test_run_tasks_works_in_a_forked_child():
    """A child forked after the task threads started has none of them: it must start its own."""
    import multiprocessing

    run_tasks(_count_tasks, 8, np.zeros(8, dtype=np.int64))  # the parent's threads exist
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_tasks_in_child, args=(queue,))
    child.start()
    child.join(30)
    if child.is_alive():
        child.terminate()
    assert child.exitcode == 0 and queue.get(timeout=5) == [1] * 8


def test_singular_system_is_reported_not_nan():
    X, Y, R, C = random_problem(3, 8, 3)
    X[:, 0] = X[:, 1]  # rank-deficient X with lam = 0
    C[:] = 1.0
    with pytest.raises(SingularSystemError, match="instance 0"):
        nb.update_instance_factors(X, R, C, 0.0)
    C[1] = 0.0
    Y[:, :] = 0.0
    with pytest.raises(SingularSystemError, match="classifier"):
        nb.update_classifier_factors(Y, R, C, 0.0)
