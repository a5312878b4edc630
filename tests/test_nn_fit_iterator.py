"""fit on an iterator of (x, y) batches: the same training as on arrays, epochs of steps_per_epoch
batches, a warning where the iterator runs out, and clear errors for what does not apply."""

import warnings

import numpy as np
import pytest

from fastdl import nn

N, BATCH = 96, 32  # BATCH: also what validation_data is evaluated in, beside an iterator


def data(dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, 4, 4, 1)).astype(dtype)
    return x, (x[:, :2].sum(axis=(1, 2, 3)) > 0).astype(np.int64)


def model(backend, dtype):
    m = nn.Sequential([nn.Conv2D(3, 3, padding="same", activation="relu", input_shape=(4, 4, 1)), nn.Flatten(),
                       nn.Dropout(0.25), nn.Dense(2, activation="softmax")], seed=0, dtype=dtype, backend=backend)
    m.compile(nn.Adam(lr=0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def batches(x, y, epochs):
    for _ in range(epochs):
        for first in range(0, len(x), BATCH):
            yield x[first:first + BATCH], y[first:first + BATCH]


class Hooks(nn.Callback):
    def __init__(self):
        super().__init__()
        self.calls = []

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("epoch", epoch))

    def on_train_batch_begin(self, batch, logs=None):
        self.calls.append(("begin", batch))

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append(("end", batch))


def test_an_iterator_trains_as_the_arrays_it_slices(backend, dtype):
    """Unshuffled arrays and the iterator of their batches: the same steps, dropout masks, logs and
    weights, bit for bit, and the same callback hooks."""
    x, y = data(dtype)
    on_arrays, on_batches = model(backend, dtype), model(backend, dtype)
    hooks_arrays, hooks_batches = Hooks(), Hooks()
    expected = on_arrays.fit(x, y, BATCH, 3, shuffle=False, callbacks=[hooks_arrays], validation_data=(x, y))
    history = on_batches.fit(batches(x, y, 3), epochs=3, steps_per_epoch=N // BATCH, callbacks=[hooks_batches],
                             validation_data=(x, y))
    assert history.history == expected.history
    for got, want in zip(on_batches.get_weights(), on_arrays.get_weights()):
        np.testing.assert_array_equal(got, want)
    assert hooks_batches.calls == hooks_arrays.calls
    assert on_batches.epochs_trained == 3


def test_without_steps_per_epoch_an_epoch_is_all_the_iterator_gives(backend):
    x, y = data(np.float32)
    m, hooks = model(backend, np.float32), Hooks()
    m.fit(batches(x, y, 2), epochs=1, callbacks=[hooks])
    assert hooks.calls == [("epoch", 0)] + [(hook, b) for b in range(2 * N // BATCH) for hook in ("begin", "end")]


def test_an_iterator_that_runs_out_stops_training_with_a_warning(backend):
    x, y = data(np.float32)
    m = model(backend, np.float32)
    with pytest.warns(UserWarning, match=r"ran out in epoch 2, before its 4 steps: training stopped after it \(6 "):
        history = m.fit(batches(x, y, 2), epochs=5, steps_per_epoch=4)  # 6 batches: epoch 2 has 2
    assert len(history.history["loss"]) == 2 and m.epochs_trained == 2

    m = model(backend, np.float32)
    with pytest.warns(UserWarning, match="gave no batch for epoch 2: training stopped after epoch 1"):
        history = m.fit(batches(x, y, 1), epochs=3)
    assert len(history.history["loss"]) == 1 and m.epochs_trained == 1


def test_an_iterator_that_lasts_trains_without_warning(backend):
    x, y = data(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(backend, np.float32).fit(batches(x, y, 2), epochs=2, steps_per_epoch=N // BATCH)


def test_batches_of_any_size_and_a_model_built_by_the_first():
    x, y = data(np.float32)
    m = nn.Sequential([nn.Flatten(), nn.Dense(2, activation="softmax")], seed=0)  # no input shape yet
    m.compile("sgd", "sparse_categorical_crossentropy")
    sizes = [5, 16, 1, 26]
    edges = np.cumsum([0] + sizes)
    history = m.fit(iter([(x[a:b], y[a:b]) for a, b in zip(edges, edges[1:])]))
    assert m.input_shape == (4, 4, 1) and len(history.history["loss"]) == 1


@pytest.mark.parametrize("kwargs, match", [
    ({"y": np.zeros(3)}, "y must be None"),
    ({"batch_size": 8}, "batch_size=8 does not apply"),
    ({"validation_split": 0.2}, "validation_split does not apply"),
    ({"validation_data": iter([])}, r"validation_data must be a tuple \(x_val, y_val\)"),
])
def test_arguments_that_do_not_apply_to_an_iterator_are_refused(kwargs, match):
    x, y = data(np.float32)
    m = model("numba", np.float32)
    with pytest.raises(ValueError, match=match):
        m.fit(batches(x, y, 1), **kwargs)
    assert m.optimizer.iterations == 0


@pytest.mark.parametrize("items, match", [
    ([], "gave no batches"),
    ([np.zeros((2, 4, 4, 1))], "epoch 1, batch 1 is a numpy.ndarray"),
    ([(np.zeros((2, 4, 4, 1)), np.zeros(2), np.ones(2), np.ones(2))], "a tuple of 4 items"),
    ([(np.zeros((2, 4, 4)), np.zeros(2))], r"epoch 1, batch 1: x has samples of shape \(4, 4\)"),
    ([(np.zeros((2, 4, 4, 1)), np.zeros(3))], "epoch 1, batch 1: x has 2 samples but y has 3"),
])
def test_a_first_batch_that_does_not_fit_is_refused_before_any_step(items, match):
    m = model("numba", np.float32)
    with pytest.raises(ValueError, match=match):
        m.fit(iter(items))
    assert m.optimizer.iterations == 0


def unbuilt_model():
    m = nn.Sequential([nn.Flatten(), nn.Dense(2, activation="softmax")], seed=0)  # no input shape yet
    m.compile("sgd", "sparse_categorical_crossentropy")
    return m


def test_an_unbuilt_model_is_built_by_the_first_batch_before_validation_data_is_checked():
    x, y = data(np.float32)
    m = unbuilt_model()
    with pytest.raises(ValueError, match=r"validation x has samples of shape \(3, 4, 1\), but the model's first "
                                         r"layer expects \(4, 4, 1\)"):
        m.fit(batches(x, y, 1), validation_data=(x[:, :3], y))
    assert m.input_shape == (4, 4, 1)
    with pytest.raises(ValueError, match=r"x's first batch is a numpy.ndarray"):
        unbuilt_model().fit(iter([x]))


@pytest.mark.parametrize("make, kwargs, error", [
    (unbuilt_model, {"callbacks": [object()]}, TypeError),
    (unbuilt_model, {"seed": "abc"}, TypeError),
    (unbuilt_model, {"seed": -1}, ValueError),
    (unbuilt_model, {"epochs": 0}, None),
    (lambda: model("numba", np.float32), {"initial_epoch": 2, "epochs": 2}, None),
    (lambda: nn.Sequential([nn.Flatten(), nn.Dense(2)]), {}, RuntimeError),  # never compiled
])
def test_a_fit_refused_or_of_no_epochs_draws_nothing(make, kwargs, error):
    x, y = data(np.float32)
    stream = batches(x, y, 1)
    if error is None:
        make().fit(stream, **kwargs)
    else:
        with pytest.raises(error):
            make().fit(stream, **kwargs)
    assert np.array_equal(next(stream)[0], x[:BATCH])


def test_two_fits_on_one_iterator_train_as_one():
    x, y = data(np.float32)
    once, twice = model("numba", np.float32), model("numba", np.float32)
    once.fit(batches(x, y, 2), epochs=2, steps_per_epoch=3)
    stream = batches(x, y, 2)
    twice.fit(stream, steps_per_epoch=3)
    twice.fit(stream, steps_per_epoch=3)
    for a, b in zip(once.get_weights(), twice.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_an_error_from_the_iterator_says_which_batch_it_was_asked_for():
    x, y = data(np.float32)

    def failing():
        yield x[:BATCH], y[:BATCH]
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone") as info:
        model("numba", np.float32).fit(failing())
    if hasattr(info.value, "__notes__"):
        assert "asked for epoch 1, batch 2" in info.value.__notes__[0]


@pytest.mark.parametrize("x, match", [
    (lambda: iter([]), "x is a function: fit takes the iterator"),
    ([(np.zeros((2, 4, 4, 1)), np.zeros(2))], r"x is a list of \(x, y\) batches: give fit iter\(x\)"),
])
def test_a_function_or_a_list_of_batches_is_named(x, match):
    with pytest.raises(ValueError, match=match):
        model("numba", np.float32).fit(x)


def test_a_later_batch_is_checked_too_and_named():
    x, y = data(np.float32)
    bad = x[:BATCH].copy()
    bad[3, 0, 0, 0] = np.nan
    m = model("numba", np.float32)
    with pytest.raises(ValueError, match="epoch 1, batch 2: the input batch contains NaN"):
        m.fit(iter([(x[:BATCH], y[:BATCH]), (bad, y[:BATCH])]))
    with pytest.raises(ValueError, match="epoch 1, batch 2: x has 3 samples but y has 2"):
        m.fit(iter([(x[:BATCH], y[:BATCH]), (x[:3], y[:2])]))


def test_an_argument_refused_draws_no_batch_from_the_iterator():
    x, y = data(np.float32)
    stream = batches(x, y, 1)
    with pytest.raises(ValueError, match="validation_data"):
        model("numba", np.float32).fit(stream, validation_data=(x,))
    assert np.array_equal(next(stream)[0], x[:BATCH])


def test_steps_per_epoch_is_refused_for_arrays_and_checked():
    x, y = data(np.float32)
    m = model("numba", np.float32)
    with pytest.raises(ValueError, match="steps_per_epoch is for x an iterator"):
        m.fit(x, y, steps_per_epoch=2)
    with pytest.raises(ValueError, match="fit takes targets y beside the arrays x"):
        m.fit(x)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        m.fit(batches(x, y, 1), steps_per_epoch=0)


@pytest.mark.parametrize("call", ["predict", "evaluate"])
def test_predict_and_evaluate_name_an_iterator(call):
    x, y = data(np.float32)
    m = model("numba", np.float32)
    args = (iter([x]),) if call == "predict" else (iter([x]), y)
    with pytest.raises(TypeError, match="x is an iterator: only fit takes an iterator"):
        getattr(m, call)(*args)
