"""The CuPy backend's sparse path (:mod:`cfe_fast.backends.cupy.sparse`) against the NumPy reference on the
dense P with NaN at the unstored entries.

Every kernel test runs with NumPy as the array module (scipy.sparse as its
sparse module: runs everywhere) and, marked ``gpu`` and skipped without CuPy
and a CUDA device, with CuPy (cupyx.scipy.sparse). Tolerances: the kernels
1e-10 relative in float64 and 1e-4 in float32 (as in tests/test_sparse.py);
whole fits 1e-8 and 2e-3 against the reference, 1e-10 and 1e-3 against the
Numba sparse fit (the sums are taken in another order).
"""


import numpy as np
import pytest
import scipy.sparse as sp

from cfe_fast import reference as ref
from cfe_fast.backends.cupy import arrays
from cfe_fast.backends.cupy.sparse import (
    sparse_data,
    squared_residual,
    update_classifier_factors,
    update_instance_factors,
)
from cfe_fast.core.sparse import check_sparse_probabilities
from conftest import random_problem, rel_error
from test_sparse import MISSING, _fit, ensemble, sparse_and_dense  # noqa: F401 (ensemble: a fixture)

TOL = {np.float64: 1e-10, np.float32: 1e-4}
REF_TOL = {"float64": 1e-8, "float32": 2e-3}
NUMBA_TOL = {"float64": 1e-10, "float32": 1e-3}


@pytest.fixture(params=[pytest.param("numpy"), pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request):
    if request.param == "numpy":
        return np
    if arrays.gpu_module() is None:
        pytest.skip("needs CuPy and a CUDA device")
    return arrays.gpu_module()


pytestmark = pytest.mark.filterwarnings("ignore")  # no GPU, collapse and quality warnings of tiny fits


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("fraction", MISSING)
@pytest.mark.parametrize("m,n,d,chunk", [(6, 80, 3, None), (3, 40, 5, 7), (40, 30, 8, 1)])
def test_half_steps_and_loss_match_the_reference(xp, dtype, fraction, m, n, d, chunk):
    X, Y, R, C = random_problem(m, n, d, seed=m + n, dtype=dtype)
    P, dense = sparse_and_dense(R.T, fraction, seed=d)
    P = check_sparse_probabilities(P, dtype=dtype)
    values = C.T[np.nonzero(~np.isnan(dense))].astype(dtype)  # CSR order: by row, then column
    data = sparse_data(P, values, xp)
    lam = 0.3
    Y_ref, loss_ref = ref.update_instance_factors(X, dense.T, C, lam, with_loss=True)
    Y_got, sse = update_instance_factors(X, data, lam, chunk=chunk, with_loss=True)
    assert Y_got.dtype == dtype
    assert rel_error(arrays.to_host(Y_got), Y_ref) < TOL[dtype]
    norms = float(np.sum(X.astype(np.float64) ** 2) + np.sum(arrays.to_host(Y_got).astype(np.float64) ** 2))
    assert rel_error((sse + lam * norms) / max(P.nnz, 1), loss_ref) < TOL[dtype]
    X_got = update_classifier_factors(Y, data, lam, chunk=chunk)
    assert X_got.dtype == dtype
    assert rel_error(arrays.to_host(X_got), ref.update_classifier_factors(Y, dense.T, C, lam)) < TOL[dtype]
    norms = float(np.sum(X.astype(np.float64) ** 2) + np.sum(Y.astype(np.float64) ** 2))
    assert rel_error((squared_residual(X, Y, data, chunk=chunk) + lam * norms) / max(P.nnz, 1),
                     ref.reconstruction_loss(X, Y, dense.T, C, lam)) < TOL[dtype]


def test_nothing_observed_gives_zero_factors_and_uniform_confidence_is_ones(xp):
    X, Y, R, _ = random_problem(4, 10, 2, seed=1)
    P = R.T.copy()
    P[3] = 0.0
    P[:, 2] = 0.0
    S = check_sparse_probabilities(sp.csr_array(P))  # the zeros are not stored
    ones, empty = sparse_data(S, np.ones(S.nnz), xp), sparse_data(S, np.empty(0), xp)
    Y_got = arrays.to_host(update_instance_factors(X, empty, 0.5))
    np.testing.assert_array_equal(Y_got[:, 3], 0.0)
    np.testing.assert_array_equal(Y_got, arrays.to_host(update_instance_factors(X, ones, 0.5)))
    np.testing.assert_array_equal(arrays.to_host(update_classifier_factors(Y, empty, 0.5))[:, 2], 0.0)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("confidence,fraction", [("uniform", 0.0), ("certainty", 0.3), ("label_aware", 0.9),
                                                 ("calibration", 0.6)])
def test_a_sparse_cupy_fit_matches_the_reference_and_numba(ensemble, dtype, confidence, fraction):
    P, labels = ensemble
    S, dense = sparse_and_dense(P, fraction, seed=4)
    got = _fit(S, labels, backend="cupy", dtype=dtype, confidence=confidence)
    want = _fit(dense, labels, backend="numpy", dtype=dtype, confidence=confidence)
    assert rel_error(got.transductive_proba_, want.transductive_proba_) < REF_TOL[dtype]
    assert rel_error(got.history_["loss"], want.history_["loss"]) < REF_TOL[dtype]
    assert rel_error(got.history_["reconstruction"], want.history_["reconstruction"]) < REF_TOL[dtype]
    assert got.held_out_average_precision_of_mean_ == pytest.approx(want.held_out_average_precision_of_mean_)
    numba = _fit(S, labels, dtype=dtype, confidence=confidence)
    assert rel_error(got.instance_factors_, numba.instance_factors_) < NUMBA_TOL[dtype]
    assert rel_error(got.classifier_factors_, numba.classifier_factors_) < NUMBA_TOL[dtype]
    new, new_dense = sparse_and_dense(P[:50], 0.5, seed=7)
    assert rel_error(got.predict_proba(new), want.predict_proba(new_dense)) < REF_TOL[dtype]
    assert rel_error(got.transform(new), want.transform(new_dense)) < REF_TOL[dtype]


def test_a_user_confidence_and_the_edge_cases(ensemble):
    P, labels = ensemble
    S, dense = sparse_and_dense(P, 0.4, seed=1)
    C = np.where(np.isnan(dense), -5.0, np.abs(P - 0.5) + 0.1)  # ignored where unobserved
    got = _fit(S, labels, backend="cupy", confidence=C)
    want = _fit(dense, labels, backend="numpy", confidence=C)
    assert rel_error(got.transductive_proba_, want.transductive_proba_) < REF_TOL["float64"]
    S = S.tolil()
    S[5, :] = 0
    S = sp.csr_array(S)
    S.eliminate_zeros()
    np.testing.assert_array_equal(_fit(S, labels, backend="cupy").instance_factors_[:, 5], 0.0)
    with pytest.raises(ValueError, match="instance 5 has zero confidence everywhere"):
        _fit(S, labels, backend="cupy", lam=0.0)
    for trainer in ("exact", "joint"):
        with pytest.raises(ValueError, match=f"trainer={trainer!r}"):
            _fit(S, labels, backend="cupy", trainer=trainer)
