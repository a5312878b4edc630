"""Neighbour kernels (Numba): kNN selection, majority vote, class sums.

Mirrors kernels/cy/neighbors.pyx and kernels/npy/neighbors.py.
"""

import numba
import numpy as np
from numba import prange

from ._jit import compile_kernel, launch

_helper = numba.njit(nogil=True, cache=True)
FEATURE_BLOCK = 16  # features per task in class_sums: 128 bytes of each float64 output row


@_helper
def _sift_down(keys, index, size, pos):
    """Restore the max-heap on (keys, index) below `pos`; larger index wins ties."""
    while True:
        child = 2 * pos + 1
        if child >= size:
            return
        if child + 1 < size and (
            keys[child + 1] > keys[child] or (keys[child + 1] == keys[child] and index[child + 1] > index[child])
        ):
            child += 1
        if keys[child] > keys[pos] or (keys[child] == keys[pos] and index[child] > index[pos]):
            keys[pos], keys[child] = keys[child], keys[pos]
            index[pos], index[child] = index[child], index[pos]
            pos = child
        else:
            return


@_helper
def _push(keys, index, size, key, idx):
    """Offer (key, idx) to a max-heap holding the `len(keys)` smallest pairs; returns the new size."""
    capacity = keys.shape[0]
    if size < capacity:
        pos = size
        keys[pos] = key
        index[pos] = idx
        while pos > 0:
            parent = (pos - 1) // 2
            if keys[parent] > keys[pos] or (keys[parent] == keys[pos] and index[parent] > index[pos]):
                break
            keys[pos], keys[parent] = keys[parent], keys[pos]
            index[pos], index[parent] = index[parent], index[pos]
            pos = parent
        return size + 1
    if key < keys[0] or (key == keys[0] and idx < index[0]):
        keys[0] = key
        index[0] = idx
        _sift_down(keys, index, size, 0)
    return size


@_helper
def _scaled_sq_distance(a, b, scale):
    """|(a - b) * scale|^2 in float64, feature by feature; scaling by a power of two is exact."""
    d2 = 0.0
    if scale < 1.0:  # large values: scale first so that a - b cannot overflow
        for f in range(a.shape[0]):
            diff = np.float64(a[f]) * scale - np.float64(b[f]) * scale
            d2 += diff * diff
    else:  # small values: subtract first, then lift the difference out of the subnormal range
        for f in range(a.shape[0]):
            diff = (np.float64(a[f]) - np.float64(b[f])) * scale
            d2 += diff * diff
    return d2


def _knn_from_gram(gram, sq_norms_q, sq_norms_r, bound_tol, bound_abs, X_query, X_ref, exact_scale, out_dist, out_idx):
    n, m = gram.shape
    k = out_idx.shape[1]
    for i in prange(n):
        # One pass over the approximate distances: a max-heap keeps the k smallest upper bounds
        # (their top caps the final k-th distance) and every row whose lower bound is within the
        # cap so far is remembered; the cap only shrinks, so the remembered rows are a superset.
        upper = np.empty(k)
        upper_idx = np.empty(k, np.int64)
        candidates = np.empty(m, np.int64)
        n_candidates = 0
        size = 0
        cap = np.inf
        for j in range(m):
            norm_sum = sq_norms_q[i] + sq_norms_r[j]
            bound = bound_tol * norm_sum + bound_abs
            approx = norm_sum - 2.0 * gram[i, j]
            if approx - bound <= cap:
                candidates[n_candidates] = j
                n_candidates += 1
                if approx + bound < cap or size < k:
                    size = _push(upper, upper_idx, size, approx + bound, j)
                    if size == k:
                        cap = upper[0]
        # Rank the rows that can still reach the cap by their exact float64 distance.
        best = np.empty(k)
        best_idx = np.empty(k, np.int64)
        size = 0
        for c in range(n_candidates):
            j = candidates[c]
            norm_sum = sq_norms_q[i] + sq_norms_r[j]
            if norm_sum - 2.0 * gram[i, j] - (bound_tol * norm_sum + bound_abs) <= cap:
                size = _push(best, best_idx, size, _scaled_sq_distance(X_query[i], X_ref[j], exact_scale), j)
        # Heap-sort the k best into ascending (distance, index) order.
        for last in range(k - 1, -1, -1):
            out_dist[i, last] = np.sqrt(best[0]) / exact_scale
            out_idx[i, last] = best_idx[0]
            best[0] = best[last]
            best_idx[0] = best_idx[last]
            _sift_down(best, best_idx, last, 0)


_knn_serial = compile_kernel(_knn_from_gram)
_knn_parallel = compile_kernel(_knn_from_gram, parallel=True)


def knn_from_gram(gram, sq_norms_q, sq_norms_r, bound_tol, bound_abs, X_query, X_ref, exact_scale, out_dist, out_idx, n_threads):
    """Exact k nearest reference rows per query row, from an approximate Gram block.

    gram (n, m): approximate dot products of the (shifted, scaled) rows, float32 or float64;
    sq_norms_q (n,), sq_norms_r (m,): float64 squared norms of those rows; the approximate squared
    distance q + r - 2 g is within bound_tol * (q + r) + bound_abs of the true one (same scale).
    X_query (n, d), X_ref (m, d): the original rows, ranked exactly in float64 after scaling by
    exact_scale (a power of two that keeps huge and subnormal values in range).
    out_dist (n, k) gets Euclidean distances, out_idx (n, k) int64 indices, ascending,
    ties to the lower index.
    """
    launch(_knn_serial, _knn_parallel, n_threads,
           gram, sq_norms_q, sq_norms_r, bound_tol, bound_abs, X_query, X_ref, exact_scale, out_dist, out_idx)


def _majority_vote(neighbor_codes, n_classes, out):
    n, k = neighbor_codes.shape
    for i in prange(n):
        counts = np.zeros(n_classes, np.int64)
        for t in range(k):
            counts[neighbor_codes[i, t]] += 1
        winner = 0
        for c in range(1, n_classes):
            if counts[c] > counts[winner]:  # strict: ties go to the smaller code
                winner = c
        out[i] = winner


_vote_serial = compile_kernel(_majority_vote)
_vote_parallel = compile_kernel(_majority_vote, parallel=True)


def majority_vote(neighbor_codes, n_classes, out, n_threads):
    """Most frequent class code per row of neighbor_codes (n, k) int64 into out (n,); ties -> smaller."""
    launch(_vote_serial, _vote_parallel, n_threads, neighbor_codes, n_classes, out)


def _class_sums(X, codes, out_sums, out_counts, block):
    n, n_features = X.shape
    out_counts[:] = 0
    for i in range(n):
        out_counts[codes[i]] += 1
    # Threads own disjoint blocks of features and add the rows in order, so the sums do not
    # depend on the thread count.
    for b in prange((n_features + block - 1) // block):
        first = b * block
        stop = min(n_features, first + block)
        out_sums[:, first:stop] = 0.0
        for i in range(n):
            c = codes[i]
            for f in range(first, stop):
                out_sums[c, f] += X[i, f]


_sums_serial = compile_kernel(_class_sums)
_sums_parallel = compile_kernel(_class_sums, parallel=True)


def class_sums(X, codes, out_sums, out_counts, n_threads):
    """Per-class feature sums (float64) and counts of X (n, d) with int64 codes into out_sums (c, d).

    Each sum adds its rows in order, whatever the thread count.
    """
    launch(_sums_serial, _sums_parallel, n_threads, X, codes, out_sums, out_counts, FEATURE_BLOCK)
