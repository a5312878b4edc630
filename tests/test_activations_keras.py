"""Keras 3's activations elu, selu, softplus, softsign, relu6, hard_sigmoid and exponential on every
backend: against float64 loops and PyTorch, gradients against the derivative and finite differences,
through the ops, the Dense, Conv2D, Conv2DTranspose and activation layers, extreme inputs, bad alpha."""

import math
import warnings

import numpy as np
import pytest

import naive
from conftest import CPU_BACKENDS, skip_unless_available
from fastdl import backend as fastdl_backend
from fastdl import nn
from fastdl.nn.activations import ELU
from fastdl.ops.conv import conv2d_into
from fastdl.ops.conv_pool import pool_fusable
from fastdl.ops.conv_transpose import conv2d_transpose_into, transpose_geometry
from fastdl.ops.dense import ACTIVATIONS, activation_alpha, activation_grad, dense

NEW = ["elu", "selu", "softplus", "softsign", "relu6", "hard_sigmoid", "exponential"]
SCALE, SELU_ALPHA = 1.0507009873554804934193349852946, 1.6732632423543772848170429916717
# float32: 8 ulps, the compiled backends working the exponential ones in float32 (kernels/cpu/
# activation32; the numpy backend rounds a float64 result once); float64: a few ulps of vecmath's.
FORWARD_RTOL = {np.float32: 2 ** -21, np.float64: 1e-14}
# A derivative from a float32 output: that output's rounding, carried through (e.g. 1 - |y| of softsign).
GRAD_TOL = {np.float32: dict(rtol=2e-6, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}


@pytest.fixture(params=CPU_BACKENDS + [pytest.param("cuda", marks=pytest.mark.cuda)])
def any_backend(request):
    """Every backend, cuda too (numba's simulator where no device is present: tiny shapes)."""
    skip_unless_available(request.param)
    return request.param


def _reference(name, z, alpha=None):
    """Keras 3's definition, one float64 entry at a time."""

    def one(v):
        if name == "elu":
            return v if v > 0 else (1.0 if alpha is None else alpha) * math.expm1(v)
        if name == "selu":
            return SCALE * (v if v > 0 else SELU_ALPHA * math.expm1(v))
        if name == "softplus":
            return math.log1p(math.exp(v)) if v < 30 else v + math.exp(-v)
        if name == "softsign":
            return v / (1 + abs(v))
        if name == "relu6":
            return min(max(v, 0.0), 6.0)
        if name == "hard_sigmoid":
            return min(max(v + 3, 0.0), 6.0) / 6
        return math.exp(v) if v < 709 else math.inf

    return np.vectorize(one, otypes=[float])(np.asarray(z, dtype=np.float64))


def _derivative(name, z, alpha=None):
    """d activation / d z, one float64 entry at a time."""

    def one(v):
        if name == "elu":
            return 1.0 if v > 0 else (1.0 if alpha is None else alpha) * math.exp(v)
        if name == "selu":
            return SCALE if v > 0 else SCALE * SELU_ALPHA * math.exp(v)
        if name == "softplus":  # sigmoid
            return 1 / (1 + math.exp(-v)) if v >= 0 else math.exp(v) / (1 + math.exp(v))
        if name == "softsign":
            return 1 / (1 + abs(v)) ** 2
        if name == "relu6":
            return float(0 < v < 6)
        if name == "hard_sigmoid":
            return float(-3 < v < 3) / 6
        return math.exp(v) if v < 709 else math.inf

    return np.vectorize(one, otypes=[float])(np.asarray(z, dtype=np.float64))


def _pre(rng, shape, dtype):
    """Pre-activations over every piece (below -3, -3..0, 0..3, 3..6, above 6), away from the kinks
    at -3, 0, 3 and 6 where neither finite differences nor one-sided rules are the gradient."""
    z = rng.uniform(-8, 9, size=shape)
    for kink in (-3, 0, 3, 6):
        z = np.where(np.abs(z - kink) < 0.05, kink + 0.1, z)
    return z.astype(dtype)


# -- the ops -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NEW)
def test_dense_forward_matches_keras(any_backend, dtype, rng, name):
    x, kernel, bias = (rng.normal(size=s).astype(dtype) for s in ((5, 3), (3, 4), (4,)))
    x *= 3
    pre = dense(x, kernel, bias, None, backend=any_backend)  # the same pre-activation, then the activation
    out = dense(x, kernel, bias, name, backend=any_backend)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, _reference(name, pre), rtol=FORWARD_RTOL[dtype],
                               atol=np.finfo(dtype).smallest_subnormal)


@pytest.mark.parametrize("name", NEW)
def test_activation_grad_matches_the_derivative(any_backend, dtype, rng, name):
    pre = _pre(rng, (6, 5), dtype)
    out = dense(pre, np.eye(5, dtype=dtype), None, name, backend=any_backend)
    dout = rng.normal(size=out.shape).astype(dtype)
    dpre = activation_grad(out, dout, name, backend=any_backend)
    assert dpre.dtype == dtype
    expected = dout.astype(np.float64) * _derivative(name, pre)
    np.testing.assert_allclose(dpre, expected, **GRAD_TOL[dtype])


@pytest.mark.parametrize("name", NEW)
def test_activation_grad_matches_finite_differences(any_backend, rng, name):
    pre = _pre(rng, (4, 3), np.float64)
    eye = np.eye(3)
    out = dense(pre, eye, None, name, backend=any_backend)
    weights = rng.normal(size=out.shape)
    eps = 1e-6
    numeric = (dense(pre + eps, eye, None, name, backend=any_backend)
               - dense(pre - eps, eye, None, name, backend=any_backend)) * weights / (2 * eps)
    dpre = activation_grad(out, weights, name, backend=any_backend)
    np.testing.assert_allclose(dpre, numeric, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name, torch_name", [("elu", "elu"), ("selu", "selu"), ("softplus", "softplus"),
                                              ("softsign", "softsign"), ("relu6", "relu6"),
                                              ("hard_sigmoid", "hardsigmoid"), ("exponential", "exp")])
def test_matches_pytorch(any_backend, dtype, rng, name, torch_name):
    torch = pytest.importorskip("torch")
    pre = _pre(rng, (6, 5), dtype)
    out = dense(pre, np.eye(5, dtype=dtype), None, name, backend=any_backend)
    dout = rng.normal(size=out.shape).astype(dtype)
    dpre = activation_grad(out, dout, name, backend=any_backend)
    t = torch.tensor(pre.astype(np.float64), requires_grad=True)
    y = torch.exp(t) if torch_name == "exp" else getattr(torch.nn.functional, torch_name)(t)
    y.backward(torch.tensor(dout.astype(np.float64)))
    # PyTorch's softplus is x itself above 20, 2e-9 from log1p(exp(x)): float64's tolerance allows it.
    tol = {np.float32: 2e-6, np.float64: 1e-9}[dtype]
    np.testing.assert_allclose(out, y.detach().numpy(), rtol=tol, atol=tol)
    # PyTorch's hardsigmoid backward multiplies by 1/6 rounded to float32 (3e-8 off), also in float64.
    grad_tol = max(tol * 10, 1e-7) if name == "hard_sigmoid" else tol * 10
    np.testing.assert_allclose(dpre, t.grad.numpy(), rtol=grad_tol, atol=tol)


def test_alpha_defaults_to_the_activations_own(any_backend):
    """None: 1.0 for elu, 0.2 for leaky_relu (Keras 3's); a given alpha is elu's scale below zero."""
    x, eye = np.array([[-1.0, 2.0]]), np.eye(2)
    np.testing.assert_allclose(dense(x, eye, None, "elu", backend=any_backend), [[math.expm1(-1), 2.0]])
    np.testing.assert_allclose(dense(x, eye, None, "leaky_relu", backend=any_backend), [[-0.2, 2.0]])
    np.testing.assert_allclose(dense(x, eye, None, "elu", backend=any_backend, alpha=0.5),
                               [[0.5 * math.expm1(-1), 2.0]])
    np.testing.assert_allclose(dense(x, eye, None, "elu", backend=any_backend, alpha=0), [[0.0, 2.0]])
    out = np.array([[math.expm1(-1), 2.0]])
    np.testing.assert_allclose(activation_grad(out, np.ones((1, 2)), "elu", backend=any_backend),
                               [[math.exp(-1), 1.0]])
    half = np.array([[0.5 * math.expm1(-1), 2.0]])
    np.testing.assert_allclose(activation_grad(half, np.ones((1, 2)), "elu", backend=any_backend, alpha=0.5),
                               [[0.5 * math.exp(-1), 1.0]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_selu_gradient_is_zero_where_its_output_saturates(any_backend, dtype):
    """y + SCALE * ALPHA with the constant rounded to the output's dtype, as the saturated output is
    (float32's in float64 left 2.3e-8 * dout); a given alpha does not change it. Elsewhere as before."""
    z = np.array([[-200.0, -5.0, -0.5, 0.5]], dtype)
    out = dense(z, np.eye(4, dtype=dtype), None, "selu", backend=any_backend)
    assert out[0, 0] == -dtype(SCALE * SELU_ALPHA)
    dout = np.full_like(out, 3.0)
    exact = 3.0 * SCALE * np.where(z > 0, 1.0, SELU_ALPHA * np.exp(z.astype(np.float64)))
    for alpha in (None, 0.5):
        grad = activation_grad(out, dout, "selu", backend=any_backend, alpha=alpha)
        assert grad[0, 0] == 0
        np.testing.assert_allclose(grad[0, 1:], exact[0, 1:], rtol=2e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("alpha", [-0.1, np.nan, np.inf, True, "1"])
def test_bad_alpha_is_refused(alpha):
    x = np.ones((2, 2))
    with pytest.raises(ValueError, match="alpha"):
        dense(x, np.eye(2), None, "elu", alpha=alpha)
    with pytest.raises(ValueError, match="alpha"):
        activation_grad(x, x, "elu", alpha=alpha)
    with pytest.raises(ValueError, match="alpha"):
        ELU(alpha)


@pytest.mark.parametrize("name", ["swish", "silu", "gelu", "mish", "hard_swish", "hard_silu", "GELU"])
def test_input_gradient_activations_are_known(name):
    """Once refused (their gradient needs the activation's input): now codes 12 to 15, their
    gradient from `pre` (tests/test_activations_input.py); an unknown name gets the plain message."""
    np.testing.assert_allclose(dense(np.full((1, 1), 2.0), np.ones((1, 1)), None, name),
                               [[{"swish": 2 / (1 + math.exp(-2)), "silu": 2 / (1 + math.exp(-2)),
                                  "gelu": math.erfc(-math.sqrt(2)), "mish": 2 * math.tanh(math.log1p(math.exp(2))),
                                  "hard_swish": 5 / 3, "hard_silu": 5 / 3}[name.lower()]]], rtol=1e-14)
    assert nn.Activation(name).activation == name.lower()
    for make in (lambda: dense(np.ones((1, 1)), np.ones((1, 1)), None, "swishy"),
                 lambda: nn.Dense(2, activation="swishy"), lambda: nn.Activation("swishy")):
        with pytest.raises(ValueError, match=r"unknown activation 'swishy'; choose one of .*'gelu'") as error:
            make()
        assert "input" not in str(error.value)


# -- extreme inputs ------------------------------------------------------------------------------


def _backward_kernel(backend, out, dout, name):
    """The backend's activation_backward kernel itself (the ops refuse NaN), its default alpha."""
    kernels, _ = fastdl_backend.kernels("dense", backend)
    code, alpha = ACTIVATIONS[name], out.dtype.type(activation_alpha(ACTIVATIONS[name]))
    if backend != "cuda":
        dpre = np.empty_like(out)
        kernels.activation_backward(out, dout, code, alpha, dpre, 1)
        return dpre
    from numba import cuda

    dpre = cuda.device_array(out.shape, out.dtype)
    kernels.activation_backward(cuda.to_device(out), cuda.to_device(dout), code, alpha, dpre, 1)
    return dpre.copy_to_host()


@pytest.mark.parametrize("name", NEW)
def test_extreme_inputs(any_backend, dtype, name):
    """±1e4 and ±88 (float32's exp limit): the Keras value, inf where exponential overflows, no
    warning; NaN in, NaN out, and its gradient NaN where the derivative is a function of it."""
    x = np.array([[-1e4, -88.0, -20.0, 20.0, 88.0, 1e4, np.nan]], dtype)
    # The layer itself: a model's predict refuses NaN.
    model = nn.Sequential([nn.Input((7,)), nn.Activation(name)], dtype=dtype, backend=any_backend)
    model.build()
    layer = model.layers[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if any_backend == "cuda":
            from numba import cuda

            out = layer(cuda.to_device(x)).copy_to_host()
        else:
            out = layer(x)
        dpre = _backward_kernel(any_backend, out, np.ones_like(out), name)
    assert out.dtype == dtype and np.isnan(out[0, -1])
    with np.errstate(over="ignore"):
        expected = _reference(name, x[:, :-1]).astype(dtype)
    np.testing.assert_allclose(out[:, :-1], expected, rtol=FORWARD_RTOL[dtype], atol=np.finfo(dtype).smallest_subnormal)
    assert not np.isnan(dpre[:, :-1]).any()
    np.testing.assert_allclose(dpre[:, :-1], _derivative(name, x[:, :-1]), **GRAD_TOL[dtype])
    assert np.isnan(dpre[0, -1]) == (name not in ("relu6", "hard_sigmoid"))
    if name == "exponential":
        assert np.isinf(out[0, 5]) and np.isfinite(out[0, 4])


# -- the layers ----------------------------------------------------------------------------------


def _check_layer(layer, x, rng, backend):
    """dx and every parameter's gradient of sum(out * weights) against finite differences, float64."""
    layer.backend = backend
    layer.build(x.shape[1:], rng, np.float64)
    for _, p in layer.parameters():
        p.value[...] = rng.standard_normal(p.value.shape) * 0.7

    def loss():
        return float((layer.forward(x, training=True) * weights).sum())

    out = layer.forward(x, training=True).copy()  # a buffer the finite differences' passes reuse
    weights = rng.standard_normal(out.shape)
    dx = layer.backward(weights.copy())
    np.testing.assert_allclose(dx, naive.numeric_grad(loss, x), rtol=1e-5, atol=1e-7)
    for name, p in layer.parameters():
        np.testing.assert_allclose(p.grad, naive.numeric_grad(loss, p.value), rtol=1e-5, atol=1e-7, err_msg=name)
    return out


@pytest.mark.parametrize("name", NEW)
def test_dense_layer_gradients(backend, rng, name):
    _check_layer(nn.Dense(3, activation=name), rng.normal(size=(3, 4)), rng, backend)


@pytest.mark.parametrize("name", NEW)
def test_conv2d_layer_gradients(backend, rng, name):
    _check_layer(nn.Conv2D(2, 3, padding="same", activation=name), rng.normal(size=(2, 4, 4, 2)), rng, backend)


@pytest.mark.parametrize("layer", [lambda: nn.Activation("elu"), ELU, lambda: ELU(alpha=0.5), lambda: ELU(alpha=0.0),
                                   lambda: nn.Activation("SELU"), lambda: nn.Activation("softplus")],
                         ids=["activation-elu", "ELU", "ELU-0.5", "ELU-0", "activation-SELU", "activation-softplus"])
def test_activation_layers(backend, rng, layer):
    layer = layer()
    x = _pre(rng, (3, 4), np.float64)
    out = _check_layer(layer, x, rng, backend)
    np.testing.assert_allclose(out, _reference(layer.activation, x, layer.alpha), rtol=1e-14)


def test_elu_layer_is_keras():
    layer = ELU(alpha=0.5)
    assert layer.activation == "elu" and layer.alpha == 0.5 and ELU().alpha == 1.0
    np.testing.assert_allclose(layer(np.array([[-2.0, 0.0, 3.0]])), [[0.5 * math.expm1(-2), 0.0, 3.0]])


# -- convolutions: the paths with fused epilogues take only their own codes ----------------------


@pytest.mark.parametrize("name", ["elu", "selu", "hard_sigmoid"])
def test_conv2d_paths(backend, dtype, rng, name, tiles):
    """3x3 with 16 channels takes Winograd (whose ReLU epilogue is for code 1 only), 1 channel
    another path: every one applies the new activation after the bias."""
    for channels in (16, 1):
        x = rng.normal(size=(1, 5, 5, channels)).astype(dtype)
        kernel = (rng.normal(size=(3, 3, channels, 16)) / np.sqrt(9 * channels)).astype(dtype)
        bias = rng.normal(size=16).astype(dtype)
        model = nn.Sequential([nn.Input((5, 5, channels)), nn.Conv2D(16, 3, padding="same", activation=name)],
                              dtype=dtype, backend=backend)
        model.set_weights([kernel, bias])
        expected = _reference(name, naive.conv2d(x, kernel, bias, 1, "same"))
        tol = {np.float32: 1e-5, np.float64: 1e-12}[dtype]
        np.testing.assert_allclose(model.predict(x), expected, rtol=tol, atol=tol)


def test_conv2d_into_with_a_new_code(backend, rng):
    x, kernel = rng.normal(size=(1, 4, 4, 2)), rng.normal(size=(3, 3, 2, 3))
    from fastdl.ops.conv import _geometry

    geometry = _geometry(x.shape, kernel.shape, 1, "valid")
    out = np.empty((1, 2, 2, 3))
    conv2d_into(x, kernel, None, geometry, out, ACTIVATIONS["elu"], backend)  # alpha None: elu's 1.0
    np.testing.assert_allclose(out, _reference("elu", naive.conv2d(x, kernel)), rtol=1e-12)


def test_conv_pool_fusion_leaves_new_codes_alone(any_backend, rng):
    """Conv2D then MaxPool2D fuses ReLU and linear only; with elu the two run apart, as written."""
    assert not any(pool_fusable(ACTIVATIONS[name], (2, 2, 2, 2, 0, 0), (4, 4), (2, 2)) for name in NEW)
    model = nn.Sequential([nn.Input((4, 4, 2)), nn.Conv2D(3, 3, padding="same", activation="elu"),
                           nn.MaxPool2D(2)], seed=0, dtype="float64", backend=any_backend)
    x = rng.normal(size=(2, 4, 4, 2))
    kernel, bias = model.get_weights()
    convolved = _reference("elu", naive.conv2d(x, kernel, bias, 1, "same"))
    expected = convolved.reshape(2, 2, 2, 2, 2, 3).max(axis=(2, 4))
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-12)


@pytest.mark.parametrize("config", [(2, 3, 3, 16, 3, 3, 16, 2, "same"), (1, 3, 3, 2, 3, 3, 2, 2, "same")],
                         ids=["sub-pixel", "col2im"])
def test_conv2d_transpose_paths(backend, dtype, rng, config):
    """The sub-pixel kernel fuses the bias and a ReLU only; elu goes after it."""
    n, h, w, c_in, kh, kw, filters, strides, padding = config
    x = rng.normal(size=(n, h, w, c_in)).astype(dtype)
    kernel = (rng.normal(size=(kh, kw, filters, c_in)) / np.sqrt(kh * kw * c_in)).astype(dtype)
    bias = rng.normal(size=filters).astype(dtype)
    geometry = transpose_geometry(x.shape, kernel.shape, strides, padding)
    out = np.full((n, *geometry[0], filters), np.nan, dtype)
    conv2d_transpose_into(x, kernel, bias, geometry, out, ACTIVATIONS["elu"], backend)
    expected = _reference("elu", naive.conv2d_transpose(x, kernel, bias, strides, padding))
    tol = {np.float32: 1e-5, np.float64: 1e-12}[dtype]
    np.testing.assert_allclose(out, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", NEW)
def test_model_trains_a_step_on_every_backend(any_backend, name):
    """Conv2D and Dense with the activation, one SGD step: the same weights on every backend as on
    the numpy reference."""

    def build(backend):
        model = nn.Sequential([nn.Input((4, 4, 1)), nn.Conv2D(2, 3, activation=name), nn.Flatten(),
                               nn.Dense(3, activation=name), nn.Dense(2)], seed=3, dtype="float64",
                              backend=backend)
        model.compile(nn.SGD(0.01), "mse")
        return model

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(3, 4, 4, 1)) * 0.5, rng.normal(size=(3, 2))
    reference, model = build("numpy"), build(any_backend)
    losses = [m.train_on_batch(x, y) for m in (reference, model)]
    assert np.isfinite(losses[0])
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-12)
    for a, b in zip(reference.get_weights(), model.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-11, atol=1e-13)


def test_costly_activations_take_threads_sooner(monkeypatch):
    """A pass's threads follow its activation's cost: a 128 x 1024 gelu or sigmoid pass is worth
    two threads, a relu pass of the same size is not (nor is sigmoid's light gradient)."""
    from fastdl.ops.dense import activation_threads

    monkeypatch.setattr(fastdl_backend, "get_num_threads", lambda: 2)
    shape = (128, 1024)
    assert activation_threads(ACTIVATIONS["relu"], shape) == 1
    assert activation_threads(ACTIVATIONS["gelu"], shape) == 2
    assert activation_threads(ACTIVATIONS["gelu"], shape, backward=True) == 2
    assert activation_threads(ACTIVATIONS["sigmoid"], shape) == 2
    assert activation_threads(ACTIVATIONS["sigmoid"], shape, backward=True) == 1
    assert activation_threads(ACTIVATIONS["gelu"], (2, 1024)) == 1
    # float32's exponential passes, worked in float32, cost a third: 32 x 1024 is one thread's.
    assert activation_threads(ACTIVATIONS["gelu"], (32, 1024), dtype=np.float64) == 2
    assert activation_threads(ACTIVATIONS["gelu"], (32, 1024), dtype=np.float32) == 1
    assert activation_threads(ACTIVATIONS["gelu"], shape, dtype=np.float32) == 2


@pytest.mark.parametrize("kernel", ["bias_activation", "activation_backward", "activation_backward_input"])
def test_compiled_kernels_refuse_other_layouts_with_a_value_error(kernel, backend):
    """They run over an array's values as one run: a Fortran-order or strided array is a ValueError
    on every backend (Numba's reshape gave a NotImplementedError), the array left as it was."""
    if backend == "numpy":
        pytest.skip("the numpy kernels take any layout")
    kernels, _ = fastdl_backend.kernels("dense", backend)
    fortran = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    strided = np.arange(24.0).reshape(3, 8)[:, ::2]
    for bad in (fortran, strided):
        before = bad.copy()
        with pytest.raises(ValueError, match="C-contiguous"):
            if kernel == "bias_activation":
                kernels.bias_activation(bad, np.zeros(0), 13, 0.0, 1)
            elif kernel == "activation_backward":
                kernels.activation_backward(bad, bad, 5, 1.0, bad, 1)
            else:
                kernels.activation_backward_input(bad, bad, 13, bad, 1)
        np.testing.assert_array_equal(bad, before)
