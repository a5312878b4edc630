"""fastdl.nn review fixes: a refused load leaves an unbuilt model unbuilt (its input shape known or
not), one improvement rule for EarlyStopping and ModelCheckpoint (Keras 3's), a model is unbuilt
from the start, and the initialisers and naming helpers in their own modules."""

import numpy as np
import pytest

from fastdl import nn
from fastdl.nn import initializers, module, naming
from test_nn_callbacks import Recorder, _compiled, _fit_scripted


def _unbuilt(shape_from, backend, dtype, seed=0):
    """Sequential [Dense(3), Dense(2)], unbuilt, its input shape (4,) given by the first layer, by
    an Input, or not at all (compiled only where it is unknown: compile builds a model that knows it)."""
    first = [nn.Dense(3, input_shape=(4,))] if shape_from == "layer" else \
        [nn.Input((4,)), nn.Dense(3)] if shape_from == "input" else [nn.Dense(3)]
    model = nn.Sequential([*first, nn.Dense(2)], seed=seed, dtype=np.dtype(dtype).name, backend=backend)
    if shape_from == "none":
        model.compile(nn.SGD(lr=0.1), "mse")
    return model


# -- a refused load leaves an unbuilt model as it was ---------------------------------------------

@pytest.mark.parametrize("shape_from", ["layer", "input", "none"])
def test_a_refused_load_leaves_an_unbuilt_model_unbuilt(tmp_path, backend, dtype, shape_from):
    path = tmp_path / "other.npz"
    other = nn.Sequential([nn.Input((4,)), nn.Dense(5), nn.Dense(2)], seed=1, dtype=np.dtype(dtype).name)
    other.compile(nn.SGD(lr=0.1), "mse")
    other.save(path)  # dense/kernel (4, 5): no fit for Dense(3)

    model = _unbuilt(shape_from, backend, dtype)
    state = model.rng.bit_generator.state
    with pytest.raises(ValueError, match=r"weight dense/kernel has shape \(4, 5\)"):
        model.load(path)
    assert not model.built and not any(layer.built for layer in model.layers)
    assert model.input_shape == (None if shape_from == "none" else (4,))
    assert model.rng.bit_generator.state == state  # no initial weights drawn

    # Built and trained afterwards, it is the model that was never given the file.
    untouched = _unbuilt(shape_from, backend, dtype)
    x, y = np.random.default_rng(2).normal(size=(16, 4)), np.random.default_rng(3).normal(size=(16, 2))
    for m in (model, untouched):
        m.build((4,))
        m.compile(nn.SGD(lr=0.1), "mse")
        m.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), untouched.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape_from", ["layer", "input", "none"])
def test_a_load_that_fits_builds_an_unbuilt_model(tmp_path, backend, dtype, shape_from):
    path = tmp_path / "same.npz"
    source = _unbuilt("input", backend, dtype, seed=5)
    source.build()
    source.save(path)
    model = _unbuilt(shape_from, backend, dtype).load(path)
    assert model.built and model.input_shape == (4,)
    for a, b in zip(model.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(a, b)


# -- one improvement rule (Keras 3's) for EarlyStopping and ModelCheckpoint ------------------------

@pytest.mark.parametrize("mode, first", [("min", -np.inf), ("max", np.inf)])
def test_checkpoint_saves_a_first_value_that_beats_keras_initial_best(tmp_path, mode, first):
    """Keras 3's ModelCheckpoint starts from best = inf (-inf in max mode): a first value of -inf
    (inf) beats it and is saved; a NaN never is."""
    checkpoint = nn.ModelCheckpoint(tmp_path / "best.npz", save_best_only=True, mode=mode)
    assert checkpoint.best == (np.inf if mode == "min" else -np.inf)
    _fit_scripted(_compiled(), [first, 0.5], [checkpoint])
    assert checkpoint.best == first and checkpoint.last_saved == str(tmp_path / "best.npz")
    assert _compiled(seed=9).load(tmp_path / "best.npz").epochs_trained == 1  # epoch 1's model


def test_checkpoint_never_saves_a_nan():
    checkpoint = nn.ModelCheckpoint("never-{epoch}.npz", save_best_only=True)
    _fit_scripted(_compiled(), [float("nan")], [checkpoint])
    assert checkpoint.last_saved is None and checkpoint.best == np.inf


def test_early_stopping_nan_after_the_first_epoch_never_improves():
    """Keras 3: only the first value watched improves whatever it is; a later NaN does not."""
    recorder = Recorder()
    stopper = nn.EarlyStopping(patience=2, restore_best_weights=True)
    history = _fit_scripted(_compiled(), [1.0, float("nan"), float("nan"), 0.5], [recorder, stopper])
    assert history.epoch == [0, 1, 2] and stopper.best == 1.0
    assert stopper.best_epoch == 0 and stopper.stopped_epoch == 2


def test_early_stopping_min_delta_and_baseline_as_keras():
    """As Keras 3: an improvement beats the best by more than min_delta, and restarts the wait only
    where it beats the baseline by more than min_delta too."""
    stopper = nn.EarlyStopping(min_delta=0.1, patience=2)
    history = _fit_scripted(_compiled(), [1.0, 0.95, 0.85, 0.8, 0.79, 0.5], [stopper])
    assert history.epoch == [0, 1, 2, 3, 4] and stopper.best == 0.85 and stopper.best_epoch == 2
    # 0.45 improves on 0.8 but is within min_delta of the baseline 0.5: the wait goes on.
    stopper = nn.EarlyStopping(min_delta=0.1, patience=2, baseline=0.5)
    history = _fit_scripted(_compiled(), [1.0, 0.8, 0.45, 0.44, 0.43], [stopper])
    assert history.epoch == [0, 1, 2, 3] and stopper.best == 0.45 and stopper.stopped_epoch == 3


# -- a model is unbuilt from the start; summary builds it ------------------------------------------

def test_a_new_model_is_unbuilt_and_summary_builds_it(backend, dtype):
    assert nn.Sequential().built is False
    with pytest.raises(ValueError, match="the input shape is unknown"):
        nn.Sequential().summary(print_fn=None)
    model, built = (_unbuilt("layer", backend, dtype) for _ in range(2))
    assert "Total params: 23" in model.summary(print_fn=None) and model.built
    built.build()
    for a, b in zip(model.get_weights(), built.get_weights()):
        np.testing.assert_array_equal(a, b)


# -- initialisers and naming in their own modules, still importable from module ----------------------

def test_module_re_exports_the_initializers_and_naming_helpers():
    for name in ("INITIALIZERS", "get_initializer", "glorot_uniform", "he_normal"):
        assert getattr(module, name) is getattr(initializers, name)
    for name in ("snake_case", "default_layer_name", "unnamed", "check_name", "take_name"):
        assert getattr(module, name) is getattr(naming, name)
