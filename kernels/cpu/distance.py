"""Distance kernels (Numba); mirrors kernels/cy/distance.pyx and kernels/npy/distance.py."""

import numpy as np
from numba import prange

from ._jit import compile_kernel, helper, launch

LANES = 8  # float64 partial sums of a squared norm (one AVX-512 vector), as the Cython kernel
PAIR_BLOCK = 256  # pairs a row of A takes at a time in direct_distances, as the Cython kernel
MIN_BLOCK_PAIRS = 16  # ... where B has this many rows (passes of fewer cost more than they vectorise)
ROW_CHUNKS = 64  # direct_distances' rows of A go in up to this many tasks, each allocating its scratch once
COLUMN_BLOCK = 64  # fewest columns per thread in column_stats


# A sum of squared differences in [SAFE_MIN, float64 max] is accurate as it stands: squares that
# fell below float64's normal range cost it at most n_features * 2**-1075, under 2**-175 of it.
# Outside that range the differences are scaled by SCALE_DOWN (largest one above 1) or SCALE_UP.
SAFE_MIN = 2.0**-900
SCALE_DOWN, SCALE_UP = 2.0**-600, 2.0**600
FLOAT64_MAX = np.finfo(np.float64).max

_inlined = helper(inline="always")


@_inlined
def _lane_sum(a, b, scale, lane):
    """|(a - b) * scale|^2 in float64 (see _scaled_difference), scale a power of two.

    Feature f adds into lane f % LANES and the lanes are summed pairwise, a fixed order that
    vectorises. The lanes are eight locals (kept in registers; an array's would go to memory at
    every add) and `lane`, LANES float64 of scratch, takes the features past the last full eight.
    """
    n_features = a.shape[0]
    full = n_features - n_features % LANES
    l0 = l1 = l2 = l3 = l4 = l5 = l6 = l7 = 0.0
    large = scale < 1.0
    for f in range(0, full, LANES):
        d0 = _scaled_difference(a[f], b[f], scale, large)
        d1 = _scaled_difference(a[f + 1], b[f + 1], scale, large)
        d2 = _scaled_difference(a[f + 2], b[f + 2], scale, large)
        d3 = _scaled_difference(a[f + 3], b[f + 3], scale, large)
        d4 = _scaled_difference(a[f + 4], b[f + 4], scale, large)
        d5 = _scaled_difference(a[f + 5], b[f + 5], scale, large)
        d6 = _scaled_difference(a[f + 6], b[f + 6], scale, large)
        d7 = _scaled_difference(a[f + 7], b[f + 7], scale, large)
        l0 += d0 * d0
        l1 += d1 * d1
        l2 += d2 * d2
        l3 += d3 * d3
        l4 += d4 * d4
        l5 += d5 * d5
        l6 += d6 * d6
        l7 += d7 * d7
    lane[0], lane[1], lane[2], lane[3], lane[4], lane[5], lane[6], lane[7] = l0, l1, l2, l3, l4, l5, l6, l7
    for f in range(full, n_features):
        diff = _scaled_difference(a[f], b[f], scale, large)
        lane[f - full] += diff * diff
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]))


@helper()  # a call LLVM inlines; Numba's inlining of its 9 calls per _lane_sum cost compile time
def _scaled_difference(x, y, scale, large):
    """(x - y) * scale in float64: scaled first when `large` (scale < 1: a difference beyond
    float64's range comes back into it), else subtracted first (exact for tiny values)."""
    if large:
        return np.float64(x) * scale - np.float64(y) * scale
    return (np.float64(x) - np.float64(y)) * scale


@helper()
def _rescaled_lane_sum(a, b, scale, lane):
    """_lane_sum as a call of its own, for exact_distance's path beyond float64's range: a second
    copy inlined by Numba into every caller of exact_distance cost compile time, not speed (with
    _scaled_difference's calls: a kNN kernel's signature 10.4 -> 6.2 s, digits kNN within noise)."""
    return _lane_sum(a, b, scale, lane)


@_inlined
def exact_distance(a, b, lane):
    """(total, unscale) with |a - b| = sqrt(total) * unscale, for rows a, b (float32/float64).

    Differences in float64 from the rows as given (exact for float32 rows, whose squares never
    leave float64's range); where squares could overflow or underflow (float64 rows), the
    differences are scaled by a power of two first (exact), as LAPACK's dnrm2 does, so that even
    a distance beyond float64's range has a finite total. lane: LANES float64 of scratch.
    """
    total = _lane_sum(a, b, 1.0, lane)
    if SAFE_MIN <= total <= FLOAT64_MAX:
        return total, 1.0
    largest = 0.0
    for f in range(a.shape[0]):
        diff = abs(np.float64(a[f]) - np.float64(b[f]))  # inf where it overflows
        largest = diff if diff > largest else largest
    scale = SCALE_DOWN if largest > 1.0 else SCALE_UP
    return _rescaled_lane_sum(a, b, scale, lane), 1.0 / scale


@_inlined
def _exact_entry(a, b, squared, lane):
    """|a - b| (squared: its square) in float64, from exact_distance: a refined or direct entry."""
    total, unscale = exact_distance(a, b, lane)
    return total * unscale * unscale if squared else np.sqrt(total) * unscale


def _distances_from_gram(gram, A, B, sq_norms_a, sq_norms_b, refine_tol, unscale, squared):
    n, m = gram.shape
    for i in prange(n):
        # Simple passes over the row; those over every row are free of branches, so that they
        # vectorise. Entries where cancellation left too few correct digits are marked NaN (no
        # distance is: the rows are finite) and computed from the original rows at the end.
        n_close = 0
        for j in range(m):
            norm_sum = sq_norms_a[i] + sq_norms_b[j]
            gram[i, j] = norm_sum - 2.0 * gram[i, j]
            n_close += np.float64(gram[i, j]) <= refine_tol * norm_sum  # tested as stored, in every backend
        if n_close > 0:
            for j in range(m):
                if gram[i, j] <= refine_tol * (sq_norms_a[i] + sq_norms_b[j]):
                    gram[i, j] = np.nan
        if squared:
            for j in range(m):
                gram[i, j] = np.float64(gram[i, j]) * unscale * unscale
        else:
            for j in range(m):
                gram[i, j] = np.sqrt(np.float64(gram[i, j])) * unscale
        if n_close > 0:
            lane = np.empty(LANES)
            for j in range(m):
                if np.isnan(gram[i, j]):
                    gram[i, j] = _exact_entry(A[i], B[j], squared, lane)


# Never fastmath (FASTDL_FASTMATH): its no-NaN assumption would drop the isnan test that finds the
# marked entries, and the exact distances promise the Cython kernel's bits.
_serial = compile_kernel(_distances_from_gram, exact=True)
_parallel = compile_kernel(_distances_from_gram, parallel=True, exact=True)


def distances_from_gram(gram, A, B, sq_norms_a, sq_norms_b, refine_tol, unscale, squared, n_threads):
    """Turn a Gram block of shifted, scaled rows into (squared) Euclidean distances, in place.

    gram: (n, m) float32/float64, overwritten; sq_norms_a (n,), sq_norms_b (m,): float64 squared
    norms of the rows it was made of, which were scaled by 1 / unscale (a power of two). Entries
    whose squared distance is below refine_tol * (|a|^2 + |b|^2) lost digits to cancellation:
    they are computed from A (n, d) and B (m, d), the original rows (see exact_distance).
    """
    launch(_serial, _parallel, n_threads, gram, A, B, sq_norms_a, sq_norms_b, refine_tol, unscale, squared)


def _direct_pairs(A, B, out, squared):
    for i in prange(A.shape[0]):
        lane = np.empty(LANES)
        for j in range(B.shape[0]):
            out[i, j] = _exact_entry(A[i], B[j], squared, lane)


def _direct_blocks(A, B, out, squared):
    n, m = out.shape
    n_features = A.shape[1]
    # B's columns as rows of float64 (exact), so that a pass over one feature reads a block of B's
    # rows contiguously and vectorises over the pairs of a row of A. Copied 8 rows at a time (a
    # line of each column written whole: 0.3 instead of 0.55 ns a value).
    columns = np.empty((n_features, m))
    full = m - m % LANES
    for j0 in range(0, full, LANES):
        rows = B[j0 : j0 + LANES]
        for f in range(n_features):
            column = columns[f, j0 : j0 + LANES]
            for k in range(LANES):
                column[k] = np.float64(rows[k, f])
    for j in range(full, m):
        for f in range(n_features):
            columns[f, j] = np.float64(B[j, f])
    chunks = max(1, min(n, ROW_CHUNKS))
    chunk = -(-n // chunks)
    for first in prange(chunks):
        lane = np.empty(LANES)
        lanes = np.empty((LANES, PAIR_BLOCK))  # lanes[t, k]: pair k's lane t, as in _lane_sum
        totals = np.empty(PAIR_BLOCK)
        for i in range(first * chunk, min(n, first * chunk + chunk)):
            for start in range(0, m, PAIR_BLOCK):
                width = min(PAIR_BLOCK, m - start)
                lanes[:, :width] = 0.0
                for f in range(n_features):
                    a, column, lane_f = np.float64(A[i, f]), columns[f, start : start + width], lanes[f % LANES]
                    for k in range(width):
                        diff = a - column[k]
                        lane_f[k] += diff * diff
                # The lanes summed pairwise and the totals checked as in exact_distance: the same bits.
                n_outside = 0
                for k in range(width):
                    totals[k] = (((lanes[0, k] + lanes[1, k]) + (lanes[2, k] + lanes[3, k]))
                                 + ((lanes[4, k] + lanes[5, k]) + (lanes[6, k] + lanes[7, k])))
                    n_outside += not SAFE_MIN <= totals[k] <= FLOAT64_MAX
                row = out[i, start : start + width]
                if squared:
                    for k in range(width):
                        row[k] = totals[k]
                else:
                    for k in range(width):
                        row[k] = np.sqrt(totals[k])
                if n_outside > 0:  # pairs whose squares over- or underflowed: scaled first
                    for k in range(width):
                        if not SAFE_MIN <= totals[k] <= FLOAT64_MAX:
                            row[k] = _exact_entry(A[i], B[start + k], squared, lane)


# Never fastmath: the same bits as the Cython kernel and as distances_from_gram's refined entries.
_pairs_serial = compile_kernel(_direct_pairs, exact=True)
_pairs_parallel = compile_kernel(_direct_pairs, parallel=True, exact=True)
_blocks_serial = compile_kernel(_direct_blocks, exact=True)
_blocks_parallel = compile_kernel(_direct_blocks, parallel=True, exact=True)


def direct_distances(A, B, out, squared, n_threads):
    """out[i, j] = |A[i] - B[j]| (squared: its square), every entry from the rows as given.

    A (n, d) and B (m, d) float32/float64, out (n, m) of their dtype. Each entry is
    exact_distance's, as distances_from_gram's refined entries: for inputs too small for the
    GEMM formula's fixed costs to pay. A row of A runs against blocks of B's rows, vectorised
    over the pairs, where B has MIN_BLOCK_PAIRS rows or more; with fewer, one pair at a time
    (whose 8 lanes are scalar work here). Both give the same bits.
    """
    if B.shape[0] >= MIN_BLOCK_PAIRS:
        launch(_blocks_serial, _blocks_parallel, n_threads, A, B, out, squared)
    else:
        launch(_pairs_serial, _pairs_parallel, n_threads, A, B, out, squared)


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


_shift_serial = compile_kernel(_shift_rows, exact=True)
_shift_parallel = compile_kernel(_shift_rows, parallel=True, exact=True)


def shift_rows(X, origin, scale, out, out_norms, n_threads):
    """out = (X - origin) * scale, worked in float64 and stored in out's dtype, in one pass.

    X (n, d) float32/float64, origin (d,) float64, out (n, d) float32/float64; out_norms (n,) gets
    the float64 squared norms of the rows as stored.
    """
    launch(_shift_serial, _shift_parallel, n_threads, X, origin, scale, out, out_norms)


def _column_stats(X, out_sums, out_min, out_max, n_parts):
    n, n_features = X.shape
    # Threads own disjoint ranges of columns and add the rows in order, so the sums do not depend
    # on the thread count. Rows outer: X is read once, in memory order (a pass per block of
    # columns read it once per block, with a row's stride between reads).
    for part in prange(n_parts):
        first, stop = part * n_features // n_parts, (part + 1) * n_features // n_parts
        # Fresh accumulators, which the compiler knows alias neither X nor each other (the output
        # arrays might), so that the loop over the columns vectorises.
        sums, low, high = np.empty(stop - first), np.empty(stop - first), np.empty(stop - first)
        for f in range(stop - first):
            sums[f] = low[f] = high[f] = X[0, first + f]
        for i in range(1, n):
            row = X[i, first:stop]
            for f in range(stop - first):
                value = np.float64(row[f])
                sums[f] += value
                low[f] = value if value < low[f] else low[f]
                high[f] = value if value > high[f] else high[f]
        out_sums[first:stop], out_min[first:stop], out_max[first:stop] = sums, low, high


_stats_serial = compile_kernel(_column_stats, exact=True)
_stats_parallel = compile_kernel(_column_stats, parallel=True, exact=True)


def column_stats(X, out_sums, out_min, out_max, n_threads):
    """Float64 sums, minima and maxima of X's columns (X (n, d), n >= 1), in one pass over X."""
    n_parts = max(1, min(n_threads, X.shape[1] // COLUMN_BLOCK))
    launch(_stats_serial, _stats_parallel, n_parts, X, out_sums, out_min, out_max, n_parts)
