"""Keras-style layers over channels-last images: Dense, Conv2D, MaxPool2D, UpSampling2D, Flatten, Reshape, Dropout, Input."""

import contextlib
import copy
import math
import numbers
import threading

import numpy as np

from fastdl import _device
from fastdl import backend as _backend
from fastdl._parallel import threads_worth_it
from fastdl.nn import activations
from fastdl.nn.initializers import initial_kernel
from fastdl.nn.module import (LOGIT_ACTIVATIONS, Layer, Parameter, as_layer_input, check_bool, check_data_format,
                               check_shape, get_initializer, seeded_generator)
from fastdl.nn.regularizers import add_grad, get_regularizer
from fastdl.ops.conv import KeptTransform, _geometry, conv2d_grad_into, conv2d_into
from fastdl.ops.conv_pool import conv2d_pool_grad_into, conv2d_pool_into, pool_fusable
from fastdl.ops.dense import ACTIVATIONS, dense_grad_into, dense_into
from fastdl.ops.pool import (max_pool2d_grad_into, max_pool2d_grad_winners_into, max_pool2d_into,
                              max_pool2d_winners_into, pool_geometry, records_winners)
from fastdl._validation import check_int, check_pair, compute_dtype


class Input:
    """Declares the input shape (without the batch axis) at the head of a Sequential model.

    Parameters
    ----------
    shape : int or tuple of int
        The shape of one sample, without the batch axis.
    """

    def __init__(self, shape):
        self.shape = check_shape(shape, "shape")


class InferencePass:
    """What one thread's evaluation pass of a model keeps for its loss, instead of the layers
    and the loss keeping it: threads may share a model for inference (a web server's), and
    whatever one writes on the layers another may overwrite before it is read.

    logits: {id(layer): logits} of the softmax and sigmoid layers the pass ran through (for a
    loss fused with them). loss(loss): a copy of `loss` for this pass, whose forward may keep
    its batch (and on the device, buffers) without touching the model's. added_losses: the
    terms its layers added (add_loss), read by the pass's loss.
    """

    def __init__(self):
        self.logits = {}
        self.added_losses = {}  # {id(layer): [terms]} its layers added (nn.Sampling's KL term)
        self._losses = {}

    def loss(self, loss):
        if id(loss) not in self._losses:
            self._losses[id(loss)] = (loss, copy.copy(loss))  # (the original kept: its id stays taken)
        return self._losses[id(loss)][1]


class _Recording(threading.local):
    record = None  # this thread's InferencePass, while one is open


_recording = _Recording()


@contextlib.contextmanager
def inference_pass():
    """Within, this thread's inference passes record their layers' logits in the InferencePass
    yielded (nested models' layers too), not on the layers."""
    outer, _recording.record = _recording.record, InferencePass()
    try:
        yield _recording.record
    finally:
        _recording.record = outer


def record_logits(layer, logits):
    """Keep an inference pass's logits of `layer` for the loss, where an evaluation records them."""
    record = _recording.record
    if record is not None:
        record.logits[id(layer)] = logits


def logits_of(layer, record):
    """The logits `layer` gave: in an evaluation pass, those it recorded; in training, its own
    (`_logits`; a layer of the user's that keeps them records nothing)."""
    if record is not None and id(layer) in record.logits:
        return record.logits[id(layer)]
    return layer._logits


def check_images(layer, input_shape):
    """Raise ValueError unless a layer's input shape is that of images, (height, width, channels)."""
    if len(input_shape) != 3:
        raise ValueError(f"{type(layer).__name__} expects images of shape (batch, height, width, channels), "
                         f"got (batch, {', '.join(map(str, input_shape))})")


def _same_shape(dout, shape, layer):
    """Raise ValueError unless the output gradient dout has the forward pass's output shape."""
    if tuple(dout.shape) != tuple(shape):
        raise ValueError(f"{layer} backward: the output gradient has shape {tuple(dout.shape)}, the forward "
                         f"pass's output {tuple(shape)}")


def _same_batch(dout, x):
    """dout, after checking that it holds one gradient per image of the forward pass's input x."""
    if dout.shape[0] != x.shape[0]:
        raise ValueError(f"the output gradient has {dout.shape[0]} samples, the forward pass had {x.shape[0]}")
    return dout


class _Activated(Layer):
    """A layer whose output goes through an activation; keeps the output for the backward pass.

    Its kernel and bias may carry a regulariser each: the model adds `regularization_loss()` to the
    loss and `backward_pre` adds the penalties' gradients to the weights'.
    """

    kernel_regularizer = bias_regularizer = None
    runs_on_device = True
    keeps_logits = True
    _logits = None  # a training step's (_activate)
    _pre = None  # a training step's activation input, for the activations whose gradient needs it
    PASS_STATE = Layer.PASS_STATE + ("_pre",)

    def _penalised(self):
        """[(regulariser, Parameter)] of the weights that carry a penalty."""
        pairs = [(self.kernel_regularizer, self.kernel)] if self.kernel_regularizer is not None else []
        if self.bias_regularizer is not None and self.use_bias:
            pairs.append((self.bias_regularizer, self.bias))
        return pairs

    def regularization_loss(self):
        return sum((regularizer(weights.value) for regularizer, weights in self._penalised()), 0.0)

    def _regularize(self):
        if self.needs_weight_grads:
            for regularizer, weights in self._penalised():
                add_grad(regularizer, weights.value, weights.grad)

    def _initial_bias(self, size, rng):
        """The bias Parameter (size,), from bias_initializer (after the kernel's draws)."""
        return Parameter(initial_kernel(self.bias_initializer, (size,), rng, self.dtype,
                                        self.name or type(self).__name__, argument="bias_initializer"))

    def _weight_grads(self):
        """(kernel gradient, bias gradient or None) for a backward op to fill, (None, None) where the
        model trains neither."""
        if not self.needs_weight_grads:
            return None, None
        return self.kernel.grad, self.bias.grad if self.use_bias else None

    def _needs_input(self):
        """Whether the activation's gradient needs its input (swish, gelu, mish, hard_swish)."""
        return activations.is_input_activation(self.activation)

    def _fuses_activation(self, training):
        """Whether the layer's kernel applies its activation with the bias (not for softmax and
        sigmoid, whose logits _activate keeps for a loss fused with them, nor in training for the
        activations whose input it keeps for their gradient)."""
        return (self.activation in ACTIVATIONS and self.activation not in LOGIT_ACTIVATIONS
                and not (training and self._needs_input()))

    def _logits_into(self, shape, training):
        """The array for a layer's logits: a training step's buffer, reused, or an inference
        pass's own (threads sharing the model must not write each other's)."""
        return self._buffer("out", shape) if training else self._empty(shape)

    def _activate(self, z, training):
        # Softmax and sigmoid layers keep their logits z for a loss fused with them (module.fused_layer)
        # and put the activation elsewhere: a training step's into a reused buffer, an inference
        # output into the caller's array; other activations work in place. An inference pass
        # records its logits for its own loss (record_logits) and reads nothing back from the
        # layer: the attributes it sets are backward's, which may be another thread's by then.
        # A training step of swish, gelu, mish or hard_swish keeps z (_pre) for their gradient.
        keep = self.activation in LOGIT_ACTIVATIONS
        keep_input = training and self._needs_input()
        if training:
            self._logits = z if keep else None
            self._pre = z if keep_input else None
        elif keep:
            record_logits(self, z)
        elsewhere = keep or keep_input
        into = (self._buffer("activated", z.shape) if training else self._empty(z.shape)) if elsewhere else None
        self._out = out = activations.apply(self.activation, z, backend=self.backend, into=into)
        return out

    def backward(self, dout):
        into = self._buffer("dpre", self._out.shape) if self.activation in ACTIVATIONS else None
        dpre = activations.grad(self.activation, self._out, dout, self.backend, into=into, pre=self._pre)
        return self.backward_pre(dpre)


class Dense(_Activated):
    """activation(x @ kernel + bias), kernel of shape (in_features, units).

    Parameters
    ----------
    units : int
    activation : str or None
        Keras 3's names (fastdl.nn.activations.NAMES: "relu", "elu", "gelu", "softmax", ...).
        "leaky_relu" with slope 0.2, Keras 3's for the activation (its LeakyReLU layer's is 0.3).
    use_bias : bool, default True
        Without it the layer has no bias weights (as before a BatchNormalization).
    kernel_initializer : str, an nn.initializers object or callable(shape, rng, dtype), default "glorot_uniform"
        Keras 3's names ("he_normal", "lecun_uniform", "orthogonal", ...; fastdl.nn.initializers)
        or a function of your own, rng the layer's numpy Generator.
    bias_initializer : as kernel_initializer, default "zeros"
    kernel_regularizer, bias_regularizer : nn.L1(l1), nn.L2(l2), nn.L1L2(l1, l2), "l1", "l2", "l1_l2" or None
        Adds the penalty (l2 * sum(w^2), l1 * sum|w|) of the kernel or the bias to the loss.
    input_shape : tuple, optional, keyword only
        (in_features,) on the first layer of a model; with name, backend and trainable, one of
        the keywords every layer takes (see Layer).

    Notes
    -----
    The positional order is Keras 3's (units, activation, use_bias, kernel_initializer,
    bias_initializer, kernel_regularizer, bias_regularizer); Keras' next ones (activity_regularizer,
    the constraints) are no fastdl options, so what follows is keyword only.
    """

    gemm_only = True
    # Set while a Sequential model trains with a fused softmax-cross-entropy loss from this layer's
    # logits (Sequential._training_to_logits): a training forward pass then stops at the logits.
    logits_suffice = False

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.units = check_int(units, "units", 1)
        self.activation = activations.check_activation(activation)
        self.use_bias = check_bool(use_bias, "use_bias")
        self.kernel_initializer = get_initializer(kernel_initializer)
        self.bias_initializer = get_initializer(bias_initializer, "bias_initializer")
        self.kernel_regularizer = get_regularizer(kernel_regularizer)
        self.bias_regularizer = get_regularizer(bias_regularizer, "bias_regularizer")

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 1:
            raise ValueError(
                f"Dense expects inputs of shape (batch, features), got (batch, {', '.join(map(str, input_shape))}); "
                "put a Flatten() layer before it"
            )
        return (self.units,)

    def build(self, input_shape, rng, dtype=np.float32):
        super().build(input_shape, rng, dtype)
        self.kernel = Parameter(initial_kernel(self.kernel_initializer, (input_shape[0], self.units), rng, self.dtype,
                                               self.name or type(self).__name__))
        if self.use_bias:
            self.bias = self._initial_bias(self.units, rng)

    def forward(self, x, training=False):
        self._x = x = as_layer_input(x, self.dtype, self.input_shape, type(self).__name__)
        bias = self.bias.value if self.use_bias else None
        shape = (x.shape[0], self.units)
        # A training step's output is overwritten by the next step; an inference output is the caller's.
        if self._fuses_activation(training):
            out = self._buffer("out", shape) if training else self._empty(shape)
            self._out = out = dense_into(x, self.kernel.value, bias, ACTIVATIONS[self.activation], out, self.backend)
            return out
        # The logits (the output goes to _activate's array).
        z = dense_into(x, self.kernel.value, bias, 0, self._logits_into(shape, training), self.backend)
        if training and self.logits_suffice:
            self._logits = self._out = z
            return z
        return self._activate(z, training)

    def backward(self, dout):
        _, dbias = self._weight_grads()
        if dbias is None or self.activation not in ACTIVATIONS or self.activation == "linear" or self._needs_input():
            return super().backward(dout)
        # The activation's gradient pass sums the bias gradient too (on the device: one launch
        # instead of a pass and a GEMM).
        dpre = activations.grad(self.activation, self._out, dout, self.backend,
                                into=self._buffer("dpre", self._out.shape), column_sums=dbias)
        return self.backward_pre(dpre, bias_summed=True)

    def backward_pre(self, dpre, bias_summed=False):
        """The gradients from the one at the activation's input; bias_summed: the bias gradient is
        already in place (backward's activation pass summed it)."""
        dpre = as_layer_input(dpre, self.dtype, self.output_shape, type(self).__name__ + " backward")
        dx = self._buffer("dx", self._x.shape) if self.needs_input_grad else None
        dkernel, dbias = self._weight_grads()
        dense_grad_into(self._x, self.kernel.value, _same_batch(dpre, self._x), dx, dkernel,
                        None if bias_summed else dbias)
        self._regularize()
        return dx


class _Convolution(_Activated):
    """What Conv2D and Conv2DTranspose share: options, kernel, bias and passes. A subclass gives
    `_kernel_shape(in_channels)`, `_geometry_of(input_shape)` -> (the ops' geometry for images
    (batch, *input_shape), (out_h, out_w)) and the ops `_conv_into`, `_conv_grad_into` (those of
    fastdl.ops.conv's signatures, as staticmethods)."""

    _keras_next = "data_format, dilation_rate, groups"  # Keras 3's arguments after padding

    def __init__(self, filters, kernel_size, strides=1, padding="valid", *beyond, activation=None,
                 kernel_initializer="glorot_uniform", use_bias=True, kernel_regularizer=None,
                 bias_initializer="zeros", bias_regularizer=None, **kwargs):
        if beyond:  # (Python's own message would name this class, not the user's)
            raise TypeError(f"{type(self).__name__} takes filters, kernel_size, strides and padding by place, got "
                            f"{len(beyond)} more: Keras 3's next ones ({self._keras_next}) are no fastdl options, "
                            "and activation and the rest go by name")
        super().__init__(**kwargs)
        self.filters = check_int(filters, "filters", 1)
        self.kernel_size = check_pair(kernel_size, "kernel_size")
        self.strides = check_pair(strides, "strides")
        if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
            raise ValueError(f'padding must be "valid" or "same", got {padding!r}')
        self.padding = padding.lower()
        self.activation = activations.check_activation(activation)
        self.kernel_initializer = get_initializer(kernel_initializer)
        self.bias_initializer = get_initializer(bias_initializer, "bias_initializer")
        self.kernel_regularizer = get_regularizer(kernel_regularizer)
        self.bias_regularizer = get_regularizer(bias_regularizer, "bias_regularizer")
        self.use_bias = check_bool(use_bias, "use_bias")

    def compute_output_shape(self, input_shape):
        check_images(self, input_shape)
        return (*self._geometry_of(input_shape)[1], self.filters)

    def build(self, input_shape, rng, dtype=np.float32):
        super().build(input_shape, rng, dtype)
        self.kernel = Parameter(initial_kernel(self.kernel_initializer, self._kernel_shape(input_shape[2]), rng,
                                               self.dtype, self.name or type(self).__name__))
        if self.use_bias:
            self.bias = self._initial_bias(self.filters, rng)
        self._geometry = self._geometry_of(input_shape)[0]
        self._kept = KeptTransform()  # the kernel's transform, between inference calls

    def forward(self, x, training=False):
        self._x = x = as_layer_input(x, self.dtype, self.input_shape, type(self).__name__)
        bias = self.bias.value if self.use_bias else None
        kept = None if training else self._kept  # a training step changes the kernel
        shape = (x.shape[0], *self.output_shape)
        # A training step's output is overwritten by the next step; an inference output is the caller's.
        if self._fuses_activation(training):  # with the bias, batch by batch
            out = self._buffer("out", shape) if training else self._empty(shape)
            self._logits = None
            self._out = out = self._conv_into(x, self.kernel.value, bias, self._geometry, out,
                                              ACTIVATIONS[self.activation], self.backend, kept=kept)
            return out
        # The logits, then the output into _activate's array.
        return self._activate(self._conv_into(x, self.kernel.value, bias, self._geometry,
                                              self._logits_into(shape, training), 0, self.backend, kept=kept),
                              training)

    def backward_pre(self, dpre):
        dpre = as_layer_input(dpre, self.dtype, self.output_shape, type(self).__name__ + " backward")
        dx = self._buffer("dx", self._x.shape) if self.needs_input_grad else None
        self._conv_grad_into(self._x, self.kernel.value, _same_batch(dpre, self._x), self._geometry, dx,
                             *self._weight_grads(), self.backend)
        self._regularize()
        return dx


class Conv2D(_Convolution):
    """2-D convolution of channels-last images, kernel of shape (kh, kw, in_channels, filters).

    Parameters
    ----------
    filters : int
    kernel_size : int or (int, int)
    strides : int or (int, int), default 1
    padding : {"valid", "same"}, default "valid"
        "same" as in Keras/TensorFlow for every stride.
    activation, kernel_initializer, use_bias, kernel_regularizer, bias_initializer, bias_regularizer
        As in Dense; keyword only (Keras 3 puts data_format, dilation_rate and groups, no fastdl
        options, before them).
    """

    _conv_into, _conv_grad_into = staticmethod(conv2d_into), staticmethod(conv2d_grad_into)

    def _kernel_shape(self, in_channels):
        return (*self.kernel_size, in_channels, self.filters)

    def _geometry_of(self, input_shape):
        geometry = _geometry((1, *input_shape), self._kernel_shape(input_shape[2]), self.strides, self.padding)
        return geometry, geometry[-1]

    def fuses_with(self, pool):
        """Whether this layer and the MaxPool2D `pool` after it can run as one pass (forward_pooled)."""
        return (type(pool) is MaxPool2D and self.activation in ("linear", "relu")
                and pool_fusable(ACTIVATIONS[self.activation], pool._window, self.output_shape[:2],
                                 pool.output_shape[:2]))

    def forward_pooled(self, x, pool, training=False):
        """pool.forward(self.forward(x)) in one pass: each batch of images is activated and pooled
        while its convolution output is in cache, so the full-size activation is never stored."""
        self._x = x = as_layer_input(x, self.dtype, self.input_shape, type(self).__name__)
        shape = (x.shape[0], *pool.output_shape)
        out = self._buffer("pooled", shape) if training else self._empty(shape)
        # The winners' codes (backward's): an inference pass writes its own, as its output.
        code = self._buffer("pool code", shape, np.int32) if training else self._empty(shape, np.int32)
        self._code = code
        self._out = self._logits = None
        return conv2d_pool_into(x, self.kernel.value, self.bias.value if self.use_bias else None, self._geometry,
                                ACTIVATIONS[self.activation], pool._window[:2], out, code, self.backend,
                                kept=None if training else self._kept)

    def backward_pooled(self, dout, pool):
        """Backward of forward_pooled from the gradient of the pooled output; returns dx (or None)."""
        dout = as_layer_input(dout, self.dtype, pool.output_shape, type(pool).__name__ + " backward")
        dx = self._buffer("dx", self._x.shape) if self.needs_input_grad else None
        conv2d_pool_grad_into(self._x, self.kernel.value, _same_batch(dout, self._x), self._code, self._geometry,
                              pool._window[:2], dx, *self._weight_grads(), self.backend)
        self._regularize()
        return dx


class _Pooling2D(Layer):
    """A pooling of channels-last images over pool_size windows (strides default to pool_size),
    "valid" or "same" padding as TensorFlow: its subclasses give `_pool(x, out)` and backward."""

    runs_on_device = True

    def __init__(self, pool_size=2, strides=None, padding="valid", **kwargs):
        super().__init__(**kwargs)
        self.pool_size = check_pair(pool_size, "pool_size")
        self.strides = None if strides is None else check_pair(strides, "strides")
        if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
            raise ValueError(f'padding must be "valid" or "same", got {padding!r}')
        self.padding = padding.lower()

    def compute_output_shape(self, input_shape):
        check_images(self, input_shape)
        *_, out_h, out_w = pool_geometry((1, *input_shape), self.pool_size, self.strides, self.padding)
        return (out_h, out_w, input_shape[2])

    def build(self, input_shape, rng, dtype=np.float32):
        super().build(input_shape, rng, dtype)
        self._window = pool_geometry((1, *input_shape), self.pool_size, self.strides, self.padding)[:6]

    def forward(self, x, training=False):
        self._x = x = as_layer_input(x, self.dtype, self.input_shape, type(self).__name__)
        shape = (x.shape[0], *self.output_shape)
        out = self._buffer("out", shape) if training else self._empty(shape)
        return self._pool(x, out)


class MaxPooling2D(_Pooling2D):
    """Maximum over pool_size windows of channels-last images, as Keras' MaxPooling2D.

    MaxPool2D is the same class, as in Keras (whose name for it, "max_pooling2d", it takes).

    Parameters
    ----------
    pool_size : int or (int, int), default 2
        The window's height and width (an int: both); Keras' default (2, 2).
    strides : int or (int, int), optional
        Defaults to pool_size.
    padding : {"valid", "same"}, default "valid"
        "valid" needs a window that fits in the image; "same" gives ceil(size / stride) outputs
        per axis, padded at the bottom and right when odd, as TensorFlow; padded cells never win.
    """

    # (x, winners) of the last training pass that recorded its windows' winners.
    _winners = (None, None)

    def _pool(self, x, out):
        return max_pool2d_into(x, out, self._window, self.backend)

    def forward(self, x, training=False):
        # A training pass records each window's winner (a uint8 a window) for backward, which then
        # scans no window again; an inference pass writes nothing that backward would read but x,
        # as before (threads may share the model for inference).
        if not (training and self.needs_input_grad and not self.on_device
                and records_winners(self._window, self.backend)):
            self._winners = (None, None)  # backward finds this pass's winners from its x
            return super().forward(x, training)
        self._x = x = as_layer_input(x, self.dtype, self.input_shape, type(self).__name__)
        shape = (x.shape[0], *self.output_shape)
        winners = self._buffer("winners", shape, np.uint8)
        self._winners = (x, winners)
        return max_pool2d_winners_into(x, self._buffer("out", shape), winners, self._window, self.backend)

    def backward(self, dout):
        dout = as_layer_input(dout, self.dtype, self.output_shape, type(self).__name__ + " backward")
        if not self.needs_input_grad:
            return None
        dout, dx = _same_batch(dout, self._x), self._buffer("dx", self._x.shape)
        x, winners = self._winners
        if x is self._x:  # the last forward pass recorded its winners: the same dx, without x
            return max_pool2d_grad_winners_into(winners, dout, dx, self._window, self.backend)
        # After an inference pass (or on the device), the winners are found again from x.
        return max_pool2d_grad_into(self._x, dout, dx, self._window, self.backend)


MaxPool2D = MaxPooling2D


class Flatten(Layer):
    """(batch, d1, d2, ...) -> (batch, d1 * d2 * ...), in channels-last order as Keras.

    Parameters
    ----------
    data_format : None or "channels_last", default None
        Keras' one argument; fastdl's images are channels-last only ("channels_first" is refused).
    """

    gemm_only = True
    runs_on_device = True

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        check_data_format(data_format, "Flatten")

    def compute_output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def forward(self, x, training=False):
        self._shape = x.shape
        return _device.reshaped(x, (x.shape[0], math.prod(x.shape[1:])))

    def backward(self, dout):
        _same_shape(dout, (self._shape[0], math.prod(self._shape[1:])), "Flatten")
        return _device.reshaped(dout, self._shape)


class Reshape(Layer):
    """(batch, *input_shape) -> (batch, *target_shape), the values in the same order, as Keras.

    Parameters
    ----------
    target_shape : int or tuple of int
        The shape of one output sample, without the batch axis, of as many values as an input
        sample; one entry may be -1, worked out from the others.
    """

    gemm_only = True
    runs_on_device = True

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        if isinstance(target_shape, numbers.Integral):
            target_shape = (target_shape,)
        target_shape = tuple(target_shape)
        if not target_shape or list(target_shape).count(-1) > 1:
            raise ValueError(f"target_shape must be a non-empty tuple with at most one -1, got {target_shape!r}")
        self.target_shape = tuple(-1 if d == -1 else check_int(d, "target_shape", 1) for d in target_shape)

    def compute_output_shape(self, input_shape):
        size = math.prod(input_shape)
        known = math.prod([d for d in self.target_shape if d != -1])
        shape = tuple(size // known if d == -1 else d for d in self.target_shape)
        if math.prod(shape) != size:
            raise ValueError(f"Reshape cannot turn samples of shape {tuple(input_shape)} ({size} values) "
                             f"into {self.target_shape}")
        return shape

    def forward(self, x, training=False):
        self._shape = x.shape
        return _device.reshaped(x, (x.shape[0], *self.output_shape))

    def backward(self, dout):
        _same_shape(dout, (self._shape[0], *self.output_shape), "Reshape")
        return _device.reshaped(dout, self._shape)


class UpSampling2D(Layer):
    """Repeats every pixel of channels-last images size[0] times down and size[1] times across
    (Keras' nearest-neighbour UpSampling2D); the backward pass sums each block's gradients.

    Parameters
    ----------
    size : int or (int, int), default 2
        The repeats down and across (an int: both); Keras' default (2, 2).
    """

    runs_on_device = True

    def __init__(self, size=2, **kwargs):
        super().__init__(**kwargs)
        self.size = check_pair(size, "size")

    def compute_output_shape(self, input_shape):
        check_images(self, input_shape)
        return (input_shape[0] * self.size[0], input_shape[1] * self.size[1], input_shape[2])

    def forward(self, x, training=False):
        x = as_layer_input(x, self.dtype, self.input_shape, type(self).__name__)
        shape = (x.shape[0], *self.output_shape)
        out = self._buffer("out", shape) if training else self._empty(shape)
        kernels, _ = _backend.kernels("pool", self.backend)
        kernels.upsample2d(x, out, *self.size, threads_worth_it(x.shape[0], math.prod(self.output_shape)))
        return out

    def backward(self, dout):
        dout = as_layer_input(dout, self.dtype, self.output_shape, type(self).__name__ + " backward")
        dx = self._buffer("dx", (dout.shape[0], *self.input_shape))
        kernels, _ = _backend.kernels("pool", self.backend)
        kernels.upsample2d_backward(dout, dx, *self.size,
                                    threads_worth_it(dout.shape[0], math.prod(self.output_shape)))
        return dx


class Dropout(Layer):
    """Zeroes a fraction `rate` of the inputs in training and scales the rest by 1 / (1 - rate);
    in inference it passes its input on. The arguments come in Keras 3's order.

    Parameters
    ----------
    rate : float in [0, 1)
        The fraction of the inputs zeroed.
    noise_shape : None
        Keras' mask shared along some axes is not supported: anything but None is a ValueError.
    seed : int, optional
        Gives the layer a generator of its own for the masks; by default it draws from its
        model's (seeded by the model's seed).
    """

    gemm_only = True
    runs_on_device = True

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= rate < 1:
            raise ValueError(f"rate must be a number in [0, 1), got {rate!r}")
        if noise_shape is not None:
            raise ValueError(f"Dropout's noise_shape is not supported (got {noise_shape!r}): fastdl draws one "
                             "value per input; pass seed= by name")
        self.rate = float(rate)
        self.rng = None if seed is None else seeded_generator(seed)

    def forward(self, x, training=False):
        if not training or self.rate == 0:
            self._mask = None
            return x
        if self.rng is None:
            self.rng = np.random.default_rng()
        # A value is kept where its draw >= rate; the same draws on every backend.
        draws = self.rng.random(x.shape)
        if self.on_device:
            draws = _device.upload(self._buffers, "draws", draws)
        else:
            x = np.ascontiguousarray(x, dtype=compute_dtype(x))
        self._draws = draws
        self._mask = self._buffer("mask", x.shape, x.dtype)
        return self._apply(x, self._buffer("out", x.shape, x.dtype))

    def _apply(self, x, out):
        """out = x * the mask of this step's draws (writing the mask on the way)."""
        if x.size:
            width = x.shape[x.ndim - 1]
            rows = (x.size // width, width)
            kernels, _ = _backend.kernels("loss", self.backend)
            x_rows, draws, out_rows, mask = (_device.reshaped(a, rows) for a in (x, self._draws, out, self._mask))
            kernels.dropout(x_rows, draws, self.rate, x.dtype.type(1) / x.dtype.type(1 - self.rate), out_rows, mask,
                            threads_worth_it(rows[0], 8 * width))
        return out

    def backward(self, dout):
        if self._mask is None:
            return dout
        _same_shape(dout, self._mask.shape, "Dropout")
        if self.on_device:  # device arrays have no arithmetic: the same pass, on the gradient
            return self._apply(dout, self._buffer("dx", dout.shape, dout.dtype))
        # Into a buffer reused from step to step, as the other layers' dx (dout is the layer
        # above's, never written).
        dx = self._buffer("dx", dout.shape, np.result_type(dout.dtype, self._mask.dtype))
        return np.multiply(dout, self._mask, out=dx)
