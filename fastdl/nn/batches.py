"""Batches: how a model's data reaches its first layer (checked, gathered into reused buffers, on
the device for a model there)."""

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
