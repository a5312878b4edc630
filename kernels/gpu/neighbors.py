"""Neighbour kernels (numba.cuda); mirrors kernels/cpu/neighbors.py and kernels/npy/neighbors.py.

knn_from_gram, as the CPU backends', takes candidates from a GEMM's distances with a proven error
bound and ranks them by exact float64 distances; on the device the GEMM is float64
(fastdl/ops/_on_device.py), and each query row is one thread.
"""

import math

import numpy as np
from numba import cuda

from ._launch import grid_1d, kernel
from .distance import exact_distance


@cuda.jit(device=True)
def _insert(out_dist, out_idx, row, filled, value, col):
    """Offer (value, col) to row's ascending k best in out_dist, out_idx (`filled` of them so far);
    returns the new count. Columns come in increasing order and only a smaller value moves past
    another, so equal values stay in column order."""
    k = out_idx.shape[1]
    if filled == k and not value < out_dist[row, k - 1]:
        return filled
    slot = filled if filled < k else k - 1
    while slot > 0 and value < out_dist[row, slot - 1]:
        out_dist[row, slot] = out_dist[row, slot - 1]
        out_idx[row, slot] = out_idx[row, slot - 1]
        slot -= 1
    out_dist[row, slot] = value
    out_idx[row, slot] = col
    return filled + 1 if filled < k else k


@kernel
def _knn_from_gram(gram, sq_norms_q, sq_norms_r, tol, bound_abs, X_query, X_ref, key_scale, out_dist, out_idx):
    row = cuda.grid(1)
    if row >= gram.shape[0]:
        return
    m, k = gram.shape[1], out_idx.shape[1]
    # Pass 1: the k-th smallest term |r|^2 - 2 q.r (the squared distance less the query's squared
    # norm), and the largest |r|^2, which bounds every term's error.
    filled = 0
    max_norm_r = 0.0
    for col in range(m):
        norm_r = sq_norms_r[col]
        max_norm_r = norm_r if norm_r > max_norm_r else max_norm_r
        filled = _insert(out_dist, out_idx, row, filled, norm_r - 2.0 * gram[row, col], col)
    # Pass 2: only rows whose term is within twice that error of the k-th can be among the k
    # nearest; they are ranked by their exact distance times key_scale. "Not above": a NaN rules
    # nothing out.
    reach = out_dist[row, k - 1] + 2.0 * (tol * (sq_norms_q[row] + max_norm_r) + bound_abs)
    filled = 0
    for col in range(m):
        if not (sq_norms_r[col] - 2.0 * gram[row, col] > reach):
            total, unscale = exact_distance(X_query, row, X_ref, col)
            filled = _insert(out_dist, out_idx, row, filled, math.sqrt(total) * (unscale * key_scale), col)
    for t in range(k):
        out_dist[row, t] /= key_scale


def knn_from_gram(gram, sq_norms_q, sq_norms_r, bound_tol, bound_abs, X_query, X_ref, key_scale, out_dist, out_idx,
                  n_threads):
    """Exact k nearest reference rows per query row, from an approximate Gram block (as the CPU
    kernel; one thread per query row).

    gram (n, m) float64: dot products of the shifted, scaled rows, whose float64 squared norms are
    sq_norms_q (n,) and sq_norms_r (m,); q + r - 2 g is within bound_tol * (q + r) + bound_abs of
    the exact squared distance (same scale). X_query (n, d), X_ref (m, d): the original rows, of one
    dtype, ranked by their exact float64 distances (distance.exact_distance) times key_scale (1, or
    a power of two below 1 where distances could pass float64's range). out_dist (n, k) float64
    gets the distances, out_idx (n, k) int64 indices, ascending, equal ones in index order.
    """
    tol = bound_tol + 2.0 * float(np.finfo(gram.dtype).eps)  # the terms' own rounding, 4 unit roundoffs
    _knn_from_gram[grid_1d(gram.shape[0])](gram, sq_norms_q, sq_norms_r, tol, bound_abs, X_query, X_ref,
                                            key_scale, out_dist, out_idx)


@kernel
def _majority_vote(neighbor_codes, out):
    row = cuda.grid(1)
    if row >= neighbor_codes.shape[0]:
        return
    k = neighbor_codes.shape[1]
    best, best_count = neighbor_codes[row, 0], 0
    for i in range(k):
        code = neighbor_codes[row, i]
        count = 0
        for j in range(k):
            count += neighbor_codes[row, j] == code
        if count > best_count or (count == best_count and code < best):
            best, best_count = code, count
    out[row] = best


def majority_vote(neighbor_codes, n_classes, out, n_threads):
    """Most frequent class code per row of neighbor_codes (n, k) int64 into out (n,); ties go to
    the smaller code. O(k^2) per row, no per-class counters (k is small)."""
    _majority_vote[grid_1d(neighbor_codes.shape[0])](neighbor_codes, out)


@kernel
def _class_sums(X, codes, out_sums, out_counts):
    f = cuda.grid(1)
    if f < out_sums.shape[1]:
        for c in range(out_sums.shape[0]):
            out_sums[c, f] = 0.0
        for i in range(X.shape[0]):  # rows in order: the CPU backends' sums
            out_sums[codes[i], f] += X[i, f]
    if f < out_counts.shape[0]:
        count = 0
        for i in range(codes.shape[0]):
            count += codes[i] == f
        out_counts[f] = count


def class_sums(X, codes, out_sums, out_counts, n_threads):
    """Per-class feature sums out_sums (c, d) float64, rows added in order, and counts out_counts
    (c,) int64, of X (n, d) with class codes (n,) int64. One thread per feature (and per class)."""
    _class_sums[grid_1d(max(X.shape[1], out_counts.shape[0]))](X, codes, out_sums, out_counts)
