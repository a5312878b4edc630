"""Activation functions (the compiled kernels of fastdl.ops.dense; softmax's of the loss kernels) and activation layers."""

import numpy as np

from fastdl import _device
from fastdl import backend as _backend
from fastdl._parallel import threads_worth_it
from fastdl.ops import activation_grad
from fastdl.ops.dense import ACTIVATIONS, LEAKY_ALPHA, activation_grad_into, activation_into, check_alpha
from fastdl.nn.module import LOGIT_ACTIVATIONS, Layer, as_layer_input
from fastdl.ops import _nn_on_device

NAMES = ("linear", "relu", "leaky_relu", "sigmoid", "tanh", "softmax")
# Keras 3 gives its LeakyReLU layer a slope of 0.3 and the activation "leaky_relu" (of Dense,
# Conv2D, Activation) one of 0.2 (LEAKY_ALPHA).
LEAKY_RELU_LAYER_SLOPE = 0.3


def check_activation(activation):
    """The activation's canonical name ("linear" for None)."""
    if activation is None:
        return "linear"
    if not isinstance(activation, str) or activation.lower() not in NAMES:
        raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(map(repr, NAMES))} or None")
    return activation.lower()


def softmax(z, backend=None, into=None):
    """Softmax over the last axis (a new array, or `into`), shifted by the row maximum so exp never
    overflows. A device array's goes to a device array (into, or a new one)."""
    if _device.is_device(z):
        out = _device.empty(z.shape, z.dtype) if into is None else into
        _nn_on_device.softmax_into(_device.last_axis_rows(z), _device.last_axis_rows(out))
        return out
    z = np.ascontiguousarray(z)
    out = np.empty_like(z) if into is None else into
    if z.size:
        rows = z.reshape(-1, z.shape[-1])
        kernels, _ = _backend.kernels("loss", backend)
        kernels.softmax(rows, out.reshape(rows.shape), threads_worth_it(rows.shape[0], 8 * rows.shape[1]))
    return out


def softmax_grad(out, dout, backend=None):
    """Gradient with respect to softmax's input, from its output `out`: out * (dout - sum(dout * out))."""
    if _device.is_device(out):
        rows = (-1, out.shape[out.ndim - 1])
        return _nn_on_device.softmax_grad_into(out.reshape(rows), dout.reshape(rows),
                                               _device.empty(out.shape, out.dtype).reshape(rows)).reshape(out.shape)
    dout = np.ascontiguousarray(dout, dtype=out.dtype)
    if dout.shape != out.shape:
        raise ValueError(f"dout must have the output's shape {out.shape}, got {dout.shape}")
    dpre = np.empty_like(out)
    if out.size:
        rows = out.reshape(-1, out.shape[-1])
        kernels, _ = _backend.kernels("loss", backend)
        kernels.softmax_backward(rows, dout.reshape(rows.shape), dpre.reshape(rows.shape),
                                 threads_worth_it(rows.shape[0], 8 * rows.shape[1]))
    return dpre


def apply(name, z, alpha=LEAKY_ALPHA, backend=None, into=None):
    """activation(z) (z: C-contiguous float array) into `into` where given (an array of z's shape
    and dtype: a layer's reused buffer), z left as it is; else in place where it can be, softmax
    into a new array."""
    if name == "softmax":
        return softmax(z, backend, into)
    if into is not None:
        _device.assign(into, z)
        z = into
    if name != "linear":
        activation_into(_device.last_axis_rows(z) if z.ndim else z.reshape(1, 1), ACTIVATIONS[name], backend, alpha)
    return z


def grad(name, out, dout, backend=None, alpha=LEAKY_ALPHA, into=None, column_sums=None):
    """Gradient with respect to the activation's input, from its output `out`.

    into: optional C-contiguous array of out's shape and dtype that receives the compiled
    activations' gradient (a layer's reused buffer). column_sums: with into, an optional array
    (last axis,) that receives the gradient's sums over the other axes (a dense layer's bias
    gradient, in the same pass on the device).
    """
    if name == "linear":
        return dout
    if name == "softmax":
        return softmax_grad(out, dout, backend)
    assert name in ACTIVATIONS
    channels = out.shape[out.ndim - 1]
    if into is None and _device.is_device(out):
        into = _device.empty(out.shape, out.dtype)
    if into is None:
        return activation_grad(out.reshape(-1, channels), dout.reshape(-1, channels), name,
                               backend=backend, alpha=alpha).reshape(out.shape)
    if not _device.is_device(dout):
        dout = np.ascontiguousarray(dout, dtype=out.dtype)
    if dout.shape != out.shape:
        raise ValueError(f"dout must have the output's shape {out.shape}, got {dout.shape}")
    activation_grad_into(_device.last_axis_rows(out), _device.last_axis_rows(dout), ACTIVATIONS[name], _device.last_axis_rows(into), backend, alpha, column_sums)
    return into


class Activation(Layer):
    """An activation applied elementwise (softmax: over the last axis).

    Parameters
    ----------
    activation : {"linear", "relu", "leaky_relu", "sigmoid", "tanh", "softmax"} or None
        In any case; None is "linear"; "leaky_relu" has Keras 3's slope 0.2.
    """

    alpha = LEAKY_ALPHA
    gemm_only = True
    runs_on_device = True
    keeps_logits = True
    _logits = None  # a training step's (forward)

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = check_activation(activation)

    def forward(self, x, training=False):
        # Into a copy of x (the activation works in place): a training step's buffer, reused, or
        # an inference output, the caller's. A training step's softmax and sigmoid keep x as their
        # logits for a loss fused with them (module.fused_layer); an inference pass's are recorded
        # by the model running it (model.record_input_logits), so that the layer keeps no batch of
        # the caller's (a model(X) kept X). The output returned is this call's own: _out is
        # backward's, which another thread's inference pass on the model may have set meanwhile.
        x = as_layer_input(x, self.dtype, layer=type(self).__name__)
        if training:
            self._logits = x if self.activation in LOGIT_ACTIVATIONS else None
        out = self._buffer("out", x.shape) if training else self._empty(x.shape)
        self._out = out = apply(self.activation, x, self.alpha, self.backend, into=out)
        return out

    def backward_pre(self, dpre):
        """Backward from the gradient with respect to the activation's input (fused losses)."""
        return dpre

    def backward(self, dout):
        # Into a buffer reused from step to step, as the activated layers' (softmax makes its own).
        into = self._buffer("dpre", self._out.shape) if self.activation in ACTIVATIONS else None
        return grad(self.activation, self._out, dout, self.backend, self.alpha, into=into)


class ReLU(Activation):
    """max(x, 0), as a layer (Keras' ReLU)."""

    def __init__(self, **kwargs):
        super().__init__("relu", **kwargs)


class LeakyReLU(Activation):
    """x where x >= 0, alpha * x elsewhere.

    Parameters
    ----------
    alpha : float >= 0, default 0.3
        The slope below zero (Keras' LeakyReLU default; the activation "leaky_relu" of other
        layers has Keras 3's slope 0.2).
    negative_slope : float >= 0, optional, keyword-only
        Keras 3's name for alpha; giving both is a ValueError.
    """

    def __init__(self, alpha=None, *, negative_slope=None, **kwargs):
        if alpha is not None and negative_slope is not None:
            raise ValueError(f"give alpha or negative_slope, not both (got {alpha!r} and {negative_slope!r})")
        super().__init__("leaky_relu", **kwargs)
        if negative_slope is not None:
            self.alpha = check_alpha(negative_slope, "negative_slope")
        else:
            self.alpha = check_alpha(LEAKY_RELU_LAYER_SLOPE if alpha is None else alpha)


class Sigmoid(Activation):
    """1 / (1 + exp(-x)), as a layer."""

    def __init__(self, **kwargs):
        super().__init__("sigmoid", **kwargs)


class Tanh(Activation):
    """tanh(x), as a layer."""

    def __init__(self, **kwargs):
        super().__init__("tanh", **kwargs)


class Softmax(Activation):
    """exp(x) / sum(exp(x)) over the last axis, as a layer; with a cross-entropy loss after it, fit
    starts the loss's gradient from its logits."""

    def __init__(self, **kwargs):
        super().__init__("softmax", **kwargs)
