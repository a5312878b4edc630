"""Convolution, activation and max pooling in one pass (conv2d_pool_into and its gradient, and
Sequential's fused steps) against the separate ops, on every backend and dtype."""

import numpy as np
import pytest

from fastdl import nn
from fastdl.ops import conv2d, conv2d_grad, max_pool2d, max_pool2d_grad
from fastdl.ops.conv import _geometry
from fastdl.ops.conv_pool import conv2d_pool_grad_into, conv2d_pool_into, pool_fusable
from fastdl.ops.dense import activation_grad

# (x shape, kernel (kh, kw, out_channels), strides, padding, pool): odd sizes with leftover rows and
# columns that no window covers, batch 1, 1x1 kernels, unequal pools.
CONFIGS = [
    ((2, 6, 6, 1), (3, 3, 4), 1, "same", (2, 2)),
    ((1, 7, 9, 3), (3, 3, 5), 1, "valid", (2, 2)),
    ((3, 9, 8, 2), (2, 3, 3), 2, "same", (2, 3)),
    ((2, 5, 5, 4), (1, 1, 2), 1, "valid", (2, 2)),
    ((1, 8, 7, 2), (3, 2, 3), (1, 2), "same", (3, 1)),
    ((2, 4, 4, 3), (3, 3, 2), 1, "same", (1, 1)),
    ((2, 6, 8, 16), (3, 3, 16), 1, "same", (2, 2)),  # Winograd (3x3, stride 1, 16 channels)
    ((1, 12, 10, 16), (3, 3, 17), 1, "valid", (3, 2)),
    ((2, 8, 8, 64), (3, 3, 64), 1, "same", (2, 2)),  # Winograd's F(4x4, 3x3) (64 channels, 8x8 outputs)
    ((2, 11, 11, 1), (3, 3, 20), 1, "valid", (2, 2)),  # few taps: the direct forward pass
    ((2, 8, 6, 8), (3, 3, 3), 1, "same", (2, 2)),  # few filters: kn2row
]


def _problem(config, dtype, rng, ties):
    x_shape, (kh, kw, out_channels), strides, padding, pool = config
    if ties:  # small integers: many equal values in a window, decided by the first maximum
        x = rng.integers(-1, 2, x_shape).astype(dtype)
        kernel = rng.integers(-1, 2, (kh, kw, x_shape[3], out_channels)).astype(dtype)
        bias = rng.integers(-1, 2, out_channels).astype(dtype)
    else:
        x = rng.standard_normal(x_shape).astype(dtype)
        kernel = rng.standard_normal((kh, kw, x_shape[3], out_channels)).astype(dtype)
        bias = rng.standard_normal(out_channels).astype(dtype)
    return x, kernel, bias, _geometry(x.shape, kernel.shape, strides, padding), strides, padding, pool


def _unfused_forward(x, kernel, bias, strides, padding, relu, pool, backend):
    z = conv2d(x, kernel, bias, strides, padding, backend=backend)
    a = np.maximum(z, 0) if relu else z
    return z, a, max_pool2d(a, pool, backend=backend)


@pytest.mark.parametrize("config", CONFIGS, ids=range(len(CONFIGS)))
@pytest.mark.parametrize("relu", [True, False], ids=["relu", "linear"])
@pytest.mark.parametrize("ties", [False, True], ids=["random", "ties"])
def test_fused_matches_separate_ops(backend, dtype, config, relu, ties, rng):
    x, kernel, bias, geometry, strides, padding, pool = _problem(config, dtype, rng, ties)
    z, a, expected = _unfused_forward(x, kernel, bias, strides, padding, relu, pool, backend)
    out = np.empty(expected.shape, dtype)
    code = np.empty(expected.shape, np.int32)
    conv2d_pool_into(x, kernel, bias, geometry, int(relu), pool, out, code, backend=backend)
    np.testing.assert_array_equal(out, expected)

    dpooled = rng.standard_normal(out.shape).astype(dtype)
    dx_expected, dkernel_expected, dbias_expected = conv2d_grad(
        x, kernel, activation_grad(a.reshape(-1, a.shape[3]),
                                   max_pool2d_grad(a, dpooled, pool, backend=backend).reshape(-1, a.shape[3]),
                                   "relu" if relu else None, backend=backend).reshape(a.shape),
        strides, padding, backend=backend)
    dx = np.empty(x.shape, dtype)
    dkernel = np.empty(kernel.shape, dtype)
    dbias = np.empty(bias.shape, dtype)
    conv2d_pool_grad_into(x, kernel, dpooled, code, geometry, pool, dx, dkernel, dbias, backend=backend)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(dx, dx_expected, rtol=tol, atol=tol)
    np.testing.assert_allclose(dkernel, dkernel_expected, rtol=tol, atol=tol)
    np.testing.assert_allclose(dbias, dbias_expected, rtol=tol, atol=tol)
    # Without an input gradient the weight gradients stay the same.
    conv2d_pool_grad_into(x, kernel, dpooled, code, geometry, pool, None, dkernel, None, backend=backend)
    np.testing.assert_allclose(dkernel, dkernel_expected, rtol=tol, atol=tol)


def test_fusable_pools():
    assert pool_fusable(1, (2, 2, 2, 2, 0, 0), (6, 6), (3, 3))
    assert pool_fusable(0, (3, 2, 3, 2, 0, 0), (7, 5), (2, 2))  # leftover rows and columns no window covers
    assert not pool_fusable(2, (2, 2, 2, 2, 0, 0), (6, 6), (3, 3))  # sigmoid
    assert not pool_fusable(1, (3, 3, 2, 2, 0, 0), (7, 7), (3, 3))  # overlapping windows
    assert not pool_fusable(1, (2, 2, 2, 2, 0, 1), (6, 6), (3, 3))  # padded at the left
    # "same" on an odd size pads only the bottom and right: the last windows hang past the outputs.
    assert not pool_fusable(1, (2, 2, 2, 2, 0, 0), (5, 6), (3, 3))


def test_same_pooling_of_an_odd_size_runs_unfused_and_is_refused_by_the_fused_op(backend, rng):
    # Conv2D to 5x5, then MaxPool2D(2, "same") to 3x3: fused, the last windows read and wrote past
    # the convolution's outputs (wrong outputs, then a crash in training).
    layers = [nn.Conv2D(3, 2, activation="relu", input_shape=(6, 6, 2)), nn.MaxPool2D(2, padding="same"),
              nn.Flatten(), nn.Dense(2)]
    fused = nn.Sequential(layers, seed=0, dtype="float64", backend=backend)
    fused.compile(nn.SGD(0.1), "mse")
    assert not fused.layers[0].fuses_with(fused.layers[1])
    x, y = rng.standard_normal((4, 6, 6, 2)), rng.standard_normal((4, 2))
    conv = fused.layers[0]
    pooled = max_pool2d(np.maximum(conv2d(x, conv.kernel.value, conv.bias.value, backend="numpy"), 0), 2, None,
                        "same", backend="numpy")
    np.testing.assert_allclose(fused.layers[1].forward(conv.forward(x)), pooled, rtol=1e-12)
    fused.fit(x, y, epochs=2, batch_size=2)
    assert np.isfinite(fused.get_weights()[0]).all()
    geometry = _geometry(x.shape, conv.kernel.value.shape, 1, "valid")
    out, code = np.empty((4, 3, 3, 3)), np.empty((4, 3, 3, 3), np.int32)
    with pytest.raises(ValueError, match=r"pooled outputs of \(3, 3\) in windows of \(2, 2\) need more than "
                                         r"the convolution's \(5, 5\) outputs"):
        conv2d_pool_into(x, conv.kernel.value, conv.bias.value, geometry, 1, (2, 2), out, code, backend=backend)
    with pytest.raises(ValueError, match="need more than"):
        conv2d_pool_grad_into(x, conv.kernel.value, out, code, geometry, (2, 2), None, np.empty((2, 2, 2, 3)),
                              None, backend=backend)


def _model(fuse, seed=0):
    model = nn.Sequential([
        nn.Conv2D(4, 3, activation="relu", input_shape=(9, 9, 2)), nn.MaxPool2D(2),
        nn.Conv2D(3, 2, padding="same"), nn.MaxPool2D((2, 1)),
        nn.Conv2D(2, 3, padding="same", activation="tanh"), nn.MaxPool2D(2, padding="same"),
        nn.Flatten(), nn.Dense(3, activation="softmax"),
    ], seed=seed, dtype="float64")
    model.compile(nn.SGD(0.1), "sparse_categorical_crossentropy")
    model.build()
    if not fuse:
        model._steps = list(model.layers)
    return model


def test_sequential_fuses_convolution_and_pooling(rng):
    """Fusable pairs run as one step; outputs, gradients and a few training steps equal the unfused model's."""
    fused, separate = _model(True), _model(False)
    assert [isinstance(step, tuple) for step in fused._steps] == [True, True, False, False, False, False]
    x = rng.standard_normal((5, 9, 9, 2))
    y = rng.integers(0, 3, 5)
    np.testing.assert_allclose(fused.predict(x), separate.predict(x), rtol=1e-12)
    fused.fit(x, y, epochs=3, batch_size=5, shuffle=False)
    separate.fit(x, y, epochs=3, batch_size=5, shuffle=False)
    for (name, p), (_, q) in zip(fused.parameters(), separate.parameters()):
        np.testing.assert_allclose(p.value, q.value, rtol=1e-10, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(p.grad, q.grad, rtol=1e-10, atol=1e-12, err_msg=name)
    # A layer called on its own is not fused.
    assert fused.layers[0](x).shape == (5, 7, 7, 4)


def _two_headed(fuse, seed=0):
    """A functional Model: a conv+pool trunk (the second pair also feeds a second head) and two heads."""
    inputs = nn.Input((9, 9, 2))
    trunk = nn.MaxPool2D(2)(nn.Conv2D(4, 3, activation="relu")(inputs))
    features = nn.Conv2D(3, 2, padding="same", name="shared")(trunk)  # two consumers: not fused
    left = nn.Dense(3, activation="softmax", name="digit")(nn.Flatten()(nn.MaxPool2D(2)(features)))
    right = nn.Dense(1, name="value")(nn.Flatten()(features))
    model = nn.Model(inputs, [left, right], seed=seed, dtype="float64")
    model.compile(nn.SGD(0.1), {"digit": "sparse_categorical_crossentropy", "value": "mse"})
    if not fuse:
        model._pooled_convs, model._skipped = {}, set()
    return model


def test_functional_model_fuses_convolution_and_pooling(rng):
    """As in Sequential: a conv whose only use is a fusable pooling runs with it, the first layer
    computes no input gradient, and outputs and training equal the unfused model's."""
    fused, separate = _two_headed(True), _two_headed(False)
    assert [node._layer.name for node in fused._pooled_convs.values()] == [fused.layers[1].name]  # after the input
    assert [layer.needs_input_grad for layer in fused.layers][1:3] == [False, True]
    x = rng.standard_normal((5, 9, 9, 2))
    y = {"digit": rng.integers(0, 3, 5), "value": rng.standard_normal((5, 1))}
    for name, out, other in zip(fused.output_names, fused.predict(x), separate.predict(x)):  # a list, as given
        np.testing.assert_allclose(out, other, rtol=1e-12, err_msg=name)
    fused.fit(x, y, epochs=3, batch_size=5, shuffle=False)
    separate.fit(x, y, epochs=3, batch_size=5, shuffle=False)
    for (name, p), (_, q) in zip(fused.parameters(), separate.parameters()):
        np.testing.assert_allclose(p.value, q.value, rtol=1e-10, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(p.grad, q.grad, rtol=1e-10, atol=1e-12, err_msg=name)
