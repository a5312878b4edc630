"""The metrics compile takes: "accuracy", the regression errors "mae" and "mse", and functions of
the user's. Each gives a batch's mean over its samples; fit and evaluate weigh the batches by their
size, so an epoch's value is the mean over all its samples, as Keras'."""

import copy
import numbers

import numpy as np

from fastdl import _device
from fastdl.nn.losses import Loss, batch_targets


def accuracy(y_pred, y_true, loss):
    """Share of predictions that hit their targets: "accuracy" for the loss.

    The loss's accuracy_threshold None: the class of the largest output at each position (the last
    axis holds the classes) against integer codes or one-hot rows; a single output is a binary
    probability, 1 above 0.5. A threshold (binary cross-entropy's: 0.5, or 0 from logits): each
    output against its target, a target above 0.5 counting as 1.

    Keras picks its accuracy from the shapes alone. Where that differs: several binary
    cross-entropy outputs are scored one by one (Keras: the largest against the largest target);
    logits are cut at 0, which is p = 0.5 (Keras cuts them at 0.5 too); a soft target of 0.9
    counts as 1 (Keras requires it to equal the 0/1 prediction).
    """
    threshold = getattr(loss, "accuracy_threshold", None)
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


def _errors(y_pred, y_true):
    """y_pred - y_true in float64 (the targets are the loss's: float64 of the outputs' shape)."""
    return y_pred.astype(np.float64) - np.asarray(y_true, dtype=np.float64).reshape(y_pred.shape)


def mean_absolute_error(y_pred, y_true, loss):
    """Mean over samples and outputs of |y_pred - y_true|, as Keras' "mae"."""
    errors = _errors(y_pred, y_true)
    return float(np.abs(errors).mean()) if errors.size else 0.0


def mean_squared_error(y_pred, y_true, loss):
    """Mean over samples and outputs of (y_pred - y_true)^2, as Keras' "mse"."""
    errors = _errors(y_pred, y_true)
    return float(np.square(errors).mean()) if errors.size else 0.0


METRICS = {
    "accuracy": accuracy, "acc": accuracy,
    "mae": mean_absolute_error, "mean_absolute_error": mean_absolute_error,
    "mse": mean_squared_error, "mean_squared_error": mean_squared_error,
}
_REGRESSION = (mean_absolute_error, mean_squared_error)


class _UserMetric:
    """A function metric(y_true, y_pred) of the user's, as Keras takes one: NumPy arrays in, the
    batch's per-sample values (or their mean) out; logged under the function's name (a Loss, such
    as nn.Huber(), under its name, "huber")."""

    def __init__(self, function):
        if isinstance(function, Loss):  # a copy: the loss's own would lose the gradient it keeps for backward
            self.function, self.name = copy.copy(function), function.name
        else:
            self.function, self.name = function, getattr(function, "__name__", type(function).__name__)

    def __call__(self, y_pred, y_true, loss):
        value = np.asarray(self.function(y_true, y_pred))
        if value.dtype.kind not in "biuf":
            raise TypeError(f"metric {self.name!r} returned {value.dtype} values; a metric returns real numbers "
                            "(each sample's value, or the batch's mean)")
        return float(value.mean()) if value.size else 0.0


def check_metrics(metrics, loss):
    """{name in the logs: metric function} from compile's metrics for an output of `loss`.

    Names are logged as given ("acc" or "accuracy", "mae" or "mean_absolute_error", as Keras logs
    them); a function of the user's under its __name__. A metric given twice, under any of its
    names, is a ValueError, as are "mae" and "mse" with class codes for targets (they compare the
    outputs with targets of their shape).
    """
    if isinstance(metrics, dict):
        raise ValueError(f"metrics {metrics!r}: a dict gives each output of a Model its metrics; give this "
                         "output's as a list")
    given = [metrics] if isinstance(metrics, str) or callable(metrics) else list(metrics or [])
    chosen = {}
    for item in given:
        if isinstance(item, (list, tuple)):  # Keras 3's list of lists, one per output
            raise ValueError(f"metrics {metrics!r}: give each output's metrics in a dict keyed by output name "
                             "(metrics={'hour': ['accuracy']}), or a list for every output")
        if isinstance(item, str):
            if item not in METRICS:
                raise ValueError(f"unknown metric {item!r}; choose one of {sorted(METRICS)} or a function "
                                 "metric(y_true, y_pred)")
            name, function = item, METRICS[item]
        elif callable(item) and not isinstance(item, (type, numbers.Number)):
            function = _UserMetric(item)
            name = function.name
        else:
            raise TypeError(f"metric {item!r}: give a name ({sorted(METRICS)}) or a function metric(y_true, y_pred)")
        same = [other for other, known in chosen.items() if known is function or other == name]
        if same or name == "loss":
            raise ValueError(f"metrics {given}: {name!r} is given twice (as {same[0]!r} too)" if same else
                             f"metrics {given}: a metric may not be called 'loss'")
        if function in _REGRESSION and getattr(loss, "target_codes", False):
            raise ValueError(f"metric {name!r} compares the outputs with targets of their shape, but the loss "
                             f"{getattr(loss, 'name', type(loss).__name__)!r} takes class codes: use 'accuracy', or "
                             "categorical_crossentropy with one-hot targets")
        chosen[name] = function
    return chosen


def metric_logs(metrics, y_pred, y_true, loss, prefix=""):
    """{prefix + name: the metric's value on this batch} for compile's checked metrics (the outputs
    brought to the host once)."""
    if metrics:
        y_pred, y_true = _device.host(y_pred), batch_targets(y_true)
    return {prefix + name: function(y_pred, y_true, loss) for name, function in metrics.items()}


def directionless_metrics(model):
    """The names (as logged, without "val_") of the model's metrics whose better direction no name
    tells: functions of the user's (a Loss among them shrinks). Sequential's metrics are {name:
    function}, a Model's {output name: {name: function}}, prefixed with the output's name where
    it has several."""
    metrics = getattr(model, "metrics", None) or {}
    if all(isinstance(value, dict) for value in metrics.values()):  # a Model's, by output
        prefixed = getattr(model, "_prefixed", False)
        named = {(f"{output}_{name}" if prefixed else name): function
                 for output, functions in metrics.items() for name, function in functions.items()}
    else:
        named = metrics
    return {name for name, function in named.items()
            if isinstance(function, _UserMetric) and not isinstance(function.function, Loss)}
