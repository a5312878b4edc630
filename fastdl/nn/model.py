"""Sequential: compile, fit, evaluate, predict, summary, save and load."""

import contextlib

import numpy as np

from fastdl import _device
from fastdl.nn.activations import Activation
from fastdl.nn.layers import Dense, Input, logits_of, record_logits
from fastdl.nn.losses import batch_targets, check_host_targets, get_loss
from fastdl.nn.module import (LOGIT_ACTIVATIONS, Layer, as_layer_input, build_layer, check_shape, fused_layer,
                              seeded_generator)
from fastdl.nn.naming import check_name, default_layer_name, take_name, unnamed
from fastdl.nn.optimizers import get_optimizer
from fastdl.nn.metrics import accuracy, check_metrics, metric_logs
from fastdl.nn.training import Training, check_output_shape
from fastdl.nn.weights import unweighted


def init_model_basics(model, name, dtype, backend, seed):
    """The name (None: the default, which a model it becomes a layer of may change, as a layer's),
    compute dtype, backend and random generator every model kind starts with, unbuilt."""
    model.name = default_layer_name(model, ()) if name is None else check_name(name)
    model.name_is_default = name is None
    model.dtype = np.dtype(dtype)
    if model.dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    model.backend = backend
    model.rng = seeded_generator(seed)
    model.seeded = seed is not None  # (unseeded, it draws from the generator of a model it becomes a layer of)
    model.input_shape = model.output_shape = None
    model.built = False
    model._buffers = {}


def targets_name(name):
    """The targets' name in messages, from the inputs' ("x" -> "y", "validation x" -> "validation y")."""
    return name[:-1] + "y" if name.endswith("x") else "y"


def targets_said(name):
    """What starts a message about the targets that go with inputs `name`: nothing for the ones
    trained on ("x"), "validation y: " for fit's validation_data (so a user checks the right array)."""
    return "" if name == "x" else f"{targets_name(name)}: "


def per_output(value, names, what, default, lists_per_output=False):
    """{output name: value} from one value for all, a dict keyed by output name, or (with
    lists_per_output) a list in output order; else a list is one value for all (metrics)."""
    if value is None:
        return {name: default for name in names}
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(names), key=str)
        if unknown:
            raise ValueError(f"{what} names unknown outputs {unknown}; the model's outputs are {names}")
        return {name: value.get(name, default) for name in names}
    if isinstance(value, (list, tuple)) and lists_per_output:
        if len(value) != len(names):
            raise ValueError(f"{what} has {len(value)} entries for {len(names)} outputs {names}")
        return dict(zip(names, value))
    return {name: value for name in names}


def check_loss_weight(weight, name):
    """A loss weight as a float: a finite number >= 0, else a ValueError naming it."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float, np.number)) or not np.isfinite(weight) \
            or weight < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {weight!r}")
    return float(weight)


def refuse_metrics_as_loss_weights(loss_weights):
    """TypeError where compile's loss_weights holds metric names: Keras 3's third argument is
    loss_weights, where tf.keras 2 (and fastdl's Sequential before) took metrics."""

    def names(value):  # (an empty list too: no model has zero outputs to weigh)
        return isinstance(value, str) or (isinstance(value, (list, tuple))
                                          and all(isinstance(item, str) for item in value))

    if names(loss_weights) or (isinstance(loss_weights, dict) and loss_weights
                               and all(names(value) for value in loss_weights.values())):
        raise TypeError(f"compile's third argument is loss_weights, as in Keras 3 (compile(optimizer, loss, "
                        f"loss_weights, metrics)), got metric names {loss_weights!r}: pass them by name, "
                        f"metrics={loss_weights!r}")


def weighted(model, dout, weight, key):
    """A loss's gradient dout times its loss weight (dout itself for a weight of 1), in the
    model's buffer for `key`, reused from step to step; on the host or the device."""
    if weight == 1.0:
        return dout
    out = model._buffer(("weighted", key), dout.shape, dout.dtype)
    if not _device.is_device(dout):
        return np.multiply(dout, dout.dtype.type(weight), out=out)
    from fastdl.ops._nn_on_device import arrays

    arrays().scale(_device.reshaped(dout, (dout.size,)), dout.dtype.type(weight), _device.reshaped(out, (out.size,)))
    return out


def build_in_model(model, layer, shape):
    """Build a layer of `model` for inputs of `shape` (unless built already) with the model's
    generator and dtype; a model inside another computes in the same dtype (its weights are in
    its own), and draws from the outer model's generator unless it was given a seed of its own
    (as an unseeded Dropout does: an augmentation Sequential inside a model seeded is seeded)."""
    if isinstance(layer, Training) and not getattr(layer, "seeded", True) and layer.rng is not model.rng:
        share_generator(layer, model.rng)
    if not layer.built:
        build_layer(layer, shape, model.rng, model.dtype)
        if hasattr(layer, "rng") and layer.rng is None:
            layer.rng = model.rng
    if isinstance(layer, Training) and layer.dtype != model.dtype:
        raise ValueError(f"model {layer.name!r} computes in {layer.dtype}, the model {model.name!r} it is a layer "
                         f"of in {model.dtype}: give both the same dtype")


def share_generator(nested, rng):
    """Make the unseeded model `nested` draw from `rng`: it, and its layers and models that drew
    from its own generator."""
    own, nested.rng = nested.rng, rng
    for layer in nested.layers:
        if getattr(layer, "rng", None) is own:
            if isinstance(layer, Training):
                share_generator(layer, rng)
            else:
                layer.rng = rng


def record_input_logits(layer, x):
    """In an inference pass, an Activation layer's logits for a loss fused with it: its input
    (which the layer keeps on itself, where threads sharing the model may overwrite them)."""
    if isinstance(layer, Activation) and layer.activation in LOGIT_ACTIVATIONS:
        record_logits(layer, as_layer_input(x, layer.dtype, layer=type(layer).__name__))


def check_loss_rows(values, n_samples, expected, layer):
    """Raise ValueError unless the outputs (or logits) a loss is about to read hold n_samples
    samples of the model's output shape: a loss kernel indexes them with the targets' rows."""
    if tuple(values.shape) != (n_samples, *expected):
        raise ValueError(f"the loss of layer {layer.name!r} would read outputs of shape {tuple(values.shape)} for "
                         f"{n_samples} targets of outputs (batch, {', '.join(map(str, expected))}): a layer's "
                         "logits must come from this batch's forward pass (was the model trained by two threads "
                         "at once?)")


def output_loss(loss, out, y, shape, layer, source=None, record=None, sample_weight=None):
    """One output's loss on a batch: from the logits of `source` (the output's layer where its
    loss starts again from them: log-sum-exp, softplus), else from the output `out` of `layer`,
    after checking both hold a row per target. record: an evaluation pass's InferencePass (its
    logits and loss state), None in training. sample_weight: the batch's weights (n,) or None
    (then the loss is called as a loss of the user's is, without them)."""
    check_output_shape(out, len(y), shape, layer)
    y = batch_targets(y)
    if record is not None:
        loss = record.loss(loss)
    weighing = {} if sample_weight is None else {"sample_weight": sample_weight}
    if source is None:
        return loss.forward(out, y, **weighing)
    logits = logits_of(source, record)
    check_loss_rows(logits, len(y), shape, layer)
    return loss.forward_logits(logits, y, **weighing)


def format_shape(shape):
    """A layer's output shape as Keras prints it, the batch axis first: "(None, 28, 28, 1)"."""
    return "(None, " + ", ".join(map(str, shape)) + ")"


def summary_table(name, columns, rows, footer, print_fn):
    """summary()'s text: a title, the rows of cells under the columns' headers, then the footer
    lines; printed with print_fn unless it is None, and returned. columns: [(header, width)]; a
    column is as wide as given, or wider where a cell (a long layer name, say) needs it."""
    widths = [max(width, len(header) + 2, *(len(row[i]) + 2 for row in rows)) for i, (header, width) in enumerate(columns)]
    table = [(" " + "".join(f"{cell:<{w}}" for cell, w in zip(cells, widths))).rstrip()
             for cells in [[header for header, _ in columns], *rows]]
    rule = max(65, *map(len, table))
    lines = [f'Model: "{name}"', "_" * rule, table[0], "=" * rule, *table[1:], "=" * rule, *footer, "_" * rule]
    text = "\n".join(lines)
    if print_fn is not None:
        print_fn(text)
    return text


class Sequential(Training):
    """A stack of layers trained end to end, as Keras' Sequential.

    Parameters
    ----------
    layers : list of Layer (optionally headed by Input(shape)), optional
        None (as Keras' default): an empty model, to `add` layers to.
    seed : int, optional
        Seeds one generator for initialisation, shuffling and dropout masks.
    dtype : {"float32", "float64"}, default "float32"
    backend : str, optional
        Backend of every layer's ops (None: the process default).
    name : str, optional
        Default "sequential"; a model inside another takes "sequential_1", ... where that is taken.
    """

    def __init__(self, layers=None, seed=None, dtype="float32", backend=None, name=None):
        self.layers = []
        init_model_basics(self, name, dtype, backend, seed)
        self.optimizer = self.loss = None
        self.loss_weight = 1.0  # compile's loss_weights
        self.metrics = {}
        self.epochs_trained = 0
        layers = [] if layers is None else list(layers)
        # An unnamed layer takes a name that no named layer of the list (one shared with another
        # model, say) has, wherever that layer comes.
        named = {layer.name for layer in layers if isinstance(layer, Layer) and not unnamed(layer)}
        for layer in layers:
            self._add(layer, named)

    # -- building -------------------------------------------------------------------------------
    def add(self, layer):
        """Put `layer` on top of the stack (an Input(shape) may come first)."""
        self._add(layer, ())

    def _add(self, layer, reserved_names):
        if isinstance(layer, Input):
            if self.layers or self.input_shape is not None:
                raise ValueError("Input(shape) must come first")
            self.input_shape = layer.shape
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential takes Layer objects, got {type(layer).__name__}")
        if not self.layers and self.input_shape is None and layer.input_shape is not None:
            self.input_shape = layer.input_shape
        take_name(layer, {l.name for l in self.layers}, set(reserved_names), self)
        if layer.backend is None:
            layer.backend = self.backend
        self.layers.append(layer)
        self.built = False
        if self.optimizer is not None and self.optimizer.attached:
            # Compiled already: the optimizer takes the layer's parameters on at the next training step.
            self.__dict__.setdefault("_added_layers", []).append(layer)

    def build(self, input_shape=None, rng=None, dtype=None):
        """Create every layer's parameters for inputs of shape (batch, *input_shape).

        A model built as a layer of another keeps its own dtype (dtype, a Layer argument, is
        checked, not used) and, where it was given a seed, its own generator; unseeded, it draws
        from the other's (build_in_model).
        """
        if dtype is not None and np.dtype(dtype) != self.dtype:
            raise ValueError(f"model {self.name!r} computes in {self.dtype}, not {np.dtype(dtype)}: give both "
                             "models the same dtype")
        shape = self.input_shape if input_shape is None else check_shape(input_shape, "input_shape")
        if shape is None:
            raise ValueError("the input shape is unknown: give input_shape= to the first layer, Input(shape), or call fit first")
        if not self.layers:
            raise ValueError("the model has no layers")
        self._check_each_layer_once()
        undo = build_undo(self)
        try:
            self._build_layers(shape)
        except BaseException:
            undo()  # a refused shape leaves no layer (nor model inside this one) built for it
            raise

    def _build_layers(self, shape):
        """build's work: each layer built in turn for the shape the one before it gives."""
        input_shape = shape
        for layer in self.layers:
            if layer.built and layer.input_shape != shape:
                raise ValueError(f"layer {layer.name} was built for inputs {layer.input_shape}, not {shape}")
            build_in_model(self, layer, shape)
            # compute_output_shape: a functional Model keeps a dict of output shapes in output_shape.
            shape = tuple(layer.compute_output_shape(shape))
        self.input_shape, self.output_shape = input_shape, shape
        # Up to and including the first layer with parameters, no gradient has to flow back.
        self._default_gradient_flags()
        self._steps = _fused_steps(self.layers)
        self.built = True
        self._place_parameters()

    def summary(self, print_fn=print):
        """Keras-style table of layers, output shapes and parameter counts; returns it as a string."""
        if not self.built:
            self.build()
        rows = [(f"{layer.name} ({type(layer).__name__})", format_shape(layer.compute_output_shape(layer.input_shape)),
                 f"{layer.count_params():,}") for layer in self.layers]
        return summary_table(self.name, [("Layer (type)", 28), ("Output Shape", 26), ("Param #", 0)], rows,
                             self._param_totals(), print_fn)

    # -- compile and passes --------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss="sparse_categorical_crossentropy", loss_weights=None, metrics=None):
        """Choose the optimizer, the loss, its weight and the metrics, in Keras 3's order.

        Parameters
        ----------
        optimizer : str (fastdl.nn.optimizers.OPTIMIZERS: "sgd", "adam", ...) or Optimizer, default "rmsprop"
            A name takes the optimizer's defaults (see SGD, RMSprop, Adam, Adagrad, ...); an Optimizer trains
            one model only.
        loss : str or Loss, default "sparse_categorical_crossentropy"
            "sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy",
            "mse" ("mean_squared_error"), "mae" ("mean_absolute_error"), "huber", or a Loss (a
            function is refused: see Loss).
        loss_weights : float, or a list or dict {output name: float} of one, optional
            Scales the loss, and so its gradients, as a Model's weight of its one output does
            (the weight penalties and add_loss terms are added unscaled); default 1. A dict names
            the output after the last layer, as Keras 3.
        metrics : list of str or functions, optional
            "accuracy" ("acc"), "mae" ("mean_absolute_error"), "mse" ("mean_squared_error"),
            each logged under the name given, or a function metric(y_true, y_pred) of NumPy
            arrays returning each sample's value (or the batch's mean), logged under its name.

        Raises
        ------
        TypeError
            Where loss_weights holds metric names, compile(opt, loss, ["accuracy"]) in tf.keras 2's
            order: pass metrics=["accuracy"] by name.

        Notes
        -----
        All four are checked before any is set: a call that raises leaves the model as it was.
        """
        loss_weight = self._loss_weight(loss_weights)
        optimizer, loss = get_optimizer(optimizer), get_loss(loss)
        metrics = check_metrics(metrics, loss)
        optimizer.check_free_for(self)
        self.optimizer, self.loss, self.loss_weight, self.metrics = optimizer, loss, loss_weight, metrics
        self.loss.backend = self.backend
        self._added_layers = []
        self._take_optimizer(optimizer, built=self.input_shape is not None)

    def _loss_weight(self, loss_weights):
        """compile's loss_weights as the one weight of the loss: a number, or a list or a dict
        {output name: number} of one, as a Model of one output takes them (its output named after
        the last layer, as Keras 3 names a Sequential's)."""
        refuse_metrics_as_loss_weights(loss_weights)
        if loss_weights is None:
            return 1.0
        if not isinstance(loss_weights, (dict, list, tuple)):
            return check_loss_weight(loss_weights, "loss_weights")
        output = self.layers[-1].name if self.layers else "output"
        (weight,) = per_output(loss_weights, [output], "loss_weights", 1.0, lists_per_output=True).values()
        return check_loss_weight(weight, f"loss_weights[{output!r}]")

    def _fused(self):
        """Whether the loss starts from the last layer's logits (module.fused_layer)."""
        return fused_layer(self.layers[-1], self.loss) is not None

    def logits_layer(self):
        """Where this model is a layer of another: its last layer's (module.fused_layer)."""
        return self.layers[-1].logits_layer() if self.layers else None

    def backward_pre(self, dpre):
        """Where this model is a layer of another whose loss fuses with its output: the backward
        pass from the gradient at the logits of its last layer."""
        return self._backward(dpre, fused=True)

    @contextlib.contextmanager
    def _training_to_logits(self):
        """While fit trains with a fused softmax-cross-entropy loss, the last layer (a Dense one of
        several units) stops at its logits: the loss starts from them, and accuracy's argmax reads
        them as it would the probabilities, so the softmax would go unread (on the device, a launch
        a step). Where two probabilities round to the same float32, the logits still tell which
        class is the more likely. Any other metric ("mae", a function) reads the probabilities."""
        last = self.layers[-1]
        last.logits_suffice = self._fused() and isinstance(last, Dense) and last.activation == "softmax" \
            and last.units > 1 and all(metric is accuracy for metric in self.metrics.values())
        try:
            yield
        finally:
            last.logits_suffice = False

    def _forward(self, x, training):
        for layer in self.layers:
            layer.clear_losses()
        for step in self._steps:
            if isinstance(step, tuple):
                conv, pool = step
                x = conv.forward_pooled(x, pool, training)
            else:
                if not training:
                    record_input_logits(step, x)
                x = step.forward(x, training)
        return x

    def _backward(self, dout, fused=False):
        """Fill every parameter's gradient; returns the gradient at the input (None where not needed)."""
        # A fused loss starts from the last layer's logits (it is never a pooling layer).
        *steps, last = self._steps
        dx = last.backward_pre(dout) if fused else _step_backward(last, dout)
        for step in reversed(steps):
            if dx is None:  # the layers below have no parameters and need no gradient
                break
            dx = _step_backward(step, dx)
        return dx

    def backward(self, dout):
        """Where this model is a layer of another (see Training)."""
        return self._backward(dout)

    def _calls(self):
        return [(i, layer, [i - 1 if i else None]) for i, layer in enumerate(self.layers)]

    def compute_output_shape(self, input_shape):
        """The output shape, where this model is a layer of another (see Training)."""
        input_shape = tuple(input_shape)
        if self.input_shape is not None and input_shape != tuple(self.input_shape):
            raise ValueError(f"model {self.name!r} takes inputs of shape {tuple(self.input_shape)}, not {input_shape}")
        if not getattr(self, "built", False):
            self.build(input_shape)
        return self.output_shape

    def forward(self, x, training=False):
        """The output for a batch x, where this model is a layer of another."""
        return self._forward(x, training)

    def _batch_loss(self, out, y, record=None):
        """The loss of a batch plus the layers' weight penalties (as Keras, in training and evaluation).
        record: an evaluation pass's InferencePass (its logits and loss), None in training."""
        last = self.layers[-1]
        y, weights = unweighted(y)
        loss = output_loss(self.loss, out, y, self.output_shape, last, fused_layer(last, self.loss), record,
                           None if weights is None else weights["output"])
        return self.loss_weight * loss + self.regularization_loss() + sum(self.losses)

    def _batch_losses(self, out, y, record=None):
        return {"loss": self._batch_loss(out, y, record)}

    def _batch_logs(self, out, y, losses):
        """losses, and the metrics compiled (unweighted, as Keras 3's metrics)."""
        return {**losses, **metric_logs(self.metrics, out, unweighted(y)[0], self.loss)}

    def _backward_from_loss(self):
        """Fill every parameter's gradient from the loss's gradient."""
        fused = self._fused()
        dout = self.loss.backward_logits() if fused else self.loss.backward()
        self._backward(weighted(self, dout, self.loss_weight, "output"), fused)

    def _log_names(self):
        return ["loss", *self.metrics]

    def _check_xy(self, x, y, name="x"):
        x = self._check_x(x, name)
        if self.loss is None:
            raise RuntimeError("call compile(optimizer, loss) before fit or evaluate")
        y_arr = np.asarray(check_host_targets(y, targets_name(name)))
        if y_arr.ndim == 0 or y_arr.shape[0] != x.shape[0]:
            raise ValueError(f"{name} has {x.shape[0]} samples but y has {y_arr.shape[0] if y_arr.ndim else 0} targets")
        try:
            return x, self.loss.check_targets(y_arr, x.shape[0], self.output_shape)
        except ValueError as exc:
            if not targets_said(name):
                raise
            raise ValueError(f"{targets_said(name)}{exc}") from exc

    def _output_layers(self):
        """{output name: (shape, the layer that makes it)}: predict's one output."""
        return {"output": (self.output_shape, self.layers[-1])}

    def _named_outputs(self, out):
        return {"output": out}

    def _as_given(self, by_name):
        return by_name["output"]

# What building a layer or a model sets on it (the parameters stay, made afresh at the next build).
_BUILD_ATTRIBUTES = ("built", "input_shape", "output_shape", "dtype", "rng", "backend", "on_device", "_steps")


def build_undo(model):
    """A function that puts back what building `model` changes: the model's and its layers'
    build attributes, those of the models inside it not built yet (and of their layers), every
    such model's generator state (initialisation draws from it), and the optimizers' state (a
    refused load attaches one to the new parameters). Called where the build, or a load that
    built the model, is refused: else the layers built before the one that refused stay built
    for the refused shape, and the model refuses the right one after."""
    saved, generators, optimizers = [], [], []

    def keep(obj):
        saved.append((obj, {key: obj.__dict__[key] for key in _BUILD_ATTRIBUTES if key in obj.__dict__}))

    def walk(m):
        keep(m)
        generators.append((m.rng, m.rng.bit_generator.state))
        if getattr(m, "optimizer", None) is not None:
            optimizers.append((m.optimizer, dict(m.optimizer.__dict__)))
        for layer in m.layers:
            if isinstance(layer, Training) and not getattr(layer, "built", False):
                walk(layer)
            elif not layer.built:
                keep(layer)

    walk(model)

    def undo():
        for obj, attributes in saved:
            for key in _BUILD_ATTRIBUTES:
                if key in attributes:
                    obj.__dict__[key] = attributes[key]
                else:
                    obj.__dict__.pop(key, None)
        for generator, state in generators:
            generator.bit_generator.state = state
        for optimizer, attributes in optimizers:
            optimizer.__dict__.clear()
            optimizer.__dict__.update(attributes)

    return undo


def _fused_steps(layers):
    """The layers as the model runs them: a convolution directly followed by a max pooling it can
    fuse with (Conv2D.fuses_with) becomes one (conv, pool) step."""
    steps, i = [], 0
    while i < len(layers):
        layer = layers[i]
        following = layers[i + 1] if i + 1 < len(layers) else None
        if following is not None and hasattr(layer, "fuses_with") and layer.fuses_with(following):
            steps.append((layer, following))
            i += 2
        else:
            steps.append(layer)
            i += 1
    return steps


def _step_backward(step, dout):
    if isinstance(step, tuple):
        conv, pool = step
        return conv.backward_pooled(dout, pool)
    return step.backward(dout)
