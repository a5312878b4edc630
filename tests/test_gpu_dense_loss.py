"""The dense and loss kernel families on the cuda backend against the numpy reference kernels.

The cuda modules are imported directly, so each launcher is tested on its own (tests/test_nn_cuda.py
and tests/test_ops_cuda.py test them inside the ops and the layers).
Under numba's CUDA simulator every GPU thread runs as Python, so the shapes are tiny (cuda_scale
makes them larger on a device).
"""

import math

import numpy as np
import pytest

from conftest import RTOL
from fastdl import backend as fastdl_backend

pytestmark = pytest.mark.cuda

ACTIVATIONS = {"linear": 0, "relu": 1, "sigmoid": 2, "tanh": 3, "leaky_relu": 4}


def _cuda():
    from numba import cuda

    return cuda


def _gpu(family):
    import importlib

    return importlib.import_module(f"fastdl.kernels.gpu.{family}")


def _reference(family):
    return fastdl_backend.kernels(family, "numpy")[0]


def _close(actual, expected, dtype):
    assert actual.dtype == expected.dtype
    np.testing.assert_allclose(actual, expected, rtol=RTOL[dtype], atol=RTOL[dtype])


def _losses_close(actual, expected):
    """The row losses: float64 on both sides."""
    assert actual.dtype == np.float64
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12)


# Dense ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no_bias"])
def test_bias_activation(cuda_backend, cuda_scale, dtype, activation, with_bias, rng):
    cuda = _cuda()
    n, m = 3 * cuda_scale, 5
    out = (rng.standard_normal((n, m)) * 3).astype(dtype)
    bias = rng.standard_normal(m).astype(dtype) if with_bias else np.empty(0, dtype)
    alpha = dtype(0.2)
    out_d = cuda.to_device(out)
    _gpu("dense").bias_activation(out_d, cuda.to_device(bias), ACTIVATIONS[activation], alpha, 1)
    _reference("dense").bias_activation(out, bias, ACTIVATIONS[activation], alpha, 1)
    _close(out_d.copy_to_host(), out, dtype)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_backward(cuda_backend, cuda_scale, dtype, activation, rng):
    cuda = _cuda()
    n, m = 3 * cuda_scale, 5
    code, alpha = ACTIVATIONS[activation], dtype(0.2)
    out = (rng.standard_normal((n, m)) * 3).astype(dtype)
    _reference("dense").bias_activation(out, np.empty(0, dtype), code, alpha, 1)  # a real output
    dout = rng.standard_normal((n, m)).astype(dtype)
    expected = np.empty_like(out)
    _reference("dense").activation_backward(out, dout, code, alpha, expected, 1)
    out_d, dout_d = cuda.to_device(out), cuda.to_device(dout)
    dpre_d = cuda.device_array((n, m), dtype)
    _gpu("dense").activation_backward(out_d, dout_d, code, alpha, dpre_d, 1)
    _close(dpre_d.copy_to_host(), expected, dtype)
    _gpu("dense").activation_backward(out_d, dout_d, code, alpha, dout_d, 1)  # in place, dpre is dout
    _close(dout_d.copy_to_host(), expected, dtype)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("n", [0, 1, 5])
def test_activation_backward_sums(cuda_backend, cuda_scale, dtype, activation, n, rng):
    """The activation's gradient and its column sums (a dense layer's bias gradient) in one launch:
    blocks of columns (9 leave the last block part-empty) by row groups (5 rows: uneven groups)."""
    cuda = _cuda()
    n, m = n * cuda_scale, 9
    code, alpha = ACTIVATIONS[activation], dtype(0.2)
    out = (rng.standard_normal((n, m)) * 3).astype(dtype)
    _reference("dense").bias_activation(out, np.empty(0, dtype), code, alpha, 1)
    dout = rng.standard_normal((n, m)).astype(dtype)
    expected = np.empty_like(out)
    _reference("dense").activation_backward(out, dout, code, alpha, expected, 1)
    out_d, dout_d = cuda.to_device(out), cuda.to_device(dout)
    dpre_d, sums_d = cuda.device_array((n, m), dtype), cuda.to_device(np.full(m, np.nan, dtype))
    _gpu("dense").activation_backward_sums(out_d, dout_d, code, alpha, dpre_d, sums_d, 1)
    _close(dpre_d.copy_to_host(), expected, dtype)
    _close(sums_d.copy_to_host(), expected.sum(axis=0, dtype=np.float64).astype(dtype), dtype)
    _gpu("dense").activation_backward_sums(out_d, dout_d, code, alpha, dout_d, sums_d, 1)  # dpre is dout
    _close(dout_d.copy_to_host(), expected, dtype)
    _close(sums_d.copy_to_host(), expected.sum(axis=0, dtype=np.float64).astype(dtype), dtype)


def test_dense_on_strided_rows(cuda_backend, dtype, rng):
    """A column slice (non-contiguous rows) works as the contiguous array."""
    cuda = _cuda()
    full = (rng.standard_normal((3, 8)) * 3).astype(dtype)
    bias = rng.standard_normal(5).astype(dtype)
    full_d = cuda.to_device(full)
    _gpu("dense").bias_activation(full_d[:, 1:6], cuda.to_device(bias), 2, dtype(0.2), 1)
    expected = full.copy()
    _reference("dense").bias_activation(expected[:, 1:6], bias, 2, dtype(0.2), 1)
    _close(full_d.copy_to_host(), expected, dtype)


# Loss ----------------------------------------------------------------------------------------------


def _logits(rng, dtype, n, c, spread=30.0):
    return (rng.standard_normal((n, c)) * spread).astype(dtype)


def _run_loss(kernel, values, *args):
    """(row losses, gradient) of a loss kernel on the device; args (host arrays or scalars) end with
    the scale."""
    cuda = _cuda()
    args = [cuda.to_device(a) if isinstance(a, np.ndarray) else a for a in args]
    grad_d = cuda.device_array(values.shape, values.dtype)
    row_loss_d = cuda.device_array(values.shape[0], np.float64)
    kernel(cuda.to_device(values), *args, grad_d, row_loss_d, 1)
    return row_loss_d.copy_to_host(), grad_d.copy_to_host()


def _run_reference(kernel, values, *args):
    grad = np.empty_like(values)
    row_loss = np.empty(values.shape[0])
    kernel(values, *args, grad, row_loss, 1)
    return row_loss, grad


def _check_loss(name, dtype, values, *args):
    got = _run_loss(getattr(_gpu("loss"), name), values, *args)
    want = _run_reference(getattr(_reference("loss"), name), values, *args)
    _losses_close(got[0], want[0])
    _close(got[1], want[1], dtype)
    return got


def test_softmax_and_its_gradient(cuda_backend, cuda_scale, dtype, rng):
    cuda = _cuda()
    z = _logits(rng, dtype, 3 * cuda_scale, 5)
    expected = np.empty_like(z)
    _reference("loss").softmax(z, expected, 1)
    z_d, out_d = cuda.to_device(z), cuda.device_array(z.shape, dtype)
    _gpu("loss").softmax(z_d, out_d, 1)
    out = out_d.copy_to_host()
    _close(out, expected, dtype)
    np.testing.assert_allclose(out.sum(axis=1), 1, rtol=RTOL[dtype])

    dout = rng.standard_normal(z.shape).astype(dtype)
    expected_dpre = np.empty_like(z)
    _reference("loss").softmax_backward(out, dout, expected_dpre, 1)
    dout_d, dpre_d = cuda.to_device(dout), cuda.device_array(z.shape, dtype)
    _gpu("loss").softmax_backward(out_d, dout_d, dpre_d, 1)
    _close(dpre_d.copy_to_host(), expected_dpre, dtype)

    _gpu("loss").softmax(z_d, z_d, 1)  # in place, as the activation layers may call it
    np.testing.assert_array_equal(z_d.copy_to_host(), out)


def test_softmax_xent_codes_and_targets(cuda_backend, cuda_scale, dtype, rng):
    n, c = 3 * cuda_scale, 5
    logits = _logits(rng, dtype, n, c)
    codes = rng.integers(0, c, n).astype(np.int64)
    got = _check_loss("softmax_xent_codes", dtype, logits, codes, 1 / n)
    soft = rng.random(logits.shape)  # not one-hot: sum(t) != 1
    _check_loss("softmax_xent_targets", dtype, logits, soft, 1 / n)
    onehot = np.eye(c)[codes]
    by_targets = _check_loss("softmax_xent_targets", dtype, logits, onehot, 1 / n)
    _losses_close(by_targets[0], got[0])
    _close(by_targets[1], got[1], dtype)


@pytest.mark.parametrize("period", [0.0, 12.0, 2 * math.pi])
def test_squared_error(cuda_backend, cuda_scale, dtype, period, rng):
    n, m = 3 * cuda_scale, 5
    y_pred = (rng.standard_normal((n, m)) * 20).astype(dtype)
    y_true = rng.uniform(-5, 15, (n, m))
    _check_loss("squared_error", dtype, y_pred, y_true, period, 1 / (n * m))


def test_binary_xent_logits(cuda_backend, cuda_scale, dtype, rng):
    n, m = 3 * cuda_scale, 5
    logits = _logits(rng, dtype, n, m, spread=10.0)
    _check_loss("binary_xent_logits", dtype, logits, rng.random((n, m)), 1 / (n * m))


def test_binary_xent(cuda_backend, cuda_scale, dtype, rng):
    n, m = 3 * cuda_scale, 5
    probs = rng.random((n, m)).astype(dtype)
    probs[0, :2] = 0, 1  # clipped to [1e-7, 1 - 1e-7] (the bounds of float64 outputs)
    _check_loss("binary_xent", dtype, probs, rng.random((n, m)), 1e-7, 1 - 1e-7, 1 / (n * m))


def test_extreme_logits_stay_finite(cuda_backend, dtype):
    """exp only ever sees numbers <= 0: no overflow, no NaN, at +-1e4 in either dtype."""
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]], dtype=dtype)
    row_loss, grad = _check_loss("softmax_xent_codes", dtype, logits, np.zeros(2, np.int64), 0.5)
    np.testing.assert_allclose(row_loss, [0.0, 2e4])
    np.testing.assert_allclose(grad, [[0, 0, 0], [-0.5, 0.5, 0]], atol=1e-12)
    row_loss, grad = _check_loss("binary_xent_logits", dtype, logits, np.ones((2, 3)), 1.0)
    np.testing.assert_allclose(row_loss, [1e4 + math.log(2), 1e4 + math.log(2)])
    assert np.isfinite(grad).all()


def test_dropout(cuda_backend, cuda_scale, dtype, rng):
    cuda = _cuda()
    n, m = 3 * cuda_scale, 5
    x = rng.standard_normal((n, m)).astype(dtype)
    draws = rng.random((n, m))
    kept = dtype(1) / dtype(1 - 0.3)
    out, mask = np.empty_like(x), np.empty_like(x)
    _reference("loss").dropout(x, draws, 0.3, kept, out, mask, 1)
    x_d, draws_d = cuda.to_device(x), cuda.to_device(draws)
    out_d, mask_d = cuda.device_array(x.shape, dtype), cuda.device_array(x.shape, dtype)
    _gpu("loss").dropout(x_d, draws_d, 0.3, kept, out_d, mask_d, 1)
    np.testing.assert_array_equal(mask_d.copy_to_host(), mask)
    np.testing.assert_array_equal(out_d.copy_to_host(), out)
    _gpu("loss").dropout(x_d, draws_d, 0.3, kept, x_d, mask_d, 1)  # in place
    np.testing.assert_array_equal(x_d.copy_to_host(), out)


def test_empty_batches(cuda_backend, dtype):
    """No rows, or rows of no columns: nothing to launch, and a row of no values has no loss."""
    cuda = _cuda()
    gpu = _gpu("loss")
    for shape in [(0, 4), (3, 0)]:
        z_d = cuda.to_device(np.empty(shape, dtype))
        gpu.softmax(z_d, cuda.device_array(shape, dtype), 1)
        gpu.softmax_xent_codes(z_d, cuda.to_device(np.zeros(shape[0], np.int64)), 1.0,
                               cuda.device_array(shape, dtype), cuda.device_array(shape[0]), 1)
        _gpu("dense").bias_activation(z_d, cuda.to_device(np.empty(0, dtype)), 1, dtype(0.2), 1)
    row_loss = _run_loss(gpu.squared_error, np.empty((3, 0), dtype), np.empty((3, 0)), 0.0, 1.0)[0]
    np.testing.assert_array_equal(row_loss, np.zeros(3))
