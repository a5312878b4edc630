"""Layer-level ops, forward + backward, float32: fastdl's backends against PyTorch on the CPU.

The shapes are the course's hot spots: the first convolution of the Fashion-MNIST CNN (batch 128,
28x28x1, 64 filters 7x7, "same") and one of its 3x3 convolutions (batch 128, 14x14x128, 128
filters, "same": fastdl's Winograd path), the clock net's max-pooling over 148x148x32
activations (batch 100) and MaxPooling2D's training step (forward recording the winners, then
backward) over 128x32x32x64 (2x2) and 128x33x33x64 (3x3 stride 2) activations, the MLP's first
dense layer (batch 32, 784 -> 300, ReLU), and the CNN's output: softmax cross-entropy on 128 x 10
logits, and Dropout(0.5) on its 128 x 128 dense layer.
A decoder's upsampling step, Conv2DTranspose 3x3 stride 2 "same" from 32x32x128 to 64x64x128
(batch 64), is timed forward alone and forward+backward against torch's conv_transpose2d.

Before timing torch, each group checks, untimed and on the case's first CHECKED_IMAGES images,
that fastdl (each backend) and torch's twin compute the same outputs and gradients from the same
weights (Dropout: the same rule, as their random draws differ). So the twin must be Keras': torch's
ConvTranspose2d(padding=1, output_padding=1) has the "same" output size but keeps the other
border, one pixel off Keras'; the twin crops the full transposed convolution as Keras does.
"""

import numpy as np
import pytest

from fastdl import backend as fastdl_backend
from fastdl import nn
from fastdl.ops import (
    activation_grad, conv2d, conv2d_grad, conv2d_transpose, conv2d_transpose_grad, dense, dense_grad, max_pool2d,
    max_pool2d_grad,
)
from peers import TORCH_MISSING, torch

pytestmark = pytest.mark.benchmark(min_rounds=5)

BACKENDS = ["numba", "cython"]
SEED = 7
CHECKED_IMAGES = 2  # the torch agreement checks use the first images of a case: cheap, same shapes


def _rng():
    return np.random.default_rng(SEED)


# Agreement with torch, untimed --------------------------------------------------------------------


def _usable(family):
    """The BACKENDS that can run kernel family `family` here (the others' benchmarks skip)."""
    usable = []
    for backend in BACKENDS:
        try:
            fastdl_backend.kernels(family, backend)
        except Exception:  # unavailable backend or kernels not built: nothing of it is timed either
            continue
        usable.append(backend)
    return usable


def _assert_agree(label, names, got, expected):
    """fastdl's float32 results against torch's, to ~1e-4 of their scale (their algorithms differ:
    Winograd, im2col, oneDNN)."""
    for name, ours, theirs in zip(names, got, expected):
        ours, theirs = np.asarray(ours), np.asarray(theirs)
        assert ours.shape == theirs.shape, f"{label} {name}: shape {ours.shape}, torch's {theirs.shape}"
        np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-4 * max(1.0, float(np.abs(theirs).max())),
                                   err_msg=f"{label} {name} disagrees with torch")


def _nchw(a, grad=False):
    """NHWC numpy -> NCHW torch view (channels_last memory)."""
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).requires_grad_(grad)


def _nhwc(t):
    return t.detach().permute(0, 2, 3, 1).numpy()


def _torch_kernel(kernel):
    """fastdl's (kh, kw, a, b) kernel -> torch's (b, a, kh, kw); its gradient maps back by
    permute(2, 3, 1, 0)."""
    return torch.from_numpy(kernel).permute(3, 2, 0, 1).contiguous().requires_grad_(True)


def torch_conv2d_transpose_same(x, weight, bias, stride):
    """Keras' Conv2DTranspose "same" in torch: the full transposed convolution cropped to stride x the
    input, keeping (kernel - stride) // 2 pixels of the top-left border (0 for 3x3 stride 2), as
    TensorFlow and Keras 3 do. torch's padding=1, output_padding=1 crops the top-left pixel instead:
    the same size, shifted one pixel. The full output is ((n - 1) * stride + kernel)^2, 65^2 for 64^2
    here: ~3% more work than the crop, and the crop itself is a view."""
    begin = max(weight.shape[2] - stride, 0) // 2
    out = torch.nn.functional.conv_transpose2d(x, weight, bias, stride=stride)
    return out[:, :, begin:begin + x.shape[2] * stride, begin:begin + x.shape[3] * stride]


def _check_conv_like(label, forward, fastdl_forward, fastdl_grad, x, kernel, bias, dout):
    """Compare output, dx, dkernel and dbias of fastdl's op (each backend) and torch's `forward`."""
    x, dout = x[:CHECKED_IMAGES], dout[:CHECKED_IMAGES]
    xt, weight, bt = _nchw(x, grad=True), _torch_kernel(kernel), torch.from_numpy(bias).requires_grad_(True)
    out = forward(xt, weight, bt)
    out.backward(_nchw(dout))
    expected = (_nhwc(out), _nhwc(xt.grad), weight.grad.permute(2, 3, 1, 0).numpy(), bt.grad.numpy())
    for backend in _usable("conv"):
        got = (fastdl_forward(x, kernel, bias, backend), *fastdl_grad(x, kernel, dout, backend))
        _assert_agree(f"{label}, fastdl[{backend}]", ("output", "dx", "dkernel", "dbias"), got, expected)


def _check_dropout_rule(label, x, out, dx):
    """Inverted dropout at rate 0.5: out is 0 or 2x, the gradient of a ones dout is 2 where kept."""
    kept = out != 0
    assert 0.4 < kept.mean() < 0.6, f"{label} kept {kept.mean():.2f} of the values, expected about 0.5"
    np.testing.assert_allclose(out[kept], 2 * x[kept], rtol=1e-6, err_msg=f"{label} output")
    np.testing.assert_array_equal(dx, np.where(kept, np.float32(2), np.float32(0)),
                                  err_msg=f"{label} gradient")


# (images, height, width, in_channels, kernel size, filters) of each convolution case, "same" padding.
CONV_CASES = {
    "7x7": (128, 28, 28, 1, 7, 64),
    "3x3": (128, 14, 14, 128, 3, 128),
    "3x3 to RGB": (32, 64, 64, 128, 3, 3),  # a decoder's last layer (a6): kn2row
}


def _conv_data(case):
    n, height, width, in_channels, size, filters = CONV_CASES[case]
    rng = _rng()
    x = rng.standard_normal((n, height, width, in_channels), dtype=np.float32)
    kernel = rng.standard_normal((size, size, in_channels, filters), dtype=np.float32) * 0.1
    bias = np.zeros(filters, np.float32)
    dout = rng.standard_normal((n, height, width, filters), dtype=np.float32)
    return x, kernel, bias, dout


def _conv_group(case):
    n, height, width, in_channels, size, filters = CONV_CASES[case]
    return f"conv2d {size}x{size} same, {n}x{height}x{width}x{in_channels} -> {filters}, forward+backward"


def _pool_data():
    rng = _rng()
    x = rng.standard_normal((100, 148, 148, 32), dtype=np.float32)
    dout = rng.standard_normal((100, 74, 74, 32), dtype=np.float32)
    return x, dout


def _dense_data():
    rng = _rng()
    x = rng.standard_normal((32, 784), dtype=np.float32)
    kernel = rng.standard_normal((784, 300), dtype=np.float32) * 0.05
    bias = np.zeros(300, np.float32)
    dout = rng.standard_normal((32, 300), dtype=np.float32)
    return x, kernel, bias, dout


# Conv2DTranspose: (images, height, width, in_channels, kernel size, stride, filters), "same" padding.
TRANSPOSE_CASE = (64, 32, 32, 128, 3, 2, 128)
_TRANSPOSE_NAME = "conv2d_transpose 3x3 stride 2 same, 64x32x32x128 -> 64x64x64x128"
TRANSPOSE_GROUPS = {mode: f"{_TRANSPOSE_NAME}, {mode}" for mode in ("forward", "forward+backward")}


def _transpose_data():
    n, height, width, in_channels, size, stride, filters = TRANSPOSE_CASE
    rng = _rng()
    x = rng.standard_normal((n, height, width, in_channels), dtype=np.float32)
    kernel = rng.standard_normal((size, size, filters, in_channels), dtype=np.float32) * 0.05
    bias = np.zeros(filters, np.float32)
    dout = rng.standard_normal((n, height * stride, width * stride, filters), dtype=np.float32)
    return x, kernel, bias, dout


POOL_GROUP = "max_pool2d 2x2, 100x148x148x32, forward+backward"
# MaxPooling2D's training step (forward with training=True, which records each window's winner,
# then backward from them) at the course CNN's shapes: (images, height, width, channels, pool
# size, stride), "valid". 3x3 stride 2 windows overlap (gradients add up).
POOL_LAYER_CASES = {"2x2": (128, 32, 32, 64, 2, 2), "3x3 stride 2": (128, 33, 33, 64, 3, 2)}


def _pool_layer_group(case):
    n, height, width, channels, size, stride = POOL_LAYER_CASES[case]
    return f"MaxPooling2D {case}, {n}x{height}x{width}x{channels}, training forward+backward"


def _pool_layer_data(case):
    n, height, width, channels, size, stride = POOL_LAYER_CASES[case]
    rng = _rng()
    x = rng.standard_normal((n, height, width, channels), dtype=np.float32)
    out_size = (height - size) // stride + 1
    dout = rng.standard_normal((n, out_size, out_size, channels), dtype=np.float32)
    return x, dout
DENSE_GROUP = "dense 32x784 @ 784x300 + relu, forward+backward"


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("backend", BACKENDS)
def bench_conv2d_fastdl(benchmark, backend, case, require_fastdl_backend, name_contender):
    require_fastdl_backend("conv", backend)
    x, kernel, bias, dout = _conv_data(case)

    def step():
        conv2d(x, kernel, bias, padding="same", backend=backend)
        conv2d_grad(x, kernel, dout, padding="same", backend=backend)

    step()
    name_contender(_conv_group(case), f"fastdl[{backend}]")
    benchmark(step)


@pytest.mark.parametrize("case", CONV_CASES)
def bench_conv2d_torch(benchmark, case, name_contender, n_threads):
    if torch is None:
        pytest.skip(TORCH_MISSING)
    x, kernel, bias, dout = (torch.from_numpy(a) for a in _conv_data(case))
    x = x.permute(0, 3, 1, 2).contiguous().requires_grad_(True)
    weight = kernel.permute(3, 2, 0, 1).contiguous().requires_grad_(True)
    bias = bias.requires_grad_(True)
    grad = dout.permute(0, 3, 1, 2).contiguous()

    def forward(x, weight, bias):
        return torch.nn.functional.conv2d(x, weight, bias, padding="same")

    _check_conv_like(
        f"conv2d {case}", forward,
        lambda x, k, b, backend: conv2d(x, k, b, padding="same", backend=backend),
        lambda x, k, dout, backend: conv2d_grad(x, k, dout, padding="same", backend=backend),
        *_conv_data(case))

    def step():
        out = forward(x, weight, bias)
        out.backward(grad)
        x.grad = weight.grad = bias.grad = None

    step()
    name_contender(_conv_group(case), "torch (NCHW)")
    # Here, after the agreement checks: fastdl's first Numba kernels start the OpenMP runtime torch
    # shares, which sets torch's thread count again.
    torch.set_num_threads(n_threads)
    benchmark(step)


@pytest.mark.parametrize("mode", TRANSPOSE_GROUPS)
@pytest.mark.parametrize("backend", BACKENDS)
def bench_conv2d_transpose_fastdl(benchmark, backend, mode, require_fastdl_backend, name_contender):
    require_fastdl_backend("conv", backend)
    x, kernel, bias, dout = _transpose_data()
    stride = TRANSPOSE_CASE[5]

    def step():
        conv2d_transpose(x, kernel, bias, strides=stride, padding="same", backend=backend)
        if mode == "forward+backward":
            conv2d_transpose_grad(x, kernel, dout, strides=stride, padding="same", backend=backend)

    step()
    name_contender(TRANSPOSE_GROUPS[mode], f"fastdl[{backend}]")
    benchmark.pedantic(step, rounds=7, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("mode", TRANSPOSE_GROUPS)
def bench_conv2d_transpose_torch(benchmark, mode, name_contender, n_threads):
    if torch is None:
        pytest.skip(TORCH_MISSING)
    data = _transpose_data()
    stride = TRANSPOSE_CASE[5]
    _check_conv_like(
        "conv2d_transpose", lambda x, weight, bias: torch_conv2d_transpose_same(x, weight, bias, stride),
        lambda x, k, b, backend: conv2d_transpose(x, k, b, strides=stride, padding="same", backend=backend),
        lambda x, k, dout, backend: conv2d_transpose_grad(x, k, dout, strides=stride, padding="same",
                                                          backend=backend),
        *data)
    x, kernel, bias, dout = data
    # The same weights as fastdl's; torch's layout is (in_channels, filters, kh, kw).
    weight, bias = _torch_kernel(kernel), torch.from_numpy(bias).requires_grad_(True)
    # Channels-last memory format, the layout fastdl works in.
    x = _nchw(x, grad=True)
    grad = _nchw(dout)

    def forward():
        with torch.no_grad():
            torch_conv2d_transpose_same(x, weight, bias, stride)

    def forward_backward():
        torch_conv2d_transpose_same(x, weight, bias, stride).backward(grad)
        x.grad = weight.grad = bias.grad = None

    step = forward if mode == "forward" else forward_backward
    step()
    name_contender(TRANSPOSE_GROUPS[mode], "torch (channels_last)")
    # Here, after the agreement checks: fastdl's first Numba kernels start the OpenMP runtime torch
    # shares, which sets torch's thread count again.
    torch.set_num_threads(n_threads)
    benchmark.pedantic(step, rounds=7, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("backend", BACKENDS)
def bench_max_pool2d_fastdl(benchmark, backend, require_fastdl_backend, name_contender):
    require_fastdl_backend("pool", backend)
    x, dout = _pool_data()

    def step():
        max_pool2d(x, 2, backend=backend)
        max_pool2d_grad(x, dout, 2, backend=backend)

    step()
    name_contender(POOL_GROUP, f"fastdl[{backend}]")
    benchmark.pedantic(step, rounds=5, iterations=1, warmup_rounds=1)


def bench_max_pool2d_torch(benchmark, name_contender, n_threads):
    if torch is None:
        pytest.skip(TORCH_MISSING)
    x_np, dout_np = _pool_data()
    x, grad = _nchw(x_np[:CHECKED_IMAGES], grad=True), _nchw(dout_np[:CHECKED_IMAGES])
    out = torch.nn.functional.max_pool2d(x, 2)
    out.backward(grad)
    for backend in _usable("pool"):
        got = (max_pool2d(x_np[:CHECKED_IMAGES], 2, backend=backend),
               max_pool2d_grad(x_np[:CHECKED_IMAGES], dout_np[:CHECKED_IMAGES], 2, backend=backend))
        _assert_agree(f"max_pool2d, fastdl[{backend}]", ("output", "dx"), got, (_nhwc(out), _nhwc(x.grad)))
    # Channels-last memory format, the layout fastdl works in.
    x, grad = _nchw(x_np, grad=True), _nchw(dout_np)

    def step():
        out = torch.nn.functional.max_pool2d(x, 2)
        out.backward(grad)
        x.grad = None

    step()
    name_contender(POOL_GROUP, "torch (channels_last)")
    # Here, after the agreement checks: fastdl's first Numba kernels start the OpenMP runtime torch
    # shares, which sets torch's thread count again.
    torch.set_num_threads(n_threads)
    benchmark.pedantic(step, rounds=5, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("case", list(POOL_LAYER_CASES))
@pytest.mark.parametrize("backend", BACKENDS)
def bench_max_pool_layer_fastdl(benchmark, backend, case, require_fastdl_backend, name_contender):
    require_fastdl_backend("pool", backend)
    x, dout = _pool_layer_data(case)
    *_, size, stride = POOL_LAYER_CASES[case]
    layer = nn.MaxPooling2D(size, stride, backend=backend)
    layer.build(x.shape[1:], _rng(), np.float32)

    def step():
        layer.forward(x, training=True)
        layer.backward(dout)

    step()
    name_contender(_pool_layer_group(case), f"fastdl[{backend}]")
    benchmark.pedantic(step, rounds=7, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("case", list(POOL_LAYER_CASES))
def bench_max_pool_layer_torch(benchmark, case, name_contender, n_threads):
    if torch is None:
        pytest.skip(TORCH_MISSING)
    x_np, dout_np = _pool_layer_data(case)
    *_, size, stride = POOL_LAYER_CASES[case]
    x, grad = _nchw(x_np[:CHECKED_IMAGES], grad=True), _nchw(dout_np[:CHECKED_IMAGES])
    out = torch.nn.functional.max_pool2d(x, size, stride)
    out.backward(grad)
    for backend in _usable("pool"):
        layer = nn.MaxPooling2D(size, stride, backend=backend)
        layer.build(x_np.shape[1:], _rng(), np.float32)
        got = (layer.forward(x_np[:CHECKED_IMAGES], training=True), layer.backward(dout_np[:CHECKED_IMAGES]))
        _assert_agree(f"MaxPooling2D {case}, fastdl[{backend}]", ("output", "dx"), got, (_nhwc(out), _nhwc(x.grad)))
    # Channels-last memory format, the layout fastdl works in.
    x, grad = _nchw(x_np, grad=True), _nchw(dout_np)

    def step():
        out = torch.nn.functional.max_pool2d(x, size, stride)
        out.backward(grad)
        x.grad = None

    step()
    name_contender(_pool_layer_group(case), "torch (channels_last)")
    # Here, after the agreement checks: fastdl's first Numba kernels start the OpenMP runtime torch
    # shares, which sets torch's thread count again.
    torch.set_num_threads(n_threads)
    benchmark.pedantic(step, rounds=7, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("backend", BACKENDS)
def bench_dense_fastdl(benchmark, backend, require_fastdl_backend, name_contender):
    require_fastdl_backend("dense", backend)
    x, kernel, bias, dout = _dense_data()

    def step():
        out = dense(x, kernel, bias, activation="relu", backend=backend)
        # Through the ReLU, then the GEMMs and the bias (torch's backward does both too).
        dense_grad(x, kernel, activation_grad(out, dout, "relu", backend=backend), backend=backend)

    step()
    name_contender(DENSE_GROUP, f"fastdl[{backend}]")
    benchmark(step)


def bench_dense_torch(benchmark, name_contender, n_threads):
    if torch is None:
        pytest.skip(TORCH_MISSING)
    data = _dense_data()
    x, kernel, bias, dout = (torch.from_numpy(a) for a in data)
    x = x.requires_grad_(True)
    weight = kernel.T.contiguous().requires_grad_(True)
    bias = bias.requires_grad_(True)

    def forward():
        return torch.relu(torch.nn.functional.linear(x, weight, bias))

    out = forward()  # untimed: checked against fastdl, and warms up
    out.backward(dout)
    expected = (out.detach().numpy(), x.grad.numpy(), weight.grad.T.numpy(), bias.grad.numpy())
    x_np, kernel_np, bias_np, dout_np = data
    for backend in _usable("dense"):
        out_np = dense(x_np, kernel_np, bias_np, activation="relu", backend=backend)
        got = (out_np, *dense_grad(x_np, kernel_np, activation_grad(out_np, dout_np, "relu", backend=backend),
                                   backend=backend))
        _assert_agree(f"dense, fastdl[{backend}]", ("output", "dx", "dkernel", "dbias"), got, expected)
    x.grad = weight.grad = bias.grad = None

    def step():
        forward().backward(dout)
        x.grad = weight.grad = bias.grad = None

    name_contender(DENSE_GROUP, "torch")
    # Here, after the agreement checks: fastdl's first Numba kernels start the OpenMP runtime torch
    # shares, which sets torch's thread count again.
    torch.set_num_threads(n_threads)
    benchmark(step)


XENT_GROUP = "softmax cross-entropy on class codes, 128x10 logits, loss and gradient"
DROPOUT_GROUP = "Dropout(0.5) on 128x128, forward+backward"


def _xent_data():
    rng = _rng()
    return rng.standard_normal((128, 10), dtype=np.float32), rng.integers(0, 10, 128)


@pytest.mark.parametrize("backend", BACKENDS)
def bench_xent_fastdl(benchmark, backend, require_fastdl_backend, name_contender):
    require_fastdl_backend("loss", backend)
    logits, codes = _xent_data()
    loss = nn.SparseCategoricalCrossentropy()
    loss.backend = backend

    def step():
        loss.forward_logits(logits, codes)
        loss.backward_logits()

    step()
    name_contender(XENT_GROUP, f"fastdl[{backend}]")
    benchmark(step)


def bench_xent_torch(benchmark, name_contender, n_threads):
    if torch is None:
        pytest.skip(TORCH_MISSING)
    logits_np, codes_np = _xent_data()
    logits, codes = torch.from_numpy(logits_np).requires_grad_(True), torch.from_numpy(codes_np)
    value = torch.nn.functional.cross_entropy(logits, codes)
    value.backward()
    for backend in _usable("loss"):
        loss = nn.SparseCategoricalCrossentropy()
        loss.backend = backend
        got = (loss.forward_logits(logits_np, codes_np), loss.backward_logits())
        _assert_agree(f"softmax cross-entropy, fastdl[{backend}]", ("loss", "dlogits"), got,
                      (value.item(), logits.grad.numpy()))
    logits.grad = None

    def step():
        torch.nn.functional.cross_entropy(logits, codes).backward()
        logits.grad = None

    step()
    name_contender(XENT_GROUP, "torch")
    # Here, after the agreement checks: fastdl's first Numba kernels start the OpenMP runtime torch
    # shares, which sets torch's thread count again.
    torch.set_num_threads(n_threads)
    benchmark(step)


@pytest.mark.parametrize("backend", BACKENDS)
def bench_dropout_fastdl(benchmark, backend, require_fastdl_backend, name_contender):
    require_fastdl_backend("loss", backend)
    x = _rng().standard_normal((128, 128), dtype=np.float32)
    layer = nn.Dropout(0.5, seed=SEED, backend=backend)
    layer.build((128,), None, np.float32)

    def step():
        layer.backward(layer.forward(x, training=True))

    step()
    name_contender(DROPOUT_GROUP, f"fastdl[{backend}]")
    benchmark(step)


def bench_dropout_torch(benchmark, name_contender, n_threads):
    if torch is None:
        pytest.skip(TORCH_MISSING)
    x_np = _rng().standard_normal((128, 128), dtype=np.float32)
    x = torch.from_numpy(x_np).requires_grad_(True)
    torch.manual_seed(SEED)
    # Their random draws differ: the check is that both apply the same rule.
    out = torch.nn.functional.dropout(x, 0.5, training=True)
    out.backward(torch.ones_like(out))
    _check_dropout_rule("torch dropout", x_np, out.detach().numpy(), x.grad.numpy())
    for backend in _usable("loss"):
        layer = nn.Dropout(0.5, seed=SEED, backend=backend)
        layer.build((128,), None, np.float32)
        out_np = layer.forward(x_np, training=True)
        _check_dropout_rule(f"fastdl[{backend}] Dropout", x_np, out_np, layer.backward(np.ones_like(x_np)))
    x.grad = None

    def step():
        out = torch.nn.functional.dropout(x, 0.5, training=True)
        out.backward(out)
        x.grad = None

    step()
    name_contender(DROPOUT_GROUP, "torch")
    # Here, after the agreement checks: fastdl's first Numba kernels start the OpenMP runtime torch
    # shares, which sets torch's thread count again.
    torch.set_num_threads(n_threads)
    benchmark(step)
