"""The absolute-error loss kernel (MeanAbsoluteError, CyclicMAE, Huber) on the cuda backend against
the numpy reference kernel, and a model trained on "mae" and Huber as on the CPU. Under numba's CUDA
simulator every GPU thread runs as Python, so the shapes are tiny."""

import math

import numpy as np
import pytest

from conftest import RTOL
from fastdl import backend as fastdl_backend
from fastdl import nn
from fastdl._device import is_device
from fastdl.nn.losses import Huber

pytestmark = pytest.mark.cuda


def _run(kernels, values, y_true, *args, on_device):
    """(row losses, gradient) of absolute_error; args are period, delta, scale."""
    grad, row_loss = np.empty_like(values), np.empty(values.shape[0])
    if not on_device:
        kernels.absolute_error(values, y_true, *args, grad, row_loss, 1)
        return row_loss, grad
    from numba import cuda

    grad_d, row_loss_d = cuda.to_device(grad), cuda.to_device(row_loss)
    kernels.absolute_error(cuda.to_device(values), cuda.to_device(y_true), *args, grad_d, row_loss_d, 1)
    return row_loss_d.copy_to_host(), grad_d.copy_to_host()


def _both(values, y_true, *args):
    got = _run(fastdl_backend.kernels("loss", "cuda")[0], values, y_true, *args, on_device=True)
    want = _run(fastdl_backend.kernels("loss", "numpy")[0], values, y_true, *args, on_device=False)
    return got, want


@pytest.mark.parametrize("period", [0.0, 12.0, 2 * math.pi])
@pytest.mark.parametrize("delta", [0.0, 1.5])
def test_absolute_error(cuda_backend, cuda_scale, dtype, period, delta, rng):
    n, m = 3 * cuda_scale, 5
    y_pred = (rng.standard_normal((n, m)) * 20).astype(dtype)
    y_true = rng.uniform(-5, 15, (n, m))
    y_pred[0, :3] = 2.0
    y_true[0, :3] = 2.0, 2.0 + delta, 2.0 - delta  # the kinks: e == 0, e == -+delta
    y_pred[1, 0] = np.nan
    (got_loss, got_grad), (want_loss, want_grad) = _both(y_pred, y_true, period, delta, 1 / (n * m))
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got_grad, want_grad, rtol=RTOL[dtype], atol=RTOL[dtype])
    assert np.isnan(got_loss[1]) and np.isnan(got_grad[1, 0]) and got_grad[0, 0] == 0


def test_empty_batches(cuda_backend, dtype):
    for shape in [(0, 4), (3, 0)]:
        (row_loss, _), _ = _both(np.empty(shape, dtype), np.empty(shape), 0.0, 1.0, 1.0)
        np.testing.assert_array_equal(row_loss, np.zeros(shape[0]))


@pytest.mark.parametrize("loss, dtype", [("mae", np.float32), ("huber", np.float64)])
def test_a_model_trains_as_on_the_cpu(cuda_backend, loss, dtype):
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (6, 3))
    y = rng.uniform(0, 12, (6, 2))
    results = []
    for backend in ("numpy", "cuda"):
        model = nn.Sequential([nn.Input((3,)), nn.Dense(2)], seed=3, dtype=dtype, backend=backend)
        model.compile(nn.SGD(0.1), "mae" if loss == "mae" else Huber(0.5, period=12))
        history = model.fit(x, y, epochs=2, batch_size=3, verbose=0)
        results.append((history.history["loss"], model.get_weights(), model.evaluate(x, y, verbose=0)))
    assert model.on_device and is_device(model.layers[-1].kernel.value)
    tol = {np.float32: 2e-5, np.float64: 1e-10}[dtype]
    (h_cpu, w_cpu, e_cpu), (h_gpu, w_gpu, e_gpu) = results
    np.testing.assert_allclose(h_gpu, h_cpu, rtol=tol, atol=tol)
    for a, b in zip(w_cpu, w_gpu):
        np.testing.assert_allclose(b, a, rtol=tol, atol=tol)
    assert e_gpu == pytest.approx(e_cpu, rel=tol)
