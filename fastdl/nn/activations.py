"""Activation functions (forward in numpy, backward through fastdl.ops) and activation layers."""

import numbers

import numpy as np

from fastdl.ops import activation_grad
from fastdl.ops.dense import ACTIVATIONS, activation_grad_into
from fastdl.nn.module import Layer

NAMES = ("linear", "relu", "leaky_relu", "sigmoid", "tanh", "softmax")
LEAKY_ALPHA = 0.3  # Keras' LeakyReLU default


def check_activation(activation):
    """The activation's canonical name ("linear" for None)."""
    if activation is None:
        return "linear"
    if not isinstance(activation, str) or activation.lower() not in NAMES:
        raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(map(repr, NAMES))} or None")
    return activation.lower()


def softmax(z):
    """Softmax over the last axis, shifted by the row maximum so exp never overflows."""
    shifted = z - z.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    e /= e.sum(axis=-1, keepdims=True)
    return e


def check_alpha(alpha):
    """LeakyReLU's negative slope: a finite number >= 0 (the backward pass reads the sign of the output)."""
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
    return float(alpha)


def apply(name, z, alpha=LEAKY_ALPHA):
    """activation(z), in place where it can be."""
    if name == "linear":
        return z
    if name == "relu":
        return np.maximum(z, 0, out=z)
    if name == "leaky_relu":
        negative = z < 0
        z[negative] *= z.dtype.type(alpha)
        return z
    if name == "tanh":
        return np.tanh(z, out=z)
    if name == "sigmoid":
        # exp of a non-positive number only: no overflow for large |z|.
        e = np.exp(-np.abs(z))
        return np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(z.dtype, copy=False)
    if name == "softmax":
        return softmax(z)
    raise AssertionError(name)


def grad(name, out, dout, backend=None, alpha=LEAKY_ALPHA, into=None):
    """Gradient with respect to the activation's input, from its output `out`.

    into: optional C-contiguous array of out's shape and dtype that receives the compiled
    activations' gradient (a layer's reused buffer).
    """
    if name == "linear":
        return dout
    if name == "leaky_relu":
        # alpha >= 0, so a non-positive output means a non-positive input (alpha 0 is ReLU).
        return np.where(out <= 0, dout * out.dtype.type(alpha), dout)
    if name == "softmax":
        return out * (dout - (dout * out).sum(axis=-1, keepdims=True))
    assert name in ACTIVATIONS
    channels = out.shape[-1]
    if into is None:
        return activation_grad(out.reshape(-1, channels), dout.reshape(-1, channels), name,
                               backend=backend).reshape(out.shape)
    dout = np.ascontiguousarray(dout, dtype=out.dtype)
    if dout.shape != out.shape:
        raise ValueError(f"dout must have the output's shape {out.shape}, got {dout.shape}")
    activation_grad_into(out.reshape(-1, channels), dout.reshape(-1, channels), ACTIVATIONS[name],
                         into.reshape(-1, channels), backend)
    return into


class Activation(Layer):
    """An activation applied elementwise (softmax: over the last axis)."""

    alpha = LEAKY_ALPHA

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = check_activation(activation)

    def forward(self, x, training=False):
        z = np.array(x, dtype=self.dtype)
        self._logits = z if self.activation == "softmax" else None
        self._out = apply(self.activation, z, self.alpha)
        return self._out

    def backward_pre(self, dpre):
        """Backward from the gradient with respect to the activation's input (fused losses)."""
        return dpre

    def backward(self, dout):
        return grad(self.activation, self._out, dout, self.backend, self.alpha)


class ReLU(Activation):
    def __init__(self, **kwargs):
        super().__init__("relu", **kwargs)


class LeakyReLU(Activation):
    """x where x >= 0, alpha * x elsewhere (Keras' default alpha 0.3)."""

    def __init__(self, alpha=LEAKY_ALPHA, **kwargs):
        super().__init__("leaky_relu", **kwargs)
        self.alpha = check_alpha(alpha)


class Sigmoid(Activation):
    def __init__(self, **kwargs):
        super().__init__("sigmoid", **kwargs)


class Tanh(Activation):
    def __init__(self, **kwargs):
        super().__init__("tanh", **kwargs)


class Softmax(Activation):
    def __init__(self, **kwargs):
        super().__init__("softmax", **kwargs)
