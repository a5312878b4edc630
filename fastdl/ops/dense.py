"""Fully connected (dense) layer ops, with Keras' weight layout: kernel (in_features, units)."""

import numbers

import numpy as np

from fastdl import _device
from fastdl import backend as _backend
from fastdl._parallel import ELEMENTWISE_WORK, blocks, in_blas_hold, run_row_ranges, scratch, threads_worth_it
from fastdl._validation import as_compute_all, check_matrix
from fastdl.ops import _nn_on_device
from fastdl.ops._nn_on_device import Out, host_call

# The kernels' activation codes: Keras 3's activations. Those of INPUT_ACTIVATIONS have a gradient
# that needs the activation's input (pre) as well; the others' follows from the output.
ACTIVATIONS = {None: 0, "linear": 0, "relu": 1, "sigmoid": 2, "tanh": 3, "leaky_relu": 4, "elu": 5, "selu": 6,
               "softplus": 7, "softsign": 8, "relu6": 9, "hard_sigmoid": 10, "exponential": 11,
               "swish": 12, "silu": 12, "gelu": 13, "mish": 14, "hard_swish": 15, "hard_silu": 15}
INPUT_ACTIVATIONS = frozenset({12, 13, 14, 15})
LEAKY_ALPHA = 0.2  # the "leaky_relu" activation's slope below zero, as Keras 3's activations.leaky_relu
ELU_ALPHA = 1.0  # the "elu" activation's alpha, as Keras 3's activations.elu
# What alpha=None means: the activation's own (the other activations take no alpha).
DEFAULT_ALPHA = {ACTIVATIONS["leaky_relu"]: LEAKY_ALPHA, ACTIVATIONS["elu"]: ELU_ALPHA}
# The kernels' alpha for selu (activation_alpha), whose gradient below 0 is y + SCALE * ALPHA: rounded
# to the output's dtype, as the ops pass every alpha, as the saturated output -SCALE * ALPHA is, it
# gives a gradient of 0 there (float32's output and the float64 constant left 2.3e-8 * dout).
SELU_GRADIENT_ALPHA = 1.0507009873554804934193349852946 * 1.6732632423543772848170429916717  # the kernels' SCALE, ALPHA
# Each activation's work per value, (forward, backward), in fastdl._parallel's units, for the
# threads its passes take: ELEMENTWISE_WORK for a pass as light as relu's (0.14 ns a float32 value
# on one core), 8 times that for one of kernels/cpu/vecmath's exp, expm1 or tanh (sigmoid forward
# 1.4 ns, elu 1.1, tanh 1.7, mish's gradient 2.5) and 32 times for erfc or exp with log1p (gelu
# 5.2 ns, its gradient 6.3, softplus 2.9), 3 times for a division (softsign, hard_sigmoid and
# hard_swish 0.4 ns); measured 256 x 1024, float64 work, one thread, Numba (activation_threads
# divides the exponential ones by 3 for float32 arrays, worked in float32: gelu 1.0 ns). The light passes keep the
# team asleep below 2^19 values; a gelu's wakes it from 16,384.
_LIGHT, _DIVIDE = ELEMENTWISE_WORK, 3 * ELEMENTWISE_WORK
_EXP, _HEAVY = 8 * ELEMENTWISE_WORK, 32 * ELEMENTWISE_WORK
ACTIVATION_WORK = {code: (_LIGHT, _LIGHT) for code in range(16)}
ACTIVATION_WORK.update({
    ACTIVATIONS["softsign"]: (_DIVIDE, _LIGHT), ACTIVATIONS["hard_sigmoid"]: (_DIVIDE, _LIGHT),
    ACTIVATIONS["hard_swish"]: (_DIVIDE, _DIVIDE),
    ACTIVATIONS["sigmoid"]: (_EXP, _LIGHT), ACTIVATIONS["tanh"]: (_EXP, _LIGHT),
    ACTIVATIONS["elu"]: (_EXP, _LIGHT), ACTIVATIONS["selu"]: (_EXP, _LIGHT),
    ACTIVATIONS["softplus"]: (_HEAVY, _EXP), ACTIVATIONS["exponential"]: (_EXP, _LIGHT),
    ACTIVATIONS["swish"]: (_EXP, _EXP), ACTIVATIONS["gelu"]: (_HEAVY, _HEAVY), ACTIVATIONS["mish"]: (_EXP, _EXP),
})
ROW_BLOCK = 64  # rows per GEMM where fastdl's threads split the rows
# Where fastdl's threads split a forward pass whose rows make fewer than DEPTH_TILES blocks (a
# Flatten's many inputs after convolutions: the clock CNN's 100 x 9248 -> 128, a6's VAE's 32 rows),
# its GEMM is cut along the inputs too, into up to DEPTH_TILES / row blocks blocks of at least
# DEPTH_BLOCK inputs, whose products are added in order: its few row blocks alone would leave
# most of 16 threads idle. Only GEMMs of DEPTH_MIN_WORK multiply-adds or more (the cuts cost
# 10-25% on one or two threads: smaller GEMMs and a pass adding them), with at most
# DEPTH_PARTIAL_BYTES of products. The cuts follow from the shapes alone, so any thread count
# gives the same bits.
DEPTH_TILES = 16
DEPTH_BLOCK = 512
DEPTH_MIN_WORK = 1 << 22
DEPTH_PARTIAL_BYTES = 16 << 20
# Rows per GEMV of column_sums_into beyond which blocks' sums are added in float64. 256 float32 rows
# keep a bias gradient within ~3e-7 of the exact sum, as PyTorch's (4096 rows of constant 0.1: 4e-6),
# and leave a training batch (the course's 32 to 128) one GEMV, with the same bits and cost as before.
SUM_BLOCK = 256
# The empty array the kernels take as "no bias", per dtype.
NO_BIAS = {np.dtype(np.float32): np.empty(0, np.float32), np.dtype(np.float64): np.empty(0, np.float64)}


def needs_input(code):
    """Whether activation `code`'s gradient needs the activation's input (swish, gelu, mish,
    hard_swish): its backward pass takes `pre` as well as, or instead of, the output."""
    return code in INPUT_ACTIVATIONS


def unknown_activation(activation, names):
    """The ValueError for an activation name not among names."""
    return ValueError(f"unknown activation {activation!r}; choose one of {names} or None")


def _activation_code(activation):
    if activation is not None and not isinstance(activation, str):
        raise TypeError(f"activation must be a string or None, got {type(activation).__name__}")
    key = activation.lower() if isinstance(activation, str) else None
    if key not in ACTIVATIONS:
        raise unknown_activation(activation, ", ".join(repr(name) for name in ACTIVATIONS if name is not None))
    return ACTIVATIONS[key]


def activation_threads(code, shape, backward=False, dtype=np.float64):
    """fastdl's threads for activation `code`'s pass over an array of `shape` (rows, columns) and
    `dtype`: one where waking a team costs more than the pass (ACTIVATION_WORK; a float32 pass
    with an exponential, worked in float32, costs a third of the float64 one's)."""
    work = ACTIVATION_WORK[code][backward]
    if work >= _EXP and np.dtype(dtype) == np.float32:
        work //= 3
    return threads_worth_it(shape[0], work * shape[1])


def activation_alpha(code, alpha=None):
    """The alpha the kernels take for activation `code`: alpha as given, or where None the
    activation's default (leaky_relu's slope 0.2, elu's 1.0, Keras 3's; 0.0 for the others, which
    ignore it); for selu, which takes none, SELU_GRADIENT_ALPHA whatever is given."""
    if code == ACTIVATIONS["selu"]:
        return SELU_GRADIENT_ALPHA
    return DEFAULT_ALPHA.get(code, 0.0) if alpha is None else alpha


def check_alpha(alpha, name="alpha"):
    """leaky_relu's slope or elu's alpha: a finite number >= 0 (the backward passes read the sign of
    the output, which is the input's only for alpha >= 0)."""
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
    return _backend.get_num_threads() if in_blas_hold() else 1


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


def dense(x, kernel, bias=None, activation=None, backend=None, alpha=None):
    """activation(x @ kernel + bias).

    Parameters
    ----------
    x : array-like of shape (n_samples, in_features)
    kernel : array-like of shape (in_features, units)
    bias : array-like of shape (units,), optional
    activation : str or None, default None
        Keras 3's "relu", "leaky_relu", "sigmoid", "tanh", "elu", "selu", "softplus", "softsign",
        "relu6", "hard_sigmoid" (relu6(x + 3) / 6), "exponential", "swish" (or "silu",
        x * sigmoid(x)), "gelu" (Keras 3's default, exact: x * Phi(x) with erf, not the tanh
        approximation), "mish" (x * tanh(softplus(x))), "hard_swish" (or "hard_silu",
        x * relu6(x + 3) / 6) or "linear"; None and "linear" leave the output as it is. Only
        exponential overflows (to inf); the transcendental ones are worked in float64 and rounded
        once. swish, gelu, mish and hard_swish need their input for the gradient
        (activation_grad's `pre`).
    backend : str, optional
        "auto", "numpy", "numba", "cython", "cuda" (None: the process default).
    alpha : float >= 0, optional
        leaky_relu's slope below zero (default 0.2) or elu's value alpha * (exp(x) - 1) below
        zero (default 1.0), Keras 3's defaults; the other activations ignore it.

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
    alpha = activation_alpha(code, None if alpha is None else check_alpha(alpha))
    out = np.empty((x.shape[0], kernel.shape[1]), dtype=dtype)
    if on_cuda:
        return host_call(dense_into, x, kernel, bias, code, Out(out), alpha=alpha)
    return dense_into(x, kernel, bias, code, out, backend, alpha)


def dense_into(x, kernel, bias, code, out, backend=None, alpha=None):
    """out = activation(x @ kernel + bias) for checked arrays; returns out.

    For callers that have checked their arrays (fastdl.nn's layers): x (n, in), kernel (in, units),
    bias (units,) or None and out (n, units) C-contiguous and of one float dtype; code from
    ACTIVATIONS. One BLAS GEMM, then one compiled pass for the bias and the activation; inside a
    fastdl parallel region (BLAS held to one thread) the rows go in GEMMs of ROW_BLOCK rows, each
    followed by its pass while in cache (few rows with many inputs: cut along the inputs as well,
    _dense_by_depth). Device arrays run on the device
    (fastdl/ops/_nn_on_device.py), as in every `*_into` op. alpha: None for the activation's
    default (activation_alpha).
    """
    alpha = activation_alpha(code, alpha)
    if _device.is_device(out):
        return _nn_on_device.dense_into(x, kernel, bias, code, out, alpha)
    kernels, _ = _backend.kernels("dense", backend)
    bias = NO_BIAS[out.dtype] if bias is None else bias
    alpha = out.dtype.type(alpha)

    if not in_blas_hold():  # BLAS threads one GEMM (see _row_threads)
        np.dot(x, kernel, out=out)
        kernels.bias_activation(out, bias, code, alpha, activation_threads(code, out.shape, dtype=out.dtype))
        return out

    # Where the rows are split over fastdl's threads, they go in GEMMs of ROW_BLOCK at fixed
    # places, the same calls for any thread count (see fastdl._parallel.row_ranges).
    depths = _depth_blocks(*x.shape, kernel.shape[1], out.dtype)
    if depths > 1:
        return _dense_by_depth(x, kernel, bias, code, alpha, out, kernels, depths)

    def compute(first, last):
        for start, stop in blocks(first, last, ROW_BLOCK):
            block = out[start:stop]
            np.dot(x[start:stop], kernel, out=block)
            kernels.bias_activation(block, bias, code, alpha, 1)

    run_row_ranges(compute, x.shape[0], _row_threads(), kernel.shape[0] * kernel.shape[1], align=ROW_BLOCK)
    return out


def _depth_blocks(n_rows, depth, units, dtype):
    """How many blocks along the inputs a split forward pass of these shapes cuts its GEMM into (1:
    none; see DEPTH_TILES)."""
    if n_rows * depth * units < DEPTH_MIN_WORK:
        return 1
    row_blocks = -(-n_rows // ROW_BLOCK)
    fits = 1 + DEPTH_PARTIAL_BYTES // max(1, n_rows * units * np.dtype(dtype).itemsize)
    return max(1, min(-(-DEPTH_TILES // row_blocks), depth // DEPTH_BLOCK, fits))


def _dense_by_depth(x, kernel, bias, code, alpha, out, kernels, depths):
    """dense_into's split pass cut along the inputs into `depths` blocks: the GEMMs of each
    (depth block, ROW_BLOCK rows) on fastdl's threads, the first block's into out and the
    others' into a scratch array, then, by rows, their sum in order, the bias and the activation."""
    n_rows, depth = x.shape
    bounds = [depth * part // depths for part in range(depths + 1)]
    row_blocks = -(-n_rows // ROW_BLOCK)
    partials = scratch("dense depth partials", (depths - 1, *out.shape), out.dtype)

    def products(first, last):
        for tile in range(first, last):
            part, row_block = divmod(tile, row_blocks)
            rows = slice(row_block * ROW_BLOCK, min(n_rows, (row_block + 1) * ROW_BLOCK))
            inputs = slice(bounds[part], bounds[part + 1])
            np.dot(x[rows, inputs], kernel[inputs], out=out[rows] if part == 0 else partials[part - 1, rows])

    def finish(first, last):
        for start, stop in blocks(first, last, ROW_BLOCK):
            block = out[start:stop]
            for partial in partials[:, start:stop]:
                block += partial
            kernels.bias_activation(block, bias, code, alpha, 1)

    run_row_ranges(products, depths * row_blocks, _row_threads(), ROW_BLOCK * (depth // depths) * kernel.shape[1])
    run_row_ranges(finish, n_rows, _row_threads(), depths * kernel.shape[1] * ELEMENTWISE_WORK, align=ROW_BLOCK)
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


def activation_grad(out, dout, activation, backend=None, alpha=None, pre=None):
    """Gradient with respect to an activation's input, from its output (and input, for some).

    Parameters
    ----------
    out : array-like of shape (n_samples, units)
        The activation's output (what dense returned).
    dout : array-like of shape (n_samples, units)
        Gradient of the loss with respect to `out`.
    activation : str or None
        One of dense's activations (fastdl.ops.dense.ACTIVATIONS).
    backend : str, optional
        "auto", "numpy", "numba", "cython", "cuda" (None: the process default).
    alpha : float >= 0, optional
        leaky_relu's slope (default 0.2) or elu's alpha (default 1.0), as in dense.
    pre : array-like of shape (n_samples, units), optional
        The activation's input: required for "swish"/"silu", "gelu", "mish" and
        "hard_swish"/"hard_silu" (whose gradient is a function of it, not of the output), ignored
        for the others.

    Returns
    -------
    ndarray of shape (n_samples, units)
        dout * activation'(input); ReLU passes no gradient where its output is 0 (relu6 and
        hard_sigmoid none where theirs is at either end). hard_swish's derivative is 0 at
        x = -3 and 1 at x = 3, as TensorFlow's and JAX's autodiff of x * relu6(x + 3) / 6.
    """
    out = check_matrix(out, "out")
    dout = check_matrix(dout, "dout")
    if dout.shape != out.shape:
        raise ValueError(f"dout must have out's shape, got out {out.shape} and dout {dout.shape}")
    code = _activation_code(activation)
    if needs_input(code):
        if pre is None:
            raise ValueError(f"activation {activation!r} needs pre, the activation's input: its gradient is a "
                             "function of the input, not of the output")
        pre = check_matrix(pre, "pre")
        if pre.shape != out.shape:
            raise ValueError(f"pre must have out's shape, got out {out.shape} and pre {pre.shape}")
    on_cuda = _backend.resolve("dense", backend) == "cuda"  # an unknown or unavailable backend fails here
    if needs_input(code):
        dtype, out, dout, pre = as_compute_all(out, dout, pre)
    else:
        dtype, out, dout = as_compute_all(out, dout)
        pre = None
    alpha = activation_alpha(code, None if alpha is None else check_alpha(alpha))
    dpre = np.empty(out.shape, dtype=dtype)
    if on_cuda:  # pre positional: host_call sends positional arrays to the device
        return host_call(activation_grad_into, out, dout, code, Out(dpre), None, alpha, None, pre)
    return activation_grad_into(out, dout, code, dpre, backend, alpha, pre=pre)


def activation_grad_into(out, dout, code, dpre, backend=None, alpha=None, column_sums=None, pre=None):
    """activation_grad into dpre (may be dout itself) for checked arrays (as dense_into); returns dpre.

    column_sums: optional (units,) array of dpre's dtype that receives dpre's column sums (a dense
    layer's bias gradient: on the device in the same launch as dpre, for a batch's few rows); not
    for the activations of INPUT_ACTIVATIONS. pre: the activation's input, of out's shape and
    dtype, required for those (their gradient comes from it alone; out is not read).
    """
    alpha = activation_alpha(code, alpha)
    if needs_input(code):
        if pre is None:
            raise ValueError(f"activation code {code} needs pre, the activation's input, for its gradient")
        if pre.shape != out.shape:
            raise ValueError(f"pre must have out's shape, got out {out.shape} and pre {pre.shape}")
        if column_sums is not None:
            raise ValueError(f"activation code {code} takes no column_sums: sum the gradient afterwards")
    if _device.is_device(dpre):
        return _nn_on_device.activation_grad_into(out, dout, code, dpre, alpha, column_sums, pre)
    kernels, _ = _backend.kernels("dense", backend)
    n_threads = activation_threads(code, out.shape, backward=True, dtype=out.dtype)
    if needs_input(code):
        kernels.activation_backward_input(pre, dout, code, dpre, n_threads)
        return dpre
    kernels.activation_backward(out, dout, code, dpre.dtype.type(alpha), dpre, n_threads)
    if column_sums is not None:
        column_sums_into(dpre, column_sums)
    return dpre


def activation_into(z, code, backend=None, alpha=None):
    """z (n, m) = activation(z) in place, for a checked C-contiguous float array; returns z."""
    alpha = activation_alpha(code, alpha)
    if _device.is_device(z):
        return _nn_on_device.activation_into(z, code, alpha)
    kernels, _ = _backend.kernels("dense", backend)
    n_threads = activation_threads(code, z.shape, dtype=z.dtype)
    kernels.bias_activation(z, NO_BIAS[z.dtype], code, z.dtype.type(alpha), n_threads)
    return z
