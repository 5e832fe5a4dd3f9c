"""Work-saving paths of a fit, each checked against the plain computation it
replaces: the Newton fit that reuses the full step's Hessian, the Newton fit in
the span of the classifier factors, the aggregator evaluator's memory, the
re-entrant single-threaded BLAS scope, and the shared Gram of uniform confidence."""

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from cfe_fast import reference as ref
from cfe_fast._threads import single_threaded_blas
from cfe_fast.core.losses import AggregatorPenalty
from cfe_fast.training.aggregator import newton, newton_in_span
from test_trainers import make_problem


def counting(evaluate):
    """evaluate, recording the hessian flag of every call."""
    calls = []

    def wrapped(w, b, hessian=False, **kw):
        calls.append(bool(hessian))
        return evaluate(w, b, hessian, **kw)

    return wrapped, calls


@pytest.mark.parametrize("gamma,shrinkage", [(0.0, 0.0), (2.0, 0.0), (0.0, 0.4)])
def test_newton_reaches_the_minimum_with_one_pass_per_full_step(gamma, shrinkage):
    p, s = make_problem(8, 400, 4, seed=3, gamma=gamma, shrinkage=shrinkage)
    w, b, _ = newton(p.make_evaluator(s.X, s.Y), s.w, s.b, p.settings.penalty)
    terms = ref.aggregator_terms(s.X, s.Y[:, p.labeled], p.y_labeled, p.omega, w, b, gamma, "exact")
    penalty_gradient = 1e-3 * w + shrinkage * (w - w.mean())  # d/dw of the ridge and the pull to equal weights
    assert np.linalg.norm(np.append(terms.grad_w + penalty_gradient, terms.grad_b)) < 1e-6
    # warm start near the minimum (an outer iteration's situation): every step is a full step,
    # and each costs one pass, whose Hessian the next step uses
    evaluate, calls = counting(p.make_evaluator(s.X, s.Y))
    w2, b2, steps = newton(evaluate, w + 1e-2, b - 1e-2, p.settings.penalty)
    assert steps >= 2
    assert len(calls) == steps + 1
    np.testing.assert_allclose(np.append(w2, b2), np.append(w, b), rtol=1e-6, atol=1e-8)


def test_newton_stops_after_max_steps_without_an_extra_pass():
    p, s = make_problem(8, 400, 4, seed=4)
    evaluate, calls = counting(p.make_evaluator(s.X, s.Y))
    _, _, steps = newton(evaluate, s.w, s.b, p.settings.penalty, max_steps=1)
    assert steps == 1
    assert calls[0] and not any(calls[1:])  # the Hessian only where a step uses it


PENALTIES = {
    "zero": AggregatorPenalty(1.0, 30.0, 50.0, "zero"),
    "equal": AggregatorPenalty(1.0, 30.0, 50.0, "equal"),
    "consensus": AggregatorPenalty(1.0, 30.0, 50.0, "consensus", np.linspace(0.1, 2.0, 40)),
    "ridge only": AggregatorPenalty(1.0),
}


@pytest.mark.parametrize("name", list(PENALTIES))
def test_the_penalty_solve_is_the_inverse_of_its_hessian(name):
    penalty = PENALTIES[name]
    M = np.random.default_rng(0).standard_normal((40, 3))
    np.testing.assert_allclose(penalty.solve(M), np.linalg.solve(penalty.hessian(40), M), rtol=1e-12, atol=1e-14)


def test_the_penalty_solve_refuses_a_singular_hessian():
    assert AggregatorPenalty(0.0, 30.0, 50.0, "equal").solve(np.ones((40, 2))) is None  # singular along the line
    assert AggregatorPenalty().solve(np.ones((40, 2))) is None


@pytest.mark.parametrize("name", list(PENALTIES))
def test_newton_in_the_span_of_the_factors_reaches_the_full_minimum(name):
    p, s = make_problem(40, 400, 4, seed=6)  # m = 40 >= 2 (d + 1): (alpha, b) has 5 unknowns, (w, b) 41
    penalty = PENALTIES[name]
    full = newton(p.make_evaluator(s.X, s.Y), s.w, s.b, penalty)
    span = newton_in_span(p.make_evaluator(s.X, s.Y), s.X, s.w, s.b, penalty)
    np.testing.assert_allclose(span[0], full[0], rtol=1e-5, atol=1e-7 * np.abs(full[0]).max())
    assert abs(span[1] - full[1]) < 1e-6 * max(abs(full[1]), 1.0)


def test_newton_in_the_span_is_plain_newton_where_it_does_not_pay():
    p, s = make_problem(8, 400, 4, seed=7)  # m = 8 < 2 (d + 1)
    penalty = AggregatorPenalty(1.0, 10.0, 50.0, "zero")
    span = newton_in_span(p.make_evaluator(s.X, s.Y), s.X, s.w, s.b, penalty)
    full = newton(p.make_evaluator(s.X, s.Y), s.w, s.b, penalty)
    np.testing.assert_array_equal(span[0], full[0])
    assert span[1:] == full[1:]


def test_evaluator_is_kept_per_factors_and_remembers_its_last_result(monkeypatch):
    p, s = make_problem(6, 300, 3, seed=5)
    kernel_calls = []
    original = p.backend.aggregator_terms
    monkeypatch.setattr(p.backend, "aggregator_terms", lambda *a: kernel_calls.append(a[-1]) or original(*a))
    evaluate = p.evaluator(s)
    assert p.evaluator(s) is evaluate
    first = evaluate(s.w, s.b, True)
    assert evaluate(s.w.copy(), s.b, False) is first  # same point: no pass
    assert p.evaluator(s)(s.w, s.b) is first
    assert len(kernel_calls) == 1
    moved = evaluate(s.w + 0.1, s.b)
    expected = ref.aggregator_terms(s.X, s.Y[:, p.labeled], p.y_labeled, p.omega, s.w + 0.1, s.b)
    assert moved.loss == pytest.approx(expected.loss, rel=1e-12)
    assert evaluate(s.w + 0.1, s.b, True).hessian is not None  # a Hessian asked for is computed
    assert len(kernel_calls) == 3
    s.Y = s.Y.copy()
    other = p.evaluator(s)  # new factors: a new evaluator
    assert other is not evaluate
    assert other(s.w, s.b).loss == pytest.approx(first.loss, rel=1e-14)


def test_reconstruction_loss_of_the_instance_step_is_reused(monkeypatch):
    p, s = make_problem(6, 300, 3, seed=7)
    passes = []
    original = p.backend.reconstruction_loss
    monkeypatch.setattr(p.backend, "reconstruction_loss", lambda *a: passes.append(1) or original(*a))
    p.instance_step(s)
    expected = ref.reconstruction_loss(s.X, s.Y, p.R, p.C, p.lam)
    assert p.state_reconstruction(s) == pytest.approx(expected, rel=1e-12)
    assert not passes  # the instance step's own loss: no pass over R and C
    s.Y = s.Y.copy()  # other factors: the state forgets the loss, which is computed
    assert p.state_reconstruction(s) == pytest.approx(ref.reconstruction_loss(s.X, s.Y, p.R, p.C, p.lam), rel=1e-12)
    assert len(passes) == 1


def test_labeled_factors_gather_in_instance_order():
    p, s = make_problem(5, 200, 3, seed=6)
    Y = np.ascontiguousarray(s.Y.T).T  # the estimator's layout: a view of instance-major data
    gathered = p.labeled_factors(Y)
    np.testing.assert_array_equal(gathered, s.Y[:, p.labeled])
    assert gathered.T.flags["C_CONTIGUOUS"]


def _blas_threads():
    return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]


def test_single_threaded_blas_is_reentrant():
    before = _blas_threads()
    with single_threaded_blas():
        assert set(_blas_threads()) == {1}
        with single_threaded_blas():
            assert set(_blas_threads()) == {1}
        assert set(_blas_threads()) == {1}  # the inner exit keeps the outer limit
    assert _blas_threads() == before


@pytest.mark.parametrize("trainer", ["als", "exact", "joint"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_uniform_confidence_fit_shares_one_gram_and_equals_the_general_path(monkeypatch, trainer, dtype):
    """Uniform confidence on complete data stores no C and fits as the per-system kernels with C = 1 do."""
    import warnings

    from cfe_fast import CFEnsembleClassifier
    from cfe_fast.backends import in_memory
    from cfe_fast.datasets import make_ensemble

    R, _, y = make_ensemble(n_classifiers=8, n_instances=600, labeled_fraction=0.3, random_state=2)
    P = R.T
    started = []
    start_fit, start_state = in_memory.InMemoryBackend.start_fit, in_memory.start_state

    def recording(self, data):
        problem, state, progress = start_fit(self, data)
        started.append(problem.C)
        return problem, state, progress

    monkeypatch.setattr(in_memory.InMemoryBackend, "start_fit", recording)
    params = dict(trainer=trainer, dtype=dtype, max_iter=3, tol=0, aggregator_prior=1.0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shared = CFEnsembleClassifier(**params).fit(P, y)
        # an empty mask of missing entries: the per-system kernels with C = 1, from the same start
        monkeypatch.setattr(in_memory, "missing_entries", lambda P: np.zeros(P.shape, dtype=bool))
        monkeypatch.setattr(in_memory, "start_state", lambda data, P, complete: start_state(data, P, True))
        general = CFEnsembleClassifier(**params).fit(P, y)
    assert started[0] is None and started[1] is not None and np.all(started[1] == 1)
    tol = 1e-8 if dtype == "float64" else 1e-3  # float32 rounding grows over the iterations, most with Adam
    np.testing.assert_allclose(shared.transductive_proba_, general.transductive_proba_, atol=tol)
    np.testing.assert_allclose(shared.predict_proba(P), general.predict_proba(P), atol=tol)
    np.testing.assert_allclose(shared.history_["loss"], general.history_["loss"], rtol=tol)


@pytest.mark.parametrize("m,n,d", [(6, 200, 3), (5, 80, 7), (9, 300, 8)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_closed_form_start_is_the_fixed_point_als_converges_to(m, n, d, dtype):
    """Y of the shrunk truncated SVD: the reference half-steps leave it where it is, and ALS from a random
    start reaches the same reconstruction and objective (d > m: the extra directions are zero)."""
    from cfe_fast.backends import shared_gram

    rng = np.random.default_rng(m + d)
    R = rng.random((m, n)).astype(dtype)
    ones, lam = np.ones(R.shape), 0.3
    Yt = shared_gram.optimal_start(np.ascontiguousarray(R.T), d, lam).T
    assert Yt.dtype == dtype and Yt.flags.c_contiguous and Yt.shape == (n, d)
    Y = Yt.T.astype(np.float64)
    X = ref.update_classifier_factors(Y, R, ones, lam)

    def objective(X, Y):
        return np.sum((R - X.T @ Y) ** 2) + lam * (np.sum(X ** 2) + np.sum(Y ** 2))

    tol = 1e-10 if dtype == np.float64 else 1e-5
    assert np.abs(ref.update_instance_factors(X, R, ones, lam) - Y).max() < tol * max(1.0, np.abs(Y).max())
    Yr, R64, eye = rng.standard_normal((d, n)), R.astype(np.float64), lam * np.eye(d)
    for _ in range(2000):  # plain ALS with every confidence 1, written out
        Xr = np.linalg.solve(Yr @ Yr.T + eye, Yr @ R64.T)
        Yr = np.linalg.solve(Xr @ Xr.T + eye, Xr @ R64)
    assert objective(X, Y) <= objective(Xr, Yr) * (1 + tol)
    assert np.abs(Xr.T @ Yr - X.T @ Y).max() < 1e-4


def test_closed_form_start_does_not_depend_on_the_rounding_of_the_gram(monkeypatch):
    """The eigensolver's signs are fixed (each column of U_d with its largest entry positive): a Gram
    summed in another order, or an eigensolver returning the same vectors with their signs flipped,
    gives the same start."""
    from cfe_fast.backends import shared_gram

    rng = np.random.default_rng(3)
    R = rng.random((7, 400))
    gram, d, lam = R @ R.T, 5, 0.2
    want = shared_gram.optimal_projection(gram, d, lam)
    U = want / np.linalg.norm(want, axis=0)
    assert np.all(U[np.abs(U).argmax(axis=0), np.arange(d)] > 0)
    blocked = sum(R[:, s:s + 37] @ R[:, s:s + 37].T for s in range(0, 400, 37))
    np.testing.assert_allclose(shared_gram.optimal_projection(blocked, d, lam), want, atol=1e-10)
    eigh = np.linalg.eigh
    signs = np.where(np.arange(7) % 2 == 0, -1.0, 1.0)  # every other vector flipped
    monkeypatch.setattr(np.linalg, "eigh", lambda a: (eigh(a)[0], eigh(a)[1] * signs))
    np.testing.assert_allclose(shared_gram.optimal_projection(gram, d, lam), want, atol=1e-12)


def test_uniform_fit_converges_at_once_and_ignores_the_random_state():
    import warnings

    from cfe_fast import CFEnsembleClassifier
    from cfe_fast.datasets import make_ensemble

    data = make_ensemble(n_classifiers=8, n_instances=500, labeled_fraction=0.3, random_state=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = [CFEnsembleClassifier(random_state=seed).fit(data.R.T, data.labels) for seed in (0, 1)]
    assert all(fit.converged_ and fit.n_iter_ <= 3 for fit in fits)
    np.testing.assert_array_equal(fits[0].transductive_proba_, fits[1].transductive_proba_)
