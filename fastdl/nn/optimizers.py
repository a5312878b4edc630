"""Optimizers with Keras' update rules and defaults: SGD (momentum), RMSprop, Adam."""

import numbers

import numpy as np


def _check_rate(value, name, upper=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if upper is not None and value >= upper:
        raise ValueError(f"{name} must be < {upper}, got {value!r}")
    return float(value)


class Optimizer:
    """Updates a list of Parameters from their .grad: `step()`, `zero_grad()`.

    The model hands the parameters over in `compile`; `state_dict()` / `load_state_dict()` carry the
    slot arrays (momentum, moments) and the step count through save/load.
    """

    slots = ()

    def __init__(self, lr):
        self.lr = _check_rate(lr, "lr")
        self.params = []
        self.iterations = 0
        self.state = {}

    def attach(self, params):
        self.params = list(params)
        self.iterations = 0
        self.state = {slot: [np.zeros_like(p.value) for p in self.params] for slot in self.slots}
        # Per-parameter work arrays, so that a step allocates nothing (not part of the state).
        self._scratch = [np.empty_like(p.value) for p in self.params]

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
        step = np.multiply(p.grad, p.value.dtype.type(self.lr), out=self._scratch[i])
        if self.momentum:
            velocity = self.state["velocity"][i]
            velocity *= self.momentum
            velocity -= step
            p.value += velocity
        else:
            p.value -= step


class RMSprop(Optimizer):
    """ms = rho * ms + (1 - rho) * grad^2; value -= lr * grad / (sqrt(ms) + epsilon)."""

    slots = ("ms",)

    def __init__(self, lr=1e-3, rho=0.9, epsilon=1e-7):
        super().__init__(lr)
        self.rho = _check_rate(rho, "rho", 1)
        self.epsilon = _check_rate(epsilon, "epsilon")

    def _update(self, i, p):
        ms = self.state["ms"][i]
        ms *= self.rho
        ms += (1 - self.rho) * p.grad * p.grad
        p.value -= self.lr * p.grad / (np.sqrt(ms) + self.epsilon)


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
        m, v = self.state["m"][i], self.state["v"][i]
        m += (1 - self.beta_1) * (p.grad - m)
        v += (1 - self.beta_2) * (p.grad * p.grad - v)
        p.value -= self._alpha * m / (np.sqrt(v) + self.epsilon)


OPTIMIZERS = {"sgd": SGD, "rmsprop": RMSprop, "adam": Adam}


def get_optimizer(optimizer):
    """An Optimizer from a name (Keras defaults) or an instance."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, str) and optimizer.lower() in OPTIMIZERS:
        return OPTIMIZERS[optimizer.lower()]()
    raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {sorted(OPTIMIZERS)} or an Optimizer instance")
