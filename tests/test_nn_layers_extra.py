"""Conv2DTranspose and BatchNormalization: gradients in float64, PyTorch agreement, Keras semantics."""

import importlib

import numpy as np
import pytest

import naive
from conftest import RTOL, ready_backends
from fastdl import nn
from fastdl.backend import PACKAGES
from fastdl.nn.layers_extra import BatchNormalization, Conv2DTranspose, conv2d_transpose
from fastdl.ops import conv2d, conv2d_grad
from tests.test_nn import _check_layer


# -- Conv2DTranspose ------------------------------------------------------------------------------

@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("strides", [1, 2, (3, 2)])
def test_conv2d_transpose_gradients(padding, strides, rng, backend):
    layer = Conv2DTranspose(3, (3, 2), strides=strides, padding=padding, activation="tanh")
    _check_layer(layer, (3, 4, 2), rng, backend=backend)


@pytest.mark.parametrize("kernel_size, strides, padding, in_hw, expected", [
    (3, 1, "valid", (5, 6), (7, 8)),
    (3, 2, "valid", (5, 6), (11, 13)),
    (3, 2, "same", (5, 6), (10, 12)),
    (4, 2, "same", (5, 6), (10, 12)),
    # Keras: kernel smaller than the stride gives size * stride in "valid" too.
    (1, 2, "valid", (5, 6), (10, 12)),
    ((2, 5), (3, 1), "valid", (4, 4), (12, 8)),
])
def test_conv2d_transpose_output_shape(kernel_size, strides, padding, in_hw, expected, rng):
    layer = Conv2DTranspose(2, kernel_size, strides=strides, padding=padding)
    layer.build((*in_hw, 3), rng, np.float64)
    assert layer.output_shape == (*expected, 2)
    assert layer.kernel.shape == (*np.broadcast_to(kernel_size, 2), 2, 3)
    out = layer.forward(rng.standard_normal((2, *in_hw, 3)))
    assert out.shape == (2, *expected, 2)


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("strides", [1, 2])
def test_conv2d_transpose_is_the_adjoint_of_conv2d(padding, strides, rng):
    """<conv2d_transpose(x), y> == <x, conv2d(y)>, and the forward equals conv2d_grad's dx."""
    kernel = rng.standard_normal((3, 3, 4, 2))
    x = rng.standard_normal((2, 5, 4, 2))
    out = conv2d_transpose(x, kernel, strides=strides, padding=padding)
    y = rng.standard_normal(out.shape)
    np.testing.assert_allclose((out * y).sum(), (x * conv2d(y, kernel, strides=strides, padding=padding)).sum(),
                               rtol=1e-10)
    dx, _, _ = conv2d_grad(np.zeros_like(y), kernel, x, strides=strides, padding=padding)
    np.testing.assert_allclose(out, dx, rtol=1e-10, atol=1e-12)


def _torch_reference(x, kernel, bias, strides, padding):
    """PyTorch's conv_transpose2d, cropped/padded to Keras' "same"/"valid" output like TensorFlow."""
    torch = pytest.importorskip("torch")
    kh, kw = kernel.shape[:2]
    sh, sw = strides
    full = torch.nn.functional.conv_transpose2d(
        torch.from_numpy(x.transpose(0, 3, 1, 2)), torch.from_numpy(kernel.transpose(3, 2, 0, 1)),
        torch.from_numpy(bias), stride=(sh, sw)).numpy().transpose(0, 2, 3, 1)
    # Full output (h - 1) * s + k; Keras keeps h * s ("same", dropping max(k - s, 0) with the odd one at
    # the bottom/right) or h * s + max(k - s, 0) ("valid"), bias-only rows where that is longer.
    out = np.broadcast_to(bias, (x.shape[0], 1, 1, bias.size)).copy()
    (out_h, top), (out_w, left) = (naive.transpose_crop(x.shape[1], kh, sh, padding),
                                   naive.transpose_crop(x.shape[2], kw, sw, padding))
    sizes, tops = (out_h, out_w), (top, left)
    out = np.repeat(np.repeat(out, sizes[0], 1), sizes[1], 2)
    cropped = full[:, tops[0]:tops[0] + sizes[0], tops[1]:tops[1] + sizes[1]]
    out[:, :cropped.shape[1], :cropped.shape[2]] = cropped
    return out


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("strides", [1, 2, (2, 3)])
@pytest.mark.parametrize("kernel_size", [(3, 3), (4, 2), (1, 1)])
def test_conv2d_transpose_matches_pytorch(kernel_size, strides, padding, rng):
    pytest.importorskip("torch")
    strides = np.broadcast_to(strides, 2).tolist()
    layer = Conv2DTranspose(3, kernel_size, strides=strides, padding=padding)
    layer.build((5, 4, 2), rng, np.float64)
    layer.bias.value[...] = rng.standard_normal(3)
    x = rng.standard_normal((2, 5, 4, 2))
    expected = _torch_reference(x, layer.kernel.value, layer.bias.value, strides, padding)
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-10, atol=1e-12)


def test_conv2d_transpose_same_matches_pytorch_padding_arguments(rng):
    """The usual decoder case (k=4, s=2, "same") is torch's padding=1 exactly."""
    torch = pytest.importorskip("torch")
    kernel = rng.standard_normal((4, 4, 3, 2))
    x = rng.standard_normal((2, 5, 6, 2))
    expected = torch.nn.functional.conv_transpose2d(
        torch.from_numpy(x.transpose(0, 3, 1, 2)), torch.from_numpy(kernel.transpose(3, 2, 0, 1)),
        stride=2, padding=1).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(conv2d_transpose(x, kernel, strides=2, padding="same"), expected, rtol=1e-10)


def test_conv2d_transpose_float32_and_backends_agree(rng, backend):
    kernel = rng.standard_normal((3, 3, 4, 2)).astype(np.float32)
    x = rng.standard_normal((3, 6, 5, 2)).astype(np.float32)
    out = conv2d_transpose(x, kernel, strides=2, padding="same", backend=backend)
    assert out.dtype == np.float32
    ref = conv2d_transpose(x.astype(np.float64), kernel.astype(np.float64), strides=2, padding="same")
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def test_conv2d_transpose_bad_arguments():
    with pytest.raises(ValueError):
        Conv2DTranspose(2, 3, padding="full")
    with pytest.raises(ValueError):
        Conv2DTranspose(0, 3)
    layer = Conv2DTranspose(2, 3)
    with pytest.raises(ValueError, match="images"):
        layer.build((5, 3), np.random.default_rng(0))


def test_conv2d_transpose_in_a_sequential_model(rng):
    model = nn.Sequential([nn.Input((4, 4, 3)), Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu"),
                           Conv2DTranspose(1, 3, padding="same")], seed=0)
    text = model.summary(print_fn=None)
    # Keras: kh * kw * filters * in_channels + filters.
    assert "(None, 8, 8, 8)" in text and "224" in text and "(None, 8, 8, 1)" in text and "73" in text
    model.compile("adam", "mse")
    x = rng.standard_normal((8, 4, 4, 3)).astype(np.float32)
    model.fit(x, np.zeros((8, 8, 8, 1), np.float32), epochs=1, batch_size=4, verbose=0)


# -- BatchNormalization ---------------------------------------------------------------------------

@pytest.mark.parametrize("input_shape", [(5,), (3, 4, 2), (2, 1, 19)])
def test_batch_norm_gradients_in_training(input_shape, rng, backend):
    _check_layer(BatchNormalization(), input_shape, rng, batch=4, backend=backend)


def test_batch_norm_gradients_in_inference(rng, backend):
    layer = BatchNormalization(backend=backend)
    layer.build((3,), rng, np.float64)
    layer.moving_mean[...] = rng.standard_normal(3)
    layer.moving_variance[...] = rng.uniform(0.5, 2, 3)
    layer.gamma.value[...] = rng.standard_normal(3)
    x = rng.standard_normal((4, 3))
    weights = rng.standard_normal((4, 3))
    layer.forward(x, training=False)
    dx = layer.backward(weights)

    def loss():
        return float((layer.forward(x, training=False) * weights).sum())

    np.testing.assert_allclose(dx, naive.numeric_grad(loss, x), rtol=1e-6)
    np.testing.assert_allclose(layer.gamma.grad, naive.numeric_grad(loss, layer.gamma.value), rtol=1e-6)


# Tolerances of a layer's float32 / float64 outputs of order one against float64 formulas.
BN_TOL = {np.float32: 1e-5, np.float64: 1e-12}


def test_batch_norm_training_normalises_and_updates_moving_statistics(rng, backend, dtype):
    layer = BatchNormalization(momentum=0.9, epsilon=1e-3, backend=backend)
    layer.build((2, 2, 3), rng, dtype)
    x = (rng.standard_normal((6, 2, 2, 3)) * [1.0, 2.0, 3.0] + [5.0, -1.0, 0.0]).astype(dtype)
    out = layer.forward(x, training=True)
    assert out.dtype == dtype and layer.moving_mean.dtype == dtype
    x64 = x.astype(np.float64)
    mean, var = x64.mean(axis=(0, 1, 2)), x64.var(axis=(0, 1, 2))
    tol = BN_TOL[dtype]
    np.testing.assert_allclose(out, (x64 - mean) / np.sqrt(var + 1e-3), rtol=tol, atol=tol)
    np.testing.assert_allclose(layer.moving_mean, 0.1 * mean, rtol=tol, atol=tol)
    # Keras (TensorFlow) moves the variance towards the biased batch variance.
    np.testing.assert_allclose(layer.moving_variance, 0.9 + 0.1 * var, rtol=tol, atol=tol)
    layer.forward(x, training=True)
    np.testing.assert_allclose(layer.moving_mean, 0.19 * mean, rtol=tol, atol=tol)


def test_batch_norm_inference_uses_moving_statistics(rng, backend, dtype):
    layer = BatchNormalization(backend=backend)
    layer.build((3,), rng, dtype)
    layer.moving_mean[...] = [1, 2, 3]
    layer.moving_variance[...] = [4, 1, 0.25]
    layer.gamma.value[...] = [2, 1, 1]
    layer.beta.value[...] = [0, 1, -1]
    x = rng.standard_normal((5, 3)).astype(dtype)
    before = (layer.moving_mean.copy(), layer.moving_variance.copy())
    out = layer.forward(x, training=False)
    assert out.dtype == dtype
    expected = (x.astype(np.float64) - [1, 2, 3]) / np.sqrt(np.array([4, 1, 0.25]) + 1e-3) * [2, 1, 1] + [0, 1, -1]
    np.testing.assert_allclose(out, expected, rtol=BN_TOL[dtype], atol=BN_TOL[dtype])
    np.testing.assert_array_equal(layer.moving_mean, before[0])
    np.testing.assert_array_equal(layer.moving_variance, before[1])


def test_frozen_batch_norm_runs_as_in_inference(rng):
    """As Keras: trainable False makes training passes use, and keep, the moving statistics."""
    layer = BatchNormalization(trainable=False)
    layer.build((3,), rng, np.float64)
    layer.moving_mean[...] = [1, 2, 3]
    x = rng.standard_normal((5, 3))
    np.testing.assert_array_equal(layer.forward(x, training=True), layer.forward(x, training=False))
    np.testing.assert_array_equal(layer.moving_mean, [1, 2, 3])
    _check_layer(layer, (3,), rng, batch=4)  # the backward pass of the inference formula


def test_batch_norm_follows_the_optimizer_that_trains_it(rng):
    """A discriminator compiled, then frozen inside a GAN (the README's recipe): its own steps train
    gamma and beta, so they normalise by the batch and move the statistics; the GAN's leave both."""
    layer = BatchNormalization()
    discriminator = nn.Sequential([nn.Input((4,)), nn.Dense(8), layer, nn.Dense(1)], seed=0, name="discriminator")
    discriminator.compile(nn.Adam(1e-2), nn.BinaryCrossentropy(from_logits=True))
    discriminator.trainable = False
    z = nn.Input((2,))
    gan = nn.Model(z, discriminator(nn.Sequential([nn.Input((2,)), nn.Dense(4)], seed=1, name="generator")(z)))
    gan.compile(nn.Adam(1e-2), nn.BinaryCrossentropy(from_logits=True))
    images, labels = rng.normal(5, 3, (32, 4)).astype(np.float32), np.ones((32, 1), np.float32)
    latent = rng.standard_normal((32, 2)).astype(np.float32)
    for step in range(2):
        before = layer.moving_mean.copy()
        discriminator.train_on_batch(images, labels)
        assert not np.array_equal(layer.moving_mean, before)
        moved = (layer.moving_mean.copy(), layer.gamma.value.copy())
        gan.train_on_batch(latent, labels)
        np.testing.assert_array_equal(layer.moving_mean, moved[0])
        np.testing.assert_array_equal(layer.gamma.value, moved[1])


def test_batch_norm_is_stable_with_a_large_offset(rng, backend, dtype):
    """Two float64 passes: a 1e4 offset costs float32 only the rounding of the values (ulp 1e-3)."""
    layer = BatchNormalization(backend=backend)
    layer.build((2,), rng, dtype)
    x = (rng.standard_normal((64, 2)) + 1e4).astype(dtype)
    out = layer.forward(x, training=True)
    x64 = x.astype(np.float64)
    ref = (x64 - x64.mean(0)) / np.sqrt(x64.var(0) + 1e-3)
    tol = {np.float32: 1e-3, np.float64: 1e-9}[dtype]
    np.testing.assert_allclose(out, ref, rtol=tol, atol=tol)


def test_batch_norm_parameter_counts(rng):
    layer = BatchNormalization()
    layer.build((4, 4, 8), rng)
    assert [name for name, _ in layer.parameters()] == ["gamma", "beta"]
    assert layer.count_params() == 32 and layer.count_non_trainable_params() == 16
    model = nn.Sequential([nn.Input((4, 4, 3)), nn.Conv2D(8, 3), BatchNormalization()])
    line = [l for l in model.summary(print_fn=None).splitlines() if "BatchNormalization" in l][0]
    assert line.startswith(" batch_normalization (BatchNormalization)") and line.endswith(" 32")


def test_batch_norm_bad_arguments():
    with pytest.raises(ValueError):
        BatchNormalization(momentum=1.0)
    with pytest.raises(ValueError):
        BatchNormalization(epsilon=0)
    layer = BatchNormalization()
    layer.build((3,), np.random.default_rng(0))
    with pytest.raises(ValueError, match="channels"):
        layer.forward(np.zeros((2, 4), np.float32))


def _bn_model():
    return nn.Sequential([nn.Input((6,)), nn.Dense(4), BatchNormalization(), nn.Dense(2)], seed=0)


def test_batch_norm_summary_totals():
    text = _bn_model().summary(print_fn=None)
    # Keras: Dense 6*4+4 = 28, BatchNormalization 4*4 = 16 (8 of them moving statistics), Dense 4*2+2 = 10.
    assert "Total params: 54" in text and "Trainable params: 46" in text and "Non-trainable params: 8" in text


def test_batch_norm_moving_statistics_are_saved(tmp_path, rng):
    model = _bn_model()
    model.compile("sgd", "mse")
    x = rng.standard_normal((16, 6)).astype(np.float32)
    model.fit(x, np.zeros((16, 2), np.float32), epochs=2, batch_size=8, verbose=0)
    model.save(tmp_path / "m.npz")
    other = _bn_model()
    other.compile("sgd", "mse")
    other.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(other.layers[1].moving_mean, model.layers[1].moving_mean)
    np.testing.assert_array_equal(other.predict(x), model.predict(x))


@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
def test_batch_norm_same_bits_on_compiled_backends(training, dtype, rng):
    """The compiled kernels sum in the same order: forward and backward agree to the bit."""
    x = (rng.standard_normal((6, 5, 21)) * 3 + 1).astype(dtype)
    dout = rng.standard_normal(x.shape).astype(dtype)
    results = {}
    for name in [b for b in ready_backends() if b != "numpy"]:
        layer = BatchNormalization(backend=name)
        layer.build(x.shape[1:], np.random.default_rng(0), dtype)
        out = layer.forward(x, training=training).copy()
        dx = layer.backward(dout).copy()
        results[name] = (out, dx, layer.gamma.grad.copy(), layer.beta.grad.copy(), layer.moving_variance.copy())
    for name, arrays in results.items():
        for got, want in zip(arrays, next(iter(results.values()))):
            np.testing.assert_array_equal(got, want, err_msg=name)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("channels", [17, 33])
def test_norm_kernels_match_naive(backend, dtype, rng, channels, n_threads):
    """The norm kernels themselves against tests/naive.py's loops: the per-channel sums split the
    channels into blocks of 16 among threads (one channel past a block, two past two blocks);
    outputs start as NaN, so every channel must be written."""
    kernels = importlib.import_module(f"{PACKAGES[backend]}.norm")
    x = (rng.standard_normal((9, channels)) * 3 + 2).astype(dtype)
    mean, var = np.full(channels, np.nan), np.full(channels, np.nan)
    kernels.channel_moments(x, mean, var, n_threads)
    want_mean, want_var = naive.channel_moments(x)
    np.testing.assert_allclose(mean, want_mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(var, want_var, rtol=1e-12)

    mean, inv_std = want_mean.astype(dtype), (1 / np.sqrt(want_var + 1e-3)).astype(dtype)
    gamma, beta = rng.standard_normal(channels).astype(dtype), rng.standard_normal(channels).astype(dtype)
    xhat, out = np.full_like(x, np.nan), np.full_like(x, np.nan)
    kernels.normalize(x, mean, inv_std, gamma, beta, xhat, out, n_threads)
    want_xhat, want_out = naive.normalize(x, mean, inv_std, gamma, beta)
    np.testing.assert_allclose(xhat, want_xhat, rtol=RTOL[dtype], atol=RTOL[dtype])
    np.testing.assert_allclose(out, want_out, rtol=RTOL[dtype], atol=RTOL[dtype])

    dout = rng.standard_normal(x.shape).astype(dtype)
    sum_dout, sum_dout_xhat = np.full(channels, np.nan), np.full(channels, np.nan)
    kernels.channel_sums(dout, xhat, sum_dout, sum_dout_xhat, n_threads)
    want_sums = naive.channel_sums(dout, xhat)
    np.testing.assert_allclose(sum_dout, want_sums[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sum_dout_xhat, want_sums[1], rtol=1e-12, atol=1e-12)

    mean_dxhat = (gamma * sum_dout / x.shape[0]).astype(dtype)
    mean_dxhat_xhat = (gamma * sum_dout_xhat / x.shape[0]).astype(dtype)
    dx = np.full_like(x, np.nan)
    kernels.normalize_backward(dout, xhat, gamma, inv_std, mean_dxhat, mean_dxhat_xhat, dx, n_threads)
    want_dx = naive.normalize_backward(dout, xhat, gamma, inv_std, mean_dxhat, mean_dxhat_xhat)
    np.testing.assert_allclose(dx, want_dx, rtol=RTOL[dtype], atol=RTOL[dtype])
