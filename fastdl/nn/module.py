"""Parameter and its flat buffers, the Layer base class, and the checks layers share."""

import inspect
import math
import numbers

import numpy as np

from fastdl import _device
from fastdl._validation import check_int
# Re-exported: layers.py, functional.py and the tests import these from here.
from fastdl.nn.initializers import INITIALIZERS, get_initializer, glorot_uniform, he_normal  # noqa: F401
from fastdl.nn.naming import check_name, default_layer_name, snake_case, take_name, unnamed  # noqa: F401


class Parameter:
    """A trainable array and the gradient of the loss with respect to it.

    Attributes
    ----------
    value : ndarray
    grad : ndarray of value's shape
        Overwritten by the owning layer's backward pass (each parameter belongs to one layer, used
        once per step); an optimizer's `zero_grad()` zeroes it in place.
    flat : (values, grads, start, stop) or None
        Set once a model has placed its parameters (place_parameters): value and grad are views
        of the flat buffers values and grads at [start, start + size), and [start, stop) is this
        parameter's share of them, padding included. Assigning to value or grad then writes into
        the flat buffers, so an optimizer updating them still updates this parameter.
    """

    flat = None

    def __init__(self, value):
        self._value = value
        self._grad = _device.zeros(value.shape, value.dtype) if _device.is_device(value) else np.zeros_like(value)

    @property
    def value(self):
        return self._value

    @value.setter
    def value(self, new):
        self._value = self._assigned(self._value, new, "value")

    @property
    def grad(self):
        return self._grad

    @grad.setter
    def grad(self, new):
        self._grad = self._assigned(self._grad, new, "grad")

    def _assigned(self, current, new, name):
        if self.flat is None:  # the parameter's own copy, as a placed one copies into its buffer
            return new if _device.is_device(new) else np.array(new)
        if tuple(new.shape) != current.shape:
            raise ValueError(f"a placed parameter's {name} keeps its shape {current.shape}, got {tuple(new.shape)}")
        _device.assign(current, new)
        return current

    def __getstate__(self):
        # A placed parameter is saved as its place in the flat buffers, so that a copy (deepcopy,
        # pickle) is a view of the copied buffers again, not an array of its own that an
        # optimizer updating the buffers would never touch.
        if self.flat is None:
            return {"_value": self._value, "_grad": self._grad}
        return {"flat": self.flat, "shape": self._value.shape}

    def __setstate__(self, state):
        if "flat" not in state:
            self.__dict__.update(state)
            return
        self.place(*state["flat"], state["shape"])

    def place(self, values, grads, start, stop, shape):
        """Make value and grad (of `shape`) views of the flat buffers values and grads, from start;
        [start, stop) is the parameter's share of them (see flat). The old arrays are dropped."""
        end = start + math.prod(shape)
        self._value, self._grad = values[start:end].reshape(shape), grads[start:end].reshape(shape)
        self.flat = (values, grads, start, stop)

    @property
    def shape(self):
        return self._value.shape

    @property
    def size(self):
        return self._value.size

    def __repr__(self):
        return f"Parameter(shape={self._value.shape}, dtype={self._value.dtype})"


# Each parameter's share of the flat buffers starts at a multiple of this many values (64 bytes in
# float32): aligned rows for BLAS and the kernels. The padding between parameters holds zeros,
# value and gradient, which every optimizer's update leaves at zero.
ALIGN = 16


def place_parameters(parameters, on_device=False):
    """Make Parameters' values and gradients views of two flat buffers, on the CUDA device with
    `on_device`.

    Parameters already placed stay as they are (a model built into another keeps its own; on the
    host, parameters on the device stay there), and a parameter listed twice is placed once. In
    the flat buffers, in `parameters` order, an optimizer updates all of them in one pass; each
    parameter keeps `flat` (see Parameter).
    """
    moving, seen = [], set()
    for p in parameters:
        if on_device:
            placed = p.flat is not None and _device.is_device(p.flat[0])
        else:
            placed = p.flat is not None or _device.is_device(p.value)
        if not placed and id(p) not in seen:
            seen.add(id(p))
            moving.append(p)
    by_dtype = {}
    for p in moving:
        by_dtype.setdefault(np.dtype(p.value.dtype), []).append(p)
    for dtype, group in by_dtype.items():
        starts, stop = [], 0
        for p in group:
            starts.append(stop)
            stop += -(-p.size // ALIGN) * ALIGN
        values = np.zeros(stop, dtype)
        for p, start in zip(group, starts):
            values[start:start + p.size] = _device.host(p.value).reshape(-1)
        if on_device:
            values, grads = _device.to_device(values), _device.zeros(stop, dtype)
        else:
            grads = np.zeros(stop, dtype)
        for p, start, end in zip(group, starts, starts[1:] + [stop]):
            p.place(values, grads, start, end, p.shape)


def seeded_generator(seed):
    """np.random.default_rng(seed), with an error that names the seed (a model's, a Dropout's)."""
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"seed must be None, an int >= 0 or a numpy SeedSequence or Generator, got {seed!r}") from exc


def check_bool(value, name):
    """A flag given as True or False (NumPy's bools too): anything else, the string "False" or a
    Keras argument that lands on the flag by position, is a TypeError instead of its truth value."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_data_format(data_format, layer):
    """Keras' data_format argument of an image layer: None or "channels_last" (any case), the only
    layout fastdl has; "channels_first" or anything else is a ValueError."""
    if data_format is not None and not (isinstance(data_format, str) and data_format.lower() == "channels_last"):
        raise ValueError(f'{layer} data_format must be None or "channels_last", got {data_format!r}: '
                         "fastdl's images are channels-last, (batch, height, width, channels)")


def shares_input(out, x):
    """Whether the array `out` may share memory with `x` (an array, or a list or dict of them)."""
    inputs = x.values() if isinstance(x, dict) else x if isinstance(x, (list, tuple)) else [x]
    return any(_device.shares_memory(out, array) for array in inputs)


def as_layer_input(x, dtype, shape=None, layer="layer"):
    """x as the C-contiguous array of `dtype` a layer's kernels take (no copy when it already is;
    a device array is never copied: one of another dtype or layout is a TypeError).

    With `shape` (without the batch axis), a mismatch is a ValueError naming both shapes. Values
    are not checked here: the model checks each input batch and stops on a non-finite loss.
    """
    if _device.is_device(x):
        if np.dtype(x.dtype) != np.dtype(dtype):
            raise TypeError(f"{layer} computes in {np.dtype(dtype)}, got a device array of {np.dtype(x.dtype)}")
        _device.check_c_contiguous(x, f"{layer}'s input")
    else:
        x = np.ascontiguousarray(x, dtype=dtype)
    if shape is not None and x.shape[1:] != tuple(shape):
        raise ValueError(f"{layer} expects inputs of shape (batch, {', '.join(map(str, shape))}), got {x.shape}")
    return x


def check_shape(shape, name):
    """A sample's shape (no batch axis) as a tuple of ints >= 1, from an int or a sequence of them."""
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (shape,)
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__"):
        raise TypeError(f"{name} must be an int or a tuple of ints, got {shape!r}")
    return tuple(check_int(d, name, 1) for d in shape)


def build_layer(layer, input_shape, rng, dtype):
    """layer.build(input_shape, rng, dtype), and what Layer.build sets where a layer's own build
    did not call it (as Keras marks a layer built): else the next model would build it again,
    with fresh weights, while the first one's optimizer held the old ones."""
    layer.build(input_shape, rng, dtype)
    if not layer.built:
        Layer.build(layer, input_shape, rng, dtype)


# The activations whose layers keep their input, the logits, for a loss fused with them.
LOGIT_ACTIVATIONS = ("softmax", "sigmoid")


def fused_layer(layer, loss):
    """The layer whose logits `loss` starts from where it fuses with the output of `layer` (a
    model's output layer), else None.

    They fuse where the output is made by a layer of fastdl's that keeps its logits (`logits_layer`:
    the layer itself, or for a model used as a layer, its own output layer's) with the activation
    the loss fuses with (`loss.fused_activation`: softmax for the cross-entropies, sigmoid for
    binary cross-entropy). The loss then starts from the logits and the backward pass from its
    gradient there (`backward_pre`). A layer of the user's with an `activation` attribute of its
    own has no logits to start from.
    """
    source = layer.logits_layer()
    wanted = getattr(loss, "fused_activation", None)
    return source if wanted is not None and source is not None and source.activation == wanted else None


class _keras_list:  # noqa: N801 (used as a decorator, as property)
    """A read-only property for Keras' weight lists that a layer's own attribute of the same name
    replaces: a layer written before fastdl had these lists may keep its kernel as
    `self.weights = Parameter(...)` (a Parameter attribute like any other, saved and trained)."""

    def __init__(self, func):
        self.func, self.__doc__ = func, func.__doc__

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, layer, owner=None):
        if layer is None:
            return self
        own = layer.__dict__.get(self.name, self)
        return self.func(layer) if own is self else own

    def __set__(self, layer, value):
        layer.__dict__[self.name] = value


class Layer:
    """Base class: `forward(x, training) -> out` keeps what `backward(dout) -> dx` needs.

    A layer is built once its input shape (without the batch axis) is known; `build` creates the
    parameters. Parameters are the Parameter attributes of the layer, in the order they were set.

    Parameters
    ----------
    input_shape : int or tuple of int, optional, keyword-only
        The shape of one sample, without the batch axis: on the first layer of a Sequential, as
        Keras' input_shape (later layers get theirs from the layer before).
    name : str, optional, keyword-only
        Unique in a model, without "/"; by default the model that takes the layer in names it
        after its class, as Keras 3 ("dense", "dense_1", ...).
    backend : str, optional, keyword-only
        The backend of the layer's ops; None: its model's, else the process default.
    trainable : bool, default True, keyword-only
        False freezes the layer's weights for the models compiled after (gradients still flow
        through it to the layers before), as Keras' flag.

    Notes
    -----
    Every layer of fastdl.nn takes these keywords after its own arguments; the layers'
    docstrings list only their own.
    """

    # False where nothing needs the gradient with respect to the layer's input (a model's first
    # layers), so backward may return None instead of computing it.
    needs_input_grad = True
    # True where the layer's work is BLAS GEMMs or light elementwise passes: a model made only of
    # such layers lets BLAS thread its GEMMs (Training._blas_policy).
    gemm_only = False
    # Keras' flag (see the class docstring); __init__ sets each layer's own.
    trainable = True
    # Whether the layer has a cuda-backend path (arrays on the device, ops of
    # fastdl/ops/_nn_on_device.py).
    runs_on_device = False
    # Whether it takes that path now: a model on the cuda backend sets it on each of its layers.
    on_device = False
    # Whether a softmax or sigmoid activation of the layer keeps its logits (_logits) and the layer
    # takes the gradient at them (backward_pre), for a loss fused with it (fused_layer).
    keeps_logits = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # A layer written before fastdl had Keras' lists gave its saved state by a method of
        # this name (its own or a mixin's); it would now hide the list, and its state would be
        # saved by no one.
        if not isinstance(inspect.getattr_static(cls, "non_trainable_weights"), _keras_list):
            raise TypeError(f"{cls.__name__} defines a method non_trainable_weights: it is Keras' list of weight "
                            "arrays now; give the state to save with the weights as non_trainable_state(), "
                            "returning [(name, array)]")

    @property
    def needs_weight_grads(self):
        """False where the model being trained leaves the layer's parameters to no optimizer (a
        frozen layer), so backward may skip their gradients (fastdl/nn/gradient_flags.py sets it);
        until a model sets it, whether the layer is trainable."""
        return self.__dict__.get("_needs_weight_grads", self.trainable)

    @needs_weight_grads.setter
    def needs_weight_grads(self, value):
        self._needs_weight_grads = bool(value)

    def __init__(self, *, input_shape=None, name=None, backend=None, trainable=True):
        self.input_shape = None if input_shape is None else check_shape(input_shape, "input_shape")
        self.name = check_name(name)
        self.backend = backend
        self.trainable = bool(trainable)
        self.built = False
        self.output_shape = None
        self._buffers = {}

    def _buffer(self, key, shape, dtype=None):
        """An array kept for reuse across training steps (allocated again when its shape changes).

        Training steps write activations and gradients into these instead of allocating, so a step
        touches no fresh memory; only what the next step may overwrite goes here.
        """
        dtype = self.dtype if dtype is None else np.dtype(dtype)
        buffer = self._buffers.get(key)
        if buffer is None or buffer.shape != shape or buffer.dtype != dtype:
            buffer = self._buffers[key] = self._empty(shape, dtype)
        return buffer

    def _empty(self, shape, dtype=None):
        """A new array of the layer's dtype, on the device where the layer runs there."""
        dtype = self.dtype if dtype is None else np.dtype(dtype)
        return _device.empty(shape, dtype) if self.on_device else np.empty(shape, dtype)

    def build(self, input_shape, rng, dtype=np.float32):
        """Create the parameters for inputs of shape (batch, *input_shape)."""
        self.input_shape = tuple(input_shape)
        self.dtype = np.dtype(dtype)
        self.output_shape = tuple(self.compute_output_shape(self.input_shape))
        self.built = True

    def compute_output_shape(self, input_shape):
        return input_shape

    def logits_layer(self):
        """The layer whose logits (`_logits`) are those of this layer's output: the layer itself
        where it keeps them, else None (a model used as a layer answers for its output layer)."""
        return self if self.keeps_logits else None

    def parameters(self):
        """The layer's Parameters as (attribute name, Parameter) pairs."""
        return [(key, value) for key, value in vars(self).items() if isinstance(value, Parameter)]

    def trainable_parameters(self):
        """The Parameters an optimizer updates: all of them, or none when the layer is frozen."""
        return self.parameters() if self.trainable else []

    def non_trainable_state(self):
        """[(name, ndarray)] of the state that is saved with the weights but not trained
        (BatchNormalization's moving statistics); none here."""
        return []

    # Keras' lists of a layer's weights: the arrays themselves (writing into one changes the
    # layer), not copies as get_weights gives.
    @_keras_list
    def weights(self):
        """Every weight array, trainable and not, in Keras' order (get_weights' arrays, uncopied)."""
        return [p.value for _, p in self.parameters()] + [a for _, a in self.non_trainable_state()]

    @_keras_list
    def trainable_weights(self):
        """The weight arrays an optimizer updates (none while the layer is frozen), in weights' order."""
        return [p.value for _, p in self.trainable_parameters()]

    @_keras_list
    def non_trainable_weights(self):
        """The rest of weights, in its order (a frozen layer's parameters, the state not trained)."""
        trained = {id(p.value) for _, p in self.trainable_parameters()}
        return [a for a in self.weights if id(a) not in trained]

    def count_params(self):
        return sum(p.size for _, p in self.parameters())

    def regularization_loss(self):
        """The layer's weight penalty, added to the training loss (0 without a regulariser)."""
        return 0.0

    def add_loss(self, value):
        """Add a term to the loss of the batch that this forward pass computes (Keras' add_loss).

        Call it from `forward`; the model clears the list before each forward pass and adds its
        terms to the loss. fastdl has no automatic differentiation: the layer's `backward` adds
        the term's gradient to the gradient it returns (see Sampling's KL divergence).
        """
        if np.ndim(value) != 0:
            raise ValueError(f"add_loss takes one number, a term of the batch's loss, got an array of shape "
                             f"{np.shape(value)} (reduce it, e.g. to its mean over the batch)")
        self.__dict__.setdefault("_losses", []).append(float(value))

    @property
    def losses(self):
        """The terms that `add_loss` added during the last forward pass."""
        return list(self.__dict__.get("_losses", ()))

    def clear_losses(self):
        if self.__dict__.get("_losses"):
            self._losses = []

    # What forward keeps for backward. An inference pass's is dropped once a model's inference
    # calls end (Training.forget_pass), so that a model holds no batch between calls. (_logits
    # stays: an inference pass records its own, and a training step's are its loss's.)
    PASS_STATE = ("_x", "_out", "_code")

    def forget_pass(self):
        """Drop what the last forward pass kept for backward (after an inference pass: none follows)."""
        for name in self.PASS_STATE:
            if self.__dict__.get(name) is not None:
                setattr(self, name, None)

    def forward(self, x, training=False):
        raise NotImplementedError(f"{type(self).__name__} ({self.name}) gives no forward(x, training)")

    def backward(self, dout):
        raise NotImplementedError(
            f"{type(self).__name__} ({self.name}) gives no backward(dout): fastdl has no automatic "
            "differentiation, so a layer of your own returns there the gradient at its input from the "
            "gradient at its output, and fills its Parameters' .grad (README: 'A loss or a layer of your own')")

    def __call__(self, x, training=False):
        # A symbolic tensor (fastdl.nn.functional), or a list of them for a layer of several
        # inputs, records the call instead of computing it.
        if isinstance(x, (list, tuple)) and x and all(hasattr(t, "_call_layer") for t in x):
            return x[0]._call_layer(self, tuple(x))
        call_symbolic = getattr(x, "_call_layer", None)
        if call_symbolic is not None:
            return call_symbolic(self)
        if not self.built:
            self._build_for(x)
        self._check_side(x)
        self.clear_losses()  # losses: the terms of this call's forward pass
        out = self.forward(x, training)
        # A training pass writes into buffers that the next one reuses: the caller gets a copy. So
        # does an inference pass that gave x itself or a view of it (Dropout, Flatten, Reshape).
        return _device.copy(out) if training or shares_input(out, x) else out

    def _check_side(self, x):
        """Raise TypeError where x (an array, or a list for a layer of several inputs) is not where
        the layer computes: a layer answers on its own side, so NumPy in would give device arrays
        out, and a device array would be copied to the host, which fastdl never does by itself."""
        name = self.name or type(self).__name__
        for array in x if isinstance(x, (list, tuple)) else [x]:
            if not _device.is_device(array) and self.on_device:
                raise TypeError(f"layer {name!r} runs on the CUDA device (its model is on the cuda backend) but x is "
                                f"a host array ({type(array).__name__}): pass a device array (e.g. "
                                "numba.cuda.to_device(x)), or call the model, which takes NumPy in and gives NumPy out")
            if _device.is_device(array) and not self.on_device:
                raise TypeError(f"x is on the CUDA device but layer {name!r} is not: build its model with "
                                'backend="cuda", or pass x as a NumPy array')

    def __getstate__(self):
        # A copy (deepcopy, pickle) of a layer on the device would hold the device arrays' copies,
        # which numba cannot make (its simulator makes NumPy arrays of them): refused, saying how.
        if self.on_device:
            raise TypeError(f"{type(self).__name__} {self.name!r} is on the CUDA device and cannot be copied or "
                            "pickled: build another model alike and copy the weights over "
                            "(other.set_weights(model.get_weights())), or model.save(path) and other.load(path)")
        return self.__dict__

    def _build_for(self, x):
        """Build the layer for arrays x (one, or a list for a layer of several inputs) that it is
        first called on outside a model, as Keras does: in x's float dtype (else float32), its
        weights drawn from a fresh generator (build(input_shape, rng) seeds them)."""
        arrays = list(x) if isinstance(x, (list, tuple)) else [x]
        if any(_device.is_device(a) for a in arrays):
            raise ValueError(f"layer {self.name or type(self).__name__} is not built: build it in a model on the "
                             'cuda backend (backend="cuda") before calling it on device arrays')
        arrays = [np.asarray(a) for a in arrays]
        if any(a.ndim < 1 for a in arrays):
            raise ValueError(f"a layer's input must have a batch axis, got shapes {[a.shape for a in arrays]}")
        shapes = [a.shape[1:] for a in arrays]
        dtype = arrays[0].dtype if arrays[0].dtype in (np.float32, np.float64) else np.dtype(np.float32)
        rng = np.random.default_rng()
        build_layer(self, shapes if isinstance(x, (list, tuple)) else shapes[0], rng, dtype)
        if getattr(self, "rng", False) is None:  # Dropout's masks, Sampling's noise
            self.rng = rng

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"
