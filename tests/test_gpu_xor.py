"""The XOR family on the cuda backend (kernels/gpu/xor.py through fastdl.xor) against the numpy
reference: the same draws, the same lazy-search counts, the same gradient descent.

Under numba's CUDA simulator every device thread runs as Python (a few thousand lazy-search
draws a second), so the shapes are tiny there and cuda_scale makes them real on a device.
"""

import numpy as np
import pytest

import fastdl
from fastdl import _device
from fastdl import xor as X

import naive
from conftest import cuda_simulated, ready_backends

pytestmark = pytest.mark.cuda

# Searches 0, 1, 2 of this seed end after 512, 2151 and 3255 draws (a typical search takes
# ~100,000), which keeps the simulator's lazy search to a couple of seconds.
QUICK_SEED = 8094
QUICK_DRAWS = [512, 2151, 3255]


def assert_same_draws(got, n_draws, search, seed, first_draw=0):
    """got == draw_weights(n_draws, search, seed, first_draw) of the CPU backends.

    The numpy reference's vectorised log may differ from the C library's in the last bit, so
    against it the draws agree to rounding; tests/naive.py, like the Numba kernels and the
    simulator, calls the C library's log, so against it they are the same bits. On a device
    libdevice's log may differ from the C library's in the last bit.
    """
    assert isinstance(got, np.ndarray) and got.dtype == np.float64 and got.shape == (n_draws, 9)
    expected = X.draw_weights(n_draws, search=search, seed=seed, first_draw=first_draw, backend="numpy")
    np.testing.assert_allclose(got, expected, rtol=1e-14, atol=1e-15)
    expected = np.array([naive.xor_draw(seed, search, first_draw + j) for j in range(n_draws)]).reshape(-1, 9)
    if cuda_simulated():
        np.testing.assert_array_equal(got, expected)
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-15, atol=1e-16)


def test_draws_match_reference(cuda_backend, cuda_scale):
    n = 5 * cuda_scale
    for search, seed, first_draw in ((0, 0, 0), (3, 11, 1000), (2**64 - 1, 2**64 - 1, 2**53)):
        got = X.draw_weights(n, search=search, seed=seed, first_draw=first_draw, backend=cuda_backend)
        assert_same_draws(got, n, search, seed, first_draw)


def test_no_draws(cuda_backend):
    assert_same_draws(X.draw_weights(0, backend=cuda_backend), 0, 0, 0)


def test_small_and_large_seeds_in_one_process(cuda_backend):
    """A seed of 2**63 or more after a small one (a Python int types as int64 or uint64 by size)."""
    for seed in (1, 2**64 - 1, 5, 2**63):
        assert_same_draws(X.draw_weights(2, search=seed, seed=seed, backend=cuda_backend), 2, seed, seed)


def test_lazy_search_counts_match_reference(cuda_backend, cuda_scale):
    n = len(QUICK_DRAWS) * cuda_scale
    got = X.lazy_search(n, seed=QUICK_SEED, backend=cuda_backend)
    assert isinstance(got, np.ndarray) and got.dtype == np.int64 and got.shape == (n,)
    np.testing.assert_array_equal(got[:len(QUICK_DRAWS)], QUICK_DRAWS)
    np.testing.assert_array_equal(got, X.lazy_search(n, seed=QUICK_SEED, backend="numpy"))


def test_lazy_search_one_search(cuda_backend):
    np.testing.assert_array_equal(X.lazy_search(1, seed=QUICK_SEED, backend=cuda_backend), QUICK_DRAWS[:1])


def assert_same_training(got, w0, lr, max_iter):
    """got == train_xor(w0, lr, max_iter) of the CPU backends: the same states and misclassified
    counts, the same mse and weights to rounding against the numpy reference (vectorised exp and
    sums) and, on the simulator, the same bits as the compiled CPU backends (the same float64
    operations in the same order; on a device, libdevice's exp may differ in the last bit)."""
    for name in ready_backends():
        expected = X.train_xor(w0, lr, max_iter=max_iter, backend=name)
        assert got.n_iterations == expected.n_iterations and got.converged == expected.converged
        for field in ("weights", "mse", "n_misclassified"):
            array, wanted = getattr(got, field), getattr(expected, field)
            assert isinstance(array, np.ndarray) and array.dtype == wanted.dtype
        np.testing.assert_array_equal(got.n_misclassified, expected.n_misclassified)
        if name != "numpy" and cuda_simulated():
            np.testing.assert_array_equal(got.mse, expected.mse)
            np.testing.assert_array_equal(got.weights, expected.weights)
        else:
            rtol = 1e-5 if got.weights.dtype == np.float32 else 1e-12 if cuda_simulated() else 1e-10
            np.testing.assert_allclose(got.mse, expected.mse, rtol=rtol)
            np.testing.assert_allclose(got.weights, expected.weights, rtol=rtol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_train_matches_cpu_backends(cuda_backend, cuda_scale, dtype):
    # lr 4 from these starts converges in 150, 97 and 146 states; max_iter 60 stops one early.
    for start, max_iter in ((3, 300 * cuda_scale), (9, 300 * cuda_scale), (13, 300 * cuda_scale), (3, 60)):
        w0 = np.random.default_rng(start).normal(0, 1, 9).astype(dtype)
        got = X.train_xor(w0, 4.0, max_iter=max_iter, backend=cuda_backend)
        assert got.converged == (max_iter > 60)
        assert_same_training(got, w0, 4.0, max_iter)


def test_train_course_run(cuda_backend, cuda_scale):
    """The course's lr 0.8 run: 2963 states on every backend (on the simulator, its first 200)."""
    w0 = np.random.RandomState(42).normal(0, 1, 9)
    got = X.train_xor(w0, 0.8, max_iter=200 * cuda_scale, backend=cuda_backend)
    assert got.n_iterations == (200 if cuda_scale == 1 else 2963)
    assert_same_training(got, w0, 0.8, 200 * cuda_scale)


def test_train_takes_device_weights(cuda_backend):
    w0 = np.random.default_rng(9).normal(0, 1, 9)
    device_weights = _device.to_device(w0)
    got = X.train_xor(device_weights, 4.0, max_iter=300, backend=cuda_backend)
    assert isinstance(got.weights, np.ndarray)  # XORResult is NumPy on every backend
    assert_same_training(got, w0, 4.0, 300)
    np.testing.assert_array_equal(device_weights.copy_to_host(), w0)  # the input is left alone
    with pytest.raises(ValueError, match="9"):
        X.train_xor(_device.to_device(np.zeros(8)), 4.0, backend=cuda_backend)
    bad = w0.copy()
    bad[2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        X.train_xor(_device.to_device(bad), 4.0, backend=cuda_backend)


def test_ops_through_use_backend(cuda_backend):
    w0 = np.random.default_rng(13).normal(0, 1, 9)
    with fastdl.use_backend(cuda_backend):
        draws = X.draw_weights(3, search=1, seed=4)
        counts = X.lazy_search(2, seed=QUICK_SEED)
        trained = X.train_xor(w0, 4.0, max_iter=300)
    assert_same_draws(draws, 3, 1, 4)
    np.testing.assert_array_equal(counts, QUICK_DRAWS[:2])
    assert_same_training(trained, w0, 4.0, 300)


def test_set_backend(cuda_backend):
    fastdl.set_backend(cuda_backend)
    np.testing.assert_array_equal(X.lazy_search(1, seed=QUICK_SEED), QUICK_DRAWS[:1])


def test_validation_before_the_device(cuda_backend):
    with pytest.raises(ValueError, match="n_successes"):
        X.lazy_search(0, backend=cuda_backend)
    with pytest.raises(ValueError, match="seed"):
        X.draw_weights(2, seed=-1, backend=cuda_backend)
    with pytest.raises(ValueError, match="lr"):
        X.train_xor(np.zeros(9), -1.0, backend=cuda_backend)
