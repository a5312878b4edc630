"""Sequential: compile, fit, evaluate, predict, summary, save and load."""

import json
import re
import time

import numpy as np

from fastdl._validation import check_array, check_int
from fastdl.nn import activations
from fastdl.nn.layers import Input
from fastdl.nn.losses import get_loss
from fastdl.nn.module import Layer
from fastdl.nn.optimizers import get_optimizer


class History:
    """What `fit` returns: `history` maps "loss", "accuracy", "val_loss", ... to per-epoch lists."""

    def __init__(self):
        self.history = {}
        self.epoch = []

    def _append(self, epoch, logs):
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)


def _accuracy(y_pred, y_true):
    """Share of samples whose predicted class is the target class (integer codes or one-hot rows)."""
    predicted = np.argmax(y_pred.reshape(y_pred.shape[0], -1), axis=1)
    if y_pred.ndim == 2 and y_pred.shape[1] == 1:
        predicted = (y_pred[:, 0] > 0.5).astype(np.int64)
        target = np.asarray(y_true).reshape(-1) > 0.5
        return float(np.mean(predicted == target))
    target = y_true if y_true.ndim == 1 else np.argmax(y_true.reshape(y_true.shape[0], -1), axis=1)
    return float(np.mean(predicted == target))


class Sequential:
    """A stack of layers trained end to end, as Keras' Sequential.

    Parameters
    ----------
    layers : list of Layer (optionally headed by Input(shape))
    seed : int, optional
        Seeds one generator for initialisation, shuffling and dropout masks.
    dtype : {"float32", "float64"}, default "float32"
    backend : str, optional
        Backend of every layer's ops (None: the process default).
    name : str, default "sequential"
    """

    def __init__(self, layers=(), seed=None, dtype="float32", backend=None, name="sequential"):
        self.layers = []
        self.name = name
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
        self.backend = backend
        self.rng = np.random.default_rng(seed)
        self.input_shape = None
        self.optimizer = self.loss = None
        self.metrics = []
        self.epochs_trained = 0
        for layer in layers:
            self.add(layer)

    # -- building -------------------------------------------------------------------------------
    def add(self, layer):
        if isinstance(layer, Input):
            if self.layers or self.input_shape is not None:
                raise ValueError("Input(shape) must come first")
            self.input_shape = layer.shape
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential takes Layer objects, got {type(layer).__name__}")
        if not self.layers and self.input_shape is None and layer.input_shape is not None:
            self.input_shape = layer.input_shape
        taken = {l.name for l in self.layers}
        if layer.name is None:
            base = re.sub(r"(?<=[a-z0-9])(?=[A-Z][a-z])", "_", type(layer).__name__).lower()
            name, k = base, 0
            while name in taken:
                k += 1
                name = f"{base}_{k}"
            layer.name = name
        elif layer.name in taken:
            raise ValueError(f"layer name {layer.name!r} is used twice")
        if layer.backend is None:
            layer.backend = self.backend
        self.layers.append(layer)
        self.built = False

    def build(self, input_shape=None):
        """Create every layer's parameters for inputs of shape (batch, *input_shape)."""
        if input_shape is not None:
            self.input_shape = tuple(int(d) for d in input_shape)
        if self.input_shape is None:
            raise ValueError("the input shape is unknown: give input_shape= to the first layer, Input(shape), or call fit first")
        if not self.layers:
            raise ValueError("the model has no layers")
        shape = self.input_shape
        for layer in self.layers:
            if not layer.built:
                layer.build(shape, self.rng, self.dtype)
                if hasattr(layer, "rng") and layer.rng is None:
                    layer.rng = self.rng
            elif layer.input_shape != shape:
                raise ValueError(f"layer {layer.name} was built for inputs {layer.input_shape}, not {shape}")
            shape = layer.output_shape
        self.output_shape = shape
        self.built = True

    def parameters(self):
        """[(name, Parameter)] of every layer, named "layer/attribute"."""
        if not getattr(self, "built", False):
            self.build()
        return [(f"{layer.name}/{key}", p) for layer in self.layers for key, p in layer.parameters()]

    def count_params(self):
        return sum(p.size for _, p in self.parameters())

    def summary(self, print_fn=print):
        """Keras-style table of layers, output shapes and parameter counts; returns it as a string."""
        self.parameters()
        rule = "_" * 65
        lines = [f'Model: "{self.name}"', rule, f"{' Layer (type)':<29}{'Output Shape':<26}Param #", "=" * 65]
        for layer in self.layers:
            shape = "(None, " + ", ".join(map(str, layer.output_shape)) + ")"
            lines.append(f" {layer.name + ' (' + type(layer).__name__ + ')':<28}{shape:<26}{layer.count_params():,}")
        total = self.count_params()
        lines += ["=" * 65, f"Total params: {total:,}", f"Trainable params: {total:,}", "Non-trainable params: 0", rule]
        text = "\n".join(lines)
        if print_fn is not None:
            print_fn(text)
        return text

    # -- compile and passes --------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss="sparse_categorical_crossentropy", metrics=None):
        """Choose the optimizer, the loss and the metrics (only "accuracy"/"acc" are known)."""
        self.optimizer = get_optimizer(optimizer)
        self.loss = get_loss(loss)
        metrics = list(metrics or [])
        for metric in metrics:
            if metric not in ("accuracy", "acc"):
                raise ValueError(f"unknown metric {metric!r}; only 'accuracy' is supported")
        self.metrics = ["accuracy"] if metrics else []
        if self.input_shape is not None:
            self.optimizer.attach(p for _, p in self.parameters())

    def _fused(self):
        last = self.layers[-1]
        return self.loss.fusable and getattr(last, "activation", None) == "softmax"

    def _forward(self, x, training):
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def _backward(self, dout, fused):
        last = self.layers[-1]
        dx = last.backward_pre(dout) if fused else last.backward(dout)
        for layer in reversed(self.layers[:-1]):
            dx = layer.backward(dx)
        return dx

    def _batch_loss(self, out, y):
        if self._fused():
            # The cross-entropy starts again from the last layer's logits, by log-sum-exp.
            return self.loss.forward_logits(self.layers[-1]._logits, y)
        return self.loss.forward(out, y)

    def _check_x(self, x, name="x"):
        if self.input_shape is None:
            x = np.asarray(x)
            if x.ndim < 2:
                raise ValueError(f"{name} must have a batch axis, got shape {x.shape}")
            self.build(x.shape[1:])
        elif not getattr(self, "built", False):
            self.build()
        x = np.asarray(x)
        if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_) \
                or np.issubdtype(x.dtype, np.complexfloating):
            raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
        if x.shape[1:] != tuple(self.input_shape):
            raise ValueError(
                f"{name} has samples of shape {x.shape[1:]}, but the model's first layer expects "
                f"{tuple(self.input_shape)} (x must be (batch, {', '.join(map(str, self.input_shape))}))"
            )
        if x.shape[0] == 0:
            raise ValueError(f"{name} has no samples")
        return x

    def _check_xy(self, x, y, name="x"):
        x = self._check_x(x, name)
        if self.loss is None:
            raise RuntimeError("call compile(optimizer, loss) before fit or evaluate")
        y_arr = np.asarray(y)
        if y_arr.ndim == 0 or y_arr.shape[0] != x.shape[0]:
            raise ValueError(f"{name} has {x.shape[0]} samples but y has {y_arr.shape[0] if y_arr.ndim else 0} targets")
        return x, self.loss.check_targets(y_arr, x.shape[0], self.output_shape)

    def _as_batch(self, xb, epoch=None, batch=None):
        xb = np.ascontiguousarray(xb, dtype=self.dtype)
        if not np.isfinite(xb).all():
            where = "" if epoch is None else f"epoch {epoch}, batch {batch}: "
            raise ValueError(f"{where}the input batch contains NaN or infinity; training stopped")
        return xb

    # -- public training API -------------------------------------------------------------------
    def fit(self, x, y, epochs=1, batch_size=32, validation_data=None, validation_split=0.0,
            shuffle=True, verbose=0, seed=None):
        """Train for `epochs` passes over (x, y); returns a History.

        seed, when given, reseeds the generator that shuffles and draws dropout masks.
        """
        epochs = check_int(epochs, "epochs", 0)
        batch_size = check_int(batch_size, "batch_size", 1)
        x, y = self._check_xy(x, y)
        if validation_data is not None:
            if len(validation_data) != 2:
                raise ValueError("validation_data must be (x_val, y_val)")
            val = self._check_xy(*validation_data, name="validation x")
        elif validation_split:
            if not 0 < validation_split < 1:
                raise ValueError(f"validation_split must be in (0, 1), got {validation_split!r}")
            n_val = int(round(x.shape[0] * validation_split))
            if n_val < 1 or n_val >= x.shape[0]:
                raise ValueError(f"validation_split={validation_split} leaves no training or validation samples")
            # Keras takes the last samples, before any shuffling.
            val = x[-n_val:], y[-n_val:]
            x, y = x[:-n_val], y[:-n_val]
        else:
            val = None
        if not self.optimizer.params:
            self.optimizer.attach(p for _, p in self.parameters())
        if seed is not None:
            old, self.rng = self.rng, np.random.default_rng(seed)
            for layer in self.layers:
                if getattr(layer, "rng", None) is old:
                    layer.rng = self.rng
        history = History()
        n = x.shape[0]
        fused = self._fused()
        last_epoch = self.epochs_trained + epochs
        for epoch in range(self.epochs_trained, last_epoch):
            start = time.perf_counter()
            order = self.rng.permutation(n) if shuffle else np.arange(n)
            total_loss = total_correct = 0.0
            for b, first in enumerate(range(0, n, batch_size)):
                idx = order[first:first + batch_size]
                xb = self._as_batch(x[idx], epoch + 1, b + 1)
                yb = y[idx]
                try:
                    out = self._forward(xb, training=True)
                    loss = self._batch_loss(out, yb)
                    if not np.isfinite(loss):
                        raise ValueError(f"the loss is {loss}")
                    dout = self.loss.backward_logits() if fused else self.loss.backward()
                    self.optimizer.zero_grad()
                    self._backward(dout, fused)
                except ValueError as exc:
                    # Weights or activations went non-finite: never train on silently.
                    raise ValueError(f"epoch {epoch + 1}, batch {b + 1}: {exc}; training stopped "
                                     "(lower the learning rate or check the data)") from exc
                self.optimizer.step()
                total_loss += loss * len(idx)
                if self.metrics:
                    total_correct += _accuracy(out, yb) * len(idx)
            logs = {"loss": total_loss / n}
            if self.metrics:
                logs["accuracy"] = total_correct / n
            if val is not None:
                val_logs = self._evaluate(*val, batch_size)
                logs.update({"val_" + key: value for key, value in val_logs.items()})
            self.epochs_trained = epoch + 1
            history._append(epoch, logs)
            if verbose:
                seconds = time.perf_counter() - start
                metrics = " - ".join(f"{key}: {value:.4f}" for key, value in logs.items())
                print(f"Epoch {epoch + 1}/{last_epoch} - {seconds:.1f}s "
                      f"({n / seconds:,.0f} images/s) - {metrics}")
        return history

    def _evaluate(self, x, y, batch_size):
        total_loss = total_correct = 0.0
        for first in range(0, x.shape[0], batch_size):
            xb, yb = self._as_batch(x[first:first + batch_size]), y[first:first + batch_size]
            out = self._forward(xb, training=False)
            total_loss += self._batch_loss(out, yb) * len(yb)
            if self.metrics:
                total_correct += _accuracy(out, yb) * len(yb)
        logs = {"loss": total_loss / x.shape[0]}
        if self.metrics:
            logs["accuracy"] = total_correct / x.shape[0]
        return logs

    def evaluate(self, x, y, batch_size=32):
        """Loss (and accuracy when compiled with it) over (x, y): a float, or [loss, accuracy]."""
        batch_size = check_int(batch_size, "batch_size", 1)
        x, y = self._check_xy(x, y)
        logs = self._evaluate(x, y, batch_size)
        return [logs["loss"], logs["accuracy"]] if self.metrics else logs["loss"]

    def predict(self, x, batch_size=32):
        """Outputs for x, computed batch by batch; ndarray of shape (n_samples, *output_shape)."""
        batch_size = check_int(batch_size, "batch_size", 1)
        x = self._check_x(x)
        out = np.empty((x.shape[0], *self.output_shape), dtype=self.dtype)
        for first in range(0, x.shape[0], batch_size):
            out[first:first + batch_size] = self._forward(self._as_batch(x[first:first + batch_size]), training=False)
        return out

    def __call__(self, x, training=False):
        return self._forward(self._as_batch(self._check_x(x)), training)

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path):
        """Write the weights, the optimizer state and the training generator's state to one .npz."""
        arrays = {f"param:{name}": p.value for name, p in self.parameters()}
        meta = {"format": "fastdl.nn/1", "input_shape": list(self.input_shape), "epochs_trained": self.epochs_trained,
                "rng": self.rng.bit_generator.state, "optimizer": None}
        if self.optimizer is not None and self.optimizer.params:
            opt_meta, opt_arrays = self.optimizer.state_dict()
            meta["optimizer"] = opt_meta
            arrays.update({f"opt:{key}": value for key, value in opt_arrays.items()})
        arrays["meta"] = np.array(json.dumps(meta))
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    def load(self, path):
        """Read what `save` wrote into this model (same architecture); restores the optimizer when compiled."""
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if self.input_shape is None:
                self.build(meta["input_shape"])
            params = self.parameters()
            saved = {k[len("param:"):] for k in data.files if k.startswith("param:")}
            if saved != {name for name, _ in params}:
                raise ValueError(f"{path} holds weights for layers {sorted(saved)}, this model has {[n for n, _ in params]}")
            for name, p in params:
                value = data[f"param:{name}"]
                if value.shape != p.value.shape:
                    raise ValueError(f"{path}: weight {name} has shape {value.shape}, the model's has {p.value.shape}")
                p.value[...] = value
            if meta["optimizer"] is not None and self.optimizer is not None:
                if not self.optimizer.params:
                    self.optimizer.attach(p for _, p in params)
                opt_arrays = {k[len("opt:"):]: data[k] for k in data.files if k.startswith("opt:")}
                self.optimizer.load_state_dict(meta["optimizer"], opt_arrays)
        self.epochs_trained = int(meta["epochs_trained"])
        self.rng.bit_generator.state = meta["rng"]
        return self
