"""Callbacks that change the optimizer's learning rate as Keras 3's do: LearningRateScheduler and
ReduceLROnPlateau (fastdl.nn.callbacks imports them: import them from there)."""

import inspect
import numbers
import warnings

import numpy as np

from fastdl.nn.callbacks import Callback, _check_count, _check_verbose, _Monitor
from fastdl.nn.optimizers import _check_rate


def _optimizer(callback):
    """The optimizer of the callback's model; a ValueError naming the callback where it has none."""
    optimizer = getattr(callback.model, "optimizer", None)
    if optimizer is None:
        raise ValueError(f"{type(callback).__name__} sets the learning rate of the model's optimizer, but the model "
                         "has none: call model.compile(optimizer, loss) before fit")
    return optimizer


def _n_arguments(schedule):
    """2 where `schedule` can be called as schedule(epoch, lr), else 1 where as schedule(epoch);
    None where its signature cannot be read (some built-ins)."""
    try:
        signature = inspect.signature(schedule)
    except (TypeError, ValueError):
        return None
    for args in ((0, 0.1), (0,)):
        try:
            signature.bind(*args)
            return len(args)
        except TypeError:
            pass
    raise TypeError(f"schedule must take (epoch, lr) or (epoch), as Keras calls it; {schedule!r} takes {signature}")


class LearningRateScheduler(Callback):
    """Set the optimizer's learning rate at the start of each epoch to what `schedule` gives, as Keras 3.

    Parameters
    ----------
    schedule : callable
        schedule(epoch, lr) -> the epoch's learning rate: `epoch` is the epoch's index from 0 (the
        true one where fit resumes, from initial_epoch or a loaded model's epoch count), `lr` the
        optimizer's rate as the epoch begins. A schedule(epoch) of the epoch alone is taken too,
        as Keras takes it. The rate must be a finite number >= 0 (an int too, which Keras refuses).
    verbose : int, default 0
        Above 0: "Epoch N: LearningRateScheduler setting learning rate to X." at each epoch, as Keras.

    Notes
    -----
    Keras calls schedule(epoch, lr) and, on any TypeError, schedule(epoch): a TypeError raised
    inside a two-argument schedule (a bug in it) then turns into a misleading one about its
    arguments. fastdl reads which of the two calls the schedule's signature takes, once, when the
    callback is made (a schedule that takes neither is a TypeError there), and lets errors from
    inside it through; only a callable whose signature cannot be read is called Keras' way.
    The epoch's logs get "learning_rate", the rate it trained with, which History records.
    """

    adds_to_logs = ("learning_rate",)

    def __init__(self, schedule, verbose=0):
        if not callable(schedule):
            raise TypeError(f"schedule must be a function of (epoch, lr) or (epoch), got {schedule!r}")
        self._n_arguments = _n_arguments(schedule)
        self.schedule = schedule
        self.verbose = _check_verbose(verbose)

    def on_train_begin(self, logs=None):
        _optimizer(self)  # before the first epoch, not at it

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = _optimizer(self)
        given = self._scheduled(epoch, optimizer.learning_rate)
        number = isinstance(given, numbers.Real) and not isinstance(given, (bool, np.bool_))
        rate = float(given) if number else np.nan
        if not (np.isfinite(rate) and rate >= 0):
            raise ValueError(f"LearningRateScheduler's schedule gave {given!r} as the learning rate of epoch "
                             f"{epoch + 1} (index {epoch}); it must be a finite number >= 0")
        optimizer.learning_rate = rate
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {rate}.")

    def _scheduled(self, epoch, rate):
        if self._n_arguments == 2:
            return self.schedule(epoch, rate)
        if self._n_arguments == 1:
            return self.schedule(epoch)
        try:  # a signature unknown: Keras' way
            return self.schedule(epoch, rate)
        except TypeError:
            return self.schedule(epoch)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = _optimizer(self).learning_rate


class ReduceLROnPlateau(_Monitor):
    """Multiply the learning rate by `factor` once `monitor` has not improved for `patience` epochs, as Keras 3.

    The arguments come in Keras 3's order: ReduceLROnPlateau(monitor, factor, patience, verbose,
    mode, min_delta, cooldown, min_lr).

    Parameters
    ----------
    monitor : str, default "val_loss"
        A logged quantity; one missing from an epoch's logs is a warning naming those logged (as
        Keras warns), and the rate stays.
    factor : float in [0, 1), default 0.1
        new rate = max(rate * factor, min_lr).
    patience : int, default 10
        Epochs without improvement after which the rate is reduced (0: at each one).
    verbose : int, default 0
        Above 0: "Epoch N: ReduceLROnPlateau reducing learning rate to X." at each reduction, as Keras.
    mode : {"auto", "min", "max"}, default "auto"
        "auto": "max" for a quantity whose name holds "acc", else "min" (EarlyStopping's rule).
    min_delta : float >= 0, default 1e-4
        A change of at most min_delta is no improvement.
    cooldown : int, default 0
        After a reduction, the epochs in which the wait does not count (see Notes).
    min_lr : float >= 0, default 0
        The rate is never reduced below it, nor at all once at or below it.

    Notes
    -----
    Keras' rule at each epoch's end: "learning_rate" (the rate the epoch trained with) goes into
    the logs; while in cooldown the cooldown count drops by one and the wait restarts; a value
    better than the best by more than min_delta becomes the best and restarts the wait; otherwise,
    out of cooldown (the count at 0, possibly since this epoch: so cooldown=1 changes nothing, as
    in Keras), the wait grows, and once it reaches `patience` a rate above min_lr is reduced, the
    wait restarts and the cooldown count is set to `cooldown`. Each fit starts afresh (no best,
    no wait, no cooldown, as EarlyStopping); the first value watched improves on none (a NaN does
    not, as in Keras). The reduced rate is the optimizer's: `model.save` (ModelCheckpoint) saves it
    and `load` restores it, so a ModelCheckpoint after this callback in the list saves the rate
    of the next epoch, one before it the rate of this one.
    """

    adds_to_logs = ("learning_rate",)

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0):
        super().__init__(monitor, mode, min_delta)
        self.factor = _check_rate(factor, "factor")
        if self.factor >= 1:
            raise ValueError(f"ReduceLROnPlateau does not support a factor >= 1 (it reduces the rate), got "
                             f"factor={factor!r}")
        self.patience = _check_count(patience, "patience")
        self.verbose = _check_verbose(verbose)
        self.cooldown = _check_count(cooldown, "cooldown")
        self.min_lr = _check_rate(min_lr, "min_lr")
        self._reset()

    def _reset(self):
        # A best that any number beats (a NaN does not): Keras' start.
        self.best = np.inf if self.mode == "min" else -np.inf
        self.wait = self.cooldown_counter = 0

    def on_train_begin(self, logs=None):
        _optimizer(self)
        self._check_direction()
        self._check_logged()
        self._reset()

    def in_cooldown(self):
        return self.cooldown_counter > 0

    def on_epoch_end(self, epoch, logs=None):
        optimizer = _optimizer(self)
        logs = {} if logs is None else logs
        logs["learning_rate"] = optimizer.learning_rate
        if self.monitor not in logs:
            if not self._unvalidated(logs):
                warnings.warn(f"{self._missing(logs)}: the learning rate is not reduced", UserWarning, stacklevel=2)
            return False
        current = float(logs[self.monitor])
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(current):
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience and optimizer.learning_rate > self.min_lr:
                optimizer.learning_rate = max(optimizer.learning_rate * self.factor, self.min_lr)
                if self.verbose:
                    print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {optimizer.learning_rate}.")
                self.cooldown_counter = self.cooldown
                self.wait = 0
        return False
