"""Training the course's networks on the GPU: fastdl.nn on the cuda backend against PyTorch CUDA.

One timed call is one training step on a fixed random batch resident on the device (forward,
loss, backward, the optimizer's update), ending with a device synchronisation. The models, their
optimizers and batches are benchmarks/bench_nn_models.py's (the same builders, the same PyTorch
twins, checked to have as many parameters):

- course MLP 784-300-100-10, batch 32, SGD(0.01), sparse categorical cross-entropy;
- course CNN 28x28x1, batch 128, RMSprop, sparse categorical cross-entropy;
- clock CNN 150x150x1, batch 100, Adam, MSE.

fastdl's step is `model.train_on_batch(x, y)` with x a numba device array (the targets are NumPy,
as fit takes them, and go over each step); PyTorch's is eager `zero_grad`, forward, loss,
`backward()`, `step()` on NCHW tensors (cuDNN picks its algorithms: `benchmark=True`), and for the
MLP also the same step captured once as a CUDA graph and replayed (the floor of launch cost).
PyTorch's default runs float32 convolutions on tensor cores in TF32 (10-bit mantissas); fastdl's
GEMMs are float32 throughout, so the CNN and clock steps are timed both ways (cuDNN's conv
fp32_precision "tf32" and "ieee").

The epoch group trains the course MLP on 55,000 Fashion-MNIST-sized images for one epoch in
batches of 32, shuffled: fastdl's `fit` with NumPy arrays (it moves the images to the device once
per fit, inside the timed call), PyTorch's loop over images already on the device.

Targets (issue 16), on an H200: the MLP step at most a third of PyTorch eager's, an epoch under
1 s; the CNN and clock steps at least half of PyTorch eager's images/s.
"""

import contextlib

import numpy as np
import pytest

from bench_nn_models import BATCH, SHAPE, _data, _fastdl_model, _n_params, _torch_model, _torch_optimizer
from device_peers import needs_device, synced, torch, torch_sync

pytestmark = [needs_device]

GROUPS = {
    "mlp": "cuda train step: course MLP 784-300-100-10, batch 32, SGD, float32",
    "cnn": "cuda train step: course CNN 28x28x1, batch 128, RMSprop, float32",
    "clock": "cuda train step: clock CNN 150x150x1, batch 100, Adam, MSE, float32",
}
EPOCH_GROUP = "cuda epoch: course MLP on 55,000 28x28 images, batch 32, SGD, float32"
EPOCH_IMAGES = 55_000
KINDS = ["mlp", "cnn", "clock"]


def _rate(images):
    return lambda stats: f"{images / stats.mean:,.0f} images/s (best {images / stats.min:,.0f}); mean {stats.mean * 1e6:,.0f} us"


def _fastdl_step(kind):
    from numba import cuda

    x, y = _data(kind)
    model = _fastdl_model(kind, "cuda")
    x_device = cuda.to_device(x)

    def step():
        model.train_on_batch(x_device, y)
        cuda.synchronize()

    return model, step


def _torch_parts(kind):
    x_np, y_np = _data(kind)
    x = torch.from_numpy(x_np).permute(0, 3, 1, 2).contiguous().cuda()
    y = torch.from_numpy(y_np).cuda()
    net = _torch_model(kind).cuda().train()
    loss_fn = torch.nn.functional.mse_loss if kind == "clock" else torch.nn.functional.cross_entropy
    return x, y, net, _torch_optimizer(kind, net), loss_fn


@pytest.mark.parametrize("kind", KINDS)
def bench_fastdl_cuda(benchmark, kind, name_contender):
    model, step = _fastdl_step(kind)
    step()  # untimed: compiles the kernels, allocates buffers and the optimizer state
    assert model.count_params() == _n_params(_torch_model(kind)), kind
    benchmark.pedantic(step, rounds=20 if kind == "mlp" else 5, iterations=10 if kind == "mlp" else 2,
                       warmup_rounds=1)
    name_contender(GROUPS[kind], "fastdl[cuda]", _rate(BATCH[kind]))


@contextlib.contextmanager
def _cudnn_convolutions(precision):
    """cuDNN's float32 convolutions at `precision` while the block runs: "tf32" (PyTorch's default,
    tensor cores with 10-bit mantissas) or "ieee" (float32 throughout, as fastdl's GEMMs)."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):  # PyTorch 2.9 on
        old = conv.fp32_precision
        conv.fp32_precision = precision
        try:
            yield
        finally:
            conv.fp32_precision = old
        return
    old = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = old


@pytest.mark.parametrize("precision", ["tf32", "ieee"])
@pytest.mark.parametrize("kind", KINDS)
def bench_torch_eager(benchmark, kind, precision, name_contender):
    if kind == "mlp" and precision == "ieee":
        pytest.skip("the MLP has no convolutions (PyTorch's float32 matrix products are float32 already)")
    torch.backends.cudnn.benchmark = True
    x, y, net, optimizer, loss_fn = _torch_parts(kind)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss_fn(net(x), y).backward()
        optimizer.step()

    with _cudnn_convolutions(precision):
        step()
        benchmark.pedantic(synced(step, torch_sync), rounds=20 if kind == "mlp" else 5,
                           iterations=10 if kind == "mlp" else 2, warmup_rounds=1)
    label = {"tf32": "torch CUDA eager (NCHW)" if kind == "mlp" else "torch CUDA eager (NCHW, TF32 convolutions: the default)",
             "ieee": "torch CUDA eager (NCHW, float32 convolutions, as fastdl)"}[precision]
    name_contender(GROUPS[kind], label, _rate(BATCH[kind]))


def bench_torch_cuda_graph_mlp(benchmark, name_contender):
    """The MLP step captured once as a CUDA graph and replayed: PyTorch without launch overhead."""
    x, y, net, optimizer, loss_fn = _torch_parts("mlp")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up on a side stream, as the CUDA graphs recipe asks
        for _ in range(3):
            optimizer.zero_grad(set_to_none=True)
            loss_fn(net(x), y).backward()
            optimizer.step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    optimizer.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        loss_fn(net(x), y).backward()
        optimizer.step()
    benchmark.pedantic(synced(graph.replay, torch_sync), rounds=20, iterations=10, warmup_rounds=1)
    name_contender(GROUPS["mlp"], "torch CUDA graph replay", _rate(BATCH["mlp"]))


def _epoch_data():
    rng = np.random.default_rng(5)
    return rng.random((EPOCH_IMAGES, *SHAPE["mlp"]), dtype=np.float32), rng.integers(0, 10, EPOCH_IMAGES)


def bench_fastdl_cuda_epoch(benchmark, name_contender):
    from numba import cuda

    x, y = _epoch_data()
    model = _fastdl_model("mlp", "cuda")
    model.fit(x[:64], y[:64], epochs=1, batch_size=BATCH["mlp"])  # untimed: compiles

    def epoch():
        model.fit(x, y, epochs=1, batch_size=BATCH["mlp"])
        cuda.synchronize()

    benchmark.pedantic(epoch, rounds=3, iterations=1, warmup_rounds=0)
    name_contender(EPOCH_GROUP, "fastdl[cuda] fit", _rate(EPOCH_IMAGES))


def bench_torch_epoch(benchmark, name_contender):
    x_np, y_np = _epoch_data()
    x = torch.from_numpy(x_np).permute(0, 3, 1, 2).contiguous().cuda()
    y = torch.from_numpy(y_np).cuda()
    net = _torch_model("mlp").cuda().train()
    optimizer = _torch_optimizer("mlp", net)
    batch = BATCH["mlp"]

    def epoch():
        order = torch.randperm(EPOCH_IMAGES, device="cuda")
        for first in range(0, EPOCH_IMAGES, batch):
            rows = order[first:first + batch]
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(x[rows]), y[rows]).backward()
            optimizer.step()

    epoch()
    benchmark.pedantic(synced(epoch, torch_sync), rounds=3, iterations=1, warmup_rounds=0)
    name_contender(EPOCH_GROUP, "torch CUDA eager loop, data on the device", _rate(EPOCH_IMAGES))
