"""fastdl.neighbors' classifiers with backend="cuda" against the same recipe in CuPy and PyTorch CUDA.

The estimators take NumPy arrays (fit copies the training rows to the device, predict the queries,
and the labels come back as NumPy), so here every contender starts from the same host arrays and
ends with host labels: the timed region is fit + predict, transfers included, ending with a device
synchronisation. Data: the course digits' shapes (1707 training rows, 1000 queries, 256 float32
features, 10 classes), made from a fixed seed as noisy copies of 10 class centres.

- kNN k=3: fastdl's KNeighborsClassifier (cuda, and cython for the CPU's time); torch and CuPy:
  GEMM identity, the 3 smallest (topk / argpartition), a majority vote by bincount (ties to the
  smaller label, as fastdl's).
- Nearest centroid: fastdl's NearestCentroid; torch and CuPy: class means by a one-hot GEMM,
  then the argmin of |c|^2 - 2 x.c.

Before timing, each contender's labels must equal fastdl[cuda]'s on at least 99% of the queries.
"""

import numpy as np
import pytest

from fastdl.neighbors import KNeighborsClassifier, NearestCentroid

from device_peers import cupy, cupy_sync, needs_device, synced, torch, torch_sync

pytestmark = [needs_device, pytest.mark.benchmark(min_rounds=10)]

K = 3
N_TRAIN, N_TEST, N_FEATURES, N_CLASSES = 1707, 1000, 256, 10
SHAPES = f"{N_TRAIN} train, {N_TEST} test, {N_FEATURES} float32 features, host arrays in and out"
GROUPS = {
    "knn": f"cuda KNeighborsClassifier k={K} fit+predict ({SHAPES})",
    "centroid": f"cuda NearestCentroid fit+predict ({SHAPES})",
}
MIN_AGREEMENT = 0.99


def digits_like(seed=3):
    """Noisy copies of N_CLASSES random centres in [-1, 1], clipped to it (pixel-like values)."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-1.0, 1.0, (N_CLASSES, N_FEATURES))
    y = rng.integers(0, N_CLASSES, N_TRAIN + N_TEST)
    X = np.clip(centres[y] + rng.normal(0.0, 0.8, (len(y), N_FEATURES)), -1.0, 1.0).astype(np.float32)
    return X[:N_TRAIN], y[:N_TRAIN], X[N_TRAIN:], y[N_TRAIN:]


def fastdl_knn(name):
    def run(X_train, y_train, X_test):
        return KNeighborsClassifier(K, backend=name).fit(X_train, y_train).predict(X_test)

    return run


def fastdl_centroid(name):
    def run(X_train, y_train, X_test):
        return NearestCentroid(backend=name).fit(X_train, y_train).predict(X_test)

    return run


def torch_knn(X_train, y_train, X_test):
    classes, codes = np.unique(y_train, return_inverse=True)
    train = torch.from_numpy(X_train).cuda()
    test = torch.from_numpy(X_test).cuda()
    codes = torch.from_numpy(codes).cuda()
    sq_train = (train * train).sum(dim=1)
    d2 = torch.addmm(sq_train[None, :], test, train.T, beta=1, alpha=-2)  # + |q|^2: same ranking
    neighbors = d2.topk(K, dim=1, largest=False).indices
    flat = (torch.arange(len(test), device=test.device)[:, None] * len(classes) + codes[neighbors]).ravel()
    counts = torch.bincount(flat, minlength=len(test) * len(classes)).view(len(test), len(classes))
    return classes[counts.argmax(dim=1).cpu().numpy()]


def cupy_knn(X_train, y_train, X_test):
    classes, codes = np.unique(y_train, return_inverse=True)
    train, test, codes = cupy.asarray(X_train), cupy.asarray(X_test), cupy.asarray(codes)
    d2 = (train * train).sum(axis=1)[None, :] - 2 * (test @ train.T)  # + |q|^2: same ranking
    neighbors = cupy.argpartition(d2, K - 1, axis=1)[:, :K]
    flat = (cupy.arange(len(test))[:, None] * len(classes) + codes[neighbors]).ravel()
    counts = cupy.bincount(flat, minlength=len(test) * len(classes)).reshape(len(test), len(classes))
    return classes[cupy.asnumpy(counts.argmax(axis=1))]


def torch_centroid(X_train, y_train, X_test):
    classes, codes = np.unique(y_train, return_inverse=True)
    train, test = torch.from_numpy(X_train).cuda(), torch.from_numpy(X_test).cuda()
    codes = torch.from_numpy(codes).cuda()
    onehot = torch.nn.functional.one_hot(codes, len(classes)).to(train.dtype)
    centroids = (onehot.T @ train) / onehot.sum(dim=0)[:, None]
    scores = (centroids * centroids).sum(dim=1)[None, :] - 2 * (test @ centroids.T)
    return classes[scores.argmin(dim=1).cpu().numpy()]


def cupy_centroid(X_train, y_train, X_test):
    classes, codes = np.unique(y_train, return_inverse=True)
    train, test, codes = cupy.asarray(X_train), cupy.asarray(X_test), cupy.asarray(codes)
    onehot = (codes[:, None] == cupy.arange(len(classes))[None, :]).astype(train.dtype)
    centroids = (onehot.T @ train) / onehot.sum(axis=0)[:, None]
    scores = (centroids * centroids).sum(axis=1)[None, :] - 2 * (test @ centroids.T)
    return classes[cupy.asnumpy(scores.argmin(axis=1))]


CONTENDERS = {  # family -> id -> (label, (X_train, y_train, X_test) -> labels, sync, fastdl backend)
    "knn": {
        "fastdl-cuda": ("fastdl[cuda]", fastdl_knn("cuda"), cupy_sync, "cuda"),
        "fastdl-cython": ("fastdl[cython]", fastdl_knn("cython"), lambda: None, "cython"),
        "torch": ("torch GEMM identity + topk + bincount vote", torch_knn, torch_sync, None),
        "cupy": ("cupy GEMM identity + argpartition + bincount vote", cupy_knn, cupy_sync, None),
    },
    "centroid": {
        "fastdl-cuda": ("fastdl[cuda]", fastdl_centroid("cuda"), cupy_sync, "cuda"),
        "fastdl-cython": ("fastdl[cython]", fastdl_centroid("cython"), lambda: None, "cython"),
        "torch": ("torch one-hot GEMM means + argmin", torch_centroid, torch_sync, None),
        "cupy": ("cupy one-hot GEMM means + argmin", cupy_centroid, cupy_sync, None),
    },
}
PARAMS = [(family, key) for family, contenders in CONTENDERS.items() for key in contenders]
_reference = {}


@pytest.mark.parametrize(("family", "key"), PARAMS, ids=[f"{f}-{k}" for f, k in PARAMS])
def bench_cuda_classifier(benchmark, family, key, name_contender, require_fastdl_backend):
    label, function, sync, backend = CONTENDERS[family][key]
    if backend is not None:
        require_fastdl_backend("neighbors", backend)
    X_train, y_train, X_test, y_test = digits_like()
    if family not in _reference:
        _reference[family] = CONTENDERS[family]["fastdl-cuda"][1](X_train, y_train, X_test)
    run = synced(function, sync)
    predicted = run(X_train, y_train, X_test)  # untimed: compiles, warms the caches, checks
    mismatched = int(np.sum(predicted != _reference[family]))
    assert mismatched <= (1 - MIN_AGREEMENT) * N_TEST, (
        f"{label}: predicts differently from fastdl[cuda] on {mismatched} of {N_TEST} queries")
    note = f"test accuracy {np.mean(predicted == y_test):.4f}"
    if backend is None:
        note += f", labels differing from fastdl's: {mismatched}"
    name_contender(GROUPS[family], label, note)
    benchmark(run, X_train, y_train, X_test)
