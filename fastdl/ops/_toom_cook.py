"""Winograd's minimal filtering F(m, r) on tiles of channels-last images, for any m and r.

Along each axis an m-pixel tile of outputs of a correlation with an r-tap kernel comes from an
(m + r - 1)-pixel window in m + r - 1 multiplications instead of m r: y = A^T [(G g) * (B^T d)],
with the matrices from a Toom-Cook construction (toom_cook). Two axes make a phase: the images'
windows go to transformed tiles V = B^T d B (kernel tile_gather), one GEMM per point of the
tiles multiplies them by the transformed kernel U = G g G^T, and M = A^T (V U) A goes back to
pixels (kernel tile_scatter). The backward pass takes the output gradient's tiles dM = A dY A^T
(tile_gather again) to the kernel gradient G^T (sum over tiles of V^T dM) G and to the input
gradient, the adjoint of the forward pass: B (dM U^T) B^T added into the overlapping windows of dx.

fastdl/ops/_subpixel.py makes a strided transposed convolution a set of such phases, one per
sub-image; fastdl/ops/_winograd.py makes a 3x3 stride-1 convolution a set of phases: 4-output
tiles and 1- or 2-output edge tiles (_winograd.LargeTiles).
"""

import functools
import itertools
import math
from fractions import Fraction

import numpy as np

from fastdl import backend as _backend
from fastdl._parallel import ELEMENTWISE_WORK, run_row_ranges, scratch, stacked_matmul
from fastdl.ops.dense import NO_BIAS

# Evaluation points of the Toom-Cook construction, after which comes infinity.
POINTS = (Fraction(0), Fraction(1), Fraction(-1), Fraction(1, 2), Fraction(-1, 2), Fraction(2), Fraction(-2))
# Bytes of transformed tiles per thread and batch.
BATCH_BYTES = 4 << 20


@functools.lru_cache(maxsize=None)
def toom_cook(m, r):
    """Winograd's F(m, r) matrices (A^T (m, a), G (a, r), B^T (a, a)), a = m + r - 1, float64:
    the correlation y_i = sum_u d_(i + u) g_u of an a-pixel window d with an r-tap kernel g is
    y = A^T [(G g) * (B^T d)].

    The linear convolution c = g * h of an r-tap and an m-tap sequence is V^-1 [(E_r g) * (E_m h)],
    with E_k the k-coefficient polynomials evaluated at a - 1 points and infinity (its leading
    coefficient) and V = E_a; the correlation is that map's transpose in h, so A^T = E_m^T,
    G = E_r and B^T = V^-T.
    """
    alpha = m + r - 1
    points = POINTS[: alpha - 1]

    def evaluation(k):
        rows = [[p**j for j in range(k)] for p in points]
        return rows + [[Fraction(int(j == k - 1)) for j in range(k)]]

    v = evaluation(alpha)
    # Invert V exactly (Gauss-Jordan on fractions): B^T = (V^-1)^T.
    inverse = [[Fraction(int(i == j)) for j in range(alpha)] for i in range(alpha)]
    rows = [list(row) for row in v]
    for col in range(alpha):
        pivot = next(i for i in range(col, alpha) if rows[i][col] != 0)
        rows[col], rows[pivot] = rows[pivot], rows[col]
        inverse[col], inverse[pivot] = inverse[pivot], inverse[col]
        scale = rows[col][col]
        rows[col] = [value / scale for value in rows[col]]
        inverse[col] = [value / scale for value in inverse[col]]
        for i in range(alpha):
            if i != col and rows[i][col] != 0:
                factor = rows[i][col]
                rows[i] = [a - factor * b for a, b in zip(rows[i], rows[col])]
                inverse[i] = [a - factor * b for a, b in zip(inverse[i], inverse[col])]
    b_t = [list(column) for column in zip(*inverse)]
    g = evaluation(r)
    # Scale each point's row of B^T to coprime integers and its row of G the other way, as Lavin
    # does: the input transforms (in the compute dtype) then add and subtract whole numbers, and
    # the fractions go to the kernel's transform, made once in float64.
    for k, row in enumerate(b_t):
        scale = Fraction(math.lcm(*(v.denominator for v in row)), math.gcd(*(v.numerator for v in row)))
        b_t[k] = [v * scale for v in row]
        g[k] = [v / scale for v in g[k]]
    a_t = np.array(evaluation(m), dtype=np.float64).T
    g = np.array(g, dtype=np.float64)
    b_t = np.array(b_t, dtype=np.float64)
    for matrix in (a_t, g, b_t):
        matrix.setflags(write=False)
    return a_t, g, b_t


class Axis:
    """One axis of a phase: output pixel first + stride c (c < length) is the correlation of the
    input pixels start + c, ..., start + c + r - 1 with the kernel's taps `taps` (in that order),
    in tiles of m outputs."""

    def __init__(self, taps, start, length, m, first=0, stride=1):
        self.taps, self.start, self.length, self.m = list(taps), start, length, m
        self.first, self.stride = first, stride
        self.r = len(self.taps)
        self.tiles = -(-length // m)
        self.a_t, self.g, self.b_t = toom_cook(m, self.r) if self.r else (None, None, None)

    @property
    def alpha(self):
        return self.m + self.r - 1

    def ones_point(self):
        """The point whose row of A (A^T's column) is all ones."""
        return next(p for p in range(self.alpha) if (self.a_t[:, p] == 1).all())

    def input_grid(self):
        """Tile windows on the input: alpha pixels from start + m t."""
        return np.array([self.start, self.m, 1, self.tiles], np.int64)

    def output_grid(self):
        """Tile outputs on the full output: m pixels, stride apart, from first + stride m t."""
        return np.array([self.first, self.stride * self.m, self.stride, self.tiles], np.int64)


class Phase:
    """Two axes: their transform matrices in the compute dtype, and their grids."""

    def __init__(self, axis_y, axis_x, dtype):
        self.y, self.x = axis_y, axis_x
        self.points = axis_y.alpha * axis_x.alpha
        self.tiles_per_image = axis_y.tiles * axis_x.tiles
        cast = functools.partial(np.ascontiguousarray, dtype=dtype)
        self.b_t = cast(axis_y.b_t), cast(axis_x.b_t)  # input windows -> tiles (gather)
        self.b = cast(axis_y.b_t.T), cast(axis_x.b_t.T)  # the adjoint (scatter)
        self.a_t = cast(axis_y.a_t), cast(axis_x.a_t)  # tiles -> outputs (scatter)
        self.a = cast(axis_y.a_t.T), cast(axis_x.a_t.T)  # output gradient -> tiles (gather)
        self.input_grids = axis_y.input_grid(), axis_x.input_grid()
        self.output_grids = axis_y.output_grid(), axis_x.output_grid()
        # The point evaluated at 1 along both axes: its row of A is all ones, so its tiles of
        # dM = A dY A^T hold each tile's sum of the output gradient (the bias' gradient).
        self.sum_point = axis_y.ones_point() * axis_x.alpha + axis_x.ones_point()

    def transform_kernel(self, kernel, out, channels, transposed=False):
        """out[:, channels] (points, in, filters) = G g G^T of the taps g (r_y, r_x, filters, in)
        of kernel, for the input channels `channels` (a slice), in float64 in the calling
        thread's scratch arrays (fresh ones cost more in page faults than the arithmetic); with
        transposed, out[:, :, channels] (points, filters, in): the same values, in the layout
        they are computed in."""
        g = kernel[:, :, :, channels][np.ix_(self.y.taps, self.x.taps)]
        r_y, r_x, filters, in_channels = g.shape
        rows = scratch("toom-cook kernel rows", (self.y.alpha, r_x, filters * in_channels), np.float64)
        np.matmul(self.y.g, g.reshape(r_y, -1), out=rows.reshape(self.y.alpha, -1))
        full = scratch("toom-cook kernel", (self.y.alpha, self.x.alpha, filters * in_channels), np.float64)
        np.matmul(self.x.g, rows, out=full)
        full = full.reshape(self.points, filters, in_channels)
        if transposed:
            out[:, :, channels] = full
        else:
            out[:, channels] = full.transpose(0, 2, 1)

    def kernel_gradient(self, du, dkernel, channels):
        """Scatter G^T du G (du (points, in, filters)) into dkernel's taps (kh, kw, filters, in),
        for the input channels `channels` (a slice), in float64 in the calling thread's scratch
        arrays."""
        du = du[:, channels]
        _, in_channels, filters = du.shape
        rows = scratch("toom-cook kernel rows", (self.y.r, self.x.alpha, in_channels * filters), np.float64)
        np.matmul(self.y.g.T, du.reshape(self.y.alpha, -1), out=rows.reshape(self.y.r, -1))
        full = scratch("toom-cook kernel", (self.y.r, self.x.r, in_channels * filters), np.float64)
        np.matmul(self.x.g.T, rows, out=full)
        dkernel[:, :, :, channels][np.ix_(self.y.taps, self.x.taps)] = full.reshape(
            self.y.r, self.x.r, in_channels, filters).transpose(0, 1, 3, 2)


class TransposedKernels(list):
    """Each phase's transformed kernel U as U^T (points, filters, in), C-contiguous: the input
    gradient's GEMMs dM U^T read it as it is. OpenBLAS multiplies by a transposed view up to 4x
    slower with the few rows (tiles) of a batch (measured here: 36 points of 8 tiles by 256 x 256
    channels, 2.1 against 0.44 ms), and gives the same bits where it has many."""


class Plan:
    """Phases over the same images and channels (a convolution's, or a transposed convolution's
    sub-images), and the images per batch."""

    def __init__(self, phases, channels, dtype):
        self.phases = list(phases)
        in_channels, filters = self.channels = tuple(channels)
        # Entries of one image's tiles and products in the largest phase.
        self._per_image = max(p.points * p.tiles_per_image for p in self.phases) * (in_channels + filters)
        self.batch = max(1, BATCH_BYTES // (self._per_image * np.dtype(dtype).itemsize))
        self.work = sum(p.points * p.tiles_per_image for p in self.phases) * in_channels * filters
        ends = list(itertools.accumulate(phase.points for phase in self.phases))
        self._phase_bounds = list(zip([0] + ends[:-1], ends))
        self.dtype = np.dtype(dtype)

    def _by_input_channels(self, func):
        """func(channels) for slices of the input channels, on fastdl's threads: the kernel's
        transforms, done once per call on the calling thread, would cost as much as the tiles'
        GEMMs on 16 cores."""
        in_channels, filters = self.channels
        work = 16 * ELEMENTWISE_WORK * sum(phase.points for phase in self.phases) * filters
        run_row_ranges(lambda first, last: func(slice(first, last)), in_channels, _backend.get_num_threads(), work)

    def transform_kernels(self, kernel, transposed=False):
        """Each phase's transformed kernel (points, in, filters) of kernel (kh, kw, filters, in), in
        the op's dtype; with transposed, a TransposedKernels of (points, filters, in) arrays (the
        input gradient's, for backward)."""
        filters, in_channels = kernel.shape[2:]
        shape = (filters, in_channels) if transposed else (in_channels, filters)
        transformed = [np.empty((phase.points, *shape), self.dtype) for phase in self.phases]

        def compute(channels):
            for phase, out in zip(self.phases, transformed):
                phase.transform_kernel(kernel, out, channels, transposed)

        self._by_input_channels(compute)
        return TransposedKernels(transformed) if transposed else transformed

    def _buffers(self, phase, n_images, name):
        in_channels, filters = self.channels
        n_tiles = n_images * phase.tiles_per_image
        size = phase.points * n_tiles
        work = scratch(name, self.batch * self._per_image, self.dtype)
        tiles = work[: size * in_channels].reshape(phase.points, n_tiles, in_channels)
        products = work[size * in_channels : size * (in_channels + filters)].reshape(phase.points, n_tiles, filters)
        return tiles, products

    def _input_tiles(self, phase, images, tiles, kernels):
        """The transformed input tiles V of `images` for `phase`: the images' own rows when its
        tiles are their pixels (one tap each way, windows on the pixels), else gathered into tiles."""
        if phase.points == 1 and [grid.tolist() for grid in phase.input_grids] == [
                [0, 1, 1, images.shape[1]], [0, 1, 1, images.shape[2]]]:
            return images.reshape(1, -1, images.shape[3])
        kernels.tile_gather(images, *phase.b_t, *phase.input_grids, tiles, 1)
        return tiles

    def forward(self, images, transformed, out, bias, activation, kernels):
        """out (n, out_h, out_w, filters) = the phases' correlations of images (n, h, w, in),
        plus bias (filters,) (empty: none), then the ReLU for activation 1 (other activations are
        the caller's)."""
        for phase, u in zip(self.phases, transformed):
            tiles, products = self._buffers(phase, len(images), "toom-cook tiles")
            stacked_matmul(self._input_tiles(phase, images, tiles, kernels), u, products)
            kernels.tile_scatter(products, *phase.a_t, *phase.output_grids, out, False, bias, activation, 1)

    def by_phase(self, flat):
        """flat (points over all phases, in, filters) cut into each phase's (points, in, filters)."""
        return [flat[start:stop] for start, stop in self._phase_bounds]

    @property
    def partial_shape(self):
        """The shape of the kernel gradient's sums in the transformed space, all phases together."""
        return (sum(phase.points for phase in self.phases), *self.channels)

    def backward(self, images, dout, transformed, partial, dx, bias_sum, kernels, add=True):
        """Add each phase's sum of V^T dM over this batch's tiles into partial (partial_shape), or
        write it there without add, unless partial is None (a frozen layer's); add the batch's sum
        of dout over its pixels into bias_sum (filters,) float64 unless it is None; write the
        batch's input gradient into dx (n, h, w, in) unless it is None (then transformed, the
        kernels' transforms, may be None too). transformed is transform_kernels' list, in either
        layout: a TransposedKernels (transposed=True) spares the input gradient's GEMMs a
        transposed operand."""
        if dx is not None:
            dx[...] = 0
        for k, phase in enumerate(self.phases):
            tiles, dtiles = self._buffers(phase, len(images), "toom-cook tiles")
            kernels.tile_gather(dout, *phase.a, *phase.output_grids, dtiles, 1)
            if bias_sum is not None:  # a sum over the tiles' sums instead of all of dout
                bias_sum += dtiles[phase.sum_point].sum(axis=0, dtype=np.float64)
            if partial is not None:
                sums = self.by_phase(partial)[k]
                product = scratch("toom-cook kernel product", sums.shape, self.dtype) if add else sums
                stacked_matmul(self._input_tiles(phase, images, tiles, kernels).transpose(0, 2, 1), dtiles, product)
                if add:
                    sums += product
            if dx is not None:
                # dV = dM U^T, in the place of the spent tiles V, then B dV B^T added into dx.
                u = transformed[k]
                stacked_matmul(dtiles, u if isinstance(transformed, TransposedKernels) else u.transpose(0, 2, 1), tiles)
                kernels.tile_scatter(tiles, *phase.b, *phase.input_grids, dx, True, NO_BIAS[self.dtype], 0, 1)

    def kernel_gradient(self, total, dkernel):
        """dkernel (kh, kw, filters, in) from the summed partials (partial_shape) of all batches."""
        def compute(channels):
            for phase, sums in zip(self.phases, self.by_phase(total)):
                phase.kernel_gradient(sums, dkernel, channels)

        self._by_input_channels(compute)
