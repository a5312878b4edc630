"""Two accuracy fixes: the dense bias gradient of a big batch (float32 GEMV blocks added in float64)
and Adam's second moment where grad^2 overflows (no inf - inf = NaN), on every backend."""

import importlib
import math

import numpy as np
import pytest

import fastdl
from fastdl import backend as _backend
from fastdl import nn
from fastdl.nn.module import Parameter
from fastdl.ops import dense_grad
from fastdl.ops.dense import ACTIVATIONS, SUM_BLOCK, activation_grad_into, column_sums_into

from conftest import ready_backends

# ----------------------------------------------------------------------------------------------
# Dense bias gradient


def _big_batch(dtype, n_rows=64 * SUM_BLOCK + 77):
    """Rows near 0.1: float32 sums of them row after row are off by ~4e-6 at this length, the
    blocks' float64 total by ~1e-7."""
    rng = np.random.default_rng(0)
    return (0.1 + 0.001 * rng.standard_normal((n_rows, 3))).astype(dtype)


def _exact_column_sums(rows):
    return np.array([math.fsum(column) for column in rows.astype(np.float64).T])


def test_dense_bias_gradient_of_a_big_batch_is_accurate(backend, dtype):
    dout = _big_batch(dtype)
    x, kernel = np.ones((dout.shape[0], 1), dtype), np.ones((1, dout.shape[1]), dtype)
    *_, dbias = dense_grad(x, kernel, dout, backend=backend)
    assert dbias.dtype == dtype
    # float32: the blocks' own rounding plus the total's (PyTorch's torch.sum: ~1e-7).
    tol = 3e-7 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(dbias, _exact_column_sums(dout), rtol=tol)


def test_dense_layer_bias_gradient_of_a_big_batch_is_accurate(backend, dtype):
    """nn.Dense's backward sums the bias gradient in its activation pass (activation_grad_into)."""
    dout = _big_batch(dtype)
    out = np.ones_like(dout)  # ReLU's output above 0: the gradient passes unchanged
    dpre, dbias = np.empty_like(dout), np.empty(dout.shape[1], dtype)
    activation_grad_into(out, dout, ACTIVATIONS["relu"], dpre, backend, column_sums=dbias)
    tol = 3e-7 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(dbias, _exact_column_sums(dout), rtol=tol)


def test_big_batch_bias_gradient_has_the_same_bits_everywhere(dtype):
    dout = _big_batch(dtype)
    x, kernel = np.ones((dout.shape[0], 2), dtype), np.ones((2, dout.shape[1]), dtype)
    results = []
    for name in ready_backends():
        for threads in (1, 2):
            fastdl.set_num_threads(threads)
            results.append(dense_grad(x, kernel, dout, backend=name)[2])
    for got in results:
        np.testing.assert_array_equal(got, results[0])


@pytest.mark.parametrize("n_rows", [1, 32, 128, SUM_BLOCK])
def test_a_batch_up_to_the_block_is_one_gemv(dtype, n_rows):
    """A training batch's bias gradient keeps its bits (and its cost): one GEMV with a row of ones."""
    rows = np.random.default_rng(1).standard_normal((n_rows, 5)).astype(dtype)
    np.testing.assert_array_equal(column_sums_into(rows), np.dot(np.ones(n_rows, dtype), rows))


def test_column_sums_of_no_rows_and_into_out(dtype):
    np.testing.assert_array_equal(column_sums_into(np.zeros((0, 3), dtype)), np.zeros(3, dtype))
    rows = _big_batch(dtype)
    out = np.empty(3, dtype)
    assert column_sums_into(rows, out) is out
    np.testing.assert_array_equal(out, column_sums_into(rows))


# ----------------------------------------------------------------------------------------------
# Adam where grad^2 overflows

# A gradient whose square overflows the dtype, though (1 - beta_2) grad^2 does not.
HUGE = {np.float32: 2e19, np.float64: 1e155}


def _adam(backend, dtype, grads):
    parameter = Parameter(np.zeros(len(grads[0]), dtype))
    optimizer = nn.Adam(1e-3)
    optimizer.attach([parameter], backend)
    for grad in grads:
        parameter.grad = np.asarray(grad, dtype)
        optimizer.step()
    return parameter.value, optimizer.state["v"][0]


def test_adam_keeps_a_second_moment_whose_gradient_squared_overflows(backend, dtype):
    huge = HUGE[dtype]
    value, v = _adam(backend, dtype, [[huge, -huge, 1.0]] * 2)
    # As PyTorch (float32: -0.002 and exp_avg_sq 7.996e35): two steps of lr towards -sign(grad).
    np.testing.assert_allclose(value, [-2e-3, 2e-3, -2e-3], rtol=1e-5)
    second_moment = (1 - 0.999**2) * huge * huge
    np.testing.assert_allclose(v[:2], second_moment, rtol=1e-5)


def test_adam_second_moment_past_the_dtype_stays_inf_not_nan(backend, dtype):
    """(1 - beta_2) grad^2 above the dtype's largest: v is inf, and the parameter stops (PyTorch's
    float32 does the same), then and at the steps after, with ordinary gradients."""
    past = {np.float32: 1e21, np.float64: 1e160}[dtype]
    value, v = _adam(backend, dtype, [[past, 1.0], [1.0, 1.0], [1.0, 1.0]])
    assert v[0] == np.inf and np.isfinite(v[1])
    assert np.all(np.isfinite(value)) and value[0] == 0.0


def test_adam_keeps_keras_bits_for_ordinary_values(backend, dtype):
    """Where grad^2 - v is finite the update is Keras' v += (1 - beta_2) (grad^2 - v), rounded in
    the dtype step by step, as before."""
    rng = np.random.default_rng(2)
    n = 257
    grad = (rng.standard_normal(n) * 10.0 ** rng.integers(-20, 17, n)).astype(dtype)
    v = (rng.random(n) * 10.0 ** rng.integers(-30, 30, n)).astype(dtype)
    m, value = np.zeros(n, dtype), np.ones(n, dtype)
    scalars = [dtype(s) for s in (1e-3, 0.1, 1e-3, 1e-7)]
    expected = v + scalars[2] * (grad * grad - v)
    _backend.kernels("optim", backend)[0].adam_step(value, grad, m, v, *scalars, 1)
    np.testing.assert_array_equal(v, expected)


def test_adam_overflow_has_the_same_bits_everywhere(dtype):
    """Gradients about where grad^2 overflows, and past where v does, mixed with ordinary ones."""
    rng = np.random.default_rng(3)
    top = np.log10(np.finfo(dtype).max)
    grads = [(rng.standard_normal(300) * 10.0 ** rng.uniform(-2, top / 2 + 2, 300)).astype(dtype) for _ in range(4)]
    results = []
    for name in ready_backends():
        for threads in (1, 2):
            fastdl.set_num_threads(threads)
            results.append(np.concatenate(_adam(name, dtype, grads)))
    assert np.isinf(results[0]).any() and not np.isnan(results[0]).any()
    for got in results:
        np.testing.assert_array_equal(got, results[0])


@pytest.mark.cuda
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the simulator's NumPy scalars
def test_cuda_adam_where_the_gradient_squared_overflows(cuda_backend, dtype):
    from numba import cuda

    gpu = importlib.import_module("fastdl.kernels.gpu.optim")
    reference = _backend.kernels("optim", "numpy")[0]
    huge = HUGE[dtype]
    scalars = [dtype(s) for s in (1e-3, 0.1, 1e-3, 1e-7)]
    state = [np.zeros(3, dtype) for _ in range(3)]  # value, m, v
    device_state = [cuda.to_device(a) for a in state]
    for grad in ([huge, -huge, 1.0], [huge, 1.0, -huge]):
        grad = np.array(grad, dtype)
        reference.adam_step(state[0], grad, state[1], state[2], *scalars, 1)
        gpu.adam_step(device_state[0], cuda.to_device(grad), device_state[1], device_state[2], *scalars, 1)
    for got, want in zip(device_state, state):
        got = got.copy_to_host()
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12)
