"""Callbacks for `fit`, `evaluate` and `predict`: the Callback base with Keras 3's hooks, EarlyStopping,
ModelCheckpoint, EpochTimer, and the per-epoch progress logger; LearningRateScheduler and
ReduceLROnPlateau (in callbacks_rate.py), LambdaCallback and CSVLogger (callbacks_log.py) are
imported from here too."""

import sys
import time

import numpy as np

from fastdl.nn.metrics import directionless_metrics


class Callback:
    """Hooks that `fit`, `evaluate` and `predict` call, with Keras 3's names, arguments and order;
    `self.model` is the model, `self.params` Keras' {"verbose", "epochs", "steps"}.

    fit: on_train_begin; each epoch on_epoch_begin, each batch on_train_batch_begin and
    on_train_batch_end (logs: the running means over the epoch so far, "loss", "accuracy", ...,
    and the samples "seen"), the validation's test hooks (below), on_epoch_end (logs: the
    epoch's "loss", "accuracy", "val_loss", ...); then on_train_end (logs: the last epoch's),
    only once fit has run, not after an error, as Keras. evaluate(callbacks=...) and fit's
    validation: on_test_begin, each batch on_test_batch_begin and on_test_batch_end (the running
    means), on_test_end (the means). As in Keras, on_train_batch_begin / on_train_batch_end call
    on_batch_begin / on_batch_end (their older names): a callback overriding either is called.
    predict(callbacks=...): on_predict_begin, each batch on_predict_batch_begin and
    on_predict_batch_end (logs: {"outputs": the batch's}, or a dict's by name), on_predict_end.

    `on_epoch_end` may stop training by returning True or by setting `model.stop_training = True`
    (as in Keras); the other callbacks of that epoch still run. A batch hook may set the flag too:
    the epoch then ends after that batch (its logs are the batches trained), and so does fit.
    """

    model = None
    params = None
    # The names this callback adds to fit's epoch logs: a tuple for fastdl's own callbacks, None
    # (any names) for yours. Where every callback's are known, fit knows the names its logs will
    # hold (params["metrics"], as Keras 2's), and a monitor of none of them is refused before the
    # first step instead of after the first epoch.
    adds_to_logs = None

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        """logs: the epoch's "loss", "accuracy", "val_loss", ...; return True to stop training
        (True only: any other value is ignored, as Keras ignores it)."""

    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        """logs: the running means over the epoch so far ("loss", "accuracy") and "seen" samples."""
        self.on_batch_end(batch, logs)

    def on_batch_begin(self, batch, logs=None):
        """Keras' older name of on_train_batch_begin, which calls it."""

    def on_batch_end(self, batch, logs=None):
        """Keras' older name of on_train_batch_end, which calls it."""

    def on_test_begin(self, logs=None):
        pass

    def on_test_end(self, logs=None):
        pass

    def on_test_batch_begin(self, batch, logs=None):
        pass

    def on_test_batch_end(self, batch, logs=None):
        pass

    def on_predict_begin(self, logs=None):
        pass

    def on_predict_end(self, logs=None):
        pass

    def on_predict_batch_begin(self, batch, logs=None):
        pass

    def on_predict_batch_end(self, batch, logs=None):
        pass


def _check_count(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def _check_verbose(verbose):
    """A callback's verbose, as Keras': 0 silent, above 0 a line when it acts (True is 1)."""
    return _check_count(int(verbose) if isinstance(verbose, (bool, np.bool_)) else verbose, "verbose")


def _check_value(value, name):
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float, np.number))
                              or not np.isfinite(value)):
        raise ValueError(f"{name} must be a finite number or None, got {value!r}")
    return None if value is None else float(value)


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
        # Keras' "auto": accuracies grow, everything else shrinks; a metric of the user's is
        # refused in on_train_begin (Keras 3 cannot tell its direction either).
        self.auto = mode == "auto"
        self.mode = mode if mode != "auto" else ("max" if "acc" in monitor else "min")
        self.min_delta = float(min_delta)
        self.best = None

    adds_to_logs = ()

    def on_train_begin(self, logs=None):
        self._check_direction()
        self._check_logged()
        self.best = None

    def _check_logged(self):
        """ValueError before training where fit's epoch logs cannot hold `monitor` (its names are
        known: params["metrics"]), a typo or a val_ value of a fit without validation."""
        logged = (self.params or {}).get("metrics")
        if logged is not None and self.monitor not in logged:
            raise ValueError(self._missing(dict.fromkeys(logged), "will log"))

    def _check_direction(self):
        """ValueError where mode "auto" watches a metric of the user's, whose direction no name tells."""
        name = self.monitor[4:] if self.monitor.startswith("val_") else self.monitor
        if self.auto and name in directionless_metrics(self.model):
            raise ValueError(f"{type(self).__name__}(monitor={self.monitor!r}) with mode='auto': {name!r} is a metric of "
                             "your own, and whether it should grow or shrink cannot be told from its name; give "
                             "mode='max' or mode='min' (Keras 3 asks the same)")

    def _current(self, logs):
        """The monitored value, or None on an epoch fit did not validate (fit's validation_freq)."""
        if not logs or self.monitor not in logs:
            if self._unvalidated(logs):
                return None
            raise ValueError(self._missing(logs))
        return float(logs[self.monitor])

    def _unvalidated(self, logs):
        """Whether `monitor` is a val_ value that fit, validating only some epochs (validation_freq),
        did not log this epoch."""
        validates_some = getattr(self, "params", None) and self.params.get("validation_freq", 1) != 1
        return bool(validates_some and self.monitor.startswith("val_")
                    and not any(key.startswith("val_") for key in logs or {}))

    def _missing(self, logs, logged="logged"):
        """What to say where the epoch's logs lack `monitor`: the keys they hold."""
        available = ", ".join(sorted(logs or {})) or "nothing"
        validated = any(key.startswith("val_") for key in logs or {})
        hint = " (give fit validation_data or validation_split)" \
            if self.monitor.startswith("val_") and not validated else ""
        return f"{type(self).__name__} monitors {self.monitor!r}, but fit {logged} {available}{hint}"

    def _beats(self, current, reference):
        """Whether `current` is better than `reference` by more than min_delta."""
        if self.mode == "min":
            return current < reference - self.min_delta
        return current > reference + self.min_delta

    def _improved(self, current):
        """Whether `current` improves on the best so far, by Keras 3's rule; if so it becomes the
        best. Any value does while there is none (EarlyStopping's first epoch watched, NaN too);
        after, it must beat the best by more than min_delta, which a NaN never does, nor does any
        value beat a NaN."""
        better = self.best is None or self._beats(current, self.best)
        if better:
            self.best = current
        return bool(better)


class EarlyStopping(_Monitor):
    """Stop training once `monitor` has not improved for `patience` epochs.

    The arguments come in Keras 3's order: EarlyStopping(monitor, min_delta, patience, verbose,
    mode, baseline, restore_best_weights, start_from_epoch).

    Parameters
    ----------
    monitor : str, default "val_loss"
    min_delta : float, default 0
        A change of at most min_delta is no improvement.
    patience : int, default 0
        Epochs without improvement after which training stops.
    verbose : int, default 0
        Above 0: as Keras, prints "Epoch N: early stopping" and "Restoring model weights from the
        end of the best epoch: N." when it acts.
    mode : {"auto", "min", "max"}, default "auto"
    baseline : float, optional
        A value to reach: as Keras, an epoch that improves on the best so far but not on the
        baseline does not restart the count of epochs without improvement, so once `patience`
        epochs have passed without beating the baseline, training stops at the first epoch that
        does not improve.
    restore_best_weights : bool, default False
        At the end of training, put back the weights (trainable and not) of the best epoch, as
        Keras 3 (and tf.keras from 2.16) does: whether this callback stopped training, another one
        did or fit ran to its last epoch (tf.keras before 2.16 restored them only when this callback
        stopped training). The first epoch watched counts as the best until one improves on it.
        Nothing is restored after fit raised (it calls no on_train_end then, as Keras).
    start_from_epoch : int, default 0
        Epochs to train before watching `monitor` (a warm-up where no improvement is expected).

    Notes
    -----
    As Keras 3, the first epoch watched is the best so far whatever its value, NaN too (training
    goes on; fastdl before stopped there): as no later value beats a NaN, training then stops
    `patience` epochs later (one with patience 0), and restore_best_weights puts back the first
    epoch's weights.
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, verbose=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):
        super().__init__(monitor, mode, min_delta)
        self.patience = _check_count(patience, "patience")
        self.verbose = _check_verbose(verbose)
        self.baseline = _check_value(baseline, "baseline")
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = _check_count(start_from_epoch, "start_from_epoch")

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.wait = 0
        self.best_epoch = self.stopped_epoch = None
        self.best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        current = self._current(logs)
        if current is None or epoch < self.start_from_epoch:
            return False
        self.wait += 1
        # The first epoch watched improves (best is None until then, see on_train_begin): it is the
        # best to restore until one improves on it.
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
        return True

    def on_train_end(self, logs=None):
        if self.stopped_epoch is not None and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(_Monitor):
    """Save the model (weights, optimizer state, epoch count) with `model.save` after each epoch.

    The arguments come in Keras 3's order: ModelCheckpoint(filepath, monitor, verbose,
    save_best_only, save_weights_only, mode, save_freq, initial_value_threshold).

    Parameters
    ----------
    filepath : str or path
        May hold Keras-style fields filled from the epoch (1-based) and its logs,
        e.g. "ckpt-{epoch:02d}-{val_loss:.3f}.npz".
    monitor : str, default "val_loss"
    verbose : int, default 0
        Above 0: Keras' lines for each epoch ("Epoch N: saving model to ...", or "Epoch N: val_loss
        improved from ... to ..., saving model to ..." / "... did not improve from ...", then
        "Epoch N: finished saving model to ..."). Before the first value, the best is inf ("-inf"
        in max mode), as Keras prints it.
    save_best_only : bool, default False
        Write only when `monitor` improved on every earlier epoch this callback saw, in this fit or
        an earlier one (as Keras): a later fit never writes a worse model over the best file.
    save_weights_only : False
        True is refused: fastdl writes the whole model, which `load` reads.
    mode : {"auto", "min", "max"}, default "auto"
    save_freq : "epoch"
        Keras' saving every so many batches (an integer) is refused.
    initial_value_threshold : float, optional
        With save_best_only: the value to beat before the first save, as Keras.

    Notes
    -----
    A model loaded from the file resumes where it stopped: `fit` continues from the saved epoch
    count, with the weights, the optimizer's slots, step count and learning rate (a rate that a
    callback changed, as Keras restores it) and the generators' states saved. Like Keras, the
    file keeps no other optimizer hyper-parameter (momentum, beta_1, ...): the loading model's
    compiled ones apply.
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, save_weights_only=False,
                 mode="auto", save_freq="epoch", initial_value_threshold=None):
        super().__init__(monitor, mode)
        if save_weights_only:
            raise ValueError("ModelCheckpoint(save_weights_only=True) is not supported: fastdl saves the whole model "
                             "(weights, optimizer state, epoch count) with model.save, which model.load reads")
        if not (isinstance(save_freq, str) and save_freq == "epoch"):
            raise ValueError(f"ModelCheckpoint(save_freq={save_freq!r}) is not supported: fastdl saves after each "
                             'epoch (save_freq="epoch"), not every so many batches')
        self.filepath = filepath
        self.verbose = _check_verbose(verbose)
        self.save_best_only = bool(save_best_only)
        self.best = _check_value(initial_value_threshold, "initial_value_threshold")
        if self.best is None:  # Keras 3's best before any value, which a NaN never beats: it is never saved
            self.best = np.inf if self.mode == "min" else -np.inf
        self.last_saved = None

    def on_train_begin(self, logs=None):
        self._check_direction()  # the best so far stays: it is in the file
        if self.save_best_only:
            self._check_logged()

    def on_epoch_end(self, epoch, logs=None):
        if not self.save_best_only:
            self._save(epoch, logs, "saving model to")
            return False
        best, current = f"{self.best:.5f}", self._current(logs)  # (inf before any value)
        if current is None:  # an epoch fit did not validate
            return False
        if self._improved(current):
            self._save(epoch, logs, f"{self.monitor} improved from {best} to {current:.5f}, saving model to")
        elif self.verbose:
            print(f"Epoch {epoch + 1}: {self.monitor} did not improve from {best}")
        return False

    def _save(self, epoch, logs, why):
        """Save the model to this epoch's path, saying so first (as Keras: `why` and the path) and after."""
        path = self._path(epoch, logs)
        if self.verbose:
            print(f"Epoch {epoch + 1}: {why} {path}")
        self.model.save(path)
        if self.verbose:
            print(f"Epoch {epoch + 1}: finished saving model to {path}")
        self.last_saved = path

    def _path(self, epoch, logs):
        path = str(self.filepath)
        if "{" not in path:
            return path
        try:
            return path.format(epoch=epoch + 1, **(logs or {}))
        except (KeyError, IndexError, ValueError) as exc:
            fields = ", ".join(["epoch", *sorted(logs or {})])
            raise ValueError(f"ModelCheckpoint's filepath {self.filepath!r} cannot be filled from this epoch "
                             f"({type(exc).__name__}: {exc}); its fields can be {fields}") from exc


class History(Callback):
    """What `fit` returns: `history` maps "loss", "accuracy", "val_loss", ... to per-epoch lists.

    As in Keras, a callback that fit calls after the user's: what their `on_epoch_end` added to the
    epoch's logs (logs["learning_rate"] = ..., as ReduceLROnPlateau adds) is recorded too.
    """

    adds_to_logs = ()

    def __init__(self):
        self.history = {}
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)


class EpochTimer(Callback):
    """Wall-clock seconds of each epoch of a fit (its training steps and its validation), in `seconds`."""

    adds_to_logs = ()

    def __init__(self):
        self.seconds = []

    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)
        return False


def _shown(value):
    """A logged value as Keras prints it: 4 decimals, or 4 significant digits at 1e-3 and below (a
    learning rate of 1e-5 reads 1.0000e-05, not 0.0000)."""
    return f"{value:.4f}" if abs(value) > 1e-3 else f"{value:.4e}"


class ProgressLogger(Callback):
    """verbose=1 on a terminal: a tqdm bar per epoch; otherwise (or verbose=2) one line per epoch."""

    adds_to_logs = ()

    def __init__(self, verbose, n_batches, last_epoch, stream=None):
        self.stream = sys.stdout if stream is None else stream
        isatty = getattr(self.stream, "isatty", None)
        self.use_bar = verbose == 1 and callable(isatty) and isatty()
        self.n_batches, self.last_epoch = n_batches, last_epoch
        self.bar = None

    def on_epoch_begin(self, epoch, logs=None):
        self.start = self.trained_at = time.perf_counter()
        self.seen = 0
        if self.use_bar:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.n_batches, desc=f"Epoch {epoch + 1}/{self.last_epoch}", unit="batch",
                            file=self.stream, leave=True, dynamic_ncols=True)

    def _rate(self):
        """Images trained a second: those of the batches so far (an epoch a callback stopped early
        trained fewer than all), over the time up to the last one's end (not the validation)."""
        return self.seen / max(self.trained_at - self.start, 1e-9)

    def on_batch_end(self, batch, logs=None):
        self.seen, self.trained_at = logs["seen"], time.perf_counter()
        if self.bar is not None:
            self.bar.update(1)
            postfix = {key: _shown(value) for key, value in logs.items() if key != "seen"}
            postfix["images/s"] = f"{self._rate():,.0f}"
            self.bar.set_postfix(postfix, refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        rate = self._rate()
        if self.bar is not None:
            postfix = {key: _shown(value) for key, value in logs.items()}
            postfix["images/s"] = f"{rate:,.0f}"
            self.bar.set_postfix(postfix)
            self.bar.close()
            self.bar = None
            return False
        seconds = time.perf_counter() - self.start
        metrics = " - ".join(f"{key}: {_shown(value)}" for key, value in logs.items())
        print(f"Epoch {epoch + 1}/{self.last_epoch} - {seconds:.1f}s ({rate:,.0f} images/s) - {metrics}",
              file=self.stream)
        return False

    def close(self):
        """Close the bar an error left open (fit calls it: no on_train_end after an error)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# At the end: callbacks_rate.py builds on the classes above (importing this module first, as
# fastdl.nn's __init__ does, always finds them defined).
from fastdl.nn.callbacks_log import CSVLogger, LambdaCallback  # noqa: E402,F401
from fastdl.nn.callbacks_rate import LearningRateScheduler, ReduceLROnPlateau  # noqa: E402,F401
