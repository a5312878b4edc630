"""fastdl.ops.conv2d and conv2d_grad against the naive loops, finite differences and PyTorch."""

import numpy as np
import pytest

import fastdl
import naive
from conftest import RTOL, ready_backends
from fastdl import nn
from fastdl.ops import _winograd
from fastdl.ops import conv as conv_ops
from fastdl.ops.conv import conv2d, conv2d_grad

# (n_images, height, width, in_channels, kh, kw, out_channels, strides, padding)
CONFIGS = [
    (1, 5, 5, 1, 1, 1, 1, 1, "valid"),  # 1x1 at stride 1: x itself is the patch matrix
    (2, 6, 5, 3, 1, 1, 2, 2, "same"),
    (1, 7, 7, 2, 3, 3, 4, 1, "same"),
    (2, 8, 7, 2, 3, 3, 3, 2, "same"),  # odd extra padding at the bottom/right
    (1, 9, 9, 1, 7, 7, 2, 1, "same"),
    (1, 9, 8, 2, 7, 5, 2, 3, "valid"),
    (2, 5, 6, 3, 4, 2, 2, (2, 1), "same"),  # even kernel, uneven strides
    (1, 4, 4, 2, 3, 3, 2, 3, "same"),  # stride bigger than part of the image
    (1, 6, 5, 1, 3, 2, 2, 1, ((1, 2), (0, 3))),  # explicit asymmetric padding
    (1, 3, 3, 2, 5, 5, 1, 1, 2),  # padding as wide as the kernel's reach
    (1, 5, 5, 1, 2, 2, 1, 2, ((0, 1), (1, 0))),  # explicit padding partly unused
]


def _random_configs(seed, count):
    """Random small configurations: kernel sizes 1-7, strides 1-3, valid/same/explicit padding."""
    rng = np.random.default_rng(seed)
    configs = []
    while len(configs) < count:
        kh, kw = rng.integers(1, 8, size=2)
        sh, sw = rng.integers(1, 4, size=2)
        height, width = rng.integers(1, 10, size=2)
        mode = rng.integers(3)
        padding = ["valid", "same", ((int(rng.integers(3)), int(rng.integers(3))),
                                     (int(rng.integers(3)), int(rng.integers(3))))][mode]
        (top, bottom), (left, right) = naive.conv2d_padding(height, width, kh, kw, (sh, sw), padding)
        if height + top + bottom < kh or width + left + right < kw:
            continue
        configs.append((int(rng.integers(1, 3)), int(height), int(width), int(rng.integers(1, 4)),
                        int(kh), int(kw), int(rng.integers(1, 4)), (int(sh), int(sw)), padding))
    return configs


ALL_CONFIGS = CONFIGS + _random_configs(1, 12)


def _data(rng, config, dtype):
    n, h, w, c_in, kh, kw, c_out, strides, padding = config
    x = rng.normal(size=(n, h, w, c_in)).astype(dtype)
    kernel = rng.normal(size=(kh, kw, c_in, c_out)).astype(dtype)
    bias = rng.normal(size=c_out).astype(dtype)
    return x, kernel, bias, strides, padding


def _close(actual, expected, dtype, terms):
    # Each entry is a sum of `terms` products of O(1) numbers.
    tol = RTOL[dtype] * max(1.0, np.sqrt(terms))
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=str)
def test_forward_matches_naive(backend, dtype, rng, config):
    x, kernel, bias, strides, padding = _data(rng, config, dtype)
    expected = naive.conv2d(x, kernel, bias, strides, padding)
    out = conv2d(x, kernel, bias, strides=strides, padding=padding, backend=backend)
    assert out.dtype == dtype and out.shape == expected.shape
    _close(out, expected, dtype, kernel[..., 0].size)
    no_bias = conv2d(x, kernel, strides=strides, padding=padding, backend=backend)
    _close(no_bias, expected - bias, dtype, kernel[..., 0].size)


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=str)
def test_backward_matches_naive(backend, dtype, rng, config):
    x, kernel, _, strides, padding = _data(rng, config, dtype)
    out_shape = naive.conv2d(x, kernel, None, strides, padding).shape
    dout = rng.normal(size=out_shape).astype(dtype)
    dx, dkernel, dbias = conv2d_grad(x, kernel, dout, strides=strides, padding=padding, backend=backend)
    ex, ek, eb = naive.conv2d_grad(x, kernel, dout, strides, padding)
    for got, want in ((dx, ex), (dkernel, ek), (dbias, eb)):
        assert got.dtype == dtype and got.shape == want.shape
    _close(dx, ex, dtype, kernel.size)
    _close(dkernel, ek, dtype, dout[..., 0].size)
    _close(dbias, eb, dtype, dout[..., 0].size)


@pytest.mark.parametrize("config", [CONFIGS[3], CONFIGS[6], CONFIGS[8]], ids=str)
def test_gradients_match_finite_differences(backend, rng, config):
    x, kernel, bias, strides, padding = _data(rng, config, np.float64)
    weights = rng.normal(size=naive.conv2d(x, kernel, None, strides, padding).shape)

    def loss(x_, kernel_, bias_):
        return float((conv2d(x_, kernel_, bias_, strides=strides, padding=padding, backend=backend) * weights).sum())

    dx, dkernel, dbias = conv2d_grad(x, kernel, weights, strides=strides, padding=padding, backend=backend)
    step = 1e-6
    arrays = [x, kernel, bias]
    for which, grad in enumerate((dx, dkernel, dbias)):
        numeric = np.empty_like(grad)
        for index in np.ndindex(grad.shape):
            shifted = [a.copy() for a in arrays]
            shifted[which][index] += step
            up = loss(*shifted)
            shifted[which][index] -= 2 * step
            numeric[index] = (up - loss(*shifted)) / (2 * step)
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6)


# 3x3 kernels at stride 1 with at least _winograd.MIN_CHANNELS channels each way take Winograd's
# F(2x2, 3x3) or F(4x4, 3x3) (the `tiles` fixture picks): output sizes that are not a multiple
# of the tile crop the last tiles; padding 3 makes the input gradient's windows start inside the
# output gradient (a negative padding).
WINOGRAD_CONFIGS = [
    (2, 7, 7, 16, 3, 3, 16, 1, "same"),
    (1, 8, 9, 16, 3, 3, 20, 1, "valid"),
    (2, 5, 6, 17, 3, 3, 16, 1, ((1, 2), (0, 3))),
    (1, 4, 4, 16, 3, 3, 16, 1, 3),
    (1, 3, 3, 16, 3, 3, 16, 1, "valid"),  # one output pixel
    (2, 7, 6, 64, 3, 3, 48, 1, "same"),
    (1, 14, 13, 16, 3, 3, 16, 1, "same"),  # F(4x4)'s tiles of 4, then one of 2 or of 1
]


# Few taps (kh * kw * in_channels <= DIRECT_MAX_TAPS) and 16 or more filters: the forward pass
# runs directly, 4 pixels by 16 filters at a time, the rest one by one.
FEW_TAP_CONFIGS = [
    (2, 9, 10, 1, 3, 3, 16, 1, "valid"),
    (1, 10, 9, 1, 7, 7, 20, 1, "same"),
    (2, 8, 8, 3, 3, 3, 32, 2, "same"),
    (1, 6, 7, 2, 5, 3, 17, (1, 2), ((1, 2), (0, 3))),
    (1, 5, 5, 1, 3, 3, 16, 1, ((0, 4), (1, 0))),  # padding past what the windows read
]


@pytest.mark.parametrize("config", FEW_TAP_CONFIGS, ids=str)
def test_few_taps_match_naive(backend, dtype, rng, config):
    x, kernel, bias, strides, padding = _data(rng, config, dtype)
    geometry = conv_ops._geometry(x.shape, kernel.shape, strides, padding)
    assert conv_ops._plan(x, kernel, geometry, dtype)["few_taps"]
    expected = naive.conv2d(x, kernel, bias, strides, padding)
    _close(conv2d(x, kernel, bias, strides=strides, padding=padding, backend=backend), expected, dtype,
           kernel[..., 0].size)


def test_winograd_only_where_its_tiles_fit():
    def uses_winograd(x_shape, kernel_shape, strides=1, padding="same"):
        geometry = conv_ops._geometry(x_shape, kernel_shape, strides, padding)
        return conv_ops._plan(np.empty(x_shape), np.empty(kernel_shape), geometry, np.float32)["winograd"]

    assert uses_winograd((1, 14, 14, 64), (3, 3, 64, 128))
    assert uses_winograd((1, 74, 74, 32), (3, 3, 32, 32), padding="valid")
    assert uses_winograd((1, 7, 7, 128), (3, 3, 128, 256))  # 8x8 of tiles for 7x7 outputs
    assert not uses_winograd((1, 3, 3, 128), (3, 3, 128, 256))  # 4x4 of tiles for 3x3 outputs
    assert not uses_winograd((1, 14, 14, 8), (3, 3, 8, 128))  # too few input channels
    assert not uses_winograd((1, 14, 14, 64), (3, 3, 64, 128), strides=2)
    assert not uses_winograd((1, 14, 14, 64), (5, 5, 64, 128))


def test_winograd_only_where_its_images_save_enough(the_few_images_rule, rng):
    """A call of too few images for Winograd's savings to pay for reading its transformed kernel
    (a predict of one image) takes im2col, with the same answer to rounding."""
    assert _winograd.MIN_SAVING == 32

    def uses_winograd(x_shape, kernel_shape):
        geometry = conv_ops._geometry(x_shape, kernel_shape, 1, "same")
        return conv_ops._plan(np.empty(x_shape), np.empty(kernel_shape), geometry, np.float32)["winograd"]

    # F(4x4): 7x7 outputs save 441 - 144 multiplications an image, against 32 x (36 - 9).
    assert not uses_winograd((2, 7, 7, 256), (3, 3, 256, 256))
    assert uses_winograd((3, 7, 7, 256), (3, 3, 256, 256))
    assert not uses_winograd((1, 8, 8, 128), (3, 3, 128, 128))
    assert uses_winograd((2, 8, 8, 128), (3, 3, 128, 128))
    assert uses_winograd((1, 12, 12, 128), (3, 3, 128, 128))
    assert not uses_winograd((2, 14, 14, 128), (3, 3, 128, 128))  # 4 phases, 100 points
    assert uses_winograd((3, 14, 14, 128), (3, 3, 128, 128))
    # F(2x2): 4x4 outputs save 144 - 64 an image, against 32 x (16 - 9).
    assert not uses_winograd((2, 4, 4, 128), (3, 3, 128, 128))
    assert uses_winograd((3, 4, 4, 128), (3, 3, 128, 128))
    assert _winograd._points((14, 14), True) == 100 and _winograd._points((14, 14), False) == 16
    assert not uses_winograd((1, 5, 5, 32), (3, 3, 32, 32))
    x, kernel = rng.normal(size=(1, 5, 5, 32)), rng.normal(size=(3, 3, 32, 32))
    np.testing.assert_allclose(conv2d(x, kernel, padding="same"), naive.conv2d(x, kernel, None, 1, "same"),
                               rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("size, winograd", [(8, [False, True, True]), (12, [True, True, True])])
def test_few_images_give_the_same_bits_on_any_threads(backend, rng, the_few_images_rule, monkeypatch, size,
                                                      winograd):
    """With fastdl's rule (im2col for one 8x8 image, F(4x4) for 2 and 32, and for one 12x12 one),
    a layer's predict gives the same bits at 1 to 3 threads (one image's Winograd GEMMs split by
    points: stacked_matmul outside a region), and alternating batch sizes use the kept transform
    right."""
    model = nn.Sequential([nn.Input((size, size, 64)), nn.Conv2D(64, 3, padding="same")], seed=0, backend=backend)
    x = rng.normal(size=(32, size, size, 64)).astype(np.float32)
    model.predict(x[:1], verbose=0)
    layer = model.layers[-1]
    geometry = conv_ops._geometry(x.shape, layer.kernel.value.shape, 1, "same")
    assert [conv_ops._plan(x[:n], layer.kernel.value, geometry, np.float32)["winograd"] for n in (1, 2, 32)] == winograd
    answers = {}
    for n_threads in (1, 2, 3):
        fastdl.set_num_threads(n_threads)
        monkeypatch.setattr(fastdl._parallel, "MIN_WORK_PER_THREAD", 1 if n_threads > 1 else 1 << 22)
        for n in (1, 32, 2, 1, 2):
            got = model.predict(x[:n], verbose=0)
            np.testing.assert_array_equal(got, answers.setdefault(n, got))
    for n, got in answers.items():
        _close(got, naive.conv2d(x[:n], layer.kernel.value, layer.bias.value, 1, "same"), np.float32, 9 * 64)


def test_large_tiles_where_they_save_multiplications_on_wide_layers():
    def large(x_shape, kernel_shape, padding="same"):
        geometry = conv_ops._geometry(x_shape, kernel_shape, 1, padding)
        plan = conv_ops._plan(np.empty(x_shape), np.empty(kernel_shape), geometry, np.float32)
        assert plan["winograd"]
        return plan["large_tiles"] is not None

    assert large((1, 7, 7, 256), (3, 3, 256, 256))  # the course CNN's last block: 2x2 tiles of 4x4
    assert large((1, 7, 7, 128), (3, 3, 128, 256))
    assert large((1, 28, 28, 64), (3, 3, 64, 64))
    assert large((1, 14, 14, 128), (3, 3, 128, 128))  # 3 tiles of 4 and one of 2 along each axis
    assert not large((1, 6, 6, 128), (3, 3, 128, 128))  # one tile of 4 and one of 2: 0.69 of F(2x2)'s
    assert large((1, 13, 13, 64), (3, 3, 64, 64))  # 3 tiles of 4 and one of 1: 0.56
    assert not large((1, 5, 5, 128), (3, 3, 128, 128))  # 0.56 too, but one tile of 4 per axis
    assert not large((1, 74, 74, 32), (3, 3, 32, 32), padding="valid")  # too few channels
    assert not large((1, 28, 28, 32), (3, 3, 32, 64))


@pytest.mark.parametrize("size, tiles", [(7, [(0, 4, 2)]), (8, [(0, 4, 2)]), (14, [(0, 4, 3), (12, 2, 1)]),
                                         (13, [(0, 4, 3), (12, 1, 1)]), (2, [(0, 2, 1)]), (3, [(0, 4, 1)])])
def test_large_tiles_along_an_axis(size, tiles):
    """4-output tiles, the last cropped for a remainder of 3, and a tile of the 1 or 2 outputs
    left: every output in exactly one tile, each window starting `pad` before its first output."""
    axes = _winograd._axis_tiles(size, 1)
    assert [(axis.first, axis.m, axis.tiles) for axis in axes] == tiles
    covered = [axis.first + j for axis in axes for j in range(axis.length)]
    assert covered == list(range(size))
    assert all(axis.start == axis.first - 1 for axis in axes)


@pytest.fixture
def any_winograd(monkeypatch):
    """Winograd also for small odd outputs, whose cropped tiles it would otherwise leave to im2col."""
    monkeypatch.setattr(_winograd, "MAX_WASTE", 16.0)


@pytest.mark.parametrize("config", WINOGRAD_CONFIGS, ids=str)
def test_winograd_matches_naive(backend, dtype, rng, config, any_winograd, tiles):
    x, kernel, bias, strides, padding = _data(rng, config, dtype)
    geometry = conv_ops._geometry(x.shape, kernel.shape, strides, padding)
    plan = conv_ops._plan(x, kernel, geometry, dtype)
    assert plan["winograd"] and (plan["large_tiles"] is not None) == (tiles == 4)
    expected = naive.conv2d(x, kernel, bias, strides, padding)
    out = conv2d(x, kernel, bias, strides=strides, padding=padding, backend=backend)
    _close(out, expected, dtype, kernel[..., 0].size)
    dout = rng.normal(size=expected.shape).astype(dtype)
    dx, dkernel, dbias = conv2d_grad(x, kernel, dout, strides=strides, padding=padding, backend=backend)
    ex, ek, eb = naive.conv2d_grad(x, kernel, dout, strides, padding)
    _close(dx, ex, dtype, kernel.size)
    _close(dkernel, ek, dtype, dout[..., 0].size)
    _close(dbias, eb, dtype, dout[..., 0].size)


@pytest.mark.parametrize("config", WINOGRAD_CONFIGS[:3], ids=str)
def test_winograd_gradients_match_finite_differences(backend, rng, config, any_winograd, tiles):
    """Directional derivatives of a weighted sum of the outputs along random directions."""
    x, kernel, bias, strides, padding = _data(rng, config, np.float64)
    weights = rng.normal(size=naive.conv2d(x, kernel, None, strides, padding).shape)

    def loss(x_, kernel_):
        return float((conv2d(x_, kernel_, bias, strides=strides, padding=padding, backend=backend) * weights).sum())

    dx, dkernel, _ = conv2d_grad(x, kernel, weights, strides=strides, padding=padding, backend=backend)
    step = 1e-6
    for which, grad in enumerate((dx, dkernel)):
        direction = rng.normal(size=grad.shape)
        up, down = [x, kernel], [x, kernel]
        up[which] = up[which] + step * direction
        down[which] = down[which] - step * direction
        numeric = (loss(*up) - loss(*down)) / (2 * step)
        np.testing.assert_allclose(np.sum(grad * direction), numeric, rtol=1e-7)


def test_winograd_without_the_input_gradient(backend, dtype, rng, tiles):
    """A first layer needs no input gradient: conv2d_grad_into with dx None gives the same kernel
    and bias gradients."""
    x, kernel, bias, strides, padding = _data(rng, (3, 8, 8, 16, 3, 3, 16, 1, "same"), dtype)
    geometry = conv_ops._geometry(x.shape, kernel.shape, strides, padding)
    dout = rng.normal(size=(3, 8, 8, 16)).astype(dtype)
    want = conv2d_grad(x, kernel, dout, strides=strides, padding=padding, backend=backend)
    dkernel, dbias = np.empty_like(kernel), np.empty_like(bias)
    conv_ops.conv2d_grad_into(x, kernel, dout, geometry, None, dkernel, dbias, backend)
    np.testing.assert_array_equal(dkernel, want[1])
    np.testing.assert_array_equal(dbias, want[2])


def test_backends_agree_on_a_larger_batch(dtype, rng, monkeypatch):
    """Several batches per thread (a tiny patch budget) and two threads give the same answers."""
    x, kernel, bias, strides, padding = _data(rng, (7, 12, 11, 5, 3, 3, 6, 2, "same"), dtype)
    dout = rng.normal(size=(7, 6, 6, 6)).astype(dtype)
    expected = naive.conv2d(x, kernel, bias, strides, padding)
    expected_grads = naive.conv2d_grad(x, kernel, dout, strides, padding)
    monkeypatch.setattr(conv_ops, "PATCH_BYTES", 1)
    monkeypatch.setattr(fastdl._parallel, "MIN_WORK_PER_THREAD", 1)
    fastdl.set_num_threads(2)
    for name in ready_backends():
        _close(conv2d(x, kernel, bias, strides, padding, backend=name), expected, dtype, 45)
        for got, want in zip(conv2d_grad(x, kernel, dout, strides, padding, backend=name), expected_grads):
            _close(got, want, dtype, 7 * 36)


def test_thread_count_does_not_change_the_answer(backend, rng):
    x, kernel, bias, _, _ = _data(rng, (16, 16, 16, 8, 3, 3, 32, 1, "same"), np.float32)
    dout = rng.normal(size=(16, 16, 16, 32)).astype(np.float32)
    results = {}
    for n_threads in (1, 2):
        fastdl.set_num_threads(n_threads)
        results[n_threads] = (conv2d(x, kernel, bias, padding="same", backend=backend),
                              *conv2d_grad(x, kernel, dout, padding="same", backend=backend))
    # Images are independent, so out and dx are the same bits; dkernel and dbias are sums over
    # images whose grouping follows the threads.
    np.testing.assert_array_equal(results[1][0], results[2][0])
    np.testing.assert_array_equal(results[1][1], results[2][1])
    for got, want in zip(results[2][2:], results[1][2:]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


def test_input_types_and_layouts(backend, rng):
    x = rng.integers(0, 256, size=(2, 6, 6, 2)).astype(np.uint8)
    kernel = rng.normal(size=(3, 3, 2, 2)).astype(np.float32)
    expected = naive.conv2d(x, kernel, None, 1, "same")
    out = conv2d(x, kernel, padding="same", backend=backend)
    assert out.dtype == np.float64  # uint8 + float32 -> float64, and no wrap-around
    np.testing.assert_allclose(out, expected, rtol=1e-10)
    x64 = x.astype(">f8")[:, ::-1].copy()[:, ::-1]  # big-endian, non-contiguous
    x64.setflags(write=False)
    kernel_f = np.asfortranarray(kernel.astype(np.float64))
    np.testing.assert_allclose(conv2d(x64, kernel_f, padding="same", backend=backend), expected, rtol=1e-10)
    assert conv2d(x.tolist(), kernel.tolist(), padding="same", backend=backend).shape == (2, 6, 6, 2)


def _tf_same_pads(size, k, s):
    total = max((-(-size // s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


@pytest.mark.parametrize("config", [CONFIGS[3], CONFIGS[4], CONFIGS[6], CONFIGS[7], (3, 28, 28, 1, 7, 7, 8, 2, "same"),
                                    (2, 15, 13, 4, 3, 3, 5, 1, "valid"), (2, 9, 10, 3, 4, 4, 2, 2, "valid")], ids=str)
def test_matches_pytorch(backend, rng, config):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, kernel, bias, strides, padding = _data(rng, config, np.float64)
    sh, sw = (strides, strides) if isinstance(strides, int) else strides
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    kt = torch.tensor(kernel.transpose(3, 2, 0, 1), requires_grad=True)
    bt = torch.tensor(bias, requires_grad=True)
    padded = xt
    if padding == "same":
        # TensorFlow's "same" pads the odd pixel at the bottom/right; torch pads symmetrically.
        top, bottom = _tf_same_pads(x.shape[1], kernel.shape[0], sh)
        left, right = _tf_same_pads(x.shape[2], kernel.shape[1], sw)
        padded = F.pad(xt, (left, right, top, bottom))
    out_t = F.conv2d(padded, kt, bt, stride=(sh, sw))
    dout = rng.normal(size=tuple(out_t.permute(0, 2, 3, 1).shape))
    out_t.backward(torch.tensor(dout.transpose(0, 3, 1, 2)))
    out = conv2d(x, kernel, bias, strides=strides, padding=padding, backend=backend)
    np.testing.assert_allclose(out, out_t.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-10, atol=1e-10)
    dx, dkernel, dbias = conv2d_grad(x, kernel, dout, strides=strides, padding=padding, backend=backend)
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dkernel, kt.grad.numpy().transpose(2, 3, 1, 0), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dbias, bt.grad.numpy(), rtol=1e-10, atol=1e-10)


GOOD_X = np.zeros((2, 5, 5, 3))
GOOD_K = np.zeros((3, 3, 3, 4))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(x=np.zeros((5, 5, 3))), ValueError, r"x must be 4-D .* \(5, 5, 3\)"),
    (dict(kernel=np.zeros((3, 3, 3))), ValueError, r"kernel must be 4-D"),
    (dict(kernel=np.zeros((3, 3, 2, 4))), ValueError, r"x has 3 channels but kernel expects 2"),
    (dict(x=np.zeros((0, 5, 5, 3))), ValueError, r"must not be empty"),
    (dict(x=np.full((2, 5, 5, 3), np.nan)), ValueError, r"x contains NaN"),
    (dict(kernel=np.full((3, 3, 3, 4), np.inf)), ValueError, r"kernel contains NaN or infinity"),
    (dict(x=np.zeros((2, 5, 5, 3), dtype=complex)), TypeError, r"real numbers"),
    (dict(x=[["a"]]), TypeError, r"real numbers"),
    (dict(kernel=np.zeros((7, 3, 3, 4))), ValueError, r"does not fit x of shape \(2, 5, 5, 3\)"),
    (dict(strides=0), ValueError, r"strides must be >= 1"),
    (dict(strides=1.5), TypeError, r"strides must be an int"),
    (dict(strides=(1, 2, 3)), ValueError, r"strides must be an int or a pair"),
    (dict(padding="full"), ValueError, r'padding must be "valid", "same"'),
    (dict(padding=-1), ValueError, r"padding must be >= 0"),
    (dict(padding=((1, 2), (3,))), TypeError, r"padding must be"),
    (dict(padding=1.0), TypeError, r"padding must be"),
    (dict(bias=np.zeros(3)), ValueError, r"bias must have shape \(4,\)"),
    (dict(bias=np.array([0, 0, np.nan, 0])), ValueError, r"bias contains NaN"),
    (dict(backend="nope"), ValueError, r"unknown backend"),
])
def test_bad_input_forward(kwargs, error, match):
    args = dict(x=GOOD_X, kernel=GOOD_K, bias=None, strides=1, padding="valid", backend="numpy")
    args.update(kwargs)
    with pytest.raises(error, match=match):
        conv2d(**args)


@pytest.mark.parametrize("dout, error, match", [
    (np.zeros((2, 3, 3, 5)), ValueError, r"dout must have the output's shape \(2, 3, 3, 4\)"),
    (np.zeros((2, 5, 5, 4)), ValueError, r"got \(2, 5, 5, 4\)"),
    (np.zeros((3, 3, 4)), ValueError, r"dout must be 4-D"),
    (np.full((2, 3, 3, 4), np.inf), ValueError, r"dout contains NaN or infinity"),
])
def test_bad_input_backward(backend, dout, error, match):
    with pytest.raises(error, match=match):
        conv2d_grad(GOOD_X, GOOD_K, dout, backend=backend)


def test_turned_kernel_is_the_transform_of_the_turned_kernel(dtype, rng):
    """The input gradient's kernel, rearranged from the kernel's own transform, is the same bits
    as the transform of the kernel turned by 180 degrees with its channels swapped."""
    kernel = rng.normal(size=(3, 3, 5, 7)).astype(dtype)
    direct = _winograd.transform_kernel(np.ascontiguousarray(kernel[::-1, ::-1].transpose(0, 1, 3, 2)), "direct")
    turned = _winograd.turned_kernel(_winograd.transform_kernel(kernel, "kernel"), "turned")
    assert turned.shape == (16, 7, 5)
    np.testing.assert_array_equal(turned, direct)


def test_winograd_split_over_channels_gives_the_same_answers(backend, rng, monkeypatch, tiles):
    """With every pass split over three threads (the kernel's transforms by input channels, the
    partial sums by elements), the outputs and the input gradient are the same bits as on one
    thread, and the kernel and bias gradients agree to rounding."""
    x, kernel, bias, strides, padding = _data(rng, (6, 8, 8, 24, 3, 3, 20, 1, "same"), np.float32)
    dout = rng.normal(size=(6, 8, 8, 20)).astype(np.float32)
    results = {}
    for n_threads in (1, 3):
        fastdl.set_num_threads(n_threads)
        monkeypatch.setattr(fastdl._parallel, "MIN_WORK_PER_THREAD", 1 if n_threads > 1 else 1 << 22)
        results[n_threads] = (conv2d(x, kernel, bias, padding="same", backend=backend),
                              *conv2d_grad(x, kernel, dout, padding="same", backend=backend))
    np.testing.assert_array_equal(results[3][0], results[1][0])
    np.testing.assert_array_equal(results[3][1], results[1][1])
    # F(4x4)'s transformed sums carry about 7x F(2x2)'s rounding (see _winograd.LARGE_TILE_SHARE).
    rtol, atol = (1e-5, 1e-4) if tiles == 2 else (1e-4, 1e-3)
    for got, want in zip(results[3][2:], results[1][2:]):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
