"""Optimizers with Keras' update rules and defaults: SGD (momentum, Nesterov), RMSprop (momentum,
centered), Adam (AMSGrad), AdamW, and Adagrad, Adadelta, Adamax, Nadam (fastdl/nn/optimizers_more.py);
Keras 3's weight_decay, clipnorm, clipvalue and global_clipnorm for each (fastdl/nn/optimizers_clip.py)."""

import gc
import numbers
import warnings
import weakref

import numpy as np

from fastdl import _device
from fastdl import backend as _backend
from fastdl._parallel import row_ranges
from fastdl._interrupts import sigint_deferred
from fastdl.nn.module import check_bool
from fastdl.nn.optimizers_clip import Clipping, check_options, clip_kind, option

_EMPTY = {np.dtype(np.float32): np.empty(0, np.float32), np.dtype(np.float64): np.empty(0, np.float64)}


def _empty(like):
    """An empty array of like's dtype, on the device where like is (SGD's missing velocity)."""
    if _device.is_device(like):
        from fastdl.ops._nn_on_device import no_array

        return no_array(like.dtype)
    return _EMPTY[like.dtype]


def _check_epsilon(value):
    """epsilon > 0: with 0, a weight whose gradient stays 0 (a dead ReLU's) would become 0 / 0."""
    value = _check_rate(value, "epsilon")
    if np.float32(value) == 0:  # float32 models take it in float32
        raise ValueError(f"epsilon must be > 0 in float32 (at least about 1.4e-45), got {value!r}: a weight whose "
                         "gradient stays 0 would be updated by 0 / 0")
    return value


def _check_rate(value, name, upper=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if upper is not None and value >= upper:
        raise ValueError(f"{name} must be < {upper}, got {value!r}")
    return float(value)


class Optimizer:
    """Updates a list of Parameters from their .grad: `step()`, `zero_grad()`.

    Each update is one compiled pass (the optim kernels), with no temporaries. Parameters that lie
    one after another in a model's flat buffers (fastdl.nn.module.place_parameters) are updated
    together: a model's step is one pass over its buffer, one launch on the cuda backend.

    The model hands the parameters over in `compile`; `state_dict()` / `load_state_dict()` carry the
    slot arrays (momentum, moments), the step count and the learning rate (which a callback may
    have changed) through save/load, as Keras saves an optimizer's variables. The other
    hyper-parameters are plain numbers in Keras too, left out of its saved variables.
    """

    slots = ()
    _options, _clipping = check_options({}), None  # (an instance pickled before the options had none)
    weight_decay = option("weight_decay")
    clipnorm = option("clipnorm")
    clipvalue = option("clipvalue")
    global_clipnorm = option("global_clipnorm")

    def __init__(self, lr, learning_rate=None, default=None, **options):
        """lr, or learning_rate (Keras' name for it, Keras 3's only one), else the default; options:
        Keras 3's weight_decay, clipnorm, clipvalue, global_clipnorm (optimizers_clip.check_options)."""
        self._options = check_options(options)
        self._clipping = None
        if lr is not None and learning_rate is not None:
            raise ValueError(f"give lr or learning_rate, not both (got {lr!r} and {learning_rate!r})")
        name, rate = ("learning_rate", learning_rate) if learning_rate is not None else ("lr", lr)
        self.lr = _check_rate(default if rate is None else rate, name)
        self.params = []
        self.attached = False  # attach ran: params are the trainable ones when the model was compiled
        self.iterations = 0
        self.state = {}
        self._model = None  # a weak reference to the model compiled with this optimizer

    def attach(self, params, backend=None):
        """Take over the model's parameters; the updates run on `backend`'s optim kernels (the cuda
        backend's for parameters on the device)."""
        self.params = list(params)
        self.attached = True
        self.iterations = 0
        on_device = bool(self.params) and _device.is_device(self.params[0].value)
        self._backend = "cuda" if on_device else backend
        self._kernels, _ = _backend.kernels("optim", self._backend)
        self._group_runs()

    @property
    def learning_rate(self):
        """Keras' name for lr (Keras 3 code sets it to change the rate as it trains)."""
        return self.lr

    @learning_rate.setter
    def learning_rate(self, value):
        self.lr = _check_rate(value, "learning_rate")

    def _owner(self):
        """The model this optimizer trains: the one compiled with it, while it still uses it."""
        owner = None if self._model is None else self._model()
        return owner if getattr(owner, "optimizer", None) is self else None

    def check_free_for(self, model):
        """Raise ValueError where another model trains with this optimizer: it holds one model's
        parameters and slots, and would update that model's weights in this one's training."""
        owner = self._owner()
        if owner is not None and owner is not model:
            # A model no longer reachable (a notebook cell run again) may wait for the collector;
            # this reference must not keep it.
            owner = None
            gc.collect()
            owner = self._owner()
        if owner is not None and owner is not model:
            raise ValueError(f"this {type(self).__name__} trains another model ({owner.name!r}): give each model "
                             "an optimizer of its own (an optimizer holds one model's weights and slots)")

    def claim(self, model):
        """Belong to `model` (check_free_for first). A copied model's optimizer belongs to no model
        until one claims it."""
        self.check_free_for(model)
        self._model = weakref.ref(model)

    def compile_for(self, model, params, backend=None):
        """Take over `model`'s trainable parameters `params` (None while the model is not built: fit
        takes them on). Compiled again into the same model, the optimizer keeps its step count and
        the slots of the parameters it held, as a Keras optimizer keeps its variables; parameters
        new to it (layers unfrozen since) start with fresh slots (zeros; Adagrad's initial_accumulator_value)."""
        # Again: compiled into this model before, or a copy of it compiled into the model copied
        # with it (pickle, deepcopy: it belongs to no model yet, and all it holds is this model's).
        if self._model is not None:
            again = self._model() is model
        else:
            again = params is not None and {id(p) for p in self.params} <= {id(p) for _, p in model.parameters()}
        again = again and self.attached
        self.claim(model)
        if params is None:
            self.attached = False
        elif again:
            self._attach_again(backend, list(params))
        else:
            self.attach(params, backend)

    def follow_parameters(self):
        """Attach again to the same parameters after they moved to the device (a model compiled, then
        built into a model on the cuda backend), keeping the step count and the slots' values."""
        self._attach_again("cuda")

    def add_parameters(self, params):
        """Take over more parameters (a layer added to a compiled model) after those held, keeping
        the step count and the slots' values of those."""
        held = {id(p) for p in self.params}
        self._attach_again(self._backend, self.params + [p for p in params if id(p) not in held])

    def _attach_again(self, backend, params=None):
        """attach to `params` (default: the same ones), keeping the step count and the slots'
        values of the parameters held so far (matched by identity: others start afresh, _slot_start)."""
        kept = {id(p): [_device.host(self.state[slot][i]) for slot in self.slots] for i, p in enumerate(self.params)}
        iterations = self.iterations
        self.attach(self.params if params is None else params, backend)
        for i, p in enumerate(self.params):
            for slot, value in zip(self.slots, kept.get(id(p), ())):
                _device.assign(self.state[slot][i], value)
        self.iterations = iterations

    def __getstate__(self):
        # A copy (deepcopy, pickle) finds its kernels again, and groups its own copied parameters
        # and slots into runs: the runs' arrays are views, which would be copied as arrays of their own.
        # It belongs to no model until one is compiled with it.
        state = dict(self.__dict__)
        state.pop("_kernels", None)
        state.pop("_runs", None)
        state["_clipping"] = None
        state["_model"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self.params:
            self._attach_again(self._backend)

    def _group_runs(self):
        """Group the parameters into runs that follow one another in one flat buffer, and give each
        run flat slot arrays, each parameter views of them. A parameter not in flat buffers is a
        run of its own, read afresh at every step (its arrays may be replaced)."""
        runs = []
        for p in self.params:
            last = runs[-1] if runs else None
            if p.flat is not None and last is not None and last[0] is p.flat[0] and last[3] == p.flat[2]:
                last[3] = p.flat[3]
                last[4].append(p)
            else:
                values, grads, start, stop = p.flat if p.flat is not None else (None, None, 0, p.size)
                runs.append([values, grads, start, stop, [p]])
        self.state = {slot: [] for slot in self.slots}
        self._runs = []
        # Each run's length and its parameters' (offset, size) in it (padding between them: the norms skip it)
        self._run_layouts = [(stop - start, [(0 if values is None else p.flat[2] - start, p.size) for p in members])
                             for values, _, start, stop, members in runs]
        self._clipping = None  # made at the first step that clips (optimizers_clip.Clipping)
        for values, grads, start, stop, members in runs:
            like = members[0].value if values is None else values
            slots = [self._new_slot(slot, stop - start, like) for slot in self.slots]
            if values is None:
                self._runs.append((None, None, slots, members[0]))
            else:
                self._runs.append((values[start:stop], grads[start:stop], slots, None))
            for p in members:
                offset = 0 if values is None else p.flat[2] - start
                for slot, flat in zip(self.slots, slots):
                    self.state[slot].append(flat[offset:offset + p.size].reshape(p.shape))

    def _slot_start(self, slot):
        """The value slot `slot` starts from (Keras' initializer for it: zeros but Adagrad's)."""
        return 0.0

    def _new_slot(self, slot, size, like):
        """A 1-D slot array of `size` elements at its start value, in like's dtype and place."""
        start = np.full(size, self._slot_start(slot), like.dtype)
        return _device.to_device(start) if _device.is_device(like) else start

    def step(self):
        """Apply the gradients to every run, then count the step. Whole or not at all: a Ctrl-C
        is held back until the last run is updated and the step counted (sigint_deferred), so a
        model of several runs (a VAE's encoder and decoder) never has one updated and not the
        other, nor a count ahead of its weights (Adam's bias correction, a saved file)."""
        with sigint_deferred():
            runs = []
            for value, grad, slots, loose in self._runs:
                if loose is not None:  # a parameter outside flat buffers
                    value = loose.value.reshape(-1)
                    grad = np.ascontiguousarray(loose.grad, dtype=value.dtype).reshape(-1)
                n_threads = (1 if _device.is_device(value)
                             else len(row_ranges(value.size, _backend.get_num_threads(), 16)))
                runs.append((value, grad, slots, n_threads))
            clip = clip_kind(self._options)
            if clip is not None:  # every run's gradients clipped before any update (global_clipnorm's norm)
                if self._clipping is None:
                    self._clipping = Clipping(*clip, self._run_layouts, [value for value, *_ in runs])
                clipped = self._clipping.apply(self._kernels, [grad for _, grad, _, _ in runs],
                                               [n for *_, n in runs])
                runs = [(value, grad, slots, n) for (value, _, slots, n), grad in zip(runs, clipped)]
            decay = self._options["weight_decay"]
            for value, grad, slots, n_threads in runs:
                if decay:  # Keras' _apply_weight_decay, value -= value * weight_decay * lr (0: a no-op)
                    as_dtype = value.dtype.type
                    self._kernels.decay_step(value, as_dtype(decay), as_dtype(self.lr), n_threads)
                self._update(value, grad, slots, n_threads)
            self.iterations += 1

    def state_arrays(self):
        """The arrays a step writes: each run's values (a flat buffer's slice, or a parameter
        outside them: its own value) and its slots."""
        arrays = []
        for value, _, slots, loose in self._runs:
            arrays += [value if loose is None else loose.value, *slots]
        return arrays

    def gradient_arrays(self):
        """The gradients a step applies, a flat buffer's slice (or a parameter's own) per run."""
        return [grad if loose is None else loose.grad for _, grad, _, loose in self._runs]

    def zero_grad(self):
        """Zero every gradient in place (a training step need not: backward overwrites them)."""
        for p in self.params:
            _device.assign(p.grad, np.zeros(p.shape, p.grad.dtype))

    def _update(self, value, grad, slots, n_threads):
        """One pass of the update rule over 1-D value, grad and slot arrays (slots in self.slots' order)."""
        raise NotImplementedError

    def state_dict(self):
        """(meta: name, step count, learning rate; {"<slot>/<i>": a copy of the i-th parameter's
        slot}): a snapshot, as get_weights gives, on every backend."""
        arrays = {f"{slot}/{i}": _device.host_copy(value) for slot, values in self.state.items()
                  for i, value in enumerate(values)}
        return {"name": type(self).__name__, "iterations": self.iterations, "learning_rate": self.lr}, arrays

    def check_state_dict(self, meta, arrays):
        """ValueError where saved state (as `state_dict` gives it) does not fit this optimizer."""
        if meta["name"] != type(self).__name__:
            raise ValueError(f"the saved optimizer state is {meta['name']}'s, not {type(self).__name__}'s")
        iterations = meta.get("iterations")
        if isinstance(iterations, bool) or not isinstance(iterations, numbers.Integral) or iterations < 0:
            raise ValueError(f"the saved optimizer step count is {iterations!r}, not an integer >= 0")
        if "learning_rate" in meta:  # (files saved before it was have none: the compiled rate stays)
            _check_rate(meta["learning_rate"], "the saved learning_rate")
        for slot, values in self.state.items():
            for i, value in enumerate(values):
                saved = arrays.get(f"{slot}/{i}")
                if saved is None:
                    raise ValueError(f"the saved optimizer state has no slot {slot}/{i}")
                if saved.shape != value.shape:
                    raise ValueError(f"saved optimizer slot {slot}/{i} has shape {saved.shape}, expected {value.shape}")

    def load_state_dict(self, meta, arrays):
        """Set the state `state_dict` gave; all of it is checked first. State without a learning
        rate (saved before it was) keeps this optimizer's."""
        self.check_state_dict(meta, arrays)
        unused = sorted({key.split("/")[0] for key in arrays} - set(self.state))
        if unused:  # e.g. SGD(momentum=0.9)'s velocity loaded into SGD(): as Keras 3, a warning
            warnings.warn(f"the saved optimizer state has slots {unused} that this {self!r} does not keep (it was "
                          "saved with other options: momentum, nesterov, amsgrad, centered); they are not loaded",
                          UserWarning, stacklevel=3)
        for slot, values in self.state.items():
            for i, value in enumerate(values):
                _device.assign(value, arrays[f"{slot}/{i}"])
        self.iterations = int(meta["iterations"])
        if "learning_rate" in meta:
            self.lr = float(meta["learning_rate"])

    def __repr__(self):
        return f"{type(self).__name__}(lr={self.lr})"


class SGD(Optimizer):
    """SGD optimizer (Keras' SGD): gradient descent, with momentum where asked.

    velocity = momentum * velocity - lr * grad; value += velocity (plain SGD when momentum is 0);
    with nesterov, value += momentum * velocity - lr * grad instead (Keras 3's form). The
    arguments come in Keras 3's order, SGD(learning_rate, momentum, nesterov).

    Parameters
    ----------
    lr : float >= 0, default 0.01
        The learning rate (Keras' default), also given as learning_rate.
    momentum : float in [0, 1), default 0
    nesterov : bool, default False
        Nesterov momentum (no effect when momentum is 0, as in Keras).
    learning_rate : float >= 0, optional, keyword-only
        Keras 3's name for lr; giving both is a ValueError.
    weight_decay : float >= 0, optional, keyword-only
        Keras 3's decoupled weight decay: value -= value * weight_decay * lr before each update,
        on every trainable weight (biases too, as Keras 3).
    clipnorm, clipvalue, global_clipnorm : float >= 0, optional, keyword-only
        Keras 3's gradient clipping, one of them at most (0 clips nothing): each weight's gradient
        to an L2 norm of at most clipnorm, each value to [-clipvalue, clipvalue], or all together
        to a norm of at most global_clipnorm (fastdl.nn.optimizers_clip.Clipping).
    """

    def __init__(self, lr=None, momentum=0.0, nesterov=False, *, learning_rate=None, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None):
        super().__init__(lr, learning_rate, default=0.01, weight_decay=weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm)
        self.momentum = _check_rate(momentum, "momentum", 1)
        self.nesterov = check_bool(nesterov, "nesterov")
        self.slots = ("velocity",) if self.momentum else ()

    def _update(self, value, grad, slots, n_threads):
        as_dtype = value.dtype.type
        if slots and self.nesterov:
            self._kernels.sgd_nesterov_step(value, grad, slots[0], as_dtype(self.lr), as_dtype(self.momentum),
                                            n_threads)
            return
        velocity = slots[0] if slots else _empty(value)
        self._kernels.sgd_step(value, grad, velocity, as_dtype(self.lr), as_dtype(self.momentum), n_threads)


class RMSprop(Optimizer):
    """RMSprop optimizer (Keras' RMSprop): steps scaled by a running mean of squared gradients.

    ms = rho * ms + (1 - rho) * grad^2; value -= lr * grad / sqrt(ms + epsilon). Centered, also
    mg = rho * mg + (1 - rho) * grad and sqrt(ms - mg^2 + epsilon); with momentum, the step
    lr * grad / sqrt(...) goes into momentum_slot = momentum * momentum_slot + step, and
    value -= momentum_slot. The arguments come in Keras 3's order,
    RMSprop(learning_rate, rho, momentum, epsilon, centered).

    Parameters
    ----------
    lr : float >= 0, default 0.001
        The learning rate (Keras' default), also given as learning_rate.
    rho : float in [0, 1), default 0.9
        How much of the running mean each step keeps.
    momentum : float in [0, 1), default 0
        Keras' plain (not Nesterov) momentum on the steps.
    epsilon : float > 0, default 1e-7
        Added under the square root (see Notes).
    centered : bool, default False
        Divide by the gradients' running variance (ms - mg^2) instead of their mean square. As in
        Keras and PyTorch, in float32 a steady gradient can round that variance below -epsilon,
        and the update's square root to NaN (after about 130 steps of a constant gradient): the
        loss then stops fit, which puts the epoch back.
    learning_rate : float >= 0, optional, keyword-only
        Keras 3's name for lr; giving both is a ValueError.
    weight_decay : float >= 0, optional, keyword-only
        Keras 3's decoupled weight decay: value -= value * weight_decay * lr before each update,
        on every trainable weight (biases too, as Keras 3).
    clipnorm, clipvalue, global_clipnorm : float >= 0, optional, keyword-only
        Keras 3's gradient clipping, one of them at most (0 clips nothing): each weight's gradient
        to an L2 norm of at most clipnorm, each value to [-clipvalue, clipvalue], or all together
        to a norm of at most global_clipnorm (fastdl.nn.optimizers_clip.Clipping).

    Notes
    -----
    Epsilon inside the square root, as Keras 3 (and tf.keras from 2.11) has it: a gradient much
    below sqrt(epsilon) (3e-4 by default) takes a step of about lr * grad / sqrt(epsilon).
    tf.keras up to 2.10 and PyTorch add epsilon to the root instead (a step of up to lr).
    """

    def __init__(self, lr=None, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, *, learning_rate=None,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None):
        super().__init__(lr, learning_rate, default=1e-3, weight_decay=weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm)
        self.rho = _check_rate(rho, "rho", 1)
        self.momentum = _check_rate(momentum, "momentum", 1)
        self.epsilon = _check_epsilon(epsilon)
        self.centered = check_bool(centered, "centered")
        self.slots = ("ms",) + (("momentum",) if self.momentum else ()) + (("mg",) if self.centered else ())

    def _update(self, value, grad, slots, n_threads):
        as_dtype = value.dtype.type
        scalars = as_dtype(self.lr), as_dtype(self.rho), as_dtype(1 - self.rho), as_dtype(self.epsilon)
        if not (self.momentum or self.centered):
            self._kernels.rmsprop_step(value, grad, slots[0], *scalars, n_threads)
            return
        named = dict(zip(self.slots, slots))
        self._kernels.rmsprop_momentum_step(value, grad, named["ms"], named.get("momentum", _empty(value)),
                                            named.get("mg", _empty(value)), *scalars, as_dtype(self.momentum),
                                            n_threads)


class Adam(Optimizer):
    """Adam optimizer (Keras' Adam): steps from running means of the gradients and of their squares.

    As Keras: m = beta_1 * m + (1 - beta_1) * grad, v = beta_2 * v + (1 - beta_2) * grad^2, and
    value -= lr_t * m / (sqrt(v) + epsilon), the bias correction folded into the step size
    lr_t = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t) and epsilon outside the square root; with
    amsgrad, v_hat = max(v_hat, v) takes v's place in the step. The arguments come in Keras 3's
    order, Adam(learning_rate, beta_1, beta_2, epsilon, amsgrad).

    Parameters
    ----------
    lr : float >= 0, default 0.001
        The learning rate (Keras' default), also given as learning_rate.
    beta_1 : float in [0, 1), default 0.9
        How much of the running mean of the gradients each step keeps.
    beta_2 : float in [0, 1), default 0.999
        How much of the running mean of their squares each step keeps.
    epsilon : float > 0, default 1e-7
    amsgrad : bool, default False
        The AMSGrad variant (the running maximum of v in the step).
    learning_rate : float >= 0, optional, keyword-only
        Keras 3's name for lr; giving both is a ValueError.
    weight_decay : float >= 0, optional, keyword-only
        Keras 3's decoupled weight decay: value -= value * weight_decay * lr before each update,
        on every trainable weight (biases too, as Keras 3).
    clipnorm, clipvalue, global_clipnorm : float >= 0, optional, keyword-only
        Keras 3's gradient clipping, one of them at most (0 clips nothing): each weight's gradient
        to an L2 norm of at most clipnorm, each value to [-clipvalue, clipvalue], or all together
        to a norm of at most global_clipnorm (fastdl.nn.optimizers_clip.Clipping).
    """

    def __init__(self, lr=None, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, *, learning_rate=None,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None):
        super().__init__(lr, learning_rate, default=1e-3, weight_decay=weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm)
        self.beta_1 = _check_rate(beta_1, "beta_1", 1)
        self.beta_2 = _check_rate(beta_2, "beta_2", 1)
        self.epsilon = _check_epsilon(epsilon)
        self.amsgrad = check_bool(amsgrad, "amsgrad")
        self.slots = ("m", "v", "v_hat") if self.amsgrad else ("m", "v")

    def step(self):
        t = self.iterations + 1  # this step's (the base class counts it once applied)
        self._alpha = float(self.lr * np.sqrt(1 - self.beta_2 ** t) / (1 - self.beta_1 ** t))
        super().step()

    def _update(self, value, grad, slots, n_threads):
        as_dtype = value.dtype.type
        scalars = (as_dtype(self._alpha), as_dtype(1 - self.beta_1), as_dtype(1 - self.beta_2),
                   as_dtype(self.epsilon))
        if self.amsgrad:
            self._kernels.adam_amsgrad_step(value, grad, *slots, *scalars, n_threads)
        else:
            self._kernels.adam_step(value, grad, *slots, *scalars, n_threads)


class AdamW(Adam):
    """AdamW optimizer (Keras' AdamW): Adam with decoupled weight decay.

    Each step, value -= value * weight_decay * lr, then Adam's update (Keras 3's AdamW is its
    Adam with weight_decay set). The arguments come in Keras 3's order,
    AdamW(learning_rate, weight_decay, beta_1, beta_2, epsilon, amsgrad).

    Parameters
    ----------
    lr : float >= 0, default 0.001
        The learning rate (Keras' default), also given as learning_rate.
    weight_decay : float >= 0, default 0.004
        Keras' default; None is a ValueError, as in Keras.
    beta_1 : float in [0, 1), default 0.9
    beta_2 : float in [0, 1), default 0.999
    epsilon : float > 0, default 1e-7
    amsgrad : bool, default False
    learning_rate : float >= 0, optional, keyword-only
        Keras 3's name for lr; giving both is a ValueError.
    clipnorm, clipvalue, global_clipnorm : float >= 0, optional, keyword-only
        As Adam's (one of them at most).
    """

    def __init__(self, lr=None, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, *,
                 learning_rate=None, clipnorm=None, clipvalue=None, global_clipnorm=None):
        if weight_decay is None:
            raise ValueError("AdamW's weight_decay must be a finite number >= 0, got None")
        super().__init__(lr, beta_1, beta_2, epsilon, amsgrad, learning_rate=learning_rate,
                         weight_decay=weight_decay, clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm)


# Keras 3's Adagrad, Adadelta, Adamax, Nadam: subclasses of Optimizer, so imported once it is defined
# (fastdl.nn imports this module first).
from fastdl.nn.optimizers_more import Adadelta, Adagrad, Adamax, Nadam  # noqa: E402

OPTIMIZERS = {"sgd": SGD, "rmsprop": RMSprop, "adam": Adam, "adamw": AdamW, "adagrad": Adagrad,
              "adadelta": Adadelta, "adamax": Adamax, "nadam": Nadam}


def get_optimizer(optimizer):
    """An Optimizer from a name (Keras defaults) or an instance."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, str) and optimizer.lower() in OPTIMIZERS:
        return OPTIMIZERS[optimizer.lower()]()
    raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {sorted(OPTIMIZERS)} or an Optimizer instance")
