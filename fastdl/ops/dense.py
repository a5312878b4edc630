"""Fully connected (dense) layer ops, with Keras' weight layout: kernel (in_features, units)."""

import numpy as np

from fastdl import backend as _backend
from fastdl._parallel import row_ranges, run_row_ranges
from fastdl._validation import as_compute, check_matrix, compute_dtype

# The kernels' activation codes.
ACTIVATIONS = {None: 0, "linear": 0, "relu": 1, "sigmoid": 2, "tanh": 3}


def _activation_code(activation):
    if activation is not None and not isinstance(activation, str):
        raise TypeError(f"activation must be a string or None, got {type(activation).__name__}")
    key = activation.lower() if isinstance(activation, str) else None
    if key not in ACTIVATIONS:
        names = ", ".join(repr(name) for name in ACTIVATIONS if name is not None)
        raise ValueError(f"unknown activation {activation!r}; choose one of {names} or None")
    return ACTIVATIONS[key]


def _check_vector(v, name):
    v = np.asarray(v)
    if v.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {v.shape}")
    return check_matrix(v[None, :], name)[0]


def dense(x, kernel, bias=None, activation=None, backend=None):
    """activation(x @ kernel + bias).

    Parameters
    ----------
    x : array-like of shape (n_samples, in_features)
    kernel : array-like of shape (in_features, units)
    bias : array-like of shape (units,), optional
    activation : {"relu", "sigmoid", "tanh", "linear", None}, default None
        None and "linear" leave the output as it is; sigmoid never overflows.
    backend : str, optional
        "auto", "numpy", "numba", "cython" (None: the process default).

    Returns
    -------
    ndarray of shape (n_samples, units)
        float32 when every input is float32, float64 otherwise.

    Notes
    -----
    The product is a BLAS GEMM; the bias and the activation are then applied in one compiled pass
    over each block of rows while it is still in cache.
    """
    x = check_matrix(x, "x")
    kernel = check_matrix(kernel, "kernel")
    if kernel.shape[0] != x.shape[1]:
        raise ValueError(
            f"kernel must have x's {x.shape[1]} input features as rows, "
            f"got x {x.shape} and kernel {kernel.shape}"
        )
    arrays = [x, kernel]
    if bias is not None:
        bias = _check_vector(bias, "bias")
        if bias.shape[0] != kernel.shape[1]:
            raise ValueError(
                f"bias must have one value per unit, got kernel {kernel.shape} and bias {bias.shape}"
            )
        arrays.append(bias)
    code = _activation_code(activation)
    kernels, _ = _backend.kernels("dense", backend)
    n_threads = _backend.get_num_threads()
    dtype = compute_dtype(*arrays)
    x = as_compute(x, dtype)
    kernel = as_compute(kernel, dtype)
    bias = np.empty(0, dtype=dtype) if bias is None else as_compute(bias, dtype)
    out = np.empty((x.shape[0], kernel.shape[1]), dtype=dtype)

    def compute(first, last):
        block = out[first:last]
        np.dot(x[first:last], kernel, out=block)
        kernels.bias_activation(block, bias, code, 1)

    run_row_ranges(compute, x.shape[0], n_threads, kernel.shape[0] * kernel.shape[1])
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
        Accepted for a uniform API: the work is three BLAS calls, the same on every backend.

    Returns
    -------
    dx : ndarray of shape (n_samples, in_features)
    dkernel : ndarray of shape (in_features, units)
    dbias : ndarray of shape (units,)
    """
    x = check_matrix(x, "x")
    kernel = check_matrix(kernel, "kernel")
    dout = check_matrix(dout, "dout")
    if kernel.shape[0] != x.shape[1]:
        raise ValueError(
            f"kernel must have x's {x.shape[1]} input features as rows, "
            f"got x {x.shape} and kernel {kernel.shape}"
        )
    if dout.shape != (x.shape[0], kernel.shape[1]):
        raise ValueError(
            f"dout must have shape {(x.shape[0], kernel.shape[1])} for x {x.shape} and kernel {kernel.shape}, "
            f"got {dout.shape}"
        )
    _backend.kernels("dense", backend)  # an unknown or unavailable backend is still an error
    dtype = compute_dtype(x, kernel, dout)
    x = as_compute(x, dtype)
    kernel = as_compute(kernel, dtype)
    dout = as_compute(dout, dtype)
    # Whole GEMMs with BLAS' own threads: no compiled pass sits between them to share cores with.
    dx = np.dot(dout, kernel.T)
    dkernel = np.dot(x.T, dout)
    dbias = dout.sum(axis=0)
    return dx, dkernel, dbias


def activation_grad(out, dout, activation, backend=None):
    """Gradient with respect to an activation's input, from its output.

    Parameters
    ----------
    out : array-like of shape (n_samples, units)
        The activation's output (what dense returned).
    dout : array-like of shape (n_samples, units)
        Gradient of the loss with respect to `out`.
    activation : {"relu", "sigmoid", "tanh", "linear", None}
    backend : str, optional
        "auto", "numpy", "numba", "cython" (None: the process default).

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
    kernels, _ = _backend.kernels("dense", backend)
    # One thread for small inputs, where waking a team costs more than the pass.
    n_threads = len(row_ranges(out.shape[0], _backend.get_num_threads(), 8 * out.shape[1]))
    dtype = compute_dtype(out, dout)
    out = as_compute(out, dtype)
    dout = as_compute(dout, dtype)
    dpre = np.empty(out.shape, dtype=dtype)
    kernels.activation_backward(out, dout, code, dpre, n_threads)
    return dpre
