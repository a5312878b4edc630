"""The training loop of fastdl.nn models: fit (with callbacks and resuming), evaluate, predict."""

import collections
import contextlib
import math
import numbers
import threading
import warnings

import numpy as np

from fastdl import _device
from fastdl import backend as _backend
from fastdl._parallel import single_threaded_blas
from fastdl._validation import NonFiniteError, check_int
from fastdl.nn.batches import ArrayBatches, Batches, BatchSource, describe, is_batch_source
from fastdl.nn.callback_list import CallbackList
from fastdl.nn.callbacks import History, ProgressLogger
from fastdl.nn.guard import check_finite_gradients, guarded, statistics_kept, step_refused, stopped_at
from fastdl.nn.gradient_flags import GradientFlags, forget_flags
from fastdl.nn.layers import inference_pass
from fastdl.nn.module import Layer, place_parameters, shares_input
from fastdl.nn.saving import Saving


def _accuracy(y_pred, y_true, threshold=None):
    """Share of predictions that hit their targets: "accuracy" for the loss.

    threshold None: the class of the largest output at each position (the last axis holds the
    classes) against integer codes or one-hot rows; a single output is a binary probability,
    1 above 0.5. A threshold (binary cross-entropy's: 0.5, or 0 from logits): each output
    against its target, a target above 0.5 counting as 1.

    Keras picks its accuracy from the shapes alone. Where that differs: several binary
    cross-entropy outputs are scored one by one (Keras: the largest against the largest target);
    logits are cut at 0, which is p = 0.5 (Keras cuts them at 0.5 too); a soft target of 0.9
    counts as 1 (Keras requires it to equal the 0/1 prediction).
    """
    y_pred = _device.host(y_pred)
    if threshold is None and y_pred.shape[-1] == 1:
        threshold = 0.5
    if threshold is not None:
        predicted = y_pred.reshape(-1) > threshold
        target = np.asarray(y_true).reshape(-1) > 0.5
    else:
        predicted = np.argmax(y_pred.reshape(-1, y_pred.shape[-1]), axis=1)
        target = np.argmax(y_true.reshape(-1, y_true.shape[-1]), axis=1) if y_true.shape == y_pred.shape \
            else y_true.reshape(-1)
    return int(np.count_nonzero(predicted == target)) / max(predicted.shape[0], 1)  # a float, as Keras' logs


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


def check_output_shape(out, n_samples, expected, layer):
    """Raise ValueError unless a batch of n_samples outputs has the shape the model was built for
    (outputs of a layer whose forward disagrees with its compute_output_shape, or that drops
    samples, would be broadcast into the model's)."""
    if tuple(out.shape) != (n_samples, *expected):
        raise ValueError(f"layer {layer.name!r} returned outputs of shape {tuple(out.shape)} for {n_samples} "
                         f"samples, but its compute_output_shape gives (batch, {', '.join(map(str, expected))}): a "
                         "layer's forward must return one output per sample, of its compute_output_shape")


def _check_shuffle(shuffle):
    if isinstance(shuffle, str):
        raise ValueError(f"shuffle={shuffle!r} is not supported: fit shuffles all the samples (True) or none "
                         "(False); Keras' 'batch' (shuffling in batch-sized chunks, for HDF5 data) is not implemented")
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"shuffle must be True or False, got {shuffle!r}")
    return bool(shuffle)


def _check_source_arguments(y, batch_size, validation_split):
    """Refuse fit's arguments that do not apply where x is an iterator of (x, y) batches."""
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


def _add_to_means(totals, batch_logs, count, seen):
    """Add a batch's logs, weighted by its count of samples, to totals; the means over seen samples."""
    for key, value in batch_logs.items():
        totals[key] = totals.get(key, 0.0) + value * count
    return {key: value / seen for key, value in totals.items()}


# Inference calls running on each model (by id), so that the last to end drops what the passes
# left on the layers (Training._passes_forgotten).
_inference_calls = collections.Counter()
_inference_lock = threading.Lock()


class Training(Batches, Saving, GradientFlags, Layer):
    """fit, evaluate and predict of Sequential and Model, which give: `_check_xy(x, y)`, the
    checked data; `_forward(x, training)`, the outputs; `_batch_losses(outputs, y, record=None)`
    (record: an evaluation pass's layers.InferencePass) and `_batch_logs(outputs, y, losses)`, a
    batch's logs; `_backward_from_loss()`, every gradient;
    `_log_names()`; `_output_layers()`, `_named_outputs(outputs)` and `_as_given(by_name)`, the
    outputs by name and back; and `_calls()` (see GradientFlags).

    A model is also a Layer: called on a symbolic tensor or added to a Sequential, it becomes a
    layer of another model with its own weights shared, as in Keras::

        gan = Model(z, discriminator(generator(z)))

    Its subclasses give `forward(x, training)` and `backward(dout)` for that use: the gradient at
    the input from the output's (None where not needed), after the outer model set every
    layer's flags (_apply_gradient_flags).

    Threads: several threads may run inference on one model at once (predict, evaluate,
    test_on_batch, calling it), as a web server sharing a model does: each pass writes its
    outputs, logits and loss state into arrays of its own, and gives the serial answers. Training
    is not shared: a training step (fit, train_on_batch) reuses buffers kept on the layers, the
    loss and the optimizer, so train one model from one thread at a time, with no other thread
    running inference on it meanwhile (train a copy, then copy its weights over with
    set_weights).
    """

    stop_training = False  # set by a callback to end fit (see Callback)

    # -- the model as a layer of another ---------------------------------------------------------
    @property
    def trainable(self):
        return self.__dict__.get("_trainable", True)

    @trainable.setter
    def trainable(self, value):
        """Freeze (False) or unfreeze every layer, as Keras; read when a model is compiled."""
        self._trainable = bool(value)
        for layer in getattr(self, "layers", ()):
            layer.trainable = bool(value)

    @property
    def gemm_only(self):
        return all(layer.gemm_only for layer in self.layers)

    @property
    def runs_on_device(self):
        return all(layer.runs_on_device for layer in self.layers)

    def _place_parameters(self):
        """Put the parameters in flat buffers (module.place_parameters), so that an optimizer step is
        one pass over each buffer. On the cuda backend (the model's, or the one in force when it is
        built) every layer runs on the device, and the buffers are there."""
        if not _backend.selects_cuda(self.backend):
            place_parameters([p for layer in self.layers for _, p in layer.parameters()])
            return
        _backend.kernels("dense", "cuda")  # a missing device is an error that says why, here
        for layer in self.layers:
            if not layer.runs_on_device:
                raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) does not run on the cuda backend "
                                 "yet; build the model for a CPU backend")
            if layer.backend not in (None, "cuda"):
                raise ValueError(f"layer {layer.name!r} asks for backend {layer.backend!r} in a model on the cuda "
                                 "backend")
            layer.backend = "cuda"
            if isinstance(layer, Training):  # a model inside this one goes with it
                layer._place_parameters()
            layer.on_device = True
        self.backend, self.on_device = "cuda", True
        place_parameters([p for layer in self.layers for _, p in layer.parameters()], on_device=True)
        optimizer = getattr(self, "optimizer", None)
        if optimizer is not None and optimizer.params:  # compiled before its parameters moved
            optimizer.follow_parameters()

    def trainable_parameters(self):
        """[(name, Parameter)] of the layers not frozen: what `compile` hands the optimizer."""
        if not getattr(self, "built", False):
            self.build()
        if not self.trainable:
            return []
        return [(f"{layer.name}/{key}", p) for layer in self.layers for key, p in layer.trainable_parameters()]

    def regularization_loss(self, trained=None):
        """The weight penalties (kernel_regularizer) of the layers whose weights this model trains,
        as Keras 3 (tf.keras 2 added a frozen layer's too, a constant no step can lower): trained,
        the ids of the Parameters trained (default: _trained_ids(), looked up only where a layer
        has a penalty: a training step asks for this at every batch)."""
        total = 0.0
        for layer in self.layers:
            if isinstance(layer, Training):
                trained = self._trained_ids() if trained is None else trained
                total += layer.regularization_loss(trained)
                continue
            penalty = layer.regularization_loss()
            if penalty:
                trained = self._trained_ids() if trained is None else trained
                if any(id(p) in trained for _, p in layer.parameters()):
                    total += penalty
        return total

    def _trained_ids(self):
        """The ids of the Parameters this model trains: its optimizer's (and those of the layers added
        since it took them), or before it holds any, those of the layers not frozen."""
        optimizer = getattr(self, "optimizer", None)
        if optimizer is not None and optimizer.attached:
            params = optimizer.params + [p for layer in self.__dict__.get("_added_layers", [])
                                         for _, p in layer.trainable_parameters()]
        else:
            params = [p for _, p in self.trainable_parameters()]
        return {id(p) for p in params}

    @property
    def losses(self):
        """The terms the layers added with `add_loss` in the last forward pass."""
        return [value for layer in self.layers for value in layer.losses]

    def clear_losses(self):
        for layer in self.layers:
            layer.clear_losses()

    def __call__(self, x, training=False):
        """The outputs for x; on a symbolic tensor, this model as a layer of the model being made."""
        if getattr(x, "_call_layer", None) is not None:
            return x._call_layer(self)
        batch = self._as_batch(self._check_x(x))
        if training:  # BatchNormalization reads the flags: a frozen one normalises as in inference
            self._call_gradient_flags()
        with self._blas_policy(), (contextlib.nullcontext() if training else self._passes_forgotten()):
            out = self._forward(batch, training)  # (BLAS as predict's: its threads spinning cost 2.5-4x)
        # NumPy in, NumPy out: a model on the device brings its outputs back. A training pass writes
        # into buffers that the next one reuses, so the caller gets copies of those; an inference
        # pass that gave x itself or a view of it (Dropout, Flatten) gets a copy too.
        if training:
            own = _device.copy if _device.is_device(x) else _device.host_copy
        else:
            same_side = (lambda v: v) if _device.is_device(x) else _device.host

            def own(v):
                return _device.copy(v) if shares_input(v, x) else same_side(v)
        return self._as_given({name: own(v) for name, v in out.items()}) if isinstance(out, dict) else own(out)

    # -- one batch -------------------------------------------------------------------------------
    def train_on_batch(self, x, y, *, return_dict=False):
        """One training step on the batch (x, y), as one batch of `fit` without shuffling.

        Returns the loss and metrics before the step, as `evaluate` does. The step is not taken
        where the input batch or the loss is NaN or infinite, or a gradient is, or so large that
        its square leaves float range (an optimizer's second-moment slot would): NonFiniteError
        (for the input batch, a ValueError), the weights and optimizer state as they were,
        BatchNormalization's moving statistics put back. (fit copies the state once an epoch and
        puts it back where the epoch ends non-finite; a copy per call would cost a small model a
        fifth of its step, the gradients' check 3% of the course MLP's. An update that overflows
        from finite gradients, with a learning rate near float range, is not caught here.)
        return_dict is keyword-only: Keras' third and fourth arguments (sample_weight,
        class_weight) are not supported.
        """
        x, y = self._check_xy(x, y)
        self._attach_optimizer()
        self._warn_if_untrainable()
        with statistics_kept(self), self._blas_policy(), self._training_to_logits():
            try:
                logs = self._train_step(self._as_batch(x), y, check_gradients=True)
            except ValueError as exc:
                raise step_refused(exc) from exc
            self.optimizer.step()
        return logs if return_dict else self._result(logs)

    def test_on_batch(self, x, y, *, return_dict=False):
        """The loss (and metrics) on the batch (x, y), as `evaluate` on it; no weight changes."""
        x, y = self._check_xy(x, y)
        with self._blas_policy():
            logs = self._evaluate(x, y, x.shape[0])
        return logs if return_dict else self._result(logs)

    def predict_on_batch(self, x):
        """The outputs for the batch x in one pass, as `predict`."""
        return self.predict(x, batch_size=max(len(x), 1))

    @property
    def metrics_names(self):
        """The names of the values `evaluate`, `train_on_batch` and `test_on_batch` return, in
        order, as Keras': "loss", then each output's loss (a Model of several outputs), then the
        metrics; empty before compile."""
        return self._log_names() if self.loss is not None else []

    def _result(self, logs):
        """As Keras: the loss alone, else the list of the values metrics_names names."""
        values = [logs[name] for name in self._log_names()]
        return values[0] if len(values) == 1 else values

    def _as_given(self, outputs):
        return outputs

    def _take_optimizer(self, optimizer, built):
        """compile's part for the optimizer (checked to be free for this model before anything
        else is set): it takes the trainable parameters (once built), and the layers' gradient
        flags are set afresh for it at the next step."""
        params = [p for _, p in self.trainable_parameters()] if built else None
        optimizer.compile_for(self, params, self.backend)
        forget_flags()

    def _attach_optimizer(self):
        self.optimizer.claim(self)  # (a copied model's optimizer is claimed again at its first step)
        if not self.optimizer.attached:  # compiled before the model was built
            self.optimizer.attach((p for _, p in self.trainable_parameters()), self.backend)
        elif self.__dict__.get("_added_layers"):  # layers added since the optimizer took the others
            if not self.built:
                self.build()
            if self.trainable:
                self.optimizer.add_parameters(p for layer in self._added_layers for _, p in layer.trainable_parameters())
        self._added_layers = []

    def _warn_if_untrainable(self):
        """Warn, once per model, where it trains with no weights to train (Keras 3 warns too): the
        steps run and the loss stays put. The usual cause is a model compiled while frozen."""
        if self.optimizer.params or self.__dict__.get("_warned_untrainable"):
            return
        self._warned_untrainable = True
        if not self.parameters():
            warnings.warn(f"model {self.name!r} has no weights: training it changes nothing", UserWarning, stacklevel=3)
            return
        warnings.warn(f"model {self.name!r} has no trainable weights: training it changes nothing. It was compiled "
                      "while trainable was False (or with every layer frozen)? In a GAN, compile the discriminator "
                      "before setting discriminator.trainable = False, then compile the combined model",
                      UserWarning, stacklevel=3)

    def fit(self, x, y=None, batch_size=None, epochs=1, verbose=0, callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, *, initial_epoch=None, seed=None, steps_per_epoch=None):
        """Train on (x, y), or on the (x, y) batches an iterator gives; returns a History.

        The arguments come in Keras 3's order (x, y, batch_size, epochs, verbose, callbacks,
        validation_split, validation_data, shuffle), so fit(x, y, 128, 3) is 3 epochs of batches
        of 128, as in Keras. Keras' next ones, class_weight and sample_weight, are not supported:
        initial_epoch, steps_per_epoch and fastdl's seed are keyword-only, so that no positional
        value lands on them.

        Parameters
        ----------
        x : array-like of shape (n_samples, *input_shape), or an iterator of (x, y) batches
            An iterator (a generator, say, as fastdl.data.clock_batches gives) yields the batches
            to train on, each (x_batch, y_batch) and of any size, as Keras takes a generator: fit
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
        validation_data : (x_val, y_val), optional
            Takes the place of validation_split.
        shuffle : bool, default True
            Keras' shuffle="batch" is refused.
        initial_epoch : int, optional, keyword-only
            The epoch to start at (Keras' resuming argument).
        seed : int, optional, keyword-only
            Reseeds the generator that shuffles and draws dropout masks.
        steps_per_epoch : int, optional, keyword-only
            With x an iterator: the batches an epoch draws from it. None: an epoch is all it
            gives, then it has ended (the next epoch, with none, stops training). An iterator that
            ends before its epochs are trained stops training with a warning, as in Keras; the
            epoch it ended in counts, where it gave a batch. A fit refused, or of no epochs, draws
            nothing from it; one stopped (an error, Ctrl-C) has drawn the batch it was training,
            which a next fit on the iterator does not see again.

        Returns
        -------
        History
            Its `history` maps "loss", "accuracy", "val_loss", ... to their values at each epoch.

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
        x is checked for NaN and infinity batch by batch until an epoch has gone over all of it;
        later epochs take its rows unchecked (x changed in place by a callback is not checked again).
        """
        first_epoch, last_epoch = self._epoch_range(epochs, initial_epoch)
        verbose = check_verbose(verbose)
        shuffle = _check_shuffle(shuffle)
        seed = None if seed is None else check_int(seed, "seed", 0)
        params = {"verbose": verbose, "epochs": last_epoch, "steps": None}
        callbacks = CallbackList(callbacks, self, params)  # refuses what is not a Callback: before any data is drawn
        data, val = self._fit_data(x, y, batch_size, validation_split, validation_data, shuffle, steps_per_epoch,
                                   first_epoch < last_epoch)
        params["steps"] = n_batches = data.steps
        if self.built:  # (not where no epoch is to train and the first batch would build the model)
            self._attach_optimizer()
            self._warn_if_untrainable()
        if seed is not None:
            self._reseed(seed)
        # As Keras: History after the user's callbacks (it records the keys they add to the logs),
        # the progress display last.
        history = History()
        callbacks.append(history)
        progress = ProgressLogger(verbose, n_batches, last_epoch) if verbose else None
        if progress is not None:
            callbacks.append(progress)
        self.stop_training = False
        callbacks.on_train_begin()
        try:
            with self._blas_policy():
                logs = self._fit_epochs(first_epoch, last_epoch, data, val, callbacks)
        except BaseException:
            if progress is not None:
                progress.close()
            raise
        # As Keras, only once fit has run (not after an error): EarlyStopping restores its best weights here.
        callbacks.on_train_end(logs)
        return history

    def _fit_data(self, x, y, batch_size, validation_split, validation_data, shuffle, steps_per_epoch, training):
        """fit's data, checked: (its batches, an ArrayBatches or a BatchSource, and the validation
        arrays or None). training: fit has epochs to train (else nothing is drawn from an iterator)."""
        if is_batch_source(x):
            _check_source_arguments(y, batch_size, validation_split)
            steps = None if steps_per_epoch is None else check_int(steps_per_epoch, "steps_per_epoch", 1)
            if self.loss is None:
                raise RuntimeError("call compile(optimizer, loss) before fit or evaluate")
            source = BatchSource(self, x, steps)
            if training and not self.built:  # from the first batch, as from arrays; then validation_data
                source.build_model()
            return source, self._validation_arrays(validation_data)
        if steps_per_epoch is not None:
            raise ValueError("steps_per_epoch is for x an iterator of batches; an epoch over arrays is all of their "
                             "batches")
        if y is None:
            raise ValueError(_missing_y(x))
        batch_size = check_batch_size(batch_size)
        x, y = self._check_xy(x, y)
        x, y, val = self._validation(x, y, validation_data, validation_split)
        return ArrayBatches(self, self._resident(x), y, batch_size, shuffle), val

    def _fit_epochs(self, first_epoch, last_epoch, data, val, callbacks):
        """fit's epochs with the callbacks' hooks over `data` (ArrayBatches or BatchSource); returns
        the last epoch's logs (as fit logged them)."""
        last_logs = {}
        for epoch in range(first_epoch, last_epoch):
            if not data.has_more():
                if not data.drawn:
                    raise ValueError("x is an iterator that gave no batches")
                _warn_ran_out(f"gave no batch for epoch {epoch + 1}: training stopped after epoch {epoch}", data)
                break
            callbacks.on_epoch_begin(epoch)
            logs = guarded(self, lambda: self._train_epoch(data.epoch(epoch), epoch, callbacks), f"epoch {epoch + 1}")
            if data.ran_out and not self.stop_training:
                _warn_ran_out(f"ran out in epoch {epoch + 1}, before its {data.steps} steps: training stopped after "
                              "it", data)
                self.stop_training = True
            if val is not None:
                logs.update({"val_" + key: value for key, value in
                             self._test(*val, data.batch_size, callbacks).items()})
            self.epochs_trained = epoch + 1
            last_logs = dict(logs)  # on_train_end's, as Keras 3.15 passes them: without what callbacks add
            if callbacks.on_epoch_end(epoch, logs) or self.stop_training:
                break
        return last_logs

    def _test(self, x, y, batch_size, callbacks):
        """_evaluate's logs, with the callbacks' test hooks called as Keras calls them:
        on_test_begin, each batch's on_test_batch_begin and on_test_batch_end (logs: the means over
        the batches so far), on_test_end(logs).

        Batch by batch only where a callback overrides a batch hook: the means are then summed
        from each batch's, which can differ from one _evaluate pass in the last bit."""
        callbacks.on_test_begin()
        if not callbacks.watch_test_batches():
            logs = self._evaluate(x, y, batch_size)
        else:
            totals = {}
            for batch, first in enumerate(range(0, x.shape[0], batch_size)):
                callbacks.on_test_batch_begin(batch)
                stop = min(first + batch_size, x.shape[0])
                logs = _add_to_means(totals, self._evaluate(x[first:stop], y[first:stop], batch_size), stop - first,
                                     stop)
                callbacks.on_test_batch_end(batch, logs)
        callbacks.on_test_end(logs)
        return logs

    def predict(self, x, batch_size=32, verbose=0, steps=None, callbacks=None):
        """The outputs for x, computed batch by batch, each an ndarray of shape (n_samples,
        *output_shape): Sequential's one array; a Model's one array, list or dict {output name:
        array}, as its outputs were given.

        The arguments come in Keras 3's order. batch_size None is 32, as Keras. verbose is taken as
        Keras takes it; predictions print nothing. steps (Keras' for data generators) must be None.
        callbacks: their on_predict_begin, each batch's on_predict_batch_begin and
        on_predict_batch_end (logs {"outputs": the batch's outputs, as predict returns them; outputs
        in a dict by their names}), then on_predict_end, as Keras calls them.
        """
        batch_size = check_batch_size(batch_size)
        verbose = check_verbose(verbose)
        if steps is not None:
            raise ValueError(f"steps={steps!r} is not supported: predict runs over all of x (steps=None)")
        x = self._check_x(x)
        outputs = self._output_layers()
        result = {name: np.empty((x.shape[0], *shape), dtype=self.dtype) for name, (shape, _) in outputs.items()}
        callbacks = CallbackList(callbacks, self, {"verbose": verbose, "epochs": 1, "steps": -(-x.shape[0] // batch_size)})
        callbacks.on_predict_begin()
        with self._blas_policy(), self._passes_forgotten():
            for batch, first in enumerate(range(0, x.shape[0], batch_size)):
                callbacks.on_predict_batch_begin(batch)
                xb = self._as_batch(x[first:first + batch_size])
                stop = first + xb.shape[0]
                for name, value in self._named_outputs(self._forward(xb, training=False)).items():
                    check_output_shape(value, xb.shape[0], *outputs[name])
                    result[name][first:stop] = _device.host(value)
                given = self._as_given({name: array[first:stop] for name, array in result.items()})
                # As Keras 3 (which flattens dicts in logs): a dict's outputs by name, else "outputs".
                callbacks.on_predict_batch_end(batch, given if isinstance(given, dict) else {"outputs": given})
        callbacks.on_predict_end()
        return self._as_given(result)

    def _blas_policy(self):
        """Who runs the threads of a training or inference run: BLAS or fastdl, never both.

        A model of Dense layers (and light ones: activations, Dropout, Flatten) is GEMMs: BLAS
        threads them itself, better than fastdl splitting their rows, and fastdl's kernels run on
        one thread beside it (the course MLP: 520 instead of 640 us a step at batch 32, 2.0 instead
        of 2.4 ms at batch 256; 0.9 ms in the development VM's phases where its two cores pass data
        2.4x slower, as the threads share the weights). Every other model runs BLAS single-threaded, every GEMM on
        fastdl's own threads split by rows: OpenBLAS' idle threads spin for up to ~0.1 s after a
        threaded GEMM, taking the cores that the next layer's kernels run on (measured here: 8-9%
        of a CNN step).
        """
        if self.gemm_only:
            return _backend.kernel_threads(1)
        return single_threaded_blas()

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
        """validation_data (x_val, y_val) checked, or None."""
        if validation_data is None:
            return None
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError(f"validation_data must be a tuple (x_val, y_val) of arrays, got {describe(validation_data)}")
        return self._check_xy(*validation_data, name="validation x")

    def _check_each_layer_once(self):
        """Raise ValueError where a layer is reached twice in this model, through the models inside
        it (one shared by two of them): a layer keeps one call's inputs for its backward pass and
        the optimizer would update its weights twice a step."""
        seen = {}

        def walk(model, prefix):
            for layer in model.layers:
                where = prefix + (layer.name or type(layer).__name__)
                if id(layer) in seen:
                    raise ValueError(f"layer {where!r} is also {seen[id(layer)]!r} in model {self.name!r}: a layer "
                                     "is applied once in a model (share it between models that train apart, as a "
                                     "GAN's discriminator)")
                seen[id(layer)] = where
                if isinstance(layer, Training):
                    walk(layer, where + "/")

        walk(self, "")

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
                if isinstance(layer, Training):
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

    def _train_epoch(self, batches, epoch, callbacks):
        """One epoch over `batches`, each (xb, yb, count) as the first layer takes it (see
        ArrayBatches.epoch and BatchSource.epoch); returns its logs, the means over the batches
        trained. callbacks: fit's CallbackList, told of each batch."""
        totals, seen, logs = {}, 0, {}
        with self._training_to_logits():
            for b, (xb, yb, count) in enumerate(batches):
                callbacks.on_train_batch_begin(b)
                # A Ctrl-C before the step is applied leaves BatchNormalization's statistics as they were.
                with statistics_kept(self, check_finite=False):
                    try:
                        batch_logs = self._train_step(xb, yb)
                    except ValueError as exc:  # e.g. weights or activations gone non-finite: never train on
                        raise stopped_at(exc, epoch, b) from exc
                    self.optimizer.step()
                seen += count
                logs = _add_to_means(totals, batch_logs, count, seen)
                callbacks.on_train_batch_end(b, {**logs, "seen": seen})
                if self.stop_training:  # a callback asked to stop (at this batch's begin or end): after it, as Keras
                    break
        return logs

    def _train_step(self, xb, yb, check_gradients=False):
        """Forward and backward pass of one batch (the optimizer's step is the caller's); its logs.
        check_gradients: NonFiniteError where a gradient is not finite (train_on_batch's check)."""
        self._apply_gradient_flags()  # before the forward pass: BatchNormalization reads them
        outputs = self._forward(xb, training=True)
        losses = self._batch_losses(outputs, yb)
        if not np.isfinite(losses["loss"]):
            raise NonFiniteError(f"the loss is {losses['loss']}")
        # Metrics before the backward pass: on the device, reading the outputs then waits for
        # nothing more than reading the loss did.
        logs = self._batch_logs(outputs, yb, losses)
        self._backward_from_loss()
        if check_gradients:
            check_finite_gradients(self.optimizer)
        return logs

    @contextlib.contextmanager
    def _passes_forgotten(self):
        """Around an inference call: once the last one running on this model ends, the layers drop
        what the passes left on them for a backward pass that does not come (the batch's input,
        outputs, pooling codes). A model(X) of 4,000 course-sized images kept 311 MB, and X."""
        with _inference_lock:
            _inference_calls[id(self)] += 1
        try:
            yield
        finally:
            with _inference_lock:
                _inference_calls[id(self)] -= 1
                last = _inference_calls[id(self)] == 0
                if last:
                    del _inference_calls[id(self)]
                    self.forget_pass()

    def forget_pass(self):
        """Every layer's forget_pass (nested models' too)."""
        for layer in self.layers:
            layer.forget_pass()

    def _training_to_logits(self):
        return contextlib.nullcontext()

    def _evaluate(self, x, y, batch_size):
        totals = {}
        # The passes keep their logits and their loss's state in a record of their own, not on the
        # layers and the loss, which threads evaluating one model share.
        with inference_pass() as record, self._passes_forgotten():
            for first in range(0, x.shape[0], batch_size):
                xb, yb = self._as_batch(x[first:first + batch_size]), y[first:first + batch_size]
                record.logits.clear()
                outputs = self._forward(xb, training=False)
                logs = _add_to_means(totals, self._batch_logs(outputs, yb, self._batch_losses(outputs, yb, record)),
                                     len(xb), first + len(xb))
        return logs

    def evaluate(self, x, y, batch_size=32, verbose=0, *, callbacks=None, return_dict=False):
        """The loss and metrics over (x, y).

        As Keras: the loss alone, or the list of values `metrics_names` names. Sequential, and a
        Model of one output given as a tensor: the loss, or [loss, accuracy] when compiled with
        accuracy. A Model of outputs given as a list or a dict: [total loss, each output's loss,
        each output's accuracy where compiled with it]. With return_dict, the same values by name
        ({"loss": ..., "<output>_loss": ..., "<output>_accuracy": ...}).

        The arguments come in Keras 3's order (x, y, batch_size, verbose); Keras' next ones,
        sample_weight and steps, are not supported: callbacks and return_dict are keyword-only.
        batch_size None is 32, as Keras. verbose is taken as Keras takes it; evaluation prints
        nothing. callbacks: their on_test_begin, on_test_batch_begin / on_test_batch_end and
        on_test_end are called, as Keras calls them.
        """
        batch_size = check_batch_size(batch_size)
        verbose = check_verbose(verbose)
        x, y = self._check_xy(x, y)
        callbacks = CallbackList(callbacks, self, {"verbose": verbose, "epochs": 1, "steps": -(-x.shape[0] // batch_size)})
        with self._blas_policy():
            logs = self._test(x, y, batch_size, callbacks)
        return logs if return_dict else self._result(logs)
