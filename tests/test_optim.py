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
        return value - 1e-3 * grad / np.sqrt(v + 1e-7), [m, v]
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


OPTIMIZERS = [lambda: nn.SGD(0.1, momentum=0.9), nn.RMSprop, nn.Adam]


def _small_model(seed=0):
    model = nn.Sequential([nn.Dense(5, activation="relu", input_shape=(7,)), nn.BatchNormalization(),
                           nn.Dense(3)], seed=seed)
    model.build()
    return model


def test_a_model_places_its_parameters_in_one_flat_buffer():
    """Every parameter's value and gradient are views of the model's two flat buffers, at offsets
    aligned to module.ALIGN, and the optimizer updates the whole buffer in one pass."""
    model = _small_model()
    params = [p for _, p in model.parameters()]
    values, grads = params[0].flat[:2]
    assert values.size == sum(p.flat[3] - p.flat[2] for p in params)
    for p in params:
        assert p.flat[0] is values and p.flat[1] is grads and p.flat[2] % nn.module.ALIGN == 0
        assert np.shares_memory(p.value, values) and np.shares_memory(p.grad, grads)
    model.compile(nn.SGD(0.1), "mse")
    model.optimizer.attach([p for _, p in model.trainable_parameters()])
    assert len(model.optimizer._runs) == 1


def test_assigning_a_placed_parameter_writes_into_its_buffer():
    model = _small_model()
    p = model.layers[0].kernel
    new = np.full(p.shape, 0.5, np.float32)
    p.value = new
    assert p.value is not new and np.shares_memory(p.value, p.flat[0])
    np.testing.assert_array_equal(p.value, new)
    with pytest.raises(ValueError, match=r"keeps its shape \(7, 5\)"):
        p.value = np.zeros((5, 7), np.float32)


@pytest.mark.parametrize("make", OPTIMIZERS, ids=["momentum", "rmsprop", "adam"])
def test_a_flat_step_gives_the_bits_of_steps_by_parameter(make, rng):
    """One pass over the flat buffer updates every parameter as separate passes over each would,
    and leaves the padding between parameters at zero; the state saved is the same."""
    model = _small_model()
    placed = [p for _, p in model.parameters()]
    loose = [nn.module.Parameter(p.value.copy()) for p in placed]
    flat, by_parameter = make(), make()
    flat.attach(placed)
    by_parameter.attach(loose)
    for _ in range(3):
        for p, q in zip(placed, loose):
            p.grad[...] = q.grad[...] = rng.standard_normal(p.shape).astype(np.float32)
        flat.step()
        by_parameter.step()
    for p, q in zip(placed, loose):
        np.testing.assert_array_equal(p.value, q.value)
    used = np.zeros(placed[0].flat[0].size, bool)
    for p in placed:
        used[p.flat[2]:p.flat[2] + p.size] = True
    assert not placed[0].flat[0][~used].any()
    flat_meta, flat_arrays = flat.state_dict()
    meta, arrays = by_parameter.state_dict()
    assert flat_meta == meta and flat_arrays.keys() == arrays.keys()
    for key in arrays:
        np.testing.assert_array_equal(flat_arrays[key], arrays[key])


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copied_model_trains_its_own_flat_buffers(how):
    """A copy's parameters are views of the copy's flat buffers (a copied view would be an array of
    its own, which the optimizer's pass over the buffers never updates)."""
    import copy
    import pickle

    model = _small_model()
    clone = copy.deepcopy(model) if how == "deepcopy" else pickle.loads(pickle.dumps(model))
    for (_, p), (_, q) in zip(model.parameters(), clone.parameters()):
        assert np.shares_memory(q.value, q.flat[0]) and np.shares_memory(q.grad, q.flat[1])
        assert not np.shares_memory(q.flat[0], p.flat[0])
    original = model.get_weights()
    x = np.random.default_rng(0).random((16, 7), dtype=np.float32)
    clone.compile(nn.SGD(0.1), "mse")
    clone.fit(x, np.ones((16, 3), np.float32), epochs=2)
    for before, kept in zip(original, model.get_weights()):
        np.testing.assert_array_equal(kept, before)
    assert not np.array_equal(clone.get_weights()[0], original[0])


@pytest.mark.parametrize("make", OPTIMIZERS, ids=["momentum", "rmsprop", "adam"])
def test_a_copy_of_a_compiled_model_trains_on_as_the_model(make):
    """A deepcopy of a model in training carries its optimizer's slots and step count: both go on
    to the same weights, bit for bit, and neither touches the other's."""
    import copy

    rng = np.random.default_rng(1)
    x, y = rng.random((32, 7), dtype=np.float32), rng.random((32, 3), dtype=np.float32)
    model = _small_model()
    model.compile(make(), "mse")
    model.fit(x, y, epochs=2, batch_size=8, shuffle=False)
    clone = copy.deepcopy(model)
    assert clone.optimizer.iterations == model.optimizer.iterations
    for fitted in (model, clone):
        fitted.fit(x, y, epochs=2, batch_size=8, shuffle=False)
    for mine, theirs in zip(model.get_weights(), clone.get_weights()):
        np.testing.assert_array_equal(mine, theirs)
    assert not np.shares_memory(clone.optimizer._runs[0][0], model.optimizer._runs[0][0])


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copied_model_unfrozen_and_recompiled_keeps_its_optimizer_state(how):
    """Fine-tuning a copy (a phase-1 model pickled, read back, its base unfrozen and compiled again
    with model.optimizer) keeps the step count and the head's slots as the original model does:
    both train on to the same weights, the base's slots starting at zero."""
    import copy
    import pickle

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(24, 6)).astype(np.float32), rng.integers(0, 3, 24)
    base = nn.Sequential([nn.Input(6), nn.Dense(8, activation="relu", name="b1")], seed=0, name="base")
    model = nn.Sequential([base, nn.Dense(3, activation="softmax", name="head")], seed=1)
    base.trainable = False
    model.compile(nn.Adam(1e-2))
    model.fit(x, y, epochs=1, batch_size=8, seed=0)
    clone = copy.deepcopy(model) if how == "deepcopy" else pickle.loads(pickle.dumps(model))
    for fitted in (model, clone):
        fitted.layers[0].trainable = True
        fitted.compile(fitted.optimizer)
        assert fitted.optimizer.iterations == 3
        slots = dict(zip(fitted._optimizer_weights(), fitted.optimizer.state["m"]))
        assert slots.keys() == {"base/b1/kernel", "base/b1/bias", "head/kernel", "head/bias"}
        assert slots["head/kernel"].any() and not slots["base/b1/kernel"].any()
        fitted.fit(x, y, epochs=1, batch_size=8, seed=1)
    for mine, theirs in zip(model.get_weights(), clone.get_weights()):
        np.testing.assert_array_equal(mine, theirs)


def test_a_copied_optimizer_starts_afresh_in_a_model_that_is_not_its_copy():
    """A copied optimizer holding another model's parameters takes a fresh state in this one."""
    import copy

    trained = _small_model()
    trained.compile(nn.Adam(), "mse")
    trained.fit(np.ones((4, 7), np.float32), np.ones((4, 3), np.float32), epochs=1)
    optimizer = copy.deepcopy(trained.optimizer)
    other = _small_model(seed=1)
    other.compile(optimizer, "mse")
    assert optimizer.iterations == 0 and not any(m.any() for m in optimizer.state["m"])


def test_optimizer_arguments_come_in_keras_3_order():
    """SGD(learning_rate, momentum, nesterov), RMSprop(learning_rate, rho, momentum, epsilon,
    centered), Adam(learning_rate, beta_1, beta_2, epsilon, amsgrad), as Keras 3, by name or by
    position."""
    sgd = nn.SGD(0.1, 0.9, False)
    assert (sgd.lr, sgd.momentum) == (0.1, 0.9)
    rmsprop = nn.RMSprop(0.01, 0.8, 0.0, 1e-6, False)
    assert (rmsprop.lr, rmsprop.rho, rmsprop.epsilon) == (0.01, 0.8, 1e-6)
    adam = nn.Adam(0.01, 0.5, 0.9, 1e-5, False)
    assert (adam.lr, adam.beta_1, adam.beta_2, adam.epsilon) == (0.01, 0.5, 0.9, 1e-5)
    assert nn.RMSprop(momentum=0, centered=False).epsilon == 1e-7
    # Keras' momentum third, never read as epsilon; centered, nesterov and amsgrad last.
    rmsprop = nn.RMSprop(0.001, 0.9, 0.5, 1e-6, True)
    assert (rmsprop.momentum, rmsprop.epsilon, rmsprop.centered) == (0.5, 1e-6, True)
    assert nn.SGD(0.1, 0.9, True).nesterov is True
    assert nn.Adam(1e-3, 0.9, 0.999, 1e-7, True).amsgrad is True
