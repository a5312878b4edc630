"""Multi-class perceptron epochs on the course's leiden-digits data (1707 x 256, 10 classes).

Batch epoch: scores = X1 @ W, delta = onehot - sigmoid(scores), W += lr * X1.T @ delta.
Online epoch: the same update one sample at a time, in dataset order.
Contenders: fastdl's kernels (each backend), a plain numpy implementation of the course's code,
and scikit-learn's Perceptron (one partial_fit call = one online epoch of the classic rule).
Targets (issue 3): batch epoch >= 3x faster than numpy; online epoch >= 10x faster than sklearn.
"""

import numpy as np
import pytest
from sklearn.linear_model import Perceptron

from fastdl import backend as fastdl_backend

pytestmark = pytest.mark.benchmark(min_rounds=20)

LR = 0.2
BATCH_GROUP = "perceptron batch epoch, float64, leiden-digits (1707 x 257 @ 257 x 10)"
ONLINE_GROUP = "perceptron online epoch, float64, leiden-digits (1707 samples in order)"


def _setup(digits, dtype=np.float64):
    X = digits["X_train"]
    X1 = np.ascontiguousarray(np.hstack([X, np.ones((len(X), 1))]), dtype=dtype)
    codes = np.ascontiguousarray(digits["y_train"], dtype=np.int64)
    W = np.random.RandomState(21).normal(0, 5.0, (X1.shape[1], 10)).astype(dtype)
    return X1, codes, W


def numpy_batch_epoch(X1, onehot, W):
    """The course's batch step in plain numpy (with an overflow-safe sigmoid)."""
    scores = X1 @ W
    e = np.exp(-np.abs(scores))
    sigmoid = np.where(scores >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    W += LR * (X1.T @ (onehot - sigmoid))


def numpy_online_epoch(X1, onehot, W):
    """The course's online step in plain numpy: a Python loop over samples."""
    for i in range(X1.shape[0]):
        scores = X1[i] @ W
        e = np.exp(-np.abs(scores))
        sigmoid = np.where(scores >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        W += LR * np.outer(X1[i], onehot[i] - sigmoid)


@pytest.mark.parametrize("name", ["numba", "cython", "numpy"])
def bench_batch_epoch_fastdl(benchmark, name, leiden_digits, require_fastdl_backend, name_contender):
    require_fastdl_backend("perceptron", name)
    kernels, _ = fastdl_backend.kernels("perceptron", name)
    X1, codes, W = _setup(leiden_digits)
    scores = np.empty((X1.shape[0], W.shape[1]))
    grad = np.empty_like(W)
    args = (X1, codes, np.float64(LR), 0, W, scores, grad, fastdl_backend.get_num_threads())
    kernels.batch_epoch(*args)  # compile and warm up
    name_contender(BATCH_GROUP, f"fastdl[{name}]", "the numpy backend is the reference" if name == "numpy" else "")
    benchmark(kernels.batch_epoch, *args)


def bench_batch_epoch_numpy(benchmark, leiden_digits, name_contender):
    X1, codes, W = _setup(leiden_digits)
    onehot = np.eye(W.shape[1])[codes]
    name_contender(BATCH_GROUP, "numpy (course code)")
    benchmark(numpy_batch_epoch, X1, onehot, W)


@pytest.mark.parametrize("name", ["numba", "cython"])
def bench_online_epoch_fastdl(benchmark, name, leiden_digits, require_fastdl_backend, name_contender):
    require_fastdl_backend("perceptron", name)
    kernels, _ = fastdl_backend.kernels("perceptron", name)
    X1, codes, W = _setup(leiden_digits)
    args = (X1, codes, np.float64(LR), 0, W, np.empty(W.shape[1]), 1)
    kernels.online_epoch(*args)
    name_contender(ONLINE_GROUP, f"fastdl[{name}]", "sigmoid rule")
    benchmark(kernels.online_epoch, *args)


@pytest.mark.parametrize("name", ["numba", "cython"])
def bench_online_epoch_fastdl_classic(benchmark, name, leiden_digits, require_fastdl_backend, name_contender):
    require_fastdl_backend("perceptron", name)
    kernels, _ = fastdl_backend.kernels("perceptron", name)
    X1, codes, W = _setup(leiden_digits)
    args = (X1, codes, np.float64(LR), 1, W, np.empty(W.shape[1]), 1)
    kernels.online_epoch(*args)
    name_contender(ONLINE_GROUP, f"fastdl[{name}] classic", "classic rule, as sklearn's")
    benchmark(kernels.online_epoch, *args)


def bench_online_epoch_sklearn(benchmark, leiden_digits, name_contender):
    X, y = leiden_digits["X_train"], leiden_digits["y_train"]
    model = Perceptron(eta0=LR, shuffle=False, random_state=0)
    model.partial_fit(X, y, classes=np.arange(10))
    name_contender(ONLINE_GROUP, "sklearn Perceptron.partial_fit", "classic rule, one-vs-rest")
    benchmark(model.partial_fit, X, y)


def bench_online_epoch_numpy(benchmark, leiden_digits, name_contender):
    X1, codes, W = _setup(leiden_digits)
    onehot = np.eye(W.shape[1])[codes]
    name_contender(ONLINE_GROUP, "numpy (course code, Python loop)")
    benchmark.pedantic(numpy_online_epoch, (X1, onehot, W), rounds=3, iterations=1)
