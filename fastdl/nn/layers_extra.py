"""Keras-style Conv2DTranspose and BatchNormalization over channels-last inputs."""

import numbers

import numpy as np

from fastdl import _device
from fastdl import backend as _backend
from fastdl._parallel import threads_worth_it
from fastdl.nn.layers import _Convolution, _same_batch
from fastdl.nn.module import Layer, Parameter, as_layer_input
from fastdl.ops.conv_transpose import (  # noqa: F401 (conv2d_transpose, conv2d_transpose_grad: old home)
    conv2d_transpose, conv2d_transpose_grad, conv2d_transpose_grad_into, conv2d_transpose_into,
    transpose_geometry,
)


class Conv2DTranspose(_Convolution):
    """Transposed 2-D convolution of channels-last images, kernel of shape (kh, kw, filters, in_channels).

    The kernel layout is Keras': the transposed convolution is the input gradient of a Conv2D
    with this kernel, so weights copied from Keras give the same outputs.

    Parameters
    ----------
    filters : int
    kernel_size : int or (int, int)
    strides : int or (int, int), default 1
    padding : {"valid", "same"}, default "valid"
        Output size height * stride ("same") or height * stride + max(kernel_h - stride, 0)
        ("valid", which is (height - 1) * stride + kernel_h when kernel_h >= stride).
    activation, kernel_initializer, kernel_regularizer, use_bias, bias_initializer, bias_regularizer
        As in Conv2D, keyword only (Keras 3 puts output_padding, data_format and dilation_rate,
        no fastdl options, before them).
    """

    _keras_next = "output_padding, data_format, dilation_rate"
    _conv_into, _conv_grad_into = staticmethod(conv2d_transpose_into), staticmethod(conv2d_transpose_grad_into)

    def _kernel_shape(self, in_channels):
        return (*self.kernel_size, self.filters, in_channels)

    def _geometry_of(self, input_shape):
        geometry = transpose_geometry((1, *input_shape), self._kernel_shape(input_shape[2]), self.strides,
                                      self.padding)
        return geometry, geometry[0]


class BatchNormalization(Layer):
    """Normalises each channel (the last axis) by batch statistics in training, moving ones at inference.

    As Keras: out = gamma * (x - mean) / sqrt(var + epsilon) + beta, with the batch mean and (biased)
    variance in training, which also update moving_mean/moving_variance as
    moving = momentum * moving + (1 - momentum) * batch_stat; inference uses the moving statistics.
    A frozen layer runs as in inference even in training, as in Keras since TensorFlow 2:
    fine-tuning above a frozen base neither moves its statistics nor uses a batch's. Frozen means
    what it means for the layer's parameters: the model being trained leaves gamma and beta to no
    optimizer (`trainable` as it was when that model was compiled). So a discriminator compiled,
    then frozen inside a GAN, normalises by batch statistics (and updates them) in its own
    training steps and by its moving ones in the GAN's.

    gamma and beta are Parameters; moving_mean and moving_variance are non-trainable state, listed
    by `non_trainable_state()` (the model saves and loads them with the weights). On the cuda
    backend the passes over the activations run on the device and the per-channel statistics,
    a few hundred numbers, are worked out on the host (they stay there, as NumPy arrays).

    Parameters
    ----------
    axis : int, default -1
        The channel axis: the last one (-1, or its index counting the batch axis as 0), as
        fastdl's images are channels-last.
    momentum : float in [0, 1), default 0.99
    epsilon : float > 0, default 1e-3
    """

    PASS_STATE = Layer.PASS_STATE + ("_xhat",)

    runs_on_device = True

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            raise TypeError(f"axis must be an integer, got {axis!r}")
        self.axis = int(axis)
        if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) or not 0 <= momentum < 1:
            raise ValueError(f"momentum must be a number in [0, 1), got {momentum!r}")
        if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real) or not epsilon > 0:
            raise ValueError(f"epsilon must be a number > 0, got {epsilon!r}")
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)

    def compute_output_shape(self, input_shape):
        if len(input_shape) < 1:
            raise ValueError("BatchNormalization needs inputs with a channel axis, (batch, ..., channels)")
        if self.axis not in (-1, len(input_shape)):
            raise ValueError(f"BatchNormalization normalises over the last axis (axis=-1 or {len(input_shape)} for "
                             f"inputs (batch, {', '.join(map(str, input_shape))})), got axis={self.axis}")
        return input_shape

    def build(self, input_shape, rng, dtype=np.float32):
        super().build(input_shape, rng, dtype)
        channels = input_shape[-1]
        self.gamma = Parameter(np.ones(channels, self.dtype))
        self.beta = Parameter(np.zeros(channels, self.dtype))
        self.moving_mean = np.zeros(channels, self.dtype)
        self.moving_variance = np.ones(channels, self.dtype)

    def non_trainable_state(self):
        """[(name, ndarray)] of the state that is saved but not trained: the moving statistics."""
        return [("moving_mean", self.moving_mean), ("moving_variance", self.moving_variance)]

    def count_params(self):
        """Trainable plus non-trainable, as Keras counts a layer (4 * channels)."""
        return super().count_params() + self.count_non_trainable_params()

    def count_non_trainable_params(self):
        """The moving statistics' values (2 * channels)."""
        return sum(a.size for _, a in self.non_trainable_state())

    def forward(self, x, training=False):
        if x.shape[x.ndim - 1] != self.gamma.shape[0]:
            raise ValueError(f"{self.name or 'BatchNormalization'} expects {self.gamma.shape[0]} channels "
                             f"on the last axis, got shape {x.shape}")
        x = as_layer_input(x, self.dtype)
        kernels, _ = _backend.kernels("norm", self.backend)
        rows = x.reshape(-1, x.shape[x.ndim - 1])
        n_threads = threads_worth_it(rows.shape[0], 8 * rows.shape[1])
        dtype = self.dtype.type
        # needs_weight_grads: the model being trained trains gamma and beta (fastdl/nn/gradient_flags.py).
        self._training = training = bool(training) and self.needs_weight_grads
        if training:
            # Two passes (the mean, then the mean square of the centred values) with float64 sums:
            # no cancellation, and float32 inputs far from zero keep their precision.
            mean64, var64 = self._buffer("mean64", rows.shape[1:], np.float64), self._buffer("var64", rows.shape[1:],
                                                                                             np.float64)
            kernels.channel_moments(rows, mean64, var64, n_threads)
            mean, var64 = _device.host(mean64).astype(dtype), _device.host(var64)
            # float32 inputs spread past ~1.8e19 have a variance float64 holds but float32 does not:
            # this batch is normalised from var64 below, but the moving variance goes to inf, which
            # fit's guard stops on (a float32 model cannot hold that channel's statistics).
            with np.errstate(over="ignore"):
                var = var64.astype(dtype)
            keep = self.momentum
            self.moving_mean *= keep
            self.moving_mean += (1 - keep) * mean.astype(self.moving_mean.dtype)
            self.moving_variance *= keep
            self.moving_variance += (1 - keep) * var.astype(self.moving_variance.dtype)
        else:
            mean, var64 = self.moving_mean.astype(dtype), self.moving_variance.astype(np.float64)
        # In float64, then cast: 1 / sqrt(var) of a variance past float32's range is well inside it.
        self._inv_std = inv_std = (1.0 / np.sqrt(var64 + self.epsilon)).astype(dtype)
        # A training step's arrays are overwritten by the next step; an inference pass's are its
        # own, and it reads none back from the layer (threads may share the model for inference).
        self._xhat = xhat = self._buffer("xhat", x.shape) if training else self._empty(x.shape)
        out = self._buffer("out", x.shape) if training else self._empty(x.shape)
        kernels.normalize(rows, self._here(mean, "mean", training), self._here(inv_std, "inv_std", training),
                          self.gamma.value, self.beta.value, xhat.reshape(rows.shape), out.reshape(rows.shape),
                          n_threads)
        return out

    def _here(self, vector, key, reuse=True):
        """A per-channel vector worked out on the host, where the kernels take it (copied to the
        device: into a buffer reused from step to step, or without reuse, a new one)."""
        if not self.on_device:
            return vector
        return _device.upload(self._buffers, key, vector) if reuse else _device.to_device(vector)

    def backward(self, dout):
        dout = _same_batch(as_layer_input(dout, self.dtype, self._xhat.shape[1:], "BatchNormalization backward"),
                           self._xhat)
        kernels, _ = _backend.kernels("norm", self.backend)
        rows = dout.reshape(-1, dout.shape[dout.ndim - 1])
        xhat = self._xhat.reshape(rows.shape)
        n_threads = threads_worth_it(rows.shape[0], 8 * rows.shape[1])
        sums = [self._buffer(key, rows.shape[1:], np.float64) for key in ("sum dout", "sum dout xhat")]
        kernels.channel_sums(rows, xhat, *sums, n_threads)
        sum_dout, sum_dout_xhat = (_device.host(v) for v in sums)
        _device.assign(self.beta.grad, sum_dout)
        _device.assign(self.gamma.grad, sum_dout_xhat)
        gamma = _device.host(self.gamma.value).astype(np.float64)
        if self._training:
            # dx = inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dout * gamma.
            mean_dxhat = (gamma * sum_dout / rows.shape[0]).astype(self.dtype)
            mean_dxhat_xhat = (gamma * sum_dout_xhat / rows.shape[0]).astype(self.dtype)
        else:  # the moving statistics are constants of the input
            mean_dxhat = mean_dxhat_xhat = np.zeros(rows.shape[1], self.dtype)
        dx = self._buffer("dx", dout.shape)
        kernels.normalize_backward(rows, xhat, self.gamma.value, self._here(self._inv_std, "inv_std"),
                                   self._here(mean_dxhat, "mean dxhat"), self._here(mean_dxhat_xhat, "mean dxhat xhat"),
                                   dx.reshape(rows.shape), n_threads)
        return dx


def _coefficients(value, name):
    """Rescaling's scale or offset as a float64 vector: one number, or one per channel."""
    values = np.asarray(value)
    if values.dtype.kind not in "biuf" or values.ndim > 1 or values.size == 0:
        raise TypeError(f"Rescaling's {name} must be a number or one number per channel, got {value!r}")
    values = values.astype(np.float64).reshape(-1)
    if not np.isfinite(values).all():
        raise ValueError(f"Rescaling's {name} must be finite, got {value!r}")
    return values


class Rescaling(Layer):
    """x * scale + offset, as Keras 3's Rescaling: Rescaling(1 / 255) takes 0-255 pixels to [0, 1],
    Rescaling(1 / 127.5, offset=-1) to [-1, 1].

    Parameters
    ----------
    scale, offset : float, or one per channel (the last axis), default offset 0
        Computed in the layer's dtype as Keras does: the product rounded, then the sum. Its
        gradient is dout * scale.
    """

    runs_on_device = True

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale, self.offset = _coefficients(scale, "scale"), _coefficients(offset, "offset")

    def compute_output_shape(self, input_shape):
        channels = input_shape[-1] if input_shape else 1
        for name, values in (("scale", self.scale), ("offset", self.offset)):
            if values.size not in (1, channels):
                raise ValueError(f"Rescaling's {name} has {values.size} values, but its inputs {tuple(input_shape)} "
                                 f"have {channels} channels: give one number, or one per channel")
        return input_shape

    def _rows(self, x):
        """x as (values, channels) rows, and scale and offset as vectors of a row's length in the
        layer's dtype (on the device where x is)."""
        width = self.input_shape[-1] if self.input_shape else 1
        scale, offset = (np.broadcast_to(v, (width,)).astype(self.dtype) for v in (self.scale, self.offset))
        if _device.is_device(x):
            scale, offset = (_device.upload(self._buffers, key, v) for key, v in (("scale", scale), ("offset", offset)))
            return _device.reshaped(x, (x.size // width, width)), scale, offset
        return x.reshape(-1, width), scale, offset

    def forward(self, x, training=False):
        x = as_layer_input(x, self.dtype, self.input_shape, type(self).__name__)
        out = self._buffer("out", x.shape) if training else self._empty(x.shape)
        return self._affine(x, out, bias=True)

    def backward(self, dout):
        dout = as_layer_input(dout, self.dtype, self.output_shape, type(self).__name__ + " backward")
        if not self.needs_input_grad:
            return None
        return self._affine(dout, self._buffer("dx", dout.shape), bias=False)

    def _affine(self, x, out, bias):
        """out = x * scale (+ offset where bias), channel by channel."""
        rows, scale, offset = self._rows(x)
        if _device.is_device(x):
            if not bias:
                offset = _device.upload(self._buffers, "zeros", np.zeros(scale.shape[0], self.dtype))
            _device.scale_shift(rows, scale, offset, _device.reshaped(out, rows.shape))
            return out
        flat = out.reshape(rows.shape)
        np.multiply(rows, scale, out=flat)
        if bias:
            np.add(flat, offset, out=flat)
        return out
