"""The network layers' ops on the cuda backend: dense, convolution, pooling, activations, softmax.

fastdl.ops' `*_into` functions come here when their output is a device array (a layer of a model
on the cuda backend): the same arguments and results, each op a GEMM (cuBLAS through CuPy, or the
tiled kernel; see kernels/gpu/_gemm.py) and the kernels/gpu passes around it. Work arrays (patch
matrices, pooling blocks) are device scratch reused from step to step, as the layers' outputs and
gradients are their buffers: a training step of a Sequential model allocates no device memory. A
bias gradient is a GEMM too (a row of ones times the output gradient), or for a dense layer's few
rows it comes with the activation's gradient in one launch (activation_grad_into).
"""

import math

import numpy as np

from fastdl import _device
from fastdl import backend as _backend
from fastdl.ops import _kn2row

# Bytes of patch matrix per GEMM: bigger batches of images go through im2col in slices.
PATCH_BYTES = 1 << 28


def _kernels(family):
    return _backend.kernels(family, "cuda")[0]


def _gemm():
    from fastdl.kernels.gpu import _gemm

    return _gemm.gemm


def arrays():
    """kernels/gpu/_arrays: the device arrays' gathers, sums and scales."""
    from fastdl.kernels.gpu import _arrays

    return _arrays


# Device vectors per (name, dtype): "empty" (a missing bias), "ones" (the longest asked for so far).
# One of each, not one per length: a convolution's bias gradient sums batch * pixels rows, and a
# ones vector per batch size (some 9 MB each) was kept for every batch size a model ever saw.
_CONSTANTS = {}
# Rows (1, n) of the ones vector, for the ONES_ROWS lengths used last (the views numba makes in
# Python, some 10 us each, kept for a training step's next calls).
_ONES_ROWS = {}
ONES_ROWS = 16


def no_array(dtype):
    """An empty device vector: a kernel's absent argument (no bias, no velocity)."""
    key = ("empty", np.dtype(dtype))
    if key not in _CONSTANTS:
        _CONSTANTS[key] = _device.to_device(np.empty(0, dtype))
    return _CONSTANTS[key]


def _ones_row(n, dtype):
    """A (1, n) device row of ones: a view of the one ones vector of dtype, grown when too short."""
    dtype = np.dtype(dtype)
    key = _device.recent_key(_ONES_ROWS, dtype, (1, n), ONES_ROWS)
    if key not in _ONES_ROWS:
        ones = _CONSTANTS.get(("ones", dtype))
        if ones is None or ones.size < n:
            # The rows of the shorter vector go with it (a view would keep its memory).
            for other in [other for other in _ONES_ROWS if other[0] == dtype]:
                del _ONES_ROWS[other]
            ones = _CONSTANTS[("ones", dtype)] = _device.to_device(np.ones(n, dtype))
        _ONES_ROWS[key] = ones[:n].reshape((1, n))
    return _ONES_ROWS[key]


def column_sums(rows, out):
    """out (m,) = rows (n, m) summed over its rows, as one GEMM: a row of ones times rows."""
    _gemm()(_ones_row(rows.shape[0], rows.dtype), rows, _device.reshaped(out, (1, out.size)))


class Out:
    """An output argument of host_call: a NumPy array that the op's device result is copied into."""

    def __init__(self, array):
        self.array = array


def host_call(function, *args, **kwargs):
    """function(*args, **kwargs), an `*_into` op, on the device for NumPy arrays (a public op on the
    cuda backend: NumPy in, NumPy out). Every NumPy argument goes over; each Out(array) gets a
    device array that comes back into its array afterwards."""
    device_args, outputs = [], []
    for arg in args:
        if isinstance(arg, Out):
            outputs.append((arg.array, _device.empty(arg.array.shape, arg.array.dtype)))
            device_args.append(outputs[-1][1])
        elif isinstance(arg, np.ndarray):
            device_args.append(_device.to_device(arg))
        else:
            device_args.append(arg)
    function(*device_args, **kwargs)
    for array, result in outputs:
        array[...] = result.copy_to_host()
    return outputs[0][0] if len(outputs) == 1 else tuple(array for array, _ in outputs)


def sum_of_squares(array):
    """sum(array^2) as a float: the flat array times itself, one GEMM, read back."""
    out = _device.scratch("sum of squares", (1, 1), array.dtype)
    _gemm()(_device.reshaped(array, (1, array.size)), _device.reshaped(array, (array.size, 1)), out)
    return float(out.copy_to_host()[0, 0])


def sum_of_abs(array):
    """sum(|array|) as a float: the flat array's signs (one pass) times the array, one GEMM, read back."""
    signs = _device.scratch("signs", (array.size,), array.dtype)
    arrays().scale_sign(_device.reshaped(array, (array.size,)), array.dtype.type(1), signs)
    out = _device.scratch("sum of abs", (1, 1), array.dtype)
    _gemm()(_device.reshaped(signs, (1, array.size)), _device.reshaped(array, (array.size, 1)), out)
    return float(out.copy_to_host()[0, 0])


# -- dense layers and activations -----------------------------------------------------------------


def dense_into(x, kernel, bias, code, out, alpha):
    """out = activation(x @ kernel + bias): one GEMM, one pass for the bias and the activation."""
    _gemm()(x, kernel, out)
    _kernels("dense").bias_activation(out, no_array(out.dtype) if bias is None else bias, code,
                                      out.dtype.type(alpha), 1)
    return out


def dense_grad_into(x, kernel, dout, dx, dkernel, dbias):
    """dx = dout @ kernel^T, dkernel = x^T @ dout, dbias = dout's column sums (each unless None)."""
    gemm = _gemm()
    if dx is not None:
        gemm(dout, kernel, dx, transpose_b=True)
    if dkernel is not None:
        gemm(x, dout, dkernel, transpose_a=True)
    if dbias is not None:
        column_sums(dout, dbias)


def activation_into(z, code, alpha):
    _kernels("dense").bias_activation(z, no_array(z.dtype), code, z.dtype.type(alpha), 1)
    return z


def activation_grad_into(out, dout, code, dpre, alpha, column_sums=None, pre=None):
    """dpre = dout * activation'(pre), and with column_sums its column sums (one launch for both);
    from pre, the activation's input, where given (the activations of ops.dense.INPUT_ACTIVATIONS,
    which take no column_sums)."""
    if pre is not None:
        _kernels("dense").activation_backward_input(pre, dout, code, dpre, 1)
    elif column_sums is None:
        _kernels("dense").activation_backward(out, dout, code, dpre.dtype.type(alpha), dpre, 1)
    else:
        _kernels("dense").activation_backward_sums(out, dout, code, dpre.dtype.type(alpha), dpre, column_sums, 1)
    return dpre


def softmax_into(rows, out):
    """out (n, c) = the softmax of each row of rows."""
    _kernels("loss").softmax(rows, out, 1)
    return out


def softmax_grad_into(out, dout, dpre):
    _kernels("loss").softmax_backward(out, dout, dpre, 1)
    return dpre


# -- convolutions ---------------------------------------------------------------------------------


def _pixels(images):
    """Channels-last images (n, h, w, c) as rows of pixels (n h w, c), the view made once."""
    return _device.reshaped(images, (images.size // images.shape[3], images.shape[3]))


def _part(array, part):
    """array[part] for a slice of its first axis: the array itself when the slice takes it all."""
    return array if part.start == 0 and part.stop == array.shape[0] else array[part]


class _Conv:
    """A convolution's sizes and how it runs: x itself as the patch matrix (a 1x1 kernel at stride 1
    without padding), kn2row for few filters (fastdl/ops/_kn2row.py: a GEMM into per-tap products,
    shift_sum), else im2col into scratch; images in slices of at most PATCH_BYTES of patches or
    products."""

    def __init__(self, x, kernel, geometry):
        (stride_h, stride_w), (pad_top, pad_left), (out_h, out_w) = geometry
        kh, kw, in_channels, out_channels = kernel.shape
        self.n_images, self.x_shape = x.shape[0], tuple(x.shape)
        self.pixels = out_h * out_w
        self.patch_cols = kh * kw * in_channels
        self.args = (kh, kw, stride_h, stride_w, pad_top, pad_left, out_h, out_w)
        self.direct = (kh, kw, stride_h, stride_w, pad_top, pad_left) == (1, 1, 1, 1, 0, 0) \
            and (out_h, out_w) == x.shape[1:3]
        self.kn2row = not self.direct and _kn2row.fits(kernel.shape, (stride_h, stride_w))
        self.kernel_matrix = _device.reshaped(kernel, (self.patch_cols, out_channels))
        self.kernels = _kernels("conv")
        if self.kn2row:
            self.filters, self.taps = out_channels, kh * kw * out_channels
            # K (in, kh kw filters) from the kernel (kh kw, in, filters).
            self.tap_matrix = _device.scratch("kn2row tap matrix", (in_channels, self.taps), x.dtype)
            arrays().swap_axes(_device.reshaped(kernel, (kh * kw, in_channels, out_channels)),
                               _device.reshaped(self.tap_matrix, (in_channels, kh * kw, out_channels)))
            per_image = x.shape[1] * x.shape[2] * self.taps * x.dtype.itemsize
        else:
            per_image = self.pixels * self.patch_cols * x.dtype.itemsize
        self.step = self.n_images if self.direct else max(1, min(self.n_images, PATCH_BYTES // per_image))

    def slices(self):
        """(images, rows) of each slice: the images' range and their output rows' range."""
        for start in range(0, self.n_images, self.step):
            stop = min(self.n_images, start + self.step)
            yield slice(start, stop), slice(start * self.pixels, stop * self.pixels)

    def patches(self, x, images):
        """The patch matrix of x[images] (x's own rows for the direct case)."""
        if self.direct:
            return _part(_pixels(x), slice(images.start * self.pixels, images.stop * self.pixels))
        count = images.stop - images.start
        patches = _device.scratch("conv patches", (count * self.pixels, self.patch_cols), x.dtype)
        self.kernels.im2col(_part(x, images), patches, *self.args, 1)
        return patches

    def forward(self, x, out_rows):
        """out_rows (n_images * pixels, out_channels) = the convolution of x, without bias."""
        for images, rows in self.slices():
            if self.kn2row:  # Z = x's pixels @ K, then each output adds its taps from Z
                z = self._products(images)
                _gemm()(_pixels(_part(x, images)), self.tap_matrix, z)
                self.kernels.shift_sum(self._images(z, images, self.x_shape[1:3]), *self.args[:2], *self.args[4:6],
                                       self._images(_part(out_rows, rows), images, self.args[6:]), 1)
            else:
                _gemm()(self.patches(x, images), self.kernel_matrix, _part(out_rows, rows))

    def _products(self, images):
        """Scratch for the per-tap products (kn2row's Z or dZ) of x[images]: (pixels, kh kw filters)."""
        count = images.stop - images.start
        return _device.scratch("kn2row products", (count * self.x_shape[1] * self.x_shape[2], self.taps),
                               self.tap_matrix.dtype)

    def _images(self, rows, images, hw):
        """Rows of pixels (count h w, channels) as images (count, h, w, channels)."""
        return _device.reshaped(rows, (images.stop - images.start, *hw, rows.shape[1]))

    def _kn2row_backward(self, x, dout_rows, dx, dkernel):
        """kn2row's backward pass: dZ = shift_spread(dout), dkernel = x^T dZ, dx = dZ K^T (each unless None)."""
        kh, kw, in_channels, filters = self.args[0], self.args[1], self.x_shape[3], self.filters
        dtaps = None if dkernel is None else _device.scratch("kn2row dK", (in_channels, self.taps), dout_rows.dtype)
        for images, rows in self.slices():
            dz = self._products(images)
            self.kernels.shift_spread(self._images(_part(dout_rows, rows), images, self.args[6:]), kh, kw,
                                      *self.args[4:6], self._images(dz, images, self.x_shape[1:3]), 1)
            if dtaps is not None:
                _gemm()(_pixels(_part(x, images)), dz, dtaps, transpose_a=True, accumulate=images.start > 0)
            if dx is not None:
                _gemm()(dz, self.tap_matrix, _pixels(_part(dx, images)), transpose_b=True)
        if dtaps is not None and self.n_images == 0:
            _device.assign(dkernel, np.zeros(dkernel.shape, dkernel.dtype))
        elif dtaps is not None:
            arrays().swap_axes(_device.reshaped(dtaps, (in_channels, kh * kw, filters)),
                               _device.reshaped(dkernel, (kh * kw, in_channels, filters)))

    def backward(self, x, dout_rows, dx, dkernel):
        """dkernel = patches^T @ dout, summed over slices; dx = col2im(dout @ kernel^T); either may be None."""
        if self.kn2row:
            return self._kn2row_backward(x, dout_rows, dx, dkernel)
        if dkernel is None:
            if dx is not None:
                self.input_grad(dout_rows, dx)
            return
        dkernel_matrix = _device.reshaped(dkernel, self.kernel_matrix.shape)
        if self.n_images == 0:
            _device.assign(dkernel, np.zeros(dkernel.shape, dkernel.dtype))
        for images, rows in self.slices():
            patches = self.patches(x, images)
            # Each slice after the first adds its product (a GEMM's beta = 1).
            _gemm()(patches, _part(dout_rows, rows), dkernel_matrix, transpose_a=True, accumulate=images.start > 0)
            if dx is not None:  # the patches are spent: their buffer takes the patch gradients
                self._input_grad(dout_rows, dx, images, rows, patches)

    def input_grad(self, dout_rows, dx):
        """dx = col2im(dout @ kernel^T): the convolution's adjoint (a transposed convolution)."""
        if self.kn2row:
            return self._kn2row_backward(None, dout_rows, dx, None)
        for images, rows in self.slices():
            patches = None if self.direct else _device.scratch(
                "conv patches", (rows.stop - rows.start, self.patch_cols), dx.dtype)
            self._input_grad(dout_rows, dx, images, rows, patches)

    def _input_grad(self, dout_rows, dx, images, rows, patches):
        gradient = _part(dout_rows, rows)
        if self.direct:
            _gemm()(gradient, self.kernel_matrix, _part(_pixels(dx), rows), transpose_b=True)
        else:
            _gemm()(gradient, self.kernel_matrix, patches, transpose_b=True)
            self.kernels.col2im(patches, _part(dx, images), *self.args, 1)


def conv2d_into(x, kernel, bias, geometry, out, activation, alpha):
    """fastdl.ops.conv2d_into on the device: through _Conv (im2col, kn2row, or x's own rows),
    then the bias and activation pass."""
    rows = _pixels(out)
    _Conv(x, kernel, geometry).forward(x, rows)
    if activation or bias is not None:
        _kernels("dense").bias_activation(rows, no_array(out.dtype) if bias is None else bias, activation,
                                          out.dtype.type(alpha), 1)
    return out


def conv2d_grad_into(x, kernel, dout, geometry, dx, dkernel, dbias):
    rows = _pixels(dout)
    _Conv(x, kernel, geometry).backward(x, rows, dx, dkernel)
    if dbias is not None:
        column_sums(rows, dbias)


def conv2d_pool_into(x, kernel, bias, geometry, activation, pool, out, code):
    """fastdl.ops.conv2d_pool_into on the device: the convolution into a scratch block, then one pass
    for the bias, the activation and the pooling (with each window's winner in code)."""
    conv = _Conv(x, kernel, geometry)
    block = _device.scratch("conv pool block", (x.shape[0] * conv.pixels, kernel.shape[3]), out.dtype)
    conv.forward(x, block)
    conv.kernels.bias_act_pool(block, no_array(out.dtype) if bias is None else bias, activation, *geometry[2],
                               *pool, out, code, 1)
    return out


def conv2d_pool_grad_into(x, kernel, dpooled, code, geometry, pool, dx, dkernel, dbias):
    conv = _Conv(x, kernel, geometry)
    block = _device.scratch("conv pool dblock", (x.shape[0] * conv.pixels, kernel.shape[3]), dpooled.dtype)
    conv.kernels.unpool(dpooled, code, *geometry[2], *pool, block, no_array(np.float64), 1)
    conv.backward(x, block, dx, dkernel)
    if dbias is not None:
        column_sums(block, dbias)


def _transposed(x, kernel, geometry, out_shape):
    """The convolution whose input gradient a transposed convolution is (fastdl.ops.conv_transpose):
    from images of out_shape, with the transposed convolution's kernel, onto x's pixels."""
    kh, kw, stride_h, stride_w, pad_top, pad_left, height, width = geometry[1]
    return _Conv(_Shape(out_shape, x.dtype), kernel, ((stride_h, stride_w), (pad_top, pad_left), (height, width)))


class _Shape:
    """The shape and dtype of images that _Conv plans for."""

    def __init__(self, shape, dtype):
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)


def conv2d_transpose_into(x, kernel, bias, geometry, out, activation, alpha):
    """fastdl.ops.conv2d_transpose_into on the device: x @ kernel_matrix^T, col2im, then the bias and
    activation pass (every stride takes this route)."""
    conv = _transposed(x, kernel, geometry, out.shape)
    conv.input_grad(_pixels(x), out)
    if activation or bias is not None:
        _kernels("dense").bias_activation(_pixels(out),
                                          no_array(out.dtype) if bias is None else bias, activation,
                                          out.dtype.type(alpha), 1)
    return out


def conv2d_transpose_grad_into(x, kernel, dout, geometry, dx, dkernel, dbias):
    """dx = the convolution of dout (through _Conv: im2col, kn2row, or dout's own rows),
    dkernel = patches(dout)^T @ x, dbias = dout's column sums."""
    conv = _transposed(x, kernel, geometry, dout.shape)
    if dkernel is not None:
        conv.backward(dout, _pixels(x), None, dkernel)
    if dx is not None:
        conv.forward(dout, _pixels(dx))
    if dbias is not None:
        column_sums(_pixels(dout), dbias)


# -- pooling --------------------------------------------------------------------------------------


def max_pool2d_into(x, out, window):
    _kernels("pool").max_pool2d_forward(x, out, *window, 1)
    return out


def max_pool2d_grad_into(x, dout, dx, window):
    _kernels("pool").max_pool2d_backward(x, dout, dx, *window, 1)
    return dx


def avg_pool2d_into(x, out, window):
    _kernels("pool").avg_pool2d_forward(x, out, *window, 1)
    return out


def avg_pool2d_grad_into(dout, dx, window):
    _kernels("pool").avg_pool2d_backward(dout, dx, *window, 1)
    return dx


# -- merging (fastdl.nn's Add and Concatenate) ----------------------------------------------------


def _flat(array):
    return _device.reshaped(array, (array.size,))


def add_into(inputs, out):
    """out = the sum of the device arrays `inputs` (of out's shape), added left to right."""
    if len(inputs) == 1:
        _device.assign(out, inputs[0])
        return out
    arrays().add(_flat(inputs[0]), _flat(inputs[1]), _flat(out))
    for array in inputs[2:]:
        arrays().add(_flat(out), _flat(array), _flat(out))
    return out


def _columns(array, axis):
    """array as rows (the axes before `axis`) of columns (axis and the ones after it)."""
    rows = math.prod(array.shape[:axis])
    return _device.reshaped(array, (rows, array.size // rows if rows else 0))


def concatenate_into(inputs, out, axis):
    """out = the device arrays `inputs` concatenated along `axis` (>= 1, counting the batch axis)."""
    block, start = _columns(out, axis), 0
    for array in inputs:
        part = _columns(array, axis)
        arrays().place_columns(part, block, start)
        start += part.shape[1]
    return out


def split_into(dout, parts, axis):
    """Each device array of `parts` = its block of dout along `axis` (concatenate_into's inverse)."""
    block, start = _columns(dout, axis), 0
    for array in parts:
        part = _columns(array, axis)
        arrays().take_columns(block, start, part)
        start += part.shape[1]
    return parts
