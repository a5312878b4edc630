"""Keras 3's Adagrad, Adadelta, Adamax and Nadam (keras/src/optimizers/adagrad.py, adadelta.py,
adamax.py, nadam.py): their update rules, defaults and argument order, each update one pass of an
optim kernel (adagrad_step, adadelta_step, adamax_step, nadam_step) over a run's flat arrays, with
the step-dependent scalars worked out in float64 on the host, as Adam's lr_t is. Registered in
fastdl.nn.optimizers.OPTIMIZERS ("adagrad", "adadelta", "adamax", "nadam")."""

import numpy as np

from fastdl.nn.optimizers import Optimizer, _check_epsilon, _check_rate

_OPTIONS_DOC = """learning_rate : float >= 0, optional, keyword-only
        Keras 3's name for lr; giving both is a ValueError.
    weight_decay : float >= 0, optional, keyword-only
        Keras 3's decoupled weight decay: value -= value * weight_decay * lr before each update,
        on every trainable weight (biases too, as Keras 3).
    clipnorm, clipvalue, global_clipnorm : float >= 0, optional, keyword-only
        Keras 3's gradient clipping, one of them at most (0 clips nothing): each weight's gradient
        to an L2 norm of at most clipnorm, each value to [-clipvalue, clipvalue], or all together
        to a norm of at most global_clipnorm (fastdl.nn.optimizers_clip.Clipping)."""


def _with_options(cls):
    """The class, its docstring's {options} filled with the keyword options every optimizer takes."""
    cls.__doc__ = cls.__doc__.replace("{options}", _OPTIONS_DOC)
    return cls


@_with_options
class Adagrad(Optimizer):
    """Adagrad optimizer (Keras' Adagrad): each weight's steps scaled down by all its past gradients.

    accumulator += grad^2; value -= lr * grad / sqrt(accumulator + epsilon), the accumulator
    starting at initial_accumulator_value. The arguments come in Keras 3's order,
    Adagrad(learning_rate, initial_accumulator_value, epsilon).

    Parameters
    ----------
    lr : float >= 0, default 0.001
        The learning rate (Keras' default; the paper's form is 1.0), also given as learning_rate.
    initial_accumulator_value : float >= 0, default 0.1
        Where every accumulator starts (Keras' default; PyTorch's is 0).
    epsilon : float > 0, default 1e-7
        Added under the square root, as in Keras (PyTorch adds it to the root).
    {options}

    Notes
    -----
    A gradient whose square is past the dtype's range (|grad| > 1.8e19 in float32) makes its
    accumulator inf, and the weight stops there, as in Keras; fit's guard puts the epoch back.
    """

    def __init__(self, lr=None, initial_accumulator_value=0.1, epsilon=1e-7, *, learning_rate=None,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None):
        super().__init__(lr, learning_rate, default=1e-3, weight_decay=weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm)
        self.initial_accumulator_value = _check_rate(initial_accumulator_value, "initial_accumulator_value")
        self.epsilon = _check_epsilon(epsilon)
        self.slots = ("accumulator",)

    def _slot_start(self, slot):
        return self.initial_accumulator_value

    def _update(self, value, grad, slots, n_threads):
        as_dtype = value.dtype.type
        self._kernels.adagrad_step(value, grad, slots[0], as_dtype(self.lr), as_dtype(self.epsilon), n_threads)


@_with_options
class Adadelta(Optimizer):
    """Adadelta optimizer (Keras' Adadelta): steps scaled by running means of the squared gradients and steps.

    accumulated_grad = rho * accumulated_grad + (1 - rho) * grad^2;
    delta = sqrt(accumulated_delta_var + epsilon) * grad / sqrt(accumulated_grad + epsilon);
    accumulated_delta_var = rho * accumulated_delta_var + (1 - rho) * delta^2; value -= lr * delta.
    The arguments come in Keras 3's order, Adadelta(learning_rate, rho, epsilon).

    Parameters
    ----------
    lr : float >= 0, default 0.001
        The learning rate (Keras' default; the paper's form and PyTorch's default is 1.0), also
        given as learning_rate.
    rho : float in [0, 1), default 0.95
        How much of the running means each step keeps.
    epsilon : float > 0, default 1e-7
        Added under both square roots (with 0, no step would ever be taken).
    {options}
    """

    def __init__(self, lr=None, rho=0.95, epsilon=1e-7, *, learning_rate=None, weight_decay=None, clipnorm=None,
                 clipvalue=None, global_clipnorm=None):
        super().__init__(lr, learning_rate, default=1e-3, weight_decay=weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm)
        self.rho = _check_rate(rho, "rho", 1)
        self.epsilon = _check_epsilon(epsilon)
        self.slots = ("accumulated_grad", "accumulated_delta_var")

    def _update(self, value, grad, slots, n_threads):
        as_dtype = value.dtype.type
        self._kernels.adadelta_step(value, grad, *slots, as_dtype(self.lr), as_dtype(self.rho),
                                    as_dtype(1 - self.rho), as_dtype(self.epsilon), n_threads)


@_with_options
class Adamax(Optimizer):
    """Adamax optimizer (Keras' Adamax): Adam with the infinity norm of the gradients in place of v.

    m = beta_1 * m + (1 - beta_1) * grad, u = max(beta_2 * u, |grad|), and
    value -= lr / (1 - beta_1^t) * m / (u + epsilon) at step t (from 1), the bias correction
    worked out in float64 (Keras: in the weights' dtype). The arguments come in Keras 3's order,
    Adamax(learning_rate, beta_1, beta_2, epsilon).

    Parameters
    ----------
    lr : float >= 0, default 0.001
        The learning rate (Keras' default), also given as learning_rate.
    beta_1 : float in [0, 1), default 0.9
        How much of the running mean of the gradients each step keeps.
    beta_2 : float in [0, 1), default 0.999
        How much of the infinity norm each step keeps.
    epsilon : float > 0, default 1e-7
        Added to u (PyTorch's Adamax takes max(beta_2 * u, |grad| + epsilon) instead).
    {options}
    """

    def __init__(self, lr=None, beta_1=0.9, beta_2=0.999, epsilon=1e-7, *, learning_rate=None, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None):
        super().__init__(lr, learning_rate, default=1e-3, weight_decay=weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm)
        self.beta_1 = _check_rate(beta_1, "beta_1", 1)
        self.beta_2 = _check_rate(beta_2, "beta_2", 1)
        self.epsilon = _check_epsilon(epsilon)
        self.slots = ("m", "u")

    def step(self):
        t = self.iterations + 1  # this step's (the base class counts it once applied)
        self._alpha = float(self.lr / (1 - self.beta_1 ** t))
        super().step()

    def _update(self, value, grad, slots, n_threads):
        as_dtype = value.dtype.type
        self._kernels.adamax_step(value, grad, *slots, as_dtype(self._alpha), as_dtype(1 - self.beta_1),
                                  as_dtype(self.beta_2), as_dtype(self.epsilon), n_threads)


def _momentum_at(beta_1, t):
    """Keras 3's Nadam momentum at step t: u_t = beta_1 * (1 - 0.5 * 0.96^t), in float64."""
    return beta_1 * (1.0 - 0.5 * 0.96 ** t)


@_with_options
class Nadam(Optimizer):
    """Nadam optimizer (Keras' Nadam): Adam with Nesterov momentum, on Keras 3's momentum schedule.

    At step t (from 1): u_t = beta_1 * (1 - 0.5 * 0.96^t) and u_product_t = u_1 * ... * u_t;
    m = beta_1 * m + (1 - beta_1) * grad, v = beta_2 * v + (1 - beta_2) * grad^2 (Adam's, with
    its mended v where grad^2 overflows);
    m_hat = u_{t+1} * m / (1 - u_product_t * u_{t+1}) + (1 - u_t) * grad / (1 - u_product_t);
    value -= lr * m_hat / (sqrt(v / (1 - beta_2^t)) + epsilon), the root taken as
    sqrt(v) / sqrt(1 - beta_2^t) (v / (1 - beta_2^t) could overflow where v does not). The
    arguments come in Keras 3's order, Nadam(learning_rate, beta_1, beta_2, epsilon).

    Parameters
    ----------
    lr : float >= 0, default 0.001
        The learning rate (Keras' default), also given as learning_rate.
    beta_1 : float in [0, 1), default 0.9
        How much of the running mean of the gradients each step keeps (u_t's limit).
    beta_2 : float in [0, 1), default 0.999
        How much of the running mean of their squares each step keeps.
    epsilon : float > 0, default 1e-7
    {options}

    Notes
    -----
    The schedule's scalars (u_t, u_product_t, the bias corrections) are worked out in float64
    from the step count at every step; Keras computes them in the weights' dtype and keeps
    u_product as a variable of that dtype (float32 for a float32 model), so float32 steps differ
    from Keras' in the last bits. As the product is the step count's, save/load needs no more
    than the slots and the count to resume. Keras 3's schedule is 0.96^t; tf.keras before 2.11
    and PyTorch's NAdam take 0.96^(0.004 t) (torch.optim.NAdam(momentum_decay=1.0) is Keras 3's).
    """

    def __init__(self, lr=None, beta_1=0.9, beta_2=0.999, epsilon=1e-7, *, learning_rate=None, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None):
        super().__init__(lr, learning_rate, default=1e-3, weight_decay=weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm)
        self.beta_1 = _check_rate(beta_1, "beta_1", 1)
        self.beta_2 = _check_rate(beta_2, "beta_2", 1)
        self.epsilon = _check_epsilon(epsilon)
        self.slots = ("m", "v")
        self._product = (0, 1.0)  # (t, u_product_t), the last one worked out

    def _u_product(self, t):
        """u_1 * u_2 * ... * u_t in float64, multiplied in that order whether step by step or all
        again (after a load, or an epoch put back): the same bits either way."""
        done, product = self._product
        if done > t:
            done, product = 0, 1.0
        while done < t and product != 0:  # (0 once it underflows: 0 from there on)
            done += 1
            product *= _momentum_at(self.beta_1, done)
        self._product = (t, product)
        return product

    def step(self):
        t = self.iterations + 1  # this step's (the base class counts it once applied)
        u_t, u_next = _momentum_at(self.beta_1, t), _momentum_at(self.beta_1, t + 1)
        product = self._u_product(t)
        self._scalars = (self.lr * u_next / (1 - product * u_next), self.lr * (1 - u_t) / (1 - product),
                         1 / np.sqrt(1 - self.beta_2 ** t))
        super().step()

    def _update(self, value, grad, slots, n_threads):
        as_dtype = value.dtype.type
        m_rate, grad_rate, root_correction = (as_dtype(s) for s in self._scalars)
        self._kernels.nadam_step(value, grad, *slots, m_rate, grad_rate, as_dtype(1 - self.beta_1),
                                 as_dtype(1 - self.beta_2), root_correction, as_dtype(self.epsilon),
                                 n_threads)
