"""Winograd transform kernels (Cython); mirrors kernels/cpu/winograd.py and kernels/npy/winograd.py.

Two families: the fixed F(2x2, 3x3) transforms (winograd_input, winograd_output,
winograd_output_grad; fastdl/ops/_winograd.py), and tile_gather / tile_scatter, which apply any
small transform matrices to tiles (fastdl/ops/_toom_cook.py: F(4x4, 3x3) for 3x3 stride-1
convolutions and the sub-pixel transposed convolutions' phases).
"""

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc


# The fixed Winograd F(2x2, 3x3): a 3x3 convolution's 2x2 output tile from a 4x4 input tile d as
# A^T [(G g G^T) * (B^T d B)] A, 16 multiplications per tile and channel pair instead of 36. The
# transforms work on whole rows of channels, each step one loop that vectorises.


cdef inline void _plus(floating* out, const floating* a, const floating* b, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        out[i] = a[i] + b[i]


cdef inline void _minus(floating* out, const floating* a, const floating* b, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        out[i] = a[i] - b[i]


cdef inline void _plus_plus(
    floating* out, const floating* a, const floating* b, const floating* c, Py_ssize_t n,
) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        out[i] = a[i] + b[i] + c[i]


cdef inline void _minus_minus(
    floating* out, const floating* a, const floating* b, const floating* c, Py_ssize_t n,
) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        out[i] = a[i] - b[i] - c[i]


def winograd_input(
    const floating[:, :, :, ::1] x, Py_ssize_t pad_top, Py_ssize_t pad_left, Py_ssize_t tiles_h,
    Py_ssize_t tiles_w, floating[:, :, ::1] out, int n_threads,
):
    """Winograd F(2x2, 3x3) input tiles: out[4 a + b, t] = (B^T d B)[a, b] for the 4x4 window d of
    tile t (image, row, column in order) with top-left corner (2 row - pad_top, 2 column -
    pad_left), zeros outside x (a negative padding crops). x (n, height, width, channels); out
    (16, n * tiles_h * tiles_w, channels) of x's dtype.
    """
    cdef Py_ssize_t n_images = x.shape[0], height = x.shape[1], width = x.shape[2]
    cdef Py_ssize_t channels = x.shape[3]
    cdef Py_ssize_t n, ty, tx, t, k, a, b, h, w, c
    cdef floating* scratch = NULL
    cdef floating* tmp
    cdef const floating* d[16]
    cdef floating* v[16]
    cdef int failed = 0
    cdef int* failed_ptr = &failed
    if n_images == 0 or channels == 0:
        return
    with nogil, parallel(num_threads=n_threads):
        # Per-thread scratch: B^T d (16 rows of channels), then a row of zeros for the padding.
        scratch = <floating*> malloc(17 * channels * sizeof(floating))
        if scratch == NULL:
            failed_ptr[0] = 1
        else:
            for c in range(channels):
                scratch[16 * channels + c] = 0
        for n in prange(n_images, schedule="static"):
            if scratch == NULL:
                continue
            tmp = scratch
            for ty in range(tiles_h):
                for tx in range(tiles_w):
                    t = (n * tiles_h + ty) * tiles_w + tx
                    for k in range(16):
                        h = 2 * ty - pad_top + k // 4
                        w = 2 * tx - pad_left + k % 4
                        d[k] = &x[n, h, w, 0] if 0 <= h < height and 0 <= w < width else scratch + 16 * channels
                        v[k] = &out[k, t, 0]
                    for b in range(4):  # B^T d: rows
                        _minus(tmp + b * channels, d[b], d[8 + b], channels)
                        _plus(tmp + (4 + b) * channels, d[4 + b], d[8 + b], channels)
                        _minus(tmp + (8 + b) * channels, d[8 + b], d[4 + b], channels)
                        _minus(tmp + (12 + b) * channels, d[4 + b], d[12 + b], channels)
                    for a in range(4):  # (B^T d) B: columns
                        _minus(v[4 * a], tmp + (4 * a) * channels, tmp + (4 * a + 2) * channels, channels)
                        _plus(v[4 * a + 1], tmp + (4 * a + 1) * channels, tmp + (4 * a + 2) * channels, channels)
                        _minus(v[4 * a + 2], tmp + (4 * a + 2) * channels, tmp + (4 * a + 1) * channels, channels)
                        _minus(v[4 * a + 3], tmp + (4 * a + 1) * channels, tmp + (4 * a + 3) * channels, channels)
        free(scratch)
    if failed:
        raise MemoryError("winograd_input: no memory for the per-thread scratch")


def winograd_output(
    const floating[:, :, ::1] m, Py_ssize_t tiles_h, Py_ssize_t tiles_w, floating[:, :, :, ::1] out,
    int n_threads,
):
    """Winograd F(2x2, 3x3) output tiles: out[image, 2 row + i, 2 column + j] = (A^T m_t A)[i, j]
    for tile t of m (16, n * tiles_h * tiles_w, channels), cropped to out (n, out_h, out_w,
    channels) of m's dtype.
    """
    cdef Py_ssize_t n_images = out.shape[0], out_h = out.shape[1], out_w = out.shape[2]
    cdef Py_ssize_t channels = out.shape[3]
    cdef Py_ssize_t n, ty, tx, t, b, i, h, w
    cdef floating* scratch = NULL
    cdef floating* tmp
    cdef const floating* r[16]
    cdef floating* y[4]
    cdef int failed = 0
    cdef int* failed_ptr = &failed
    if n_images == 0 or channels == 0:
        return
    with nogil, parallel(num_threads=n_threads):
        # Per-thread scratch: A^T m (8 rows of channels), then 4 rows for output pixels that the
        # crop drops.
        scratch = <floating*> malloc(12 * channels * sizeof(floating))
        if scratch == NULL:
            failed_ptr[0] = 1
        for n in prange(n_images, schedule="static"):
            if scratch == NULL:
                continue
            tmp = scratch
            for ty in range(tiles_h):
                for tx in range(tiles_w):
                    t = (n * tiles_h + ty) * tiles_w + tx
                    for b in range(16):
                        r[b] = &m[b, t, 0]
                    for i in range(4):
                        h = 2 * ty + i // 2
                        w = 2 * tx + i % 2
                        y[i] = &out[n, h, w, 0] if h < out_h and w < out_w else scratch + (8 + i) * channels
                    for b in range(4):  # A^T m: rows
                        _plus_plus(tmp + b * channels, r[b], r[4 + b], r[8 + b], channels)
                        _minus_minus(tmp + (4 + b) * channels, r[4 + b], r[8 + b], r[12 + b], channels)
                    for i in range(2):  # (A^T m) A: columns
                        _plus_plus(y[2 * i], tmp + (4 * i) * channels, tmp + (4 * i + 1) * channels,
                                   tmp + (4 * i + 2) * channels, channels)
                        _minus_minus(y[2 * i + 1], tmp + (4 * i + 1) * channels, tmp + (4 * i + 2) * channels,
                                     tmp + (4 * i + 3) * channels, channels)
        free(scratch)
    if failed:
        raise MemoryError("winograd_output: no memory for the per-thread scratch")


cdef inline void _copy(floating* out, const floating* a, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        out[i] = a[i]


cdef inline void _negate(floating* out, const floating* a, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        out[i] = -a[i]


def winograd_output_grad(
    const floating[:, :, :, ::1] dout, Py_ssize_t tiles_h, Py_ssize_t tiles_w, floating[:, :, ::1] out,
    int n_threads,
):
    """The adjoint of winograd_output: out[4 a + b, t] = (A dy_t A^T)[a, b] for the 2x2 tile dy_t
    of dout (n, out_h, out_w, channels), zeros past its edge; out (16, n * tiles_h * tiles_w,
    channels) of dout's dtype.
    """
    cdef Py_ssize_t n_images = dout.shape[0], out_h = dout.shape[1], out_w = dout.shape[2]
    cdef Py_ssize_t channels = dout.shape[3]
    cdef Py_ssize_t n, ty, tx, t, i, j, k, h, w, c
    cdef floating* scratch = NULL
    cdef floating* tmp
    cdef const floating* dy[4]
    cdef floating* v[16]
    cdef int failed = 0
    cdef int* failed_ptr = &failed
    if n_images == 0 or channels == 0:
        return
    with nogil, parallel(num_threads=n_threads):
        # Per-thread scratch: A dy (8 rows of channels), then a row of zeros past the edge.
        scratch = <floating*> malloc(9 * channels * sizeof(floating))
        if scratch == NULL:
            failed_ptr[0] = 1
        else:
            for c in range(channels):
                scratch[8 * channels + c] = 0
        for n in prange(n_images, schedule="static"):
            if scratch == NULL:
                continue
            tmp = scratch
            for ty in range(tiles_h):
                for tx in range(tiles_w):
                    t = (n * tiles_h + ty) * tiles_w + tx
                    for i in range(4):
                        h = 2 * ty + i // 2
                        w = 2 * tx + i % 2
                        dy[i] = &dout[n, h, w, 0] if h < out_h and w < out_w else scratch + 8 * channels
                    for k in range(16):
                        v[k] = &out[k, t, 0]
                    for j in range(2):  # A dy: rows a = 0..3 of column j
                        _copy(tmp + j * channels, dy[j], channels)
                        _plus(tmp + (2 + j) * channels, dy[j], dy[2 + j], channels)
                        _minus(tmp + (4 + j) * channels, dy[j], dy[2 + j], channels)
                        _negate(tmp + (6 + j) * channels, dy[2 + j], channels)
                    for i in range(4):  # (A dy) A^T: columns
                        _copy(v[4 * i], tmp + (2 * i) * channels, channels)
                        _plus(v[4 * i + 1], tmp + (2 * i) * channels, tmp + (2 * i + 1) * channels, channels)
                        _minus(v[4 * i + 2], tmp + (2 * i) * channels, tmp + (2 * i + 1) * channels, channels)
                        _negate(v[4 * i + 3], tmp + (2 * i + 1) * channels, channels)
        free(scratch)
    if failed:
        raise MemoryError("winograd_output_grad: no memory for the per-thread scratch")


# Tiles of a Winograd transform with any small matrices, for fastdl/ops/_toom_cook.py's phases:
# F(4x4, 3x3) and its edge tiles (fastdl/ops/_winograd.py's LargeTiles) and the sub-pixel
# transposed convolution's (fastdl/ops/_subpixel.py). A grid (first, tile_step, pixel_step,
# tiles) along an axis places pixel i of tile t at first + t * tile_step + i * pixel_step.
# Each transform step adds whole rows of channels, skipping zero weights, in the Numba
# kernels' order (the same bits).


cdef inline void _zero(floating* out, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        out[i] = 0


cdef inline void _axpy(floating* out, floating weight, const floating* a, Py_ssize_t n, bint add) noexcept nogil:
    """out (+)= weight * a: a multiplication (and an addition) per entry, no fused multiply-add."""
    cdef Py_ssize_t i
    if add:
        for i in range(n):
            out[i] += weight * a[i]
    else:
        for i in range(n):
            out[i] = weight * a[i]


def tile_gather(
    const floating[:, :, :, ::1] x, const floating[:, ::1] left_y, const floating[:, ::1] left_x,
    const int64_t[::1] grid_y, const int64_t[::1] grid_x, floating[:, :, ::1] out, int n_threads,
):
    """Transformed tiles: out[a ax + b, t] = sum over i, j of left_y[a, i] left_x[b, j] x[n, h_i, w_j]
    for tile t = (n, ty, tx) in order, its window's pixels h_i, w_j on grid_y, grid_x (int64
    arrays (first, tile_step, pixel_step, tiles)), zeros outside x. x (n, height, width,
    channels); left_y (ay, window_h), left_x (ax, window_w) and out (ay * ax, n * tiles_y *
    tiles_x, channels) of x's dtype.
    """
    cdef Py_ssize_t n_images = x.shape[0], height = x.shape[1], width = x.shape[2]
    cdef Py_ssize_t channels = x.shape[3]
    cdef Py_ssize_t ay = left_y.shape[0], window_h = left_y.shape[1]
    cdef Py_ssize_t ax = left_x.shape[0], window_w = left_x.shape[1]
    cdef Py_ssize_t first_y, tile_step_y, pixel_step_y, tiles_y, first_x, tile_step_x, pixel_step_x, tiles_x
    cdef Py_ssize_t n, ty, tx, tile, i, j, a, b, h, w
    cdef Py_ssize_t size = ay * window_w * channels
    cdef bint added
    cdef floating weight
    cdef floating* scratch = NULL
    cdef floating* rows
    cdef floating* target
    cdef int failed = 0
    cdef int* failed_ptr = &failed
    if n_images == 0 or channels == 0:
        return
    first_y, tile_step_y, pixel_step_y, tiles_y = grid_y[0], grid_y[1], grid_y[2], grid_y[3]
    first_x, tile_step_x, pixel_step_x, tiles_x = grid_x[0], grid_x[1], grid_x[2], grid_x[3]
    if size == 0:
        size = 1  # malloc(0) may return NULL
    with nogil, parallel(num_threads=n_threads):
        # Per-thread scratch: left_y times the window (ay * window_w rows of channels).
        scratch = <floating*> malloc(size * sizeof(floating))
        if scratch == NULL:
            failed_ptr[0] = 1
        for n in prange(n_images, schedule="static"):
            if scratch == NULL:
                continue
            rows = scratch
            for ty in range(tiles_y):
                for tx in range(tiles_x):
                    tile = (n * tiles_y + ty) * tiles_x + tx
                    # Each row starts with its first term (not zeros plus it): a pass fewer.
                    for a in range(ay):
                        for j in range(window_w):
                            target = rows + (a * window_w + j) * channels
                            w = first_x + tx * tile_step_x + j * pixel_step_x
                            added = False
                            if 0 <= w < width:
                                for i in range(window_h):
                                    h = first_y + ty * tile_step_y + i * pixel_step_y
                                    weight = left_y[a, i]
                                    if weight != 0 and 0 <= h < height:
                                        _axpy(target, weight, &x[n, h, w, 0], channels, added)
                                        added = True
                            if not added:
                                _zero(target, channels)
                    for a in range(ay):
                        for b in range(ax):
                            target = &out[a * ax + b, tile, 0]
                            added = False
                            for j in range(window_w):
                                weight = left_x[b, j]
                                if weight != 0:
                                    _axpy(target, weight, rows + (a * window_w + j) * channels, channels, added)
                                    added = True
                            if not added:
                                _zero(target, channels)
        free(scratch)
    if failed:
        raise MemoryError("tile_gather: no memory for the per-thread scratch")


def tile_scatter(
    const floating[:, :, ::1] m, const floating[:, ::1] right_y, const floating[:, ::1] right_x,
    const int64_t[::1] grid_y, const int64_t[::1] grid_x, floating[:, :, :, ::1] out, bint accumulate,
    const floating[::1] bias, int activation, int n_threads,
):
    """The tiles back in place: out[n, h_i, w_j] (+)= sum over a, b of right_y[i, a] right_x[j, b]
    m[a ax + b, t] for tile t = (n, ty, tx), pixels on grid_y, grid_x as in tile_gather, those
    outside out dropped. Without accumulate, tiles must not overlap, and each pixel written starts
    from bias (channels,) (zeros for an empty bias) and ends, for activation 1, with the ReLU.
    m (ay * ax, n * tiles_y * tiles_x, channels); right_y (window_h, ay), right_x (window_w, ax),
    out (n, height, width, channels) and bias of m's dtype.
    """
    cdef Py_ssize_t n_images = out.shape[0], height = out.shape[1], width = out.shape[2]
    cdef Py_ssize_t channels = out.shape[3]
    cdef Py_ssize_t window_h = right_y.shape[0], ay = right_y.shape[1]
    cdef Py_ssize_t window_w = right_x.shape[0], ax = right_x.shape[1]
    cdef Py_ssize_t first_y, tile_step_y, pixel_step_y, tiles_y, first_x, tile_step_x, pixel_step_x, tiles_x
    cdef Py_ssize_t n, ty, tx, tile, i, j, a, b, h, w, c
    cdef Py_ssize_t size = ax * channels
    cdef bint has_bias = bias.shape[0] > 0
    cdef bint added
    cdef floating weight
    cdef floating* scratch = NULL
    cdef floating* cols
    cdef floating* target
    cdef int failed = 0
    cdef int* failed_ptr = &failed
    if n_images == 0 or channels == 0:
        return
    first_y, tile_step_y, pixel_step_y, tiles_y = grid_y[0], grid_y[1], grid_y[2], grid_y[3]
    first_x, tile_step_x, pixel_step_x, tiles_x = grid_x[0], grid_x[1], grid_x[2], grid_x[3]
    if size == 0:
        size = 1  # malloc(0) may return NULL
    with nogil, parallel(num_threads=n_threads):
        # Per-thread scratch: right_y's row i times the tile (ax rows of channels).
        scratch = <floating*> malloc(size * sizeof(floating))
        if scratch == NULL:
            failed_ptr[0] = 1
        for n in prange(n_images, schedule="static"):
            if scratch == NULL:
                continue
            cols = scratch
            # Row by row of out, left to right.
            for ty in range(tiles_y):
                for i in range(window_h):
                    h = first_y + ty * tile_step_y + i * pixel_step_y
                    if h < 0 or h >= height:
                        continue
                    for tx in range(tiles_x):
                        tile = (n * tiles_y + ty) * tiles_x + tx
                        for b in range(ax):
                            added = False
                            for a in range(ay):
                                weight = right_y[i, a]
                                if weight != 0:
                                    _axpy(cols + b * channels, weight, &m[a * ax + b, tile, 0], channels, added)
                                    added = True
                            if not added:
                                _zero(cols + b * channels, channels)
                        for j in range(window_w):
                            w = first_x + tx * tile_step_x + j * pixel_step_x
                            if w < 0 or w >= width:
                                continue
                            target = &out[n, h, w, 0]
                            added = accumulate
                            if has_bias and not accumulate:
                                for c in range(channels):
                                    target[c] = bias[c]
                                added = True
                            for b in range(ax):
                                weight = right_x[j, b]
                                if weight != 0:
                                    _axpy(target, weight, cols + b * channels, channels, added)
                                    added = True
                            if not added:
                                _zero(target, channels)
                            if activation == 1 and not accumulate:
                                for c in range(channels):
                                    if target[c] < 0:  # NaN stays NaN, as np.maximum
                                        target[c] = 0
        free(scratch)
    if failed:
        raise MemoryError("tile_scatter: no memory for the per-thread scratch")
