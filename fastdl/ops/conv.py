"""2-D convolution, channels-last (Keras layout), as im2col + one BLAS GEMM per batch of images.

3x3 kernels at stride 1 between layers of many channels take Winograd's F(2x2, 3x3) or F(4x4,
3x3) instead (fastdl/ops/_winograd.py; not in a call of so few images that reading the
transformed kernel costs more than it saves, as a predict of one small image), stride-1
layers with few filters take kn2row, a GEMM into per-tap products (fastdl/ops/_kn2row.py), and
first layers of few taps a direct kernel, batch by batch in the same loops. Big images go in
horizontal bands of output rows (_Bands).
"""

import functools
import math
import numbers

import numpy as np

from fastdl import _device
from fastdl import backend as _backend
from fastdl._parallel import ELEMENTWISE_WORK, row_ranges, run_row_ranges, scratch, sum_in_order
from fastdl._validation import as_compute_all, check_array, check_pair
from fastdl.ops import _kn2row, _nn_on_device, _winograd
from fastdl.ops._nn_on_device import Out, host_call
from fastdl.ops.dense import NO_BIAS, activation_alpha, add_column_sums

# Bytes of patch matrix (im2col buffer) per thread: big enough for an efficient GEMM, small
# enough that a batch's patches are still in cache when the GEMM reads them.
PATCH_BYTES = 2 << 20
MIN_BATCHES = 16  # a convolution's images go in at least this many batches (when it has as many images)
# Kernels with at most DIRECT_MAX_TAPS taps (kh * kw * in_channels), and DIRECT_MIN_FILTERS or
# more filters, run their forward pass directly (kernel conv_direct) instead of through a patch
# matrix: a first layer's few taps make a thin GEMM and a patch matrix kh * kw times the size of
# its input.
DIRECT_MAX_TAPS = 64
DIRECT_MIN_FILTERS = 16
# Where one image's work array (patch matrix, per-tap products, Winograd tiles) would take more
# than BAND_FACTOR times its path's budget, the images go in horizontal bands of output rows
# (_Bands): batches never go below one image, and an image is one thread's job (a 2048x2048
# image's 5x5 patch matrix of 8 channels alone is 3.3 GB). The course's layers (28x28 to
# 150x150 images) take at most 1.3 times their budget (2.5 in float64), and are not banded.
BAND_FACTOR = 8
# The work (fastdl._parallel's units) of one value of a transposing copy (the input gradient's
# kernel^T): numpy reads the source a column at a time.
TRANSPOSE_WORK = 8 * ELEMENTWISE_WORK


def same_padding(size, window, stride):
    """(before, after) padding of one axis for "same": TensorFlow's rule for every stride,
    ceil(size / stride) outputs, the odd pixel of padding after (at the bottom/right)."""
    total = max((-(-size // stride) - 1) * stride + window - size, 0)
    return total // 2, total - total // 2


def min_batches(batch, n_images):
    """batch, lowered so that n_images go in at least MIN_BATCHES batches (at least one image
    each): threads given whole batches (the same GEMMs for any thread count, see
    fastdl._parallel.row_ranges) then share the images evenly."""
    return max(1, min(batch, -(-n_images // MIN_BATCHES)))


def _explicit_padding(padding):
    """((top, bottom), (left, right)) from an int, a pair of ints, or a pair of pairs."""
    def _int(v):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError
        if v < 0:
            raise ValueError(f"padding must be >= 0, got {padding!r}")
        return int(v)

    try:
        if isinstance(padding, numbers.Integral):
            p = _int(padding)
            return (p, p), (p, p)
        rows, columns = padding
        if isinstance(rows, numbers.Integral) and isinstance(columns, numbers.Integral):
            return (_int(rows), _int(rows)), (_int(columns), _int(columns))
        (top, bottom), (left, right) = rows, columns
        return (_int(top), _int(bottom)), (_int(left), _int(right))
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ValueError) and str(exc).startswith("padding"):
            raise
        raise TypeError(
            'padding must be "valid", "same", an int, or ((top, bottom), (left, right)), '
            f"got {padding!r}"
        ) from None


def _geometry(x_shape, kernel_shape, strides, padding):
    """(stride_h, stride_w), (pad_top, pad_left), (out_h, out_w) of a convolution."""
    _, height, width, _ = x_shape
    kh, kw = kernel_shape[:2]
    stride_h, stride_w = check_pair(strides, "strides")
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            pads = (0, 0), (0, 0)
        elif mode == "same":
            pads = same_padding(height, kh, stride_h), same_padding(width, kw, stride_w)
        else:
            raise ValueError(f'padding must be "valid", "same" or integers, got {padding!r}')
    else:
        pads = _explicit_padding(padding)
    (top, bottom), (left, right) = pads
    out_h = (height + top + bottom - kh) // stride_h + 1
    out_w = (width + left + right - kw) // stride_w + 1
    if height + top + bottom < kh or width + left + right < kw or out_h < 1 or out_w < 1:
        raise ValueError(
            f"kernel of shape {tuple(kernel_shape)} does not fit x of shape {tuple(x_shape)} "
            f"with padding {padding!r}: the output would be empty"
        )
    return (stride_h, stride_w), (top, left), (out_h, out_w)


def _check_conv(x, kernel, strides, padding):
    x = check_array(x, "x", 4, "(n_images, height, width, channels)")
    kernel = check_array(kernel, "kernel", 4, "(kernel_h, kernel_w, in_channels, out_channels)")
    if x.shape[3] != kernel.shape[2]:
        raise ValueError(
            f"x has {x.shape[3]} channels but kernel expects {kernel.shape[2]}: "
            f"x {x.shape}, kernel {kernel.shape}"
        )
    return x, kernel, _geometry(x.shape, kernel.shape, strides, padding)


def batch_size(pixels, patch_cols, dtype):
    """Images per batch so that one batch's patch matrix stays within PATCH_BYTES (at least one)."""
    return max(1, PATCH_BYTES // (pixels * patch_cols * np.dtype(dtype).itemsize))


def _plan(x, kernel, geometry, dtype):
    """Everything the per-thread workers share: sizes, the kernel matrix, the batch size."""
    (stride_h, stride_w), (pad_top, pad_left), (out_h, out_w) = geometry
    kh, kw, in_channels, out_channels = kernel.shape
    patch_cols = kh * kw * in_channels
    pixels = out_h * out_w
    # A 1x1 kernel at stride 1 without padding reads x itself as the patch matrix.
    direct = kh == 1 and kw == 1 and stride_h == 1 and stride_w == 1 and pad_top == 0 and pad_left == 0 \
        and out_h == x.shape[1] and out_w == x.shape[2]
    winograd = _winograd.fits(kernel.shape, (stride_h, stride_w), (out_h, out_w))
    large = winograd and _winograd.large_tiles(kernel.shape, (out_h, out_w))
    if winograd and not _winograd.saves_enough(x.shape[0], (out_h, out_w), large):
        winograd = large = False  # too few images to pay for reading its transformed kernel: im2col
    few_taps = not direct and not winograd and patch_cols <= DIRECT_MAX_TAPS and out_channels >= DIRECT_MIN_FILTERS
    kn2row = not direct and not winograd and not few_taps and _kn2row.fits(kernel.shape, (stride_h, stride_w))
    large_tiles = None
    if large:
        large_tiles = _winograd.large_tiles_plan(kernel.shape, geometry, np.dtype(dtype))
        batch = large_tiles.batch
    elif winograd:
        batch = _winograd.batch_size(kernel.shape, (out_h, out_w), dtype)
    elif kn2row:
        batch = _kn2row.batch_size(x.shape, kernel.shape, dtype)
    else:
        batch = batch_size(pixels, patch_cols, dtype)
    batch = min_batches(batch, x.shape[0])
    args = (kh, kw, stride_h, stride_w, pad_top, pad_left, out_h, out_w)
    return dict(pixels=pixels, patch_cols=patch_cols, direct=direct, winograd=winograd, large_tiles=large_tiles,
                few_taps=few_taps, kn2row=kn2row, batch=batch, args=args, work=pixels * patch_cols * out_channels)


def _forward_plan(x, kernel, geometry, dtype, kept=None):
    """_plan, with the Winograd transform of the kernel (made once, on the calling thread) if it
    applies, or its kn2row tap matrix: from `kept` (a KeptTransform) where it holds this kernel's."""
    plan = _plan(x, kernel, geometry, dtype)
    if plan["large_tiles"]:
        kind, make = "large tiles", lambda: plan["large_tiles"].transform_kernel(kernel, "winograd kernel")
    elif plan["winograd"]:
        kind, make = "winograd", lambda: _winograd.transform_kernel(kernel, "winograd kernel")
    elif plan["kn2row"]:
        kind, make = "kn2row", lambda: _kn2row.tap_matrix(kernel)
    else:
        return plan
    plan["transformed"] = make() if kept is None else kept.get(kernel, (kind, geometry), make)
    return plan


class KeptTransform:
    """One kernel's transform (Winograd's, or kn2row's tap matrix) kept between calls while the
    kernel's values stay the same: a layer's inference calls (predict's batches, a server's
    requests) then transform its kernel once, not every call (the course CNN's four Winograd
    layers: 4.5-9.5 ms a call, two thirds of a one-image predict). The kernel is compared bit for
    bit each call (70 us for 256 x 256 x 3 x 3 float32). Threads may share one: an entry is
    replaced whole. A copy or pickle keeps nothing."""

    def __init__(self):
        self._entry = None  # (key, the kernel's copy, its transform: arrays of their own)

    def __getstate__(self):
        return {"_entry": None}

    def get(self, kernel, key, make):
        """The transform make() gives for kernel under key (the path and geometry it is for)."""
        entry = self._entry
        if entry is not None and entry[0] == key and entry[1].shape == kernel.shape \
                and entry[1].dtype == kernel.dtype and np.array_equal(_bits(entry[1]), _bits(kernel)):
            return entry[2]
        transform = make()  # scratch arrays (Winograd's) are copied: the next call reuses them
        transform = [part.copy() for part in transform] if isinstance(transform, list) else transform.copy()
        self._entry = (key, kernel.copy(), transform)
        return transform


def _bits(array):
    """array's values as unsigned integers of its size: compared, -0.0 is not 0.0 and a NaN is itself."""
    return array.view(f"u{array.dtype.itemsize}")


def _plan_kernels(plan, backend):
    """The kernel module of the family that runs plan's convolution: Winograd's transforms, or the
    conv family (im2col, kn2row, direct). Look it up on the calling thread: a backend chosen by
    use_backend is the calling thread's, not the pool's."""
    return _backend.kernels("winograd" if plan["winograd"] else "conv", backend)[0]


def _forward_batches(x, kernel, geometry, plan, kernels, first, last):
    """(start, stop, convolve) for images first..last-1 in batches: convolve(out=rows) writes the
    convolution of images start..stop-1 (no bias) into rows ((stop - start) * pixels,
    out_channels), by Winograd, by kn2row, directly (few taps), or by im2col and one GEMM;
    kernels from _plan_kernels."""
    if plan["winograd"]:
        (pad_top, pad_left), (out_h, out_w) = geometry[1:]
        for start in range(first, last, plan["batch"]):
            stop = min(last, start + plan["batch"])
            if plan["large_tiles"]:
                yield start, stop, functools.partial(plan["large_tiles"].convolve_rows, x[start:stop],
                                                     plan["transformed"], kernels)
            else:
                yield start, stop, functools.partial(_winograd.convolve_rows, x[start:stop], plan["transformed"],
                                                     pad_top, pad_left, out_h, out_w, kernels)
        return
    kernel_matrix = kernel.reshape(-1, kernel.shape[3])
    kh, kw, stride_h, stride_w, _, _, out_h, out_w = plan["args"]
    for start in range(first, last, plan["batch"]):
        stop = min(last, start + plan["batch"])
        if plan["kn2row"]:
            yield start, stop, functools.partial(_kn2row.convolve_rows, x[start:stop], plan["transformed"], geometry,
                                                 kernel.shape, kernels)
        elif plan["few_taps"]:
            yield start, stop, functools.partial(kernels.conv_direct, _padded(x[start:stop], plan), kernel_matrix, kh, kw,
                                                 stride_h, stride_w, out_h, out_w, n_threads=1)
        else:
            yield start, stop, functools.partial(np.dot, patches_of(x, kernels, plan, start, stop), kernel_matrix)


def _padded(images, plan):
    """The images with their zero padding, cropped to what the windows read, in this thread's
    reused buffer: every window of conv_direct lies inside it."""
    kh, kw, stride_h, stride_w, pad_top, pad_left, out_h, out_w = plan["args"]
    n_images, height, width, channels = images.shape
    padded_h, padded_w = (out_h - 1) * stride_h + kh, (out_w - 1) * stride_w + kw
    out = scratch("conv padded", (n_images, padded_h, padded_w, channels), images.dtype)
    rows, cols = max(0, min(height, padded_h - pad_top)), max(0, min(width, padded_w - pad_left))
    # Zeros only around the copied images (a "valid" layer has none to write).
    out[:, :pad_top] = 0
    out[:, pad_top + rows :] = 0
    out[:, pad_top : pad_top + rows, :pad_left] = 0
    out[:, pad_top : pad_top + rows, pad_left + cols :] = 0
    out[:, pad_top : pad_top + rows, pad_left : pad_left + cols] = images[:, :rows, :cols]
    return out


def patches_of(x, kernels, plan, start, stop):
    """The im2col patch matrix of images start..stop-1 in this thread's reused buffer (x's own
    rows for a 1x1 stride-1 unpadded kernel)."""
    pixels = plan["pixels"]
    if plan["direct"]:
        return x.reshape(-1, x.shape[3])[start * pixels : stop * pixels]
    patches = scratch("conv patches", ((stop - start) * pixels, plan["patch_cols"]), x.dtype)
    kernels.im2col(x[start:stop], patches, *plan["args"], 1)
    return patches


def _band_height(plan, x_shape, kernel_shape, dtype, block_channels=0):
    """Output rows per band of plan's convolution: what its path's budget of work array holds
    (whole tiles for Winograd), or None where one image's stays within BAND_FACTOR budgets.
    block_channels: channels of a block of outputs the caller keeps as well, a work array of
    PATCH_BYTES (conv_pool.py's convolution outputs before pooling)."""
    kh, kw, in_channels, out_channels = kernel_shape
    out_h, out_w = plan["args"][6:]
    itemsize = np.dtype(dtype).itemsize
    arrays = []  # (bytes per output row, budget, alignment of band heights)
    if block_channels:
        arrays.append((out_w * block_channels * itemsize, PATCH_BYTES, 1))
    if plan["winograd"]:  # 16 points a 2x2 tile (F(4x4) takes fewer), of the input's and output's channels
        arrays.append((8 * -(-out_w // 2) * (in_channels + out_channels) * itemsize, _winograd.BATCH_BYTES, 4))
    elif plan["kn2row"]:  # per-tap products of the input's pixels
        arrays.append((x_shape[2] * kh * kw * out_channels * itemsize, _kn2row.BATCH_BYTES, 1))
    elif not plan["direct"]:  # the patch matrix (x's own rows if direct; the backward pass's for few taps)
        arrays.append((out_w * plan["patch_cols"] * itemsize, PATCH_BYTES, 1))
    heights = [-(-max(1, budget // row_bytes) // align) * align for row_bytes, budget, align in arrays
               if out_h * row_bytes > BAND_FACTOR * budget]
    return min(heights) if heights else None


class _Bands:
    """The horizontal bands of output rows that a convolution of big images runs in, in parallel
    on fastdl's threads (see BAND_FACTOR).

    A band of an image is an ordinary convolution: of the input rows its windows read,
    x[image:image + 1, rows] (C-contiguous), into out[image:image + 1, out_rows], with a top
    padding of its own; rows below the image are implicit zero padding, as in any convolution.
    Bands are at least kh rows (and 8 for Winograd: F(4x4)'s tiles need 7 or more), so a band
    reads no row that the bands two before or after it read.
    """

    def __init__(self, x_shape, kernel_shape, geometry, height):
        (stride_h, _), (pad_top, pad_left), (out_h, out_w) = geometry
        kh = kernel_shape[0]
        stops = list(range(height, out_h - height + 1, height)) + [out_h]  # the last band takes the rest
        self.bands = []
        for start, stop in zip([0] + stops[:-1], stops):
            top = start * stride_h - pad_top  # the first row of the band's first windows
            rows = slice(max(0, top), min(x_shape[1], (stop - 1) * stride_h - pad_top + kh))
            self.bands.append((rows, slice(start, stop),
                               (geometry[0], (rows.start - top, pad_left), (stop - start, out_w))))
        self.n_images = x_shape[0]
        self.work = math.prod(kernel_shape) * out_h * out_w // len(self.bands)

    @classmethod
    def of(cls, x, kernel, geometry, align=1, block_channels=0):
        """The bands of a convolution of x (n, height, width, in) with kernel, or None where it
        goes unbanded (small images, or windows that read nothing but padding: a band would read
        no row of x). Band heights are multiples of align (but the last band's when out_h is
        not); block_channels as _band_height's."""
        (stride_h, _), (pad_top, _), (out_h, _) = geometry
        kh = kernel.shape[0]
        if x.shape[0] == 0 or pad_top >= kh or (out_h - 1) * stride_h - pad_top >= x.shape[1]:
            return None
        plan = _plan(x, kernel, geometry, x.dtype)
        height = _band_height(plan, x.shape, kernel.shape, x.dtype, block_channels)
        if height is None:
            return None
        height = max(height, kh, 8 if plan["winograd"] else 1)
        height = -(-height // align) * align
        return cls(x.shape, kernel.shape, geometry, height) if 2 * height <= out_h else None

    def run(self, func, work=1, parity=None):
        """func(image, rows, out_rows, band geometry, block) for each band of each image (with
        parity 0 or 1: the even or odd bands only) on fastdl's threads. block names the group of
        (image, band) items the band is in: the same groups, of consecutive items, for any
        thread count, each run by one thread in order, so per-group sums have the same bits."""
        items = [(image, band) for image in range(self.n_images) for band in range(len(self.bands))
                 if parity is None or band % 2 == parity]
        block = -(-len(items) // MIN_BATCHES)

        def compute(first, last):
            for start in range(first, last, block):
                for image, band in items[start : min(last, start + block)]:
                    func(image, *self.bands[band], (parity, start))

        run_row_ranges(compute, len(items), _backend.get_num_threads(), work * self.work, block)

    def gradients(self, band_grad, kernel, dx, dkernel, name):
        """A backward pass band by band: band_grad(image, rows, out_rows, band geometry, block,
        band_dx, band_dkernel) writes a band's input gradient into band_dx and its kernel
        gradient into band_dkernel (either None when dx or dkernel is). The even bands write
        theirs straight into dx (they share no rows), then the odd ones add theirs from this
        thread's scratch (`name` band dx); the kernel gradients are summed by block (the same
        for any thread count) and the blocks' sums added in order into dkernel."""
        partials = {}  # by block
        if dx is not None:
            # For the rows no even band writes: read by odd bands only, by no window at all, or
            # (conv_pool.py) only by convolution rows below the last pooling window.
            dx[...] = 0

        def band(image, rows, out_rows, geometry, block):
            odd = block[0] == 1
            band_dx = None if dx is None else dx[image : image + 1, rows]
            if odd and dx is not None:  # rows shared with the even bands beside it: added after them
                band_dx = scratch(f"{name} band dx", band_dx.shape, dx.dtype)
            band_dkernel = None if dkernel is None else scratch(f"{name} band dkernel", kernel.shape, kernel.dtype)
            band_grad(image, rows, out_rows, geometry, block, band_dx, band_dkernel)
            if odd and dx is not None:
                dx[image : image + 1, rows] += band_dx
            if dkernel is not None:
                if block in partials:
                    partials[block] += band_dkernel
                else:
                    partials[block] = band_dkernel.copy()

        work = (dx is not None) + (dkernel is not None)
        self.run(band, work, parity=0)
        self.run(band, work, parity=1)
        if dkernel is not None:
            np.copyto(dkernel, sum_in_order(partials))


def conv2d(x, kernel, bias=None, strides=1, padding="valid", backend=None):
    """2-D convolution (cross-correlation, as in Keras and PyTorch) of channels-last images.

    Parameters
    ----------
    x : array-like of shape (n_images, height, width, in_channels)
    kernel : array-like of shape (kernel_h, kernel_w, in_channels, out_channels)
    bias : array-like of shape (out_channels,), optional
    strides : int or (int, int), default 1
    padding : "valid", "same", int, (int, int) or ((top, bottom), (left, right)), default "valid"
        "same" as in Keras/TensorFlow for every stride: ceil(size / stride) outputs, any odd
        padding pixel at the bottom and right.
    backend : str, optional
        "auto", "numpy", "numba", "cython", "cuda" (None: the process default).

    Returns
    -------
    ndarray of shape (n_images, out_h, out_w, out_channels)
        float32 when the inputs are float32, float64 otherwise.
    """
    x, kernel, geometry = _check_conv(x, kernel, strides, padding)
    if bias is not None:
        bias = check_array(bias, "bias", 1, "(out_channels,)")
        if bias.shape[0] != kernel.shape[3]:
            raise ValueError(f"bias must have shape ({kernel.shape[3]},) for kernel {kernel.shape}, got {bias.shape}")
    on_cuda = _backend.resolve("conv", backend) == "cuda"  # an unknown or unavailable backend fails here
    dtype, x, kernel, bias = as_compute_all(x, kernel, bias)
    out = np.empty((x.shape[0], *geometry[2], kernel.shape[3]), dtype=dtype)
    if on_cuda:
        return host_call(conv2d_into, x, kernel, bias, geometry, Out(out))
    return conv2d_into(x, kernel, bias, geometry, out, backend=backend)


def conv2d_into(x, kernel, bias, geometry, out, activation=0, backend=None, alpha=None, kept=None):
    """conv2d into `out` for checked arrays, with the bias and an activation fused; returns out.

    For callers that have checked their arrays (fastdl.nn's layers): x, kernel, bias (or None) and
    out C-contiguous and of one float dtype, geometry from _geometry, activation a code of
    fastdl.ops.dense.ACTIVATIONS (alpha: leaky_relu's slope or elu's alpha, None for the
    activation's default), applied with the bias while each batch is still in cache. kept: a
    KeptTransform for the kernel's transform (unbanded calls).
    """
    alpha = activation_alpha(activation, alpha)
    if _device.is_device(out):
        return _nn_on_device.conv2d_into(x, kernel, bias, geometry, out, activation, alpha)
    bands = _Bands.of(x, kernel, geometry)
    if bands is not None:
        backend = _backend.get_backend() if backend is None else backend  # the calling thread's (use_backend)
        bands.run(lambda image, rows, out_rows, band_geometry, _: _convolve_into(
            x[image : image + 1, rows], kernel, bias, band_geometry, out[image : image + 1, out_rows], activation,
            backend, alpha))
        return out
    return _convolve_into(x, kernel, bias, geometry, out, activation, backend, alpha, kept)


def _convolve_into(x, kernel, bias, geometry, out, activation, backend, alpha, kept=None):
    """conv2d_into on the host, unbanded."""
    dense_kernels, _ = _backend.kernels("dense", backend)
    dtype = out.dtype
    out_channels = kernel.shape[3]
    plan = _forward_plan(x, kernel, geometry, dtype, kept)
    kernels = _plan_kernels(plan, backend)
    out_rows = out.reshape(-1, out_channels)
    epilogue = bool(activation) or bias is not None
    bias = NO_BIAS[dtype] if bias is None else bias
    pixels = plan["pixels"]

    def compute(first, last):
        for start, stop, convolve in _forward_batches(x, kernel, geometry, plan, kernels, first, last):
            rows = out_rows[start * pixels : stop * pixels]
            convolve(out=rows)
            if epilogue:  # the dense layers' bias-and-activation pass, on rows of channels
                dense_kernels.bias_activation(rows, bias, activation, dtype.type(alpha), 1)

    run_row_ranges(compute, x.shape[0], _backend.get_num_threads(), plan["work"], plan["batch"])
    return out


def conv2d_grad(x, kernel, dout, strides=1, padding="valid", backend=None):
    """Gradients of conv2d with respect to its input, kernel and bias.

    Parameters
    ----------
    x : array-like of shape (n_images, height, width, in_channels)
    kernel : array-like of shape (kernel_h, kernel_w, in_channels, out_channels)
    dout : array-like of shape (n_images, out_h, out_w, out_channels)
        Gradient of the loss with respect to conv2d's output.
    strides, padding, backend
        As in `conv2d`.

    Returns
    -------
    dx : ndarray of shape (n_images, height, width, in_channels)
    dkernel : ndarray of shape (kernel_h, kernel_w, in_channels, out_channels)
    dbias : ndarray of shape (out_channels,)
        float32 when the inputs are float32, float64 otherwise.

    Notes
    -----
    dkernel and dbias are summed over images in a fixed order for a given thread count; each
    thread adds its images' patches^T @ dout with one GEMM per batch (and its column sums of
    dout), and the threads' sums are added in order. Another thread count groups the images
    differently, which can change the last bits of both (dx does not change). Big images go in
    bands of rows (see BAND_FACTOR), summed in groups that do not follow the threads.
    """
    x, kernel, geometry = _check_conv(x, kernel, strides, padding)
    x, kernel, dout, dx, dkernel, dbias = grad_arrays(x, kernel, dout, geometry[2], kernel.shape[3], "out_channels",
                                                      backend)
    if _backend.resolve("conv", backend) == "cuda":
        return host_call(conv2d_grad_into, x, kernel, dout, geometry, Out(dx), Out(dkernel), Out(dbias))
    conv2d_grad_into(x, kernel, dout, geometry, dx, dkernel, dbias, backend=backend)
    return dx, dkernel, dbias


def grad_arrays(x, kernel, dout, out_hw, out_channels, channels_name, backend):
    """(x, kernel, dout) in their compute dtype and empty (dx, dkernel, dbias), once dout is checked
    to have the output's shape (n_images, *out_hw, out_channels); for conv2d_grad and its transpose."""
    dout = check_array(dout, "dout", 4, f"(n_images, out_h, out_w, {channels_name})")
    expected = (x.shape[0], *out_hw, out_channels)
    if dout.shape != expected:
        raise ValueError(
            f"dout must have the output's shape {expected} for x {x.shape} and kernel {kernel.shape}, "
            f"got {dout.shape}"
        )
    _backend.kernels("conv", backend)  # an unknown or unavailable backend fails before any work
    dtype, x, kernel, dout = as_compute_all(x, kernel, dout)
    return (x, kernel, dout, np.empty(x.shape, dtype=dtype), np.empty(kernel.shape, dtype=dtype),
            np.empty(out_channels, dtype=dtype))


def conv2d_grad_into(x, kernel, dout, geometry, dx, dkernel, dbias, backend=None):
    """conv2d_grad into given arrays, for callers that have checked them (as conv2d_into).

    dx may be None when no one needs the gradient of the input (a model's first layer), dkernel
    and dbias None when no one needs the weights' (a frozen layer), dbias None without a bias.
    """
    if _device.is_device(dout):
        return _nn_on_device.conv2d_grad_into(x, kernel, dout, geometry, dx, dkernel, dbias)
    bands = _Bands.of(x, kernel, geometry)
    if bands is not None:
        return _grad_by_bands(x, kernel, dout, dx, dkernel, dbias, backend, bands)
    _grad_into(x, kernel, dout, geometry, dx, dkernel, dbias, backend)


def _grad_into(x, kernel, dout, geometry, dx, dkernel, dbias, backend):
    """conv2d_grad_into on the host, unbanded."""
    out_channels = kernel.shape[3]
    dout_rows = dout.reshape(-1, out_channels)
    bias_partials = {}  # float64 per row range, added in order

    def gradient_rows(first, start, stop, rows):
        if dbias is not None:
            add_column_sums(dout_rows[rows], bias_partials.setdefault(first, np.zeros(out_channels)))
        return dout_rows[rows]

    _backward_gemms(x, kernel, geometry, dx, dkernel, backend, gradient_rows)
    finish_bias(dbias, bias_partials)


def _grad_by_bands(x, kernel, dout, dx, dkernel, dbias, backend, bands):
    """conv2d_grad_into band by band (see _Bands.gradients); the bias gradient's float64 column
    sums by the same blocks, added in order."""
    backend = _backend.get_backend() if backend is None else backend  # the calling thread's (use_backend)
    out_channels = kernel.shape[3]
    bias_partials = {}  # by block

    def band(image, rows, out_rows, geometry, block, band_dx, band_dkernel):
        gradient = dout[image : image + 1, out_rows]
        _grad_into(x[image : image + 1, rows], kernel, gradient, geometry, band_dx, band_dkernel, None, backend)
        if dbias is not None:
            add_column_sums(gradient.reshape(-1, out_channels), bias_partials.setdefault(block, np.zeros(out_channels)))

    bands.gradients(band, kernel, dx, dkernel, "conv")
    finish_bias(dbias, bias_partials)


def finish_bias(dbias, bias_partials):
    """dbias (unless None) = the sum of the float64 partial column sums {first row: sums}, added
    in order; 0 when there were no rows."""
    if dbias is not None:
        np.copyto(dbias, sum_in_order(bias_partials) if bias_partials else 0, casting="same_kind")


def _backward_gemms(x, kernel, geometry, dx, dkernel, backend, gradient_rows):
    """The GEMMs of a convolution's backward pass, batch by batch of images, on fastdl's threads.

    gradient_rows(first, start, stop, rows) gives the output gradient of images start..stop - 1
    as (pixels, out_channels) rows (first: where the calling thread's range of images starts).
    Each thread adds its batches' kernel gradients (by im2col, or in Winograd's transformed
    space) into a partial; the partials are added in order, so dkernel does not change from run
    to run. dx gets the input gradient; either may be None.
    """
    dtype = x.dtype
    plan = _plan(x, kernel, geometry, dtype)
    if plan["large_tiles"]:
        method = _winograd.LargeTilesBackward
    elif plan["winograd"]:
        method = _winograd.Backward
    else:
        method = _kn2row.Backward if plan["kn2row"] else _Im2colBackward
    step = method(x, kernel, geometry, plan, dx, _plan_kernels(plan, backend))
    n_threads = _backend.get_num_threads()
    work = ((dx is not None) + (dkernel is not None)) * plan["work"]
    # One partial per row range, kept by this (the calling) thread: a pool thread may run two
    # ranges, so the partials cannot be its own scratch.
    partials = {first: None if dkernel is None else scratch(f"conv dkernel {part}", step.partial_shape, dtype)
                for part, (first, _) in enumerate(row_ranges(x.shape[0], n_threads, work, plan["batch"]))}

    def compute(first, last):
        partial = partials[first]
        if first == last and partial is not None:  # no images: the partial is not written below
            partial[...] = 0
        product = None if partial is None else scratch("conv dkernel product", step.partial_shape, dtype)
        for start in range(first, last, plan["batch"]):
            stop = min(last, start + plan["batch"])
            rows = slice(start * plan["pixels"], stop * plan["pixels"])
            step(start, stop, rows, gradient_rows(first, start, stop, rows), partial if start == first else product)
            if start != first and partial is not None:
                partial += product

    run_row_ranges(compute, x.shape[0], n_threads, work, plan["batch"])
    if dkernel is not None:
        step.kernel_gradient(sum_in_order(partials), dkernel)


class _Im2colBackward:
    """One batch of a convolution's backward pass by im2col: the kernel gradient is
    patches^T @ gradient, the input gradient gradient @ kernel^T scattered back by col2im."""

    def __init__(self, x, kernel, geometry, plan, dx, kernels):
        self.x, self.kernel, self.plan, self.dx, self.kernels = x, kernel, plan, dx, kernels
        kernel_matrix = kernel.reshape(-1, kernel.shape[3])
        self.partial_shape = kernel_matrix.shape
        if dx is not None:
            # kernel^T C-contiguous, made once a call: OpenBLAS multiplies by a transposed view up
            # to 4x slower with a batch's few rows (measured here: 8 x 128 by 128 x 1152, 0.097
            # against 0.040 ms), and gives the same bits where it has many. numpy's transposing copy
            # reads a column at a time: 5-25x a plain copy's time a value (measured here: 0.7 ns for
            # 2048 x 128 float32, 2.1 ns for 4096 x 256), work split by TRANSPOSE_WORK a value.
            self.kernel_t = scratch("conv kernel transposed", kernel_matrix.shape[::-1], kernel.dtype)
            run_row_ranges(lambda first, last: np.copyto(self.kernel_t[first:last], kernel_matrix[:, first:last].T),
                           kernel.shape[3], _backend.get_num_threads(), TRANSPOSE_WORK * len(kernel_matrix))

    def __call__(self, start, stop, rows, gradient, out):
        """The batch's patches^T @ gradient into out and its input gradient into dx (each unless None)."""
        x, dx, plan = self.x, self.dx, self.plan
        if out is not None:
            patches = patches_of(x, self.kernels, plan, start, stop)
            np.dot(patches.T, gradient, out=out)
        if dx is None:
            return
        if plan["direct"]:
            np.dot(gradient, self.kernel_t, out=dx.reshape(-1, x.shape[3])[rows])
        else:
            if out is None:
                patches = scratch("conv patches", (rows.stop - rows.start, plan["patch_cols"]), x.dtype)
            # The patches are spent: their buffer takes the patch gradients.
            np.dot(gradient, self.kernel_t, out=patches)
            self.kernels.col2im(patches, dx[start:stop], *plan["args"], 1)

    def kernel_gradient(self, total, out):
        """out (kh, kw, in, out) from the summed patches^T @ gradient of the batches."""
        np.copyto(out, total.reshape(out.shape))
