"""Bounded float64 temporaries: the helpers of cfe_fast._float64 against plain NumPy, and the
memory a fit allocates (traced by tracemalloc, so the figure is exact and does not depend on
the machine) against the issue's bound of 1.5x the bytes of R, C and the factors."""

import tracemalloc

import numpy as np
import pytest

from cfe_fast import CFEnsembleClassifier, _float64, config
from cfe_fast.training.state import initial_instance_factors


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 3 columns of d = 5 (120 bytes): every helper crosses many block boundaries."""
    monkeypatch.setattr(config, "FLOAT64_BLOCK_BYTES", 120)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 3, 7, 200])
def test_float64_helpers_match_numpy(small_blocks, dtype, n):
    rng = np.random.default_rng(n)
    Yt = rng.standard_normal((n, 5)).astype(dtype)  # instance-major, as the kernels return it
    F = Yt.T
    v = rng.standard_normal(5)
    F64 = F.astype(np.float64)
    np.testing.assert_allclose(_float64.matvec64(v, F), v @ F64, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(_float64.gram64(F), F64 @ F64.T, rtol=1e-12, atol=1e-12)
    assert _float64.squared_norm(Yt) == pytest.approx(float(np.sum(F64**2)), rel=1e-12)
    assert _float64.matvec64(v, F).dtype == np.float64


def test_blocks_cover_the_range_once():
    ranges = list(_float64.blocks(10, config.FLOAT64_BLOCK_BYTES // 24))  # 3 items of that many float64 per block
    assert ranges == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert list(_float64.blocks(0, 4)) == []


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_initial_factors_drawn_in_blocks_equal_one_draw(small_blocks, dtype):
    Y = initial_instance_factors(np.random.default_rng(7), 11, 5, dtype)
    expected = (np.random.default_rng(7).standard_normal((11, 5)) / np.sqrt(5)).astype(dtype)
    assert Y.dtype == dtype
    np.testing.assert_array_equal(Y, expected)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("solver", ["auto", "cg"])
def test_fit_allocates_at_most_half_the_data_on_top(monkeypatch, dtype, solver):
    """Peak traced allocations of a fit (R allocated before) <= 1.5 (R + C + factors) bytes.

    This caught a float64 copy of Y per step (the CG start, converted for the
    exact solvers too), float64 copies of float32 factors in the monitors, and
    an n x d float64 draw of the initial factors.
    """
    n, m, d = 200_000, 18, 9
    monkeypatch.setattr(config, "FLOAT64_BLOCK_BYTES", 256 * 1024)  # blocks of 4 MiB weigh on a small n
    rng = np.random.default_rng(0)
    P = rng.random((n, m)).astype(dtype)
    labels = np.where(rng.random(n) < 0.5, (rng.random(n) < 0.3).astype(float), np.nan)
    model = CFEnsembleClassifier(latent_dim=d, max_iter=3, tol=0.0, dtype=dtype, solver=solver, random_state=0)
    model.fit(P[:300], labels[:300])  # JIT compile outside the traced window
    tracemalloc.start()
    try:
        model.fit(P, labels)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    data = 2 * P.nbytes + (n + m) * d * P.itemsize
    print(f"{dtype} {solver}: peak {(peak + P.nbytes) / data:.3f} x data")
    assert (peak + P.nbytes) / data <= 1.5
