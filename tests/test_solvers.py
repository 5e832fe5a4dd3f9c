"""The Numba solver variants against the NumPy reference: every exact form
(dual, primal) on the edge-case shapes and at random, the packed classifier
Grams, the second right-hand side, and the approximate CG solver's contract
(exact in the limit, never worse than its start in the energy norm)."""

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfe_fast import CFEnsembleClassifier, kernels, make_ensemble
from cfe_fast import config
from cfe_fast.backends import SOLVERS, get_backend
from cfe_fast.backends.numba.classifier_step import classifier_sums
from cfe_fast.backends.numba.instance_step import choose_solver, solve_instances
from cfe_fast import reference as ref
from conftest import random_problem, rel_error

nb = get_backend("numba")
SOLVERS_EXACT = ("dual", "primal")

TOL = {np.float64: 1e-10, np.float32: 1e-4}
EDGE_SHAPES = [(1, 7, 1), (1, 5, 3), (4, 1, 2), (3, 9, 1), (3, 25, 6), (12, 40, 4), (5, 30, 5), (2, 700, 9)]


def _instance_major(*arrays):
    return tuple(np.ascontiguousarray(a.T) for a in arrays)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("m,n,d", EDGE_SHAPES)
@pytest.mark.parametrize("solver", SOLVERS_EXACT)
def test_every_exact_solver_matches_reference(m, n, d, dtype, solver):
    X, Y, R, C = random_problem(m, n, d, seed=m + n + d, dtype=dtype, zero_conf=0.3, extremes=0.2)
    Y_fast = nb.update_instance_factors(X, R, C, 0.5, solver=solver)
    X_fast = nb.update_classifier_factors(Y, R, C, 0.5, solver=solver)
    assert Y_fast.dtype == dtype and X_fast.dtype == dtype
    assert rel_error(Y_fast, ref.update_instance_factors(X, R, C, 0.5)) < TOL[dtype]
    assert rel_error(X_fast, ref.update_classifier_factors(Y, R, C, 0.5)) < TOL[dtype]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("m,n,d", EDGE_SHAPES)
@pytest.mark.parametrize("solver", SOLVERS)
def test_instance_step_loss_is_the_reference_loss_at_its_factors(m, n, d, dtype, solver):
    """The fused L_rec (dual: lam z_i, primal: residual per chunk, cg: a separate pass)
    equals the reference loss at the factors the step returns."""
    X, _, R, C = random_problem(m, n, d, seed=m * n + d, dtype=dtype, zero_conf=0.3, extremes=0.2)
    Y, loss = nb.update_instance_factors(X, R, C, 0.4, solver=solver, with_loss=True)
    assert Y.dtype == dtype
    np.testing.assert_array_equal(Y, nb.update_instance_factors(X, R, C, 0.4, solver=solver))
    assert loss == pytest.approx(ref.reconstruction_loss(X, Y, R, C, 0.4), rel=TOL[dtype], abs=0)


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(1, 12), n=st.integers(1, 600), d=st.integers(1, 12), lam=st.floats(0.05, 10.0),
    seed=st.integers(0, 2**32 - 1), solver=st.sampled_from(SOLVERS_EXACT),
    dtype=st.sampled_from([np.float64, np.float32]),
)
def test_exact_solvers_match_reference_property(m, n, d, lam, seed, solver, dtype):
    X, Y, R, C = random_problem(m, n, d, seed=seed, dtype=dtype, zero_conf=0.3)
    Y_fast = nb.update_instance_factors(X, R, C, lam, solver=solver)
    assert rel_error(Y_fast, ref.update_instance_factors(X, R, C, lam)) < TOL[dtype]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [1, 255, 1031])  # one instance, one Gram chunk less one, several chunks
@pytest.mark.parametrize("d", [1, 7, 40])  # one latent row per packed block up to several
def test_classifier_grams_match_explicit_sums(n, d, dtype):
    X, Y, R, C = random_problem(5, n, d, seed=n + d, dtype=dtype, zero_conf=0.2)
    G, B = classifier_sums(*_instance_major(Y, R, C))
    rows, cols = np.tril_indices(d)
    Y64, R64, C64 = (a.astype(np.float64) for a in (Y, R, C))
    for u in range(5):
        gram = (Y64 * C64[u]) @ Y64.T
        assert rel_error(G[:, u], gram[rows, cols]) < TOL[dtype]
        assert rel_error(B[:, u], Y64 @ (C64[u] * R64[u])) < TOL[dtype]


@pytest.mark.parametrize("solver", SOLVERS_EXACT)
@pytest.mark.parametrize("m,d", [(3, 6), (8, 4), (5, 5)])
def test_second_right_hand_side_in_every_exact_solver(m, d, solver):
    X, _, R, C = random_problem(m, 50, d, seed=3, zero_conf=0.3)
    w = np.linspace(-1.0, 2.0, m)
    Yt, Zt = solve_instances(X, *_instance_major(R, C), 0.4, w, solver=solver)
    for i in (0, 17, 49):
        A = (X * C[:, i]) @ X.T + 0.4 * np.eye(d)
        assert rel_error(Zt[i], np.linalg.solve(A, X @ w)) < 1e-10
        assert rel_error(Yt[i], np.linalg.solve(A, X @ (C[:, i] * R[:, i]))) < 1e-10


def test_auto_rule_and_solver_errors():
    assert choose_solver(10, 20) == "dual" and choose_solver(24, 20) == "dual"
    assert choose_solver(25, 20) == "primal" and choose_solver(20, 20, lam=0.0) == "primal"
    X, Y, R, C = random_problem(3, 10, 4)
    with pytest.raises(ValueError, match="solver must be one of"):
        kernels.update_instance_factors(X, R, C, 0.1, backend="numba", solver="lu")
    with pytest.raises(ValueError, match="exact solver"):
        solve_instances(X, *_instance_major(R, C), 0.1, np.ones(3), solver="cg")
    with pytest.raises(ValueError, match="init has shape"):
        kernels.update_instance_factors(X, R, C, 0.1, solver="cg", init=np.zeros((4, 3)))
    with pytest.raises(ValueError, match="needs lam > 0"):
        solve_instances(X, *_instance_major(R, C), 0.0, np.ones(3), solver="dual")


def test_auto_takes_the_primal_form_without_ridge():
    """lam = 0 with m > d: the dual system D X^T X D has rank d (singular), the primal one is solvable."""
    X, _, R, C = random_problem(6, 40, 5, seed=3)  # m <= 1.2 d: the dual form with lam > 0
    assert choose_solver(6, 5) == "dual"
    Y, Z = nb.instance_solves(X, R, C, 0.0, np.ones(6))
    assert rel_error(Y, ref.update_instance_factors(X, R, C, 0.0)) < 1e-9
    assert np.isfinite(Z).all()


def _energy_error(A, x, x_exact):
    e = x - x_exact
    return float(e @ A @ e)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("m,n,d", [(12, 300, 5), (4, 80, 9)])
def test_cg_converges_to_the_exact_solution(m, n, d, dtype, monkeypatch):
    X, Y, R, C = random_problem(m, n, d, seed=5, dtype=dtype)
    monkeypatch.setattr(config, "CG_STEPS", 4 * d)  # CG is exact after d steps in exact arithmetic
    tol = 1e-8 if dtype == np.float64 else 1e-4
    Y_cg = nb.update_instance_factors(X, R, C, 0.5, solver="cg")
    X_cg = nb.update_classifier_factors(Y, R, C, 0.5, solver="cg")
    assert Y_cg.dtype == dtype and X_cg.dtype == dtype
    assert rel_error(Y_cg, ref.update_instance_factors(X, R, C, 0.5)) < tol
    assert rel_error(X_cg, ref.update_classifier_factors(Y, R, C, 0.5)) < tol


def test_cg_steps_never_increase_the_energy_error_and_start_from_init(monkeypatch):
    m, n, d = 15, 40, 8
    X, Y, R, C = random_problem(m, n, d, seed=9)
    exact = ref.update_instance_factors(X, R, C, 0.3)
    start = exact + np.random.default_rng(0).normal(size=exact.shape)
    previous = None
    for steps in range(4):
        monkeypatch.setattr(config, "CG_STEPS", steps)
        Y_cg = nb.update_instance_factors(X, R, C, 0.3, solver="cg", init=start)
        errors = np.array([
            _energy_error((X * C[:, i]) @ X.T + 0.3 * np.eye(d), Y_cg[:, i], exact[:, i]) for i in range(n)
        ])
        if steps == 0:
            np.testing.assert_array_equal(Y_cg, start)
        else:
            assert np.all(errors <= previous * (1 + 1e-12))
            assert errors.sum() < 0.5 * previous.sum()
        previous = errors
    X_exact = ref.update_classifier_factors(Y, R, C, 0.3)
    monkeypatch.undo()
    X_from_exact = nb.update_classifier_factors(Y, R, C, 0.3, solver="cg", init=X_exact)
    assert rel_error(X_from_exact, X_exact) < 1e-10  # a converged start stays put


def test_every_solver_is_independent_of_the_thread_count(monkeypatch):
    monkeypatch.setattr(config, "PARALLEL_MIN_FLOPS", 0)  # parallel regions even for this small problem
    X, Y, R, C = random_problem(9, 3000, 12, seed=11)
    results = []
    before = numba.get_num_threads()
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            results.append([
                *(nb.update_instance_factors(X, R, C, 0.3, solver=s, init=Y) for s in SOLVERS[1:]),
                nb.update_classifier_factors(Y, R, C, 0.3, solver="cg", init=X),
                *classifier_sums(*_instance_major(Y, R, C)),
            ])
    finally:
        numba.set_num_threads(before)
    for first, second in zip(*results):
        np.testing.assert_array_equal(first, second)


def test_estimator_solver_option():
    data = make_ensemble(n_classifiers=8, n_instances=600, random_state=1)
    exact = CFEnsembleClassifier(latent_dim=4, max_iter=15, tol=0, random_state=0).fit(data.P, data.labels)
    cg = CFEnsembleClassifier(latent_dim=4, max_iter=15, tol=0, random_state=0, solver="cg").fit(data.P, data.labels)
    assert abs(cg.history_["loss"][-1] - exact.history_["loss"][-1]) < 0.05 * exact.history_["loss"][-1]
    primal = CFEnsembleClassifier(latent_dim=4, max_iter=15, tol=0, random_state=0, solver="primal")
    np.testing.assert_allclose(primal.fit(data.P, data.labels).coef_, exact.coef_, rtol=1e-8, atol=1e-10)
    with pytest.raises(ValueError, match="solver"):
        CFEnsembleClassifier(solver="qr").fit(data.P, data.labels)
    with pytest.raises(ValueError, match="trainer='als' only"):
        CFEnsembleClassifier(solver="cg", trainer="exact").fit(data.P, data.labels)
