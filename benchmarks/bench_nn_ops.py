"""Layer-level ops, forward + backward, float32: fastdl's backends against PyTorch on the CPU.

The shapes are the course's hot spots: the first convolution of the Fashion-MNIST CNN (batch 128,
28x28x1, 64 filters 7x7, "same") and one of its 3x3 convolutions (batch 128, 14x14x128, 128
filters, "same": fastdl's Winograd path), the clock net's max-pooling over 148x148x32
activations (batch 100), the MLP's first dense layer (batch 32, 784 -> 300, ReLU), and the CNN's
output: softmax cross-entropy on 128 x 10 logits, and Dropout(0.5) on its 128 x 128 dense layer.
A decoder's upsampling step, Conv2DTranspose 3x3 stride 2 "same" from 32x32x128 to 64x64x128
(batch 64), is timed forward alone and forward+backward against torch's ConvTranspose2d.
"""

import numpy as np
import pytest

from fastdl import nn
from fastdl.ops import (
    activation_grad, conv2d, conv2d_grad, conv2d_transpose, conv2d_transpose_grad, dense, dense_grad, max_pool2d,
    max_pool2d_grad,
)
from peers import TORCH_MISSING, torch

pytestmark = pytest.mark.benchmark(min_rounds=5)

BACKENDS = ["numba", "cython"]
SEED = 7


def _rng():
    return np.random.default_rng(SEED)


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
    torch.set_num_threads(n_threads)
    x, kernel, bias, dout = (torch.from_numpy(a) for a in _conv_data(case))
    x = x.permute(0, 3, 1, 2).contiguous().requires_grad_(True)
    weight = kernel.permute(3, 2, 0, 1).contiguous().requires_grad_(True)
    bias = bias.requires_grad_(True)
    grad = dout.permute(0, 3, 1, 2).contiguous()

    def step():
        out = torch.nn.functional.conv2d(x, weight, bias, padding="same")
        out.backward(grad)
        x.grad = weight.grad = bias.grad = None

    step()
    name_contender(_conv_group(case), "torch (NCHW)")
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
    torch.set_num_threads(n_threads)
    x, kernel, bias, dout = (torch.from_numpy(a) for a in _transpose_data())
    _, _, _, in_channels, size, stride, filters = TRANSPOSE_CASE
    # padding=1 with output_padding=1 gives Keras' "same" output (2 * 32 = 64 pixels) for k=3, s=2.
    layer = torch.nn.ConvTranspose2d(in_channels, filters, size, stride=stride, padding=1, output_padding=1)
    with torch.no_grad():  # the same weights as fastdl's; torch's layout is (in_channels, filters, kh, kw)
        layer.weight.copy_(kernel.permute(3, 2, 0, 1))
        layer.bias.copy_(bias)
    # Channels-last memory format, the layout fastdl works in.
    x = x.permute(0, 3, 1, 2).requires_grad_(True)
    grad = dout.permute(0, 3, 1, 2)

    def forward():
        with torch.no_grad():
            layer(x)

    def forward_backward():
        layer(x).backward(grad)
        x.grad = layer.weight.grad = layer.bias.grad = None

    step = forward if mode == "forward" else forward_backward
    step()
    name_contender(TRANSPOSE_GROUPS[mode], "torch (channels_last)")
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
    torch.set_num_threads(n_threads)
    x, dout = (torch.from_numpy(a) for a in _pool_data())
    # Channels-last memory format, the layout fastdl works in.
    x = x.permute(0, 3, 1, 2).requires_grad_(True)
    grad = dout.permute(0, 3, 1, 2)

    def step():
        out = torch.nn.functional.max_pool2d(x, 2)
        out.backward(grad)
        x.grad = None

    step()
    name_contender(POOL_GROUP, "torch (channels_last)")
    benchmark.pedantic(step, rounds=5, iterations=1, warmup_rounds=1)


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
    torch.set_num_threads(n_threads)
    x, kernel, bias, dout = (torch.from_numpy(a) for a in _dense_data())
    x = x.requires_grad_(True)
    weight = kernel.T.contiguous().requires_grad_(True)
    bias = bias.requires_grad_(True)

    def step():
        out = torch.relu(torch.nn.functional.linear(x, weight, bias))
        out.backward(dout)
        x.grad = weight.grad = bias.grad = None

    step()
    name_contender(DENSE_GROUP, "torch")
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
    torch.set_num_threads(n_threads)
    logits, codes = _xent_data()
    logits, codes = torch.from_numpy(logits).requires_grad_(True), torch.from_numpy(codes)

    def step():
        torch.nn.functional.cross_entropy(logits, codes).backward()
        logits.grad = None

    step()
    name_contender(XENT_GROUP, "torch")
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
    torch.set_num_threads(n_threads)
    x = torch.from_numpy(_rng().standard_normal((128, 128), dtype=np.float32)).requires_grad_(True)
    torch.manual_seed(SEED)

    def step():
        out = torch.nn.functional.dropout(x, 0.5, training=True)
        out.backward(out)
        x.grad = None

    step()
    name_contender(DROPOUT_GROUP, "torch")
    benchmark(step)
