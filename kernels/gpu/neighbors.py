"""Neighbour kernels (numba.cuda); mirrors kernels/cpu/neighbors.py and kernels/npy/neighbors.py.

The CPU backends' knn_from_gram / knn_from_bounds prune a float32 GEMM's candidates and rank the
rest exactly; on the device the distances are float64 blocks (fastdl/ops/_on_device.py), and
k_smallest takes each row's k smallest of a block, one thread per row.
"""

import math

from numba import cuda, float64

from ._launch import grid_1d, kernel


@kernel
def _k_smallest(d2, unscale, out_dist, out_idx):
    row = cuda.grid(1)
    if row >= d2.shape[0]:
        return
    k = out_idx.shape[1]
    # out_dist[row] holds the best squared distances so far, ascending; scanning the columns in
    # order and inserting only below the k-th keeps equal distances in index order.
    for j in range(k):
        out_dist[row, j] = math.inf
        out_idx[row, j] = -1
    filled = 0
    for col in range(d2.shape[1]):
        value = d2[row, col]
        if filled == k and not value < out_dist[row, k - 1]:
            continue
        slot = filled if filled < k else k - 1
        while slot > 0 and value < out_dist[row, slot - 1]:
            out_dist[row, slot] = out_dist[row, slot - 1]
            out_idx[row, slot] = out_idx[row, slot - 1]
            slot -= 1
        out_dist[row, slot] = value
        out_idx[row, slot] = col
        if filled < k:
            filled += 1
    for j in range(k):
        out_dist[row, j] = math.sqrt(float64(out_dist[row, j])) * unscale


def k_smallest(d2, unscale, out_dist, out_idx, n_threads):
    """Each row's k = out_idx.shape[1] smallest entries of d2 (n, m) float64 squared distances
    (k <= m): out_idx (n, k) int64 their columns, ascending, equal values in column order, and
    out_dist (n, k) sqrt(d2) * unscale, in out_dist's dtype. A selection, not a sort of the row; the
    running best are kept in out_dist, so a float32 out_dist ranks by rounded distances (the ops
    pass float64, the CPU backends' ranking)."""
    _k_smallest[grid_1d(d2.shape[0])](d2, unscale, out_dist, out_idx)


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
