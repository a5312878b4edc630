"""Batches: how a model's data reaches its first layer (checked, gathered into reused buffers, on
the device for a model there), from arrays or from an iterator of batches."""

import hashlib
import itertools
import math

import numpy as np

from fastdl import _device
from fastdl._validation import all_finite
from fastdl.nn.weights import with_weights


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

    def _check_finite(self, x, name="x", first_index=0):
        """fit's check of its arrays, whole, before any step: a ValueError naming the first sample of
        x that holds NaN or infinity, or a value that the model's dtype cannot hold (float64 data
        past float32's range, which would go in as infinity). Integer data always fits; device data
        is checked as it goes over, or is the caller's. first_index: x's first sample's index in
        the array `name` (a validation split's in x)."""
        if _device.is_device(x) or x.dtype.kind != "f" or x.size == 0:
            return
        narrowed = np.dtype(x.dtype).itemsize > self.dtype.itemsize
        # A C-contiguous float32/float64 x in one threaded pass; another in blocks of rows (all_finite
        # would copy a strided x whole, or make a mask as large as a float16 one).
        whole = x.flags.c_contiguous and x.dtype in (np.float32, np.float64)
        rows = x.shape[0] if whole else max(1, (64 << 20) // max(x[:1].nbytes, 1))
        with np.errstate(over="ignore"):
            if all(all_finite(x[first:first + rows]) for first in range(0, x.shape[0], rows)) and (
                    not narrowed or np.isfinite(self.dtype.type(x.max())) and np.isfinite(self.dtype.type(x.min()))):
                return
            for first in range(0, x.shape[0], 1024):  # the first bad sample, a block of rows at a time
                block = np.asarray(x[first:first + 1024], dtype=self.dtype).reshape(-1, math.prod(x.shape[1:]))
                bad = ~np.isfinite(block).all(axis=1)
                if bad.any():
                    break
        beyond = f" or a value beyond {self.dtype}'s range" if narrowed else ""
        where = " (in the validation split)" if first_index else ""
        raise ValueError(f"{name}[{first_index + first + int(np.argmax(bad))}]{where} holds NaN or infinity{beyond}: "
                         "nothing was trained (fit checks all of its data before the first step)")

    def _resident(self, x):
        """The training images on the device for the whole fit, where the model trains there and they
        take at most a quarter of the free device memory (else each batch goes over by itself)."""
        if not self.on_device or _device.is_device(x):
            return x
        x = np.ascontiguousarray(x, dtype=self.dtype)
        return _device.to_device(x) if _device.fits(4 * x.nbytes) else x

    def _training_batch(self, x, y, order, first, batch_size):
        """Batch `batch` of an epoch over x[order] (x checked whole: _check_finite): its images,
        where the first layer takes them (see _gather and _as_batch), its targets and how many
        there are."""
        stop = min(first + batch_size, len(order))
        xb = self._as_batch(self._gather(x, order, first, stop), checked=True)
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


class ArrayBatches:
    """fit's x and y where they are arrays (x checked whole for NaN and infinity: see
    Batches._check_finite): every epoch all of their batches of batch_size, in a shuffled order
    where asked (drawn from the model's generator as an epoch's first batch is)."""

    ran_out = False
    current = None  # (an iterator's batch being trained: BatchSource)

    def __init__(self, model, x, y, batch_size, shuffle, fingerprint=None):
        self.model, self.x, self.y, self.batch_size, self.shuffle = model, x, y, batch_size, shuffle
        self.steps = -(-x.shape[0] // batch_size)
        self.order = None  # the epoch's, once drawn
        self.fingerprint = fingerprint  # the data's (see fingerprint)

    def has_more(self):
        return True

    def epoch(self, epoch, start=None):
        """The epoch's batches as fit takes them, (xb, yb, count); from an interrupted epoch's
        Unfinished `start` on, in its order."""
        n = self.x.shape[0]
        if start is not None:
            self.order = start.order
        else:
            self.order = self.model.rng.permutation(n) if self.shuffle else np.arange(n)
        for first in range(0 if start is None else start.batch * self.batch_size, n, self.batch_size):
            yield self.model._training_batch(self.x, self.y, self.order, first, self.batch_size)

    def unfinished(self, epoch, batch, seen, totals, rates, compiled):
        """Where this epoch stopped, for fit to go on from (Unfinished)."""
        return Unfinished(epoch, batch, seen, totals, rates, compiled, order=self.order, batch_size=self.batch_size,
                          shuffle=self.shuffle, fingerprint=self.fingerprint)

    def goes_on_from(self, unfinished):
        """Whether fit's next epoch over these arrays is the one `unfinished` stopped in: the same
        x (by its fingerprint), batch size and shuffling (its order is then taken on)."""
        return (unfinished.order is not None and len(unfinished.order) == self.x.shape[0]
                and self.fingerprint is not None and unfinished.fingerprint == self.fingerprint
                and unfinished.batch_size == self.batch_size and unfinished.shuffle == self.shuffle)

    def put_back(self):
        """(An iterator's batch whose step was not taken is held back; arrays keep every batch.)"""


class Unfinished:
    """An epoch that Ctrl-C (or an error) stopped after some of its steps, or not yet counted
    trained, kept on the model so that the next fit goes on with its next batch, as a run never
    interrupted would: its index, the batches taken, the samples seen and the logs' running
    totals, the learning rates from before the callbacks' on_epoch_begin and after it, what the
    model was compiled as (Fitting._compiled_as), and for arrays the epoch's order with the batch
    size, shuffling and fingerprint of the data it was drawn for (for an iterator: the iterator)."""

    def __init__(self, epoch, batch, seen, totals, rates, compiled, order=None, batch_size=None, shuffle=None,
                 fingerprint=None, iterator=None):
        self.epoch, self.batch, self.seen, self.totals, self.rates = epoch, batch, seen, dict(totals), tuple(rates)
        self.compiled = compiled
        self.order, self.batch_size, self.shuffle, self.fingerprint = order, batch_size, shuffle, fingerprint
        self.iterator = iterator

    def meta(self):
        """What `save` keeps of it (an epoch over arrays only: an iterator is not saved), as JSON
        and the order apart; None for an iterator's."""
        if self.order is None or self.fingerprint is None:
            return None
        return {"epoch": self.epoch, "batch": self.batch, "seen": self.seen, "totals": self.totals,
                "rates": list(self.rates), "compiled": self.compiled, "batch_size": self.batch_size,
                "shuffle": self.shuffle, "fingerprint": self.fingerprint}

    @classmethod
    def from_meta(cls, meta, order):
        return cls(meta["epoch"], meta["batch"], meta["seen"], meta["totals"], meta["rates"], meta["compiled"],
                   order=order, batch_size=meta["batch_size"], shuffle=meta["shuffle"], fingerprint=meta["fingerprint"])


def fingerprint(x, y):
    """A short digest of fit's data: x's shape and dtype, and 16 of its samples, evenly spread,
    with their targets and weights: what tells fit that a next fit is over the same data (to go
    on with an interrupted epoch), in microseconds, where other data of the same length almost
    surely differs in one of them. None for x on the device (its epoch starts again)."""
    if _device.is_device(x):
        return None
    digest = hashlib.sha256(f"{x.shape}{x.dtype.str}".encode())
    rows = sorted({round(i * (x.shape[0] - 1) / 15) for i in range(16)} if x.shape[0] else ())

    def add(part):
        if isinstance(part, dict):
            for key in sorted(part, key=str):
                digest.update(str(key).encode())
                add(part[key])
        elif hasattr(part, "targets") and hasattr(part, "weights"):  # (weights.WeightedTargets)
            add(part.targets)
            add(part.weights)
        else:
            part = np.asarray(part)
            digest.update(f"{part.shape}{part.dtype.str}".encode())
            digest.update(np.ascontiguousarray(part[rows] if part.ndim else part).tobytes())

    add(x)
    add(y)
    return digest.hexdigest()[:32]


class BatchSource:
    """fit's x where it is an iterator of (x, y) batches: `steps` of them an epoch, or (steps
    None) all it gives. Each batch is checked as fit checks arrays. A batch is drawn only to be
    trained (or to build a model that has no input shape yet); one drawn and not trained (a fit
    refused after it was drawn, a step Ctrl-C stopped) is held on the model for its next fit on
    the same iterator, so that two fits on it train as one. validation_data is evaluated in
    batches of 32."""

    batch_size = 32

    def __init__(self, model, iterator, steps, class_weight=None):
        self.model, self.iterator, self.steps, self.class_weight = model, iterator, steps, class_weight
        self.ended = False  # the iterator said it has no more
        self.drawn = 0  # batches drawn by this fit
        self.ran_out = False  # whether the last epoch ended for want of batches before its steps
        self.current = None  # the item of the batch being trained

    def _held(self):
        """The batch the model holds for this iterator, as (iterator, item, the BatchSource that
        drew it), or None. A model holds one, of the last iterator it was given: one held for
        another iterator is let go where this one's is held (re-running a notebook cell that makes
        a new generator would otherwise pile them up)."""
        held = self.model.__dict__.get("_held_batch")
        return held if held is not None and held[0] is self.iterator else None

    def _hold(self, item):
        self.model._held_batch = (self.iterator, item, self)

    def _take_held(self):
        """The batch held for this iterator (taken off the hold), or None."""
        held = self._held()
        if held is None:
            return None
        self.model._held_batch = None
        self.drawn += held[2] is not self  # (one an earlier fit drew counts as this one's)
        return held[1]

    def build_model(self):
        """Build the model from the first batch (held for the first epoch), as arrays build it."""
        if self.has_more():
            self.check(self._held()[1], "x's first batch")

    def check(self, item, where):
        """(xb, yb) of an item from the iterator, (x, y) or (x, y, sample_weight), checked as fit's x
        and y; yb carries the batch's weights where it has any (or fit has class_weight)."""
        if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
            raise ValueError(f"{where} is {describe(item)}: fit takes an iterator of (x, y) or (x, y, sample_weight) "
                             "batches")
        xb, yb = self.model._check_xy(*item[:2], name=f"{where}: x")
        try:
            return xb, with_weights(self.model, yb, xb.shape[0], item[2] if len(item) == 3 else None,
                                    self.class_weight)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{where}: {exc}") from exc

    def has_more(self):
        """Whether the iterator has a batch left (drawn now, where none is held, and held)."""
        if self._held() is None:
            item = self._next("for the next epoch")
            if item is _END:
                return False
            self._hold(item)
        return True

    def epoch(self, epoch, start=None):
        """The epoch's batches as fit takes them, (xb, yb, count), each checked for NaN and
        infinity; from an interrupted epoch's Unfinished `start` on, its steps counted."""
        self.ran_out = False
        first = 0 if start is None else start.batch
        for batch in itertools.count(first) if self.steps is None else range(first, self.steps):
            item = self._take_held()
            if item is None:
                item = self._next(f"for epoch {epoch + 1}, batch {batch + 1}")
            if item is _END:
                self.ran_out = self.steps is not None
                return
            self.current = item  # held again where its step is not taken (Ctrl-C while it is checked too)
            try:
                xb, yb = self.check(item, f"epoch {epoch + 1}, batch {batch + 1}")
            except (TypeError, ValueError):
                self.current = None  # a bad batch is not held
                raise
            yield self.model._as_batch(xb, epoch + 1, batch + 1), yb, xb.shape[0]

    def unfinished(self, epoch, batch, seen, totals, rates, compiled):
        return Unfinished(epoch, batch, seen, totals, rates, compiled, iterator=self.iterator)

    def goes_on_from(self, unfinished):
        return unfinished.iterator is self.iterator

    def put_back(self):
        """Hold the batch being trained, whose step was not taken, for the next fit on the iterator."""
        if self.current is not None:
            self._hold(self.current)
            self.current = None

    def _next(self, wanted):
        """The iterator's next item, or _END; an error it raises says which batch it was asked for."""
        if self.ended:
            return _END
        try:
            item = next(self.iterator, _END)
        except Exception as exc:
            if hasattr(exc, "add_note"):  # Python 3.11
                exc.add_note(f"(raised by x, the iterator of batches fit trains on, asked {wanted})")
            raise
        self.ended = item is _END
        self.drawn += not self.ended
        return item


def describe(item):
    """What an item is, for messages: "a tuple of 3 items", "a numpy.ndarray"."""
    if isinstance(item, (tuple, list)):
        return f"a {type(item).__name__} of {len(item)} items"
    return f"a {type(item).__module__}.{type(item).__name__}"
