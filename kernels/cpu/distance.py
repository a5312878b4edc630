"""Distance kernels (Numba); mirrors kernels/cy/distance.pyx and kernels/npy/distance.py."""

import numpy as np
from numba import prange

from ._jit import compile_kernel, launch

LANES = 8  # float64 partial sums of a squared norm (one AVX-512 vector), as the Cython kernel
COLUMN_BLOCK = 64  # columns per task in column_stats


def _distances_from_gram(gram, A, B, sq_norms_a, sq_norms_b, refine_tol, unscale, squared):
    n, m = gram.shape
    n_features = A.shape[1]
    for i in prange(n):
        # Three simple passes over the row, the first and last free of branches so they vectorise.
        n_close = 0
        for j in range(m):
            norm_sum = sq_norms_a[i] + sq_norms_b[j]
            d2 = norm_sum - 2.0 * gram[i, j]
            n_close += d2 <= refine_tol * norm_sum
            gram[i, j] = d2
        if n_close > 0:
            for j in range(m):
                if gram[i, j] <= refine_tol * (sq_norms_a[i] + sq_norms_b[j]):
                    # Cancellation left too few correct digits: recompute this entry directly.
                    d2 = 0.0
                    for f in range(n_features):
                        diff = np.float64(A[i, f]) - np.float64(B[j, f])
                        d2 += diff * diff
                    gram[i, j] = d2
        if squared:
            for j in range(m):
                gram[i, j] = np.float64(gram[i, j]) * unscale * unscale
        else:
            for j in range(m):
                gram[i, j] = np.sqrt(np.float64(gram[i, j])) * unscale


_serial = compile_kernel(_distances_from_gram)
_parallel = compile_kernel(_distances_from_gram, parallel=True)


def distances_from_gram(gram, A, B, sq_norms_a, sq_norms_b, refine_tol, unscale, squared, n_threads):
    """Turn a Gram block A @ B.T into (squared) Euclidean distances, in place.

    gram: (n, m) float32/float64, overwritten; A (n, d), B (m, d): the rows the Gram was made of;
    sq_norms_a (n,), sq_norms_b (m,): float64 squared row norms; entries whose squared distance is
    below refine_tol * (|a|^2 + |b|^2) are recomputed directly from A and B. A and B were scaled
    by 1 / unscale (a power of two), so the distances are multiplied back by unscale.
    """
    launch(_serial, _parallel, n_threads, gram, A, B, sq_norms_a, sq_norms_b, refine_tol, unscale, squared)


def _shift_rows(X, origin, scale, out, out_norms):
    n, n_features = X.shape
    full = n_features - n_features % LANES
    for i in prange(n):
        # Feature f's square adds into lane f % LANES and the lanes are summed pairwise, an order
        # that vectorises.
        lane = np.zeros(LANES)
        for f in range(0, full, LANES):
            for t in range(LANES):
                out[i, f + t] = (np.float64(X[i, f + t]) - origin[f + t]) * scale
                stored = np.float64(out[i, f + t])
                lane[t] += stored * stored
        for f in range(full, n_features):
            out[i, f] = (np.float64(X[i, f]) - origin[f]) * scale
            stored = np.float64(out[i, f])
            lane[f - full] += stored * stored
        out_norms[i] = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]))


_shift_serial = compile_kernel(_shift_rows)
_shift_parallel = compile_kernel(_shift_rows, parallel=True)


def shift_rows(X, origin, scale, out, out_norms, n_threads):
    """out = (X - origin) * scale, worked in float64 and stored in out's dtype, in one pass.

    X (n, d) float32/float64, origin (d,) float64, out (n, d) float32/float64; out_norms (n,) gets
    the float64 squared norms of the rows as stored.
    """
    launch(_shift_serial, _shift_parallel, n_threads, X, origin, scale, out, out_norms)


def _column_stats(X, out_sums, out_min, out_max, block):
    n, n_features = X.shape
    # Threads own disjoint blocks of columns and add the rows in order, so the sums do not
    # depend on the thread count; each block's accumulators are local so that the loop over
    # its columns vectorises.
    for b in prange((n_features + block - 1) // block):
        first = b * block
        width = min(n_features, first + block) - first
        sums = np.empty(width)
        low = np.empty(width)
        high = np.empty(width)
        for f in range(width):
            sums[f] = low[f] = high[f] = X[0, first + f]
        for i in range(1, n):
            row = X[i, first:first + width]
            for f in range(width):
                value = np.float64(row[f])
                sums[f] += value
                low[f] = value if value < low[f] else low[f]
                high[f] = value if value > high[f] else high[f]
        out_sums[first:first + width] = sums
        out_min[first:first + width] = low
        out_max[first:first + width] = high


_stats_serial = compile_kernel(_column_stats)
_stats_parallel = compile_kernel(_column_stats, parallel=True)


def column_stats(X, out_sums, out_min, out_max, n_threads):
    """Float64 sums, minima and maxima of X's columns (X (n, d), n >= 1), in one pass over X."""
    launch(_stats_serial, _stats_parallel, n_threads, X, out_sums, out_min, out_max, COLUMN_BLOCK)
