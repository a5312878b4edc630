"""Stride-1 convolutions with few filters as one GEMM per batch into per-tap products (kn2row).

im2col's GEMM is (pixels, kh kw in) @ (kh kw in, filters): with a handful of filters (a layer
that makes an image's 1 or 3 channels from 128) it is too thin for BLAS, and its patch matrix
is kh kw times the input. kn2row multiplies each input pixel by every tap instead,
Z = x (pixels, in) @ K (in, kh kw filters), and adds each output pixel's taps from its
neighbours' rows of Z (kernel shift_sum): the same multiplications, in a GEMM kh kw times wider,
without a patch matrix. The backward pass runs the same way round: the output gradient's values
go to the rows of the input pixels they touch (shift_spread, the adjoint of shift_sum), then
dx = dZ @ K^T and dK = x^T @ dZ, no col2im.
"""

import numpy as np

from fastdl._parallel import scratch

# Layers with fewer filters than this (and fewer than input channels) take kn2row.
MAX_FILTERS = 16
# Bytes of per-tap products per thread and batch, as conv.PATCH_BYTES.
BATCH_BYTES = 2 << 20


def fits(kernel_shape, strides):
    """Whether a convolution with this kernel (kh, kw, in, out) and strides takes kn2row: stride 1,
    more than one tap, and fewer filters than MAX_FILTERS and than input channels."""
    kh, kw, in_channels, filters = kernel_shape
    return tuple(strides) == (1, 1) and kh * kw > 1 and filters < min(MAX_FILTERS, in_channels)


def batch_size(x_shape, kernel_shape, dtype):
    """Images per batch so that one batch's per-tap products take up to BATCH_BYTES (at least one)."""
    kh, kw, _, filters = kernel_shape
    per_image = x_shape[1] * x_shape[2] * kh * kw * filters * np.dtype(dtype).itemsize
    return max(1, BATCH_BYTES // per_image)


def tap_matrix(kernel):
    """K (in, kh kw filters): row c holds every tap's weights from input channel c, column
    (i kw + j) filters + f tap (i, j) of filter f."""
    kh, kw, in_channels, filters = kernel.shape
    return np.ascontiguousarray(kernel.transpose(2, 0, 1, 3).reshape(in_channels, kh * kw * filters))


def _products(images, taps):
    """This thread's buffer for the per-tap products (Z or dZ) of images (n, height, width, in):
    (n height width, taps) rows, and the same memory as (n, height, width, taps) images."""
    n_images, height, width, _ = images.shape
    rows = scratch("kn2row products", (n_images * height * width, taps), images.dtype)
    return rows, rows.reshape(n_images, height, width, taps)


def convolve_rows(images, matrix, geometry, kernel_shape, kernels, out):
    """out ((images) out_h out_w, filters) = the convolution of images (n, height, width, in) with
    the kernel whose tap_matrix is matrix, without a bias."""
    kh, kw, _, filters = kernel_shape
    (pad_top, pad_left), (out_h, out_w) = geometry[1:]
    z, z_images = _products(images, matrix.shape[1])
    np.dot(images.reshape(-1, images.shape[3]), matrix, out=z)
    kernels.shift_sum(z_images, kh, kw, pad_top, pad_left, out.reshape(len(images), out_h, out_w, filters), 1)
    return out


class Backward:
    """One batch of a kn2row convolution's backward pass (the interface of conv.py's _Im2colBackward):
    the output gradient spread to per-tap rows dZ, the kernel gradient x^T @ dZ, the input gradient
    dZ @ K^T."""

    def __init__(self, x, kernel, geometry, plan, dx, kernels):
        self.x, self.dx, self.kernels = x, dx, kernels
        self.kh, self.kw, in_channels, self.filters = kernel.shape
        (self.pad_top, self.pad_left), (self.out_h, self.out_w) = geometry[1:]
        self.matrix = tap_matrix(kernel)
        self.partial_shape = self.matrix.shape

    def __call__(self, start, stop, rows, gradient, out):
        images = self.x[start:stop]
        in_channels = images.shape[3]
        dz, dz_images = _products(images, self.matrix.shape[1])
        self.kernels.shift_spread(gradient.reshape(len(images), self.out_h, self.out_w, self.filters), self.kh,
                                  self.kw, self.pad_top, self.pad_left, dz_images, 1)
        if out is not None:
            np.dot(images.reshape(-1, in_channels).T, dz, out=out)
        if self.dx is not None:
            np.dot(dz, self.matrix.T, out=self.dx[start:stop].reshape(-1, in_channels))

    def kernel_gradient(self, total, out):
        """out (kh, kw, in, filters) from the summed x^T @ dZ (in, kh kw filters) of the batches."""
        in_channels = total.shape[0]
        np.copyto(out, total.reshape(in_channels, self.kh, self.kw, self.filters).transpose(1, 2, 0, 3))
