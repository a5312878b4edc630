"""Multi-class perceptron epochs on the GPU, course-digits shapes (1707 x 257 @ 257 x 10).

The kernels fastdl.linear.MultiClassPerceptron runs each epoch, timed as in
benchmarks/bench_perceptron.py: the cuda backend's on numba device arrays (as fit makes them), the
CPU backends' (cython, numba) on NumPy arrays, and the same epoch in PyTorch CUDA and CuPy on
device arrays. Every contender returns the epoch's count of correct rows (a device-to-host read,
as fastdl's) and synchronizes the device. Data: the course digits' shapes from a fixed seed
(uniform features in [-1, 1], labels 0..9), the weights normal(0, 5) as the CPU suite's.

Batch epoch: scores = X1 @ W, delta = onehot - sigmoid(scores), W += lr * X1.T @ delta (float64
and float32). Online epoch: the same rule one sample at a time in dataset order (float64); the
torch loop launches a few kernels per sample, so it runs 3 rounds.
Target (issue 15): batch epoch at least 5x faster than the CPU backend's.
"""

import numpy as np
import pytest

from fastdl import backend as fastdl_backend

from device_peers import cupy, cupy_sync, needs_device, synced, torch, torch_sync

pytestmark = [needs_device, pytest.mark.benchmark(min_rounds=20)]

LR = 0.2
N_SAMPLES, N_FEATURES, N_CLASSES = 1707, 256, 10
SHAPES = f"{N_SAMPLES} x {N_FEATURES + 1} @ {N_FEATURES + 1} x {N_CLASSES}"
RULE_SIGMOID = 0
CPU_BACKENDS = ["cython", "numba"]


def batch_group(dtype):
    return f"cuda perceptron batch epoch, {np.dtype(dtype).name}, course-digits shapes ({SHAPES})"


ONLINE_GROUP = f"cuda perceptron online epoch, float64, course-digits shapes ({N_SAMPLES} samples in order)"


def host_data(dtype):
    """(X1 with its column of ones, int64 codes, initial W) on the host."""
    rng = np.random.default_rng(11)
    X = rng.uniform(-1.0, 1.0, (N_SAMPLES, N_FEATURES))
    X1 = np.ascontiguousarray(np.hstack([X, np.ones((N_SAMPLES, 1))]), dtype=dtype)
    codes = rng.integers(0, N_CLASSES, N_SAMPLES).astype(np.int64)
    W = np.random.RandomState(21).normal(0, 5.0, (N_FEATURES + 1, N_CLASSES)).astype(dtype)
    return X1, codes, W


def torch_batch_epoch(X1, codes, onehot, W):
    scores = X1 @ W
    n_correct = (scores.argmax(dim=1) == codes).sum()
    W.add_(X1.T @ (onehot - torch.sigmoid(scores)), alpha=LR)
    return int(n_correct)


def cupy_batch_epoch(X1, codes, onehot, W):
    scores = X1 @ W
    n_correct = (scores.argmax(axis=1) == codes).sum()
    W += LR * (X1.T @ (onehot - 1 / (1 + cupy.exp(-scores))))
    return int(n_correct)


def torch_online_epoch(X1, codes, onehot, W):
    n_correct = torch.zeros((), dtype=torch.int64, device=W.device)
    for i in range(X1.shape[0]):
        scores = X1[i] @ W
        n_correct += scores.argmax() == codes[i]
        W.add_(torch.outer(X1[i], onehot[i] - torch.sigmoid(scores)), alpha=LR)
    return int(n_correct)


def peer_arrays(module, dtype):
    """(X1, codes, onehot, W) as torch CUDA tensors or CuPy arrays."""
    X1, codes, W = host_data(dtype)
    onehot = np.eye(N_CLASSES, dtype=dtype)[codes]
    if module == "torch":
        return tuple(torch.from_numpy(a).cuda() for a in (X1, codes, onehot, W))
    return tuple(cupy.asarray(a) for a in (X1, codes, onehot, W))


def fastdl_epoch(name, method, dtype):
    """(kernel, its arguments) as MultiClassPerceptron's fit runs them on backend `name`."""
    kernels, _ = fastdl_backend.kernels("perceptron", name)
    X1, codes, W = host_data(dtype)
    lr = np.dtype(dtype).type(LR)
    if name == "cuda":
        from numba import cuda

        X1, codes, W = cuda.to_device(X1), cuda.to_device(codes), cuda.to_device(W)
        empty = lambda shape: cuda.device_array(shape, dtype=dtype)  # noqa: E731
        n_threads = 1
    else:
        empty = lambda shape: np.empty(shape, dtype=dtype)  # noqa: E731
        n_threads = fastdl_backend.get_num_threads() if method == "batch" else 1
    if method == "batch":
        return kernels.batch_epoch, (X1, codes, lr, RULE_SIGMOID, W, empty((N_SAMPLES, N_CLASSES)),
                                     empty(W.shape), n_threads)
    return kernels.online_epoch, (X1, codes, lr, RULE_SIGMOID, W, empty(N_CLASSES), n_threads)


def no_sync():
    pass


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", ["cuda", *CPU_BACKENDS])
def bench_batch_epoch_fastdl(benchmark, name, dtype, require_fastdl_backend, name_contender):
    require_fastdl_backend("perceptron", name)
    kernel, args = fastdl_epoch(name, "batch", dtype)
    run = synced(kernel, cupy_sync if name == "cuda" else no_sync)
    assert 0 <= run(*args) <= N_SAMPLES  # untimed: compiles and warms up
    name_contender(batch_group(dtype), f"fastdl[{name}]", "numba device arrays" if name == "cuda" else "")
    benchmark(run, *args)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("module", ["torch", "cupy"])
def bench_batch_epoch_peer(benchmark, module, dtype, name_contender):
    args = peer_arrays(module, dtype)
    epoch, sync = (torch_batch_epoch, torch_sync) if module == "torch" else (cupy_batch_epoch, cupy_sync)
    run = synced(epoch, sync)
    # The same first epoch as fastdl's (its numpy backend): the same count of correct rows, up to
    # a near-tie or two that float32 GEMMs may order differently.
    kernel, fastdl_args = fastdl_epoch("numpy", "batch", dtype)
    n_correct, expected = run(*args), kernel(*fastdl_args)
    assert abs(n_correct - expected) <= (0 if dtype == np.float64 else 2), (
        f"{module}'s epoch counts {n_correct} correct rows, fastdl's {expected}")
    name_contender(batch_group(dtype), f"{module} (the same epoch)")
    benchmark(run, *args)


@pytest.mark.parametrize("name", ["cuda", *CPU_BACKENDS])
def bench_online_epoch_fastdl(benchmark, name, require_fastdl_backend, name_contender):
    require_fastdl_backend("perceptron", name)
    kernel, args = fastdl_epoch(name, "online", np.float64)
    run = synced(kernel, cupy_sync if name == "cuda" else no_sync)
    assert 0 <= run(*args) <= N_SAMPLES
    name_contender(ONLINE_GROUP, f"fastdl[{name}]", "one block" if name == "cuda" else "")
    benchmark(run, *args)


def bench_online_epoch_torch(benchmark, name_contender):
    args = peer_arrays("torch", np.float64)
    run = synced(torch_online_epoch, torch_sync)
    run(*args)
    name_contender(ONLINE_GROUP, "torch (per-sample loop)", "3 rounds")
    benchmark.pedantic(run, args=args, rounds=3, iterations=1)
