"""Device array helpers for the cuda backend's layers: row gathers, elementwise sums and scales,
a transpose, and Concatenate's column copies.

The CPU backends do these with NumPy (x[idx], a + b, a * s, a.transpose(1, 0, 2)); device arrays
have no arithmetic of their own, so these small kernels stand in. One thread per entry; 1-D arrays
of one dtype, except take_rows' (rows, columns) source and output and swap_axes' 3-D ones.
"""

from numba import cuda

from ._launch import grid_1d, kernel


@kernel
def _take_rows(source, rows, out):
    index = cuda.grid(1)
    if index >= out.size:
        return
    m = out.shape[1]
    i, j = index // m, index % m
    out[i, j] = source[rows[i], j]


def take_rows(source, rows, out):
    """out (k, m) = source[rows] for source (n, m) and rows (k,) int64 in range."""
    if out.size:
        _take_rows[grid_1d(out.size)](source, rows, out)


@kernel
def _add(a, b, out):
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] = a[i] + b[i]


def add(a, b, out):
    """out = a + b (out may be a or b)."""
    if out.shape[0]:
        _add[grid_1d(out.shape[0])](a, b, out)


@kernel
def _scale(a, factor, out):
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] = a[i] * factor


def scale(a, factor, out):
    """out = a * factor, factor a scalar of a's dtype (out may be a)."""
    if out.shape[0]:
        _scale[grid_1d(out.shape[0])](a, factor, out)


@kernel
def _add_scaled(a, factor, out):
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] += a[i] * factor


def add_scaled(a, factor, out):
    """out += a * factor (an L2 penalty's gradient 2 l2 w added to the kernel's gradient)."""
    if out.shape[0]:
        _add_scaled[grid_1d(out.shape[0])](a, factor, out)


@cuda.jit(device=True)
def _signed(value, factor):
    """factor * sign(value), sign(0) = 0 as abs' gradient at 0 in TF, JAX and torch; NaN stays NaN (np.sign)."""
    if value > 0:
        return factor
    if value < 0:
        return -factor
    return value * factor  # a zero, or NaN


@kernel
def _scale_sign(a, factor, out):
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] = _signed(a[i], factor)


def scale_sign(a, factor, out):
    """out = factor * sign(a), sign(0) = 0 (the signs whose product with a is |a|: an L1 penalty's sum)."""
    if out.shape[0]:
        _scale_sign[grid_1d(out.shape[0])](a, factor, out)


@kernel
def _add_scaled_sign(a, factor, out):
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] += _signed(a[i], factor)


def add_scaled_sign(a, factor, out):
    """out += factor * sign(a), sign(0) = 0 (an L1 penalty's gradient l1 sign(w) added to the kernel's)."""
    if out.shape[0]:
        _add_scaled_sign[grid_1d(out.shape[0])](a, factor, out)


@kernel
def _swap_axes(source, out):
    index = cuda.grid(1)
    if index >= out.size:
        return
    b, a, m = out.shape
    j, i, k = index // (a * m), (index // m) % a, index % m
    out[j, i, k] = source[i, j, k]


def swap_axes(source, out):
    """out (b, a, m) = source (a, b, m) with its first two axes swapped."""
    if out.size:
        _swap_axes[grid_1d(out.size)](source, out)


# -- Concatenate's column copies ------------------------------------------------------------------
# An input of a concatenation along an axis, seen as rows (the axes before it) of columns (that
# axis and the ones after it), is a block of columns of the output seen the same way.


@kernel
def _place_columns(source, out, start):
    index = cuda.grid(1)
    rows, width = source.shape
    if index >= rows * width:
        return
    i = index // width
    j = index - i * width
    out[i, start + j] = source[i, j]


def place_columns(source, out, start):
    """out[:, start:start + m] = source (k, m), for out (k, >= start + m); one thread per element."""
    if source.size:
        _place_columns[grid_1d(source.size)](source, out, start)


@kernel
def _take_columns(source, start, out):
    index = cuda.grid(1)
    rows, width = out.shape
    if index >= rows * width:
        return
    i = index // width
    j = index - i * width
    out[i, j] = source[i, start + j]


def take_columns(source, start, out):
    """out (k, m) = source[:, start:start + m]; one thread per element."""
    if out.size:
        _take_columns[grid_1d(out.size)](source, start, out)
