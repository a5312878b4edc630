"""Transposed 2-D convolution (Keras' Conv2DTranspose), channels-last, on the convolution kernels.

A transposed convolution is the input gradient of the convolution that maps its (n, out_h, out_w,
filters) output back onto its (n, height, width, in_channels) input, with the Keras
Conv2DTranspose kernel (kh, kw, filters, in_channels) as that convolution's kernel. So the forward
pass is one GEMM per batch of images, x @ kernel_matrix^T, whose rows (each input pixel's
contributions to its kh x kw window of outputs) col2im adds into place; the gradients are that
convolution's forward pass (dx = conv2d(dout, kernel)) and its kernel gradient (patches(dout)^T
@ x), both from one im2col of dout per batch.

Strided kernels of up to three strides with 16 channels or more (the decoders' 3x3 at stride 2)
take another route, fastdl/ops/_subpixel.py: the output splits into stride_h x stride_w
interleaved sub-images, each a stride-1 convolution with a part of the kernel, each by Winograd
(44% fewer multiplications than the GEMM for 3x3 at stride 2), the bias and a ReLU added by the
kernel that writes the output.
"""

import numpy as np

from fastdl import _device
from fastdl import backend as _backend
from fastdl._parallel import run_row_ranges, scratch, sum_in_order
from fastdl.ops import _nn_on_device, _subpixel
from fastdl.ops._nn_on_device import Out, host_call
from fastdl._validation import as_compute_all, check_array, check_pair
from fastdl.ops.conv import (
    _geometry, batch_size, conv2d_grad_into, conv2d_into, finish_bias, grad_arrays, min_batches, patches_of,
)
from fastdl.ops.dense import NO_BIAS, activation_alpha, add_column_sums


def transpose_output_length(size, kernel, stride, padding):
    """Keras' deconv_output_length without output_padding: the transposed convolution's output size."""
    if padding == "same":
        return size * stride
    return size * stride + max(kernel - stride, 0)


def _check_padding(padding):
    if not isinstance(padding, str):
        raise TypeError(f'padding must be "valid" or "same", got {padding!r}')
    if padding.lower() not in ("valid", "same"):
        raise ValueError(f'padding must be "valid" or "same", got {padding!r}')
    return padding.lower()


def transpose_geometry(x_shape, kernel_shape, strides, padding):
    """((out_h, out_w), args, flipped): the output size; the im2col/col2im arguments (kh, kw,
    stride_h, stride_w, pad_top, pad_left, height, width) of the convolution whose input gradient
    this is; and at stride 1, the geometry of the equivalent convolution of x with the flipped
    kernel (fastdl.ops.conv._geometry's, explicit padding), else None."""
    padding = _check_padding(padding)
    _, height, width, _ = x_shape
    kh, kw, filters, in_channels = kernel_shape
    stride_h, stride_w = check_pair(strides, "strides")
    out_h = transpose_output_length(height, kh, stride_h, padding)
    out_w = transpose_output_length(width, kw, stride_w, padding)
    strides_hw, (pad_top, pad_left), back = _geometry((1, out_h, out_w, filters), kernel_shape, strides, padding)
    # Keras' output length always maps back onto the input under the same padding rule.
    assert back == (height, width), (back, height, width)
    flipped = None
    if strides_hw == (1, 1):
        # Output pixel o sums x[o + pad - t] * kernel[t] over taps t: x correlated with the flipped
        # kernel, padded by kh - 1 - pad_top above and whatever makes out_h outputs below.
        top, left = kh - 1 - pad_top, kw - 1 - pad_left
        pads = ((top, out_h - height - top + kh - 1), (left, out_w - width - left + kw - 1))
        flipped = _geometry(x_shape, (kh, kw, in_channels, filters), 1, pads)
        assert flipped[2] == (out_h, out_w), (flipped, out_h, out_w)
    return (out_h, out_w), (kh, kw, *strides_hw, pad_top, pad_left, height, width), flipped


def _flip(kernel):
    """kernel (kh, kw, a, b) turned by 180 degrees with its channel axes swapped: (kh, kw, b, a), C-contiguous."""
    return np.ascontiguousarray(kernel[::-1, ::-1].transpose(0, 1, 3, 2))


def _check_transpose(x, kernel, strides, padding):
    x = check_array(x, "x", 4, "(n_images, height, width, in_channels)")
    kernel = check_array(kernel, "kernel", 4, "(kernel_h, kernel_w, filters, in_channels)")
    if x.shape[3] != kernel.shape[3]:
        raise ValueError(
            f"x has {x.shape[3]} channels but kernel (kernel_h, kernel_w, filters, in_channels) expects "
            f"{kernel.shape[3]}: x {x.shape}, kernel {kernel.shape}"
        )
    return x, kernel, transpose_geometry(x.shape, kernel.shape, strides, padding)


def _plan(x_shape, kernel_shape, geometry, dtype):
    """What the per-thread workers share: the sizes, whether x's rows are the patch matrix, the batch."""
    kh, kw, filters, in_channels = kernel_shape
    args = geometry[1]
    pixels = x_shape[1] * x_shape[2]
    patch_cols = kh * kw * filters
    # A 1x1 kernel at stride 1 maps pixels onto pixels: no col2im (forward) or im2col (backward).
    direct = (kh, kw, args[2], args[3]) == (1, 1, 1, 1)
    subpixel = None
    if _subpixel.fits(x_shape, kernel_shape, args, geometry[0]):
        subpixel = _subpixel.plan(kernel_shape, args, geometry[0], dtype)
        batch, work = subpixel.batch, subpixel.work
    else:
        batch, work = batch_size(pixels, patch_cols, dtype), pixels * patch_cols * in_channels
    batch = min_batches(batch, x_shape[0])
    return dict(pixels=pixels, patch_cols=patch_cols, direct=direct, batch=batch, args=args, subpixel=subpixel,
                out_pixels=geometry[0][0] * geometry[0][1], work=work)


def conv2d_transpose(x, kernel, bias=None, strides=1, padding="valid", backend=None):
    """Transposed 2-D convolution (Keras' Conv2DTranspose) of channels-last images.

    The input gradient of conv2d with the same kernel, strides and padding: each input pixel adds
    its values times the kernel into a kh x kw window of the output, windows `strides` apart.

    Parameters
    ----------
    x : array-like of shape (n_images, height, width, in_channels)
    kernel : array-like of shape (kernel_h, kernel_w, filters, in_channels)
        Keras' Conv2DTranspose layout (filters before in_channels).
    bias : array-like of shape (filters,), optional
    strides : int or (int, int), default 1
    padding : {"valid", "same"}, default "valid"
        Output size height * stride ("same", the kernel's overhang cropped as TensorFlow does:
        max(kernel_h - stride, 0) // 2 rows at the top, the rest at the bottom) or
        height * stride + max(kernel_h - stride, 0) ("valid"); the same for the width.
    backend : str, optional
        "auto", "numpy", "numba", "cython", "cuda" (None: the process default).

    Returns
    -------
    ndarray of shape (n_images, out_h, out_w, filters)
        float32 when the inputs are float32, float64 otherwise.
    """
    x, kernel, geometry = _check_transpose(x, kernel, strides, padding)
    if bias is not None:
        bias = check_array(bias, "bias", 1, "(filters,)")
        if bias.shape[0] != kernel.shape[2]:
            raise ValueError(f"bias must have shape ({kernel.shape[2]},) for kernel {kernel.shape} "
                             f"(kernel_h, kernel_w, filters, in_channels), got {bias.shape}")
    on_cuda = _backend.resolve("conv", backend) == "cuda"  # an unknown or unavailable backend fails here
    dtype, x, kernel, bias = as_compute_all(x, kernel, bias)
    out = np.empty((x.shape[0], *geometry[0], kernel.shape[2]), dtype=dtype)
    if on_cuda:
        return host_call(conv2d_transpose_into, x, kernel, bias, geometry, Out(out))
    return conv2d_transpose_into(x, kernel, bias, geometry, out, backend=backend)


def conv2d_transpose_into(x, kernel, bias, geometry, out, activation=0, backend=None, alpha=None, kept=None):
    """conv2d_transpose into `out` for checked arrays, with the bias and an activation fused; returns out.

    As fastdl.ops.conv.conv2d_into: x, kernel, bias (or None) and out C-contiguous and of one
    float dtype, geometry from transpose_geometry, activation a code of fastdl.ops.dense.ACTIVATIONS,
    applied with the bias to each batch of images while its output is still in cache (alpha: None
    for the activation's default); kept: a fastdl.ops.conv.KeptTransform for the kernel's transform.
    """
    alpha = activation_alpha(activation, alpha)
    if _device.is_device(out):
        return _nn_on_device.conv2d_transpose_into(x, kernel, bias, geometry, out, activation, alpha)
    if geometry[2] is not None:  # stride 1: a convolution (Winograd's for 3x3 kernels), bias and activation fused
        return conv2d_into(x, _flip(kernel), bias, geometry[2], out, activation, backend, alpha, kept)
    kernels, _ = _backend.kernels("conv", backend)
    winograd_kernels, _ = _backend.kernels("winograd", backend)
    dense_kernels, _ = _backend.kernels("dense", backend)
    dtype = out.dtype
    filters = kernel.shape[2]
    plan = _plan(x.shape, kernel.shape, geometry, dtype)
    pixels, out_pixels, batch = plan["pixels"], plan["out_pixels"], plan["batch"]
    weights = kernel.reshape(-1, kernel.shape[3]).T  # (in_channels, kh * kw * filters)
    x_rows = x.reshape(-1, x.shape[3])
    out_rows = out.reshape(-1, filters)
    epilogue = bool(activation) or bias is not None
    bias = NO_BIAS[dtype] if bias is None else bias
    subpixel = plan["subpixel"]
    transformed = None
    if subpixel:
        transformed = subpixel.transform_kernels(kernel) if kept is None else \
            kept.get(kernel, ("subpixel", geometry), lambda: subpixel.transform_kernels(kernel))

    def compute(first, last):
        for start in range(first, last, batch):
            stop = min(last, start + batch)
            rows = out_rows[start * out_pixels : stop * out_pixels]
            if subpixel:  # the bias and a ReLU added by the kernel that writes the output
                subpixel.forward(x[start:stop], transformed, out[start:stop], bias, int(activation == 1),
                                 winograd_kernels)
                if activation > 1:
                    dense_kernels.bias_activation(rows, NO_BIAS[dtype], activation, dtype.type(alpha), 1)
            else:
                if plan["direct"]:
                    np.dot(x_rows[start * pixels : stop * pixels], weights, out=rows)
                else:
                    patches = scratch("conv patches", ((stop - start) * pixels, plan["patch_cols"]), dtype)
                    np.dot(x_rows[start * pixels : stop * pixels], weights, out=patches)
                    kernels.col2im(patches, out[start:stop], *plan["args"], 1)
                if epilogue:
                    dense_kernels.bias_activation(rows, bias, activation, dtype.type(alpha), 1)

    run_row_ranges(compute, x.shape[0], _backend.get_num_threads(), plan["work"], batch)
    return out


def conv2d_transpose_grad(x, kernel, dout, strides=1, padding="valid", backend=None):
    """Gradients of conv2d_transpose with respect to its input, kernel and bias.

    Parameters
    ----------
    x : array-like of shape (n_images, height, width, in_channels)
    kernel : array-like of shape (kernel_h, kernel_w, filters, in_channels)
    dout : array-like of shape (n_images, out_h, out_w, filters)
        Gradient of the loss with respect to conv2d_transpose's output.
    strides, padding, backend
        As in `conv2d_transpose`.

    Returns
    -------
    dx : ndarray of shape (n_images, height, width, in_channels)
        conv2d(dout, kernel, strides=strides, padding=padding).
    dkernel : ndarray of shape (kernel_h, kernel_w, filters, in_channels)
    dbias : ndarray of shape (filters,)
        float32 when the inputs are float32, float64 otherwise.

    Notes
    -----
    dkernel and dbias are summed over images in a fixed order for a given thread count: each
    thread adds its batches' patches(dout)^T @ x (and dout's column sums, in float64), and the
    threads' sums are added in order.
    """
    x, kernel, geometry = _check_transpose(x, kernel, strides, padding)
    x, kernel, dout, dx, dkernel, dbias = grad_arrays(x, kernel, dout, geometry[0], kernel.shape[2], "filters",
                                                      backend)
    if _backend.resolve("conv", backend) == "cuda":
        return host_call(conv2d_transpose_grad_into, x, kernel, dout, geometry, Out(dx), Out(dkernel), Out(dbias))
    conv2d_transpose_grad_into(x, kernel, dout, geometry, dx, dkernel, dbias, backend=backend)
    return dx, dkernel, dbias


def conv2d_transpose_grad_into(x, kernel, dout, geometry, dx, dkernel, dbias, backend=None):
    """conv2d_transpose_grad into given arrays, for callers that have checked them (as conv2d_transpose_into).

    dx may be None when no one needs the input's gradient (a model's first layer), dkernel and dbias
    None when no one needs the weights' (a frozen layer), dbias None without a bias.
    """
    if _device.is_device(dout):
        return _nn_on_device.conv2d_transpose_grad_into(x, kernel, dout, geometry, dx, dkernel, dbias)
    if x.shape[0] == 0:
        for gradient in (dkernel, dbias):
            if gradient is not None:
                gradient[...] = 0
        return
    if geometry[2] is not None:  # stride 1: the gradients of the convolution with the flipped kernel
        flipped = _flip(kernel)
        dflipped = None if dkernel is None else scratch("conv transpose dkernel", flipped.shape, dkernel.dtype)
        conv2d_grad_into(x, flipped, dout, geometry[2], dx, dflipped, dbias, backend)
        if dkernel is not None:
            np.copyto(dkernel, _flip(dflipped))
        return
    kernels, _ = _backend.kernels("conv", backend)
    winograd_kernels, _ = _backend.kernels("winograd", backend)
    dtype = x.dtype
    filters, in_channels = kernel.shape[2:]
    plan = _plan(x.shape, kernel.shape, geometry, dtype)
    pixels, out_pixels, batch = plan["pixels"], plan["out_pixels"], plan["batch"]
    kernel_matrix = kernel.reshape(-1, in_channels)
    x_rows = x.reshape(-1, in_channels)
    dx_rows = None if dx is None else dx.reshape(-1, in_channels)
    dout_rows = dout.reshape(-1, filters)
    subpixel = plan["subpixel"]
    transformed = subpixel.transform_kernels(kernel, transposed=True) if subpixel and dx is not None else None
    partial_shape = subpixel.partial_shape if subpixel else kernel_matrix.shape
    partials, bias_partials = {}, {}

    def compute(first, last):
        partial = None
        if dkernel is not None:
            partial = np.zeros(partial_shape, dtype) if subpixel else np.empty(partial_shape, dtype)
            product = scratch("conv transpose dkernel product", partial_shape, dtype)
        bias_sum = np.zeros(filters)
        for start in range(first, last, batch):
            stop = min(last, start + batch)
            if subpixel:
                subpixel.backward(x[start:stop], dout[start:stop], transformed, partial,
                                  None if dx is None else dx[start:stop], None if dbias is None else bias_sum,
                                  winograd_kernels)
                continue
            rows = slice(start * pixels, stop * pixels)
            patches = patches_of(dout, kernels, plan, start, stop)
            if dx_rows is not None:
                np.dot(patches, kernel_matrix, out=dx_rows[rows])
            if partial is not None:
                np.dot(patches.T, x_rows[rows], out=partial if start == first else product)
                if start != first:
                    partial += product
            if dbias is not None:  # each batch's column sums (the sub-pixel path sums its tiles' sums)
                add_column_sums(dout_rows[start * out_pixels : stop * out_pixels], bias_sum)
        partials[first], bias_partials[first] = partial, bias_sum

    gradients = (dx is not None) + (dkernel is not None)
    run_row_ranges(compute, x.shape[0], _backend.get_num_threads(), gradients * plan["work"], batch)
    if dkernel is not None and subpixel:
        subpixel.kernel_gradient(sum_in_order(partials), dkernel)
    elif dkernel is not None:
        np.copyto(dkernel, sum_in_order(partials).reshape(kernel.shape))
    finish_bias(dbias, bias_partials)
