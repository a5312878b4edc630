"""Sample and class weights, as Keras 3 takes them in fit, evaluate, train_on_batch and
test_on_batch: checked once, then carried with the targets (WeightedTargets), so that every
shuffle, batch and validation split takes a sample's weight with it.

What a weight does (Keras 3's "sum_over_batch_size"): each sample's loss (its mean over its
outputs, or positions) times its weight, summed and divided by the batch's sample count, not by
the sum of the weights; the gradient scales each sample's rows by its weight. The compiled
metrics are not weighted, as Keras 3's `metrics` (only its `weighted_metrics`, which fastdl does
not take, are); the logged loss is the mean of the batch losses counted by samples, as Keras'.
"""

import inspect
import numbers

import numpy as np

from fastdl import _device

# Where fastdl's own losses live: their forward passes take sample_weight.
_FASTDL_LOSSES = ("fastdl.nn.losses", "fastdl.nn.losses_regression")


class WeightedTargets:
    """Targets (an array, or a Model's per-output targets) with each output's weights {output name:
    float64 (n,)}; indexed as the targets are, the weights going with their samples."""

    def __init__(self, targets, weights):
        self.targets, self.weights = targets, weights

    def __getitem__(self, index):
        return WeightedTargets(self.targets[index], {name: w[index] for name, w in self.weights.items()})

    def __len__(self):
        return len(next(iter(self.weights.values())))


def unweighted(y):
    """(targets, {output name: weights} or None) of targets that may carry weights."""
    if isinstance(y, WeightedTargets):
        return y.targets, y.weights
    return y, None


def takes_sample_weight(loss):
    """Whether `loss` can weigh samples: fastdl's losses can; a loss of the user's can where each of
    its forward passes takes a sample_weight keyword (then its backward is its own to weigh too).
    A loss of the user's with forward(y_pred, y_true) alone gives only the batch's mean, which no
    generic rule can split into samples."""
    kind = type(loss)
    forwards = [getattr(kind, name) for name in ("forward", "forward_logits") if hasattr(kind, name)]
    if not all("sample_weight" in inspect.signature(f).parameters for f in forwards):
        return False
    backwards = [getattr(kind, name) for name in ("backward", "backward_logits") if hasattr(kind, name)]
    # A gradient of the user's after fastdl's forward would not know the weights.
    return all(b.__module__ in _FASTDL_LOSSES for b in backwards) or \
        any(f.__module__ not in _FASTDL_LOSSES for f in forwards)


def check_sample_weight(sample_weight, n_samples, name="sample_weight"):
    """sample_weight as float64 (n_samples,): real numbers (bools as 0/1), finite, >= 0, of shape
    (n_samples,) or (n_samples, 1) as Keras 3 takes one weight per sample; else TypeError (a scalar,
    not numbers) or ValueError (shape, values) naming it."""
    if _device.is_device(sample_weight):
        raise TypeError(f"{name} is a device array; pass sample weights as a NumPy array")
    weights = np.asarray(sample_weight)
    if weights.ndim == 0:  # (evaluate(x, y, 4, 0, True): return_dict given where Keras takes sample_weight)
        raise TypeError(f"{name} must be an array of one weight per sample, got {sample_weight!r}")
    if weights.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {weights.dtype}")
    if weights.shape not in ((n_samples,), (n_samples, 1)):
        raise ValueError(f"{name} must have shape ({n_samples},) (one weight per sample), got {weights.shape}")
    weights = np.ascontiguousarray(weights.reshape(n_samples), dtype=np.float64)
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise ValueError(f"{name} must be finite and >= 0")
    return weights


def check_class_weight(class_weight):
    """class_weight as {int class: float}; TypeError unless a dict of int keys, ValueError unless
    its values are finite numbers >= 0."""
    if not isinstance(class_weight, dict):
        raise TypeError(f"class_weight must be a dict {{class index: weight}}, got {type(class_weight).__name__}")
    checked = {}
    for key, value in class_weight.items():
        if isinstance(key, (bool, np.bool_)) or not isinstance(key, (numbers.Integral, np.integer)):
            raise TypeError(f"class_weight's keys must be int class indices, got {key!r}")
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not np.isfinite(value) \
                or value < 0:
            raise ValueError(f"class_weight[{key!r}] must be a finite number >= 0, got {value!r}")
        checked[int(key)] = float(value)
    return checked


def class_sample_weights(targets, class_weight, loss):
    """Each sample's weight from its class, as Keras 3's class_weight_to_sample_weights: class
    codes; the argmax of rows of several values (one-hot); a single value rounded (a sigmoid
    output's 0/1 target). A class the dict does not name weighs 1, as in Keras. Targets with
    positions (one class a pixel) are a ValueError, as in Keras."""
    targets = np.asarray(targets)
    if getattr(loss, "target_codes", False) or targets.ndim == 1:
        classes = targets if targets.ndim == 1 else None
    elif targets.ndim == 2:
        classes = np.argmax(targets, axis=1) if targets.shape[1] > 1 else targets[:, 0]
    else:
        classes = None
    if classes is None:
        raise ValueError(f"class_weight takes one class a sample, got targets of shape {targets.shape}: give "
                         "sample_weight instead")
    classes = np.round(classes).astype(np.int64)
    weights = np.ones(classes.shape[0])
    for cls, weight in class_weight.items():
        weights[classes == cls] = weight
    return weights


def _losses(model):
    """{output name: loss} of a compiled model (Sequential: its one output, "output")."""
    return model.loss if isinstance(model.loss, dict) else {"output": model.loss}


def _per_output(sample_weight, names, n_samples):
    """{output name: weights} from one array for every output, or a dict / list of one per output."""
    if isinstance(sample_weight, dict):
        if set(sample_weight) != set(names):
            raise ValueError(f"sample_weight as a dict gives one array for each output {names}, got keys "
                             f"{sorted(sample_weight, key=str)}")
        return {name: check_sample_weight(sample_weight[name], n_samples, f"sample_weight[{name!r}]")
                for name in names}
    if isinstance(sample_weight, (list, tuple)) and len(names) > 1:
        if len(sample_weight) != len(names):
            raise ValueError(f"sample_weight as a list gives one array for each of the {len(names)} outputs "
                             f"{names}, got {len(sample_weight)}")
        return {name: check_sample_weight(w, n_samples, f"sample_weight[{i}]")
                for i, (name, w) in enumerate(zip(names, sample_weight))}
    weights = check_sample_weight(sample_weight, n_samples)
    return {name: weights for name in names}


def refuse_both(sample_weight, class_weight):
    """Keras 3's ValueError where both are given."""
    if sample_weight is not None and class_weight is not None:
        raise ValueError("give class_weight or sample_weight, not both (as Keras 3: multiply the class weights "
                         "into sample_weight yourself)")


def with_weights(model, y, n_samples, sample_weight=None, class_weight=None):
    """Checked targets y of a compiled model with its weights (WeightedTargets), or y as it is where
    neither is given. As Keras 3: sample_weight and class_weight together are a ValueError, and so
    is class_weight for a model of several outputs."""
    if sample_weight is None and class_weight is None:
        return y
    losses = _losses(model)
    refuse_both(sample_weight, class_weight)
    if class_weight is not None:
        if len(losses) > 1:
            raise ValueError(f"class_weight is for models of a single output (as Keras 3); this one has outputs "
                             f"{list(losses)}: give sample_weight, one array per output")
        class_weight = check_class_weight(class_weight)
        _check_classes_exist(model, class_weight)
        ((name, loss),) = losses.items()
        targets = y.arrays[name] if hasattr(y, "arrays") else y
        weights = {name: class_sample_weights(targets, class_weight, loss)}
    else:
        weights = _per_output(sample_weight, list(losses), n_samples)
    for name, loss in losses.items():
        if not takes_sample_weight(loss):
            raise TypeError(f"loss {type(loss).__name__} cannot weigh samples: a loss of your own whose "
                            "forward(y_pred, y_true) gives the batch's mean loss has no per-sample values to weigh. "
                            "Give its forward passes a sample_weight=None keyword (each sample's loss times its "
                            "weight, summed and divided by the sample count) and weigh its gradient's rows alike")
    return WeightedTargets(y, weights)


def _check_classes_exist(model, class_weight):
    """ValueError where class_weight names a class the model's one output cannot give (its units,
    or 0 and 1 for a single unit): a weight that would weigh nothing, unnoticed."""
    shape = model.output_shape
    shape = next(iter(shape.values())) if isinstance(shape, dict) else shape
    n_classes = shape[-1] if shape and shape[-1] > 1 else 2
    unknown = sorted(key for key in class_weight if not 0 <= key < n_classes)
    if unknown:
        raise ValueError(f"class_weight names classes {unknown}, which the model's output cannot give: its classes "
                         f"are 0 to {n_classes - 1}")


def row_weights(sample_weight, n_rows):
    """Each row's weight where a batch's samples span n_rows rows (a sample's rows, its positions,
    follow one another): its sample's."""
    per_sample = n_rows // max(sample_weight.shape[0], 1)
    return sample_weight if per_sample == 1 else np.repeat(sample_weight, per_sample)
