"""Callbacks for `fit`: EarlyStopping, ModelCheckpoint, EpochTimer, and the per-epoch progress logger."""

import sys
import time

import numpy as np


class Callback:
    """Hooks that `fit` calls; `self.model` is the model being trained.

    `on_epoch_end` may stop training by returning True or by setting `model.stop_training = True`
    (as in Keras); the other callbacks of that epoch still run. `on_batch_end` may set the flag
    too: the epoch then ends after that batch (its logs are the batches trained), and so does fit.
    """

    model = None

    def set_model(self, model):
        self.model = model

    def on_train_begin(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        """logs: the running means over the epoch so far ("loss", "accuracy") and "seen" samples."""

    def on_epoch_end(self, epoch, logs=None):
        """logs: the epoch's "loss", "accuracy", "val_loss", ...; return True to stop training."""

    def on_train_end(self, logs=None):
        pass


def _check_count(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


class _Monitor(Callback):
    """A callback that follows one logged quantity and knows when it improved."""

    def __init__(self, monitor, mode, min_delta=0.0):
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be the name of a logged quantity, got {monitor!r}")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f'mode must be "auto", "min" or "max", got {mode!r}')
        if isinstance(min_delta, bool) or not np.isfinite(min_delta) or min_delta < 0:
            raise ValueError(f"min_delta must be a finite number >= 0, got {min_delta!r}")
        self.monitor = monitor
        # Keras' "auto": accuracies grow, everything else shrinks.
        self.mode = mode if mode != "auto" else ("max" if "acc" in monitor else "min")
        self.min_delta = float(min_delta)
        self.best = None

    def on_train_begin(self, logs=None):
        self.best = None

    def _current(self, logs):
        if not logs or self.monitor not in logs:
            available = ", ".join(sorted(logs or {})) or "nothing"
            hint = " (give fit validation_data or validation_split)" if self.monitor.startswith("val_") else ""
            raise ValueError(f"{type(self).__name__} monitors {self.monitor!r}, but fit logged {available}{hint}")
        return float(logs[self.monitor])

    def _beats(self, current, reference):
        """Whether `current` is better than `reference` by more than min_delta."""
        if self.mode == "min":
            return current < reference - self.min_delta
        return current > reference + self.min_delta

    def _improved(self, current):
        """Whether `current` beats the best so far by more than min_delta; if so it becomes the best."""
        better = np.isfinite(current) if self.best is None else self._beats(current, self.best)
        if better:
            self.best = current
        return bool(better)


class EarlyStopping(_Monitor):
    """Stop training once `monitor` has not improved for `patience` epochs.

    Parameters
    ----------
    monitor : str, default "val_loss"
    patience : int, default 0
        Epochs without improvement after which training stops.
    restore_best_weights : bool, default False
        When training stops, put back the weights of the best epoch (as Keras, nothing is restored
        when training runs to its last epoch).
    min_delta : float, default 0
    mode : {"auto", "min", "max"}, default "auto"
    baseline : float, optional
        A value to reach: as Keras, an epoch that improves on the best so far but not on the
        baseline does not restart the count of epochs without improvement, so once `patience`
        epochs have passed without beating the baseline, training stops at the first epoch that
        does not improve.
    start_from_epoch : int, default 0
        Epochs to train before watching `monitor` (a warm-up where no improvement is expected).
    """

    def __init__(self, monitor="val_loss", patience=0, restore_best_weights=False, min_delta=0.0, mode="auto",
                 baseline=None, start_from_epoch=0):
        super().__init__(monitor, mode, min_delta)
        self.patience = _check_count(patience, "patience")
        self.start_from_epoch = _check_count(start_from_epoch, "start_from_epoch")
        if baseline is not None and (isinstance(baseline, bool) or not np.isfinite(baseline)):
            raise ValueError(f"baseline must be a finite number or None, got {baseline!r}")
        self.baseline = None if baseline is None else float(baseline)
        self.restore_best_weights = bool(restore_best_weights)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.wait = 0
        self.best_epoch = self.stopped_epoch = None
        self.best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        current = self._current(logs)
        if epoch < self.start_from_epoch:
            return False
        self.wait += 1
        if self._improved(current):
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._beats(current, self.baseline):
                self.wait = 0
            return False
        if self.wait < self.patience:
            return False
        self.stopped_epoch = epoch
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)
        return True


class ModelCheckpoint(_Monitor):
    """Save the model (weights, optimizer state, epoch count) with `model.save` after each epoch.

    Parameters
    ----------
    filepath : str or path
        May hold Keras-style fields filled from the epoch (1-based) and its logs,
        e.g. "ckpt-{epoch:02d}-{val_loss:.3f}.npz".
    monitor : str, default "val_loss"
    save_best_only : bool, default False
        Write only when `monitor` improved on every earlier epoch this callback saw, in this fit or
        an earlier one (as Keras): a later fit never writes a worse model over the best file.
    mode : {"auto", "min", "max"}, default "auto"

    A model loaded from the file resumes where it stopped: `fit` continues from the saved epoch count.
    """

    def __init__(self, filepath, monitor="val_loss", save_best_only=False, mode="auto"):
        super().__init__(monitor, mode)
        self.filepath = filepath
        self.save_best_only = bool(save_best_only)
        self.last_saved = None

    def on_train_begin(self, logs=None):
        pass  # the best so far stays: it is in the file

    def on_epoch_end(self, epoch, logs=None):
        if self.save_best_only and not self._improved(self._current(logs)):
            return False
        path = str(self.filepath)
        if "{" in path:
            try:
                path = path.format(epoch=epoch + 1, **(logs or {}))
            except (KeyError, IndexError, ValueError) as exc:
                fields = ", ".join(["epoch", *sorted(logs or {})])
                raise ValueError(f"ModelCheckpoint's filepath {self.filepath!r} cannot be filled from this epoch "
                                 f"({type(exc).__name__}: {exc}); its fields can be {fields}") from exc
        self.model.save(path)
        self.last_saved = path
        return False


class EpochTimer(Callback):
    """Wall-clock seconds of each epoch of a fit (its training steps and its validation), in `seconds`."""

    def __init__(self):
        self.seconds = []

    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)
        return False


class ProgressLogger(Callback):
    """verbose=1 on a terminal: a tqdm bar per epoch; otherwise (or verbose=2) one line per epoch."""

    def __init__(self, verbose, n_samples, n_batches, last_epoch, stream=None):
        self.stream = sys.stdout if stream is None else stream
        isatty = getattr(self.stream, "isatty", None)
        self.use_bar = verbose == 1 and callable(isatty) and isatty()
        self.n_samples, self.n_batches, self.last_epoch = n_samples, n_batches, last_epoch
        self.bar = None

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()
        if self.use_bar:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.n_batches, desc=f"Epoch {epoch + 1}/{self.last_epoch}", unit="batch",
                            file=self.stream, leave=True, dynamic_ncols=True)

    def _rate(self, seen):
        return seen / max(time.perf_counter() - self.start, 1e-9)

    def on_batch_end(self, batch, logs=None):
        if self.bar is not None:
            self.bar.update(1)
            postfix = {key: f"{value:.4f}" for key, value in logs.items() if key != "seen"}
            postfix["images/s"] = f"{self._rate(logs['seen']):,.0f}"
            self.bar.set_postfix(postfix, refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        rate = self._rate(self.n_samples)
        if self.bar is not None:
            postfix = {key: f"{value:.4f}" for key, value in logs.items()}
            postfix["images/s"] = f"{rate:,.0f}"
            self.bar.set_postfix(postfix)
            self.bar.close()
            self.bar = None
            return False
        seconds = time.perf_counter() - self.start
        metrics = " - ".join(f"{key}: {value:.4f}" for key, value in logs.items())
        print(f"Epoch {epoch + 1}/{self.last_epoch} - {seconds:.1f}s ({rate:,.0f} images/s) - {metrics}",
              file=self.stream)
        return False

    def on_train_end(self, logs=None):
        if self.bar is not None:  # an exception ended the epoch
            self.bar.close()
            self.bar = None
