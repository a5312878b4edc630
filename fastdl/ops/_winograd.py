"""Winograd's F(2x2, 3x3) and F(4x4, 3x3) for 3x3 stride-1 convolutions, on a batch of images at a time.

A 2x2 output tile comes from a 4x4 input tile d as A^T [(G g G^T) * (B^T d B)] A: 16
multiplications per tile and channel pair instead of im2col's 36. The images' tiles are
transformed (kernels winograd_input), multiplied by the transformed kernel in 16 GEMMs, one per
tile position, and transformed back (winograd_output). The input gradient is the same
convolution of the output gradient with the flipped kernel; the kernel gradient is
G^T (sum over tiles of V^T dM) G, with dM = A dy A^T (winograd_output_grad).

A 4x4 output tile takes 36 multiplications (2.25 an output instead of 4), through the general
tiles of fastdl/ops/_toom_cook.py (LargeTiles): its GEMMs are 44% smaller and its transforms
cost more, so convolutions with many channels take it where its multiplications (with 2x2
tiles along edges that 4x4 ones would overhang by 2 or 3 pixels) are well below F(2x2)'s.
"""

import functools
import math

import numpy as np

from fastdl import backend as _backend
from fastdl import config
from fastdl._parallel import (ELEMENTWISE_WORK, STREAMED_VALUE_WORK, blocks, run_row_ranges, scratch,
                              single_threaded_blas, stacked_matmul)
from fastdl.ops import _toom_cook
from fastdl.ops.dense import NO_BIAS

# Winograd for 3x3 stride-1 kernels with at least this many input and output channels: with
# fewer, its 16 GEMMs are too thin to gain (measured here: 1.6-2x faster from 32 channels on).
MIN_CHANNELS = 16
# ... and when its 2x2 output tiles cover at most this much more than the output: an odd size
# wastes a row and a column of tiles. Measured here (256 channels, fwd+bwd): a 7x7 output (8x8 of
# tiles, 1.31x) is still 1.4x faster than im2col, 5x5 (1.44x) 1.2x, 3x3 (1.78x) slower.
MAX_WASTE = 1.5
# F(4x4, 3x3) with at least this many input and output channels, where its multiplications are at
# most LARGE_TILE_SHARE of F(2x2, 3x3)'s. Measured here (2 threads, float32, 128 images, "same"),
# forward / backward against F(2x2): 7x7 outputs of 256 -> 256 channels 1.35x / 1.24x faster
# (F(4x4)'s multiplications 0.56 of F(2x2)'s), 16x16 of 128 -> 128 1.24x / 1.26x (0.56), 28x28 of
# 64 -> 64 1.18x / 1.24x (0.56), 14x14 of 128 -> 128 about 1.08x / 1.0x (0.62: the thin GEMMs of
# its edge tiles); at 32 channels the clock CNN's step gained nothing (the transforms outweigh
# the smaller GEMMs). The rms error grows from 4e-7 to 3e-6 of the output's rms.
LARGE_TILE_CHANNELS = 64
LARGE_TILE_SHARE = 0.65
# ... and with at least two 4-output tiles along each axis (outputs of 7 or more): with one, every
# phase holds one tile per image and the phases' transformed kernels (points x in x out) outweigh
# the multiplications saved (5x5 outputs of 64 and 128 channels, 0.56 of F(2x2)'s: 1.3-1.6x slower).
LARGE_TILE_MIN_SIZE = 7
# Either of them only where a call's images save im2col at least MIN_SAVING multiply-adds (per
# channel pair) for each point of the transformed kernel beyond im2col's 9 taps: each of
# Winograd's GEMMs reads its point of the kernel (16 points for F(2x2), 36 to 100 for F(4x4)) for
# a batch's tiles, and with few images (a predict of one) that read outweighs the multiplications
# saved. Measured here (float32, in one process, review of the rule): the course CNN's predict of
# 1 or 2 images took 0.69-0.85 of the time it took by Winograd (28x28x1 inputs; 0.80-1.0 for
# 32x32x3), of 3 and more the same. On single layers (64 to 256 channels, 4x4 to 16x16 outputs, 1
# to 4 images, 1 and 2 threads, caches warm and flushed: 624 cases), its pick was within 10% of
# the faster path in 5 cases of 6 (a count of tiles in the largest phase did worse): it keeps
# Winograd on 4x4-5x5 outputs of 64 channels and 13x13-14x14 of 256 where im2col is 1.1-1.4x
# faster, and takes im2col on 9x9-11x11 of 128 where Winograd is 1.15-1.5x faster.
MIN_SAVING = 32
# Input channels per GEMM of F(4x4, 3x3)'s kernel transforms.
CHANNEL_BLOCK = 16
# Bytes of transformed tiles per thread and batch: bigger batches give the kernel gradient's
# GEMMs (whose inner dimension is the number of tiles) more to work with.
BATCH_BYTES = 4 << 20
POINTS = 16  # the points of F(2x2, 3x3): one 4x4 tile, one GEMM each
# G applied to a 3-vector turned end for end is G's result with its first and last entries
# swapped: the tile positions (4 a + b) of a turned kernel's transform, in the kernel's transform.
_TURNED = np.array([4 * a + b for a in (3, 1, 2, 0) for b in (3, 1, 2, 0)])


def _tiles(out_h, out_w):
    return -(-out_h // 2), -(-out_w // 2)


def fits(kernel_shape, strides, out_hw):
    """Whether a convolution with this kernel (kh, kw, in, out), strides and output size can take
    Winograd (never with FASTDL_WINOGRAD=0); it does where its images are enough (saves_enough)."""
    kh, kw, in_channels, out_channels = kernel_shape
    tiles_h, tiles_w = _tiles(*out_hw)
    return config.winograd() and ((kh, kw, *strides) == (3, 3, 1, 1) and min(in_channels, out_channels) >= MIN_CHANNELS
            and 4 * tiles_h * tiles_w <= MAX_WASTE * out_hw[0] * out_hw[1])


def _axis_tiles(size, pad):
    """The tiles of F(4x4, 3x3) along an axis of `size` outputs with `pad` pixels of padding before:
    4-output tiles (the last one cropped for a remainder of 3), then one tile of F(m, 3) for a
    remainder m of 1 or 2, which would waste half a 4-output tile or more.

    A tile of F(3, 3) for a remainder of 3 would save multiplications (a 7-pixel axis in 11 points,
    not 12) but made the 7x7 layers 1.6-1.9x slower (measured): its phases' transformed kernels
    (points x in x out) come to 3.4x the size, and each phase has one tile per image."""
    rest = size % 4
    fours = size // 4 + (rest == 3)
    axes = [_toom_cook.Axis(range(3), -pad, min(size, 4 * fours), 4)] if fours else []
    if rest in (1, 2):
        first = size - rest
        axes.append(_toom_cook.Axis(range(3), first - pad, rest, rest, first=first))
    return axes


@functools.lru_cache(maxsize=256)
def _multiplications(out_hw, large):
    """Multiplications per channel pair over an image's output of size out_hw: F(2x2, 3x3)'s, or
    with large tiles those of _axis_tiles' phases (points times tiles, a product over the axes)."""
    if not large:
        return math.prod(4 * -(-size // 2) for size in out_hw)
    return math.prod(sum(axis.alpha * axis.tiles for axis in _axis_tiles(size, 0)) for size in out_hw)


def large_tiles(kernel_shape, out_hw):
    """Whether a convolution that takes Winograd (fits) takes F(4x4, 3x3) rather than F(2x2, 3x3)."""
    return (min(kernel_shape[2:]) >= LARGE_TILE_CHANNELS and min(out_hw) >= LARGE_TILE_MIN_SIZE
            and _multiplications(out_hw, True) <= LARGE_TILE_SHARE * _multiplications(out_hw, False))


@functools.lru_cache(maxsize=256)
def _points(out_hw, large):
    """Points of the transformed kernel per channel pair: F(2x2, 3x3)'s 16, or with large tiles
    those of _axis_tiles' phases (each pair of axes' points, a product of their sums)."""
    if not large:
        return POINTS
    return math.prod(sum(axis.alpha for axis in _axis_tiles(size, 0)) for size in out_hw)


def saves_enough(n_images, out_hw, large):
    """Whether Winograd (with large tiles: F(4x4, 3x3)) saves a convolution of n_images images of
    out_hw outputs MIN_SAVING multiply-adds per channel pair for each kernel point it reads
    beyond im2col's 9."""
    saved = n_images * (9 * out_hw[0] * out_hw[1] - _multiplications(out_hw, large))
    return saved >= MIN_SAVING * (_points(out_hw, large) - 9)


def batch_size(kernel_shape, out_hw, dtype):
    """Images per batch so that their transformed tiles and products take up to BATCH_BYTES."""
    tiles_h, tiles_w = _tiles(*out_hw)
    per_image = POINTS * tiles_h * tiles_w * (kernel_shape[2] + kernel_shape[3]) * np.dtype(dtype).itemsize
    return max(1, BATCH_BYTES // per_image)


def _by_input_channels(func, in_channels, work_per_channel, align=1):
    """func(first, last) over ranges of the input channels (starting at multiples of align), on
    fastdl's threads: the kernel's transforms, done once per call of a convolution on the calling
    thread, would cost as much as its tiles on 16 cores."""
    run_row_ranges(func, in_channels, _backend.get_num_threads(), work_per_channel, align)


def _passes_work(out_channels):
    """The work per input channel of the F(2x2, 3x3) kernel transforms' elementwise passes (a few
    over each of the 16 points of every output channel)."""
    return 32 * out_channels * ELEMENTWISE_WORK


def _matmul_by_channels(matrix, source, out, transposed=False):
    """out (m, in, out) = matrix (m, k) @ source (k, in, out), on fastdl's threads by blocks of
    CHANNEL_BLOCK input channels (GEMMs of the same shapes for any thread count, so the same bits:
    BLAS may round a block's edge differently), with BLAS held to one thread even where one range
    runs on the calling thread: BLAS' own threads, once woken, spin beside fastdl's through the
    convolution that follows (measured here: a 1.8x slower layer on 2 cores).

    With transposed, out (m, out, in) gets the product with its last two axes swapped, by blocks
    of CHANNEL_BLOCK output channels, each gathered from source as (k, block, in) in a scratch
    array (reads of CHANNEL_BLOCK values in a row): the GEMMs then write out's rows as they are
    (measured here, 36 points of 256 x 256 channels on one thread: 2.7 ms, against 2.0 for the
    product alone and 3.9 with the product transposed afterwards)."""
    rows = len(matrix)
    in_channels, out_channels = source.shape[1:]

    def compute(first, last):
        for start, stop in blocks(first, last, CHANNEL_BLOCK):
            if transposed:
                block = scratch("winograd kernel block", (len(source), stop - start, in_channels), source.dtype)
                block[...] = source[:, :, start:stop].transpose(0, 2, 1)
            else:
                block = source[:, start:stop]
            np.matmul(matrix, block.reshape(len(source), -1), out=out[:, start:stop].reshape(rows, -1))

    split, other = (out_channels, in_channels) if transposed else (in_channels, out_channels)
    with single_threaded_blas():
        _by_input_channels(compute, split, STREAMED_VALUE_WORK * matrix.size * other, align=CHANNEL_BLOCK)


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

    _by_input_channels(compute, in_channels, _passes_work(out_channels))
    return out.reshape(POINTS, in_channels, out_channels)


def turned_kernel(transformed, name):
    """The transform of the kernel turned by 180 degrees with its input and output channels
    swapped (the input gradient's kernel), as (16, out, in) in the calling thread's scratch array
    `name`, from the kernel's own transform (16, in, out): the same bits as transforming the
    turned kernel, whose strided reads took five times as long. C-contiguous: OpenBLAS multiplies
    by a transposed view up to 4x slower with the few tiles of a batch (measured here: 16 points
    of 98 tiles by 32 x 32 channels, 0.058 against 0.033 ms)."""
    points, in_channels, out_channels = transformed.shape
    out = scratch(name, (points, out_channels, in_channels), transformed.dtype)

    def compute(first, last):
        part = slice(first, last)
        for position, source in enumerate(_TURNED):
            out[position, part] = transformed[source, :, part].T

    _by_input_channels(compute, out_channels, _passes_work(in_channels))
    return out


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
    size = POINTS * n_tiles * (in_channels + out_channels)
    if spent is None or spent.size < size:
        spent = scratch("winograd tiles", size, out.dtype)
    spent = spent.reshape(-1)
    tiles = spent[: POINTS * n_tiles * in_channels].reshape(POINTS, n_tiles, in_channels)
    products = spent[POINTS * n_tiles * in_channels : size].reshape(POINTS, n_tiles, out_channels)
    kernels.winograd_input(images, pad_top, pad_left, tiles_h, tiles_w, tiles, 1)
    stacked_matmul(tiles, transformed, products)
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
        self.partial_shape = (POINTS, *kernel.shape[2:])
        if dx is not None:
            self.flipped = turned_kernel(transform_kernel(kernel, "winograd backward kernel"),
                                         "winograd flipped kernel")

    def __call__(self, start, stop, rows, gradient, out):
        in_channels, out_channels = self.partial_shape[1:]
        images = self.x[start:stop]
        gradient = gradient.reshape(stop - start, self.out_h, self.out_w, out_channels)
        if out is None:  # the input gradient alone
            if self.dx is not None:
                convolve(gradient, self.flipped, 2 - self.pad_top, 2 - self.pad_left, self.dx[start:stop],
                         self.kernels)
            return
        n_tiles = (stop - start) * self.tiles_h * self.tiles_w
        # Big enough for the input gradient's tiles too (its output is the input's size).
        dx_tiles = (stop - start) * math.prod(_tiles(*self.x.shape[1:3]))
        work = scratch("winograd tiles", POINTS * max(n_tiles, dx_tiles) * (in_channels + out_channels), out.dtype)
        tiles = work[: POINTS * n_tiles * in_channels].reshape(POINTS, n_tiles, in_channels)
        dtiles = work[POINTS * n_tiles * in_channels : POINTS * n_tiles * (in_channels + out_channels)].reshape(
            POINTS, n_tiles, out_channels)
        self.kernels.winograd_input(images, self.pad_top, self.pad_left, self.tiles_h, self.tiles_w, tiles, 1)
        self.kernels.winograd_output_grad(gradient, self.tiles_h, self.tiles_w, dtiles, 1)
        stacked_matmul(tiles.transpose(0, 2, 1), dtiles, out)
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

        _by_input_channels(compute, in_channels, _passes_work(out_channels))


class LargeTiles:
    """F(4x4, 3x3) for one convolution: phases of fastdl/ops/_toom_cook.py, one for each pair of
    _axis_tiles (4-output tiles, and a 1- or 2-output one along an edge with 1 or 2 outputs left
    over), with the transforms, forward batches and backward steps that conv.py's other paths
    have. A 14x14 output takes 484 multiplications per channel pair this way, against 576 in 4x4
    tiles alone (covering 16x16) and 784 in 2x2 ones; a 13x13 output 441 (484 with 2-output edge
    tiles).

    The kernel's transforms and the kernel gradient are a GEMM each by the phases' G (x) G
    stacked (points x 9), on the (3, 3, in, out) layout as it is (the phases' own would transpose
    the channels twice): _matmul_by_channels.
    """

    def __init__(self, kernel_shape, geometry, dtype):
        (pad_top, pad_left), self.out_hw = geometry[1:]
        phases = [_toom_cook.Phase(axis_y, axis_x, dtype) for axis_y in _axis_tiles(self.out_hw[0], pad_top)
                  for axis_x in _axis_tiles(self.out_hw[1], pad_left)]
        self.tiles = _toom_cook.Plan(phases, kernel_shape[2:], dtype)
        self.batch = self.tiles.batch
        # (point, tap 3 a + b): G (x) G of each phase, the points of one after the other's.
        self._g_g = np.vstack([np.kron(phase.y.g, phase.x.g) for phase in phases]).astype(dtype)

    def transform_kernel(self, kernel, name, transposed=False):
        """G g G^T of kernel (3, 3, in, out) for each phase, (points, in, out) views of the calling
        thread's scratch array `name`, as the phases' passes take them; with transposed, a
        _toom_cook.TransposedKernels of (points, out, in) views (the input gradient's)."""
        in_channels, out_channels = kernel.shape[2:]
        shape = (out_channels, in_channels) if transposed else (in_channels, out_channels)
        out = scratch(name, (len(self._g_g), *shape), kernel.dtype)
        _matmul_by_channels(self._g_g, kernel.reshape(9, in_channels, out_channels), out, transposed)
        by_phase = self.tiles.by_phase(out)
        return _toom_cook.TransposedKernels(by_phase) if transposed else by_phase

    def convolve_rows(self, images, transformed, kernels, out):
        """out (pixels, out_channels) = the convolution of images (n, height, width, in_channels)."""
        out = out.reshape(len(images), *self.out_hw, -1)
        self.tiles.forward(images, transformed, out, NO_BIAS[out.dtype], 0, kernels)

    def kernel_gradient(self, total, out):
        """out (3, 3, in, out) = the sum over the phases of G^T total G, from the summed (points,
        in, out) products of the batches."""
        _matmul_by_channels(self._g_g.T, total, out.reshape(9, *total.shape[1:]))


@functools.lru_cache(maxsize=64)
def large_tiles_plan(kernel_shape, geometry, dtype):
    """LargeTiles for a convolution of this kernel shape, geometry and dtype, made once: a training
    step asks for each layer's twice, and making one takes up to 0.1 ms on the calling thread."""
    return LargeTiles(kernel_shape, geometry, dtype)


class LargeTilesBackward:
    """One batch of a convolution's backward pass by F(4x4, 3x3), with the interface of Backward."""

    def __init__(self, x, kernel, geometry, plan, dx, kernels):
        self.x, self.dx, self.kernels = x, dx, kernels
        self.large = plan["large_tiles"]
        self.transformed = None if dx is None else self.large.transform_kernel(kernel, "winograd backward kernel",
                                                                                transposed=True)
        self.partial_shape = self.large.tiles.partial_shape
        self.kernel_gradient = self.large.kernel_gradient

    def __call__(self, start, stop, rows, gradient, out):
        gradient = gradient.reshape(stop - start, *self.large.out_hw, -1)
        dx = None if self.dx is None else self.dx[start:stop]
        self.large.tiles.backward(self.x[start:stop], gradient, self.transformed, out, dx, None, self.kernels,
                                  add=False)
