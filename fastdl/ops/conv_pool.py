"""A convolution, its bias and activation and a max pooling in one pass, and its gradients.

Each batch of images is pooled while its convolution's output is in cache (fastdl/ops/conv.py's
batches), so the full-size activation never goes to memory; the backward pass rebuilds each
batch's dense gradient from the pooling's winners and runs conv.py's backward GEMMs on it.
Big images go in horizontal bands of whole pooling windows (conv.py's _Bands).
"""

import numpy as np

from fastdl import _device
from fastdl import backend as _backend
from fastdl._parallel import run_row_ranges, scratch
from fastdl.ops import _nn_on_device
from fastdl.ops.conv import _Bands, _backward_gemms, _forward_batches, _forward_plan, _plan_kernels, finish_bias
from fastdl.ops.dense import NO_BIAS


def pool_fusable(activation, pool_window, conv_hw, pooled_hw):
    """Whether a convolution with `activation` and outputs of conv_hw followed by max pooling with
    `pool_window` (pool_h, pool_w, stride_h, stride_w, pad_top, pad_left) to pooled_hw can run as
    conv2d_pool_into: ReLU or no activation, and windows that neither overlap nor need padding
    (padding "same" pads an odd size at the bottom and right: no pad_top or pad_left, but the last
    windows would read past the convolution's outputs)."""
    pool_h, pool_w, stride_h, stride_w, pad_top, pad_left = pool_window
    return (activation in (0, 1) and (pool_h, pool_w) == (stride_h, stride_w) and pad_top == pad_left == 0
            and _windows_inside(conv_hw, (pool_h, pool_w), pooled_hw))


def _windows_inside(conv_hw, pool, pooled_hw):
    return all(pooled * size <= conv for conv, size, pooled in zip(conv_hw, pool, pooled_hw))


def _check_windows(geometry, pool, pooled):
    """The compiled kernels read (and the backward pass writes) every window whole: a window
    hanging past the convolution's outputs would run past their memory."""
    if not _windows_inside(geometry[2], pool, pooled.shape[1:3]):
        raise ValueError(f"pooled outputs of {pooled.shape[1:3]} in windows of {tuple(pool)} need more than the "
                         f"convolution's {tuple(geometry[2])} outputs: pool them with max_pool2d instead")


def _bands(x, kernel, geometry, pool, pooled):
    """The bands (fastdl.ops.conv._Bands) of the convolution's rows that the pooling windows
    cover, in whole windows, or None where it goes unbanded: a band of conv rows [start, stop)
    gives pooled rows [start // pool_h, stop // pool_h). The convolution outputs of a batch,
    kept until pooled, count as a work array as well."""
    strides, pads, (_, conv_w) = geometry
    covered = strides, pads, (pooled.shape[1] * pool[0], conv_w)
    return _Bands.of(x, kernel, covered, align=pool[0], block_channels=kernel.shape[3])


def _pooled_rows(conv_rows, pool):
    return slice(conv_rows.start // pool[0], conv_rows.stop // pool[0])


def _calling_threads_backend(backend):
    """The backend the bands run on, looked up on the calling thread: use_backend's context is
    not the pool's, and a family loading for the first time on two pool threads at once raced
    (config.passive_openmp's environment variable, set by both and deleted twice)."""
    backend = _backend.get_backend() if backend is None else backend
    for family in ("conv", "winograd"):
        _backend.kernels(family, backend)
    return backend


def conv2d_pool_into(x, kernel, bias, geometry, activation, pool, out, code, backend=None, kept=None):
    """conv2d, bias, activation and max pooling in one pass, for checked arrays (as conv2d_into).

    activation: 0 (none) or 1 (ReLU); pool: (pool_h, pool_w), non-overlapping windows without
    padding. out (n_images, out_h, out_w, out_channels) gets the pooled outputs and code (int32,
    the same shape) each window's winning position for conv2d_pool_grad_into. Each batch of
    images is pooled while its GEMM output is in cache: the full-size activation never goes to
    memory. Equals conv2d_into followed by max_pool2d_into. Big images go in bands of whole
    pooling windows' rows (see fastdl.ops.conv.BAND_FACTOR). kept: as conv2d_into's.
    """
    _check_windows(geometry, pool, out)
    if _device.is_device(out):
        return _nn_on_device.conv2d_pool_into(x, kernel, bias, geometry, activation, pool, out, code)
    bands = _bands(x, kernel, geometry, pool, out)
    if bands is None:
        return _pool_into(x, kernel, bias, geometry, activation, pool, out, code, backend, kept)
    backend = _calling_threads_backend(backend)

    def band(image, rows, conv_rows, band_geometry, _):
        pooled = _pooled_rows(conv_rows, pool)
        _pool_into(x[image : image + 1, rows], kernel, bias, band_geometry, activation, pool,
                   out[image : image + 1, pooled], code[image : image + 1, pooled], backend)

    bands.run(band)
    return out


def _pool_into(x, kernel, bias, geometry, activation, pool, out, code, backend, kept=None):
    """conv2d_pool_into on the host, unbanded."""
    kernels, _ = _backend.kernels("conv", backend)
    dtype = out.dtype
    out_channels = kernel.shape[3]
    plan = _forward_plan(x, kernel, geometry, dtype, kept)
    convolution_kernels = _plan_kernels(plan, backend)
    conv_h, conv_w = geometry[2]
    bias = NO_BIAS[dtype] if bias is None else bias

    def compute(first, last):
        block_rows = min(plan["batch"], last - first) * plan["pixels"]
        blocks = scratch("conv pool block", (block_rows, out_channels), dtype)
        for start, stop, convolve in _forward_batches(x, kernel, geometry, plan, convolution_kernels, first, last):
            block = blocks[: (stop - start) * plan["pixels"]]
            convolve(out=block)
            kernels.bias_act_pool(block, bias, activation, conv_h, conv_w, *pool, out[start:stop], code[start:stop], 1)

    run_row_ranges(compute, x.shape[0], _backend.get_num_threads(), plan["work"], plan["batch"])
    return out


def conv2d_pool_grad_into(x, kernel, dpooled, code, geometry, pool, dx, dkernel, dbias, backend=None):
    """Gradients of conv2d_pool_into from the pooled outputs' gradient dpooled and its code.

    dx may be None (no input gradient needed), dkernel and dbias None (a frozen layer), dbias None
    without a bias. Each batch's dense gradient is rebuilt from the winners in a reused block, then
    goes through the GEMMs of conv2d_grad_into. Big images go in bands, as conv2d_pool_into.
    """
    _check_windows(geometry, pool, dpooled)
    if _device.is_device(dpooled):
        return _nn_on_device.conv2d_pool_grad_into(x, kernel, dpooled, code, geometry, pool, dx, dkernel, dbias)
    bands = _bands(x, kernel, geometry, pool, dpooled)
    if bands is not None:
        return _grad_by_bands(x, kernel, dpooled, code, pool, dx, dkernel, dbias, backend, bands)
    bias_partials = {}  # float64 per row range, added in order
    _grad_into(x, kernel, dpooled, code, geometry, pool, dx, dkernel, backend,
               lambda first: bias_partials.setdefault(first, np.zeros(kernel.shape[3])))
    finish_bias(dbias, bias_partials)


def _grad_into(x, kernel, dpooled, code, geometry, pool, dx, dkernel, backend, bias_sums):
    """conv2d_pool_grad_into on the host, unbanded, but for the bias: the gradients that pass the
    pooling are added to bias_sums(first), a float64 array (first: where the thread's range of
    images starts)."""
    kernels, _ = _backend.kernels("conv", backend)
    out_channels = kernel.shape[3]
    conv_h, conv_w = geometry[2]

    def gradient_rows(first, start, stop, rows):
        block = scratch("conv pool dblock", (rows.stop - rows.start, out_channels), dpooled.dtype)
        kernels.unpool(dpooled[start:stop], code[start:stop], conv_h, conv_w, *pool, block, bias_sums(first), 1)
        return block

    _backward_gemms(x, kernel, geometry, dx, dkernel, backend, gradient_rows)


def _grad_by_bands(x, kernel, dpooled, code, pool, dx, dkernel, dbias, backend, bands):
    """conv2d_pool_grad_into band by band (fastdl.ops.conv._Bands.gradients); the bias
    gradient's float64 column sums by the same blocks, added in order."""
    backend = _calling_threads_backend(backend)
    bias_partials = {}  # by block

    def band(image, rows, conv_rows, geometry, block, band_dx, band_dkernel):
        pooled = _pooled_rows(conv_rows, pool)
        bias_sums = bias_partials.setdefault(block, np.zeros(kernel.shape[3]))
        _grad_into(x[image : image + 1, rows], kernel, dpooled[image : image + 1, pooled],
                   code[image : image + 1, pooled], geometry, pool, band_dx, band_dkernel, backend,
                   lambda _: bias_sums)

    bands.gradients(band, kernel, dx, dkernel, "conv pool")
    finish_bias(dbias, bias_partials)
