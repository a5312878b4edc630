"""Batches: how a model's data reaches its first layer (checked, gathered into reused buffers, on
the device for a model there), from arrays or from an iterator of batches."""

import itertools
import math

import numpy as np

from fastdl import _device
from fastdl._validation import all_finite


class Batches:
    """The data's part of fastdl.nn.training.Training: a model with `input_shape`, `dtype`,
    `on_device`, `build()` and a name."""

    def _check_x(self, x, name="x"):
        """x as a NumPy array, or a C-contiguous device array of the model's dtype on a model on the
        device."""
        on_device = _device.is_device(x)
        if is_batch_source(x):
            raise TypeError(f"{name} is an iterator: only fit takes an iterator of (x, y) batches; give arrays")
        if not on_device:
            x = np.asarray(x)
        if self.input_shape is None:
            if len(x.shape) < 2:
                raise ValueError(f"{name} must have a batch axis, got shape {x.shape}")
            self.build(x.shape[1:])
        elif not getattr(self, "built", False):
            self.build()
        if on_device:
            x = _device.view(x)
            if not self.on_device:
                raise ValueError(f"{name} is on the CUDA device but model {self.name!r} is not: build it with "
                                 'backend="cuda", or pass x as a NumPy array')
            if np.dtype(x.dtype) != self.dtype:
                raise TypeError(f"{name} on the device must be {self.dtype} as the model, got {np.dtype(x.dtype)}")
            _device.check_c_contiguous(x, name)  # the layers reshape it in place
        elif x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_) \
                or np.issubdtype(x.dtype, np.complexfloating):
            raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
        if x.shape[1:] != tuple(self.input_shape):
            raise ValueError(
                f"{name} has samples of shape {x.shape[1:]}, but the model's first layer expects "
                f"{tuple(self.input_shape)} (x must be (batch, {', '.join(map(str, self.input_shape))}))"
            )
        if x.shape[0] == 0:
            raise ValueError(f"{name} has no samples")
        return x

    def _as_batch(self, xb, epoch=None, batch=None, checked=False):
        """A batch as the first layer takes it, checked for NaN and infinity (unless checked: its
        values were, as fit's first epoch checks every row of x); on the device for a model there
        (a device batch passes as it is: device data is checked when it goes over, or is the
        caller's)."""
        if _device.is_device(xb):
            return xb
        xb = np.ascontiguousarray(xb, dtype=self.dtype)
        if not checked and not all_finite(xb):
            if epoch is None:  # predict, evaluate, a call: nothing is training
                raise ValueError("the input batch contains NaN or infinity")
            raise ValueError(f"epoch {epoch}, batch {batch}: the input batch contains NaN or infinity; training stopped")
        if self.on_device:
            batches = self.__dict__.setdefault("_device_batches", {})
            return _device.upload(batches, _device.recent_key(batches, "x", xb.shape), xb)
        return xb

    def _resident(self, x):
        """The training images on the device for the whole fit, where the model trains there and they
        take at most a quarter of the free device memory (else each batch goes over by itself)."""
        if not self.on_device or _device.is_device(x):
            return x
        x = np.ascontiguousarray(x, dtype=self.dtype)
        if not _device.fits(4 * x.nbytes):
            return x
        if not all_finite(x):
            raise ValueError("x contains NaN or infinity; training stopped")
        return _device.to_device(x)

    def _array_batches(self, x, y, batch_size, shuffle, epoch, x_checked=False):
        """fit's batches of an epoch over the arrays (x, y), as (xb, yb, count): in a shuffled order
        where asked, drawn from the model's generator as the first batch is asked for."""
        order = self.rng.permutation(x.shape[0]) if shuffle else np.arange(x.shape[0])
        for batch, first in enumerate(range(0, x.shape[0], batch_size)):
            yield self._training_batch(x, y, order, first, batch_size, epoch, batch, x_checked)

    def _training_batch(self, x, y, order, first, batch_size, epoch, batch, x_checked=False):
        """Batch `batch` of an epoch over x[order]: its images, checked (unless x_checked: every row
        of x was, by an earlier epoch of this fit) and where the first layer takes them (see
        _gather and _as_batch), its targets and how many there are."""
        stop = min(first + batch_size, len(order))
        xb = self._as_batch(self._gather(x, order, first, stop), epoch + 1, batch + 1, x_checked)
        return xb, y[order[first:stop]], stop - first

    def _gather(self, x, order, first, stop):
        """x[order[first:stop]] in a buffer reused from step to step (fresh memory costs page faults
        each step)."""
        if _device.is_device(x):
            return self._gather_on_device(x, order, first, stop)
        idx = order[first:stop]
        if x.dtype != self.dtype or not x.flags.c_contiguous:
            return x[idx]
        buffer = getattr(self, "_batch_buffer", None)
        if buffer is None or buffer.shape[1:] != x.shape[1:] or buffer.shape[0] < len(idx) or buffer.dtype != x.dtype:
            buffer = self._batch_buffer = np.empty((len(idx), *x.shape[1:]), x.dtype)
        # mode="clip" writes straight into out (idx is in range); "raise" would buffer the result.
        return np.take(x, idx, axis=0, out=buffer[:len(idx)], mode="clip")

    def _gather_on_device(self, x, order, first, stop):
        """x[order[first:stop]] for device rows x, gathered on the device into a reused batch (x
        itself when that takes all of its rows in order, as train_on_batch does).

        The epoch's order goes over once, at its first batch, and each batch's rows are a slice of
        it: a copy from host memory waits for the device to finish what it was given, so a copy
        each batch would wait for the last batch's backward pass and update, where this batch's
        launches can queue behind them."""
        from fastdl.ops._nn_on_device import arrays

        count = stop - first
        if count == x.shape[0] and np.array_equal(order[first:stop], np.arange(count)):
            return x
        buffers = self.__dict__.setdefault("_device_batches", {})
        uploaded = buffers.get("order")
        if uploaded is None or uploaded[0] is not order:
            uploaded = buffers["order"] = (order, _device.to_device(np.asarray(order, dtype=np.int64)))
        rows = uploaded[1][first:stop]
        shape = (count, *x.shape[1:])
        out = _device.buffer(buffers, _device.recent_key(buffers, "gathered", shape), shape, x.dtype)
        width = math.prod(x.shape[1:])
        arrays().take_rows(_device.reshaped(x, (x.shape[0], width)), rows, _device.reshaped(out, (count, width)))
        return out


_END = object()  # what next() gives for an iterator that has ended


def is_batch_source(x):
    """Whether fit's x is an iterator of (x, y) batches (a generator, say) rather than the data."""
    return hasattr(x, "__next__") and not _device.is_device(x)


class BatchSource:
    """fit's x where it is an iterator of (x, y) batches: `steps` of them an epoch, or (steps
    None) all it gives. Each batch is checked as fit checks arrays, and the first before any
    training, so that a source that does not fit the model fails at once (it also builds a model
    that has no input shape yet)."""

    def __init__(self, model, iterator, steps):
        self.model, self.iterator, self.steps = model, iterator, steps
        self.waiting = next(iterator, _END)  # a batch drawn but not trained yet
        if self.waiting is _END:
            raise ValueError("x is an iterator that gave no batches")
        self.check(self.waiting, "x's first batch")
        self.ran_out = False  # whether the last epoch ended for want of batches before its steps

    def check(self, item, where):
        """(xb, yb) of an item from the iterator, checked as fit's x and y."""
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"{where} is {describe(item)}: fit takes an iterator of (x, y) batches (Keras' "
                             "sample weights, a third item, are not supported)")
        return self.model._check_xy(*item, name=f"{where}: x")

    def has_more(self):
        """Whether the iterator has a batch left (drawn now and kept for the next epoch)."""
        if self.waiting is _END:
            self.waiting = next(self.iterator, _END)
        return self.waiting is not _END

    def epoch(self, epoch):
        """The epoch's batches as fit takes them, (xb, yb, count), each checked for NaN and infinity."""
        self.ran_out = False
        for batch in itertools.count() if self.steps is None else range(self.steps):
            item = self.waiting if self.waiting is not _END else next(self.iterator, _END)
            self.waiting = _END
            if item is _END:
                self.ran_out = self.steps is not None
                return
            xb, yb = self.check(item, f"epoch {epoch + 1}, batch {batch + 1}")
            yield self.model._as_batch(xb, epoch + 1, batch + 1), yb, xb.shape[0]


def describe(item):
    """What an item is, for messages: "a tuple of 3 items", "a numpy.ndarray"."""
    if isinstance(item, (tuple, list)):
        return f"a {type(item).__name__} of {len(item)} items"
    return f"a {type(item).__module__}.{type(item).__name__}"
