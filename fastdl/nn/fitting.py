"""fit: training a model for epochs over arrays or an iterator of batches, with callbacks, a
validation set and resuming (the Fitting part of fastdl.nn.training.Training)."""

import math
import numbers
import warnings

import numpy as np

from fastdl._interrupts import sigint_deferred
from fastdl._validation import check_int
from fastdl.nn.batches import ArrayBatches, BatchSource, describe, fingerprint, is_batch_source
from fastdl.nn.callback_list import CallbackList
from fastdl.nn.callbacks import History, ProgressLogger
from fastdl.nn.guard import guarded, statistics_kept, stopped_at
from fastdl.nn.weights import check_class_weight, refuse_both, with_weights


def check_verbose(verbose):
    """Keras' verbose, 0, 1, 2 or "auto" (1), as 0, 1 or 2."""
    if verbose == "auto":
        return 1
    if verbose not in (0, 1, 2, False, True):  # (also refuses other strings: they compare unequal)
        raise ValueError(f'verbose must be 0, 1, 2 or "auto", got {verbose!r}')
    return int(verbose)


def check_batch_size(batch_size):
    """batch_size as an int >= 1; None is 32, as Keras."""
    return 32 if batch_size is None else check_int(batch_size, "batch_size", 1)


def _check_shuffle(shuffle):
    if isinstance(shuffle, str):
        raise ValueError(f"shuffle={shuffle!r} is not supported: fit shuffles all the samples (True) or none "
                         "(False); Keras' 'batch' (shuffling in batch-sized chunks, for HDF5 data) is not implemented")
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"shuffle must be True or False, got {shuffle!r}")
    return bool(shuffle)


def _check_source_arguments(y, batch_size, validation_split, sample_weight):
    """Refuse fit's arguments that do not apply where x is an iterator of (x, y) batches."""
    if sample_weight is not None:
        raise ValueError("sample_weight does not apply where x is an iterator: its batches may be (x, y, "
                         "sample_weight) tuples, as in Keras")
    if y is not None:
        raise ValueError("y must be None where x is an iterator: it gives (x, y) batches")
    if batch_size is not None:
        raise ValueError(f"batch_size={batch_size!r} does not apply where x is an iterator: its batches are trained "
                         "as they come (leave batch_size None)")
    if validation_split:
        raise ValueError("validation_split does not apply where x is an iterator: give validation_data")


def _warn_ran_out(what, source):
    advice = ("give steps_per_epoch, and an iterator of steps_per_epoch batches for each epoch" if source.steps is None
              else f"give an iterator of {source.steps} batches for each epoch")
    warnings.warn(f"x, an iterator, {what} ({source.drawn} batches drawn by this fit). To train every epoch, "
                  f"{advice}; an endless one (fastdl.data.clock_batches, say) never runs out", UserWarning,
                  stacklevel=4)


def _missing_y(x):
    """fit's message for arrays x without targets y, saying what x might have been meant as."""
    if callable(x):
        return "x is a function: fit takes the iterator of (x, y) batches it returns (call it), or arrays x and y"
    if isinstance(x, (list, tuple)) and x and isinstance(x[0], tuple):
        return "x is a list of (x, y) batches: give fit iter(x), an iterator of them, or arrays x and y"
    return "fit takes targets y beside the arrays x (or x an iterator of (x, y) batches, and no y)"


def add_to_means(totals, batch_logs, count, seen):
    """Add a batch's logs, weighted by its count of samples, to totals; the means over seen samples."""
    for key, value in batch_logs.items():
        totals[key] = totals.get(key, 0.0) + value * count
    return {key: value / seen for key, value in totals.items()}


class Fitting:
    """fit and its epochs, for Training: a model with _check_xy, _check_x, _resident, _as_batch,
    _train_step, _test, _attach_optimizer, _warn_if_untrainable, _blas_policy, an optimizer, a
    loss, rng, layers and epochs_trained."""

    def fit(self, x, y=None, batch_size=None, epochs=1, verbose=0, callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, *, class_weight=None, sample_weight=None, initial_epoch=None,
            seed=None, steps_per_epoch=None, validation_steps=None, validation_batch_size=None, validation_freq=1):
        """Train on (x, y), or on the (x, y) batches an iterator gives; returns a History.

        The arguments come in Keras 3's order (x, y, batch_size, epochs, verbose, callbacks,
        validation_split, validation_data, shuffle), so fit(x, y, 128, 3) is 3 epochs of batches
        of 128, as in Keras. Keras' next ones (class_weight, sample_weight, initial_epoch,
        steps_per_epoch, validation_steps, validation_batch_size, validation_freq) and fastdl's
        seed are keyword-only, so that no positional value lands on them.

        Parameters
        ----------
        x : array-like of shape (n_samples, *input_shape), or an iterator of (x, y) batches
            An iterator (a generator, say, as fastdl.data.clock_batches gives) yields the batches
            to train on, each (x_batch, y_batch) or (x_batch, y_batch, sample_weight_batch) and of
            any size, as Keras takes a generator: fit
            draws steps_per_epoch of them each epoch, and y, batch_size, validation_split and
            shuffle do not apply. Training for more data than any array holds: fresh images at
            every step.
        y : array-like, targets in the form the loss takes
            None where x is an iterator.
        batch_size : int, default 32
            None is 32, as Keras. With x an iterator, the batches are its own: leave it None
            (validation_data is evaluated in batches of 32).
        epochs : int, default 1
            Without initial_epoch: how many epochs to train, counting on from the epochs already
            trained (so a loaded checkpoint resumes where it stopped). With initial_epoch: as Keras,
            the index of the last epoch, training epochs initial_epoch .. epochs - 1.
        verbose : {0, 1, 2, "auto"}, default 0
            1 ("auto"): a progress bar per epoch on a terminal (one line per epoch otherwise); 2: one
            line per epoch.
        callbacks : list of Callback, optional
            E.g. EarlyStopping, ModelCheckpoint; their hooks are called as Keras calls them (see
            Callback), and fit's History is called after them.
        validation_split : float in (0, 1), optional
            As Keras: the first floor(n_samples * (1 - validation_split)) samples train, the rest
            (the last ones, before shuffling) validate.
        validation_data : (x_val, y_val) or (x_val, y_val, val_sample_weight), optional
            Takes the place of validation_split.
        shuffle : bool, default True
            Keras' shuffle="batch" is refused.
        class_weight : dict {int class: float >= 0}, optional, keyword-only
            Weighs each training sample by its class's weight (as Keras 3: class codes, the argmax of
            one-hot rows, a single output's rounded 0/1 target; a class not named weighs 1). Not
            applied to validation, as in Keras; with sample_weight, or for a Model of several
            outputs, a ValueError, as in Keras 3.
        sample_weight : ndarray of shape (n_samples,), optional, keyword-only
            One weight >= 0 a sample ((n_samples, 1) too), kept with its sample through shuffles;
            for a Model of several outputs, one array for all or a dict / list of one per output.
            The loss is Keras 3's: each sample's loss (its mean over its outputs or positions)
            times its weight, summed and divided by the batch's sample count (not the sum of the
            weights); its gradient scales each sample's rows by its weight. A validation_split
            takes the weights of its samples along. The compiled metrics stay unweighted, as
            Keras 3's `metrics`; the logged loss is the mean of the batches' losses counted by
            samples. A loss of your own weighs samples only where its forward takes sample_weight.
        initial_epoch : int, optional, keyword-only
            The epoch to start at (Keras' resuming argument).
        seed : int, optional, keyword-only
            Reseeds the generator that shuffles and draws dropout masks (not where fit goes on
            from an epoch Ctrl-C stopped: the generators are where that epoch left them).
        steps_per_epoch : int, optional, keyword-only
            With x an iterator: the batches an epoch draws from it. None: an epoch is all it
            gives, then it has ended (the next epoch, with none, stops training). An iterator that
            ends before its epochs are trained stops training with a warning, as in Keras; the
            epoch it ended in counts, where it gave a batch. A fit refused, or of no epochs, draws
            nothing from it, or holds the batch it drew (to build the model) for the next fit on
            it; one stopped (an error, Ctrl-C) holds the batch whose step it did not take.
        validation_steps : int >= 1, optional, keyword-only
            Validate on the first validation_steps batches of the validation data only (None: all).
        validation_batch_size : int >= 1, optional, keyword-only
            The validation batches' size (None: batch_size; with x an iterator, 32).
        validation_freq : int >= 1 or list of ints, default 1, keyword-only
            As Keras: validate after every validation_freq-th epoch (counting from 1), or after
            the epochs listed. The epochs between log no val_ values; EarlyStopping,
            ModelCheckpoint and ReduceLROnPlateau watching a val_ value pass over them. The three
            validation options do nothing without validation data, as in Keras.

        Returns
        -------
        History
            Its `history` maps "loss", "accuracy", "val_loss", ... to their values at each epoch.
            Also `model.history`, as in Keras, from fit's start: a fit stopped by an error or Ctrl-C
            leaves there the epochs it trained.

        Raises
        ------
        NonFiniteError
            A ValueError: a step's loss, or the weights or optimizer state at an epoch's end, went
            NaN or infinite (a too high learning rate, unscaled data). The weights, the optimizer's
            slots and step count and the moving statistics are put back to those from the start of
            that epoch, the epochs before it staying trained; the error names the epoch (and the
            batch, where a step stopped it). No on_train_end is called, as in Keras.
        ValueError
            Inputs or targets that do not fit the model (NaN or infinity in x or y among them), or a
            layer that fails in training (the error names its epoch and batch).

        Notes
        -----
        The loss is checked at every step; the weights and optimizer state at the end of each
        epoch (see guard.guarded): a float32 update can overflow while the float64 loss stays finite.
        Arrays x and validation x are checked whole for NaN and infinity before the first step (x
        changed in place by a callback is not checked again); an iterator's batches as they come.
        """
        first_epoch, last_epoch = self._epoch_range(epochs, initial_epoch)
        verbose = check_verbose(verbose)
        shuffle = _check_shuffle(shuffle)
        seed = None if seed is None else check_int(seed, "seed", 0)
        validation = _check_validation_options(validation_steps, validation_batch_size, validation_freq)
        params = {"verbose": verbose, "epochs": last_epoch, "steps": None}
        callbacks = CallbackList(callbacks, self, params)  # refuses what is not a Callback: before any data is drawn
        data, val = self._fit_data(x, y, batch_size, validation_split, validation_data, shuffle, steps_per_epoch,
                                   first_epoch < last_epoch, class_weight, sample_weight)
        params["steps"] = n_batches = data.steps
        if val is not None and validation["freq"] != 1:  # for the callbacks that watch a val_ value
            params["validation_freq"] = validation["freq"]
        if self.built:  # (not where no epoch is to train and the first batch would build the model)
            self._attach_optimizer()
            self._warn_if_untrainable()
        if seed is not None and not self._goes_on(first_epoch, data):
            self._reseed(seed)
        # As Keras: History after the user's callbacks (it records the keys they add to the logs),
        # the progress display last.
        history = self.history = History()
        callbacks.append(history)
        progress = ProgressLogger(verbose, n_batches, last_epoch) if verbose else None
        if progress is not None:
            callbacks.append(progress)
        params["metrics"] = callbacks.logged_names(self.metrics_names, val is not None)
        self.stop_training = False
        callbacks.on_train_begin()
        try:
            with self._blas_policy():
                logs = self._fit_epochs(first_epoch, last_epoch, data, val, callbacks, validation)
        except BaseException:
            if progress is not None:
                progress.close()
            raise
        # As Keras, only once fit has run (not after an error): EarlyStopping restores its best weights here.
        callbacks.on_train_end(logs)
        return history

    def _fit_data(self, x, y, batch_size, validation_split, validation_data, shuffle, steps_per_epoch, training,
                  class_weight=None, sample_weight=None):
        """fit's data, checked: (its batches, an ArrayBatches or a BatchSource, and the validation
        arrays or None). training: fit has epochs to train (else nothing is drawn from an iterator).
        The targets carry their weights (weights.WeightedTargets) where any are given."""
        refuse_both(sample_weight, class_weight)
        if class_weight is not None:
            class_weight = check_class_weight(class_weight)
        if is_batch_source(x):
            _check_source_arguments(y, batch_size, validation_split, sample_weight)
            steps = None if steps_per_epoch is None else check_int(steps_per_epoch, "steps_per_epoch", 1)
            if self.loss is None:
                raise RuntimeError("call compile(optimizer, loss) before fit or evaluate")
            source = BatchSource(self, x, steps, class_weight)
            if training and not self.built:  # from the first batch, as from arrays; then validation_data
                source.build_model()
            return source, self._checked_validation(self._validation_arrays(validation_data), training)
        if steps_per_epoch is not None:
            raise ValueError("steps_per_epoch is for x an iterator of batches; an epoch over arrays is all of their "
                             "batches")
        if y is None:
            raise ValueError(_missing_y(x))
        batch_size = check_batch_size(batch_size)
        x, y = self._check_xy(x, y)
        # Keras 3 splits the sample weights with their samples; class weights weigh the training
        # samples only (validation is evaluated without them).
        y = with_weights(self, y, x.shape[0], sample_weight)
        x, y, val = self._validation(x, y, validation_data, validation_split)
        y = with_weights(self, y, x.shape[0], None, class_weight)
        if training:
            self._check_finite(x)
        split = validation_data is None and val is not None  # (x's last samples: named as x's)
        val = self._checked_validation(val, training, *(("x", x.shape[0]) if split else ()))
        return ArrayBatches(self, self._resident(x), y, batch_size, shuffle, fingerprint(x, y)), val

    def _checked_validation(self, val, training, name="validation x", first=0):
        """The validation arrays (or None), their x checked whole for NaN and infinity where fit
        trains (before the first step, not after the first epoch); first: the index of their first
        sample in the array `name` (validation_split's, in x)."""
        if training and val is not None:
            self._check_finite(val[0], name, first)
        return val

    def _goes_on(self, epoch, data):
        """Whether fit's epoch `epoch` over `data` goes on from the epoch Ctrl-C stopped
        (self._unfinished, batches.Unfinished): the same epoch, over the same data, logging the
        same names with the same losses (a model loaded from a file of another compile does not)."""
        unfinished = getattr(self, "_unfinished", None)
        return (unfinished is not None and unfinished.epoch == epoch and unfinished.compiled == self._compiled_as()
                and data.goes_on_from(unfinished))

    def _compiled_as(self):
        """What an epoch's logs depend on besides the data: the names logged and the losses' kinds."""
        losses = self.loss.values() if isinstance(self.loss, dict) else [self.loss]
        return "|".join(self.metrics_names + [type(loss).__name__ for loss in losses])

    def _fit_epochs(self, first_epoch, last_epoch, data, val, callbacks, validation=None):
        """fit's epochs with the callbacks' hooks over `data` (ArrayBatches or BatchSource); returns
        the last epoch's logs (as fit logged them). validation: _check_validation_options'."""
        validation = validation or _check_validation_options(None, None, 1)
        if val is not None and validation["steps"] is not None:  # the first batches only
            val = tuple(part[:validation["steps"] * (validation["batch_size"] or data.batch_size)] for part in val)
        last_logs = {}
        for epoch in range(first_epoch, last_epoch):
            # An epoch Ctrl-C stopped goes on (kept until its first step is taken, or another epoch's
            # is); its iterator may have given all it had.
            start = self._unfinished if self._goes_on(epoch, data) else None
            if start is None and not data.has_more():
                if not data.drawn:
                    raise ValueError("x is an iterator that gave no batches")
                _warn_ran_out(f"gave no batch for epoch {epoch + 1}: training stopped after epoch {epoch}", data)
                break
            if start is not None and self.optimizer.lr == start.rates[1]:
                self.optimizer.lr = start.rates[0]  # a schedule's rate is set again from the one it was set from
            rate = self.optimizer.lr  # put back with the weights where the epoch goes non-finite
            try:
                callbacks.on_epoch_begin(epoch)
                rates = (rate, self.optimizer.lr)
                logs = guarded(self, lambda: self._train_epoch(data, epoch, callbacks, start, rates),
                               f"epoch {epoch + 1}" if start is None else f"batch {start.batch + 1} of epoch {epoch + 1}",
                               rate, start)
            except BaseException:
                if getattr(self._unfinished, "epoch", None) != epoch:
                    self.optimizer.lr = rate  # stopped before its first step: it starts again from its rate
                raise
            if data.ran_out and not self.stop_training:
                _warn_ran_out(f"ran out in epoch {epoch + 1}, before its {data.steps} steps: training stopped after "
                              "it", data)
                self.stop_training = True
            if val is not None and _validates(epoch, validation["freq"]):
                logs.update({"val_" + key: value for key, value in
                             self._test(*val, validation["batch_size"] or data.batch_size, callbacks).items()})
            self.epochs_trained, self._unfinished = epoch + 1, None  # (in this order: an interrupt between keeps both)
            last_logs = dict(logs)  # on_train_end's, as Keras 3.15 passes them: without what callbacks add
            if callbacks.on_epoch_end(epoch, logs) or self.stop_training:
                break
        return last_logs

    def _epoch_range(self, epochs, initial_epoch):
        epochs = check_int(epochs, "epochs", 0)
        if initial_epoch is None:
            return self.epochs_trained, self.epochs_trained + epochs
        initial_epoch = check_int(initial_epoch, "initial_epoch", 0)
        if initial_epoch > epochs:
            raise ValueError(f"initial_epoch ({initial_epoch}) is past epochs ({epochs}); with initial_epoch, "
                             "epochs is the index of the last epoch, as in Keras")
        return initial_epoch, epochs

    def _validation(self, x, y, validation_data, validation_split):
        """(x_train, y_train, (x_val, y_val) or None)."""
        if validation_data is not None:
            return x, y, self._validation_arrays(validation_data)
        if isinstance(validation_split, (bool, np.bool_)) or not isinstance(validation_split, numbers.Real):
            raise TypeError(f"validation_split must be a number in [0, 1), got {validation_split!r}")
        if not validation_split:
            return x, y, None
        if not 0 < validation_split < 1:
            raise ValueError(f"validation_split must be in (0, 1), got {validation_split!r}")
        # Keras' split: the first floor(n * (1 - split)) samples train, the last ones validate,
        # before any shuffling.
        n_train = math.floor(x.shape[0] * (1.0 - validation_split))
        if n_train < 1 or n_train >= x.shape[0]:
            raise ValueError(f"validation_split={validation_split} of {x.shape[0]} samples leaves no training or "
                             "validation samples")
        return x[:n_train], y[:n_train], (x[n_train:], y[n_train:])

    def _validation_arrays(self, validation_data):
        """validation_data (x_val, y_val) or (x_val, y_val, val_sample_weight) checked, or None."""
        if validation_data is None:
            return None
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError(f"validation_data must be a tuple (x_val, y_val) or (x_val, y_val, val_sample_weight) "
                             f"of arrays, got {describe(validation_data)}")
        x, y = self._check_xy(*validation_data[:2], name="validation x")
        weights = validation_data[2] if len(validation_data) == 3 else None
        try:
            return x, with_weights(self, y, x.shape[0], weights)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"validation_data's sample weights: {exc}") from exc

    def _generators(self):
        """{path: Generator} of every generator the model's training draws from, each once: its own
        ("rng": shuffling, and the masks of layers without one of their own), a layer's own
        (Dropout(seed=...)), and those of the models inside it ("discriminator/rng", ...)."""
        found, seen = {}, set()

        def walk(model, prefix):
            for path, generator in [(prefix + "rng", model.rng)] + [
                    (f"{prefix}{layer.name}/rng", getattr(layer, "rng", None)) for layer in model.layers]:
                if isinstance(generator, np.random.Generator) and id(generator) not in seen:
                    seen.add(id(generator))
                    found[path] = generator
            for layer in model.layers:
                if isinstance(layer, Fitting):
                    walk(layer, f"{prefix}{layer.name}/")

        walk(self, "")
        return found

    def _reseed(self, seed):
        """Every generator of the model (_generators) restarted from `seed`: the model's own as
        np.random.default_rng(seed), each other one from a child seed of it, in place, so that the
        layers and models sharing one keep sharing it."""
        generators = self._generators()
        others = [path for path in generators if path != "rng"]
        seeds = [seed] + np.random.SeedSequence(seed).spawn(len(others))
        for path, child in zip(["rng"] + others, seeds):
            generators[path].bit_generator.state = np.random.default_rng(child).bit_generator.state

    def _train_epoch(self, data, epoch, callbacks, start=None, rates=None):
        """One epoch over `data`'s batches (ArrayBatches.epoch, BatchSource.epoch), or what is left
        of it from an interrupted epoch's Unfinished `start`; returns its logs, the means over the
        batches trained. callbacks: fit's CallbackList, told of each batch. rates: the learning
        rate before the callbacks' on_epoch_begin and the one the epoch trains with.

        The model keeps where the epoch is (self._unfinished) until fit counts it trained, so that
        the next fit goes on from there after Ctrl-C or an error: the batches whose steps were
        taken, their logs' totals, and for a step not taken its generators' states from before it
        (a Dropout's masks drawn again) and, from an iterator, its batch (held for the next fit)."""
        self._unfinished = start  # (a record of another epoch or other data is dropped)
        batches = data.epoch(epoch, start)
        # (batches taken, samples seen, the logs' totals): replaced whole, never changed in place,
        # so that an interrupt finds the count before a step or after it.
        done = (0, 0, {}) if start is None else (start.batch, start.seen, dict(start.totals))
        generators = list(self._generators().values())
        taken, pending = self.optimizer.iterations, None
        states = [generator.bit_generator.state for generator in generators]
        with self._training_to_logits():
            try:
                while True:
                    taken, states = self.optimizer.iterations, [generator.bit_generator.state for generator in generators]
                    batch = next(batches, None)
                    if batch is None:
                        break
                    xb, yb, count = batch
                    b = done[0]
                    callbacks.on_train_batch_begin(b)
                    # A Ctrl-C before the step is applied leaves BatchNormalization's statistics as they were.
                    with statistics_kept(self):
                        try:
                            batch_logs = self._train_step(xb, yb)
                        except ValueError as exc:  # e.g. weights or activations gone non-finite: never train on
                            raise stopped_at(exc, epoch, b) from exc
                        pending = (b, count, batch_logs)
                        self.optimizer.step()
                    data.current = None
                    done = _counted(done, pending)
                    callbacks.on_train_batch_end(b, {**_means(done), "seen": done[1]})
                    if self.stop_training:  # a callback asked to stop (at this batch's begin or end): after it, as Keras
                        break
            except BaseException:
                with sigint_deferred():  # (a second Ctrl-C waits until the record is whole)
                    if self.optimizer.iterations == taken:  # the batch's step was not taken: it is trained again
                        for generator, state in zip(generators, states):
                            generator.bit_generator.state = state
                        data.put_back()
                    elif pending is not None and pending[0] == done[0]:  # taken, not yet counted
                        done = _counted(done, pending)
                    if done[0]:
                        self._unfinished = data.unfinished(epoch, *done, rates, self._compiled_as())
                raise
        # Every step taken; until fit counts the epoch (after validation), it goes on from here.
        self._unfinished = data.unfinished(epoch, *done, rates, self._compiled_as())
        return _means(done)

def _counted(done, pending):
    """fit's count of an epoch's steps (batches, seen, totals) with the step `pending` (its
    batch, count and logs) added: a new tuple and totals, the old ones left as they were."""
    batch, count, batch_logs = pending
    totals = dict(done[2])
    for key, value in batch_logs.items():
        totals[key] = totals.get(key, 0.0) + value * count
    return batch + 1, done[1] + count, totals


def _means(done):
    """The logs of an epoch's steps so far: each total's mean over the samples seen."""
    _, seen, totals = done
    return {key: value / seen for key, value in totals.items()}


def _check_validation_options(steps, batch_size, freq):
    """fit's validation_steps, validation_batch_size and validation_freq, checked: {"steps",
    "batch_size", "freq"} (None for the steps and batch size not given)."""
    steps = None if steps is None else check_int(steps, "validation_steps", 1)
    batch_size = None if batch_size is None else check_int(batch_size, "validation_batch_size", 1)
    if isinstance(freq, (list, tuple)):
        freq = [check_int(epoch, "validation_freq's epochs", 1) for epoch in freq]
    elif isinstance(freq, numbers.Integral) and not isinstance(freq, bool):
        freq = check_int(freq, "validation_freq", 1)
    else:
        raise TypeError(f"validation_freq must be an int >= 1 or a list of epochs (from 1), got {freq!r}")
    return {"steps": steps, "batch_size": batch_size, "freq": freq}


def _validates(epoch, freq):
    """Whether fit validates after epoch `epoch` (from 0), as Keras' _should_eval."""
    return (epoch + 1) % freq == 0 if isinstance(freq, int) else epoch + 1 in freq
