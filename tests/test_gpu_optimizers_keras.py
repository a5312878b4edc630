"""The cuda backend's kernels for Keras 3's optimizer options (kernels/gpu/optim.py: Nesterov,
RMSprop with momentum and centered, AMSGrad, weight decay, the clipping norms and scales) against
the numpy reference kernels, and an optimizer on device parameters against the same on the host.
Tiny shapes: under numba's CUDA simulator every device thread runs as Python."""

import importlib

import numpy as np
import pytest

from fastdl import _device, nn
from fastdl import backend as fastdl_backend
from fastdl.nn import optimizers_clip
from fastdl.nn.module import Parameter, place_parameters
from fastdl.nn.optimizers import AdamW

pytestmark = pytest.mark.cuda

TIGHT = {np.float32: 1e-5, np.float64: 1e-12}


def gpu():
    return importlib.import_module("fastdl.kernels.gpu.optim")


def reference():
    return fastdl_backend.kernels("optim", "numpy")[0]


def close(got, want, dtype):
    np.testing.assert_allclose(got, want, rtol=TIGHT[dtype], atol=TIGHT[dtype], equal_nan=True)


UPDATES = {  # name, slots (None: empty), scalars
    "sgd_nesterov_step": (["n"], (0.1, 0.9)),
    "rmsprop_momentum_step": (["n", "n", "n"], (1e-2, 0.9, 0.1, 1e-7, 0.5)),
    "rmsprop_momentum (centered only)": (["n", None, "n"], (1e-2, 0.9, 0.1, 1e-7, 0.0)),
    "rmsprop_momentum (momentum only)": (["n", "n", None], (1e-2, 0.9, 0.1, 1e-7, 0.5)),
    "adam_amsgrad_step": (["n", "n", "n"], (1e-2, 0.1, 0.001, 1e-7)),
    "decay_step": ([], (0.1, 0.01)),
}


@pytest.mark.parametrize("name", UPDATES)
def test_update_kernels(cuda_backend, cuda_scale, dtype, rng, name):
    slots, scalars = UPDATES[name]
    n = 37 * cuda_scale
    value = rng.normal(size=n).astype(dtype)
    host_slots = [np.zeros(n if s else 0, dtype) for s in slots]
    d_value, *d_slots = (_device.to_device(a) for a in [value, *host_slots])
    kernel = name.split(" ")[0]
    kernel = kernel if kernel.endswith("_step") else kernel + "_step"
    for _ in range(3):
        grad = rng.normal(size=n).astype(dtype)
        args = [dtype(s) for s in scalars]
        if kernel == "decay_step":  # (no gradient)
            gpu().decay_step(d_value, *args, 1)
            reference().decay_step(value, *args, 1)
        else:
            getattr(gpu(), kernel)(d_value, _device.to_device(grad), *d_slots, *args, 1)
            getattr(reference(), kernel)(value, grad, *host_slots, *args, 1)
    close(d_value.copy_to_host(), value, dtype)
    for d_slot, host_slot in zip(d_slots, host_slots):
        close(d_slot.copy_to_host(), host_slot, dtype)


def test_clipping_kernels(cuda_backend, cuda_scale, dtype, rng):
    n = 45 * cuda_scale
    grad = (rng.normal(size=n) * 2).astype(dtype)
    grad[3], grad[4] = np.nan, -np.inf
    starts = np.array([0, 5, 20, n], np.int64)
    d_grad, d_starts = _device.to_device(grad), _device.to_device(starts)
    sums, d_sums = np.zeros(3), _device.zeros(3, np.float64)
    gpu().block_square_sums(d_grad, d_starts, d_sums, 1)
    reference().block_square_sums(grad, starts, sums, 1)
    np.testing.assert_allclose(d_sums.copy_to_host(), sums, rtol=1e-13, equal_nan=True)
    mul, div = rng.random(3).astype(dtype), (rng.random(3) + 1).astype(dtype)
    out, d_out = np.zeros(n, dtype), _device.zeros(n, dtype)
    gpu().scale_blocks(d_grad, d_starts, _device.to_device(mul), _device.to_device(div), d_out, 1)
    reference().scale_blocks(grad, starts, mul, div, out, 1)
    close(d_out.copy_to_host(), out, dtype)
    gpu().clip_values(d_grad, dtype(-0.5), dtype(0.5), d_out, 1)
    reference().clip_values(grad, dtype(-0.5), dtype(0.5), out, 1)
    np.testing.assert_array_equal(d_out.copy_to_host(), out)
    assert np.isnan(out[3]) and out[4] == -np.inf and np.abs(out[np.isfinite(out)]).max() == dtype(0.5)


@pytest.mark.parametrize("make", [lambda: nn.SGD(0.1, 0.9, True, clipnorm=0.5, weight_decay=0.01),
                                  lambda: nn.RMSprop(0.01, 0.9, 0.5, 1e-7, True, global_clipnorm=1.0),
                                  lambda: AdamW(0.01, 0.1, amsgrad=True, clipvalue=0.3)],
                         ids=["nesterov_clipnorm", "rmsprop_global", "adamw_clipvalue"])
def test_optimizer_on_the_device_as_on_the_host(cuda_backend, dtype, monkeypatch, make):
    """Two flat buffers on the device, norms over blocks of 8 (several per parameter)."""
    monkeypatch.setattr(optimizers_clip, "BLOCK", 8)
    rng = np.random.default_rng(0)
    shapes = [(3, 7), (5,), (2, 4)]
    start = [rng.normal(size=s).astype(dtype) for s in shapes]
    steps = [[(rng.normal(size=s) * 2).astype(dtype) for s in shapes] for _ in range(3)]
    results = []
    for on_device in (False, True):
        params = [Parameter(v.copy()) for v in start]
        place_parameters(params[:2], on_device=on_device)
        place_parameters(params[2:], on_device=on_device)
        opt = make()
        opt.attach(params, "numpy")
        assert len(opt._runs) == 2 and opt._backend == ("cuda" if on_device else "numpy")
        for grads in steps:
            for p, g in zip(params, grads):
                _device.assign(p.grad, g)
            opt.step()
        results.append([_device.host_copy(p.value) for p in params] +
                       [_device.host_copy(s) for name in opt.slots for s in opt.state[name]])
    for got, want in zip(results[1], results[0]):
        close(got, want, dtype)
