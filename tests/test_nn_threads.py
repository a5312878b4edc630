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


def merged(backend, dtype):
    """An Add, a Concatenate and an Activation("softmax") layer (fused with the loss)."""
    inputs = nn.Input((12,))
    hidden = nn.Dense(8, activation="relu")(inputs)
    joined = nn.Concatenate()([nn.Add()([hidden, nn.Dense(8, activation="tanh")(hidden)]), hidden])
    model = nn.Model(inputs, nn.Activation("softmax")(nn.Dense(5)(joined)), seed=0, backend=backend, dtype=dtype)
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


class _OnesNoise:
    """A Sampling layer's generator that draws ones: the answers do not hang on which thread
    draws first, while z = z_mean + exp(z_log_var / 2) still differs from batch to batch."""

    def standard_normal(self, shape, dtype):
        return np.ones(shape, dtype)


def vae(backend, dtype):
    """A small VAE: Sampling and its KL term (add_loss), read by evaluate."""
    inputs = nn.Input((12,))
    hidden = nn.Dense(8, activation="relu")(inputs)
    sampling = nn.Sampling(kl_weight=0.5)
    z = sampling([nn.Dense(4)(hidden), nn.Dense(4)(hidden)])
    model = nn.Model(inputs, nn.Dense(12, activation="sigmoid")(z), seed=0, backend=backend, dtype=dtype)
    sampling.rng = _OnesNoise()
    model.compile("adam", "binary_crossentropy")
    return model


def _data(make, backend, dtype, rng):
    model = make(backend, dtype)
    shape = (8, 8, 1) if make.__name__ == "cnn" else (12,)
    xs = [rng.random((n, *shape)).astype(dtype) for n in (1, 3, 9, 16, 23, 40)]
    if make.__name__ == "functional":
        ys = [{"a": rng.integers(0, 5, len(x)), "b": rng.integers(0, 2, (len(x), 3)).astype(float)} for x in xs]
    elif make.__name__ == "vae":
        ys = xs
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


@pytest.mark.parametrize("make", [mlp, cnn, functional, merged, vae])
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


@pytest.mark.parametrize("loss", [nn.CategoricalCrossentropy, nn.SparseCategoricalCrossentropy,
                                  nn.BinaryCrossentropy, nn.MeanSquaredError])
def test_threads_calling_one_loss_get_the_serial_values(backend, dtype, rng, loss, frequent_switches):
    """A loss called directly (Keras' order, y_true first) from several threads on batches of
    different sizes: each call's value comes from its own batch (the cross-entropies' forward
    read back the sums and probabilities another call may have kept by then)."""
    loss = loss()
    loss.backend = backend
    y_preds = [rng.random((n, 5)).astype(dtype) + 0.01 for n in (1, 3, 9, 16, 23, 40)]
    if isinstance(loss, nn.SparseCategoricalCrossentropy):
        y_trues = [rng.integers(0, 5, len(p)) for p in y_preds]
    else:
        y_trues = [rng.random(p.shape) for p in y_preds]
    expected = [loss(t, p) for t, p in zip(y_trues, y_preds)]

    def work(k):
        i = k % len(y_preds)
        return loss(y_trues[i], y_preds[i]) == expected[i]

    with ThreadPoolExecutor(N_THREADS) as pool:
        results = list(pool.map(work, range(100 * len(y_preds))))
    assert all(results), f"{results.count(False)} of {len(results)} calls differ from the serial values"


def test_evaluate_reads_the_kl_term_of_its_own_pass(backend, rng):
    """Sampling's added loss, in an evaluation pass, is the pass's own: the same value whether or
    not another thread evaluates meanwhile, and the layer still shows the last pass's term."""
    model = vae(backend, np.float64)
    x = rng.random((10, 12))
    model.predict(x)
    loss = model.evaluate(x, x, batch_size=10)
    sampling = next(layer for layer in model.layers if isinstance(layer, nn.Sampling))
    terms = sampling.losses
    assert len(terms) == 1 and model.losses == terms
    with nn.layers.inference_pass():  # a pass open elsewhere on this thread sees none of them
        assert model.losses == []
    assert model.evaluate(x, x, batch_size=10) == loss


def _clobbered(cls, **kept):
    """A subclass of layer class `cls` whose attributes `kept` read back as given, whatever was
    set: as if another thread's pass had set them between this pass's write and its read (a
    window of a few bytecodes, which CPython's GIL seldom splits; a free-threaded build may)."""
    return type(f"Clobbered{cls.__name__}", (cls,),
                {name: property(lambda self, value=value: value, lambda self, value: None)
                 for name, value in kept.items()})


def test_layers_answer_from_their_own_pass_not_from_what_they_keep_for_backward(backend, dtype, rng):
    """Add and Concatenate size their output by their inputs' batch, Activation returns what it
    computed: not the batch size and the output kept for backward, which may be another thread's."""
    inputs = nn.Input((6,))
    added = _clobbered(nn.Add, _batch=1)()([inputs, inputs])
    joined = _clobbered(nn.Concatenate, _batch=1)()([added, inputs])
    model = nn.Model(inputs, _clobbered(nn.Activation, _out=np.zeros((1, 12), dtype))("softmax")(joined),
                     seed=0, backend=backend, dtype=dtype)
    x = rng.random((5, 6)).astype(dtype)
    z = np.concatenate([x + x, x], axis=1)
    expected = np.exp(z - z.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-5 if dtype == np.float32 else 1e-12)
