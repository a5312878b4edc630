"""Weight penalties added to the loss, as Keras 3's keras.regularizers: L1, L2 and L1L2
(`kernel_regularizer=l2(0.01)`, or by name: "l1", "l2", "l1_l2")."""

import math
import numbers

import numpy as np

from fastdl import _device


def _factor(name, value):
    """value as a float, if it is a finite number >= 0 (Keras' validate_float_arg, bools refused)."""
    try:
        factor = None if isinstance(value, bool) or not isinstance(value, numbers.Real) else float(value)
    except OverflowError:  # an int past float range
        factor = None
    if factor is None or not math.isfinite(factor) or factor < 0:
        raise ValueError(f"the {name.upper()} factor must be a finite number >= 0, got {value!r}")
    return factor


def _sum_of_abs(weights):
    if _device.is_device(weights):
        from fastdl.ops._nn_on_device import sum_of_abs

        return sum_of_abs(weights)
    return float(np.sum(np.abs(weights, dtype=np.float64)))


def _sum_of_squares(weights):
    if _device.is_device(weights):
        from fastdl.ops._nn_on_device import sum_of_squares

        return sum_of_squares(weights)
    return float(np.sum(np.square(weights, dtype=np.float64)))


class L1L2:
    """l1 * sum(|w|) + l2 * sum(w^2), whose gradient l1 * sign(w) + 2 * l2 * w is added to the kernel's
    (sign(0) = 0, abs' gradient at 0 in TF, JAX and torch). The sums are float64 on the host, in the
    weights' dtype on the device.

    Parameters
    ----------
    l1 : float, default 0.0 (Keras 3's default; None means 0.0)
    l2 : float, default 0.0 (Keras 3's default; None means 0.0)
    """

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _factor("l1", 0.0 if l1 is None else l1)
        self.l2 = _factor("l2", 0.0 if l2 is None else l2)

    def _terms(self):
        """(whether the penalty has an L1 term, an L2 term): L1L2 leaves out a term whose factor is 0,
        as Keras' L1L2 does; L1 and L2 always have their one term, as Keras' (L2(0) of a NaN is NaN)."""
        return self.l1 != 0, self.l2 != 0

    def __call__(self, weights):
        """The penalty, a float."""
        use_l1, use_l2 = self._terms()
        penalty = 0.0
        if use_l1:
            penalty += self.l1 * _sum_of_abs(weights)
        if use_l2:
            penalty += self.l2 * _sum_of_squares(weights)
        return penalty

    def grad(self, weights):
        """d penalty / d weights, in the weights' dtype."""
        use_l1, use_l2 = self._terms()
        scalar = weights.dtype.type
        grad = weights * scalar(2 * self.l2) if use_l2 else np.zeros_like(weights)
        if use_l1:  # after the L2 term, as on the device (add_grad)
            grad += np.sign(weights) * scalar(self.l1)
        return grad

    def get_config(self):
        """The factors, as Keras' get_config."""
        return {"l1": self.l1, "l2": self.l2}

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in self.get_config().items())})"


class L1(L1L2):
    """l1 * sum(|w|), whose gradient l1 * sign(w) (sign(0) = 0) is added to the kernel's.

    Parameters
    ----------
    l1 : float, default 0.01 (Keras' default; None means 0.01)
    """

    def __init__(self, l1=0.01):
        super().__init__(0.01 if l1 is None else l1, 0.0)

    def _terms(self):
        return True, False

    def get_config(self):
        return {"l1": self.l1}


class L2(L1L2):
    """l2 * sum(w^2), whose gradient 2 * l2 * w is added to the kernel's.

    Parameters
    ----------
    l2 : float, default 0.01 (Keras' default; None means 0.01)
    """

    def __init__(self, l2=0.01):
        super().__init__(0.0, 0.01 if l2 is None else l2)

    def _terms(self):
        return False, True

    def get_config(self):
        return {"l2": self.l2}


# Keras' lowercase names are the classes themselves (keras.regularizers.l1 is L1): the same defaults.
l1, l2, l1_l2 = L1, L2, L1L2

# What a name (any case) gives: Keras' L1() and L2(); for "l1_l2" the 0.01 each that Keras' L1L2
# docstring promises (Keras 3's get("L1L2") makes L1L2(), whose 0 and 0 penalise nothing).
_NAMED = {"l1": L1, "l2": L2, "l1_l2": lambda: L1L2(0.01, 0.01), "l1l2": lambda: L1L2(0.01, 0.01)}


def add_grad(regularizer, weights, grad):
    """grad += regularizer.grad(weights), in place; on the device (one pass per term) for L1, L2, L1L2."""
    if not _device.is_device(grad):
        grad += regularizer.grad(weights)
    elif isinstance(regularizer, L1L2):
        from fastdl.ops._nn_on_device import arrays

        use_l1, use_l2 = regularizer._terms()
        flat_weights, flat_grad, scalar = weights.reshape(-1), grad.reshape(-1), weights.dtype.type
        if use_l2:
            arrays().add_scaled(flat_weights, scalar(2 * regularizer.l2), flat_grad)
        if use_l1:
            arrays().add_scaled_sign(flat_weights, scalar(regularizer.l1), flat_grad)
    else:  # another penalty's gradient, computed on the host
        _device.assign(grad, grad.copy_to_host() + regularizer.grad(weights.copy_to_host()))


def get_regularizer(regularizer, argument="kernel_regularizer"):
    """None, an object with `__call__(w)` and `grad(w)`, or a name: "l1", "l2", "l1_l2" (any case; and
    Keras' class names "L1", "L2", "L1L2"), or a class of them (made with its defaults, as Keras does).
    `argument` names the layer's argument in errors."""
    if isinstance(regularizer, type) and issubclass(regularizer, L1L2):
        return regularizer()
    if regularizer is None or (callable(regularizer) and hasattr(regularizer, "grad")):
        return regularizer
    if isinstance(regularizer, str) and regularizer.lower() in _NAMED:
        return _NAMED[regularizer.lower()]()
    if callable(regularizer):
        raise ValueError(f"{argument} {regularizer!r} has no grad(w) method: fastdl has no automatic "
                         "differentiation, so a penalty of your own gives its gradient too (see nn.L1L2)")
    raise ValueError(f"unknown {argument} {regularizer!r}; use 'l1', 'l2', 'l1_l2' (or Keras' 'L1', 'L2', "
                     "'L1L2'), nn.L1(l1), nn.L2(l2), nn.L1L2(l1, l2) or None")
