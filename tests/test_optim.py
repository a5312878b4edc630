"""Optimizer update kernels: Keras' formulas, the same bits on every backend, and the optimizers on top."""

import importlib

import numpy as np
import pytest

from conftest import ready_backends
from fastdl import nn
from fastdl.backend import PACKAGES


def _kernels(backend):
    return importlib.import_module(f"{PACKAGES[backend]}.optim")


def _state(rng, dtype, n=1000):
    value = rng.standard_normal(n).astype(dtype)
    grad = rng.standard_normal(n).astype(dtype)
    slots = [rng.standard_normal(n).astype(dtype), rng.random(n).astype(dtype)]
    return value, grad, slots


STEPS = {
    "sgd": lambda k, v, g, s, t, n: k.sgd_step(v, g, np.empty(0, v.dtype), t(0.1), t(0.0), n),
    "momentum": lambda k, v, g, s, t, n: k.sgd_step(v, g, s[0], t(0.1), t(0.9), n),
    "rmsprop": lambda k, v, g, s, t, n: k.rmsprop_step(v, g, s[1], t(1e-3), t(0.9), t(1 - 0.9), t(1e-7), n),
    "adam": lambda k, v, g, s, t, n: k.adam_step(v, g, s[0], s[1], t(1e-3), t(1 - 0.9), t(1 - 0.999), t(1e-7), n),
}


def _expected(name, value, grad, slots):
    """The update in float64, from Keras' formulas."""
    value, grad = value.astype(np.float64), grad.astype(np.float64)
    m, v = (s.astype(np.float64) for s in slots)
    if name == "sgd":
        return value - 0.1 * grad, [m, v]
    if name == "momentum":
        m = 0.9 * m - 0.1 * grad
        return value + m, [m, v]
    if name == "rmsprop":
        v = 0.9 * v + 0.1 * grad**2
        return value - 1e-3 * grad / (np.sqrt(v) + 1e-7), [m, v]
    m = m + 0.1 * (grad - m)
    v = v + 0.001 * (grad**2 - v)
    return value - 1e-3 * m / (np.sqrt(v) + 1e-7), [m, v]


@pytest.mark.parametrize("name", STEPS)
@pytest.mark.parametrize("n_threads", [1, 2])
def test_step_follows_keras(backend, dtype, name, n_threads, rng):
    value, grad, slots = _state(rng, dtype)
    expected, expected_slots = _expected(name, value, grad, slots)
    STEPS[name](_kernels(backend), value, grad, slots, np.dtype(dtype).type, n_threads)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(value, expected, rtol=tol, atol=tol)
    for slot, expected_slot in zip(slots, expected_slots):
        np.testing.assert_allclose(slot, expected_slot, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", STEPS)
def test_same_bits_on_every_backend(dtype, name):
    results = {}
    for backend in ready_backends():
        value, grad, slots = _state(np.random.default_rng(5), dtype)
        STEPS[name](_kernels(backend), value, grad, slots, np.dtype(dtype).type, 2)
        results[backend] = [value, *slots]
    first = next(iter(results.values()))
    for backend, arrays in results.items():
        for got, want in zip(arrays, first):
            np.testing.assert_array_equal(got, want, err_msg=backend)


@pytest.mark.parametrize("make", [lambda: nn.SGD(0.1, momentum=0.9), nn.RMSprop, nn.Adam], ids=["sgd", "rmsprop", "adam"])
def test_optimizers_step_every_parameter(make, rng):
    """Optimizer.step updates each parameter (of any shape) in place and leaves its gradient alone."""
    params = [nn.module.Parameter(rng.standard_normal(shape).astype(np.float32)) for shape in [(3, 4), (4,), (2, 2, 3, 1)]]
    for p in params:
        p.grad = rng.standard_normal(p.value.shape).astype(np.float32)
    optimizer = make()
    optimizer.attach(params)
    before = [p.value.copy() for p in params]
    grads = [p.grad.copy() for p in params]
    optimizer.step()
    for p, old, grad in zip(params, before, grads):
        assert not np.array_equal(p.value, old)
        np.testing.assert_array_equal(p.grad, grad)
        # Every optimizer's first step moves against the gradient.
        assert (np.sign(p.value - old) == -np.sign(grad))[grad != 0].all()
