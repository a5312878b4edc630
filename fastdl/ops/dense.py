"""Fully connected (dense) layer ops, with Keras' weight layout: kernel (in_features, units)."""

import numbers

import numpy as np

from fastdl import _device
from fastdl import backend as _backend
from fastdl._parallel import ELEMENTWISE_WORK, blas_held, blocks, run_row_ranges, threads_worth_it
from fastdl._validation import as_compute_all, check_matrix
from fastdl.ops import _nn_on_device
from fastdl.ops._nn_on_device import Out, host_call

# The kernels' activation codes.
ACTIVATIONS = {None: 0, "linear": 0, "relu": 1, "sigmoid": 2, "tanh": 3, "leaky_relu": 4}
LEAKY_ALPHA = 0.2  # the "leaky_relu" activation's slope below zero, as Keras 3's activations.leaky_relu
ROW_BLOCK = 64  # rows per GEMM where fastdl's threads split the rows
# Rows per GEMV of column_sums_into beyond which blocks' sums are added in float64. 256 float32 rows
# keep a bias gradient within ~3e-7 of the exact sum, as PyTorch's (4096 rows of constant 0.1: 4e-6),
# and leave a training batch (the course's 32 to 128) one GEMV, with the same bits and cost as before.
SUM_BLOCK = 256
# The empty array the kernels take as "no bias", per dtype.
NO_BIAS = {np.dtype(np.float32): np.empty(0, np.float32), np.dtype(np.float64): np.empty(0, np.float64)}


def _activation_code(activation):
    if activation is not None and not isinstance(activation, str):
        raise TypeError(f"activation must be a string or None, got {type(activation).__name__}")
    key = activation.lower() if isinstance(activation, str) else None
    if key not in ACTIVATIONS:
        names = ", ".join(repr(name) for name in ACTIVATIONS if name is not None)
        raise ValueError(f"unknown activation {activation!r}; choose one of {names} or None")
    return ACTIVATIONS[key]


def check_alpha(alpha, name="alpha"):
    """leaky_relu's slope: a finite number >= 0 (the backward pass reads the sign of the output)."""
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {alpha!r}")
    return float(alpha)


def _check_kernel(x, kernel):
    """(x, kernel) as checked matrices; kernel must have x's input features as rows."""
    x = check_matrix(x, "x")
    kernel = check_matrix(kernel, "kernel")
    if kernel.shape[0] != x.shape[1]:
        raise ValueError(
            f"kernel must have x's {x.shape[1]} input features as rows, "
            f"got x {x.shape} and kernel {kernel.shape}"
        )
    return x, kernel


def _check_vector(v, name):
    v = np.asarray(v)
    if v.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {v.shape}")
    return check_matrix(v[None, :], name)[0]


def _row_threads():
    """fastdl threads to split a dense op's rows over.

    Its work is GEMMs. While BLAS may use its own threads it runs them better than fastdl's threads
    each running BLAS on a share of the rows (32 x 784 @ 784 x 300 forward and backward: 0.45
    instead of 0.83 ms), so the op runs whole, its light kernels on one thread. Inside a fastdl
    region that holds BLAS to one thread (training a convolutional model), the rows are split.
    """
    return _backend.get_num_threads() if blas_held() else 1


_ONES = {}


def _ones(n, dtype):
    """n ones of dtype, read-only, shared by every caller (the longest vector asked for so far)."""
    ones = _ONES.get(dtype)
    if ones is None or ones.size < n:
        ones = np.ones(n, dtype)
        ones.flags.writeable = False
        _ONES[dtype] = ones
    return ones[:n]


def column_sums_into(rows, out=None):
    """out (columns,) = the column sums of rows (n, columns), of one dtype: for the bias gradients.

    A GEMV with a row of ones (a fifth of the time of numpy's sum along the rows) adds the rows one
    after another in rows' dtype, its error growing with n (float32, 10^6 rows of mean 1e3: 4e-3
    relative). Up to SUM_BLOCK rows (a training batch) that is the whole sum; more go SUM_BLOCK
    rows at a time, at fixed places, their sums added in float64 and rounded once.
    """
    if rows.shape[0] <= SUM_BLOCK:
        return np.dot(_ones(rows.shape[0], rows.dtype), rows, out=out)
    total = np.zeros(rows.shape[1])
    for start in range(0, rows.shape[0], SUM_BLOCK):
        add_column_sums(rows[start : start + SUM_BLOCK], total)
    if out is None:
        return total.astype(rows.dtype)
    np.copyto(out, total, casting="same_kind")
    return out


def add_column_sums(rows, total):
    """total (float64, columns) += the column sums of rows (n, columns), summed in rows' dtype by
    one GEMV: the bias gradients of a batch of images' rows at a time."""
    total += np.dot(_ones(rows.shape[0], rows.dtype), rows)


def dense(x, kernel, bias=None, activation=None, backend=None, alpha=LEAKY_ALPHA):
    """activation(x @ kernel + bias).

    Parameters
    ----------
    x : array-like of shape (n_samples, in_features)
    kernel : array-like of shape (in_features, units)
    bias : array-like of shape (units,), optional
    activation : {"relu", "leaky_relu", "sigmoid", "tanh", "linear", None}, default None
        None and "linear" leave the output as it is; sigmoid never overflows.
    backend : str, optional
        "auto", "numpy", "numba", "cython", "cuda" (None: the process default).
    alpha : float >= 0, default 0.2
        leaky_relu's slope below zero (Keras 3's for the "leaky_relu" activation).

    Returns
    -------
    ndarray of shape (n_samples, units)
        float32 when every input is float32, float64 otherwise.

    Notes
    -----
    One BLAS GEMM, then one compiled pass for the bias and the activation; inside a fastdl
    parallel region (BLAS held to one thread) the rows go in GEMMs of ROW_BLOCK rows, each
    followed by its pass while in cache.
    """
    x, kernel = _check_kernel(x, kernel)
    if bias is not None:
        bias = _check_vector(bias, "bias")
        if bias.shape[0] != kernel.shape[1]:
            raise ValueError(
                f"bias must have one value per unit, got kernel {kernel.shape} and bias {bias.shape}"
            )
    code = _activation_code(activation)
    on_cuda = _backend.resolve("dense", backend) == "cuda"  # an unknown or unavailable backend fails here
    dtype, x, kernel, bias = as_compute_all(x, kernel, bias)
    alpha = check_alpha(alpha)
    out = np.empty((x.shape[0], kernel.shape[1]), dtype=dtype)
    if on_cuda:
        return host_call(dense_into, x, kernel, bias, code, Out(out), alpha=alpha)
    return dense_into(x, kernel, bias, code, out, backend, alpha)


def dense_into(x, kernel, bias, code, out, backend=None, alpha=LEAKY_ALPHA):
    """out = activation(x @ kernel + bias) for checked arrays; returns out.

    For callers that have checked their arrays (fastdl.nn's layers): x (n, in), kernel (in, units),
    bias (units,) or None and out (n, units) C-contiguous and of one float dtype; code from
    ACTIVATIONS. One BLAS GEMM, then one compiled pass for the bias and the activation; inside a
    fastdl parallel region (BLAS held to one thread) the rows go in GEMMs of ROW_BLOCK rows, each
    followed by its pass while in cache. Device arrays run on the device
    (fastdl/ops/_nn_on_device.py), as in every `*_into` op.
    """
    if _device.is_device(out):
        return _nn_on_device.dense_into(x, kernel, bias, code, out, alpha)
    kernels, _ = _backend.kernels("dense", backend)
    bias = NO_BIAS[out.dtype] if bias is None else bias
    alpha = out.dtype.type(alpha)

    if not blas_held():  # BLAS threads one GEMM (see _row_threads)
        np.dot(x, kernel, out=out)
        kernels.bias_activation(out, bias, code, alpha, 1)
        return out

    # Where the rows are split over fastdl's threads, they go in GEMMs of ROW_BLOCK at fixed
    # places, the same calls for any thread count (see fastdl._parallel.row_ranges).
    def compute(first, last):
        for start, stop in blocks(first, last, ROW_BLOCK):
            block = out[start:stop]
            np.dot(x[start:stop], kernel, out=block)
            kernels.bias_activation(block, bias, code, alpha, 1)

    run_row_ranges(compute, x.shape[0], _row_threads(), kernel.shape[0] * kernel.shape[1], align=ROW_BLOCK)
    return out


def dense_grad(x, kernel, dout, backend=None):
    """Gradients of x @ kernel + bias (before any activation).

    Parameters
    ----------
    x : array-like of shape (n_samples, in_features)
    kernel : array-like of shape (in_features, units)
    dout : array-like of shape (n_samples, units)
        Gradient of the loss with respect to the pre-activation output; see activation_grad.
    backend : str, optional
        "auto", "numpy", "numba", "cython", "cuda" (None: the process default). The CPU backends
        share one path (three BLAS calls); "cuda" computes on the device, NumPy in, NumPy out.

    Returns
    -------
    dx : ndarray of shape (n_samples, in_features)
    dkernel : ndarray of shape (in_features, units)
    dbias : ndarray of shape (units,)
    """
    x, kernel = _check_kernel(x, kernel)
    dout = check_matrix(dout, "dout")
    if dout.shape != (x.shape[0], kernel.shape[1]):
        raise ValueError(
            f"dout must have shape {(x.shape[0], kernel.shape[1])} for x {x.shape} and kernel {kernel.shape}, "
            f"got {dout.shape}"
        )
    on_cuda = _backend.resolve("dense", backend) == "cuda"  # an unknown or unavailable backend is still an error
    dtype, x, kernel, dout = as_compute_all(x, kernel, dout)
    dx = np.empty(x.shape, dtype=dtype)
    dkernel = np.empty(kernel.shape, dtype=dtype)
    dbias = np.empty(kernel.shape[1], dtype=dtype)
    if on_cuda:
        return host_call(dense_grad_into, x, kernel, dout, Out(dx), Out(dkernel), Out(dbias))
    dense_grad_into(x, kernel, dout, dx, dkernel, dbias)
    return dx, dkernel, dbias


def dense_grad_into(x, kernel, dout, dx, dkernel, dbias):
    """dense_grad into given arrays, for callers that have checked them (as dense_into).

    dx (n, in) may be None when no one needs the gradient of the input (a model's first layer),
    dkernel and dbias (units,) None when no one needs the weights' (a frozen layer), dbias None
    without a bias. Where the rows are split (_row_threads), each of our threads computes its share
    of dx's rows and the same share of dkernel's rows (a slice of x^T times all of dout: no partial
    sums to add), with BLAS single-threaded, as every GEMM inside fastdl's parallel regions.
    """
    if _device.is_device(dout):
        return _nn_on_device.dense_grad_into(x, kernel, dout, dx, dkernel, dbias)
    n, n_in = x.shape

    def compute(first, last):
        if dx is not None:
            np.dot(dout[first:last], kernel.T, out=dx[first:last])
        low, high = first * n_in // n, last * n_in // n
        if dkernel is not None and high > low:
            np.dot(x[:, low:high].T, dout, out=dkernel[low:high])

    gemms = (dx is not None) + (dkernel is not None)
    if gemms:
        run_row_ranges(compute, n, _row_threads(), gemms * kernel.size)
    if dbias is not None:
        column_sums_into(dout, dbias)


def activation_grad(out, dout, activation, backend=None, alpha=LEAKY_ALPHA):
    """Gradient with respect to an activation's input, from its output.

    Parameters
    ----------
    out : array-like of shape (n_samples, units)
        The activation's output (what dense returned).
    dout : array-like of shape (n_samples, units)
        Gradient of the loss with respect to `out`.
    activation : {"relu", "leaky_relu", "sigmoid", "tanh", "linear", None}
    backend : str, optional
        "auto", "numpy", "numba", "cython", "cuda" (None: the process default).
    alpha : float >= 0, default 0.2
        leaky_relu's slope below zero (Keras 3's for the "leaky_relu" activation).

    Returns
    -------
    ndarray of shape (n_samples, units)
        dout * activation'(input); ReLU passes no gradient where its output is 0.
    """
    out = check_matrix(out, "out")
    dout = check_matrix(dout, "dout")
    if dout.shape != out.shape:
        raise ValueError(f"dout must have out's shape, got out {out.shape} and dout {dout.shape}")
    code = _activation_code(activation)
    on_cuda = _backend.resolve("dense", backend) == "cuda"  # an unknown or unavailable backend fails here
    dtype, out, dout = as_compute_all(out, dout)
    alpha = check_alpha(alpha)
    dpre = np.empty(out.shape, dtype=dtype)
    if on_cuda:
        return host_call(activation_grad_into, out, dout, code, Out(dpre), alpha=alpha)
    return activation_grad_into(out, dout, code, dpre, backend, alpha)


def activation_grad_into(out, dout, code, dpre, backend=None, alpha=LEAKY_ALPHA, column_sums=None):
    """activation_grad into dpre (may be dout itself) for checked arrays (as dense_into); returns dpre.

    column_sums: optional (units,) array of dpre's dtype that receives dpre's column sums (a dense
    layer's bias gradient: on the device in the same launch as dpre, for a batch's few rows).
    """
    if _device.is_device(dpre):
        return _nn_on_device.activation_grad_into(out, dout, code, dpre, alpha, column_sums)
    kernels, _ = _backend.kernels("dense", backend)
    # One thread for small inputs, where waking a team costs more than the pass.
    n_threads = threads_worth_it(out.shape[0], ELEMENTWISE_WORK * out.shape[1])
    kernels.activation_backward(out, dout, code, dpre.dtype.type(alpha), dpre, n_threads)
    if column_sums is not None:
        column_sums_into(dpre, column_sums)
    return dpre


def activation_into(z, code, backend=None, alpha=LEAKY_ALPHA):
    """z (n, m) = activation(z) in place, for a checked C-contiguous float array; returns z."""
    if _device.is_device(z):
        return _nn_on_device.activation_into(z, code, alpha)
    kernels, _ = _backend.kernels("dense", backend)
    n_threads = threads_worth_it(z.shape[0], ELEMENTWISE_WORK * z.shape[1])
    kernels.bias_activation(z, NO_BIAS[z.dtype], code, z.dtype.type(alpha), n_threads)
    return z
