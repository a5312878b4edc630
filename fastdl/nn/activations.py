"""Activation functions (the compiled kernels of fastdl.ops.dense; softmax's of the loss kernels) and activation layers."""

import numpy as np

from fastdl import _device
from fastdl import backend as _backend
from fastdl._parallel import threads_worth_it
from fastdl.ops import activation_grad
from fastdl.ops.dense import (ACTIVATIONS, ELU_ALPHA, activation_grad_into, activation_into, check_alpha,
                              needs_input, unknown_activation)
from fastdl.nn.module import LOGIT_ACTIVATIONS, Layer, as_layer_input
from fastdl.ops import _nn_on_device

NAMES = ("linear", "relu", "leaky_relu", "sigmoid", "tanh", "softmax", "elu", "selu", "softplus", "softsign",
         "relu6", "hard_sigmoid", "exponential", "swish", "silu", "gelu", "mish", "hard_swish", "hard_silu")
# Keras 3 gives its LeakyReLU layer a slope of 0.3 and the activation "leaky_relu" (of Dense,
# Conv2D, Activation) one of 0.2 (fastdl.ops.dense.LEAKY_ALPHA).
LEAKY_RELU_LAYER_SLOPE = 0.3


def check_activation(activation):
    """The activation's canonical name ("linear" for None)."""
    if activation is None:
        return "linear"
    if not isinstance(activation, str) or activation.lower() not in NAMES:
        raise unknown_activation(activation, ", ".join(map(repr, NAMES)))
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


def apply(name, z, alpha=None, backend=None, into=None):
    """activation(z) (z: C-contiguous float array) into `into` where given (an array of z's shape
    and dtype: a layer's reused buffer), z left as it is; else in place where it can be, softmax
    into a new array. alpha: leaky_relu's slope or elu's alpha, None for the activation's default."""
    if name == "softmax":
        return softmax(z, backend, into)
    if into is not None:
        _device.assign(into, z)
        z = into
    if name != "linear":
        activation_into(_device.last_axis_rows(z) if z.ndim else z.reshape(1, 1), ACTIVATIONS[name], backend, alpha)
    return z


def is_input_activation(name):
    """Whether the activation's gradient needs its input (swish/silu, gelu, mish, hard_swish/hard_silu):
    a layer with it keeps its pre-activation for backward."""
    return name in ACTIVATIONS and needs_input(ACTIVATIONS[name])


def grad(name, out, dout, backend=None, alpha=None, into=None, column_sums=None, pre=None):
    """Gradient with respect to the activation's input, from its output `out` (alpha as in apply),
    or for an input activation (is_input_activation) from its input `pre`, required there.

    into: optional C-contiguous array of out's shape and dtype that receives the compiled
    activations' gradient (a layer's reused buffer). column_sums: with into, an optional array
    (last axis,) that receives the gradient's sums over the other axes (a dense layer's bias
    gradient, in the same pass on the device; not for input activations). pre: C-contiguous,
    out's shape and dtype.
    """
    if name == "linear":
        return dout
    if name == "softmax":
        return softmax_grad(out, dout, backend)
    assert name in ACTIVATIONS
    if is_input_activation(name):
        if pre is None:
            raise ValueError(f"activation {name!r} needs pre, the activation's input, for its gradient")
        if pre.shape != out.shape:
            raise ValueError(f"pre must have the output's shape {out.shape}, got {pre.shape}")
    else:
        pre = None
    channels = out.shape[out.ndim - 1]
    if into is None and _device.is_device(out):
        into = _device.empty(out.shape, out.dtype)
    if into is None:
        rows = (-1, channels)
        return activation_grad(out.reshape(rows), dout.reshape(rows), name, backend=backend, alpha=alpha,
                               pre=None if pre is None else pre.reshape(rows)).reshape(out.shape)
    if not _device.is_device(dout):
        dout = np.ascontiguousarray(dout, dtype=out.dtype)
    if dout.shape != out.shape:
        raise ValueError(f"dout must have the output's shape {out.shape}, got {dout.shape}")
    pre_rows = None if pre is None else _device.last_axis_rows(pre)
    activation_grad_into(_device.last_axis_rows(out), _device.last_axis_rows(dout), ACTIVATIONS[name],
                         _device.last_axis_rows(into), backend, alpha, column_sums, pre_rows)
    return into


class Activation(Layer):
    """An activation applied elementwise (softmax: over the last axis).

    Parameters
    ----------
    activation : str or None
        Keras 3's "linear", "relu", "leaky_relu", "sigmoid", "tanh", "softmax", "elu", "selu",
        "softplus", "softsign", "relu6", "hard_sigmoid" (relu6(x + 3) / 6), "exponential",
        "swish" or "silu" (x * sigmoid(x)), "gelu" (exact, with erf: Keras 3's default), "mish"
        (x * tanh(softplus(x))) or "hard_swish" or "hard_silu" (x * relu6(x + 3) / 6), in any case;
        None is "linear"; "leaky_relu" has Keras 3's slope 0.2, "elu" its alpha 1.0. In training,
        swish, gelu, mish and hard_swish keep the layer's input for backward.
    """

    alpha = None  # the activation's default (fastdl.ops.dense.activation_alpha)
    gemm_only = True
    runs_on_device = True
    keeps_logits = True
    _logits = None  # a training step's (forward)
    _pre = None  # a training step's input, for the activations whose gradient needs it (forward)
    PASS_STATE = Layer.PASS_STATE + ("_pre",)  # dropped with the pass: it may be the caller's batch

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
            # The previous layer's output, left as it is until this backward, as _logits.
            self._pre = x if is_input_activation(self.activation) else None
        out = self._buffer("out", x.shape) if training else self._empty(x.shape)
        self._out = out = apply(self.activation, x, self.alpha, self.backend, into=out)
        return out

    def backward_pre(self, dpre):
        """Backward from the gradient with respect to the activation's input (fused losses)."""
        return dpre

    def backward(self, dout):
        # Into a buffer reused from step to step, as the activated layers' (softmax makes its own).
        into = self._buffer("dpre", self._out.shape) if self.activation in ACTIVATIONS else None
        return grad(self.activation, self._out, dout, self.backend, self.alpha, into=into, pre=self._pre)


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


class ELU(Activation):
    """x where x > 0, alpha * (exp(x) - 1) elsewhere, as a layer (Keras 3's ELU).

    Parameters
    ----------
    alpha : float >= 0, default 1.0
        The value approached far below zero is -alpha.
    """

    def __init__(self, alpha=ELU_ALPHA, **kwargs):
        super().__init__("elu", **kwargs)
        self.alpha = check_alpha(alpha)


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
