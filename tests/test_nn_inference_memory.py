"""A model holds no batch between inference calls: the layers kept the last call's input,
outputs and pooling codes for a backward pass that never comes (a model(X) of 4,000 course-sized
images kept 311 MB, and X itself), until the next call."""

import gc
import threading
import weakref

import numpy as np
import pytest

from fastdl import nn
from fastdl.nn.training import Training
from fastdl.repro.a6_models import build_vae


def _cnn(backend):
    model = nn.Sequential([
        nn.Input((12, 12, 2)), nn.Conv2D(8, 3, padding="same", activation="relu"), nn.MaxPool2D(2),
        nn.BatchNormalization(), nn.Conv2D(8, 3, padding="same"), nn.Activation("relu"),
        nn.MaxPooling2D(2), nn.Flatten(), nn.Dense(6, activation="relu"), nn.Dense(3, activation="softmax"),
    ], seed=0, backend=backend)
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _batch_arrays(model, n_rows):
    """(layer name, attribute) of every array a layer (nested models' too) holds with n_rows rows."""
    found = []
    for layer in model.layers:
        if isinstance(layer, Training):
            found += _batch_arrays(layer, n_rows)
        for name, value in vars(layer).items():
            if name != "_buffers" and isinstance(value, np.ndarray) and value.ndim and value.shape[0] == n_rows:
                found.append((layer.name, name))
    return found


CALLS = {
    "call": lambda model, x, y: model(x),
    "predict": lambda model, x, y: model.predict(x, batch_size=len(x)),
    "predict_on_batch": lambda model, x, y: model.predict_on_batch(x),
    "evaluate": lambda model, x, y: model.evaluate(x, y, batch_size=len(x)),
    "test_on_batch": lambda model, x, y: model.test_on_batch(x, y),
}


@pytest.mark.parametrize("call", CALLS)
def test_inference_calls_leave_no_batch_on_the_layers(backend, call):
    model = _cnn(backend)
    x = np.random.default_rng(0).random((37, 12, 12, 2)).astype(np.float32)
    y = np.arange(37) % 3
    model.train_on_batch(x[:5], y[:5])
    expected = model.predict(x)
    given = weakref.ref(x)
    CALLS[call](model, x, y)
    assert _batch_arrays(model, 37) == []
    del x
    gc.collect()
    assert given() is None  # the caller's array too
    # Training and inference go on as before.
    x = np.random.default_rng(0).random((37, 12, 12, 2)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(x), expected)
    model.train_on_batch(x[:5], y[:5])


def test_a_vaes_nested_decoder_and_sampling_keep_no_batch(backend):
    vae, encoder, decoder = build_vae((16, 16, 3), seed=0, backend=backend)
    x = np.random.default_rng(1).random((9, 16, 16, 3)).astype(np.float32)
    vae.predict(x)
    encoder.predict(x)
    decoder.predict(np.zeros((9, decoder.input_shape[-1]), np.float32))
    for model in (vae, encoder, decoder):
        assert _batch_arrays(model, 9) == []


def test_a_layer_called_alone_keeps_what_its_backward_needs(backend):
    # A student's forward then backward, without a model: the layer keeps its pass, as before.
    layer = nn.Dense(4, backend=backend)
    x = np.random.default_rng(2).random((5, 3)).astype(np.float32)
    layer(x)
    assert layer.backward(np.ones((5, 4), np.float32)).shape == (5, 3)


def test_threads_predicting_together_get_their_answers(backend):
    # The layers forget a pass only when the last call on the model ends.
    model = _cnn(backend)
    batches = [np.random.default_rng(seed).random((4 + seed, 12, 12, 2)).astype(np.float32) for seed in range(6)]
    expected = [model.predict(x) for x in batches]
    errors, start = [], threading.Barrier(3)

    def work(offset):
        start.wait()
        for round_ in range(10):
            i = (offset + round_) % len(batches)
            if not np.array_equal(model.predict(batches[i]), expected[i]):
                errors.append(i)

    threads = [threading.Thread(target=work, args=(offset,)) for offset in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and _batch_arrays(model, 4) == []
