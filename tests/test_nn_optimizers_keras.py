"""Keras 3's optimizer options: SGD(nesterov), RMSprop(momentum, centered), Adam(amsgrad), AdamW,
and weight_decay, clipnorm, clipvalue, global_clipnorm on every optimizer.

Each against a slow float64 reference written here from Keras 3's source (keras/src/optimizers/
sgd.py, rmsprop.py, adam.py, adamw.py; base_optimizer.py's _clip_gradients, _clip_by_norm,
clip_by_global_norm, _apply_weight_decay), on every backend and both float dtypes; against
torch.optim where it runs the same algorithm; resumed bit for bit through save/load."""

import importlib

import numpy as np
import pytest

from conftest import assert_resumes_bit_for_bit, ready_backends
from fastdl import nn
from fastdl.backend import PACKAGES
from fastdl.nn.guard import check_finite_gradients
from fastdl.nn.module import Parameter, place_parameters
from fastdl.nn.optimizers import AdamW, get_optimizer  # (AdamW: not yet among fastdl.nn's exports)

STEPS = 4
# (shape, gradient scale): a parameter past one norm block (optimizers_clip.BLOCK = 4096), small
# gradients some clip options leave alone, large ones they clip.
SHAPES = [((70, 62), 0.02), ((5,), 3.0), ((3, 4), 1.0), ((7,), 0.01), ((2, 3), 2.0)]

CONFIGS = {
    "sgd_decay": lambda: nn.SGD(0.1, weight_decay=0.05),
    "nesterov": lambda: nn.SGD(0.1, 0.9, True),
    "nesterov_clipnorm": lambda: nn.SGD(0.1, 0.9, True, clipnorm=0.5, weight_decay=0.01),
    "sgd_global": lambda: nn.SGD(0.1, global_clipnorm=0.8),
    "momentum_clipvalue": lambda: nn.SGD(0.1, 0.9, clipvalue=0.2),
    "rmsprop_momentum": lambda: nn.RMSprop(0.01, 0.9, 0.5),
    "rmsprop_centered": lambda: nn.RMSprop(0.01, 0.9, 0.0, 1e-7, True),
    "rmsprop_both": lambda: nn.RMSprop(0.01, 0.8, 0.5, 1e-7, True, clipvalue=0.3, weight_decay=0.02),
    "amsgrad": lambda: nn.Adam(0.01, amsgrad=True),
    "adam_clipnorm": lambda: nn.Adam(0.01, clipnorm=0.5),
    "adamw": lambda: AdamW(0.01, 0.1),
    "adamw_amsgrad_global": lambda: AdamW(0.01, 0.1, amsgrad=True, global_clipnorm=1.0),
}


# -- the reference: Keras 3's formulas in float64 ---------------------------------------------------

def _clipped(opt, grads):
    if opt.clipnorm:  # _clip_by_norm
        return [g * opt.clipnorm / max(np.sqrt(np.sum(g * g)), opt.clipnorm) for g in grads]
    if opt.global_clipnorm:  # clip_by_global_norm
        norm = np.sqrt(sum(np.sum(g * g) for g in grads))
        with np.errstate(divide="ignore"):
            scale = opt.global_clipnorm * min(1 / norm, 1 / opt.global_clipnorm)
        return [g * scale for g in grads]
    if opt.clipvalue:
        return [np.clip(g, -opt.clipvalue, opt.clipvalue) for g in grads]
    return grads


def _keras_step(opt, values, grads, slots, t):
    """One apply() of Keras 3: clip, decay, update_step; values and slots (lists) updated in place."""
    grads = _clipped(opt, grads)
    lr = opt.lr
    for i, (w, g) in enumerate(zip(values, grads)):
        s = slots[i]
        if opt.weight_decay is not None:
            w -= w * opt.weight_decay * lr
        if isinstance(opt, nn.SGD):
            if opt.momentum:
                s["velocity"] = opt.momentum * s["velocity"] - lr * g
                w += opt.momentum * s["velocity"] - lr * g if opt.nesterov else s["velocity"]
            else:
                w -= lr * g
        elif isinstance(opt, nn.RMSprop):
            s["ms"] = opt.rho * s["ms"] + (1 - opt.rho) * g * g
            if opt.centered:
                s["mg"] = opt.rho * s["mg"] + (1 - opt.rho) * g
                denominator = s["ms"] - s["mg"] ** 2 + opt.epsilon
            else:
                denominator = s["ms"] + opt.epsilon
            increment = lr * g / np.sqrt(denominator)
            if opt.momentum:
                s["momentum"] = opt.momentum * s["momentum"] + increment
                w -= s["momentum"]
            else:
                w -= increment
        else:
            alpha = lr * np.sqrt(1 - opt.beta_2 ** t) / (1 - opt.beta_1 ** t)
            s["m"] += (g - s["m"]) * (1 - opt.beta_1)
            s["v"] += (g * g - s["v"]) * (1 - opt.beta_2)
            if opt.amsgrad:
                s["v_hat"] = np.maximum(s["v_hat"], s["v"])
            w -= s["m"] * alpha / (np.sqrt(s["v_hat"] if opt.amsgrad else s["v"]) + opt.epsilon)


def _params(rng, dtype, shapes=SHAPES):
    """Parameters in two flat buffers and one outside them, handed over out of buffer order (runs:
    buffer A's first two, buffer B, the loose one, A's last)."""
    params = [Parameter(rng.standard_normal(shape).astype(dtype)) for shape, _ in shapes]
    place_parameters([params[0], params[1], params[4]])
    place_parameters([params[2]])
    return params  # params[3] stays outside the buffers


def _gradients(rng, dtype, shapes=SHAPES):
    return [[(rng.standard_normal(shape) * scale).astype(dtype) for shape, scale in shapes] for _ in range(STEPS)]


def _train(make, backend, dtype, seed=0):
    rng = np.random.default_rng(seed)
    params, steps = _params(rng, dtype), _gradients(rng, dtype)
    start = [p.value.astype(np.float64) for p in params]
    opt = make()
    opt.attach(params, backend)
    for grads in steps:
        for p, g in zip(params, grads):
            p.grad[...] = g
        opt.step()
    return opt, params, start, steps


@pytest.mark.parametrize("config", CONFIGS)
def test_steps_follow_keras_3(backend, dtype, config):
    opt, params, values, steps = _train(CONFIGS[config], backend, dtype)
    assert len(opt._runs) == 4  # two flat buffers, one of them in two runs, and a parameter outside
    slots = [{name: np.zeros_like(v) for name in opt.slots} for v in values]
    for t, grads in enumerate(steps, 1):
        _keras_step(opt, values, [g.astype(np.float64) for g in grads], slots, t)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    for i, (p, want) in enumerate(zip(params, values)):
        np.testing.assert_allclose(p.value, want, rtol=tol, atol=tol, err_msg=f"parameter {i}")
        for name in opt.slots:
            np.testing.assert_allclose(opt.state[name][i], slots[i][name], rtol=tol, atol=tol * 10,
                                       err_msg=f"slot {name} of parameter {i}")


@pytest.mark.parametrize("config", CONFIGS)
def test_same_bits_on_every_cpu_backend(dtype, config):
    results = {}
    for backend in ready_backends():
        opt, params, _, _ = _train(CONFIGS[config], backend, dtype)
        results[backend] = [p.value for p in params] + [s for name in opt.slots for s in opt.state[name]]
    first = next(iter(results.values()))
    for backend, arrays in results.items():
        for got, want in zip(arrays, first):
            np.testing.assert_array_equal(got, want, err_msg=backend)


def test_without_options_the_steps_are_the_old_kernels_bits(backend, dtype):
    """No new option (and weight_decay=0, clipnorm=0, which change nothing in Keras 3): each step
    is the old path's single kernel call per run, bit for bit."""
    kernels = importlib.import_module(f"{PACKAGES[backend]}.optim")
    t = np.dtype(dtype).type
    old_calls = {
        nn.SGD: lambda v, g, s, step: kernels.sgd_step(v, g, s[0], t(0.1), t(0.9), 1),
        nn.RMSprop: lambda v, g, s, step: kernels.rmsprop_step(v, g, s[0], t(1e-3), t(0.9), t(1 - 0.9), t(1e-7), 1),
        nn.Adam: lambda v, g, s, step: kernels.adam_step(
            v, g, *s, t(1e-3 * np.sqrt(1 - 0.999 ** step) / (1 - 0.9 ** step)), t(1 - 0.9), t(1 - 0.999), t(1e-7), 1),
    }
    for cls, call in old_calls.items():
        for options in ({}, {"weight_decay": 0.0, "clipnorm": 0.0}):
            args = (0.1, 0.9) if cls is nn.SGD else ()
            rng = np.random.default_rng(1)
            shapes = [((3, 4), 1.0), ((5,), 1.0)]
            params = [Parameter(rng.standard_normal(s).astype(dtype)) for s, _ in shapes]
            steps = _gradients(rng, dtype, shapes)
            values = [p.value.copy().reshape(-1) for p in params]
            n_slots = 2 if cls is nn.Adam else 1
            slots = [[np.zeros(v.size, dtype) for _ in range(n_slots)] for v in values]
            opt = cls(*args, **options)
            opt.attach(params, backend)
            for step, grads in enumerate(steps, 1):
                for p, g, v, s in zip(params, grads, values, slots):
                    p.grad[...] = g
                    call(v, g.reshape(-1), s, step)
                opt.step()
            for p, v in zip(params, values):
                np.testing.assert_array_equal(p.value.reshape(-1), v, err_msg=f"{cls.__name__} {options}")


# -- against torch.optim, where it is the same algorithm --------------------------------------------

TORCH = {
    # Keras' Nesterov form equals torch's for a constant rate (velocity = -lr * torch's buffer).
    "nesterov": (lambda: nn.SGD(0.1, 0.9, True), lambda torch, p: torch.optim.SGD(p, 0.1, 0.9, nesterov=True)),
    # Epsilon sits inside the square root in Keras, outside in torch: a tiny one makes them agree.
    "rmsprop_centered_momentum": (lambda: nn.RMSprop(0.01, 0.9, 0.5, 1e-30, True),
                                  lambda torch, p: torch.optim.RMSprop(p, 0.01, 0.9, 1e-30, momentum=0.5,
                                                                       centered=True)),
    # torch's AdamW decays by lr * weight_decay * value, as Keras; epsilon tiny (bias corrections differ around it).
    "adamw_amsgrad": (lambda: AdamW(0.01, 0.1, epsilon=1e-20, amsgrad=True),
                      lambda torch, p: torch.optim.AdamW(p, 0.01, eps=1e-20, weight_decay=0.1, amsgrad=True)),
    "adamw": (lambda: AdamW(0.01, 0.1, epsilon=1e-20),
              lambda torch, p: torch.optim.AdamW(p, 0.01, eps=1e-20, weight_decay=0.1)),
}


@pytest.mark.parametrize("config", TORCH)
def test_same_as_torch(backend, config):
    torch = pytest.importorskip("torch")
    make, make_torch = TORCH[config]
    opt, params, start, steps = _train(make, backend, np.float64)
    tensors = [torch.tensor(v, requires_grad=True) for v in start]
    torch_opt = make_torch(torch, tensors)
    for grads in steps:
        for tensor, g in zip(tensors, grads):
            tensor.grad = torch.tensor(g)
        torch_opt.step()
    for p, tensor in zip(params, tensors):
        np.testing.assert_allclose(p.value, tensor.detach().numpy(), rtol=1e-9, atol=1e-11)


# -- clipping ------------------------------------------------------------------------------------

@pytest.mark.parametrize("option", ["clipnorm", "global_clipnorm", "clipvalue"])
def test_zero_gradients_and_the_gradients_left_alone(backend, dtype, option):
    """A zero gradient (one parameter's, then all of them) takes no step and makes no NaN; the
    parameters' own gradients are left as they were (the clipped ones are the optimizer's)."""
    rng = np.random.default_rng(2)
    params = _params(rng, dtype)
    opt = nn.SGD(0.1, **{option: 0.5})
    opt.attach(params, backend)
    for all_zero in (False, True):
        grads = [np.zeros(p.shape, dtype) if all_zero or i == 1 else rng.standard_normal(p.shape).astype(dtype)
                 for i, p in enumerate(params)]
        for p, g in zip(params, grads):
            p.grad[...] = g
        before = [p.value.copy() for p in params]
        opt.step()
        for p, g, old in zip(params, grads, before):
            np.testing.assert_array_equal(p.grad, g)
            assert np.isfinite(p.value).all()
            if not g.any():
                np.testing.assert_array_equal(p.value, old)


def test_global_norm_spans_every_buffer(backend, dtype):
    """global_clipnorm scales all parameters by one factor, over two flat buffers and a parameter
    outside them: each one's step is that factor times its plain SGD step."""
    rng = np.random.default_rng(3)
    params = _params(rng, dtype)
    grads = [rng.standard_normal(p.shape).astype(dtype) for p in params]
    norm = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in grads))
    opt = nn.SGD(1.0, global_clipnorm=norm / 4)
    opt.attach(params, backend)
    assert len(opt._runs) == 4
    before = [p.value.astype(np.float64) for p in params]
    for p, g in zip(params, grads):
        p.grad[...] = g
    opt.step()
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for p, g, old in zip(params, grads, before):
        np.testing.assert_allclose(old - p.value, g / 4, rtol=tol, atol=tol)


@pytest.mark.parametrize("option", ["clipnorm", "global_clipnorm", "clipvalue"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_gradient_is_never_clipped_finite(backend, dtype, option, bad):
    """Keras' clipnorm would make an infinite norm's finite values 0, its clipvalue an infinity
    the bound: here a NaN or infinite gradient leaves its parameter non-finite (fit's guard puts
    the epoch back), and train_on_batch's check still sees the gradient itself."""
    rng = np.random.default_rng(4)
    params = _params(rng, dtype)
    opt = nn.SGD(0.1, **{option: 0.5})
    opt.attach(params, backend)
    for p in params:
        p.grad[...] = rng.standard_normal(p.shape).astype(dtype)
    params[2].grad[0, 1] = bad
    with pytest.raises(nn.NonFiniteError):
        check_finite_gradients(opt)
    with np.errstate(invalid="ignore"):
        opt.step()
    assert not np.isfinite(params[2].value).all()
    if option == "global_clipnorm":  # one norm for all: every parameter
        assert not any(np.isfinite(p.value).all() for p in params)


def test_clip_options_set_after_construction(backend):
    """Keras code sets optimizer.clipnorm and the like as attributes: checked, used from the next step."""
    rng = np.random.default_rng(5)
    params = _params(rng, np.float64)
    opt = nn.SGD(1.0)
    opt.attach(params, backend)
    for p in params:
        p.grad[...] = 10.0
    opt.step()
    opt.clipvalue = 0.5
    before = [p.value.copy() for p in params]
    opt.step()
    for p, old in zip(params, before):
        np.testing.assert_allclose(old - p.value, 0.5)
    with pytest.raises(ValueError, match="only one of clipnorm, clipvalue and global_clipnorm"):
        opt.clipnorm = 1.0
    with pytest.raises(ValueError, match="clipvalue must be None or a finite number >= 0"):
        opt.clipvalue = -1.0
    assert opt.clipvalue == 0.5 and opt.clipnorm is None


# -- save and load -----------------------------------------------------------------------------

@pytest.mark.parametrize("config", ["nesterov_clipnorm", "rmsprop_both", "rmsprop_momentum", "amsgrad",
                                    "adamw_amsgrad_global"])
def test_save_load_mid_training_resumes_bit_for_bit(tmp_path, backend, dtype, config):
    assert_resumes_bit_for_bit(tmp_path / "mid.npz", CONFIGS[config], backend, dtype)


def test_adam_state_without_v_hat_is_refused_by_amsgrad(tmp_path):
    x, y = np.ones((4, 2), np.float32), np.ones((4, 1), np.float32)
    plain = nn.Sequential([nn.Input((2,)), nn.Dense(1)], seed=0)
    plain.compile(nn.Adam(), "mse")
    plain.train_on_batch(x, y)
    plain.save(tmp_path / "adam.npz")
    other = nn.Sequential([nn.Input((2,)), nn.Dense(1)], seed=0)
    other.compile(nn.Adam(amsgrad=True), "mse")
    with pytest.raises(ValueError, match="no slot v_hat/0"):
        other.load(tmp_path / "adam.npz")


def test_adamw_is_adam_with_weight_decay_and_trains_by_name(backend):
    a, _, _, _ = _train(lambda: AdamW(0.01, 0.1, amsgrad=True), backend, np.float32)
    b, _, _, _ = _train(lambda: nn.Adam(0.01, amsgrad=True, weight_decay=0.1), backend, np.float32)
    for name in a.slots:
        for x, y in zip(a.state[name], b.state[name]):
            np.testing.assert_array_equal(x, y)
    assert isinstance(get_optimizer("AdamW"), AdamW) and get_optimizer("adamw").weight_decay == 0.004
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((32, 3)), rng.integers(0, 2, 32)
    model = nn.Sequential([nn.Input((3,)), nn.Dense(8, activation="relu"), nn.Dense(2)], seed=0, backend=backend)
    model.compile(AdamW(0.05, clipnorm=1.0), "sparse_categorical_crossentropy")
    history = model.fit(x, y, epochs=5, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


# -- arguments ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["weight_decay", "clipnorm", "clipvalue", "global_clipnorm"])
@pytest.mark.parametrize("value", [-0.1, np.inf, np.nan, "1", True, [1.0]])
def test_bad_options_are_refused(name, value):
    for make in (nn.SGD, nn.RMSprop, nn.Adam, AdamW):
        with pytest.raises(ValueError, match=f"{name} must be None or a finite number >= 0"):
            make(**{name: value})


def test_arguments_keep_keras_3_order_and_are_checked():
    assert nn.SGD(0.1, 0.9, True).nesterov
    rmsprop = nn.RMSprop(0.001, 0.9, 0.9, 1e-6, True)  # momentum 0.9 by position, as Keras 3's
    assert (rmsprop.momentum, rmsprop.epsilon, rmsprop.centered) == (0.9, 1e-6, True)
    assert rmsprop.slots == ("ms", "momentum", "mg")
    assert nn.Adam(1e-3, 0.9, 0.999, 1e-7, True).slots == ("m", "v", "v_hat")
    adamw = AdamW(0.01, 0.1, 0.8, 0.99, 1e-6, True)
    assert (adamw.lr, adamw.weight_decay, adamw.beta_1, adamw.beta_2, adamw.epsilon, adamw.amsgrad) == (
        0.01, 0.1, 0.8, 0.99, 1e-6, True)
    with pytest.raises(TypeError):  # the options are keyword-only
        nn.SGD(0.1, 0.9, False, 0.1)
    with pytest.raises(ValueError, match="only one of clipnorm, clipvalue and global_clipnorm"):
        nn.Adam(clipnorm=1.0, clipvalue=0.5)
    with pytest.raises(ValueError, match="only one of"):
        AdamW(global_clipnorm=1.0, clipnorm=0.0)  # Keras counts the ones given, 0 too
    with pytest.raises(ValueError, match="AdamW's weight_decay"):
        AdamW(weight_decay=None)
    for make in (lambda: nn.SGD(nesterov="yes"), lambda: nn.RMSprop(centered=1), lambda: nn.Adam(amsgrad=None)):
        with pytest.raises(TypeError, match="must be True or False"):
            make()
    for make in (lambda: nn.RMSprop(momentum=1.0), lambda: nn.RMSprop(momentum=-0.5)):
        with pytest.raises(ValueError, match="momentum"):
            make()
