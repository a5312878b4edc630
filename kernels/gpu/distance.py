"""Distance kernels (numba.cuda); mirrors kernels/cpu/distance.py and kernels/npy/distance.py.

The Gram block itself is a GEMM (kernels/gpu/_gemm.py); these kernels do the passes around it,
one thread per column, row or entry. Sums run in float64 in the same order as the CPU kernels
where a thread owns one sum (column_stats), so the shift's origin has the same bits.
"""

import math

import numpy as np
from numba import cuda, float64

from ._gemm import gemm  # noqa: F401 - the distance op's GEMM, through this family's module
from ._launch import grid_1d, kernel


@kernel
def _column_stats(X, out_sums, out_min, out_max):
    f = cuda.grid(1)
    if f >= X.shape[1]:
        return
    # float64(v), not v * 1.0: on the simulator NumPy 2 keeps np.float32 * 1.0 a float32.
    total = low = high = float64(X[0, f])
    for i in range(1, X.shape[0]):
        value = float64(X[i, f])
        total += value
        low = value if value < low else low  # not min/max: the CUDA target lacks them for floats
        high = value if value > high else high
    out_sums[f] = total
    out_min[f] = low
    out_max[f] = high


def column_stats(X, out_sums, out_min, out_max, n_threads):
    """Float64 sums, minima and maxima of X's columns (X (n, d), n >= 1), rows added in order."""
    _column_stats[grid_1d(X.shape[1])](X, out_sums, out_min, out_max)


@kernel
def _shift_rows(X, origin, scale, out, out_norms):
    i = cuda.grid(1)
    if i >= X.shape[0]:
        return
    total = 0.0
    for f in range(X.shape[1]):
        out[i, f] = (float64(X[i, f]) - origin[f]) * scale
        stored = float64(out[i, f])
        total += stored * stored
    out_norms[i] = total


def shift_rows(X, origin, scale, out, out_norms, n_threads):
    """out = (X - origin) * scale, worked in float64 and stored in out's dtype; out_norms (n,) gets
    the float64 squared norms of the rows as stored. X (n, d), origin (d,) float64, out (n, d)."""
    _shift_rows[grid_1d(X.shape[0])](X, origin, scale, out, out_norms)


# As kernels/cpu/distance.py: a sum of squared differences in [SAFE_MIN, float64 max] is accurate
# as it stands; outside it the differences are scaled by SCALE_DOWN (largest above 1) or SCALE_UP.
LANES = 8
SAFE_MIN = 2.0**-900
SCALE_DOWN, SCALE_UP = 2.0**-600, 2.0**600
FLOAT64_MAX = float(np.finfo(np.float64).max)


@cuda.jit(device=True)
def _lane_sum(A, i, B, j, scale):
    """|(A[i] - B[j]) * scale|^2 in float64, as the CPU kernels: feature f adds into lane f % LANES
    and the lanes are summed pairwise; scaled before the subtraction when scale < 1 (a difference
    beyond float64's range comes back into it), after it otherwise (exact for tiny values)."""
    lane = cuda.local.array(LANES, float64)
    for t in range(LANES):
        lane[t] = 0.0
    for f in range(A.shape[1]):
        if scale < 1.0:
            diff = float64(A[i, f]) * scale - float64(B[j, f]) * scale
        else:
            diff = (float64(A[i, f]) - float64(B[j, f])) * scale
        lane[f % LANES] += diff * diff
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]))


@cuda.jit(device=True)
def exact_distance(A, i, B, j):
    """(total, unscale) with |A[i] - B[j]| = sqrt(total) * unscale, as the CPU kernels'
    exact_distance: differences in float64 from the rows as given, scaled by a power of two first
    where their squares could over- or underflow."""
    total = _lane_sum(A, i, B, j, 1.0)
    if SAFE_MIN <= total <= FLOAT64_MAX:
        return total, 1.0
    largest = 0.0
    for f in range(A.shape[1]):
        diff = abs(float64(A[i, f]) - float64(B[j, f]))  # inf where it overflows
        largest = diff if diff > largest else largest
    scale = SCALE_DOWN if largest > 1.0 else SCALE_UP
    return _lane_sum(A, i, B, j, scale), 1.0 / scale


@kernel
def _distances_from_gram(gram, A, B, sq_norms_a, sq_norms_b, refine_tol, unscale, squared):
    # One thread per entry, in row-major order: the grid is 1-D (a 2-D grid's y takes at most
    # 65535 blocks), and a warp reads and writes one row's neighbouring entries.
    k = cuda.grid(1)
    n_cols = gram.shape[1]
    if k >= gram.shape[0] * n_cols:
        return
    i = k // n_cols
    j = k - i * n_cols
    norm_sum = sq_norms_a[i] + sq_norms_b[j]
    gram[i, j] = norm_sum - 2.0 * gram[i, j]
    d2 = float64(gram[i, j])  # the value as stored, as the CPU kernels test it
    if d2 <= refine_tol * norm_sum:
        # Cancellation left too few correct digits: this entry from the original rows (and its
        # own power-of-two scale).
        d2, unscale = exact_distance(A, i, B, j)
    gram[i, j] = d2 * unscale * unscale if squared else math.sqrt(d2) * unscale


def distances_from_gram(gram, A, B, sq_norms_a, sq_norms_b, refine_tol, unscale, squared, n_threads):
    """Turn a Gram block of shifted, scaled rows into (squared) Euclidean distances, in place (as
    the CPU kernel): the rows were scaled by 1 / unscale; entries below refine_tol * (|a|^2 + |b|^2)
    are computed from A and B, the original rows (of gram's dtype). One thread per entry."""
    _distances_from_gram[grid_1d(gram.shape[0] * gram.shape[1])](gram, A, B, sq_norms_a, sq_norms_b, refine_tol,
                                                                    unscale, squared)
