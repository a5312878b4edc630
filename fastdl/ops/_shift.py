"""Shifting rows towards the origin so that |a|^2 + |b|^2 - 2 a.b keeps its precision."""

import math

import numpy as np

from fastdl._parallel import run_row_ranges



# Below this many entries a column pass runs on one thread (waking a team costs more).
MIN_PARALLEL_ENTRIES = 1 << 20


def _column_stats(X, kernels, n_threads):
    """(sums, minima, maxima) of X's columns in float64, from one pass of the kernel over X."""
    n_features = X.shape[1]
    sums, low, high = np.empty(n_features), np.empty(n_features), np.empty(n_features)
    kernels.column_stats(X, sums, low, high, n_threads if X.size >= MIN_PARALLEL_ENTRIES else 1)
    return sums, low, high


def _reach(origin, low, high):
    """max |X - origin| over all entries, from X's column minima and maxima."""
    return float(max(np.max(high - origin), np.max(origin - low)))


def shift_origin(B, kernels, n_threads):
    """B's float64 mean row, and max |B - mean| over all entries, from one pass over B.

    Distances do not change when both sides are shifted by the mean; the reach sets the scale.
    """
    if B.size == 0:
        return np.zeros(B.shape[1]), 0.0
    sums, low, high = _column_stats(B, kernels, n_threads)
    origin = sums / B.shape[0]
    return origin, _reach(origin, low, high)


def shifted(X, origin, dtype, scale, kernels, n_threads):
    """(X - origin) * scale as a C-contiguous array of `dtype`, and its float64 squared row norms.

    X is C-contiguous float32/float64; `kernels` is a backend's distance module. Worked in float64
    in one pass (a power-of-two scale is exact); the norms are those of the rows as stored.
    """
    n_rows, n_features = X.shape
    out = np.empty((n_rows, n_features), dtype=dtype)
    norms = np.empty(n_rows)

    def shift(first, last):
        kernels.shift_rows(X[first:last], origin, float(scale), out[first:last], norms[first:last], 1)

    run_row_ranges(shift, n_rows, n_threads, 4 * n_features)
    return out, norms


def power_of_two_scale(max_abs):
    """A power of two s with max_abs * s near 1: exact to apply and undo, within float64's range.

    Scaled data neither overflows (huge values) nor loses digits to the subnormal range (tiny ones).
    """
    if max_abs == 0.0:
        return 1.0
    _, exponent = math.frexp(max_abs)  # max_abs = m * 2**exponent with 0.5 <= m < 1
    return math.ldexp(1.0, -min(max(exponent, -1000), 1000))


def max_abs_shifted(X, origin, kernels, n_threads):
    """max |X - origin| over all entries, in float64, from one pass over X."""
    if X.size == 0:
        return 0.0
    _, low, high = _column_stats(X, kernels, n_threads)
    return _reach(origin, low, high)


def block_rows(n_rows, n_cols, max_elements=1 << 25):
    """Row ranges whose (rows x n_cols) Gram block stays under max_elements entries."""
    step = max(1, min(n_rows, max_elements // max(n_cols, 1)))
    return [(start, min(n_rows, start + step)) for start in range(0, n_rows, step)]
