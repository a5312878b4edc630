"""Two-dimensional max and average pooling over channels-last images (N, H, W, C), as Keras'
MaxPool2D and AveragePooling2D."""

import numpy as np

from fastdl import _device
from fastdl import backend as _backend
from fastdl._parallel import threads_worth_it
from fastdl._validation import as_compute_all, check_array, check_pair
from fastdl.ops import _nn_on_device
from fastdl.ops._nn_on_device import Out, host_call
from fastdl.ops.conv import same_padding

IMAGES = "(batch, height, width, channels)"


def pool_geometry(input_shape, pool_size, strides, padding):
    """Window and output sizes of a pooling layer, checked.

    Returns
    -------
    tuple
        (pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, out_h, out_w); with "same" the
        output is ceil(size / stride) and any odd padding goes to the bottom and right, as in
        TensorFlow.
    """
    pool_h, pool_w = check_pair(pool_size, "pool_size")
    stride_h, stride_w = (pool_h, pool_w) if strides is None else check_pair(strides, "strides")
    if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
    h, w = input_shape[1], input_shape[2]
    if padding.lower() == "valid":
        if pool_h > h or pool_w > w:
            raise ValueError(
                f"pool_size ({pool_h}, {pool_w}) is larger than the input's ({h}, {w}) image "
                f"(input shape {tuple(input_shape)}) with padding 'valid'"
            )
        out_h, out_w = (h - pool_h) // stride_h + 1, (w - pool_w) // stride_w + 1
        return pool_h, pool_w, stride_h, stride_w, 0, 0, out_h, out_w
    out_h, out_w = -(-h // stride_h), -(-w // stride_w)
    pad_top, pad_left = same_padding(h, pool_h, stride_h)[0], same_padding(w, pool_w, stride_w)[0]
    return pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, out_h, out_w


def max_pool2d(x, pool_size=2, strides=None, padding="valid", backend=None):
    """Maximum over each pooling window of channels-last images.

    Parameters
    ----------
    x : array-like of shape (n_images, height, width, channels)
    pool_size : int or (int, int), default 2
    strides : int or (int, int), optional
        Defaults to pool_size, as in Keras.
    padding : {"valid", "same"}, default "valid"
        "same" gives ceil(size / stride) outputs per axis, padding at the bottom and right when odd,
        as TensorFlow; padded cells never win.
    backend : str, optional
        "auto", "numpy", "numba", "cython", "cuda" (None: the process default).

    Returns
    -------
    ndarray of shape (n_images, out_height, out_width, channels)
        float32 when x is float32, float64 otherwise.
    """
    return _pooled(max_pool2d_into, x, pool_size, strides, padding, backend)


def max_pool2d_into(x, out, window, backend=None):
    """max_pool2d into `out` for checked arrays; returns out.

    For callers that have checked their arrays (fastdl.nn's layers): x and out C-contiguous, of one
    float dtype and the shapes pool_geometry gives; window its first six values.
    """
    return _pool_into("max_pool2d", x, out, window, backend)


def _pooled(into, x, pool_size, strides, padding, backend):
    """max_pool2d's or avg_pool2d's result (into: max_pool2d_into or avg_pool2d_into), once x and
    the window are checked."""
    x = check_array(x, "x", 4, IMAGES)
    *window, out_h, out_w = pool_geometry(x.shape, pool_size, strides, padding)
    on_cuda = _backend.resolve("pool", backend) == "cuda"  # an unknown or unavailable backend fails here
    dtype, x = as_compute_all(x)
    out = np.empty((x.shape[0], out_h, out_w, x.shape[3]), dtype=dtype)
    if on_cuda:
        return host_call(into, x, Out(out), window)
    return into(x, out, window, backend)


def _pool_into(op, x, out, window, backend):
    """The forward pass of op ("max_pool2d" or "avg_pool2d") into out: its device twin, or its
    kernel ("<op>_forward") on the backend."""
    if _device.is_device(out):
        return getattr(_nn_on_device, f"{op}_into")(x, out, window)
    kernels, _ = _backend.kernels("pool", backend)
    out_h, out_w = out.shape[1:3]
    # The kernels run one output row per task.
    n_threads = threads_worth_it(x.shape[0] * out_h, out_w * x.shape[3] * window[0] * window[1])
    getattr(kernels, f"{op}_forward")(x, out, *window, n_threads)
    return out


def max_pool2d_grad(x, dout, pool_size=2, strides=None, padding="valid", backend=None):
    """Gradient of max_pool2d with respect to x.

    Parameters
    ----------
    x : array-like of shape (n_images, height, width, channels)
        The forward pass's input.
    dout : array-like of shape (n_images, out_height, out_width, channels)
        Gradient of the loss with respect to max_pool2d's output.
    pool_size, strides, padding, backend
        As in max_pool2d.

    Returns
    -------
    ndarray of shape (n_images, height, width, channels)
        float32 when x and dout are float32, float64 otherwise.

    Notes
    -----
    Each window's gradient goes to one element only: its maximum, and on ties the first maximum
    in row-major window order (top row first, left to right). Overlapping windows add up.
    """
    return _pooled_grad("max_pool2d", x, dout, pool_size, strides, padding, backend)


def max_pool2d_grad_into(x, dout, dx, window, backend=None):
    """max_pool2d_grad into dx for checked arrays (as max_pool2d_into); returns dx."""
    if _device.is_device(dx):
        return _nn_on_device.max_pool2d_grad_into(x, dout, dx, window)
    kernels, _ = _backend.kernels("pool", backend)
    # The kernels run one image per task.
    n_threads = threads_worth_it(x.shape[0], dout[0].size * window[0] * window[1] + x[0].size)
    kernels.max_pool2d_backward(x, dout, dx, *window, n_threads)
    return dx


# A window's winner is stored as its cell's number in a uint8: windows of at most this many cells.
MAX_WINNER_CELLS = 256


def records_winners(window, backend=None):
    """Whether max_pool2d_winners_into can run for `window` (pool_geometry's first six values) on
    `backend`: a CPU backend (the cuda kernels recompute the winners) and at most MAX_WINNER_CELLS
    cells a window."""
    return window[0] * window[1] <= MAX_WINNER_CELLS and _backend.resolve("pool", backend) != "cuda"


def max_pool2d_winners_into(x, out, winners, window, backend=None):
    """max_pool2d_into (the same out) that also records each output's winner for
    max_pool2d_grad_winners_into; returns out.

    For checked host arrays where records_winners(window, backend) holds: winners is a
    C-contiguous uint8 array of out's shape. A winner is the cell of its window that
    max_pool2d_grad gives the gradient to (the first maximum in row-major order, the first NaN
    where the window holds one), numbered row-major from the unclipped window's top-left corner.
    """
    kernels, _ = _backend.kernels("pool", backend)
    # One output row per task, as max_pool2d_into.
    n_threads = threads_worth_it(x.shape[0] * out.shape[1], out.shape[2] * x.shape[3] * window[0] * window[1])
    kernels.max_pool2d_forward_winners(x, out, winners, *window, n_threads)
    return out


def max_pool2d_grad_winners_into(winners, dout, dx, window, backend=None):
    """max_pool2d_grad_into from the winners max_pool2d_winners_into recorded, without x: the same
    dx, bit for bit, at a fraction of the cost (no window is scanned again); returns dx."""
    kernels, _ = _backend.kernels("pool", backend)
    # One row of dx per task, each cell gathering from the windows that hold it.
    per_cell = -(-window[0] // window[2]) * -(-window[1] // window[3])
    n_threads = threads_worth_it(dx.shape[0] * dx.shape[1], dx.shape[2] * dx.shape[3] * per_cell)
    kernels.max_pool2d_backward_winners(winners, dout, dx, *window, n_threads)
    return dx


def _pooled_grad(op, x, dout, pool_size, strides, padding, backend):
    """max_pool2d_grad's or avg_pool2d_grad's result (op "max_pool2d" or "avg_pool2d"), once x and
    dout are checked: dout must have the op's output shape. avg_pool2d_grad_into needs only dout."""
    x = check_array(x, "x", 4, IMAGES)
    dout = check_array(dout, "dout", 4, IMAGES)
    *window, out_h, out_w = pool_geometry(x.shape, pool_size, strides, padding)
    expected = (x.shape[0], out_h, out_w, x.shape[3])
    if dout.shape != expected:
        raise ValueError(f"dout must have {op}'s output shape {expected} for x of shape {x.shape}, got {dout.shape}")
    on_cuda = _backend.resolve("pool", backend) == "cuda"  # an unknown or unavailable backend fails here
    dtype, x, dout = as_compute_all(x, dout)
    dx = np.empty(x.shape, dtype=dtype)
    into, inputs = (max_pool2d_grad_into, (x, dout)) if op == "max_pool2d" else (avg_pool2d_grad_into, (dout,))
    if on_cuda:
        return host_call(into, *inputs, Out(dx), window)
    return into(*inputs, dx, window, backend)


def avg_pool2d(x, pool_size=2, strides=None, padding="valid", backend=None):
    """Mean over each pooling window of channels-last images.

    Parameters
    ----------
    x : array-like of shape (n_images, height, width, channels)
    pool_size : int or (int, int), default 2
    strides : int or (int, int), optional
        Defaults to pool_size, as in Keras.
    padding : {"valid", "same"}, default "valid"
        "same" gives ceil(size / stride) outputs per axis, padding at the bottom and right when odd,
        as TensorFlow; a window's mean is over its image cells only (padded cells neither add nor
        count), as TensorFlow's avg_pool (PyTorch's count_include_pad=False).
    backend : str, optional
        "auto", "numpy", "numba", "cython", "cuda" (None: the process default).

    Returns
    -------
    ndarray of shape (n_images, out_height, out_width, channels)
        float32 when x is float32, float64 otherwise. Each window is summed from zero in row-major
        order in float64 (whatever x's dtype), divided by its count and rounded once to the
        result's dtype: the same bits on every backend, and a global pool over 512x512 float32
        images within about one float32 rounding (6e-8 relative) of the exact mean.
    """
    return _pooled(avg_pool2d_into, x, pool_size, strides, padding, backend)


def avg_pool2d_into(x, out, window, backend=None):
    """avg_pool2d into `out` for checked arrays (as max_pool2d_into); returns out."""
    return _pool_into("avg_pool2d", x, out, window, backend)


def avg_pool2d_grad(x, dout, pool_size=2, strides=None, padding="valid", backend=None):
    """Gradient of avg_pool2d with respect to x.

    Parameters
    ----------
    x : array-like of shape (n_images, height, width, channels)
        The forward pass's input (only its shape matters: the mean is linear).
    dout : array-like of shape (n_images, out_height, out_width, channels)
        Gradient of the loss with respect to avg_pool2d's output.
    pool_size, strides, padding, backend
        As in avg_pool2d.

    Returns
    -------
    ndarray of shape (n_images, height, width, channels)
        float32 when x and dout are float32, float64 otherwise.

    Notes
    -----
    Each window's gradient, divided by the window's count of image cells, goes to each of those
    cells; overlapping windows add up (in row-major window order, the same bits on every backend).
    """
    return _pooled_grad("avg_pool2d", x, dout, pool_size, strides, padding, backend)


def avg_pool2d_grad_into(dout, dx, window, backend=None):
    """avg_pool2d_grad into dx for checked arrays (as max_pool2d_into); returns dx."""
    if _device.is_device(dx):
        return _nn_on_device.avg_pool2d_grad_into(dout, dx, window)
    kernels, _ = _backend.kernels("pool", backend)
    # The kernels run one row of dx per task, each cell gathering from the windows that hold it.
    per_cell = -(-window[0] // window[2]) * -(-window[1] // window[3])
    n_threads = threads_worth_it(dx.shape[0] * dx.shape[1], dx.shape[2] * dx.shape[3] * per_cell)
    kernels.avg_pool2d_backward(dout, dx, *window, n_threads)
    return dx
