"""Saving: a model's weights as arrays (get_weights, set_weights) and in a file (save, load)."""

import contextlib
import json
import re
import zipfile

import numpy as np

from fastdl import _device
from fastdl.nn.module import snake_case


class Saving:
    """The weights' part of fastdl.nn.training.Training: a model with `layers`, `build()`,
    `_generators()`, `epochs_trained` and an `optimizer`."""

    def parameters(self):
        """[(name, Parameter)] of every layer, named "layer/attribute"."""
        if not getattr(self, "built", False):
            self.build()
        return [(f"{layer.name}/{key}", p) for layer in self.layers for key, p in layer.parameters()]

    def non_trainable_weights(self):
        """[(name, ndarray)] of every layer's saved-but-not-trained state (BatchNormalization's moving stats)."""
        if not getattr(self, "built", False):
            self.build()
        return [(f"{layer.name}/{key}", a) for layer in self.layers
                for key, a in getattr(layer, "non_trainable_weights", list)()]

    def count_params(self):
        """Trainable and non-trainable, as Keras' Total params."""
        return sum(p.size for _, p in self.parameters()) + sum(a.size for _, a in self.non_trainable_weights())

    def _param_totals(self):
        """The Total / Trainable / Non-trainable lines of summary()."""
        total = self.count_params()
        frozen = total - sum(p.size for _, p in self.trainable_parameters())
        return [f"Total params: {total:,}", f"Trainable params: {total - frozen:,}", f"Non-trainable params: {frozen:,}"]

    def _weight_arrays(self):
        """[(name, array)] of every layer's weights as Keras lists them: its parameters, then its
        non-trainable state (BatchNormalization: gamma, beta, moving_mean, moving_variance)."""
        if not getattr(self, "built", False):
            self.build()
        return [(f"{layer.name}/{key}", array) for layer in self.layers
                for key, array in [(k, p.value) for k, p in layer.parameters()]
                + list(getattr(layer, "non_trainable_weights", list)())]

    def get_weights(self):
        """Copies of every weight, trainable and not, layer by layer as Keras orders them."""
        return [np.array(_device.host(array)) for _, array in self._weight_arrays()]

    def set_weights(self, weights):
        """Copy `weights` (as `get_weights` returns them) into the model; all are checked first, so
        weights that do not fit change nothing."""
        arrays = self._weight_arrays()
        weights = [np.asarray(value) for value in weights]
        if len(weights) != len(arrays):
            raise ValueError(f"expected {len(arrays)} weight arrays, got {len(weights)}")
        for (name, array), value in zip(arrays, weights):
            if value.shape != array.shape:
                raise ValueError(f"weight {name} has shape {array.shape}, got {value.shape}")
        for (_, array), value in zip(arrays, weights):
            _device.assign(array, value)

    def save(self, path):
        """Write the weights, the optimizer state and the training generator's state to one .npz.

        The file is written beside its place and renamed into it: a crash while saving (a
        ModelCheckpoint's, say) leaves the previous file whole.
        """
        from fastdl.data._files import atomic_write

        arrays = {f"param:{name}": _device.host(p.value) for name, p in self.parameters()}
        arrays.update({f"state:{name}": _device.host(a) for name, a in self.non_trainable_weights()})
        generators = {path: generator.bit_generator.state for path, generator in self._generators().items()}
        meta = {"format": SAVE_FORMAT, "input_shape": list(self.input_shape), "epochs_trained": self.epochs_trained,
                "rng": generators["rng"], "generators": generators, "optimizer": None}
        if self.optimizer is not None and self.optimizer.attached:
            self._attach_optimizer()  # layers added since the last step: their slots are saved too
        if self.optimizer is not None and self.optimizer.params:
            opt_meta, opt_arrays = self.optimizer.state_dict()
            meta["optimizer"] = opt_meta
            meta["optimizer_weights"] = self._optimizer_weights()
            arrays.update({f"opt:{key}": value for key, value in opt_arrays.items()})
        arrays["meta"] = np.array(json.dumps(meta))
        with atomic_write(path) as f:
            np.savez(f, **arrays)

    def load(self, path):
        """Read what `save` wrote into this model (same architecture); restores the optimizer when compiled.

        Everything is read and checked before anything is set: a file that does not fit the model
        (other layers or shapes, another optimizer's state) changes nothing, an unbuilt model and
        the models inside it stay unbuilt.
        """
        with _open_save(path) as (data, meta):
            if self.input_shape is None:
                # Built for the file's inputs; one that does not fit the file is unbuilt again.
                from fastdl.nn.model import build_undo  # (model.py imports this module)

                undo = build_undo(self)
                self.build(meta["input_shape"])
                try:
                    targets, opt_arrays = self._checked_file(path, data, meta)
                except ValueError:
                    undo()
                    raise
            else:
                targets, opt_arrays = self._checked_file(path, data, meta)
            for _, target, value in targets:
                _device.assign(target, value)
            if opt_arrays is not None:
                self.optimizer.load_state_dict(meta["optimizer"], opt_arrays)
        self.epochs_trained = int(meta["epochs_trained"])
        # Files from before every generator was saved hold the model's own alone.
        states = meta.get("generators", {"rng": meta["rng"]})
        for path_in_model, generator in self._generators().items():
            if path_in_model in states:
                generator.bit_generator.state = states[path_in_model]
        return self

    def _optimizer_weights(self):
        """The names of the weights the optimizer trains, in its order (its state's)."""
        names = {id(p): name for name, p in self.parameters()}
        return [names.get(id(p), "?") for p in self.optimizer.params]

    def _checked_file(self, path, data, meta):
        """(the weights to set, as _saved_weights gives them; the optimizer's saved slots, None
        where there are none to restore), once all of the file is checked against the model."""
        spell = self._names_in_file(path, data)
        targets = self._saved_weights(path, data, spell)
        if meta["optimizer"] is None or self.optimizer is None:
            return targets, None
        self._attach_optimizer()
        held = self._optimizer_weights()
        renamed = {spell(name): name for name, _ in self.parameters()}
        # (files from before it was saved: by shape)
        saved = [renamed.get(name, name) for name in meta.get("optimizer_weights", held)]
        if sorted(saved) != sorted(held) or len(set(held)) != len(held) and saved != held:
            raise ValueError(f"{path} holds the optimizer's state of weights {saved}, "
                             f"this model's optimizer trains {held} (another set of frozen layers?)")
        # Slots "<slot>/<i>" of the i-th weight saved; matched by name, as weights are (a functional
        # model saved before it listed its layers in Keras' order holds them in another order).
        position = {name: i for i, name in enumerate(held)} if len(set(held)) == len(held) else None
        opt_arrays = {}
        for key in data.files:
            if key.startswith("opt:"):
                slot, index = key[len("opt:"):].rsplit("/", 1)
                opt_arrays[f"{slot}/{position[saved[int(index)]] if position else index}"] = data[key]
        self.optimizer.check_state_dict(meta["optimizer"], opt_arrays)
        return targets, opt_arrays

    def _names_in_file(self, path, data):
        """The function that gives a weight's name in the file `data` (its own, or for a file saved
        before unnamed layers took Keras 3's names, the name it had then: "conv2dtranspose" for
        "conv2d_transpose", "leaky_relu" for "leaky_re_lu"), once the names are checked."""
        names = [name for name, _ in self.parameters()]
        saved = {k[len("param:"):] for k in data.files if k.startswith("param:")}
        if saved == set(names):
            return lambda name: name
        before = _names_before_keras_3(self)

        def spell(name):
            *layers, weight = name.split("/")
            return "/".join([before.get(layer, layer) for layer in layers] + [weight])

        if saved != {spell(name) for name in names}:
            raise ValueError(f"{path} holds weights for layers {sorted(saved)}, this model has {names}")
        return spell

    def _saved_weights(self, path, data, spell):
        """[(name, the model's array, the file's array)] of every weight in the file `data`, once
        their shapes are checked against the model's (spell: _names_in_file's)."""
        targets = [(name, p.value, data[f"param:{spell(name)}"]) for name, p in self.parameters()]
        # Files from before non-trainable state keep the freshly built statistics.
        targets += [(name, a, data[f"state:{spell(name)}"]) for name, a in self.non_trainable_weights()
                    if f"state:{spell(name)}" in data.files]
        for name, target, value in targets:
            if value.shape != target.shape:
                raise ValueError(f"{path}: weight {name} has shape {value.shape}, the model's has {target.shape}")
        return targets


SAVE_FORMAT = "fastdl.nn/1"


def _names_before_keras_3(model):
    """{name of an unnamed layer in model (or in the models inside it): the name fastdl gave it
    before it took Keras 3's rule}, for the classes whose snake case the rule changed."""
    names = {}
    for layer in model.layers:
        kind = type(layer).__name__
        now = snake_case(kind)
        then = re.sub(r"(?<=[a-z0-9])(?=[A-Z][a-z])", "_", kind).lower()
        suffix = layer.name[len(now):]
        if then != now and layer.name.startswith(now) and re.fullmatch(r"(_\d+)?", suffix):
            names[layer.name] = then + suffix
        if isinstance(layer, Saving):
            names.update(_names_before_keras_3(layer))
    return names


@contextlib.contextmanager
def _open_save(path):
    """(the .npz's arrays, its metadata) of a file `save` wrote; a ValueError naming the file for
    one that is no such file (a truncated or foreign .npz, another kind of file)."""
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path} is not a model saved by fastdl.nn (.npz): {exc}") from exc
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} is not a model saved by fastdl.nn: it holds one array, not an .npz archive")
    with data:
        try:
            meta = json.loads(str(data["meta"]))
        except (KeyError, ValueError) as exc:
            raise ValueError(f"{path} is not a model saved by fastdl.nn: {exc}") from exc
        if not isinstance(meta, dict) or meta.get("format") != SAVE_FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else meta
            raise ValueError(f"{path} is not a model saved by fastdl.nn (format {found!r}, not {SAVE_FORMAT!r})")
        yield data, meta


