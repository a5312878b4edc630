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


def reach_of(origin, low, high):
    """max |X - origin| over all entries, from X's column minima and maxima (inf where it overflows)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return float(max(np.max(high - origin), np.max(origin - low)))


def origin_and_reach(sums, n_rows, low, high):
    """The mean row sums / n_rows as origin and its reach over the column bounds low..high, in float64.

    Near float64's limit the mean (its sum) or the reach can overflow, and the shifted rows would
    then hold inf or NaN: there the origin is the midpoint of the bounds instead, whose reach, half
    the widest column's range, always fits float64.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        origin = sums / n_rows
    reach = reach_of(origin, low, high)
    if not (np.isfinite(origin).all() and np.isfinite(reach)):
        return midpoint_origin(low, high)
    return origin, reach


def midpoint_origin(low, high):
    """The midpoint of the column bounds low..high as origin, and its reach: finite for finite bounds."""
    origin = 0.5 * low + 0.5 * high
    return origin, reach_of(origin, low, high)


def shift_origin(B, kernels, n_threads, A=None):
    """An origin for B's rows and A's (optional) and max |row - origin| over both, in float64.

    Distances do not change when both sides are shifted by the same row; the reach sets the scale.
    The origin is B's mean row (see origin_and_reach for values near float64's limit). One pass
    over B, and one over A.
    """
    if B.size == 0:
        return np.zeros(B.shape[1]), 0.0
    sums, low, high = _column_stats(B, kernels, n_threads)
    if A is not None and A.size:
        _, low_a, high_a = _column_stats(A, kernels, n_threads)
        low, high = np.minimum(low, low_a), np.maximum(high, high_a)
    return origin_and_reach(sums, B.shape[0], low, high)


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


def block_rows(n_rows, n_cols, max_elements=1 << 25):
    """Row ranges whose (rows x n_cols) Gram block stays under max_elements entries."""
    step = max(1, min(n_rows, max_elements // max(n_cols, 1)))
    return [(start, min(n_rows, start + step)) for start in range(0, n_rows, step)]
