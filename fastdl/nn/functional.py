"""The functional API: Input(shape), layers called on symbolic tensors, and a multi-output Model.

A clock network, an hour head and a minute head on one trunk::

    x = Input((64,))
    trunk = Dense(32, activation="relu")(x)
    hour = Dense(12, activation="softmax", name="hour")(trunk)
    minute = Dense(1, name="minute")(trunk)
    model = Model(x, {"hour": hour, "minute": minute}, seed=0)
    model.compile("adam", loss={"hour": "sparse_categorical_crossentropy", "minute": "mse"})
    history = model.fit(x_train, {"hour": y_hour, "minute": y_minute}, epochs=5)

The Model shares `fit`, `evaluate` and `predict` (epochs, validation, callbacks, History, resuming)
with Sequential (fastdl.nn.training); what differs is what they call per batch: one loss per named
output, weighted and summed, and a backward pass over the graph that adds up the gradients of a
tensor feeding several layers.
"""

import copy

import numpy as np

from fastdl import _device
from fastdl.nn import layers as _layers
from fastdl.nn.losses import check_host_targets, get_loss
from fastdl.nn.model import (build_in_model, build_undo, check_loss_weight, format_shape,
                             init_model_basics, output_loss, per_output, record_input_logits,
                             refuse_metrics_as_loss_weights, summary_table, targets_name, targets_said,
                             weighted)
from fastdl.nn.module import Layer, fused_layer
from fastdl.nn.naming import take_name, unnamed
from fastdl.nn.optimizers import get_optimizer
from fastdl.nn.metrics import check_metrics, metric_logs
from fastdl.nn.training import Training
from fastdl.nn.weights import unweighted


class SymbolicTensor:
    """The (not yet computed) output of a layer in a functional graph.

    Attributes
    ----------
    shape : tuple of int
        The shape of one sample (without the batch axis).
    """

    def __init__(self, shape, layer=None, parents=(), multi=False):
        self.shape = tuple(shape)
        self._layer = layer
        self._parents = tuple(parents)
        # True where the layer was called on a list of tensors (it takes and returns lists).
        self._multi = multi

    @property
    def _parent(self):
        return self._parents[0] if self._parents else None

    def _call_layer(self, layer, inputs=None):
        """Record `layer(self)` (or `layer([self, ...])`): check the shapes now, build the layer when the Model is made."""
        if not isinstance(layer, Layer):
            raise TypeError(f"only Layer objects can be called on a symbolic tensor, got {type(layer).__name__}")
        if getattr(layer, "_symbolic_output", None) is not None:
            raise ValueError(f"layer {layer.name or type(layer).__name__} is already called on a tensor; "
                             "each layer is applied once (shared weights are not supported)")
        multi = inputs is not None
        parents = inputs if multi else (self,)
        shape = [p.shape for p in parents] if multi else self.shape
        if layer.built:
            if _as_shapes(layer.input_shape) != _as_shapes(shape):
                raise ValueError(f"layer {layer.name or type(layer).__name__} was built for inputs {layer.input_shape}, "
                                 f"not {shape}")
        out_shape = tuple(layer.compute_output_shape(shape))
        out = SymbolicTensor(out_shape, layer, parents, multi)
        layer._symbolic_output = out
        return out

    def __repr__(self):
        source = "Input" if self._layer is None else (self._layer.name or type(self._layer).__name__)
        return f"SymbolicTensor(shape=(None, {', '.join(map(str, self.shape))}), from={source})"


def _as_shapes(shape):
    """A shape or a list of shapes as nested tuples, for comparing."""
    if shape and isinstance(shape[0], (tuple, list)):
        return tuple(tuple(s) for s in shape)
    return tuple(shape)


class Input(SymbolicTensor, _layers.Input):
    """A model's input: `Input(shape)` is a symbolic tensor to call layers on.

    It also heads a Sequential model, as `nn.layers.Input` does.

    Parameters
    ----------
    shape : int or tuple of int
        The shape of one sample, without the batch axis.
    name : str, default "input", keyword only
        (Keras 3's second positional argument is batch_size, which fastdl does not take.)
    """

    def __init__(self, shape, *, name="input"):
        _layers.Input.__init__(self, shape)
        SymbolicTensor.__init__(self, self.shape)
        self.name = name

    def __repr__(self):
        return f"Input(shape={self.shape}, name={self.name!r})"


class InputLayer(Layer):
    """A functional Model's input as the first of its layers, as Keras lists it (model.layers[0]
    is the InputLayer, so a loop over model.layers[:k] reaches the layers Keras' does): no
    weights; it hands its input on."""

    gemm_only = True
    runs_on_device = True

    def __init__(self, tensor):
        super().__init__(input_shape=tensor.shape, name=tensor.name)
        self.output_shape = tensor.shape
        self.built = True

    def forward(self, x, training=False):
        return x

    def backward(self, dout):
        return dout


class _Targets:
    """Per-output target arrays that index together, so the shared fit loop can batch and split them."""

    def __init__(self, arrays):
        self.arrays = dict(arrays)

    def __getitem__(self, index):
        return _Targets({name: y[index] for name, y in self.arrays.items()})


def _flat(array):
    return _device.reshaped(array, (array.size,))


def _sum(a, b, out):
    """out = a + b for two gradients of one tensor (out may be a), on the host or the device."""
    if not _device.is_device(a):
        return np.add(a, b, out=out)
    from fastdl.ops._nn_on_device import arrays

    arrays().add(_flat(a), _flat(b), _flat(out))
    return out


class Model(Training):
    """A graph of layers from one Input to one or several named outputs, as Keras' functional Model.

    Parameters
    ----------
    inputs : Input
    outputs : SymbolicTensor, list of SymbolicTensor, or dict {name: SymbolicTensor}
        A list names each output after the layer that makes it.
    seed : int, optional
        Seeds one generator for initialisation, shuffling and dropout masks.
    dtype : {"float32", "float64"}, default "float32"
    backend : str, optional
        Backend of every layer's ops (None: the process default).
    name : str, optional
        Default "model"; a model inside another takes "model_1", ... where that is taken.
    """

    def __init__(self, inputs, outputs, seed=None, dtype="float32", backend=None, name=None):
        init_model_basics(self, name, dtype, backend, seed)
        self.optimizer = None
        self.loss = None
        self.loss_weights = None
        self.metrics = {}
        self.epochs_trained = 0
        if isinstance(inputs, (list, tuple)):
            if len(inputs) != 1:
                raise ValueError(f"Model takes one Input, got {len(inputs)}")
            inputs = inputs[0]
        if not isinstance(inputs, Input):
            raise TypeError(f"inputs must be an Input(shape), got {type(inputs).__name__}")
        self.input = inputs
        self.input_shape = inputs.shape
        # predict and __call__ give the outputs back in the form they were given, as Keras does
        # (a list of one as one tensor, as Keras 3 unpacks it); the logs name each output's loss
        # and metrics where there are several.
        tensors, self._given_as = self._output_tensors(outputs)
        if self._given_as == "list" and len(tensors) == 1:
            self._given_as = "tensor"
        self._prefixed = len(tensors) > 1
        self._nodes = self._walk(tensors)
        self._name_layers()
        # Keras walks a dict's outputs in the order of their names.
        self.layers = [InputLayer(inputs), *self._keras_order([outputs[key] for key in sorted(outputs, key=str)]
                                                              if isinstance(outputs, dict) else tensors)]
        if not isinstance(outputs, dict):
            outputs = {tensor._layer.name: tensor for tensor in tensors}
        for key in outputs:
            if not isinstance(key, str) or not key:
                raise ValueError(f"output names must be non-empty strings, got {key!r}")
        self.outputs = dict(outputs)
        self.output_names = list(self.outputs)
        self.output_shape = {name: tensor.shape for name, tensor in self.outputs.items()}
        undo = build_undo(self)
        try:
            self._build()
        except BaseException:
            undo()  # a refused model leaves no layer built for it
            raise

    # -- building -------------------------------------------------------------------------------
    def _output_tensors(self, outputs):
        """(the output tensors, the form they were given in: "dict", "list" or "tensor")."""
        if isinstance(outputs, dict):
            tensors, given_as = list(outputs.values()), "dict"
        elif isinstance(outputs, (list, tuple)):
            tensors, given_as = list(outputs), "list"
        else:
            tensors, given_as = [outputs], "tensor"
        if not tensors:
            raise ValueError("the model has no outputs")
        for tensor in tensors:
            if not isinstance(tensor, SymbolicTensor) or tensor._layer is None:
                raise TypeError(f"outputs must be tensors made by calling layers, got {tensor!r}")
        if len({id(t) for t in tensors}) != len(tensors):
            raise ValueError("the same tensor is given as two outputs")
        return tensors, given_as

    def _walk(self, tensors):
        """The layer outputs the model's outputs depend on, each after the tensors it is computed from."""
        order, seen = [], set()
        # Depth first, without recursion: (tensor, parents already pushed).
        stack = [(tensor, False) for tensor in reversed(tensors)]
        while stack:
            tensor, expanded = stack.pop()
            if tensor._layer is None:
                if tensor is not self.input:
                    raise ValueError(f"an output is computed from {tensor!r}, not from this model's input")
                continue
            if id(tensor) in seen:
                continue
            if expanded:
                seen.add(id(tensor))
                order.append(tensor)
                continue
            stack.append((tensor, True))
            stack.extend((parent, False) for parent in reversed(tensor._parents) if id(parent) not in seen)
        return order

    def _keras_order(self, tensors):
        """The layers as Keras lists them (model.layers, get_weights, summary): the farthest from the
        outputs first (by their longest path to one), layers as far from them in the order a walk
        back from the outputs, parents in order, first reaches them."""
        reached = {}
        stack = list(reversed(tensors))
        while stack:
            tensor = stack.pop()
            if tensor._layer is not None and id(tensor) not in reached:
                reached[id(tensor)] = len(reached)
                stack.extend(reversed(tensor._parents))
        depth = {}
        for node in reversed(self._nodes):  # every node after the nodes computed from it
            for parent in node._parents:
                depth[id(parent)] = max(depth.get(id(parent), 0), depth.get(id(node), 0) + 1)
        nodes = sorted(self._nodes, key=lambda node: (-depth.get(id(node), 0), reached[id(node)]))
        return [node._layer for node in nodes]

    def _name_layers(self):
        # An unnamed layer takes a name that no layer named already (one shared with another model,
        # say) has, wherever that layer comes in the graph; in the order they compute.
        layers = [node._layer for node in self._nodes]
        named = {layer.name for layer in layers if not unnamed(layer)}
        taken = set()
        for layer in layers:
            take_name(layer, taken, named, self)
            taken.add(layer.name)

    def _build(self):
        self._check_each_layer_once()
        for node in self._nodes:
            layer = node._layer
            shape = [p.shape for p in node._parents] if node._multi else node._parent.shape
            build_in_model(self, layer, shape)
            if layer.backend is None:
                layer.backend = self.backend
        consumers = {}
        for node in self._nodes:
            for parent in node._parents:
                consumers[id(parent)] = consumers.get(id(parent), 0) + 1
        self._consumers = consumers
        # A convolution whose only use is a max pooling it fuses with (and which is no output)
        # runs as one step with it, as in Sequential: {id(pooling node): convolution node}.
        outputs = {id(tensor) for tensor in self.outputs.values()}
        self._pooled_convs = {
            id(node): node._parent for node in self._nodes
            if not node._multi and node._parent is not self.input and consumers[id(node._parent)] == 1
            and id(node._parent) not in outputs and not node._parent._multi
            and getattr(node._parent._layer, "fuses_with", lambda _: False)(node._layer)}
        self._skipped = {id(conv) for conv in self._pooled_convs.values()}
        # No gradient has to flow back into a layer with no parameters anywhere before it.
        self._default_gradient_flags()
        self.built = True
        self._place_parameters()

    def compute_output_shape(self, input_shape):
        """The one output's shape, where this model is a layer of another (see Training)."""
        if len(self.outputs) != 1:
            raise ValueError(f"model {self.name!r} has outputs {self.output_names}; only a model with one "
                             "output can be a layer of another model")
        if tuple(input_shape) != tuple(self.input_shape):
            raise ValueError(f"model {self.name!r} takes inputs of shape {self.input_shape}, not {tuple(input_shape)}")
        return next(iter(self.output_shape.values()))

    def forward(self, x, training=False):
        """The one output for a batch x, where this model is a layer of another."""
        return next(iter(self._forward(x, training).values()))

    def logits_layer(self):
        """Where this model (of one output) is a layer of another: its output layer's, where no
        other layer reads the output (module.fused_layer)."""
        tensor, = self.outputs.values()
        return None if id(tensor) in self._consumers else tensor._layer.logits_layer()

    def backward_pre(self, dpre):
        """Where this model is a layer of another whose loss fuses with its output: the backward
        pass from the gradient at its output layer's logits."""
        tensor, = self.outputs.values()
        return self._backward_graph({id(tensor): dpre}, fused_nodes={id(tensor)})

    def backward(self, dout):
        """Where this model is a layer of another (see Training): the output's gradient comes
        from the outer model, so no loss of this model's own is fused into it, whether this
        model was compiled or not."""
        return self._backward_graph({id(next(iter(self.outputs.values()))): dout}, fused_nodes=())

    def summary(self, print_fn=print):
        """Keras-style table of layers, output shapes, parameter counts and inputs; returns it as a string."""
        rows = [(f"{self.input.name} (InputLayer)", format_shape(self.input.shape), "0", "")]
        node_of = {id(node._layer): node for node in self._nodes}
        for node in (node_of[id(layer)] for layer in self.layers[1:]):  # in Keras' order
            source = ", ".join(self.input.name if parent is self.input else parent._layer.name
                               for parent in node._parents)
            rows.append((f"{node._layer.name} ({type(node._layer).__name__})", format_shape(node.shape),
                         f"{node._layer.count_params():,}", source))
        return summary_table(self.name, [("Layer (type)", 28), ("Output Shape", 22), ("Param #", 12), ("Connected to", 0)],
                             rows, self._param_totals() + [f"Outputs: {', '.join(self.output_names)}"], print_fn)

    # -- compile ---------------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss="sparse_categorical_crossentropy", loss_weights=None, metrics=None):
        """Choose the optimizer, one loss per output, their weights, and per-output metrics.

        The arguments come in Keras 3's order, (optimizer, loss, loss_weights, metrics).

        Parameters
        ----------
        optimizer : str (fastdl.nn.optimizers.OPTIMIZERS: "sgd", "adam", ...) or Optimizer, default "rmsprop"
            A name takes the optimizer's defaults (see SGD, RMSprop, Adam, Adagrad, ...); an Optimizer trains
            one model only.
        loss : str, Loss, dict {output name: str or Loss}, or list in output order
            One loss for every output, or one per output (every output needs one); the names are
            Sequential.compile's. Default "sparse_categorical_crossentropy".
        loss_weights : float, dict {output name: float} or list in output order, optional
            The training loss is the weighted sum of the outputs' losses (weights default to 1;
            one number weighs every output).
        metrics : list, or dict {output name: list}, optional
            Sequential.compile's metrics; a list applies to every output. With several outputs,
            each is logged with its output's name first ("hour_mae").

        Raises
        ------
        TypeError
            Where loss_weights holds metric names, compile(opt, loss, ["accuracy"]) in tf.keras 2's
            order: pass metrics=["accuracy"] by name.

        Notes
        -----
        All is checked before anything is set: a call that raises leaves the model as it was.
        """
        refuse_metrics_as_loss_weights(loss_weights)
        losses = per_output(loss, self.output_names, "loss", None, lists_per_output=True)
        missing = [name for name, value in losses.items() if value is None]
        if missing:
            raise ValueError(f"no loss for outputs {missing}; give loss a dict with every output of {self.output_names}")
        used = set()
        for name, value in losses.items():
            value = get_loss(value)
            # A Loss keeps the batch it last saw for its backward pass: one instance per output.
            if id(value) in used:
                value = copy.copy(value)
            used.add(id(value))
            losses[name] = value
        weights = per_output(loss_weights, self.output_names, "loss_weights", 1.0, lists_per_output=True)
        weights = {name: check_loss_weight(weight, f"loss_weights[{name!r}]") for name, weight in weights.items()}
        metrics = {name: check_metrics(names, losses[name]) for name, names in
                   per_output(metrics, self.output_names, "metrics", []).items()}
        optimizer = get_optimizer(optimizer)
        optimizer.check_free_for(self)
        for value in losses.values():
            value.backend = self.backend
        self.loss = losses
        self.loss_weights = weights
        self.metrics = metrics
        # An output read by no other layer whose activation fuses with its loss (module.fused_layer)
        # takes the loss's gradient at its logits: {output name: the layer that keeps them}.
        fused = {name: fused_layer(tensor._layer, self.loss[name]) for name, tensor in self.outputs.items()
                 if id(tensor) not in self._consumers}
        self._fused_outputs = {name: layer for name, layer in fused.items() if layer is not None}
        self._fused_nodes = {id(self.outputs[name]) for name in self._fused_outputs}
        self.optimizer = optimizer
        self._take_optimizer(optimizer, built=True)

    # -- checks ----------------------------------------------------------------------------------
    def _check_xy(self, x, y, name="x"):
        x = self._check_x(x, name)
        if self.loss is None:
            raise RuntimeError("call compile(optimizer, loss) before fit or evaluate")
        check_host_targets(y, targets_name(name))
        if not isinstance(y, dict):
            # Targets in output order; for one output, [y] too, as Keras takes it.
            in_order = isinstance(y, (list, tuple)) and len(y) == len(self.output_names) and (
                len(y) > 1 or np.ndim(y[0]) > 0 and len(y[0]) == x.shape[0])
            if in_order:
                y = dict(zip(self.output_names, y))
            elif len(self.output_names) == 1:
                y = {self.output_names[0]: y}
            else:
                raise ValueError(f"the model has outputs {self.output_names}: give the targets as a dict "
                                 "{output name: array}")
        unknown = sorted(set(y) - set(self.output_names), key=str)
        if unknown:
            raise ValueError(f"targets for unknown outputs {unknown}; the model's outputs are {self.output_names}")
        missing = [key for key in self.output_names if key not in y]
        if missing:
            raise ValueError(f"no targets for outputs {missing}; give y a dict with every output of {self.output_names}")
        checked = {}
        for key in self.output_names:
            target = np.asarray(check_host_targets(y[key], f"{targets_name(name)}[{key!r}]"))
            if target.ndim == 0 or target.shape[0] != x.shape[0]:
                raise ValueError(f"{name} has {x.shape[0]} samples but the targets of output {key!r} have "
                                 f"{target.shape[0] if target.ndim else 0}")
            try:
                checked[key] = self.loss[key].check_targets(target, x.shape[0], self.output_shape[key])
            except ValueError as exc:
                raise ValueError(f"{targets_said(name)}output {key!r}: {exc}") from exc
        return x, _Targets(checked)

    # -- passes ----------------------------------------------------------------------------------
    def _forward(self, x, training):
        for layer in self.layers:
            layer.clear_losses()
        values = {id(self.input): x}
        for node in self._nodes:
            conv = self._pooled_convs.get(id(node))
            if conv is not None:
                values[id(node)] = conv._layer.forward_pooled(values[id(conv._parent)], node._layer, training)
            elif node._multi:
                values[id(node)] = node._layer.forward([values[id(p)] for p in node._parents], training)
            elif id(node) not in self._skipped:  # a skipped convolution runs with its pooling
                if not training:
                    record_input_logits(node._layer, values[id(node._parent)])
                values[id(node)] = node._layer.forward(values[id(node._parent)], training)
        return {name: values[id(tensor)] for name, tensor in self.outputs.items()}

    def _batch_losses(self, outputs, targets, record=None):
        """{"loss": weighted total plus weight penalties, "<output>_loss": each output's own loss}.
        record: an evaluation pass's InferencePass (its logits and losses), None in training."""
        logs = {}
        total = 0.0
        targets, weights = unweighted(targets)
        for name, loss in self.loss.items():
            value = output_loss(loss, outputs[name], targets.arrays[name], self.output_shape[name],
                                self.outputs[name]._layer, self._fused_outputs.get(name), record,
                                None if weights is None else weights[name])
            if self._prefixed:  # Keras logs one output's loss as "loss" alone
                logs[f"{name}_loss"] = value
            total += self.loss_weights[name] * value
        total += self.regularization_loss() + sum(self.losses)
        return {"loss": total, **logs}

    def _backward_from_loss(self):
        """Fill every parameter's gradient from the losses' gradients."""
        grads = {}
        for name, tensor in self.outputs.items():
            loss = self.loss[name]
            dout = loss.backward_logits() if name in self._fused_outputs else loss.backward()
            grads[id(tensor)] = weighted(self, dout, self.loss_weights[name], name)
        self._backward_graph(grads, self._fused_nodes)

    def _backward_graph(self, grads, fused_nodes):
        """Backpropagate {id(tensor): gradient} through the graph; returns the gradient at the input (None
        where nothing needs it). A tensor feeding several layers gets the sum of their gradients.

        fused_nodes: ids of the outputs whose gradient is already at their logits (a fused loss's)."""
        input_grad = None
        for node in reversed(self._nodes):
            dout = grads.pop(id(node), None)
            if dout is None:  # a convolution done with its pooling, or nothing learns before it
                continue
            conv = self._pooled_convs.get(id(node))
            if conv is not None:
                pairs = [(conv._parent, conv._layer.backward_pooled(dout, node._layer))]
            else:
                layer = node._layer
                dx = layer.backward_pre(dout) if id(node) in fused_nodes else layer.backward(dout)
                pairs = zip(node._parents, dx if node._multi else [dx])
            for parent, dx in pairs:
                if dx is None:
                    continue
                if parent is self.input:
                    input_grad = dx if input_grad is None else _sum(
                        input_grad, dx, self._buffer(("summed", id(parent)), dx.shape, dx.dtype))
                    continue
                key = id(parent)
                # Reused from step to step: the sum is spent within this backward pass.
                grads[key] = dx if key not in grads else _sum(grads[key], dx,
                                                              self._buffer(("summed", key), dx.shape, dx.dtype))
        return input_grad

    def _calls(self):
        return [(id(node), node._layer, [None if parent is self.input else id(parent) for parent in node._parents])
                for node in self._nodes]

    def _batch_logs(self, outputs, targets, losses):
        logs = dict(losses)
        targets = unweighted(targets)[0]  # metrics unweighted, as Keras 3's
        for name, metrics in self.metrics.items():
            logs.update(metric_logs(metrics, outputs[name], targets.arrays[name], self.loss[name],
                                    f"{name}_" if self._prefixed else ""))
        return logs

    # -- public API ------------------------------------------------------------------------------
    def _as_given(self, by_name):
        """{output name: array} in the form the model's outputs were given: one array, a list in
        their order, or the dict."""
        if self._given_as == "dict":
            return by_name
        values = [by_name[name] for name in self.output_names]
        return values[0] if self._given_as == "tensor" else values

    def _log_names(self):
        if not self._prefixed:
            return ["loss", *self.metrics[self.output_names[0]]]
        # The outputs' losses in their order, then their metrics, output by output, each output's in
        # compile's order, as Keras 3 lists them (its per-output losses come after the metrics in
        # some versions, before in others).
        return ["loss", *(f"{name}_loss" for name in self.loss),
                *(f"{name}_{metric}" for name in self.output_names for metric in self.metrics[name])]

    def _output_layers(self):
        """{output name: (shape, the layer that makes it)}, for predict."""
        return {name: (shape, self.outputs[name]._layer) for name, shape in self.output_shape.items()}

    def _named_outputs(self, out):
        return out
