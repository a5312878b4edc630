"""fastdl.nn saving, more: Keras' weight order inside nested models, names without "/", the learning
rate in the file, damaged and foreign files, set_weights and load that change nothing when refused,
and EarlyStopping's first epoch as Keras 3 treats it."""

import json
import zipfile

import numpy as np
import pytest

from fastdl import nn
from test_nn_callbacks import Recorder, _compiled, _fit_scripted


def _nested_model(seed=0, dtype="float32"):
    """A Sequential [Dense, BatchNormalization, BatchNormalization] inside a functional model."""
    inner = nn.Sequential([nn.Input((3,)), nn.Dense(4), nn.BatchNormalization(), nn.BatchNormalization()],
                          seed=seed, dtype=dtype)
    z = nn.Input((3,))
    return nn.Model(z, nn.Dense(1)(inner(z)), seed=seed, dtype=dtype), inner


def _distinct_weights(model, dtype=np.float32):
    """Weights for `model` of its shapes, each array a value of its own (its index + 1)."""
    return [np.full(w.shape, i + 1, dtype) for i, w in enumerate(model.get_weights())]


# -- 1. a model inside another lists its weights layer by layer, as Keras ------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nested_model_lists_its_weights_layer_by_layer_as_keras(dtype):
    model, inner = _nested_model(dtype=np.dtype(dtype).name)
    norm = ["gamma", "beta", "moving_mean", "moving_variance"]
    # Keras 3.15's model.weights paths for the same model (its last Dense is "dense_1" there).
    expected_inner = ["dense/kernel", "dense/bias", *[f"batch_normalization/{n}" for n in norm],
                      *[f"batch_normalization_1/{n}" for n in norm]]
    assert [name for name, _ in inner._weight_arrays()] == expected_inner  # alone: unchanged
    assert [name for name, _ in model._weight_arrays()] == (
        [f"sequential/{n}" for n in expected_inner] + ["dense/kernel", "dense/bias"])
    weights = _distinct_weights(model, dtype)
    model.set_weights(weights)
    first_norm = inner.layers[1]
    assert first_norm.gamma.value[0] == 3 and first_norm.moving_mean[0] == 5  # not a gamma as a moving mean
    for given, got in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(given, got)
        assert got.dtype == dtype


def test_nested_model_with_frozen_layers_keeps_keras_order():
    """Frozen layers and models inside models (p20's shape): still layer by layer."""
    inner = nn.Sequential([nn.Input((6,)), nn.Dense(5), nn.BatchNormalization(), nn.Dense(4)])
    z = nn.Input((3,))
    out = nn.Dense(2)(nn.BatchNormalization()(inner(nn.Dense(6)(z))))
    model = nn.Model(z, out, seed=0)
    model.layers[1].trainable = False
    shapes = [w.shape for w in model.get_weights()]
    # Keras 3.15's get_weights shapes for this model.
    assert shapes == [(3, 6), (6,), (6, 5), (5,), (5,), (5,), (5,), (5,), (5, 4), (4,),
                      (4,), (4,), (4,), (4,), (4, 2), (2,)]


def test_nested_model_saves_and_loads_by_name(tmp_path):
    """The file names its weights as before (load matches by name): a round trip keeps all."""
    model, _ = _nested_model()
    model.set_weights(_distinct_weights(model))
    model.save(tmp_path / "m.npz")
    keys = set(np.load(tmp_path / "m.npz").files)
    assert "state:sequential/batch_normalization_1/moving_mean" in keys and "param:dense/kernel" in keys
    other, _ = _nested_model(seed=1)
    other.load(tmp_path / "m.npz")
    for a, b in zip(model.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)


# -- 2. no "/" in names; no two weights under one key -------------------------------------------

def test_a_slash_in_a_name_is_refused_as_keras():
    with pytest.raises(ValueError, match=r"cannot contain character `/`.*'a/x'"):
        nn.Dense(4, name="a/x")
    inner = nn.Sequential([nn.Input((4,)), nn.Dense(4)], name="ab")
    inner.name = "a/b"
    with pytest.raises(ValueError, match=r"cannot contain character `/`.*'a/b'"):
        nn.Sequential([nn.Input((4,)), inner])
    renamed = nn.Dense(4, name="ok")
    renamed.name = "c/d"
    with pytest.raises(ValueError, match=r"cannot contain character `/`.*'c/d'"):
        nn.Sequential([nn.Input((4,)), renamed])


def _colliding_model():
    """A layer renamed "a/x" after it was taken in, beside a model "a" holding a layer "x"."""
    inner = nn.Sequential([nn.Input((4,)), nn.Dense(4, name="x")], name="a", seed=1)
    outer_dense = nn.Dense(4, name="ax")
    model = nn.Sequential([nn.Input((4,)), inner, outer_dense], seed=0)
    model.build()
    outer_dense.name = "a/x"
    return model


def test_two_weights_under_one_key_are_refused_by_save_and_load(tmp_path):
    model = _colliding_model()
    with pytest.raises(ValueError, match="both named 'a/x/kernel'"):
        model.save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()
    good = nn.Sequential([nn.Input((4,)), nn.Sequential([nn.Input((4,)), nn.Dense(4, name="x")], name="a"),
                          nn.Dense(4, name="ax")])
    good.save(tmp_path / "good.npz")
    model = _colliding_model()
    before = model.get_weights()
    with pytest.raises(ValueError, match=r"names two weights \['a/x/bias', 'a/x/kernel'\]"):
        model.load(tmp_path / "good.npz")
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


# -- 3. the learning rate is saved and restored ---------------------------------------------------

class _Divide(nn.Callback):
    """A plateau-style schedule: the rate lives in the optimizer, not in the epoch index."""

    def on_epoch_end(self, epoch, logs=None):
        self.model.optimizer.learning_rate = self.model.optimizer.learning_rate / 10


def _adam_model(seed=0, lr=1e-2, optimizer=nn.Adam):
    model = nn.Sequential([nn.Input((2,)), nn.Dense(1)], seed=seed)
    model.compile(optimizer(lr), "mse")
    return model


@pytest.mark.parametrize("optimizer", [nn.Adam, nn.SGD, nn.RMSprop])
def test_a_learning_rate_a_callback_changed_is_resumed(tmp_path, optimizer):
    x, y = np.random.default_rng(0).random((8, 2)), np.ones((8, 1))
    straight = _adam_model(optimizer=optimizer)
    straight.fit(x, y, epochs=2, callbacks=[_Divide()])
    first = _adam_model(optimizer=optimizer)
    first.fit(x, y, epochs=1, callbacks=[_Divide(), nn.ModelCheckpoint(tmp_path / "ck.npz")])
    resumed = _adam_model(seed=5, optimizer=optimizer).load(tmp_path / "ck.npz")
    assert resumed.optimizer.learning_rate == pytest.approx(1e-3)
    resumed.fit(x, y, epochs=1, callbacks=[_Divide()])
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)


def _rewrite_meta(source, destination, edit):
    """Copy the .npz `source` to `destination` with its metadata changed by edit(meta)."""
    with np.load(source) as data:
        arrays = dict(data)
    meta = json.loads(str(arrays["meta"]))
    edit(meta)
    np.savez(destination, **{**arrays, "meta": np.array(json.dumps(meta))})


def test_a_file_without_a_learning_rate_keeps_the_compiled_one(tmp_path):
    model = _adam_model()
    model.fit(np.ones((4, 2)), np.ones((4, 1)))
    model.optimizer.learning_rate = 1e-5
    model.save(tmp_path / "new.npz")
    # A file written before the rate was saved: the same but for its optimizer's learning_rate.
    _rewrite_meta(tmp_path / "new.npz", tmp_path / "old.npz", lambda meta: meta["optimizer"].pop("learning_rate"))
    assert _adam_model(lr=0.5).load(tmp_path / "new.npz").optimizer.learning_rate == 1e-5
    old = _adam_model(lr=0.5).load(tmp_path / "old.npz")
    assert old.optimizer.learning_rate == 0.5 and old.optimizer.iterations == 1


# -- 4. damaged members -----------------------------------------------------------------------------

def _damage(path, member):
    """Flip the last byte of `member`'s data in the zip archive at path (its CRC no longer fits)."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    offset = info.header_offset
    name_length = int.from_bytes(raw[offset + 26:offset + 28], "little")
    extra_length = int.from_bytes(raw[offset + 28:offset + 30], "little")
    raw[offset + 30 + name_length + extra_length + info.compress_size - 1] ^= 1
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("member", ["param:dense_1/kernel.npy", "opt:m/0.npy", "meta.npy"])
def test_a_damaged_member_is_a_value_error_naming_the_file(tmp_path, member):
    model = nn.Sequential([nn.Input((4,)), nn.Dense(3), nn.Dense(2)], seed=1)
    model.compile(nn.Adam(), "mse")
    model.fit(np.ones((4, 4)), np.ones((4, 2)))
    model.save(tmp_path / "m.npz")
    _damage(tmp_path / "m.npz", member)
    target = nn.Sequential([nn.Dense(3), nn.Dense(2)], seed=2)
    target.compile(nn.Adam(), "mse")
    with pytest.raises(ValueError, match=r"m\.npz is damaged: Bad CRC-32"):
        target.load(tmp_path / "m.npz")
    assert not target.built and target.optimizer.iterations == 0


# -- 5. set_weights checks every value before setting any -----------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_set_weights_refuses_a_value_that_is_no_number_before_setting_any(dtype):
    model = nn.Sequential([nn.Input((4,)), nn.Dense(3), nn.Dense(2)], seed=1, dtype=dtype)
    before = model.get_weights()
    weights = [w + 1 for w in before[:-1]] + [np.array(["0.1", "oops"])]
    with pytest.raises(ValueError, match=rf"weight dense_1/bias takes numbers \({dtype}\)"):
        model.set_weights(weights)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    model.set_weights([w.tolist() for w in before[:-1]] + [[1, 2]])  # lists and ints: converted
    assert model.get_weights()[-1].dtype == dtype and model.get_weights()[-1].tolist() == [1, 2]
    # Numbers as strings, complex numbers (the imaginary part would be dropped), None: refused too.
    for value in (np.array(["0.1", "0.2"]), np.array([1 + 2j, 0]), None, {}):
        with pytest.raises(ValueError, match=rf"weight dense_1/bias takes numbers \({dtype}\), got "):
            model.set_weights(before[:-1] + [value])


# -- 6. load checks the metadata before setting anything ------------------------------------------

@pytest.mark.parametrize("edit, message", [
    (lambda meta: meta.update(epochs_trained=None), "epochs_trained is None"),
    (lambda meta: meta.update(epochs_trained=-1), "epochs_trained is -1"),
    (lambda meta: meta["generators"].update(rng={"bit_generator": "MT19937"}), "generator 'rng' does not fit"),
    (lambda meta: meta.update(generators=[1]), "generator states are"),
    (lambda meta: meta["optimizer"].update(iterations="2"), "step count is '2'"),
    (lambda meta: meta["optimizer"].update(learning_rate=-1.0), "learning_rate must be"),
])
def test_load_checks_the_metadata_before_setting_anything(tmp_path, edit, message):
    source = nn.Sequential([nn.Input((4,)), nn.Dense(3)], seed=1)
    source.compile(nn.Adam(), "mse")
    source.fit(np.ones((4, 4)), np.ones((4, 3)))
    source.save(tmp_path / "a.npz")
    _rewrite_meta(tmp_path / "a.npz", tmp_path / "bad.npz", edit)
    target = nn.Sequential([nn.Input((4,)), nn.Dense(3)], seed=2)
    target.compile(nn.Adam(0.5), "mse")
    before, state = target.get_weights(), target.rng.bit_generator.state
    with pytest.raises(ValueError, match=rf"bad\.npz.*{message}"):
        target.load(tmp_path / "bad.npz")
    for a, b in zip(before, target.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert target.optimizer.iterations == 0 and target.optimizer.learning_rate == 0.5
    assert target.epochs_trained == 0 and target.rng.bit_generator.state == state


# -- 7. Keras and other foreign files --------------------------------------------------------------

def test_load_tells_a_keras_file_and_other_files_apart(tmp_path):
    model = nn.Sequential([nn.Input((4,)), nn.Dense(2)])
    (tmp_path / "model.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(200))
    (tmp_path / "notes.txt").write_text("not a model\n")
    np.save(tmp_path / "array.npy", np.ones(3))
    cases = {"model.weights.h5": r"is a Keras/HDF5 file; fastdl.nn reads only files written by Model.save; "
                                 r"to copy a Keras model's weights use set_weights\(keras_model.get_weights\(\)\)",
             "notes.txt": r"is not a model saved by fastdl.nn \(.npz\)",
             "array.npy": r"is not a model saved by fastdl.nn: it holds one array"}
    for name, message in cases.items():
        with pytest.raises(ValueError, match=f"{name} {message}") as raised:
            model.load(tmp_path / name)
        assert "pickle" not in str(raised.value)


# -- 8. EarlyStopping: the first epoch watched is the best, NaN too (Keras 3) --------------------

def test_early_stopping_takes_a_nan_first_value_as_the_best_as_keras():
    """Keras 3.15 on val_loss [nan, 3, 2, 5, ...], patience 1: two epochs, epoch 0's weights back."""
    model = _compiled()
    recorder = Recorder()
    stopper = nn.EarlyStopping(patience=1, restore_best_weights=True)
    history = _fit_scripted(model, [float("nan"), 3.0, 2.0, 5.0, 6.0, 7.0], [recorder, stopper])
    assert history.epoch == [0, 1]
    assert stopper.best_epoch == 0 and stopper.stopped_epoch == 1
    for restored, best in zip(model.get_weights(), recorder.weights[0]):
        np.testing.assert_array_equal(restored, best)


def test_a_slash_in_a_model_name_is_refused_as_keras():
    with pytest.raises(ValueError, match="cannot contain character `/`"):
        nn.Sequential([nn.Dense(2)], name="a/b")
    x = nn.Input((3,))
    with pytest.raises(ValueError, match="cannot contain character `/`"):
        nn.Model(x, nn.Dense(2)(x), name="a/b")
