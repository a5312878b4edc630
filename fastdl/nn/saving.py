"""Saving: a model's weights as arrays (get_weights, set_weights) and in a file (save, load)."""

import contextlib
import json
import numbers
import re
import tokenize
import zipfile
import zlib
from pathlib import Path

import numpy as np

from fastdl import _device
from fastdl._interrupts import sigint_deferred
from fastdl.nn.module import _keras_list
from fastdl.nn.naming import snake_case


class Saving:
    """The weights' part of fastdl.nn.training.Training: a model with `layers`, `build()`,
    `_generators()`, `epochs_trained` and an `optimizer`."""

    def parameters(self):
        """[(name, Parameter)] of every layer, named "layer/attribute"."""
        if not getattr(self, "built", False):
            self.build()
        return [(f"{layer.name}/{key}", p) for layer in self.layers for key, p in layer.parameters()]

    def non_trainable_state(self):
        """[(name, ndarray)] of every layer's saved-but-not-trained state (BatchNormalization's moving stats)."""
        if not getattr(self, "built", False):
            self.build()
        return [(f"{layer.name}/{key}", a) for layer in self.layers for key, a in layer.non_trainable_state()]

    @_keras_list
    def weights(self):
        """Every weight array, layer by layer as Keras lists them (get_weights' arrays, uncopied)."""
        return [array for _, array in self._weight_arrays()]

    def count_params(self):
        """Trainable and non-trainable, as Keras' Total params."""
        return sum(p.size for _, p in self.parameters()) + sum(a.size for _, a in self.non_trainable_state())

    def _param_totals(self):
        """The Total / Trainable / Non-trainable lines of summary()."""
        total = self.count_params()
        frozen = total - sum(p.size for _, p in self.trainable_parameters())
        return [f"Total params: {total:,}", f"Trainable params: {total - frozen:,}", f"Non-trainable params: {frozen:,}"]

    def _weight_arrays(self):
        """[(name, array)] of every layer's weights as Keras lists them, layer by layer: its
        parameters, then its non-trainable state (BatchNormalization: gamma, beta, moving_mean,
        moving_variance); a model inside this one lists its own layer by layer in its place."""
        if not getattr(self, "built", False):
            self.build()
        arrays = []
        for layer in self.layers:
            if isinstance(layer, Saving):
                own = layer._weight_arrays()
            else:
                own = [(key, p.value) for key, p in layer.parameters()]
                own += layer.non_trainable_state()
            arrays += [(f"{layer.name}/{key}", array) for key, array in own]
        return arrays

    def get_weights(self):
        """Copies of every weight, trainable and not, layer by layer as Keras orders them."""
        return [np.array(_device.host(array)) for _, array in self._weight_arrays()]

    def set_weights(self, weights):
        """Copy `weights` (as `get_weights` returns them) into the model; all are converted to the
        weights' dtypes and checked first, so weights that do not fit (a shape, a value that is no
        number) change nothing. Each value is copied first, so values that are the model's own
        weights (two kernels swapped) are all read before any is written, and all are written
        together (a Ctrl-C waits until the last is)."""
        arrays = self._weight_arrays()
        weights = list(weights)
        if len(weights) != len(arrays):
            raise ValueError(f"expected {len(arrays)} weight arrays, got {len(weights)}")
        converted = []
        for (name, array), value in zip(arrays, weights):
            try:
                given = value if _device.is_device(value) else np.asarray(value)
                if not _real_numbers(given):  # complex (its imaginary part would be dropped), strings, None, a dict
                    raise TypeError(f"{type(value).__name__} of dtype {given.dtype}")
                value = np.array(value, dtype=np.dtype(array.dtype))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"weight {name} takes numbers ({np.dtype(array.dtype)}), got {exc}") from exc
            if value.shape != array.shape:
                raise ValueError(f"weight {name} has shape {array.shape}, got {value.shape}")
            converted.append(value)
        with sigint_deferred():
            for (_, array), value in zip(arrays, converted):
                _device.assign(array, value)
            self._unfinished = None  # other weights: fit does not go on with an epoch they did not train in

    def save(self, path):
        """Write the weights, the optimizer state and the training generator's state to one .npz.

        The file is written beside its place and renamed into it: a crash while saving (a
        ModelCheckpoint's, say) leaves the previous file whole.
        """
        from fastdl.data._files import atomic_write

        arrays = {}
        for key, array in [(f"param:{name}", p.value) for name, p in self.parameters()] + [
                (f"state:{name}", a) for name, a in self.non_trainable_state()]:
            if key in arrays:  # (a "/" in a name given before names were checked)
                raise ValueError(f"two weights of model {self.name!r} are both named {key.split(':', 1)[1]!r}: "
                                 "give their layers names that make them distinct")
            arrays[key] = _device.host(array)
        generators = {path: generator.bit_generator.state for path, generator in self._generators().items()}
        meta = {"format": SAVE_FORMAT, "input_shape": list(self.input_shape), "epochs_trained": self.epochs_trained,
                "rng": generators["rng"], "generators": generators, "optimizer": None}
        unfinished = getattr(self, "_unfinished", None)  # an epoch over arrays that Ctrl-C stopped: fit goes on from it
        if unfinished is not None and unfinished.meta() is not None:
            meta["unfinished_epoch"] = unfinished.meta()
            arrays["unfinished:order"] = np.asarray(unfinished.order)
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
        """Read what `save` wrote into this model (same architecture); restores the optimizer when
        compiled: its slots, step count and learning rate (as Keras restores its variables: a rate
        a callback changed; files saved before the rate was keep the compiled one). Its other
        hyper-parameters (momentum, rho, beta_1, beta_2, epsilon) stay the compiled ones, as Keras'
        load_weights leaves them.

        Everything is read and checked before anything is set: a file that does not fit the model
        (other layers or shapes, another optimizer's state, a bad epoch count or generator state)
        or whose bytes are damaged changes nothing, an unbuilt model and the models inside it stay
        unbuilt.
        """
        with _open_save(path) as (data, meta):
            if getattr(self, "built", False):
                targets, opt_arrays, epochs, states, unfinished = self._checked_file(path, data, meta)
            else:
                # Built to be checked (for its own input shape, else the file's); where the file does
                # not fit, unbuilt again, and its generator's draws of initial weights undone.
                from fastdl.nn.model import build_undo  # (model.py imports this module)

                undo = build_undo(self)
                try:
                    self.build(meta["input_shape"] if self.input_shape is None else self.input_shape)
                    targets, opt_arrays, epochs, states, unfinished = self._checked_file(path, data, meta)
                except BaseException:
                    undo()
                    raise
        with sigint_deferred():  # all of the file or none of it: a Ctrl-C waits until the last value is set
            for _, target, value in targets:
                _device.assign(target, value)
            if opt_arrays is not None:
                self.optimizer.load_state_dict(meta["optimizer"], opt_arrays)
            self.epochs_trained, self._unfinished = epochs, unfinished
            for path_in_model, generator in self._generators().items():
                if path_in_model in states:
                    generator.bit_generator.state = states[path_in_model]
        return self

    def save_weights(self, path):
        """Keras' name for :meth:`save` (fastdl's file holds the optimizer state and epoch count
        too). A Keras file name (.h5, .keras) is refused: the file is an .npz, not HDF5."""
        if str(path).lower().endswith((".h5", ".keras")):
            raise ValueError(f"fastdl writes its weights as an .npz archive, not Keras' HDF5 or .keras: name the "
                             f"file {Path(str(path)).name.split('.')[0]}.weights.npz or the like (got {path})")
        self.save(path)

    def load_weights(self, path):
        """Keras' name for :meth:`load`."""
        return self.load(path)

    def _optimizer_weights(self):
        """The names of the weights the optimizer trains, in its order (its state's)."""
        names = {id(p): name for name, p in self.parameters()}
        return [names.get(id(p), "?") for p in self.optimizer.params]

    def _checked_file(self, path, data, meta):
        """(the weights to set, as _saved_weights gives them; the optimizer's saved slots, None
        where there are none to restore; the epoch count; the generators' states by path in the
        model; the epoch Ctrl-C stopped, as batches.Unfinished, or None), once all of the file is
        checked against the model."""
        spell = self._names_in_file(path, data)
        targets = self._saved_weights(path, data, spell)
        epochs, states = self._checked_meta(path, meta)
        unfinished = _checked_unfinished(path, data, meta, epochs)
        if meta.get("optimizer") is None or self.optimizer is None:
            return targets, None, epochs, states, unfinished
        self._attach_optimizer()
        held = self._optimizer_weights()
        renamed = {spell(name): name for name, _ in self.parameters()}
        # (files from before it was saved: by shape)
        saved = [renamed.get(name, name) for name in meta.get("optimizer_weights", held)]
        # Where names repeat ("?": weights the model does not list), only the order tells them apart: it must agree too.
        if sorted(saved) != sorted(held) or (len(set(held)) != len(held) and saved != held):
            raise ValueError(f"{path} holds the optimizer's state of weights {saved}, "
                             f"this model's optimizer trains {held} (another set of frozen layers?)")
        # Slots "<slot>/<i>" of the i-th weight saved; matched by name, as weights are (a functional
        # model saved before it listed its layers in Keras' order holds them in another order).
        position = {name: i for i, name in enumerate(held)} if len(set(held)) == len(held) else None
        opt_arrays = {}
        for key in data.files:
            if key.startswith("opt:"):
                slot, index = key[len("opt:"):].rsplit("/", 1)
                opt_arrays[f"{slot}/{position[saved[int(index)]] if position else index}"] = _member(path, data, key)
        try:
            self.optimizer.check_state_dict(meta["optimizer"], opt_arrays)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
        return targets, opt_arrays, epochs, states, unfinished

    def _checked_meta(self, path, meta):
        """(the epoch count, {path in the model: generator state}) of the file's metadata `meta`,
        each state checked on a scratch generator of the model's kind; a ValueError naming the file."""
        epochs = meta.get("epochs_trained")
        if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 0:
            raise ValueError(f"{path} is damaged: its epochs_trained is {epochs!r}, not an integer >= 0")
        # Files from before every generator was saved hold the model's own alone.
        states = meta.get("generators", {"rng": meta.get("rng")})
        if not isinstance(states, dict):
            raise ValueError(f"{path} is damaged: its generator states are {states!r}, not a dict")
        for path_in_model, generator in self._generators().items():
            if path_in_model in states:
                scratch = type(generator.bit_generator)()
                try:
                    scratch.state = states[path_in_model]
                except (TypeError, ValueError, KeyError) as exc:
                    raise ValueError(f"{path} is damaged: the state of generator {path_in_model!r} does not fit "
                                     f"its {type(scratch).__name__}: {exc!r}") from exc
        return int(epochs), states

    def _names_in_file(self, path, data):
        """The function that gives a weight's name in the file `data` (its own, or for a file saved
        before unnamed layers took Keras 3's names, the name it had then: "conv2dtranspose" for
        "conv2d_transpose", "leaky_relu" for "leaky_re_lu"), once the names are checked."""
        names = [name for name, _ in self.parameters()]
        every = names + [name for name, _ in self.non_trainable_state()]
        if len(set(every)) != len(every):  # (a "/" in a name given before names were checked)
            twice = sorted({name for name in every if every.count(name) > 1})
            raise ValueError(f"model {self.name!r} names two weights {twice}: give their layers names that make "
                             f"them distinct before loading {path}")
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
        targets = [(name, p.value, _member(path, data, f"param:{spell(name)}")) for name, p in self.parameters()]
        # Files from before non-trainable state keep the freshly built statistics.
        targets += [(name, a, _member(path, data, f"state:{spell(name)}")) for name, a in self.non_trainable_state()
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


# The first bytes of the files load may be given: an .npz (a zip archive, maybe empty), a
# single .npy array, an HDF5 file (Keras' .weights.h5 and .h5).
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
NPY_MAGIC = b"\x93NUMPY"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


@contextlib.contextmanager
def _open_save(path):
    """(the .npz's arrays, its metadata) of a file `save` wrote; a ValueError naming the file for
    one that is no such file (a truncated or foreign .npz, a Keras file, another kind of file) or
    whose bytes are damaged. The kind is told from the first bytes, before numpy reads it (its
    message for a file that is no .npz suggests unpickling it)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ValueError(f"{path} is not a model saved by fastdl.nn (.npz): {exc}") from exc
    if head.startswith(HDF5_MAGIC):
        raise ValueError(f"{path} is a Keras/HDF5 file; fastdl.nn reads only files written by Model.save; to copy "
                         "a Keras model's weights use set_weights(keras_model.get_weights())")
    if head.startswith(NPY_MAGIC):
        raise ValueError(f"{path} is not a model saved by fastdl.nn: it holds one array (.npy), not an .npz archive")
    if not head.startswith(ZIP_MAGIC):
        raise ValueError(f"{path} is not a model saved by fastdl.nn (.npz): "
                         + (f"it starts with {head!r}, not a zip archive's bytes" if head else "it is empty"))
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path} is not a model saved by fastdl.nn (.npz), or a damaged one: {exc}") from exc
    with data:
        if "meta" not in data.files:
            raise ValueError(f"{path} is not a model saved by fastdl.nn: it holds no metadata ('meta')")
        try:
            meta = json.loads(str(_member(path, data, "meta")))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not a model saved by fastdl.nn: {exc}") from exc
        if not isinstance(meta, dict) or meta.get("format") != SAVE_FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else meta
            raise ValueError(f"{path} is not a model saved by fastdl.nn (format {found!r}, not {SAVE_FORMAT!r})")
        yield data, meta


def _member(path, data, key):
    """The array `key` of the .npz `data` read from `path`; a ValueError naming the file where its
    bytes are damaged (a bad CRC, a broken compressed stream, a short member) or do not read as an array."""
    try:
        return data[key]
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise ValueError(f"{path} is damaged: {exc}") from exc
    except (ValueError, SyntaxError, TypeError, tokenize.TokenError) as exc:
        # numpy re-parses a damaged member's header with tokenize: it fails in any of these ways
        raise ValueError(f"{path} is damaged: its {key} does not read as an array "
                         f"({type(exc).__name__}: {exc})") from exc


def _real_numbers(array):
    """Whether a host array holds real numbers (an object array: Python or NumPy ones); a device
    array does."""
    if _device.is_device(array):
        return True
    if array.dtype == object:
        return all(isinstance(value, numbers.Real) for value in array.flat)
    return array.dtype.kind in "biuf"


def _checked_unfinished(path, data, meta, epochs):
    """The epoch the file's model was stopped in (batches.Unfinished), or None; a ValueError naming
    the file where what it says of it does not hold together."""
    from fastdl.nn.batches import Unfinished

    info = meta.get("unfinished_epoch")
    if info is None:
        return None
    order = _member(path, data, "unfinished:order") if "unfinished:order" in data.files else None
    counts = ("epoch", "batch", "seen", "batch_size")
    fits = (isinstance(info, dict) and all(isinstance(info.get(key), int) and not isinstance(info.get(key), bool)
                                           for key in counts)
            and isinstance(info.get("shuffle"), bool) and isinstance(info.get("totals"), dict)
            and all(isinstance(value, (int, float)) for value in info["totals"].values())
            and isinstance(info.get("rates"), list) and len(info["rates"]) == 2
            and all(isinstance(rate, (int, float)) for rate in info["rates"])
            and isinstance(info.get("fingerprint"), str) and isinstance(info.get("compiled"), str)
            and order is not None and order.ndim == 1 and order.dtype.kind in "iu")
    if fits:
        n = order.shape[0]
        # (an epoch past the count: a fit with initial_epoch)
        fits = (info["epoch"] >= epochs and info["batch_size"] >= 1 and 1 <= info["batch"] * info["batch_size"] < n
                + info["batch_size"] and info["seen"] == min(info["batch"] * info["batch_size"], n)
                and np.array_equal(np.sort(order), np.arange(n)))
    if not fits:
        raise ValueError(f"{path} is damaged: what it keeps of the epoch its model was stopped in does not hold "
                         "together")
    return Unfinished.from_meta(info, order.astype(np.int64))
