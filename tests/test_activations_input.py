"""Keras 3's swish/silu, gelu, mish and hard_swish/hard_silu, whose gradient needs the activation's
input, on every backend: the forward pass against float64 loops and PyTorch, the gradient from the
input (activation_backward_input) against the derivative, finite differences and PyTorch's autograd,
extreme inputs, hard_swish's kinks, the ops' checks of `pre`, and the Activation layer."""

import math
import warnings

import numpy as np
import pytest

import naive
from conftest import CPU_BACKENDS, skip_unless_available
from fastdl import backend as fastdl_backend
from fastdl import nn
from fastdl.nn import activations
from fastdl.ops.dense import (ACTIVATIONS, INPUT_ACTIVATIONS, activation_grad, activation_grad_into, dense,
                              needs_input)

NAMES = ["swish", "gelu", "mish", "hard_swish"]
ALIASES = {"silu": "swish", "hard_silu": "hard_swish"}
# float32: 8 ulps, the compiled backends working swish, gelu and mish in float32 (kernels/cpu/
# activation32; the numpy backend rounds a float64 result once); float64: a few ulps of vecmath's.
FORWARD_RTOL = {np.float32: 2 ** -21, np.float64: 1e-14}
# dout * f'(pre): in float32 within 8 ulps, or 8 ulps of |dout| where f' nears a zero (the terms
# of swish's, gelu's and mish's derivatives cancel there); float64's reference differs by a few ulps.
GRAD_TOL = {np.float32: dict(rtol=2 ** -21, atol=2 ** -21 * 4), np.float64: dict(rtol=1e-13, atol=1e-15)}


@pytest.fixture(params=CPU_BACKENDS + [pytest.param("cuda", marks=pytest.mark.cuda)])
def any_backend(request):
    """Every backend, cuda too (numba's simulator where no device is present: tiny shapes)."""
    skip_unless_available(request.param)
    return request.param


def _sigmoid(v):
    return 1 / (1 + math.exp(-v)) if v >= 0 else math.exp(v) / (1 + math.exp(v))


def _softplus(v):
    return v + math.log1p(math.exp(-v)) if v > 0 else math.log1p(math.exp(v))


def _reference(name, z):
    """Keras 3's definition, one float64 entry at a time (gelu: Phi by erfc, exact in its tail)."""

    def one(v):
        if math.isnan(v):
            return math.nan
        if name == "swish":
            return v * _sigmoid(v)
        if name == "gelu":
            return v * naive.normal_cdf(v)
        if name == "mish":
            return v * math.tanh(_softplus(v))
        return v * min(max(v + 3, 0.0), 6.0) / 6

    return np.vectorize(one, otypes=[float])(np.asarray(z, dtype=np.float64))


def _derivative(name, z):
    """d activation / d z, one float64 entry at a time; hard_swish's at its kinks as TF's autodiff."""

    def one(v):
        if name == "swish":
            s = _sigmoid(v)
            return s + v * s * (1 - s)
        if name == "gelu":
            return naive.normal_cdf(v) + v * naive.normal_density(v)
        if name == "mish":
            t = math.tanh(_softplus(v))
            return t + v * (1 - t * t) * _sigmoid(v)
        return 0.0 if v <= -3 else 1.0 if v >= 3 else (2 * v + 3) / 6

    return np.vectorize(one, otypes=[float])(np.asarray(z, dtype=np.float64))


def _pre(rng, shape, dtype):
    """Inputs over -8..8, away from hard_swish's kinks at -3 and 3 (see test_hard_swish_kinks)."""
    z = rng.uniform(-8, 8, size=shape)
    for kink in (-3, 3):
        z = np.where(np.abs(z - kink) < 0.05, kink + 0.1, z)
    return z.astype(dtype)


def _kernels(backend):
    return fastdl_backend.kernels("dense", backend)[0]


def _forward_kernel(backend, z, name):
    """The backend's bias_activation itself (the ops refuse NaN), without bias."""
    code = ACTIVATIONS[name]
    if backend != "cuda":
        out = z.copy()
        _kernels(backend).bias_activation(out, np.empty(0, z.dtype), code, z.dtype.type(0), 1)
        return out
    from numba import cuda

    out = cuda.to_device(z)
    _kernels(backend).bias_activation(out, cuda.to_device(np.empty(0, z.dtype)), code, z.dtype.type(0), 1)
    return out.copy_to_host()


def _backward_kernel(backend, pre, dout, name, same=False):
    """The backend's activation_backward_input itself; same: dpre is dout (overwritten)."""
    code = ACTIVATIONS[name]
    if backend != "cuda":
        dpre = dout if same else np.empty_like(dout)
        _kernels(backend).activation_backward_input(pre, dout, code, dpre, 1)
        return dpre
    from numba import cuda

    d_dout = cuda.to_device(dout)
    dpre = d_dout if same else cuda.device_array(dout.shape, dout.dtype)
    _kernels(backend).activation_backward_input(cuda.to_device(pre), d_dout, code, dpre, 1)
    return dpre.copy_to_host()


def test_codes():
    assert {ACTIVATIONS[name] for name in NAMES} == INPUT_ACTIVATIONS == {12, 13, 14, 15}
    assert all(ACTIVATIONS[alias] == ACTIVATIONS[name] for alias, name in ALIASES.items())
    assert [needs_input(code) for code in range(16)] == [False] * 12 + [True] * 4
    assert set(ACTIVATIONS) - {None} <= set(activations.NAMES)


# -- forward -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES + list(ALIASES))
def test_dense_forward_matches_keras(any_backend, dtype, rng, name):
    x, kernel, bias = (rng.normal(size=s).astype(dtype) for s in ((5, 3), (3, 4), (4,)))
    x *= 3
    pre = dense(x, kernel, bias, None, backend=any_backend)  # the same pre-activation, then the activation
    out = dense(x, kernel, bias, name, backend=any_backend)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, _reference(ALIASES.get(name, name), pre), rtol=FORWARD_RTOL[dtype],
                               atol=np.finfo(dtype).smallest_subnormal)


# -- backward from the input ---------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_grad_matches_the_derivative(any_backend, dtype, rng, name):
    pre = _pre(rng, (6, 5), dtype)
    out = dense(pre, np.eye(5, dtype=dtype), None, name, backend=any_backend)
    dout = rng.normal(size=out.shape).astype(dtype)
    dpre = activation_grad(out, dout, name, backend=any_backend, pre=pre)
    assert dpre.dtype == dtype
    np.testing.assert_allclose(dpre, dout.astype(np.float64) * _derivative(name, pre), **GRAD_TOL[dtype])
    # dpre may be dout itself: each entry is read before it is written.
    np.testing.assert_array_equal(_backward_kernel(any_backend, pre, dout.copy(), name, same=True), dpre)


@pytest.mark.parametrize("name", NAMES)
def test_grad_matches_finite_differences(any_backend, rng, name):
    pre = _pre(rng, (4, 3), np.float64)
    eye = np.eye(3)
    weights = rng.normal(size=pre.shape)
    eps = 1e-6
    numeric = (dense(pre + eps, eye, None, name, backend=any_backend)
               - dense(pre - eps, eye, None, name, backend=any_backend)) * weights / (2 * eps)
    out = dense(pre, eye, None, name, backend=any_backend)
    dpre = activation_grad(out, weights, name, backend=any_backend, pre=pre)
    np.testing.assert_allclose(dpre, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name, torch_name", [("swish", "silu"), ("gelu", "gelu"), ("mish", "mish"),
                                              ("hard_swish", "hardswish")])
def test_matches_pytorch(any_backend, dtype, rng, name, torch_name):
    torch = pytest.importorskip("torch")
    pre = _pre(rng, (6, 5), dtype)
    out = dense(pre, np.eye(5, dtype=dtype), None, name, backend=any_backend)
    dout = rng.normal(size=out.shape).astype(dtype)
    dpre = activation_grad(out, dout, name, backend=any_backend, pre=pre)
    t = torch.tensor(pre.astype(np.float64), requires_grad=True)
    function = getattr(torch.nn.functional, torch_name)
    y = function(t, approximate="none") if name == "gelu" else function(t)
    y.backward(torch.tensor(dout.astype(np.float64)))
    tol = {np.float32: 2e-6, np.float64: 1e-12}[dtype]
    np.testing.assert_allclose(out, y.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(dpre, t.grad.numpy(), rtol=tol * 10, atol=tol)


@pytest.mark.cuda
def test_cuda_kernel_takes_strided_arrays(cuda_backend, rng):
    """The device arrays of any strides (a caller's views): every other row and column."""
    from numba import cuda

    pre, dout = rng.uniform(-5, 5, (6, 8)), rng.normal(size=(6, 8))
    dpre = cuda.device_array((6, 8))
    _kernels("cuda").activation_backward_input(cuda.to_device(pre)[::2, ::2], cuda.to_device(dout)[::2, ::2],
                                                ACTIVATIONS["gelu"], dpre[1::2, 1::2], 1)
    np.testing.assert_allclose(dpre.copy_to_host()[1::2, 1::2], dout[::2, ::2] * _derivative("gelu", pre[::2, ::2]),
                               rtol=1e-13)


# -- extreme inputs and kinks --------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_extreme_inputs(any_backend, dtype, name):
    """±1e4 and ±88 (float32's exp limit): Keras' value and derivative, no overflow and no warning;
    NaN in, NaN out, both ways."""
    x = np.array([[-1e4, -88.0, -20.0, 20.0, 88.0, 1e4, np.nan]], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = _forward_kernel(any_backend, x, name)
        dpre = _backward_kernel(any_backend, x, np.ones_like(x), name)
    assert out.dtype == dpre.dtype == dtype
    assert np.isnan(out[0, -1]) and np.isnan(dpre[0, -1])
    rtol = FORWARD_RTOL[dtype]
    np.testing.assert_allclose(out[:, :-1], _reference(name, x[:, :-1]), rtol=rtol,
                               atol=np.finfo(dtype).smallest_subnormal)
    np.testing.assert_allclose(dpre[:, :-1], _derivative(name, x[:, :-1]), rtol=rtol, atol=GRAD_TOL[dtype]["atol"])
    np.testing.assert_array_equal(dpre[0, [0, 5]], [0.0, 1.0])  # far out: 0 below, 1 above


def _ulps(got, exact):
    """|got - exact| in units of exact's last place, for float64 results (a subnormal's: the
    smallest subnormal)."""
    return np.abs(got - exact) / np.spacing(np.abs(exact))


def test_gelu_float64_within_a_few_ulps(any_backend):
    """z Phi(z) and its derivative over gelu's whole float64 tail (it underflows below -38.6):
    Phi's exponent worked from z itself, not from the rounded z / sqrt(2) that erfc takes (which
    cost up to 1,300 ulps: 400 at -28). Within 12 ulps of the reference (itself within 5 of the
    exact values) down to -37.5; below, where the reference's erfc is subnormal (its last unit then
    -z times the smallest subnormal), within that. The derivative, Phi(z) + z phi(z), away from its zero near -0.75, where its terms
    cancel."""
    z = np.concatenate([np.random.default_rng(5).uniform(-38.6, 8, 3000), [-37.4, -30.0, -20.0, -5.0, -1e-300]])
    z = z.reshape(1, -1)
    out = _forward_kernel(any_backend, z, "gelu")[0]
    dpre = _backward_kernel(any_backend, z, np.ones_like(z), "gelu")[0]
    z = z[0]
    exact, slope = _reference("gelu", z), _derivative("gelu", z)
    tail = z < -37.5
    assert _ulps(out, exact)[~tail].max() <= 12
    np.testing.assert_allclose(out[tail], exact[tail], rtol=1e-12, atol=64 * 5e-324)
    away = (z < -1.0) | (z > -0.5)
    assert _ulps(dpre, slope)[away & ~tail].max() <= 12
    np.testing.assert_allclose(dpre[tail], slope[tail], rtol=1e-12, atol=64 * 5e-324)
    ends = _forward_kernel(any_backend, np.array([[np.inf, -0.0, 0.0, 1e300]]), "gelu")[0]
    assert ends.tolist() == [np.inf, 0.0, 0.0, 1e300] and np.signbit(ends).tolist() == [False, True, False, False]


def test_hard_swish_kinks(any_backend, dtype):
    """What TF's and JAX's autodiff of x * relu6(x + 3) / 6 give (relu6' 0 at both ends): 0 at
    x = -3 (a select: an infinite dout there gives 0), 1 at x = 3; (2x + 3) / 6 between."""
    eps = float(np.finfo(dtype).eps) * 4
    x = np.array([[-3.0 - eps * 3, -3.0, -3.0 + eps * 3, 3.0 - eps * 3, 3.0, 3.0 + eps * 3]], dtype)
    out = _forward_kernel(any_backend, x, "hard_swish")
    np.testing.assert_allclose(out, _reference("hard_swish", x), rtol=FORWARD_RTOL[dtype], atol=0)
    assert out[0, 1] == 0 and out[0, 4] == 3
    dpre = _backward_kernel(any_backend, x, np.ones_like(x), "hard_swish")
    inside = (2 * x[0, [2, 3]].astype(np.float64) + 3) / 6
    np.testing.assert_allclose(dpre[0], [0, 0, inside[0], inside[1], 1, 1], rtol=FORWARD_RTOL[dtype], atol=0)
    below = _backward_kernel(any_backend, x[:, :2], np.full((1, 2), np.inf, dtype), "hard_swish")
    np.testing.assert_array_equal(below, [[0, 0]])


# -- the ops' checks -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES + list(ALIASES) + ["GELU"])
def test_grad_without_pre_is_refused(name):
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match="needs pre"):
        activation_grad(x, x, name)
    with pytest.raises(ValueError, match="pre must have out's shape"):
        activation_grad(x, x, name, pre=np.ones((3, 2)))
    with pytest.raises(ValueError, match="pre contains NaN"):
        activation_grad(x, x, name, pre=np.full((2, 3), np.nan))
    code = ACTIVATIONS[name.lower()]
    with pytest.raises(ValueError, match="needs pre"):
        activation_grad_into(x, x, code, np.empty_like(x))
    with pytest.raises(ValueError, match="column_sums"):
        activation_grad_into(x, x, code, np.empty_like(x), column_sums=np.empty(3), pre=x)
    with pytest.raises(ValueError, match="needs pre"):
        activations.grad(ALIASES.get(name.lower(), name.lower()), x, x)


def test_pre_is_ignored_for_output_activations(rng):
    """The others' gradient comes from the output, as before; a pre given is not read."""
    out, dout = rng.uniform(0.1, 0.9, (3, 4)), rng.normal(size=(3, 4))
    np.testing.assert_array_equal(activation_grad(out, dout, "sigmoid", pre=np.zeros((1, 1))),
                                  activation_grad(out, dout, "sigmoid"))


def test_mixed_dtypes_compute_in_float64(rng):
    pre = rng.normal(size=(2, 3))
    dpre = activation_grad(pre.astype(np.float32), np.ones((2, 3), np.float32), "swish", pre=pre)
    assert dpre.dtype == np.float64
    np.testing.assert_allclose(dpre, _derivative("swish", pre), rtol=1e-14)


# -- the Activation layer ------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES + ["silu"])
def test_activation_layer_gradients(backend, rng, name):
    """dx of sum(out * weights) through forward(training=True) / backward, against finite
    differences; the layer keeps its input in training only."""
    layer = nn.Activation(name)
    layer.backend = backend
    x = _pre(rng, (3, 4), np.float64)
    layer.build(x.shape[1:], rng, np.float64)
    weights = rng.standard_normal(x.shape)

    def loss():
        return float((layer.forward(x, training=False) * weights).sum())

    out = layer.forward(x, training=True)
    assert layer._pre is not None
    np.testing.assert_allclose(out, _reference(ALIASES.get(name, name), x), rtol=FORWARD_RTOL[np.float64])
    dx = layer.backward(weights.copy())
    np.testing.assert_allclose(dx, naive.numeric_grad(loss, x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dx, weights * _derivative(ALIASES.get(name, name), x), rtol=1e-12, atol=1e-15)
    layer.forward(x, training=False)
    assert layer._pre is not None  # an inference pass leaves the training step's alone
    relu = nn.Activation("relu")
    relu.build(x.shape[1:], rng, np.float64)
    relu.forward(x, training=True)
    assert relu._pre is None  # the others keep no input


def test_activation_layer_in_a_model(any_backend):
    """A model with Activation("gelu") and Activation("swish") trains a step to the numpy
    reference's weights (cuda: the layers' input kept on the device)."""

    def build(backend):
        model = nn.Sequential([nn.Input((3,)), nn.Dense(4), nn.Activation("gelu"), nn.Dense(2),
                               nn.Activation("swish")], seed=2, dtype="float64", backend=backend)
        model.compile(nn.SGD(0.1), "mse")
        return model

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    reference, model = build("numpy"), build(any_backend)
    losses = [m.train_on_batch(x, y) for m in (reference, model)]
    assert np.isfinite(losses[0])
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-12)
    for a, b in zip(reference.get_weights(), model.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-11, atol=1e-13)
