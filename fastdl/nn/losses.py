"""Losses: value and gradient, with softmax + cross-entropy and sigmoid + binary cross-entropy
fused for a stable gradient."""

import numpy as np

from fastdl import _device
from fastdl import backend as _backend
from fastdl._validation import all_finite, check_codes, compute_dtype
from fastdl._parallel import threads_worth_it
from fastdl.nn.weights import check_sample_weight, row_weights, takes_sample_weight

_EPSILON = 1e-7  # Keras' clip for probabilities fed to a cross-entropy


def _clip_bounds(dtype):
    """Keras' clip of probabilities of `dtype` fed to a cross-entropy, [1e-7, 1 - 1e-7] worked out in
    that dtype as Keras does (its clip's bounds take the outputs' dtype), as float64 numbers: in
    float32 float32(1e-7) and 1 - 2**-23 (1 - 1e-7 rounded), so -log(1 - p) at the top is 15.94,
    not 16.12."""
    kind = np.dtype(dtype).type
    return float(kind(_EPSILON)), float(kind(1) - kind(_EPSILON))


def check_host_targets(y, name="y"):
    """y as it is; TypeError where it is a device array. Targets are given as NumPy arrays and a
    model on the cuda backend copies them to the device itself; taking a device array by
    np.asarray would copy it to the host, which fastdl never does by itself."""
    if _device.is_device(y):
        raise TypeError(f"{name} is a device array ({type(y).__module__}.{type(y).__name__}); pass targets as NumPy "
                        "arrays: a model on the cuda backend copies them to the device itself")
    return y


class Loss:
    """A loss averaged over the batch.

    `forward(y_pred, y_true) -> float` and `backward() -> d loss / d y_pred`; `check_targets`
    brings the targets to the form `forward` takes (by default, float64 of the outputs' shape).
    fastdl has no automatic differentiation, so a loss of your own subclasses Loss and gives both
    (README: "A loss or a layer of your own"); called as Keras calls a loss, `loss(y_true, y_pred)`
    is the batch's mean loss. A loss that fuses with an output activation (`fused_activation`)
    also has `forward_logits(logits, y_true)` and `backward_logits()`: the loss of that activation
    of the logits, and its gradient with respect to them, which the model uses where its output is
    that activation's (module.fused_layer).
    """

    name = "loss"
    # The output activation the loss fuses with: "softmax" (the cross-entropies), "sigmoid" (binary
    # cross-entropy), None (no fusing; outputs taken as logits already).
    fused_activation = None
    # "accuracy" for this loss: None, the class of the largest output (or for a single output, 1
    # above 0.5); a number, each output against its 0/1 target, 1 above this threshold.
    accuracy_threshold = None
    # Whether the loss is a sum of per-value terms (its kernels may take any rows of the outputs:
    # the device splits an image's values over many threads).
    elementwise = False
    # The kernel's cost per value in fastdl._parallel's work units (an elementwise pass is 8):
    # what decides how many threads share a batch's rows.
    work_per_value = 8
    backend = None  # the kernels' backend; the model sets its own at compile
    # Whether the targets are class codes, one a row of the outputs (SparseCategoricalCrossentropy),
    # rather than real values of the outputs' shape.
    target_codes = False

    def _run(self, kernel, values, targets, *args, scale, sample_weight=None):
        """Loss kernel `kernel` (of the loss family) on a batch of outputs `values`, one row a sample.

        targets: class codes (n,), or float64 values of the outputs' size. Returns the batch's
        summed loss (float64) and the gradient with respect to `values`, scaled by `scale`, in
        their shape and dtype. `args` go between the targets and the scale. sample_weight:
        float64 (n_samples,) or None; each row's loss and gradient are weighed by its sample's
        weight after the kernel (a sample's positions are its rows), which leaves the kernels
        and the unweighted path as they are.
        """
        if _device.is_device(values):
            return self._run_on_device(kernel, values, targets, *args, scale=scale, sample_weight=sample_weight)
        values = np.ascontiguousarray(values, dtype=compute_dtype(values))
        grad = np.empty_like(values)
        row_loss = np.zeros(values.shape[0])
        if values.size:
            rows = values.reshape(values.shape[0], -1)
            targets = self._target_rows_for(targets, rows.shape, values.shape)
            kernels, _ = _backend.kernels("loss", self.backend)
            getattr(kernels, kernel)(rows, targets, *args, scale, grad.reshape(rows.shape), row_loss,
                                     threads_worth_it(rows.shape[0], self.work_per_value * rows.shape[1]))
        if sample_weight is None:
            return float(row_loss.sum()), grad
        weights = row_weights(sample_weight, row_loss.shape[0])
        if grad.size:
            rows = grad.reshape(weights.shape[0], -1)  # a view: weighs grad in place
            rows *= weights.astype(grad.dtype)[:, None]
        return float((row_loss * weights).sum()), grad

    def _target_rows_for(self, targets, rows_shape, values_shape):
        """The targets as the kernel takes them: class codes (n,) as they are; real values as float64
        rows of the outputs' (1-D outputs and targets are one column, (n, 1), as Keras takes them).
        ValueError, before any kernel, where their shape is not the outputs' up to axes of size 1
        (the rule of check_targets, for forward() called directly)."""
        if self.target_codes:
            return np.ascontiguousarray(targets)
        targets, shape = np.asarray(targets), tuple(values_shape)
        if not _fits_outputs(targets.shape, shape):
            raise ValueError(f"{type(self).__name__}: targets of shape {targets.shape} do not fit outputs of shape "
                             f"{shape}")
        return np.ascontiguousarray(targets.reshape(rows_shape), dtype=np.float64)

    def __getstate__(self):
        # The device buffers are this instance's cache: a copy (copy, deepcopy, pickle) makes its
        # own, so two outputs' losses never write their gradients into one buffer.
        state = dict(self.__dict__)
        state.pop("_device_buffers", None)
        return state

    def _run_on_device(self, kernel, values, targets, *args, scale, sample_weight=None):
        """_run for device outputs: the gradient stays on the device (a buffer reused from batch to
        batch), the targets go over, and the per-sample losses come back to be summed."""
        buffers = self.__dict__.setdefault("_device_buffers", {})
        grad = _device.buffer(buffers, "grad", values.shape, values.dtype)
        if not values.size:
            return 0.0, grad
        width = values.shape[values.ndim - 1] if self.elementwise else values.size // values.shape[0]
        rows = values if values.ndim == 2 else _device.reshaped(values, (values.size // width, width))
        row_loss = _device.buffer(buffers, "row loss", (rows.shape[0],), np.float64)
        targets = _device.upload(buffers, "targets", self._target_rows_for(targets, rows.shape, values.shape))
        kernels, _ = _backend.kernels("loss", "cuda")
        getattr(kernels, kernel)(rows, targets, *args, scale, _device.reshaped(grad, rows.shape), row_loss, 1)
        if sample_weight is None:
            return float(np.sum(row_loss.copy_to_host())), grad
        weights = row_weights(sample_weight, rows.shape[0])
        _device.scale_rows(_device.reshaped(grad, rows.shape),
                           _device.upload(buffers, "row weights", weights.astype(values.dtype)))
        return float(np.sum(row_loss.copy_to_host() * weights)), grad

    def check_targets(self, y, n_samples, output_shape):
        """The targets in the form the loss uses; ValueError when they do not fit the outputs.
        Here: finite float32 or float64 values of the outputs' shape, float32 ones kept as they are
        (batch_targets widens each batch's for the loss; the losses of class codes override it)."""
        return _check_real_targets(y, n_samples, output_shape)

    def forward(self, y_pred, y_true):
        raise NotImplementedError(f"{type(self).__name__} gives no forward(y_pred, y_true): a loss of your "
                                  "own returns the batch's mean loss there, and keeps what backward() needs")

    def backward(self):
        raise NotImplementedError(f"{type(self).__name__} gives no backward(): fastdl has no automatic "
                                  "differentiation, so a loss of your own returns d loss / d y_pred there "
                                  "(y_pred's shape; the loss is the batch's mean)")

    def __call__(self, y_true, y_pred, sample_weight=None):
        """The batch's mean loss of outputs `y_pred` (n, ...) for targets `y_true`, in Keras' order
        (NumPy arrays: computed on the host, where a device array is never copied by itself);
        sample_weight (n,): each sample's loss times its weight, summed, over n (Keras 3)."""
        if _device.is_device(y_pred) or _device.is_device(y_true):
            raise TypeError("calling a loss takes NumPy arrays y_true and y_pred, got a device array: bring it "
                            "to the host yourself (copy_to_host(), cupy.asnumpy())")
        y_pred = np.asarray(y_pred)
        if y_pred.ndim < 1 or y_pred.dtype.kind not in "biuf":
            raise ValueError(f"y_pred must be an array of real numbers with a batch axis, got "
                             f"{y_pred.dtype} of shape {y_pred.shape}")
        y_pred = np.ascontiguousarray(y_pred, dtype=compute_dtype(y_pred))
        y_true = self.check_targets(y_true, y_pred.shape[0], y_pred.shape[1:])
        if sample_weight is None:
            return self.forward(y_pred, y_true)
        if not takes_sample_weight(self):
            raise TypeError(f"loss {type(self).__name__} cannot weigh samples: its forward takes no sample_weight")
        return self.forward(y_pred, y_true, sample_weight=check_sample_weight(sample_weight, y_pred.shape[0]))


class _CrossEntropy(Loss):
    """A cross-entropy over the outputs' last axis, as Keras: outputs of shape (n, ..., classes)
    (a Conv2D's per-pixel classes, say) have one distribution at each position, and the loss is
    the mean over samples and positions.

    Parameters
    ----------
    from_logits : bool, default False
        False: the outputs are probabilities (a softmax layer's, whose loss then starts from its
        logits: the two fuse). True: the outputs are logits (a linear last layer), and the loss
        is that of their softmax, by log-sum-exp.
    """

    def __init__(self, from_logits=False):
        self.from_logits = bool(from_logits)
        # Outputs that are logits already take the fused kernels themselves; a softmax layer's
        # outputs under from_logits are what Keras takes the softmax of again, so no fusing then.
        self.fused_activation = None if self.from_logits else "softmax"

    def forward_logits(self, logits, y_true, sample_weight=None):
        """The loss of softmax(logits), by log-sum-exp (no overflow, no log(0)); keeps its gradient."""
        rows = _device.last_axis_rows(logits)
        n = max(rows.shape[0], 1)
        total, grad = self._run(self._kernel, rows, self._target_rows(y_true), scale=1.0 / n,
                                sample_weight=sample_weight)
        self._grad = grad if grad.shape == logits.shape else _device.reshaped(grad, logits.shape)
        return total / n

    def backward_logits(self):
        return self._grad

    def forward(self, y_pred, y_true, sample_weight=None):
        """The loss of outputs that are no softmax's (or whose softmax other layers read too).

        As Keras: each position's outputs o are scaled by their sum, p = o / sum(o), then clipped
        to [1e-7, 1 - 1e-7] (the bounds in the outputs' dtype, _clip_bounds), and the loss is
        -sum(y log clip(p)); p itself is worked out in float64 (Keras: in the outputs' dtype). The
        true sum is used whatever its sign or size (a linear or sigmoid last layer, the common
        mistake, gives such rows); only a sum of exactly 0, where Keras' loss is NaN, is taken as
        1e-7, so that an all-zero row has the clipped loss -log(1e-7) per unit of target and a zero
        gradient instead of NaN."""
        if self.from_logits:
            return self.forward_logits(y_pred, y_true, sample_weight)
        self._on_device = _device.is_device(y_pred)  # computed on the host (softmax outputs fuse instead)
        y_pred = _device.host(y_pred)
        self._shape, self._dtype = y_pred.shape, y_pred.dtype
        low, high = _clip_bounds(compute_dtype(y_pred))
        outputs = y_pred.reshape(-1, y_pred.shape[-1]).astype(np.float64)
        sums = outputs.sum(axis=1, keepdims=True)
        sums = np.where(sums == 0, _EPSILON, sums)
        probs = outputs / sums
        clipped = np.clip(probs, low, high)
        targets = self._dense_targets(self._target_rows(y_true), outputs.shape[1])
        # d loss / d clip(p) = -targets / clip(p) where the clip is inactive, 0 where it is (as
        # Keras' clip): the slope of the loss actually computed. The value comes from this call's
        # arrays; those kept on the loss are backward's, which another thread calling the loss
        # may have set meanwhile.
        active = (probs < low) | (probs > high)
        self._sums, self._probs, self._q = sums, probs, np.where(active, 0.0, targets / clipped)
        self._row_weights = None if sample_weight is None else row_weights(sample_weight, outputs.shape[0])
        if sample_weight is None:
            return float(-(targets * np.log(clipped)).sum() / max(outputs.shape[0], 1))
        return float(-((targets * np.log(clipped)).sum(axis=1) * self._row_weights).sum() / max(outputs.shape[0], 1))

    def backward(self):
        if self.from_logits:
            return self._grad
        # p = o / S with S = sum(o): d loss / d o_k = (-q_k + sum_j q_j p_j) / S, q as in forward.
        grad = (-self._q + (self._q * self._probs).sum(axis=1, keepdims=True)) / self._sums
        grad /= max(grad.shape[0], 1)
        if getattr(self, "_row_weights", None) is not None:
            grad *= self._row_weights[:, None]
        return _like_outputs(grad.reshape(self._shape).astype(self._dtype), self._on_device)


class SparseCategoricalCrossentropy(_CrossEntropy):
    """Cross-entropy against integer class codes 0..n_classes-1, as Keras: over the outputs' last
    axis, the mean over samples (and over positions: outputs of shape (n, ..., classes), a
    Conv2D's per-pixel classes, take codes of shape (n, ...)).

    Parameters
    ----------
    from_logits : bool, default False
        False: the outputs are probabilities (a softmax layer's, whose loss then starts from its
        logits: the two fuse). True: the outputs are logits (a linear last layer), and the loss
        is that of their softmax, by log-sum-exp.
    """

    name = "sparse_categorical_crossentropy"
    _kernel = "softmax_xent_codes"
    target_codes = True

    def check_targets(self, y, n_samples, output_shape):
        y = np.asarray(check_host_targets(y))
        if not output_shape:
            raise ValueError(f"sparse categorical cross-entropy takes outputs with a class axis, (n, ..., classes), "
                             f"got outputs of shape ({n_samples},)")
        positions = tuple(output_shape[:-1])
        if y.ndim == len(positions) + 2 and y.shape[-1] == 1:
            y = y[..., 0]
        if positions and y.shape != (n_samples, *positions):
            raise ValueError(f"class codes for outputs of shape {tuple(output_shape)} must have shape "
                             f"{(n_samples, *positions)} (one a position), got {y.shape}")
        codes, _ = check_codes(y.reshape(-1) if positions else y, y.size if positions else n_samples,
                               output_shape[-1])
        return codes.reshape(y.shape)

    @staticmethod
    def _target_rows(y):
        return y.reshape(-1)

    @staticmethod
    def _dense_targets(codes, n_classes):
        """The codes as one-hot rows (n, n_classes) float64."""
        targets = np.zeros((codes.shape[0], n_classes))
        targets[np.arange(codes.shape[0]), codes] = 1.0
        return targets


class CategoricalCrossentropy(_CrossEntropy):
    """Cross-entropy against one-hot (or soft) target distributions of the outputs' shape, as
    Keras: over the outputs' last axis, the mean over samples (and over positions, for outputs
    of shape (n, ..., classes)).

    Parameters
    ----------
    from_logits : bool, default False
        False: the outputs are probabilities (a softmax layer's, whose loss then starts from its
        logits: the two fuse). True: the outputs are logits (a linear last layer), and the loss
        is that of their softmax, by log-sum-exp.
    """

    name = "categorical_crossentropy"
    _kernel = "softmax_xent_targets"

    def check_targets(self, y, n_samples, output_shape):
        y = _real_targets(y)
        expected = (n_samples, *output_shape)
        if y.shape != expected:
            raise ValueError(f"categorical targets must have shape {expected}, got {y.shape}")
        if not all_finite(y) or (y.size and y.min() < 0):
            raise ValueError("categorical targets must be finite and >= 0")
        return y

    @staticmethod
    def _target_rows(y):
        return y.reshape(-1, y.shape[-1])

    @staticmethod
    def _dense_targets(targets, n_classes):
        """The target rows as they are: distributions already."""
        return targets


def _check_real_dtype(y):
    """y as an array; TypeError unless it holds real numbers (strings are not parsed, complex
    values not cut to their real part); a device array is a TypeError (check_host_targets)."""
    y = np.asarray(check_host_targets(y))
    if y.dtype == object or not (np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_) \
            or np.issubdtype(y.dtype, np.complexfloating):
        raise TypeError(f"targets must hold real numbers, got dtype {y.dtype}")
    return y


def _real_targets(y):
    """Real-valued targets as a C-contiguous float32 or float64 array: float32 or float64 ones as
    they are (no copy where contiguous), others as float64. Each batch's are widened to float64
    for the loss and the metrics (batch_targets; exact from float32), so an autoencoder's
    fit(x, x) holds no float64 copy of x (a6's VAE on 20,000 faces: 2 GB an epoch)."""
    y = _check_real_dtype(y)
    return np.ascontiguousarray(y, dtype=y.dtype if y.dtype in (np.float32, np.float64) else np.float64)


def batch_targets(y):
    """A batch's targets as every loss and metric is given them: float32 values widened to float64
    (exactly; the data's own are kept in float32, _real_targets), others as they are."""
    return y.astype(np.float64) if isinstance(y, np.ndarray) and y.dtype == np.float32 else y


def _check_real_targets(y, n_samples, output_shape):
    """Targets of the outputs' shape, finite, float32 or float64 (_real_targets).

    Targets whose shape differs from the outputs' only in axes of size 1 are reshaped to it (a flat
    (n,) target fits an (n, 1) output, (n, 1, 28, 28) an (n, 28, 28, 1) one); any other shape is a
    ValueError, even with the right number of values (channels-first targets for channels-last
    outputs would be silently scrambled). Checked without temporaries of their size.
    """
    y = _real_targets(y)
    expected = (n_samples, *output_shape)
    if not _fits_outputs(y.shape, expected):
        raise ValueError(f"targets must have shape {expected} for this model's output, got {y.shape}")
    y = y.reshape(expected)
    if not all_finite(y):
        raise ValueError("targets contain NaN or infinity")
    return y


def _fits_outputs(shape, expected):
    """Whether targets of `shape` fit outputs of shape `expected` (samples first): the same shape,
    or the same samples and values in the same order, differing only in axes of size 1."""
    return shape == expected or (len(shape) > 0 and shape[0] == expected[0]
                                 and _drop_ones(shape) == _drop_ones(expected))


def _drop_ones(shape):
    return tuple(size for size in shape if size != 1)


class BinaryCrossentropy(Loss):
    """Mean over samples and outputs of -(y log p + (1 - y) log(1 - p)), targets in [0, 1].

    Parameters
    ----------
    from_logits : bool, default False
        False: y_pred are probabilities. A sigmoid output's loss starts from the sigmoid's input
        z (the two fuse, as in Keras on TensorFlow and tf.keras 2, whose binary_crossentropy reads
        a sigmoid's logits; Keras' other backends clip): softplus(z) - y z, gradient
        sigmoid(z) - y, so an output saturated on the wrong side still learns. Other outputs are
        clipped to [1e-7, 1 - 1e-7] as Keras, worked out in the outputs' dtype (in float32 the top
        is 1 - 2**-23, so -log(1 - p) there is 15.94), with no gradient where the clip is active
        (the clipped loss is flat there).
        True: y_pred are logits z; the loss softplus(z) - y z is computed without overflow and its
        gradient is sigmoid(z) - y.
    """

    name = "binary_crossentropy"
    elementwise = True
    # Two logarithms (or an exponential and a logarithm) a value: 20 ns a value on one thread
    # here, so a VAE's 32 images of 64x64x3 (8 ms) are worth splitting.
    work_per_value = 64

    def __init__(self, from_logits=False):
        self.from_logits = bool(from_logits)
        self.accuracy_threshold = 0.0 if self.from_logits else 0.5
        self.fused_activation = None if self.from_logits else "sigmoid"

    def check_targets(self, y, n_samples, output_shape):
        y = _check_real_targets(y, n_samples, output_shape)
        if y.size and (y.min() < 0 or y.max() > 1):
            raise ValueError("binary cross-entropy targets must lie in [0, 1]")
        return y

    def forward_logits(self, logits, y_true, sample_weight=None):
        """The loss of sigmoid(logits), softplus(z) - y z with exp of a non-positive number only;
        keeps its gradient (sigmoid(z) - y) / size."""
        size = max(logits.size, 1)
        total, self._grad = self._run("binary_xent_logits", logits, y_true, scale=1.0 / size,
                                      sample_weight=sample_weight)
        return total / size

    def forward(self, y_pred, y_true, sample_weight=None):
        if self.from_logits:
            return self.forward_logits(y_pred, y_true, sample_weight)
        # Probabilities that are no sigmoid's (or whose sigmoid other layers read too), clipped to
        # [1e-7, 1 - 1e-7] in their dtype, as Keras.
        size = max(y_pred.size, 1)
        low, high = _clip_bounds(compute_dtype(y_pred))
        total, self._grad = self._run("binary_xent", y_pred, y_true, low, high, scale=1.0 / size,
                                      sample_weight=sample_weight)
        return total / size

    def backward(self):
        return self._grad

    backward_logits = backward


def _like_outputs(grad, on_device):
    """A gradient worked out on the host, sent to the device where the outputs came from."""
    return _device.to_device(grad) if on_device else grad


# The regression losses subclass Loss, so their file is imported once Loss is defined.
from fastdl.nn.losses_regression import (CyclicMAE, CyclicMSE, Huber, MeanAbsoluteError,  # noqa: E402, F401
                                         MeanSquaredError)

LOSSES = {
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
    "huber": Huber,
    "binary_crossentropy": BinaryCrossentropy,
}


def get_loss(loss):
    """A Loss from a name or an instance."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, type) and issubclass(loss, Loss):
        return loss()
    if isinstance(loss, str) and loss.lower() in LOSSES:
        return LOSSES[loss.lower()]()
    if callable(loss):
        raise TypeError(f"loss {getattr(loss, '__name__', loss)!r} is a function: fastdl has no automatic "
                        "differentiation, so a loss of your own is a subclass of nn.Loss with forward(y_pred, "
                        "y_true) and backward() (README: 'A loss or a layer of your own'; nn.CyclicMAE(period) is "
                        "the course's cyclic 'common sense' error, nn.CyclicMSE(period) its square)")
    raise ValueError(f"unknown loss {loss!r}; choose one of {sorted(LOSSES)} or a Loss instance")
