"""Shifting rows towards the origin so that |a|^2 + |b|^2 - 2 a.b keeps its precision."""

import math

import numpy as np

# Elements per chunk of temporaries: 512 KiB of float64, well inside a core's L2 cache.
_CHUNK_ELEMENTS = 1 << 16
# float32 shifts are done in float32 only while |X - origin| stays far from float32's overflow.
_FLOAT32_SAFE = 2.0**100


def shift_origin(B):
    """The float64 mean row of B: distances do not change when both sides are shifted by it."""
    return B.mean(axis=0, dtype=np.float64)


def shifted(X, origin, dtype, scale=1.0):
    """(X - origin) * scale as a C-contiguous array of `dtype`, and its float64 squared row norms.

    Worked out a few rows at a time so the temporaries stay small and in cache: in float32 when X
    is float32 and so is the result (a shift is as exact there as the data, and a power-of-two scale
    is exact), in float64 otherwise. The norms are those of the rows as stored in `dtype`.
    """
    n_rows, n_features = X.shape
    work = np.float32 if X.dtype == np.float32 and dtype == np.float32 else np.float64
    if work == np.float32 and max_abs_shifted(X, origin) > _FLOAT32_SAFE:
        work = np.float64  # X - origin could overflow float32 before it is scaled down
    origin = origin.astype(work)
    out = np.empty((n_rows, n_features), dtype=dtype)
    norms = np.empty(n_rows)
    step = max(1, _CHUNK_ELEMENTS // max(n_features, 1))
    for start in range(0, n_rows, step):
        stop = min(n_rows, start + step)
        chunk = np.subtract(X[start:stop], origin, dtype=work)
        if scale != 1.0:
            chunk *= work(scale)
        out[start:stop] = chunk
        stored = out[start:stop]
        np.einsum("ij,ij->i", stored, stored, dtype=np.float64, out=norms[start:stop])
    return out, norms


def power_of_two_scale(max_abs):
    """A power of two s with max_abs * s near 1: exact to apply and undo, within float64's range.

    Scaled data neither overflows (huge values) nor loses digits to the subnormal range (tiny ones).
    """
    if max_abs == 0.0:
        return 1.0
    _, exponent = math.frexp(max_abs)  # max_abs = m * 2**exponent with 0.5 <= m < 1
    return math.ldexp(1.0, -min(max(exponent, -1000), 1000))


def max_abs_shifted(X, origin):
    """max |X - origin| over all entries, in float64, from the column extremes (no temporaries)."""
    if X.size == 0:
        return 0.0
    above = np.subtract(X.max(axis=0), origin, dtype=np.float64)
    below = np.subtract(origin, X.min(axis=0), dtype=np.float64)
    return float(max(above.max(), below.max()))


def block_rows(n_rows, n_cols, max_elements=1 << 25):
    """Row ranges whose (rows x n_cols) Gram block stays under max_elements entries."""
    step = max(1, min(n_rows, max_elements // max(n_cols, 1)))
    return [(start, min(n_rows, start + step)) for start in range(0, n_rows, step)]
