"""Keras 3's optimizer options common to every optimizer: weight_decay, clipnorm, clipvalue and
global_clipnorm (keras/src/optimizers/base_optimizer.py: _clip_gradients, _clip_by_norm,
clip_by_global_norm, _apply_weight_decay), checked here and applied by `Clipping` with the optim
kernels (block_square_sums, scale_blocks, clip_values; decay_step is the optimizer's)."""

import math
import numbers

import numpy as np

from fastdl import _device

OPTIONS = ("weight_decay", "clipnorm", "clipvalue", "global_clipnorm")
CLIPS = ("clipnorm", "clipvalue", "global_clipnorm")
# Elements per block of the norms' reductions: blocks never cross a parameter's bounds, and are
# what the CPU backends' threads (and the cuda backend's thread blocks) share out.
BLOCK = 4096


def check_options(options):
    """The options {name: value} checked (None, or a finite number >= 0; one clip option at most,
    as Keras 3) and as floats; ValueError otherwise."""
    checked = {}
    for name in OPTIONS:
        value = options.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be None or a finite number >= 0, got {value!r}")
            value = float(value)
        checked[name] = value
    given = [f"{name}={checked[name]!r}" for name in CLIPS if checked[name] is not None]
    if len(given) > 1:
        raise ValueError(f"only one of clipnorm, clipvalue and global_clipnorm can be set (as in Keras 3), got "
                         f"{', '.join(given)}")
    return checked


def option(name):
    """A property for option `name`: set, it is checked with the others (check_options) and the
    optimizer's clipping is made again at its next step."""

    def get(self):
        return self._options[name]

    def set_(self, value):
        self._options = check_options(dict(self._options, **{name: value}))
        self._clipping = None

    return property(get, set_, doc=f"Keras 3's {name} (None: off).")


def clip_kind(options):
    """(name, bound) of the clipping Keras would apply, or None: a bound of 0 clips nothing in
    Keras 3 (`if self.clipnorm and self.clipnorm > 0`), nor here."""
    for name in CLIPS:
        if options[name]:
            return name, options[name]
    return None


def _blocks(length, layout):
    """(starts, owners): blocks [starts[b], starts[b + 1]) of at most BLOCK elements covering
    range(length), none crossing the bounds of a parameter at (offset, size) in `layout`; owners[b]
    is block b's parameter, len(layout) for the padding between parameters (zeros, left as they are)."""
    starts, owners, end = [0], [], 0
    for index, (offset, size) in enumerate(list(layout) + [(length, 0)]):
        if offset > end:  # padding
            starts.append(offset)
            owners.append(len(layout))
        for start in range(offset, offset + size, BLOCK):
            starts.append(min(start + BLOCK, offset + size))
            owners.append(index)
        end = offset + size
    return np.array(starts, np.int64), np.array(owners, np.intp)


class _Run:
    """One run's clipping arrays: block layout, float64 partial sums, the clipped gradient."""

    def __init__(self, length, layout, like):
        self.n_params = len(layout)
        self.dtype = np.dtype(like.dtype)
        self.device = _device.is_device(like)
        self.starts, self.owners = _blocks(length, layout)
        n_blocks = len(self.owners)
        make = _device.zeros if self.device else np.zeros
        self.out = make(length, self.dtype)
        self.partials = make(n_blocks, np.float64)
        self.factors = np.ones((2, n_blocks), self.dtype)  # each block's multiplier, divisor
        if self.device:
            self.starts_k = _device.to_device(self.starts)
            self.factors_k = _device.to_device(self.factors)
            self.mul_k, self.div_k = self.factors_k[0], self.factors_k[1]  # views made once
        else:
            self.starts_k, self.mul_k, self.div_k = self.starts, self.factors[0], self.factors[1]

    def squares(self, kernels, grad, n_threads):
        """Each parameter's sum of squared gradients, float64."""
        kernels.block_square_sums(grad, self.starts_k, self.partials, n_threads)
        partials = self.partials.copy_to_host() if self.device else self.partials
        return np.bincount(self.owners, weights=partials, minlength=self.n_params + 1)[:self.n_params]

    def scale(self, kernels, grad, mul, div, n_threads):
        """out = grad * mul / div, mul and div per parameter (host, this run's dtype); the padding's
        factors are 1."""
        one = np.ones(1, self.dtype)
        self.factors[0] = np.concatenate([mul, one])[self.owners]
        self.factors[1] = np.concatenate([div, one])[self.owners]
        if self.device:
            self.factors_k.copy_to_device(self.factors)
        kernels.scale_blocks(grad, self.starts_k, self.mul_k, self.div_k, self.out, n_threads)
        return self.out


class Clipping:
    """An optimizer's gradient clipping, as Keras 3's _clip_gradients, on runs of parameters
    (layouts: each run's length and its parameters' (offset, size); likes: an array of each run's
    dtype and side).

    The gradients are left as they are: `apply` writes the clipped ones to buffers of its own.
    The norms' sums of squares are float64 (Keras sums in the gradient's dtype). Where a norm is
    not finite (a NaN or infinite gradient, or a square past float64's range) the parameter's
    clipped gradient (every one, for global_clipnorm, as Keras) is NaN, and clipvalue keeps NaN and
    infinite values: what is not finite stays so for fastdl's guards (train_on_batch refuses the
    step, fit puts the epoch back), never clipped to finite values (Keras' clipnorm makes an
    infinite norm's finite values 0, its clipvalue makes inf the bound).
    """

    def __init__(self, name, bound, layouts, likes):
        self.name, self.bound = name, bound
        self.runs = [_Run(length, layout, like) for (length, layout), like in zip(layouts, likes)]

    def apply(self, kernels, grads, n_threads):
        """The gradients to apply, clipped, one 1-D array per run (`grads` as the runs hold them)."""
        if self.name == "clipvalue":
            out = []
            for run, grad, n in zip(self.runs, grads, n_threads):
                bound = run.dtype.type(self.bound)
                kernels.clip_values(grad, -bound, bound, run.out, n)
                out.append(run.out)
            return out
        squares = [run.squares(kernels, grad, n) for run, grad, n in zip(self.runs, grads, n_threads)]
        if self.name == "global_clipnorm":
            total = 0.0
            for run_squares in squares:
                for value in run_squares:
                    total += value  # in the parameters' order, as Keras' sum of the stacked squares
            squares = [np.full(run.n_params, total) for run in self.runs]
        out = []
        for run, grad, n, run_squares in zip(self.runs, grads, n_threads, squares):
            as_dtype = run.dtype.type
            with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
                norm = np.sqrt(run_squares).astype(run.dtype)  # inf where past this dtype's range
                bound = as_dtype(self.bound)
                if self.name == "clipnorm":  # values * clipnorm / maximum(l2norm, clipnorm)
                    mul = np.full(run.n_params, bound)
                    div = np.maximum(norm, bound)
                else:  # clipnorm * minimum(1 / norm, 1 / clipnorm) + (norm - norm): NaN for a norm not finite
                    mul = bound * np.minimum(as_dtype(1) / norm, as_dtype(1) / bound) + (norm - norm)
                    div = np.ones(run.n_params, run.dtype)
                div[~np.isfinite(norm)] = np.nan
            out.append(run.scale(kernels, grad, mul.astype(run.dtype), div, n))
        return out
