"""Shifting rows towards the origin so that |a|^2 + |b|^2 - 2 a.b keeps its precision."""

import math

import numpy as np


def shift_origin(B):
    """The float64 mean row of B: distances do not change when both sides are shifted by it."""
    return B.mean(axis=0, dtype=np.float64)


def shifted(X, origin, dtype, scale=1.0):
    """(X - origin) * scale as a C-contiguous array of `dtype`.

    Computed in X's own precision when that is `dtype` (a shift near X's values is exact there,
    and rounding the origin itself only moves every row alike), in float64 otherwise.
    """
    work = dtype if X.dtype == dtype else np.float64
    out = np.subtract(X, origin.astype(work), dtype=work)
    if scale != 1.0:
        out *= work(scale)
    return np.ascontiguousarray(out, dtype=dtype)


def power_of_two_scale(max_abs):
    """A power of two s with max_abs * s near 1: exact to apply and undo, within float64's range.

    Scaled data neither overflows (huge values) nor loses digits to the subnormal range (tiny ones).
    """
    if max_abs == 0.0:
        return 1.0
    _, exponent = math.frexp(max_abs)  # max_abs = m * 2**exponent with 0.5 <= m < 1
    return math.ldexp(1.0, -min(max(exponent, -1000), 1000))


def max_abs_shifted(X, origin):
    """max |X - origin| over all entries, in float64."""
    if X.size == 0:
        return 0.0
    return float(np.max(np.abs(np.subtract(X, origin, dtype=np.float64))))


def sq_row_norms(X):
    """Squared row norms in float64."""
    X64 = X.astype(np.float64, copy=False)
    return np.einsum("ij,ij->i", X64, X64)


def block_rows(n_rows, n_cols, max_elements=1 << 25):
    """Row ranges whose (rows x n_cols) Gram block stays under max_elements entries."""
    step = max(1, min(n_rows, max_elements // max(n_cols, 1)))
    return [(start, min(n_rows, start + step)) for start in range(0, n_rows, step)]
