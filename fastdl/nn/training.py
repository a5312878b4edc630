"""What fastdl.nn models do with data: train (fit, in fastdl.nn.fitting; train_on_batch),
evaluate and predict, and the state around it (parameters, losses, the BLAS policy)."""

import collections
import contextlib
import threading
import warnings

import numpy as np

from fastdl import _device
from fastdl import backend as _backend
from fastdl._parallel import single_threaded_blas
from fastdl._validation import NonFiniteError, check_int
from fastdl.nn.batches import Batches
from fastdl.nn.callback_list import CallbackList
from fastdl.nn.fitting import Fitting, add_to_means, check_batch_size, check_verbose
from fastdl.nn.guard import check_finite_gradients, check_finite_statistics, statistics_kept, step_refused
from fastdl.nn.gradient_flags import GradientFlags, forget_flags
from fastdl.nn.layers import inference_pass
from fastdl.nn.module import Layer, place_parameters, shares_input
from fastdl.nn.saving import Saving
from fastdl.nn.weights import with_weights


def check_output_shape(out, n_samples, expected, layer):
    """Raise ValueError unless a batch of n_samples outputs has the shape the model was built for
    (outputs of a layer whose forward disagrees with its compute_output_shape, or that drops
    samples, would be broadcast into the model's)."""
    if tuple(out.shape) != (n_samples, *expected):
        raise ValueError(f"layer {layer.name!r} returned outputs of shape {tuple(out.shape)} for {n_samples} "
                         f"samples, but its compute_output_shape gives (batch, {', '.join(map(str, expected))}): a "
                         "layer's forward must return one output per sample, of its compute_output_shape")


# Inference calls running on each model (by id), so that the last to end drops what the passes
# left on the layers (Training._passes_forgotten).
_inference_calls = collections.Counter()
_inference_lock = threading.Lock()


class Training(Fitting, Batches, Saving, GradientFlags, Layer):
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
    history = None  # the History of the last fit (see fit), as Keras' model.history

    def get_layer(self, name=None, index=None):
        """The layer named `name`, or `layers[index]`, as Keras' get_layer: ValueError where there
        is none, or where both or neither are given."""
        if (name is None) == (index is None):
            raise ValueError(f"give get_layer a layer name or a layer index, one of them; got name={name!r}, "
                             f"index={index!r}")
        if index is not None:
            count = len(self.layers)
            if count == 0:
                raise ValueError(f"no layer at index {index!r}: the model has no layers")
            return self.layers[check_int(index, "index", -count, count - 1)]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"no layer named {name!r}; the model's layers are {[layer.name for layer in self.layers]}")

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
        """The weight penalties (kernel_ and bias_regularizer) of the layers whose weights this model trains,
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
    def train_on_batch(self, x, y, sample_weight=None, class_weight=None, *, return_dict=False):
        """One training step on the batch (x, y), as one batch of `fit` without shuffling.

        sample_weight (n,) and class_weight {class: weight} weigh the samples' losses as fit's do.

        Returns the loss and metrics before the step, as `evaluate` does. The step is not taken
        where the input batch or the loss is NaN or infinite, or a gradient is, or so large that
        its square leaves float range (an optimizer's second-moment slot would): NonFiniteError
        (for the input batch, a ValueError), the weights and optimizer state as they were,
        BatchNormalization's moving statistics put back. (fit copies the state once an epoch and
        puts it back where the epoch ends non-finite; a copy per call would cost a small model a
        fifth of its step, the gradients' check 3% of the course MLP's. An update that overflows
        from finite gradients, with a learning rate near float range, is not caught here.)
        return_dict is keyword-only.
        """
        x, y = self._check_xy(x, y)
        y = with_weights(self, y, x.shape[0], sample_weight, class_weight)
        self._attach_optimizer()
        self._warn_if_untrainable()
        with statistics_kept(self), self._blas_policy(), self._training_to_logits():
            try:
                logs = self._train_step(self._as_batch(x), y, check_gradients=True)
                check_finite_statistics(self)
            except ValueError as exc:
                raise step_refused(exc) from exc
            self.optimizer.step()
        return logs if return_dict else self._result(logs)

    def test_on_batch(self, x, y, sample_weight=None, *, return_dict=False):
        """The loss (and metrics) on the batch (x, y), as `evaluate` on it (sample_weight too); no
        weight changes."""
        x, y = self._check_xy(x, y)
        y = with_weights(self, y, x.shape[0], sample_weight)
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
        self._unfinished = None  # a new optimizer, loss and metrics: fit does not go on with an interrupted epoch

    def __getstate__(self):
        # A copy (deepcopy, pickle) leaves out what fit keeps of an iterator (a generator cannot be
        # copied): the batches held for the next fit on one, and an epoch over one Ctrl-C stopped.
        state = super().__getstate__()
        unfinished = state.get("_unfinished")
        if state.get("_held_batch") is not None or getattr(unfinished, "iterator", None) is not None:
            state = {key: value for key, value in state.items() if key != "_held_batch"}
            if getattr(unfinished, "iterator", None) is not None:
                state["_unfinished"] = None
        return state

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
                logs = add_to_means(totals, self._evaluate(x[first:stop], y[first:stop], batch_size), stop - first,
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
                logs = add_to_means(totals, self._batch_logs(outputs, yb, self._batch_losses(outputs, yb, record)),
                                     len(xb), first + len(xb))
        return logs

    def evaluate(self, x, y, batch_size=32, verbose=0, sample_weight=None, *, callbacks=None, return_dict=False):
        """The loss and metrics over (x, y).

        As Keras: the loss alone, or the list of values `metrics_names` names. Sequential, and a
        Model of one output given as a tensor: the loss, or [loss, accuracy] when compiled with
        accuracy. A Model of outputs given as a list or a dict: [total loss, each output's loss,
        each output's accuracy where compiled with it]. With return_dict, the same values by name
        ({"loss": ..., "<output>_loss": ..., "<output>_accuracy": ...}).

        The arguments come in Keras 3's order (x, y, batch_size, verbose, sample_weight); Keras'
        next one, steps, is not supported: callbacks and return_dict are keyword-only.
        sample_weight: one weight a sample, (n,), or for a Model of several outputs a dict or list
        of one array per output; the loss is then Keras 3's weighted one, each sample's loss times
        its weight, summed and divided by the sample count (metrics stay unweighted, as Keras 3's
        `metrics`).
        batch_size None is 32, as Keras. verbose is taken as Keras takes it; evaluation prints
        nothing. callbacks: their on_test_begin, on_test_batch_begin / on_test_batch_end and
        on_test_end are called, as Keras calls them.
        """
        batch_size = check_batch_size(batch_size)
        verbose = check_verbose(verbose)
        x, y = self._check_xy(x, y)
        y = with_weights(self, y, x.shape[0], sample_weight)
        callbacks = CallbackList(callbacks, self, {"verbose": verbose, "epochs": 1, "steps": -(-x.shape[0] // batch_size)})
        with self._blas_policy():
            logs = self._test(x, y, batch_size, callbacks)
        return logs if return_dict else self._result(logs)
