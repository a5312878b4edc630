"""Weight penalties added to the loss: L2, as Keras' `kernel_regularizer=l2(0.01)`."""

import numbers

import numpy as np

from fastdl import _device


class L2:
    """factor * sum(w^2), whose gradient 2 * factor * w is added to the kernel's.

    Parameters
    ----------
    l2 : float, default 0.01 (Keras' default)
    """

    def __init__(self, l2=0.01):
        if isinstance(l2, bool) or not isinstance(l2, numbers.Real) or not np.isfinite(l2) or l2 < 0:
            raise ValueError(f"the L2 factor must be a finite number >= 0, got {l2!r}")
        self.l2 = float(l2)

    def __call__(self, weights):
        """The penalty, a float."""
        if _device.is_device(weights):
            from fastdl.ops._nn_on_device import sum_of_squares

            return self.l2 * sum_of_squares(weights)
        return self.l2 * float(np.sum(np.square(weights, dtype=np.float64)))

    def grad(self, weights):
        """d penalty / d weights, in the weights' dtype."""
        return weights * weights.dtype.type(2 * self.l2)

    def __repr__(self):
        return f"L2(l2={self.l2})"


def l2(l2=0.01):
    """An L2 regulariser (Keras' `regularizers.l2`)."""
    return L2(l2)


def add_grad(regularizer, weights, grad):
    """grad += regularizer.grad(weights), in place; on the device in one pass for an L2 penalty."""
    if not _device.is_device(grad):
        grad += regularizer.grad(weights)
    elif isinstance(regularizer, L2):
        from fastdl.ops._nn_on_device import arrays

        arrays().add_scaled(weights.reshape(-1), weights.dtype.type(2 * regularizer.l2), grad.reshape(-1))
    else:  # another penalty's gradient, computed on the host
        _device.assign(grad, grad.copy_to_host() + regularizer.grad(weights.copy_to_host()))


def get_regularizer(regularizer):
    """None, an object with `__call__(w)` and `grad(w)`, or a name ("l2")."""
    if regularizer is None or (callable(regularizer) and hasattr(regularizer, "grad")):
        return regularizer
    if isinstance(regularizer, str) and regularizer.lower() == "l2":
        return L2()
    raise ValueError(f"unknown kernel_regularizer {regularizer!r}; use nn.l2(factor), 'l2' or None")
