"""Distance kernels (numba.cuda); mirrors kernels/cpu/distance.py and kernels/npy/distance.py.

The Gram block itself is a GEMM (kernels/gpu/_gemm.py); these kernels do the passes around it,
one thread per column, row or entry. Sums run in float64 in the same order as the CPU kernels
where a thread owns one sum (column_stats), so the shift's origin has the same bits.
"""

import math

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
    d2 = norm_sum - 2.0 * gram[i, j]
    if d2 <= refine_tol * norm_sum:
        # Cancellation left too few correct digits: recompute this entry directly.
        d2 = 0.0
        for f in range(A.shape[1]):
            diff = float64(A[i, f]) - float64(B[j, f])
            d2 += diff * diff
    gram[i, j] = d2 * unscale * unscale if squared else math.sqrt(d2) * unscale


def distances_from_gram(gram, A, B, sq_norms_a, sq_norms_b, refine_tol, unscale, squared, n_threads):
    """Turn a Gram block A @ B.T into (squared) Euclidean distances, in place (as the CPU kernel):
    entries below refine_tol * (|a|^2 + |b|^2) are recomputed from A and B, and the distances
    multiplied back by unscale. One thread per entry."""
    _distances_from_gram[grid_1d(gram.shape[0] * gram.shape[1])](gram, A, B, sq_norms_a, sq_norms_b, refine_tol,
                                                                    unscale, squared)
