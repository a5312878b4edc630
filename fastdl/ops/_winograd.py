"""Winograd's F(2x2, 3x3) for 3x3 stride-1 convolutions, on a batch of images at a time.

A 2x2 output tile comes from a 4x4 input tile d as A^T [(G g G^T) * (B^T d B)] A: 16
multiplications per tile and channel pair instead of im2col's 36. The images' tiles are
transformed (kernels winograd_input), multiplied by the transformed kernel in 16 GEMMs, one per
tile position, and transformed back (winograd_output). The input gradient is the same
convolution of the output gradient with the flipped kernel; the kernel gradient is
G^T (sum over tiles of V^T dM) G, with dM = A dy A^T (winograd_output_grad).
"""

import numpy as np

from fastdl import backend as _backend
from fastdl._parallel import ELEMENTWISE_WORK, run_row_ranges, scratch

# Winograd for 3x3 stride-1 kernels with at least this many input and output channels: with
# fewer, its 16 GEMMs are too thin to gain (measured here: 1.6-2x faster from 32 channels on).
MIN_CHANNELS = 16
# ... and when its 2x2 output tiles cover at most this much more than the output: an odd size
# wastes a row and a column of tiles. Measured here (256 channels, fwd+bwd): a 7x7 output (8x8 of
# tiles, 1.31x) is still 1.4x faster than im2col, 5x5 (1.44x) 1.2x, 3x3 (1.78x) slower.
MAX_WASTE = 1.5
# Bytes of transformed tiles per thread and batch: bigger batches give the kernel gradient's
# GEMMs (whose inner dimension is the number of tiles) more to work with.
BATCH_BYTES = 4 << 20
# G applied to a 3-vector turned end for end is G's result with its first and last entries
# swapped: the tile positions (4 a + b) of a turned kernel's transform, in the kernel's transform.
_TURNED = np.array([4 * a + b for a in (3, 1, 2, 0) for b in (3, 1, 2, 0)])


def _tiles(out_h, out_w):
    return -(-out_h // 2), -(-out_w // 2)


def fits(kernel_shape, strides, out_hw):
    """Whether a convolution with this kernel (kh, kw, in, out), strides and output size takes Winograd."""
    kh, kw, in_channels, out_channels = kernel_shape
    tiles_h, tiles_w = _tiles(*out_hw)
    return ((kh, kw, *strides) == (3, 3, 1, 1) and min(in_channels, out_channels) >= MIN_CHANNELS
            and 4 * tiles_h * tiles_w <= MAX_WASTE * out_hw[0] * out_hw[1])


def batch_size(kernel_shape, out_hw, dtype):
    """Images per batch so that their transformed tiles and products take up to BATCH_BYTES."""
    tiles_h, tiles_w = _tiles(*out_hw)
    per_image = 16 * tiles_h * tiles_w * (kernel_shape[2] + kernel_shape[3]) * np.dtype(dtype).itemsize
    return max(1, BATCH_BYTES // per_image)


def _by_input_channels(func, in_channels, out_channels):
    """func(first, last) over ranges of the input channels, on fastdl's threads: the kernel's
    transforms, a few elementwise passes each, done once per call of a convolution on the
    calling thread would cost as much as its tiles on 16 cores."""
    run_row_ranges(func, in_channels, _backend.get_num_threads(), 32 * out_channels * ELEMENTWISE_WORK)


def transform_kernel(kernel, name):
    """G g G^T of each (3, 3) slice of kernel (3, 3, in, out), as (16, in, out) in kernel's dtype,
    in the calling thread's scratch array `name`."""
    _, _, in_channels, out_channels = kernel.shape
    rows = scratch(name + " rows", (4, 3, in_channels, out_channels), kernel.dtype)
    out = scratch(name, (4, 4, in_channels, out_channels), kernel.dtype)

    def compute(first, last):
        part = slice(first, last)
        _times_g(kernel[:, :, part], rows[:, :, part])  # G g
        _times_g(rows[:, :, part].transpose(1, 0, 2, 3), out[:, :, part].transpose(1, 0, 2, 3))  # (G g) G^T

    _by_input_channels(compute, in_channels, out_channels)
    return out.reshape(16, in_channels, out_channels)


def turned_kernel(transformed, name):
    """The transform of the kernel turned by 180 degrees with its input and output channels
    swapped (the input gradient's kernel), as a (16, out, in) view of the calling thread's scratch
    array `name`, from the kernel's own transform (16, in, out): the same bits as transforming the
    turned kernel, whose strided reads took five times as long."""
    out = scratch(name, transformed.shape, transformed.dtype)

    def compute(first, last):
        part = slice(first, last)
        for position, source in enumerate(_TURNED):
            out[position, part] = transformed[source, part]

    _by_input_channels(compute, transformed.shape[1], transformed.shape[2])
    return out.transpose(0, 2, 1)


def _times_g(g, out):
    """out = G g along the first axis (g (3, ...), out (4, ...)), in place and without temporaries;
    G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]."""
    out[0] = g[0]
    np.add(g[0], g[2], out=out[1])
    np.subtract(out[1], g[1], out=out[2])
    out[1] += g[1]
    out[1:3] *= 0.5
    out[3] = g[2]


def _times_g_transposed(u, out):
    """out = G^T u along the first axis (u (4, ...), out (3, ...)), in place: the adjoint of _times_g."""
    np.add(u[1], u[2], out=out[1])
    out[1] *= 0.5
    np.add(u[0], out[1], out=out[0])
    np.add(out[1], u[3], out=out[2])
    np.subtract(u[1], u[2], out=out[1])
    out[1] *= 0.5


def convolve(images, transformed, pad_top, pad_left, out, kernels, spent=None):
    """out (n, out_h, out_w, out_channels) = the stride-1 3x3 convolution of images (n, height,
    width, in_channels) whose kernel's Winograd transform is `transformed` (from transform_kernel),
    windows starting at (-pad_top, -pad_left); on the calling thread, in its scratch arrays or,
    when big enough, in `spent`: an array of out's dtype whose contents are no longer needed
    (memory that is still in cache)."""
    n_images, _, _, in_channels = images.shape
    _, out_h, out_w, out_channels = out.shape
    tiles_h, tiles_w = _tiles(out_h, out_w)
    n_tiles = n_images * tiles_h * tiles_w
    size = 16 * n_tiles * (in_channels + out_channels)
    if spent is None or spent.size < size:
        spent = scratch("winograd tiles", size, out.dtype)
    spent = spent.reshape(-1)
    tiles = spent[: 16 * n_tiles * in_channels].reshape(16, n_tiles, in_channels)
    products = spent[16 * n_tiles * in_channels : size].reshape(16, n_tiles, out_channels)
    kernels.winograd_input(images, pad_top, pad_left, tiles_h, tiles_w, tiles, 1)
    np.matmul(tiles, transformed, out=products)
    kernels.winograd_output(products, tiles_h, tiles_w, out, 1)


def convolve_rows(images, transformed, pad_top, pad_left, out_h, out_w, kernels, out):
    """convolve into rows `out` (pixels, out_channels) of the images' outputs."""
    convolve(images, transformed, pad_top, pad_left, out.reshape(len(images), out_h, out_w, -1), kernels)


class Backward:
    """One batch of a 3x3 stride-1 convolution's backward pass in Winograd's transformed space (the
    im2col counterpart is conv.py's _Im2colBackward, with the same interface).

    The kernel gradient is G^T (sum over tiles of V^T dM) G, with V the input tiles as in the
    forward pass and dM = A dy A^T the output gradient's tiles; the input gradient is the output
    gradient convolved with the kernel turned by 180 degrees, its input and output channels
    swapped, windows starting 2 - pad pixels before the gradient.
    """

    def __init__(self, x, kernel, geometry, plan, dx, kernels):
        self.x, self.dx, self.kernels = x, dx, kernels
        (self.pad_top, self.pad_left), (self.out_h, self.out_w) = geometry[1:]
        self.tiles_h, self.tiles_w = _tiles(self.out_h, self.out_w)
        self.partial_shape = (16, *kernel.shape[2:])
        if dx is not None:
            self.flipped = turned_kernel(transform_kernel(kernel, "winograd backward kernel"),
                                         "winograd flipped kernel")

    def __call__(self, start, stop, rows, gradient, out):
        in_channels, out_channels = self.partial_shape[1:]
        images = self.x[start:stop]
        gradient = gradient.reshape(stop - start, self.out_h, self.out_w, out_channels)
        n_tiles = (stop - start) * self.tiles_h * self.tiles_w
        # Big enough for the input gradient's tiles too (its output is the input's size).
        dx_tiles = (stop - start) * np.prod(_tiles(*self.x.shape[1:3]))
        work = scratch("winograd tiles", 16 * max(n_tiles, dx_tiles) * (in_channels + out_channels), out.dtype)
        tiles = work[: 16 * n_tiles * in_channels].reshape(16, n_tiles, in_channels)
        dtiles = work[16 * n_tiles * in_channels : 16 * n_tiles * (in_channels + out_channels)].reshape(
            16, n_tiles, out_channels)
        self.kernels.winograd_input(images, self.pad_top, self.pad_left, self.tiles_h, self.tiles_w, tiles, 1)
        self.kernels.winograd_output_grad(gradient, self.tiles_h, self.tiles_w, dtiles, 1)
        np.matmul(tiles.transpose(0, 2, 1), dtiles, out=out)
        if self.dx is not None:
            convolve(gradient, self.flipped, 2 - self.pad_top, 2 - self.pad_left, self.dx[start:stop], self.kernels,
                     spent=work)

    def kernel_gradient(self, total, out):
        """out (3, 3, in, out) = G^T total G, from the summed (16, in, out) products of the batches."""
        in_channels, out_channels = total.shape[1:]
        total = total.reshape(4, 4, in_channels, out_channels)
        rows = scratch("winograd gradient rows", (3, 4, in_channels, out_channels), total.dtype)

        def compute(first, last):
            part = slice(first, last)
            _times_g_transposed(total[:, :, part], rows[:, :, part])  # G^T dU
            _times_g_transposed(rows[:, :, part].transpose(1, 0, 2, 3), out[:, :, part].transpose(1, 0, 2, 3))

        _by_input_channels(compute, in_channels, out_channels)
