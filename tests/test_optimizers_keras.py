"""Keras 3's Adagrad, Adadelta, Adamax and Nadam (fastdl/nn/optimizers_more.py; the optim kernels
adagrad_step, adadelta_step, adamax_step, nadam_step).

Each against a slow float64 per-element reference written here from Keras 3's source
(keras/src/optimizers/adagrad.py, adadelta.py, adamax.py, nadam.py; base_optimizer.py's clipping
and weight decay), on every backend and both float dtypes; against torch.optim where it defines
the same update; resumed bit for bit through save/load; the cuda kernels under numba's simulator."""

import importlib
import math

import numpy as np
import pytest

from conftest import assert_resumes_bit_for_bit, ready_backends
from fastdl import _device, nn
from fastdl.backend import PACKAGES
from fastdl.nn.module import Parameter, place_parameters
from fastdl.nn.optimizers import OPTIMIZERS, get_optimizer
from fastdl.nn.optimizers_more import Adadelta, Adagrad, Adamax, Nadam

NAMES = {"adagrad": Adagrad, "adadelta": Adadelta, "adamax": Adamax, "nadam": Nadam}
STEPS = 6
# (shape, gradient scale): small and large gradients (clipnorm leaves some alone, clips others)
SHAPES = [((9, 7), 0.05), ((5,), 3.0), ((3, 4), 1.0), ((7,), 0.01)]

CONFIGS = {
    "adagrad": lambda: Adagrad(0.1),
    "adagrad_zero_start": lambda: Adagrad(0.05, 0.0, 1e-6),
    "adagrad_decay_clipnorm": lambda: Adagrad(0.1, 0.2, weight_decay=0.05, clipnorm=0.5),
    "adadelta": lambda: Adadelta(1.0),
    "adadelta_rho_global": lambda: Adadelta(0.5, 0.8, 1e-5, global_clipnorm=1.0),
    "adamax": lambda: Adamax(0.01),
    "adamax_betas_clipvalue": lambda: Adamax(0.02, 0.5, 0.9, 1e-6, clipvalue=0.3, weight_decay=0.01),
    "nadam": lambda: Nadam(0.01),
    "nadam_betas_decay_clipnorm": lambda: Nadam(0.02, 0.8, 0.99, 1e-6, weight_decay=0.1, clipnorm=0.5),
}


# -- the reference: Keras 3's formulas, one element at a time in float64 ------------------------------

def _clipped(opt, grads):
    """base_optimizer._clip_gradients: _clip_by_norm, clip_by_global_norm, clip_by_value."""
    if opt.clipnorm:
        return [g * opt.clipnorm / max(math.sqrt(np.sum(g * g)), opt.clipnorm) for g in grads]
    if opt.global_clipnorm:
        norm = math.sqrt(sum(np.sum(g * g) for g in grads))
        return [g * opt.global_clipnorm / max(norm, opt.global_clipnorm) for g in grads]
    if opt.clipvalue:
        return [np.clip(g, -opt.clipvalue, opt.clipvalue) for g in grads]
    return grads


class KerasReference:
    """Keras 3's apply(): clip, _apply_weight_decay, then update_step for each element (Nadam's
    u_product updated once a step first, as its _backend_update_step)."""

    def __init__(self, opt, values):
        self.opt, self.values, self.iterations, self.u_product = opt, [v.reshape(-1) for v in values], 0, 1.0
        start = opt.initial_accumulator_value if isinstance(opt, Adagrad) else 0.0
        self.slots = [{name: np.full(v.size, start) for name in opt.slots} for v in self.values]

    def apply(self, grads):
        opt, lr = self.opt, self.opt.lr
        grads = [g.reshape(-1) for g in _clipped(opt, [g.astype(np.float64) for g in grads])]
        t = self.iterations + 1
        if isinstance(opt, Nadam):
            self.u_product *= opt.beta_1 * (1.0 - 0.5 * 0.96 ** t)
        for w, g, s in zip(self.values, grads, self.slots):
            if opt.weight_decay is not None:
                w -= w * opt.weight_decay * lr
            for i in range(w.size):
                w[i] = self.update(w[i], g[i], s, i, t, lr)
        self.iterations = t

    def update(self, w, g, s, i, t, lr):
        opt = self.opt
        if isinstance(opt, Adagrad):
            s["accumulator"][i] += g * g
            return w - lr * g / math.sqrt(s["accumulator"][i] + opt.epsilon)
        if isinstance(opt, Adadelta):
            rho, eps = opt.rho, opt.epsilon
            s["accumulated_grad"][i] = rho * s["accumulated_grad"][i] + (1 - rho) * g * g
            delta = -math.sqrt(s["accumulated_delta_var"][i] + eps) * g / math.sqrt(s["accumulated_grad"][i] + eps)
            s["accumulated_delta_var"][i] = rho * s["accumulated_delta_var"][i] + (1 - rho) * delta * delta
            return w + lr * delta
        if isinstance(opt, Adamax):
            s["m"][i] += (g - s["m"][i]) * (1 - opt.beta_1)
            s["u"][i] = max(opt.beta_2 * s["u"][i], abs(g))
            return w - lr * s["m"][i] / ((1 - opt.beta_1 ** t) * (s["u"][i] + opt.epsilon))
        beta_1, beta_2 = opt.beta_1, opt.beta_2  # Nadam
        u_t = beta_1 * (1.0 - 0.5 * 0.96 ** t)
        u_t_1 = beta_1 * (1.0 - 0.5 * 0.96 ** (t + 1))
        u_product_t_1 = self.u_product * u_t_1
        s["m"][i] += (g - s["m"][i]) * (1 - beta_1)
        s["v"][i] += (g * g - s["v"][i]) * (1 - beta_2)
        m_hat = u_t_1 * s["m"][i] / (1 - u_product_t_1) + (1 - u_t) * g / (1 - self.u_product)
        v_hat = s["v"][i] / (1 - beta_2 ** t)
        return w - m_hat * lr / (math.sqrt(v_hat) + opt.epsilon)


def _params(rng, dtype):
    """Parameters in two flat buffers (the first in two runs) and one outside them."""
    params = [Parameter(rng.standard_normal(shape).astype(dtype)) for shape, _ in SHAPES]
    place_parameters([params[0], params[1]])
    place_parameters([params[2]])
    return params  # params[3] stays outside the buffers


def _gradients(rng, dtype, steps=STEPS):
    return [[(rng.standard_normal(shape) * scale).astype(dtype) for shape, scale in SHAPES] for _ in range(steps)]


def _train(make, backend, dtype, seed=0, first_step=0):
    rng = np.random.default_rng(seed)
    params, steps = _params(rng, dtype), _gradients(rng, dtype)
    start = [p.value.astype(np.float64) for p in params]
    opt = make()
    opt.attach(params, backend)
    opt.iterations = first_step
    for grads in steps:
        for p, g in zip(params, grads):
            p.grad[...] = g
        opt.step()
    return opt, params, start, steps


@pytest.mark.parametrize("first_step", [0, 40], ids=["from_step_1", "from_step_41"])
@pytest.mark.parametrize("config", CONFIGS)
def test_steps_follow_keras_3(backend, dtype, config, first_step):
    """Six steps from step 1 (the bias corrections and Nadam's schedule change most there), and
    from step 41 (the count as a loaded model's: Nadam's u_product worked out afresh)."""
    opt, params, start, steps = _train(CONFIGS[config], backend, dtype, first_step=first_step)
    assert len(opt._runs) == 3 and opt.iterations == first_step + STEPS
    reference = KerasReference(opt, start)
    reference.iterations = first_step  # the steps before count (Nadam's product over them too)
    if isinstance(opt, Nadam):
        for t in range(1, first_step + 1):
            reference.u_product *= opt.beta_1 * (1.0 - 0.5 * 0.96 ** t)
    for grads in steps:
        reference.apply(grads)
    tol = 3e-5 if dtype == np.float32 else 1e-12
    for i, (p, want) in enumerate(zip(params, reference.values)):
        np.testing.assert_allclose(p.value.reshape(-1), want, rtol=tol, atol=tol, err_msg=f"parameter {i}")
        for name in opt.slots:
            np.testing.assert_allclose(opt.state[name][i].reshape(-1), reference.slots[i][name], rtol=tol,
                                       atol=tol * 1e-3, err_msg=f"slot {name} of parameter {i}")


def _kernel_call(name, dtype, t):
    """(kernel name, number of slots, scalars) of one step t of each kernel as its optimizer calls it."""
    lr, eps = 0.05, 1e-7
    scalars = {
        "adagrad_step": (1, (lr, eps)),
        "adadelta_step": (2, (lr, 0.9, 1 - 0.9, eps)),
        "adamax_step": (2, (lr / (1 - 0.9 ** t), 1 - 0.9, 0.999, eps)),
        "nadam_step": (2, (lr * 0.8, lr * 0.3, 1 - 0.9, 1 - 0.999, 1 - 0.999 ** t, eps)),
    }[name]
    return scalars[0], [dtype(s) for s in scalars[1]]


KERNELS = ["adagrad_step", "adadelta_step", "adamax_step", "nadam_step"]


@pytest.mark.parametrize("name", KERNELS)
def test_kernels_give_the_same_bits_on_every_backend_and_thread_count(dtype, name):
    """The kernels over 1,000 elements, 3 steps, serial and parallel: NumPy's bits, NaN and inf
    where they are (a NaN gradient, an infinite one, one whose square overflows)."""
    results = []
    for backend in ready_backends():
        kernels = importlib.import_module(f"{PACKAGES[backend]}.optim")
        for n_threads in (1, 2):
            rng = np.random.default_rng(5)
            value = rng.standard_normal(1000).astype(dtype)
            n_slots, _ = _kernel_call(name, dtype, 1)
            slots = [rng.random(1000).astype(dtype) for _ in range(n_slots)]
            for t in (1, 2, 3):
                grad = rng.standard_normal(1000).astype(dtype)
                grad[[3, 500, 997][t - 1]] = [np.nan, np.inf, np.sqrt(np.finfo(dtype).max) * 4][t - 1]
                with np.errstate(invalid="ignore", over="ignore"):
                    getattr(kernels, name)(value, grad, *slots, *_kernel_call(name, dtype, t)[1], n_threads)
            results.append((backend, n_threads, [value, *slots]))
    _, _, first = results[0]
    assert np.isnan(first[0]).any() and np.isfinite(first[0]).sum() >= 990
    for backend, n_threads, arrays in results:
        for got, want in zip(arrays, first):
            np.testing.assert_array_equal(got, want, err_msg=f"{backend}, {n_threads} threads")


def test_nadam_product_is_the_same_counted_or_worked_out_again():
    """u_product from one step to the next, or all again for a step count set back (an epoch put
    back) or forward (a load): the same float64 bits."""
    counted, fresh = Nadam(beta_1=0.95), Nadam(beta_1=0.95)
    products = [counted._u_product(t) for t in range(1, 60)]
    assert products[-1] == fresh._u_product(59) and counted._u_product(7) == products[6]
    assert Nadam(beta_1=0.5)._u_product(5000) == 0.0  # underflowed: no loop over the rest


# -- against torch.optim, where it defines the same update -----------------------------------------

TORCH = {
    # epsilon under the root in Keras, added to it in torch: a tiny one, where the accumulator >= 0.1
    "adagrad": (lambda: Adagrad(0.1, 0.1, 1e-30),
                lambda torch, p: torch.optim.Adagrad(p, 0.1, initial_accumulator_value=0.1, eps=1e-30)),
    "adadelta": (lambda: Adadelta(1.0, 0.9, 1e-6), lambda torch, p: torch.optim.Adadelta(p, 1.0, 0.9, 1e-6)),
    # torch takes max(beta_2 u, |grad| + eps), Keras max(beta_2 u, |grad|) + eps: a tiny eps
    "adamax": (lambda: Adamax(0.01, 0.8, 0.99, 1e-30),
               lambda torch, p: torch.optim.Adamax(p, 0.01, (0.8, 0.99), 1e-30)),
    # torch's schedule is 0.96^(momentum_decay t): Keras 3's with momentum_decay 1 (torch's default
    # 0.004 is tf.keras 2.10's); decoupled weight decay is Keras' value -= value * weight_decay * lr
    "nadam": (lambda: Nadam(0.01, 0.9, 0.999, 1e-7, weight_decay=0.1),
              lambda torch, p: torch.optim.NAdam(p, 0.01, (0.9, 0.999), 1e-7, weight_decay=0.1, momentum_decay=1.0,
                                                 decoupled_weight_decay=True)),
}


def _torch_run(torch, make_torch, start, steps):
    tensors = [torch.tensor(v, requires_grad=True) for v in start]
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # NAdam's mu_product is a tensor of the default dtype
    try:
        torch_opt = make_torch(torch, tensors)
        for grads in steps:
            for tensor, g in zip(tensors, grads):
                tensor.grad = torch.tensor(g.astype(np.float64))
            torch_opt.step()
    finally:
        torch.set_default_dtype(default)
    return [tensor.detach().numpy() for tensor in tensors]


@pytest.mark.parametrize("config", TORCH)
def test_same_as_torch(backend, config):
    torch = pytest.importorskip("torch")
    make, make_torch = TORCH[config]
    _, params, start, steps = _train(make, backend, np.float64)
    for p, want in zip(params, _torch_run(torch, make_torch, start, steps)):
        np.testing.assert_allclose(p.value, want, rtol=1e-9, atol=1e-12)
    if config == "nadam":  # torch's default schedule is another one
        default = _torch_run(torch, lambda torch, p: torch.optim.NAdam(
            p, 0.01, (0.9, 0.999), 1e-7, weight_decay=0.1, decoupled_weight_decay=True), start, steps)
        assert not np.allclose(params[0].value, default[0], rtol=1e-6, atol=0)


# -- in a model ----------------------------------------------------------------------------------

RATES = {"adagrad": 0.1, "adadelta": 1.0, "adamax": 0.02, "nadam": 0.01}


@pytest.mark.parametrize("name", NAMES)
def test_a_model_compiled_with_the_name_trains(backend, dtype, name):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((48, 3)).astype(dtype)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    model = nn.Sequential([nn.Input((3,)), nn.Dense(8, activation="relu"), nn.Dense(2, activation="softmax")],
                          seed=0, dtype=dtype, backend=backend)
    model.compile(name.upper() if name == "nadam" else name, "sparse_categorical_crossentropy")
    assert type(model.optimizer) is NAMES[name] and model.optimizer.learning_rate == 1e-3  # Keras' defaults
    model.optimizer.learning_rate = RATES[name]
    history = model.fit(x, y, epochs=6, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < 0.95 * history.history["loss"][0]


@pytest.mark.parametrize("config", ["adagrad_decay_clipnorm", "adadelta_rho_global", "adamax_betas_clipvalue",
                                    "nadam", "nadam_betas_decay_clipnorm"])
def test_save_load_mid_training_resumes_bit_for_bit(tmp_path, backend, dtype, config):
    assert_resumes_bit_for_bit(tmp_path / "mid.npz", CONFIGS[config], backend, dtype)


def test_another_optimizers_state_is_refused(tmp_path):
    x, y = np.ones((4, 2), np.float32), np.ones((4, 1), np.float32)
    adam = nn.Sequential([nn.Input((2,)), nn.Dense(1)], seed=0)
    adam.compile("adam", "mse")
    adam.train_on_batch(x, y)
    adam.save(tmp_path / "adam.npz")
    nadam = nn.Sequential([nn.Input((2,)), nn.Dense(1)], seed=0)
    nadam.compile("nadam", "mse")
    with pytest.raises(ValueError, match="the saved optimizer state is Adam's, not Nadam's"):
        nadam.load(tmp_path / "adam.npz")


def test_adagrad_accumulators_start_at_their_value_for_every_weight(backend):
    """initial_accumulator_value in each accumulator, for weights held from the start and for a
    layer unfrozen and compiled again (its accumulators start then); the others keep theirs."""
    model = nn.Sequential([nn.Input((3,)), nn.Dense(4), nn.Dense(2)], seed=0, backend=backend)
    model.layers[0].trainable = False
    model.compile(Adagrad(0.1, 0.25), "mse")
    model.train_on_batch(np.ones((2, 3), np.float32), np.zeros((2, 2), np.float32))
    trained = [a.copy() for a in model.optimizer.state["accumulator"]]
    assert all((a > 0.25).any() for a in trained)
    model.layers[0].trainable = True
    model.compile(model.optimizer, "mse")
    accumulators = model.optimizer.state["accumulator"]
    assert len(accumulators) == 4
    for a in accumulators:
        if not any(a.shape == b.shape and np.array_equal(a, b) for b in trained):
            np.testing.assert_array_equal(a, np.full(a.shape, 0.25, np.float32))
    assert sum(np.array_equal(a, np.full(a.shape, 0.25, np.float32)) for a in accumulators) == 2


# -- non-finite gradients, as with Adam -----------------------------------------------------------

HUGE = {np.float32: 2e19, np.float64: 5e154}  # its square overflows the dtype, 0.05 times it does not


def test_a_gradient_whose_square_overflows(backend, dtype):
    """Nadam keeps Adam's mended v ((1 - beta_2) grad^2, finite); Adamax never squares; Adadelta
    takes (1 - rho) grad first, as RMSprop; Adagrad's accumulator is past the dtype (inf), and the
    weight stops there (a step of lr grad / inf = 0), as in Keras. No NaN anywhere."""
    huge = HUGE[dtype]
    for make in (Adagrad, Adadelta, Adamax, Nadam):
        p = Parameter(np.zeros(3, dtype))
        opt = make()
        opt.attach([p], backend)
        for _ in range(2):
            p.grad[...] = [huge, -huge, 1.0]
            with np.errstate(over="ignore", invalid="ignore"):
                opt.step()
        slots = [opt.state[name][0] for name in opt.slots]
        assert not any(np.isnan(a).any() for a in [p.value, *slots]), make.__name__
        if make is Adagrad:
            assert np.isinf(slots[0][:2]).all() and (p.value[:2] == 0).all() and p.value[2] < 0
        else:
            assert np.isfinite(p.value).all() and np.all(np.sign(p.value) == [-1, 1, -1]), make.__name__
        if make is Nadam:
            np.testing.assert_allclose(slots[1][:2], (1 - 0.999 ** 2) * huge * huge, rtol=1e-5)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("name", NAMES)
def test_a_nan_or_infinite_gradient_makes_the_weight_non_finite(backend, dtype, name, bad):
    """As with Adam: the weight is NaN (fit's guard puts the epoch back), never quietly finite;
    the other weights step as usual."""
    p = Parameter(np.ones(4, dtype))
    opt = NAMES[name]()
    opt.attach([p], backend)
    p.grad[...] = [0.5, bad, -0.5, 0.0]
    with np.errstate(invalid="ignore"):
        opt.step()
    assert np.isnan(p.value[1]) and np.isfinite(p.value[[0, 2, 3]]).all()
    assert p.value[0] < 1 < p.value[2] and p.value[3] == 1


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("name", NAMES)
def test_train_on_batch_refuses_and_fit_puts_back_gradients_out_of_range(name):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(16, 3)) * 1e12).astype(np.float32)
    y = (rng.normal(size=(16, 1)) * 1e10).astype(np.float32)
    model = nn.Sequential([nn.Input(3), nn.Dense(4, activation="relu"), nn.Dense(1)], seed=0)
    model.compile(name, "mse")
    model.train_on_batch(x / 1e12, y / 1e10)  # one good step: slots that are not where they start
    before, (_, slots) = model.get_weights(), model.optimizer.state_dict()
    slots = {key: value.copy() for key, value in slots.items()}
    with pytest.raises(nn.NonFiniteError, match="the step was not taken"):
        model.train_on_batch(x, y)
    with pytest.raises(nn.NonFiniteError, match="before (this )?epoch"):
        model.fit(x * 1e8, y * 1e8, epochs=1, batch_size=8)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    meta, after = model.optimizer.state_dict()
    assert meta["iterations"] == 1
    for key in slots:
        np.testing.assert_array_equal(after[key], slots[key])


# -- arguments -----------------------------------------------------------------------------------

def test_names_defaults_and_keras_3_argument_order():
    for name, cls in NAMES.items():
        assert OPTIMIZERS[name] is cls and isinstance(get_optimizer(name.capitalize()), cls)
        assert cls.__doc__.startswith(f"{cls.__name__} optimizer (Keras' {cls.__name__}): ")
        assert "lr : float >= 0, default 0.001" in cls.__doc__ and cls().learning_rate == 1e-3
    adagrad = Adagrad(0.01, 0.2, 1e-6)
    assert (adagrad.lr, adagrad.initial_accumulator_value, adagrad.epsilon) == (0.01, 0.2, 1e-6)
    assert (Adagrad().initial_accumulator_value, Adagrad().epsilon) == (0.1, 1e-7)
    adadelta = Adadelta(1.0, 0.9, 1e-6)
    assert (adadelta.lr, adadelta.rho, adadelta.epsilon, Adadelta().rho) == (1.0, 0.9, 1e-6, 0.95)
    for cls in (Adamax, Nadam):
        opt = cls(0.002, 0.8, 0.99, 1e-6)
        assert (opt.lr, opt.beta_1, opt.beta_2, opt.epsilon) == (0.002, 0.8, 0.99, 1e-6)
        assert (cls().beta_1, cls().beta_2, cls().epsilon) == (0.9, 0.999, 1e-7)
    assert Adagrad().slots == ("accumulator",) and Adadelta().slots == ("accumulated_grad", "accumulated_delta_var")
    assert Adamax().slots == ("m", "u") and Nadam().slots == ("m", "v")
    assert Nadam(learning_rate=0.5, weight_decay=0.1, clipnorm=1.0).weight_decay == 0.1


def test_every_argument_is_documented():
    import inspect

    for cls in NAMES.values():
        doc = inspect.cleandoc(cls.__doc__)
        params = doc.split("Parameters\n----------\n")[1].split("\n\n")[0]
        documented = {name.strip() for line in params.splitlines() if line and not line[0].isspace()
                      for name in line.split(" : ")[0].split(",")}
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
        assert documented == accepted, cls.__name__


BAD = [
    (lambda: Adagrad(initial_accumulator_value=-0.1), "initial_accumulator_value must be a finite number >= 0, "
                                                       "got -0.1"),
    (lambda: Adagrad(initial_accumulator_value=np.inf), "initial_accumulator_value must be .* got inf"),
    (lambda: Adagrad(epsilon=0.0), r"epsilon must be > 0 .* got 0.0"),
    (lambda: Adadelta(rho=1.0), "rho must be < 1, got 1.0"),
    (lambda: Adadelta(rho=-0.5), "rho must be a finite number >= 0, got -0.5"),
    (lambda: Adadelta(epsilon=1e-50), r"epsilon must be > 0 in float32 .* got 1e-50"),
    (lambda: Adamax(beta_1=1.0), "beta_1 must be < 1, got 1.0"),
    (lambda: Adamax(beta_2="0.9"), "beta_2 must be a finite number >= 0, got '0.9'"),
    (lambda: Nadam(beta_1=np.nan), "beta_1 must be a finite number >= 0, got nan"),
    (lambda: Nadam(beta_2=1.5), "beta_2 must be < 1, got 1.5"),
    (lambda: Nadam(-1.0), "lr must be a finite number >= 0, got -1.0"),
    (lambda: Adamax(0.1, learning_rate=0.1), "give lr or learning_rate, not both"),
    (lambda: Adagrad(weight_decay=-1.0), "weight_decay must be None or a finite number >= 0, got -1.0"),
    (lambda: Adadelta(clipnorm=1.0, clipvalue=0.5), "only one of clipnorm, clipvalue and global_clipnorm"),
    (lambda: Nadam(global_clipnorm=True), "global_clipnorm must be None or a finite number >= 0, got True"),
]


@pytest.mark.parametrize("make, message", BAD, ids=[m for _, m in BAD])
def test_bad_arguments_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_the_options_are_keyword_only():
    for cls, args in ((Adagrad, (0.1, 0.1, 1e-7)), (Adadelta, (0.1, 0.9, 1e-7)), (Adamax, (0.1, 0.9, 0.99, 1e-7)),
                      (Nadam, (0.1, 0.9, 0.99, 1e-7))):
        with pytest.raises(TypeError):
            cls(*args, 0.01)  # weight_decay is Keras 3's next positional argument; keyword-only here


# -- the cuda kernels, under numba's simulator where no device is present ---------------------------

@pytest.mark.cuda
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the simulator's NumPy scalars: inf and NaN
@pytest.mark.parametrize("name", KERNELS)
def test_cuda_kernels_against_numpy(cuda_backend, cuda_scale, dtype, name):
    gpu = importlib.import_module("fastdl.kernels.gpu.optim")
    reference = importlib.import_module(f"{PACKAGES['numpy']}.optim")
    rng = np.random.default_rng(3)
    n = 37 * cuda_scale
    value = rng.standard_normal(n).astype(dtype)
    n_slots, _ = _kernel_call(name, dtype, 1)
    slots = [rng.random(n).astype(dtype) for _ in range(n_slots)]
    d_value, *d_slots = (_device.to_device(a) for a in [value, *slots])
    for t in (1, 2, 3):
        grad = rng.standard_normal(n).astype(dtype)
        grad[t] = [np.nan, HUGE[dtype], -np.inf][t - 1]
        scalars = _kernel_call(name, dtype, t)[1]
        with np.errstate(invalid="ignore", over="ignore"):
            getattr(gpu, name)(d_value, _device.to_device(grad), *d_slots, *scalars, 1)
            getattr(reference, name)(value, grad, *slots, *scalars, 1)
    tight = {np.float32: 1e-5, np.float64: 1e-12}[dtype]
    for got, want in zip([d_value, *d_slots], [value, *slots]):
        np.testing.assert_allclose(got.copy_to_host(), want, rtol=tight, atol=tight, equal_nan=True)


@pytest.mark.cuda
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the simulator's NumPy scalars
@pytest.mark.parametrize("config", ["adagrad_decay_clipnorm", "adadelta_rho_global", "adamax_betas_clipvalue",
                                    "nadam_betas_decay_clipnorm"])
def test_cuda_optimizer_on_the_device_as_on_the_host(cuda_backend, dtype, config):
    rng = np.random.default_rng(0)
    shapes = [(3, 7), (5,), (2, 4)]
    start = [rng.standard_normal(s).astype(dtype) for s in shapes]
    steps = [[(rng.standard_normal(s) * 2).astype(dtype) for s in shapes] for _ in range(3)]
    results = []
    for on_device in (False, True):
        params = [Parameter(v.copy()) for v in start]
        place_parameters(params[:2], on_device=on_device)
        place_parameters(params[2:], on_device=on_device)
        opt = CONFIGS[config]()
        opt.attach(params, "numpy")
        assert opt._backend == ("cuda" if on_device else "numpy")
        for grads in steps:
            for p, g in zip(params, grads):
                _device.assign(p.grad, g)
            opt.step()
        results.append([_device.host_copy(p.value) for p in params] +
                       [_device.host_copy(s) for name in opt.slots for s in opt.state[name]])
    tight = {np.float32: 1e-5, np.float64: 1e-12}[dtype]
    for got, want in zip(results[1], results[0]):
        np.testing.assert_allclose(got, want, rtol=tight, atol=tight)
