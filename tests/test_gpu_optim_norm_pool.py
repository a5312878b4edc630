"""The optimizer, batch-normalisation and max-pooling kernels of the cuda backend (kernels/gpu/
optim.py, norm.py, pool.py, called directly with device arrays) against the numpy reference
kernels, float32 and float64.

The modules are imported directly, so each launcher is tested on its own.
Under numba's CUDA simulator every device thread runs as Python: the shapes are tiny there (a
2x4x4x3 image batch) and cuda_scale enlarges them on a device.
"""

import importlib

import numpy as np
import pytest

from fastdl import backend
from fastdl.ops.pool import pool_geometry

pytestmark = pytest.mark.cuda

# Relative tolerances against the numpy reference: the simulator rounds a float32 sqrt through
# float64 and a device may fuse multiply-adds, so float32 agrees to a few ulps, not to the bit.
TIGHT = {np.float32: 1e-5, np.float64: 1e-12}


def gpu(family):
    return importlib.import_module(f"fastdl.kernels.gpu.{family}")


def reference(family):
    return backend.kernels(family, "numpy")[0]


def to_device(*arrays):
    from numba import cuda

    return [cuda.to_device(np.ascontiguousarray(a)) for a in arrays]


def close(got, want, dtype, scale=1.0):
    np.testing.assert_allclose(got, want, rtol=TIGHT[dtype], atol=TIGHT[dtype] * scale)


# ----------------------------------------------------------------------------------------------
# optim: several steps of each update, the slots carried from step to step.

STEPS = 3


def _run_steps(name, dtype, n, scalars, n_slots, rng, empty_slot=False):
    """Apply `name` STEPS times on the device and with the numpy reference; compare value and slots."""
    value = rng.normal(size=n).astype(dtype)
    slots = [np.zeros(0 if empty_slot else n, dtype) for _ in range(n_slots)]
    grads = [rng.normal(size=n).astype(dtype) for _ in range(STEPS)]
    scalars = [dtype(s) for s in scalars]  # NumPy scalars of the parameter's dtype, as fastdl.nn passes
    ref_value, ref_slots = value.copy(), [s.copy() for s in slots]
    d_value, *d_slots = to_device(value, *slots)
    step_gpu, step_ref = getattr(gpu("optim"), name), getattr(reference("optim"), name)
    for g in grads:
        (d_grad,) = to_device(g)
        step_gpu(d_value, d_grad, *d_slots, *scalars, 1)
        step_ref(ref_value, g, *ref_slots, *scalars, 1)
    close(d_value.copy_to_host(), ref_value, dtype, 1.0)
    for d_slot, ref_slot in zip(d_slots, ref_slots):
        got = d_slot.copy_to_host()
        assert got.dtype == dtype and got.shape == ref_slot.shape
        close(got, ref_slot, dtype, float(np.abs(ref_slot).max(initial=1.0)))
    assert not np.array_equal(ref_value, value)


@pytest.mark.parametrize("momentum", [0.0, 0.9], ids=["plain", "momentum"])
def test_sgd_step(cuda_backend, cuda_scale, dtype, rng, momentum):
    _run_steps("sgd_step", dtype, 37 * cuda_scale, (0.1, momentum), 1, rng, empty_slot=momentum == 0.0)


def test_rmsprop_step(cuda_backend, cuda_scale, dtype, rng):
    rho = 0.9
    _run_steps("rmsprop_step", dtype, 37 * cuda_scale, (1e-3, rho, 1 - rho, 1e-7), 1, rng)


def test_adam_step(cuda_backend, cuda_scale, dtype, rng):
    beta_1, beta_2, lr, t = 0.9, 0.999, 1e-3, 1
    alpha = lr * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
    _run_steps("adam_step", dtype, 37 * cuda_scale, (alpha, 1 - beta_1, 1 - beta_2, 1e-7), 2, rng)


def test_optim_empty_parameter(cuda_backend, dtype):
    empty = np.zeros(0, dtype)
    d_value, d_grad, d_m, d_v = to_device(empty, empty, empty, empty)
    kernels = gpu("optim")
    kernels.sgd_step(d_value, d_grad, d_m, dtype(0.1), dtype(0.9), 1)
    kernels.rmsprop_step(d_value, d_grad, d_m, dtype(0.1), dtype(0.9), dtype(0.1), dtype(1e-7), 1)
    kernels.adam_step(d_value, d_grad, d_m, d_v, dtype(0.1), dtype(0.1), dtype(0.001), dtype(1e-7), 1)
    assert d_value.copy_to_host().shape == (0,)


# ----------------------------------------------------------------------------------------------
# norm: rows (n * h * w, channels) of a 2x4x4x3 batch (more on a device).


def _rows(dtype, cuda_scale, rng, offset=0.0):
    return (rng.normal(size=(2 * cuda_scale * 4 * 4, 3)) * [1.0, 3.0, 0.5] + offset).astype(dtype)


@pytest.fixture(params=["per channel", "blocks"])
def reduction(request, monkeypatch):
    """Both ways of the per-channel reductions: a thread per channel, and blocks of row groups
    (taken from BLOCK_ROWS rows on: here from any)."""
    if request.param == "blocks":
        monkeypatch.setattr(gpu("norm"), "BLOCK_ROWS", 0)
    return request.param


@pytest.mark.parametrize("offset", [0.0, 100.0], ids=["centred", "offset 100"])
def test_channel_moments(cuda_backend, cuda_scale, dtype, rng, offset, reduction):
    x = _rows(dtype, cuda_scale, rng, offset)
    d_x, d_mean, d_var = to_device(x, np.empty(3), np.empty(3))
    gpu("norm").channel_moments(d_x, d_mean, d_var, 1)
    mean, var = np.empty(3), np.empty(3)
    reference("norm").channel_moments(x, mean, var, 1)
    # float64 sums for both dtypes: only the order of the additions differs from the reference.
    np.testing.assert_allclose(d_mean.copy_to_host(), mean, rtol=1e-12)
    np.testing.assert_allclose(d_var.copy_to_host(), var, rtol=1e-10)


def test_normalize(cuda_backend, cuda_scale, dtype, rng):
    x = _rows(dtype, cuda_scale, rng, 2.0)
    mean, inv_std, gamma, beta = (rng.normal(size=3).astype(dtype) for _ in range(4))
    inv_std = np.abs(inv_std) + dtype(0.5)
    d_args = to_device(x, mean, inv_std, gamma, beta, np.empty_like(x), np.empty_like(x))
    gpu("norm").normalize(*d_args, 1)
    xhat, out = np.empty_like(x), np.empty_like(x)
    reference("norm").normalize(x, mean, inv_std, gamma, beta, xhat, out, 1)
    for d_got, want in zip(d_args[-2:], (xhat, out)):
        got = d_got.copy_to_host()
        assert got.dtype == dtype
        close(got, want, dtype, float(np.abs(want).max()))


def test_channel_sums(cuda_backend, cuda_scale, dtype, rng, reduction):
    dout, xhat = _rows(dtype, cuda_scale, rng, 0.5), _rows(dtype, cuda_scale, rng)
    d_dout, d_xhat, d_sum, d_sum_xhat = to_device(dout, xhat, np.empty(3), np.empty(3))
    gpu("norm").channel_sums(d_dout, d_xhat, d_sum, d_sum_xhat, 1)
    sums, sums_xhat = np.empty(3), np.empty(3)
    reference("norm").channel_sums(dout, xhat, sums, sums_xhat, 1)
    scale = float(np.abs(dout.astype(np.float64) * xhat).sum())
    np.testing.assert_allclose(d_sum.copy_to_host(), sums, rtol=1e-12, atol=1e-13 * scale)
    np.testing.assert_allclose(d_sum_xhat.copy_to_host(), sums_xhat, rtol=1e-12, atol=1e-13 * scale)


@pytest.mark.parametrize("statistics", ["batch", "moving"])
def test_normalize_backward(cuda_backend, cuda_scale, dtype, rng, statistics):
    dout, xhat = _rows(dtype, cuda_scale, rng), _rows(dtype, cuda_scale, rng)
    gamma, inv_std, mean_dxhat, mean_dxhat_xhat = (rng.normal(size=3).astype(dtype) for _ in range(4))
    if statistics == "moving":
        mean_dxhat = mean_dxhat_xhat = np.zeros(3, dtype)
    d_args = to_device(dout, xhat, gamma, inv_std, mean_dxhat, mean_dxhat_xhat, np.empty_like(dout))
    gpu("norm").normalize_backward(*d_args, 1)
    dx = np.empty_like(dout)
    reference("norm").normalize_backward(dout, xhat, gamma, inv_std, mean_dxhat, mean_dxhat_xhat, dx, 1)
    got = d_args[-1].copy_to_host()
    assert got.dtype == dtype
    close(got, dx, dtype, float(np.abs(dx).max()))


# ----------------------------------------------------------------------------------------------
# pool: windows that tile, overlap (stride 1 and 2), leave cells out (stride > pool), and "same"
# padding (padded cells never win), on 4x4 and 5x5 images; values with many ties.

POOLS = [
    ((4, 4), 2, None, "valid"),  # tiles the image
    ((4, 4), 3, 1, "valid"),  # overlapping: a cell is in up to 4 windows
    ((4, 4), 3, 2, "same"),  # overlapping, padded at the bottom and right
    ((4, 4), 2, 3, "valid"),  # stride > pool: cells in no window get no gradient
    ((5, 5), 2, None, "same"),  # odd size: padded bottom and right
    ((5, 5), 3, 2, "same"),  # padded on every side
    ((5, 5), (2, 3), (1, 2), "same"),  # unequal window and strides
]


@pytest.fixture(params=["ties", "normal"])
def values(request):
    """Images of integers 0..2 (every window has ties) or of normal values."""
    def make(shape, dtype, rng):
        if request.param == "ties":
            return rng.integers(0, 3, size=shape).astype(dtype)
        return rng.normal(size=shape).astype(dtype)

    return make


def _pool_case(case, cuda_scale):
    (h, w), pool_size, strides, padding = case
    shape = (2 * cuda_scale, h, w, 3)
    *window, out_h, out_w = pool_geometry(shape, pool_size, strides, padding)
    return shape, window, (shape[0], out_h, out_w, 3)


@pytest.mark.parametrize("case", POOLS, ids=[f"{p}-{s}-{pad}-{h}x{w}" for (h, w), p, s, pad in POOLS])
def test_max_pool2d_forward(cuda_backend, cuda_scale, dtype, rng, values, case):
    shape, window, out_shape = _pool_case(case, cuda_scale)
    x = values(shape, dtype, rng)
    d_x, d_out = to_device(x, np.full(out_shape, np.nan, dtype))
    gpu("pool").max_pool2d_forward(d_x, d_out, *window, 1)
    want = np.empty(out_shape, dtype)
    reference("pool").max_pool2d_forward(x, want, *window, 1)
    np.testing.assert_array_equal(d_out.copy_to_host(), want)  # a maximum is exact


@pytest.mark.parametrize("case", POOLS, ids=[f"{p}-{s}-{pad}-{h}x{w}" for (h, w), p, s, pad in POOLS])
def test_max_pool2d_backward(cuda_backend, cuda_scale, dtype, rng, values, case):
    shape, window, out_shape = _pool_case(case, cuda_scale)
    x = values(shape, dtype, rng)
    # Integer-valued gradients add up exactly in any order, so the tie rule is checked to the bit;
    # then normal ones, whose overlapping sums the reference adds in another order.
    for dout, exact in ((rng.integers(1, 50, size=out_shape).astype(dtype), True),
                        (rng.normal(size=out_shape).astype(dtype), False)):
        d_x, d_dout, d_dx = to_device(x, dout, np.full(shape, np.nan, dtype))
        gpu("pool").max_pool2d_backward(d_x, d_dout, d_dx, *window, 1)
        want = np.empty(shape, dtype)
        reference("pool").max_pool2d_backward(x, dout, want, *window, 1)
        got = d_dx.copy_to_host()
        if exact:
            np.testing.assert_array_equal(got, want)
        else:
            close(got, want, dtype, float(np.abs(want).max()))
    # Every window's gradient went somewhere: the totals agree.
    np.testing.assert_allclose(got.sum(), dout.astype(np.float64).sum(), rtol=1e-5)


def test_max_pool2d_backward_first_maximum_wins(cuda_backend):
    """A constant image: every window's first cell (row-major) takes its gradient; overlapping
    windows (3x3, stride 1) add up on the cells that are first of several windows."""
    x = np.zeros((1, 4, 4, 1), np.float32)
    dout = np.arange(1, 5, dtype=np.float32).reshape(1, 2, 2, 1)
    d_x, d_dout, d_dx = to_device(x, dout, np.full(x.shape, np.nan, np.float32))
    gpu("pool").max_pool2d_backward(d_x, d_dout, d_dx, 3, 3, 1, 1, 0, 0, 1)
    expected = np.zeros((4, 4), np.float32)
    expected[:2, :2] = [[1, 2], [3, 4]]
    np.testing.assert_array_equal(d_dx.copy_to_host()[0, :, :, 0], expected)

