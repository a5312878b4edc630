"""Optimizers with Keras' update rules and defaults: SGD (momentum), RMSprop, Adam."""

import numbers

import numpy as np

from fastdl import backend as _backend
from fastdl._parallel import row_ranges

_EMPTY = {np.dtype(np.float32): np.empty(0, np.float32), np.dtype(np.float64): np.empty(0, np.float64)}


def _check_rate(value, name, upper=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if upper is not None and value >= upper:
        raise ValueError(f"{name} must be < {upper}, got {value!r}")
    return float(value)


class Optimizer:
    """Updates a list of Parameters from their .grad: `step()`, `zero_grad()`.

    Each update is one compiled pass over the parameter (the optim kernels), with no temporaries.

    The model hands the parameters over in `compile`; `state_dict()` / `load_state_dict()` carry the
    slot arrays (momentum, moments) and the step count through save/load.
    """

    slots = ()

    def __init__(self, lr):
        self.lr = _check_rate(lr, "lr")
        self.params = []
        self.iterations = 0
        self.state = {}

    def attach(self, params, backend=None):
        """Take over the model's parameters; the updates run on `backend`'s optim kernels."""
        self.params = list(params)
        self.iterations = 0
        self.state = {slot: [np.zeros_like(p.value) for p in self.params] for slot in self.slots}
        self._kernels, _ = _backend.kernels("optim", backend)

    def _flat(self, i, p):
        """(value, grad, *slots) of parameter i as 1-D arrays, and the threads worth using on them."""
        arrays = [p.value.reshape(-1), np.ascontiguousarray(p.grad, dtype=p.value.dtype).reshape(-1)]
        arrays += [self.state[slot][i].reshape(-1) for slot in self.slots]
        return arrays, len(row_ranges(p.value.size, _backend.get_num_threads(), 16))

    def zero_grad(self):
        """Zero every gradient in place (a training step need not: backward overwrites them)."""
        for p in self.params:
            p.grad[...] = 0

    def step(self):
        self.iterations += 1
        for i, p in enumerate(self.params):
            self._update(i, p)

    def _update(self, i, p):
        raise NotImplementedError

    def state_dict(self):
        arrays = {f"{slot}/{i}": value for slot, values in self.state.items() for i, value in enumerate(values)}
        return {"name": type(self).__name__, "iterations": self.iterations}, arrays

    def load_state_dict(self, meta, arrays):
        if meta["name"] != type(self).__name__:
            raise ValueError(f"the saved optimizer state is {meta['name']}'s, not {type(self).__name__}'s")
        for slot, values in self.state.items():
            for i in range(len(values)):
                saved = arrays[f"{slot}/{i}"]
                if saved.shape != values[i].shape:
                    raise ValueError(f"saved optimizer slot {slot}/{i} has shape {saved.shape}, expected {values[i].shape}")
                values[i][...] = saved
        self.iterations = int(meta["iterations"])

    def __repr__(self):
        return f"{type(self).__name__}(lr={self.lr})"


class SGD(Optimizer):
    """velocity = momentum * velocity - lr * grad; value += velocity (plain SGD when momentum is 0)."""

    def __init__(self, lr=0.01, momentum=0.0):
        super().__init__(lr)
        self.momentum = _check_rate(momentum, "momentum", 1)
        self.slots = ("velocity",) if self.momentum else ()

    def _update(self, i, p):
        (value, grad, *velocity), n_threads = self._flat(i, p)
        velocity = velocity[0] if velocity else _EMPTY[value.dtype]
        as_dtype = value.dtype.type
        self._kernels.sgd_step(value, grad, velocity, as_dtype(self.lr), as_dtype(self.momentum), n_threads)


class RMSprop(Optimizer):
    """ms = rho * ms + (1 - rho) * grad^2; value -= lr * grad / (sqrt(ms) + epsilon)."""

    slots = ("ms",)

    def __init__(self, lr=1e-3, rho=0.9, epsilon=1e-7):
        super().__init__(lr)
        self.rho = _check_rate(rho, "rho", 1)
        self.epsilon = _check_rate(epsilon, "epsilon")

    def _update(self, i, p):
        (value, grad, ms), n_threads = self._flat(i, p)
        as_dtype = value.dtype.type
        self._kernels.rmsprop_step(value, grad, ms, as_dtype(self.lr), as_dtype(self.rho), as_dtype(1 - self.rho),
                                   as_dtype(self.epsilon), n_threads)


class Adam(Optimizer):
    """Adam as Keras: bias correction folded into the step size, epsilon outside the square root."""

    slots = ("m", "v")

    def __init__(self, lr=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        super().__init__(lr)
        self.beta_1 = _check_rate(beta_1, "beta_1", 1)
        self.beta_2 = _check_rate(beta_2, "beta_2", 1)
        self.epsilon = _check_rate(epsilon, "epsilon")

    def step(self):
        t = self.iterations + 1
        self._alpha = float(self.lr * np.sqrt(1 - self.beta_2 ** t) / (1 - self.beta_1 ** t))
        super().step()

    def _update(self, i, p):
        (value, grad, m, v), n_threads = self._flat(i, p)
        as_dtype = value.dtype.type
        self._kernels.adam_step(value, grad, m, v, as_dtype(self._alpha), as_dtype(1 - self.beta_1),
                                as_dtype(1 - self.beta_2), as_dtype(self.epsilon), n_threads)


OPTIMIZERS = {"sgd": SGD, "rmsprop": RMSprop, "adam": Adam}


def get_optimizer(optimizer):
    """An Optimizer from a name (Keras defaults) or an instance."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, str) and optimizer.lower() in OPTIMIZERS:
        return OPTIMIZERS[optimizer.lower()]()
    raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {sorted(OPTIMIZERS)} or an Optimizer instance")
