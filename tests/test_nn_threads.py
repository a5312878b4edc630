"""Inference shared between threads: predict and evaluate on one model from several threads give
the serial answers, bit for bit (a web server shares its model this way), and a loss never reads
outputs of another batch's size."""

import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from fastdl import nn

N_THREADS = 4
BATCH = 7  # predict's and evaluate's batch size: the batches of a call differ in size at its end


def mlp(backend, dtype):
    model = nn.Sequential([nn.Dense(16, activation="relu", input_shape=(12,)), nn.Dense(5, activation="softmax")],
                          seed=0, backend=backend, dtype=dtype)
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def cnn(backend, dtype):
    model = nn.Sequential([
        nn.Conv2D(4, 3, padding="same", activation="relu", input_shape=(8, 8, 1)), nn.BatchNormalization(),
        nn.MaxPool2D(2),  # (fused with the convolution before it)
        nn.Conv2D(4, 3, activation="relu"), nn.MaxPool2D(2), nn.Conv2D(3, 1, activation="softmax"), nn.Flatten(),
        nn.Dropout(0.3), nn.Dense(5, activation="softmax")], seed=0, backend=backend, dtype=dtype)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def functional(backend, dtype):
    inputs = nn.Input((12,))
    hidden = nn.Dense(16, activation="relu")(inputs)
    model = nn.Model(inputs, {"a": nn.Dense(5, activation="softmax", name="a")(hidden),
                              "b": nn.Dense(3, activation="sigmoid", name="b")(hidden)},
                     seed=0, backend=backend, dtype=dtype)
    model.compile("sgd", {"a": "sparse_categorical_crossentropy", "b": "binary_crossentropy"})
    return model


def _data(make, backend, dtype, rng):
    model = make(backend, dtype)
    shape = (8, 8, 1) if make.__name__ == "cnn" else (12,)
    xs = [rng.random((n, *shape)).astype(dtype) for n in (1, 3, 9, 16, 23, 40)]
    if make.__name__ == "functional":
        ys = [{"a": rng.integers(0, 5, len(x)), "b": rng.integers(0, 2, (len(x), 3)).astype(float)} for x in xs]
    else:
        ys = [rng.integers(0, 5, len(x)) for x in xs]
    return model, xs, ys


@pytest.fixture
def frequent_switches():
    """Threads handing over the interpreter every microsecond: a race shows at once."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


def _same(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b))
    return np.array_equal(a, b)


@pytest.mark.parametrize("make", [mlp, cnn, functional])
def test_threads_sharing_a_model_for_inference_get_the_serial_answers(backend, dtype, rng, make, frequent_switches):
    model, xs, ys = _data(make, backend, dtype, rng)
    model.predict(xs[0])  # (builds it)
    predicted = [model.predict(x, batch_size=BATCH) for x in xs]
    evaluated = [model.evaluate(x, y, batch_size=BATCH) for x, y in zip(xs, ys)]
    called = [model(x) for x in xs]

    def work(k):
        i = k % len(xs)
        kind = (k // len(xs)) % 3
        if kind == 0:
            return _same(model.predict(xs[i], batch_size=BATCH), predicted[i])
        if kind == 1:
            return _same(model.evaluate(xs[i], ys[i], batch_size=BATCH), evaluated[i])
        return _same(model(xs[i]), called[i])

    with ThreadPoolExecutor(N_THREADS) as pool:
        results = list(pool.map(work, range(30 * len(xs))))
    assert all(results), f"{results.count(False)} of {len(results)} calls differ from the serial answers"


def test_evaluate_refuses_logits_of_another_batch_size(backend, rng):
    """The loss kernel indexes the logits with the targets' rows: logits of another batch (a
    model trained by two threads at once) are a ValueError, never an out-of-bounds read."""
    model = mlp(backend, np.float32)
    x, y = rng.random((40, 12)).astype(np.float32), rng.integers(0, 5, 40)
    out = model.predict(x)
    model.layers[-1]._logits = np.zeros((3, 5), np.float32)  # what a training step of 3 samples left
    with pytest.raises(ValueError, match=r"logits must come from this batch's forward pass"):
        model._batch_loss(out, y)
    assert np.isfinite(model.evaluate(x, y)).all()  # an evaluation reads its own logits


def test_a_functional_model_refuses_logits_of_another_batch_size(backend, rng):
    model = functional(backend, np.float32)
    x = rng.random((40, 12)).astype(np.float32)
    y = {"a": rng.integers(0, 5, 40), "b": rng.integers(0, 2, (40, 3)).astype(float)}
    out = model.predict(x)
    layers = {layer.name: layer for layer in model.layers}
    layers["a"]._logits = np.zeros((40, 5), np.float32)
    layers["b"]._logits = np.zeros((40 + 9, 3), np.float32)  # what a training step of 49 samples left
    _, targets = model._check_xy(x, y)
    with pytest.raises(ValueError, match=r"layer 'b'"):
        model._batch_losses(out, targets)


def test_evaluate_leaves_the_layers_and_the_loss_as_training_left_them(backend, rng):
    """An inference pass keeps nothing on the model that a training step reads: the logits and
    the loss's gradient of the last training step stay in place."""
    model = mlp(backend, np.float32)
    x, y = rng.random((40, 12)).astype(np.float32), rng.integers(0, 5, 40)
    model.train_on_batch(x[:8], y[:8])
    logits, grad = model.layers[-1]._logits, model.loss._grad
    model.evaluate(x, y)
    model.predict(x)
    assert model.layers[-1]._logits is logits and model.loss._grad is grad


def test_threads_evaluate_batches_of_different_sizes_on_one_model(backend, frequent_switches):
    """The hunt's case: 1000 and 7 rows from two threads (the loss kernel read past the 7
    targets and crashed)."""
    model = nn.Sequential([nn.Dense(8, activation="relu", input_shape=(16,)), nn.Dense(10, activation="softmax")],
                          seed=0, backend=backend)
    model.compile("sgd", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    xs = [rng.random((n, 16)).astype(np.float32) for n in (1000, 7)]
    ys = [rng.integers(0, 10, len(x)) for x in xs]
    expected = [model.evaluate(x, y, batch_size=len(x)) for x, y in zip(xs, ys)]
    wrong = [0, 0]

    def work(i):
        for _ in range(100):
            wrong[i] += model.evaluate(xs[i], ys[i], batch_size=len(xs[i])) != expected[i]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == [0, 0]
