"""fastdl.nn's public API as its docstrings describe it: the names they point to exist, their
Parameters sections hold parameters only, compile takes Keras 3's order, and the messages users
read say what happened."""

import inspect
import re

import numpy as np
import pytest

import fastdl
import fastdl.nn as nn
from fastdl._validation import NonFiniteError as _NonFiniteError
from fastdl.nn.training import Training


# -- NonFiniteError is public -----------------------------------------------------------------------

def _diverging_model():
    """A model whose first step's loss is infinite: its first kernel's weights of 1e38 overflow."""
    model = nn.Sequential([nn.Input(3), nn.Dense(4), nn.Dense(1)], seed=0)
    model.compile("sgd", "mse")
    weights = model.get_weights()
    weights[0] = np.full_like(weights[0], 1e38)
    model.set_weights(weights)
    return model, np.arange(12.0).reshape(4, 3), np.zeros((4, 1))


def test_non_finite_error_is_exported_from_fastdl_and_fastdl_nn():
    assert fastdl.NonFiniteError is nn.NonFiniteError is _NonFiniteError
    assert "NonFiniteError" in fastdl.__all__ and "NonFiniteError" in nn.__all__
    assert issubclass(nn.NonFiniteError, ValueError)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_fit_raises_the_exported_non_finite_error():
    model, x, y = _diverging_model()
    with pytest.raises(fastdl.NonFiniteError, match=r"^epoch 1, batch 1: the loss is"):
        model.fit(x, y)


# -- docstrings -----------------------------------------------------------------------------------

_SECTIONS = ("Parameters", "Returns", "Raises", "Notes", "Attributes", "Examples", "See Also", "Yields")


def _section(doc, title):
    """The lines of a numpydoc section (None where the docstring has none)."""
    lines = inspect.cleandoc(doc or "").splitlines()
    for i, line in enumerate(lines[:-1]):
        if line == title and set(lines[i + 1]) == {"-"}:
            body = []
            for j in range(i + 2, len(lines)):
                if lines[j] in _SECTIONS and j + 1 < len(lines) and set(lines[j + 1]) == {"-"}:
                    break
                body.append(lines[j])
            return body
    return None


def _documented(doc):
    """The names a Parameters section documents: its unindented lines ("name : type")."""
    names = []
    for line in _section(doc, "Parameters") or []:
        if line and not line[0].isspace():
            names += [name.strip() for name in line.split(" : ")[0].split(",")]
    return names


def _accepted(function):
    return [name for name, p in inspect.signature(function).parameters.items()
            if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]


def _takes_layer_keywords(cls):
    """Whether a layer class hands **kwargs on to Layer (input_shape, name, backend, trainable)."""
    return issubclass(cls, nn.Layer) and any(p.kind == p.VAR_KEYWORD
                                             for p in inspect.signature(cls.__init__).parameters.values())


def _public_callables():
    """pytest params (docstring, the names it may document) for nn's public classes and the
    models' public methods."""
    found = []
    for name in nn.__all__:
        obj = getattr(nn, name)
        if inspect.isclass(obj) and obj.__init__ is not object.__init__:
            accepted = _accepted(obj.__init__)
            if _takes_layer_keywords(obj):
                accepted += _accepted(nn.Layer.__init__)
            found.append(pytest.param(obj.__doc__, accepted, id=name))
    for cls in (nn.Sequential, nn.Model):
        for name in ("compile", "fit", "evaluate", "predict", "train_on_batch"):
            method = getattr(cls, name)
            found.append(pytest.param(method.__doc__, _accepted(method), id=f"{cls.__name__}.{name}"))
    return found


@pytest.mark.parametrize("doc, accepted", _public_callables())
def test_parameters_sections_hold_only_parameters(doc, accepted):
    # A paragraph inside Parameters renders as a parameter named after its first words.
    stray = [name for name in _documented(doc) if name not in accepted]
    assert not stray, f"its Parameters section documents {stray}, which it does not take ({accepted})"


@pytest.mark.parametrize("obj", [nn.SGD, nn.RMSprop, nn.Adam, nn.Dropout, nn.MaxPool2D, nn.AveragePooling2D,
                                 nn.GlobalAveragePooling2D, nn.GlobalMaxPooling2D, nn.Flatten, nn.Reshape,
                                 nn.UpSampling2D, nn.Layer, nn.Sequential.compile, nn.Model.compile],
                         ids=lambda obj: obj.__qualname__)
def test_every_argument_is_documented(obj):
    function = obj.__init__ if inspect.isclass(obj) else obj
    assert set(_documented(obj.__doc__)) == set(_accepted(function))


@pytest.mark.parametrize("optimizer, default", [(nn.SGD, 0.01), (nn.RMSprop, 0.001), (nn.Adam, 0.001)])
def test_optimizer_help_opens_with_what_it_is_and_states_the_default_rate(optimizer, default):
    name = optimizer.__name__
    assert optimizer.__doc__.startswith(f"{name} optimizer (Keras' {name}): ")
    assert optimizer().learning_rate == default
    assert f"lr : float >= 0, default {default}" in optimizer.__doc__
    with pytest.raises(ValueError, match="not both"):
        optimizer(0.1, learning_rate=0.1)


def test_fit_documents_what_it_returns_and_raises():
    assert _section(Training.fit.__doc__, "Returns")[0] == "History"
    raises = [line for line in _section(Training.fit.__doc__, "Raises") if line and not line[0].isspace()]
    assert raises == ["NonFiniteError", "ValueError"]


def test_loss_docs_point_to_the_readme_paragraph_and_to_no_private_class():
    with open("README.md", encoding="utf-8") as readme:
        assert "\nA loss or a layer of your own:" in readme.read()
    assert "README: \"A loss or a layer of your own\"" in inspect.cleandoc(nn.Loss.__doc__).replace("\n", " ")
    with pytest.raises(TypeError, match="README: 'A loss or a layer of your own'"):
        nn.Sequential([nn.Dense(1)]).compile("sgd", lambda y_true, y_pred: 0.0)
    with pytest.raises(NotImplementedError, match="README: 'A loss or a layer of your own'"):
        nn.Layer().backward(np.zeros(1))
    for loss in (nn.SparseCategoricalCrossentropy, nn.CategoricalCrossentropy):
        assert "_CrossEntropy" not in loss.__doc__ and "log-sum-exp" in loss.__doc__


# -- compile in Keras 3's order ---------------------------------------------------------------------

def _sequential(**compile_kwargs):
    model = nn.Sequential([nn.Input(3), nn.Dense(4, activation="relu"), nn.Dense(2, activation="softmax")], seed=0)
    model.compile(nn.SGD(0.1), "sparse_categorical_crossentropy", **compile_kwargs)
    return model


def _functional(**compile_kwargs):
    inputs = nn.Input((3,))
    outputs = nn.Dense(2, activation="softmax")(nn.Dense(4, activation="relu")(inputs))
    model = nn.Model(inputs, outputs, seed=0)
    model.compile(nn.SGD(0.1), "sparse_categorical_crossentropy", **compile_kwargs)
    return model


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(16, 3)).astype(np.float32), rng.integers(0, 2, 16)


def test_compile_takes_keras_3_order():
    for model_class in (nn.Sequential, nn.Model):
        assert _accepted(model_class.compile) == ["optimizer", "loss", "loss_weights", "metrics"]


@pytest.mark.parametrize("make", [_sequential, _functional], ids=["Sequential", "Model"])
@pytest.mark.parametrize("metrics", [["accuracy"], "accuracy", ("acc",)])
def test_metrics_in_the_place_of_loss_weights_is_a_type_error(make, metrics):
    model = make()
    optimizer = model.optimizer
    with pytest.raises(TypeError, match=r"third argument is loss_weights, as in Keras 3 .*metrics="):
        model.compile(nn.SGD(0.1), "sparse_categorical_crossentropy", metrics)
    assert model.optimizer is optimizer  # nothing set
    model.compile(nn.SGD(0.1), "sparse_categorical_crossentropy", None, metrics)
    assert model.metrics_names == ["loss", metrics if isinstance(metrics, str) else metrics[0]]


@pytest.mark.parametrize("loss_weights", [2.5, [2.5], {"dense_1": 2.5}, np.float32(2.5)])
def test_sequential_loss_weights_scale_its_loss_and_gradients_as_a_models(loss_weights):
    x, y = _data()
    plain, weighted = _sequential(), _sequential(loss_weights=loss_weights)
    functional = _functional(loss_weights=2.5)
    assert weighted.loss_weight == 2.5
    np.testing.assert_allclose(weighted.evaluate(x, y), 2.5 * plain.evaluate(x, y), rtol=1e-6)
    np.testing.assert_allclose(weighted.evaluate(x, y), functional.evaluate(x, y), rtol=1e-6)
    # One SGD step: the weighted loss's step is 2.5 times the plain one's, and the Model's.
    before = plain.get_weights()
    for model in (plain, weighted, functional):
        model.train_on_batch(x, y)
    for b, p, w, f in zip(before, plain.get_weights(), weighted.get_weights(), functional.get_weights()):
        np.testing.assert_allclose(w - b, 2.5 * (p - b), rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(w, f, rtol=1e-6, atol=1e-7)


def test_sequential_loss_weights_are_checked():
    for bad, match in [(-1.0, "finite number >= 0"), ([1.0, 2.0], "2 entries for 1 outputs"),
                       ({"hour": 1.0}, "unknown outputs"), (np.nan, "finite number >= 0")]:
        with pytest.raises(ValueError, match=match):
            _sequential(loss_weights=bad)


# -- messages -------------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_train_on_batch_errors_name_the_call_and_say_the_step_was_not_taken():
    model, x, y = _diverging_model()
    weights = model.get_weights()
    with pytest.raises(nn.NonFiniteError, match=r"^train_on_batch: the loss is .*; the step was not taken \(lower"):
        model.train_on_batch(x, y)
    with pytest.raises(ValueError, match=r"^train_on_batch: the input batch contains NaN or infinity; the step was "
                                         r"not taken$"):
        model.train_on_batch(np.full_like(x, np.nan), y)
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert model.optimizer.iterations == 0 and model.epochs_trained == 0


@pytest.mark.parametrize("mode, values, first", [("min", [1.2, 1.5], "inf"), ("max", [0.25, 0.125], "-inf")])
def test_model_checkpoint_first_best_prints_as_keras(tmp_path, capsys, mode, values, first):
    model = _sequential()
    x, y = _data()

    class Script(nn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["score"] = values[epoch]

    path = tmp_path / "best.npz"
    model.fit(x, y, epochs=2, callbacks=[Script(), nn.ModelCheckpoint(path, "score", 1, True, mode=mode)])
    assert capsys.readouterr().out.splitlines() == [
        f"Epoch 1: score improved from {first} to {values[0]:.5f}, saving model to {path}",
        f"Epoch 1: finished saving model to {path}",
        f"Epoch 2: score did not improve from {values[0]:.5f}"]


def test_an_empty_list_in_loss_weights_place_is_taken_for_metrics():
    """compile(opt, loss, []) in tf.keras 2's order: the TypeError that says metrics=, not a count."""
    model = nn.Sequential([nn.Input((3,)), nn.Dense(2)])
    with pytest.raises(TypeError, match="third argument is loss_weights"):
        model.compile("sgd", "mse", [])
