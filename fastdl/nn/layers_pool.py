"""Keras-style AveragePooling2D, GlobalAveragePooling2D and GlobalMaxPooling2D over channels-last images."""

import numpy as np

from fastdl import _device
from fastdl.nn.layers import _Pooling2D, _same_batch, check_images
from fastdl.nn.module import Layer, as_layer_input, check_bool, check_data_format
from fastdl.ops.pool import avg_pool2d_grad_into, avg_pool2d_into, max_pool2d_grad_into, max_pool2d_into


class AveragePooling2D(_Pooling2D):
    """Mean over pool_size windows of channels-last images (strides default to pool_size), as Keras.

    With padding "same" a window's mean is over its image cells only: padded cells neither add nor
    count, as TensorFlow's avg_pool (so Keras on TensorFlow). AvgPool2D is the same class, as in
    Keras (whose name for it, "average_pooling2d", it takes).

    Parameters
    ----------
    pool_size : int or (int, int), default 2
        tf.keras 2's default; Keras 3 asks for it.
    strides : int or (int, int), optional
        Defaults to pool_size.
    padding : {"valid", "same"}, default "valid"
        "valid" needs a window that fits in the image; "same" gives ceil(size / stride) outputs per
        axis, the odd padded cell at the bottom and right, as TensorFlow.
    """

    def _pool(self, x, out):
        return avg_pool2d_into(x, out, self._window, self.backend)

    def backward(self, dout):
        dout = as_layer_input(dout, self.dtype, self.output_shape, type(self).__name__ + " backward")
        if not self.needs_input_grad:
            return None
        return avg_pool2d_grad_into(_same_batch(dout, self._x), self._buffer("dx", self._x.shape), self._window,
                                    self.backend)


AvgPool2D = AveragePooling2D


class _GlobalPooling2D(Layer):
    """A pooling whose one window is the whole image: (batch, h, w, c) -> (batch, c), or (batch, 1, 1, c)
    with keepdims (Keras 3's and tf.keras 2.6's option). The arguments are in Keras 3's order,
    (data_format, keepdims)."""

    runs_on_device = True

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        check_data_format(data_format, type(self).__name__)
        self.keepdims = check_bool(keepdims, "keepdims")

    def compute_output_shape(self, input_shape):
        check_images(self, input_shape)
        return (1, 1, input_shape[2]) if self.keepdims else (input_shape[2],)

    def build(self, input_shape, rng, dtype=np.float32):
        super().build(input_shape, rng, dtype)
        h, w = input_shape[:2]
        self._window = (h, w, h, w, 0, 0)

    def forward(self, x, training=False):
        self._x = x = as_layer_input(x, self.dtype, self.input_shape, type(self).__name__)
        shape = (x.shape[0], *self.output_shape)
        out = self._buffer("out", shape) if training else self._empty(shape)
        self._pool(x, _device.reshaped(out, (x.shape[0], 1, 1, x.shape[3])))
        return out

    def backward(self, dout):
        dout = as_layer_input(dout, self.dtype, self.output_shape, type(self).__name__ + " backward")
        if not self.needs_input_grad:
            return None
        dout = _same_batch(dout, self._x)
        return self._pool_grad(_device.reshaped(dout, (dout.shape[0], 1, 1, self._x.shape[3])),
                               self._buffer("dx", self._x.shape))


class GlobalAveragePooling2D(_GlobalPooling2D):
    """The mean of each channel over the image: (batch, h, w, c) -> (batch, c), as Keras.

    The backward pass spreads each channel's gradient evenly, 1 / (h * w) to every cell.
    GlobalAvgPool2D is the same class, as in Keras.

    Parameters
    ----------
    data_format : None or "channels_last", default None
        Keras' argument; fastdl's images are channels-last only.
    keepdims : bool, default False
        True keeps the image axes: (batch, 1, 1, c).
    """

    def _pool(self, x, out):
        avg_pool2d_into(x, out, self._window, self.backend)

    def _pool_grad(self, dout, dx):
        return avg_pool2d_grad_into(dout, dx, self._window, self.backend)


GlobalAvgPool2D = GlobalAveragePooling2D


class GlobalMaxPooling2D(_GlobalPooling2D):
    """The maximum of each channel over the image: (batch, h, w, c) -> (batch, c), as Keras.

    The backward pass sends each channel's gradient to its first maximum in row-major order, as
    MaxPooling2D does (TensorFlow's reduce_max, under Keras' layer, splits it among tied maxima
    instead; the two differ only on exact ties). GlobalMaxPool2D is the same class, as in Keras.

    Parameters
    ----------
    data_format : None or "channels_last", default None
        Keras' argument; fastdl's images are channels-last only.
    keepdims : bool, default False
        True keeps the image axes: (batch, 1, 1, c).
    """

    def _pool(self, x, out):
        max_pool2d_into(x, out, self._window, self.backend)

    def _pool_grad(self, dout, dx):
        return max_pool2d_grad_into(self._x, dout, dx, self._window, self.backend)


GlobalMaxPool2D = GlobalMaxPooling2D
