"""k nearest neighbours, majority votes and class centroids."""

import math

import numpy as np

from fastdl import _device
from fastdl import backend as _backend
from fastdl._validation import (
    as_compute, check_codes, check_int, check_matrix, check_same_features, compute_dtype,
)
from fastdl.ops import _on_device
from fastdl.ops._knn_index import KnnIndex

# Below this many elements a pass is done before a thread pool wakes up.
MIN_PARALLEL_ELEMENTS = 1 << 18


def _threads_for(n_elements):
    """Threads worth starting for a pass over n_elements: one for small inputs."""
    return _backend.get_num_threads() if n_elements >= MIN_PARALLEL_ELEMENTS else 1


def knn(X_query, X_ref, k, backend=None):
    """The k nearest rows of X_ref for every row of X_query (Euclidean).

    Parameters
    ----------
    X_query : array-like of shape (n_queries, n_features)
    X_ref : array-like of shape (n_ref, n_features)
    k : int
        1 <= k <= n_ref.
    backend : str, optional
        "auto", "numpy", "numba", "cython", "cuda" (None: the process default).

    Returns
    -------
    distances : ndarray of shape (n_queries, k)
        Ascending Euclidean distances; float32 for float32 inputs, float64 otherwise. A distance
        beyond that dtype's range (e.g. from -1.5e308 to 1e308) is inf, ranked correctly.
    indices : ndarray of shape (n_queries, k), int64
        Rows of X_ref; equal float64 distances are ordered by the lower index (float32 distances
        are those rounded, so two that round alike keep their float64 order).

    Notes
    -----
    The ranking is that of exact float64 distances, found at the cost of a float32 GEMM plus a few
    float64 re-checks per query; memory stays bounded by working in blocks of queries. On 8 features
    or fewer, with enough rows and queries, the numba and cython backends search a kd-tree instead
    (fastdl/ops/_kdtree.py), with the same answers. Where rows lie more than 2**1000 (about 1e301)
    apart, the distances are ranked scaled by 2**-64 so that none passes float64's range; there
    distances below about 1e-288 lose digits to the subnormal range (and may rank as ties).
    """
    if _backend.resolve("neighbors", backend) == "cuda":
        return _on_device.knn(X_query, X_ref, k)
    X_query = check_matrix(X_query, "X_query")
    X_ref = check_matrix(X_ref, "X_ref")
    check_same_features(X_query, X_ref, "X_query", "X_ref")
    k = check_int(k, "k", 1, X_ref.shape[0])
    dtype = compute_dtype(X_query, X_ref)
    index = KnnIndex(as_compute(X_ref, dtype), backend, n_queries=X_query.shape[0])
    distances, indices = index.query(as_compute(X_query, dtype), k)
    with np.errstate(over="ignore"):  # a distance beyond float32's range is inf, as documented
        return distances.astype(dtype, copy=False), indices


def majority_vote(neighbor_codes, n_classes, backend=None):
    """Most frequent class code in each row of neighbor_codes; ties go to the smaller code.

    Parameters
    ----------
    neighbor_codes : array-like of shape (n_samples, k), integer codes in 0..n_classes-1
    n_classes : int
    backend : str, optional
        "auto", "numpy", "numba", "cython", "cuda" (None: the process default).

    Returns
    -------
    ndarray of shape (n_samples,), int64
    """
    codes = np.asarray(neighbor_codes)
    if codes.ndim != 2 or codes.shape[1] == 0:
        raise ValueError(f"neighbor_codes must be 2-D (n_samples, k) with k >= 1, got shape {codes.shape}")
    flat, n_classes = check_codes(codes.ravel(), codes.size, n_classes, "neighbor_codes")
    kernels, name = _backend.kernels("neighbors", backend)
    classes = None
    if n_classes > flat.size:
        # More classes than votes: count the codes' ranks instead (their order is kept, so ties
        # still go to the smaller code), sparing kernels n_classes counters per thread.
        classes, flat = np.unique(flat, return_inverse=True)
        n_classes = len(classes)
    codes = flat.reshape(codes.shape)
    if name == "cuda":
        out = _device.empty(codes.shape[0], np.int64)
        kernels.majority_vote(_device.to_device(codes), n_classes, out, 1)
        out = out.copy_to_host()
    else:
        out = np.empty(codes.shape[0], dtype=np.int64)
        kernels.majority_vote(codes, n_classes, out, _threads_for(codes.size))
    return out if classes is None else classes[out].astype(np.int64, copy=False)


def class_centroids(X, y, n_classes=None, backend=None):
    """Mean row of each class.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,), integer codes in 0..n_classes-1
    n_classes : int, optional
        Defaults to max(y) + 1; every class must have at least one sample.
    backend : str, optional
        "auto", "numpy", "numba", "cython", "cuda" (None: the process default).

    Returns
    -------
    ndarray of shape (n_classes, n_features)
        Summed in float64 (scaled down by a power of two where a sum would overflow); float32
        for float32 X (each mean rounded once from float64), float64 otherwise.
    """
    X = check_matrix(X, "X")
    return _class_means(X, y, n_classes, backend).astype(compute_dtype(X), copy=False)


def _class_means(X, y, n_classes, backend):
    """class_centroids' means in float64 whatever X's dtype, for X that check_matrix (or
    scikit-learn's validate_data) passed: float32 rows' means not rounded to float32, which
    NearestCentroid ranks with."""
    codes, n_classes = check_codes(y, X.shape[0], n_classes)
    if n_classes > X.shape[0]:  # before the (n_classes, n_features) sums are allocated
        raise ValueError(f"n_classes is {n_classes} but X has {X.shape[0]} samples: some classes have no "
                         "samples, so they have no centroid")
    kernels, name = _backend.kernels("neighbors", backend)
    X = as_compute(X, compute_dtype(X))
    sums, counts = _class_sums(X, codes, n_classes, kernels, name)
    if (counts == 0).any():
        empty = np.flatnonzero(counts == 0).tolist()
        raise ValueError(f"classes {empty} have no samples, so they have no centroid")
    if np.isfinite(sums).all():
        return sums / counts[:, None]
    # Values near float64's limit overflow their class sums. Scaled by a power of two below
    # 1 / n_samples (exact), no sum can; the division by it is undone after the mean's.
    scale = math.ldexp(1.0, -X.shape[0].bit_length())
    sums, _ = _class_sums(X * scale, codes, n_classes, kernels, name)
    return sums / counts[:, None] / scale


def _class_sums(X, codes, n_classes, kernels, name):
    """(float64 sums (n_classes, n_features), int64 counts) of X's rows by class, on the host."""
    if name == "cuda":
        sums, counts = _device.empty((n_classes, X.shape[1]), np.float64), _device.empty(n_classes, np.int64)
        kernels.class_sums(_device.to_device(X), _device.to_device(codes), sums, counts, 1)
        return sums.copy_to_host(), counts.copy_to_host()
    sums = np.empty((n_classes, X.shape[1]))
    counts = np.empty(n_classes, dtype=np.int64)
    kernels.class_sums(X, codes, sums, counts, _threads_for(X.size))
    return sums, counts
