"""Ctrl-C during training leaves a whole number of steps: the weights, optimizer slots, step count
and BatchNormalization's moving statistics of a model that took n steps, or n + 1 where the
interrupt came during the optimizer's step (held back until that step is whole), and training on
from there gives bit-identical results to a model never interrupted."""

import signal
import threading

import numpy as np
import pytest

from fastdl import nn
from fastdl.nn.guard import sigint_deferred

OPTIMIZERS = {"sgd": lambda: nn.SGD(0.1, momentum=0.9), "rmsprop": lambda: nn.RMSprop(0.01),
              "adam": lambda: nn.Adam(0.01)}


def _model(backend, dtype, optimizer):
    """A small CNN with BatchNormalization and a frozen Dense between two trainable ones: its
    optimizer updates two runs (the frozen weights split the flat buffer)."""
    model = nn.Sequential([nn.Conv2D(2, 3, input_shape=(5, 5, 1)), nn.BatchNormalization(), nn.Flatten(),
                           nn.Dense(3, trainable=False), nn.Dense(2)],
                          seed=0, dtype=np.dtype(dtype).name, backend=backend)
    model.compile(OPTIMIZERS[optimizer](), "mse")
    return model


def _data(dtype):
    rng = np.random.default_rng(1)
    return rng.standard_normal((16, 5, 5, 1)).astype(dtype), rng.standard_normal((16, 2)).astype(dtype)


def _batch(x, y, k):
    return x[4 * (k % 4):][:4], y[4 * (k % 4):][:4]


def _assert_same(model, ref):
    """Bit-identical weights (trainable, frozen, moving statistics), optimizer slots and step count."""
    assert model.optimizer.iterations == ref.optimizer.iterations
    for a, b in zip(model.get_weights(), ref.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    (_, slots), (_, ref_slots) = model.optimizer.state_dict(), ref.optimizer.state_dict()
    assert slots.keys() == ref_slots.keys()
    for key in slots:
        np.testing.assert_array_equal(slots[key], ref_slots[key])


def _train_on(model, ref, x, y, first, steps):
    for k in range(first, first + steps):
        model.train_on_batch(*_batch(x, y, k))
        ref.train_on_batch(*_batch(x, y, k))


@pytest.fixture
def python_sigint():
    """SIGINT handled by Python's default handler (KeyboardInterrupt), on the main thread."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are handled on the main thread only")
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _sigint_after_first_update(optimizer):
    """Make the optimizer's first run update send a real SIGINT (a Ctrl-C between its runs)."""
    update, sent = optimizer._update, []

    def interrupted(*args):
        update(*args)
        if not sent:
            sent.append(1)
            signal.raise_signal(signal.SIGINT)

    optimizer._update = interrupted
    return sent


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_interrupt_in_backward_keeps_moving_statistics(backend, dtype, optimizer):
    # The forward pass moved the moving statistics; the step was never taken: they are put back.
    x, y = _data(dtype)
    model, ref = _model(backend, dtype, optimizer), _model(backend, dtype, optimizer)
    _train_on(model, ref, x, y, 0, 1)
    backward, raised = model._backward_from_loss, []

    def interrupted():
        if not raised:
            raised.append(1)
            raise KeyboardInterrupt
        backward()

    model._backward_from_loss = interrupted
    with pytest.raises(KeyboardInterrupt):
        model.train_on_batch(*_batch(x, y, 1))
    _assert_same(model, ref)  # one whole step
    _train_on(model, ref, x, y, 1, 3)
    _assert_same(model, ref)


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_sigint_between_runs_takes_the_step_whole(backend, dtype, optimizer, python_sigint):
    # A Ctrl-C after the first run's update: both runs are updated and the step counted, then the
    # KeyboardInterrupt comes; the moving statistics of that step are kept.
    x, y = _data(dtype)
    model, ref = _model(backend, dtype, optimizer), _model(backend, dtype, optimizer)
    assert len(model.optimizer._runs) == 2
    _train_on(model, ref, x, y, 0, 1)
    sent = _sigint_after_first_update(model.optimizer)
    with pytest.raises(KeyboardInterrupt):
        model.train_on_batch(*_batch(x, y, 1))
    assert sent
    ref.train_on_batch(*_batch(x, y, 1))
    _assert_same(model, ref)  # two whole steps
    _train_on(model, ref, x, y, 2, 3)
    _assert_same(model, ref)


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_sigint_during_fit_update_leaves_whole_steps(backend, dtype, optimizer, python_sigint):
    x, y = _data(dtype)
    model, ref = _model(backend, dtype, optimizer), _model(backend, dtype, optimizer)
    _train_on(model, ref, x, y, 0, 1)
    sent = _sigint_after_first_update(model.optimizer)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x[4:], y[4:], batch_size=4, epochs=1, shuffle=False)
    assert sent
    ref.train_on_batch(*_batch(x, y, 1))
    _assert_same(model, ref)
    _train_on(model, ref, x, y, 2, 3)
    _assert_same(model, ref)


def test_sigint_deferred_delivers_after_the_block(python_sigint):
    done = []
    with pytest.raises(KeyboardInterrupt):
        with sigint_deferred():
            signal.raise_signal(signal.SIGINT)
            done.append(1)  # reached: the interrupt waits for the block's end
    assert done and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_sigint_deferred_off_the_main_thread_changes_nothing():
    seen = []

    def run():
        with sigint_deferred():
            seen.append(signal.getsignal(signal.SIGINT))

    before = signal.getsignal(signal.SIGINT)
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == [before]


def test_interrupt_in_fit_backward_keeps_moving_statistics(backend):
    x, y = _data(np.float64)
    model, ref = _model(backend, np.float64, "adam"), _model(backend, np.float64, "adam")
    _train_on(model, ref, x, y, 0, 1)
    backward, calls = model._backward_from_loss, []

    def interrupted():
        calls.append(1)
        if len(calls) == 2:  # the second batch's
            raise KeyboardInterrupt
        backward()

    model._backward_from_loss = interrupted
    with pytest.raises(KeyboardInterrupt):
        model.fit(x[4:], y[4:], batch_size=4, epochs=1, shuffle=False)
    ref.train_on_batch(*_batch(x, y, 1))
    _assert_same(model, ref)  # two whole steps: the third's moving statistics put back


@pytest.mark.parametrize("how", ["set_weights", "load"])
def test_sigint_while_weights_are_set_sets_them_all(how, python_sigint, monkeypatch, tmp_path):
    # A Ctrl-C after the third array is written: every array, the slots and the step count are
    # set, then the KeyboardInterrupt comes (never a model half the file's, half its own).
    from fastdl import _device

    x, y = _data(np.float64)
    trained, model = _model("numpy", np.float64, "adam"), _model("numpy", np.float64, "adam")
    _train_on(trained, trained, x, y, 0, 1)
    trained.epochs_trained = 3
    trained.save(tmp_path / "trained.npz")
    assign, calls = _device.assign, []

    def interrupted(target, value):
        assign(target, value)
        calls.append(1)
        if len(calls) == 3:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(_device, "assign", interrupted)
    with pytest.raises(KeyboardInterrupt):
        if how == "load":
            model.load(tmp_path / "trained.npz")
        else:
            model.set_weights(trained.get_weights())
    assert len(calls) > 3
    for a, b in zip(model.get_weights(), trained.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    if how == "load":
        _assert_same(model, trained)
        assert model.epochs_trained == 3


# -- going on from an interrupted epoch ----------------------------------------------------------

def _dropout_mlp(seed=0):
    """Dropout draws from the model's generator at every step, and fit shuffles with it: a step
    trained twice, or an epoch's order drawn again, would show in the weights."""
    model = nn.Sequential([nn.Dense(8, activation="relu", input_shape=(4,)), nn.Dropout(0.3),
                           nn.Dense(3, activation="softmax")], seed=seed)
    model.compile(nn.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _blobs():
    rng = np.random.default_rng(3)
    return rng.standard_normal((40, 4)).astype(np.float32), rng.integers(0, 3, 40)


class _StopAt(nn.Callback):
    """KeyboardInterrupt at the end of the n-th batch of the fit (after its step)."""

    def __init__(self, n):
        self.n, self.seen = n, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.n:
            raise KeyboardInterrupt


def _interrupt_step(model, n):
    """KeyboardInterrupt in the forward pass of the model's n-th step from now (not taken)."""
    step, calls = model._train_step, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return step(*args, **kwargs)

    model._train_step = interrupted
    return lambda: model.__dict__.pop("_train_step")


def _assert_same_weights(model, ref):
    assert model.optimizer.iterations == ref.optimizer.iterations and model.epochs_trained == ref.epochs_trained
    for a, b in zip(model.get_weights(), ref.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("where", ["after a step", "in a step"])
def test_fit_goes_on_from_the_batch_an_interrupt_stopped_at(where):
    x, y = _blobs()
    ref = _dropout_mlp()
    history = ref.fit(x, y, batch_size=8, epochs=3)
    model = _dropout_mlp()
    if where == "after a step":
        callbacks, undo = [_StopAt(7)], (lambda: None)
    else:
        callbacks, undo = [], _interrupt_step(model, 8)  # the 3rd batch of the 2nd epoch
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=8, epochs=3, callbacks=callbacks)
    undo()
    assert model.epochs_trained == 1 and model.optimizer.iterations == 7
    rest = model.fit(x, y, batch_size=8, epochs=3 - model.epochs_trained)
    _assert_same_weights(model, ref)
    # The epoch gone on with logs the means over all of its batches, as the run never interrupted.
    assert rest.history["loss"] == history.history["loss"][1:]
    assert rest.history["accuracy"] == history.history["accuracy"][1:]


def _stopped(epochs, at):
    """(x, y, a model trained `epochs` epochs, one alike that Ctrl-C stopped after its `at`-th step)."""
    x, y = _blobs()
    ref = _dropout_mlp()
    ref.fit(x, y, batch_size=8, epochs=epochs)
    model = _dropout_mlp()
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=8, epochs=epochs, callbacks=[_StopAt(at)])
    return x, y, ref, model


def test_a_model_saved_mid_epoch_goes_on_from_there_when_loaded(tmp_path):
    x, y, ref, model = _stopped(2, 8)
    model.save(tmp_path / "stopped.npz")
    loaded = _dropout_mlp(seed=7).load(tmp_path / "stopped.npz")
    loaded.fit(x, y, batch_size=8, epochs=2 - loaded.epochs_trained)
    _assert_same_weights(loaded, ref)


def test_another_batch_size_starts_the_epoch_again():
    x, y = _blobs()
    model = _dropout_mlp()
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=8, epochs=1, callbacks=[_StopAt(2)])
    model.fit(x, y, batch_size=10, epochs=1)
    assert model.optimizer.iterations == 2 + 4 and model.epochs_trained == 1


def test_a_damaged_record_of_the_stopped_epoch_is_refused(tmp_path):
    import json

    x, y = _blobs()
    model = _dropout_mlp()
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=8, epochs=1, callbacks=[_StopAt(2)])
    model.save(tmp_path / "stopped.npz")
    with np.load(tmp_path / "stopped.npz") as data:
        arrays = dict(data)
    meta = json.loads(str(arrays["meta"]))
    meta["unfinished_epoch"]["batch"] = 9
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "damaged.npz", **arrays)
    fresh = _dropout_mlp()
    before = fresh.get_weights()
    with pytest.raises(ValueError, match="damaged.npz is damaged: what it keeps of the epoch its model was stopped"):
        fresh.load(tmp_path / "damaged.npz")
    for a, b in zip(fresh.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)


def _batches(x, y):
    while True:
        for first in range(0, len(x), 8):
            yield x[first:first + 8], y[first:first + 8]


def test_an_iterators_batch_whose_step_was_not_taken_is_trained_by_the_next_fit():
    x, y = _blobs()
    ref = _dropout_mlp()
    ref.fit(_batches(x, y), steps_per_epoch=5, epochs=2)
    model, batches = _dropout_mlp(), _batches(x, y)
    undo = _interrupt_step(model, 8)
    with pytest.raises(KeyboardInterrupt):
        model.fit(batches, steps_per_epoch=5, epochs=2)
    undo()
    model.fit(batches, steps_per_epoch=5, epochs=2 - model.epochs_trained)
    _assert_same_weights(model, ref)


def test_a_batch_drawn_by_a_refused_fit_is_kept_for_the_next():
    # The first batch builds an unbuilt model before the callbacks begin; one of them refuses the fit.
    x, y = _blobs()

    def unbuilt():
        model = nn.Sequential([nn.Dense(8, activation="relu"), nn.Dense(3, activation="softmax")], seed=0)
        model.compile(nn.Adam(0.01), "sparse_categorical_crossentropy")
        return model

    class Refuses(nn.Callback):
        def on_train_begin(self, logs=None):
            raise RuntimeError("no")

    ref = unbuilt()
    ref.fit(_batches(x, y), steps_per_epoch=5)
    model, batches = unbuilt(), _batches(x, y)
    with pytest.raises(RuntimeError):
        model.fit(batches, steps_per_epoch=5, callbacks=[Refuses()])
    model.fit(batches, steps_per_epoch=5)
    _assert_same_weights(model, ref)


def test_an_interrupt_during_validation_leaves_the_epoch_to_validate_only():
    # Its steps all taken, the epoch is not counted until validated: the next fit only validates it.
    x, y = _blobs()
    ref = _dropout_mlp()
    history = ref.fit(x, y, batch_size=8, epochs=2, validation_data=(x[:8], y[:8]))
    model, evaluate, calls = _dropout_mlp(), None, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return evaluate(*args, **kwargs)

    evaluate = model._test
    model._test = interrupted
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=8, epochs=2, validation_data=(x[:8], y[:8]))
    del model._test
    assert model.epochs_trained == 0 and model.optimizer.iterations == 5
    rest = model.fit(x, y, batch_size=8, epochs=2, validation_data=(x[:8], y[:8]))
    _assert_same_weights(model, ref)
    assert rest.history == history.history


def test_a_second_interrupt_before_the_epoch_goes_on_keeps_where_it_stopped():
    x, y, ref, model = _stopped(1, 3)
    stops = nn.LambdaCallback(on_epoch_begin=lambda epoch, logs: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=8, epochs=1, callbacks=[stops])
    model.fit(x, y, batch_size=8, epochs=1, seed=0)  # (the same seed= leaves the generators where they were)
    _assert_same_weights(model, ref)


@pytest.mark.parametrize("change", ["compile", "set_weights", "other data", "other targets", "other weights"])
def test_the_stopped_epoch_starts_again_after_a_change(change):
    x, y = _blobs()
    model = _dropout_mlp()
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=8, epochs=1, callbacks=[_StopAt(2)])
    if change == "compile":
        model.compile(nn.Adam(0.01), "sparse_categorical_crossentropy")
    elif change == "set_weights":
        model.set_weights(model.get_weights())
    elif change == "other data":
        x = x[::-1].copy()
    elif change == "other targets":
        y = (y + 1) % 3
    weights = {"sample_weight": np.full(len(x), 2.0)} if change == "other weights" else {}
    steps = model.optimizer.iterations
    history = model.fit(x, y, batch_size=8, epochs=1, **weights)
    assert model.optimizer.iterations - steps == 5 and model.epochs_trained == 1
    assert ("accuracy" in history.history) == (change != "compile")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_an_epoch_gone_non_finite_where_it_went_on_goes_on_from_there_again():
    x, y = _blobs()
    model = _dropout_mlp()
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=8, epochs=1, callbacks=[_StopAt(3)])
    with pytest.raises(nn.NonFiniteError, match="from before epoch 1 "):
        model.fit(x * 1e30, y, batch_size=8, epochs=1)  # (other data: the epoch starts again, and fails)
    assert model.optimizer.iterations == 3 and model._unfinished is None
    ref = _dropout_mlp()
    ref.fit(x, y, batch_size=8, epochs=1)
    model = _dropout_mlp()
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=8, epochs=1, callbacks=[_StopAt(3)])
    rate = model.optimizer.lr
    big = nn.LambdaCallback(on_epoch_begin=lambda epoch, logs: setattr(model.optimizer, "lr", 1e30))
    with pytest.raises(nn.NonFiniteError, match="from before batch 4 of epoch 1"):
        model.fit(x, y, batch_size=8, epochs=1, callbacks=[big])
    assert model.optimizer.iterations == 3 and model.optimizer.lr == rate
    model.fit(x, y, batch_size=8, epochs=1)
    _assert_same_weights(model, ref)


def test_an_iterator_that_ended_in_the_stopped_epoch_ends_it_when_fit_goes_on():
    x, y = _blobs()
    ref = _dropout_mlp()
    ref.fit(iter([(x[i:i + 8], y[i:i + 8]) for i in range(0, 40, 8)]))
    model = _dropout_mlp()
    batches = iter([(x[i:i + 8], y[i:i + 8]) for i in range(0, 40, 8)])
    with pytest.raises(KeyboardInterrupt):
        model.fit(batches, callbacks=[_StopAt(5)])  # after the last batch, before the end was seen
    model.fit(batches)
    _assert_same_weights(model, ref)


def test_a_model_holding_an_iterators_batch_copies_without_it():
    import copy
    import pickle

    x, y = _blobs()
    model, batches = _dropout_mlp(), _batches(x, y)
    undo = _interrupt_step(model, 3)
    with pytest.raises(KeyboardInterrupt):
        model.fit(batches, steps_per_epoch=5)
    undo()
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert twin._unfinished is None and "_held_batch" not in twin.__dict__
        _assert_same_weights(twin, model)
    assert model._unfinished is not None and model._held_batch is not None


@pytest.mark.parametrize("where", ["after a step", "first step", "epoch begin"])
def test_a_schedule_of_the_rate_goes_on_as_if_never_interrupted(where):
    # schedule(epoch, lr) sets the rate again from the one it was set from, not from its own: from
    # the record of the epoch, or (no step taken, no record) from the rate put back.
    x, y = _blobs()

    def schedule():
        return nn.LearningRateScheduler(lambda epoch, lr: lr * 0.7)

    ref = _dropout_mlp()
    ref.fit(x, y, batch_size=8, epochs=2, callbacks=[schedule()])
    model = _dropout_mlp()
    if where == "after a step":
        callbacks, undo = [schedule(), _StopAt(7)], (lambda: None)
    elif where == "first step":
        callbacks, undo = [schedule()], _interrupt_step(model, 6)
    else:
        stop = nn.LambdaCallback(on_epoch_begin=lambda epoch, logs: epoch and (_ for _ in ()).throw(KeyboardInterrupt))
        callbacks, undo = [schedule(), stop], (lambda: None)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=8, epochs=2, callbacks=callbacks)
    undo()
    assert model.epochs_trained == 1 and model.optimizer.iterations == (7 if where == "after a step" else 5)
    model.fit(x, y, batch_size=8, epochs=1, callbacks=[schedule()])
    _assert_same_weights(model, ref)
    assert model.optimizer.learning_rate == ref.optimizer.learning_rate


def test_a_stopped_epoch_saved_goes_on_only_in_a_model_compiled_alike(tmp_path):
    x, y = _blobs()
    model = _dropout_mlp()
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=8, epochs=3, initial_epoch=1, callbacks=[_StopAt(2)])
    model.save(tmp_path / "stopped.npz")  # (its epoch, 1, past the 0 epochs counted: initial_epoch)
    alike = _dropout_mlp().load(tmp_path / "stopped.npz")
    alike.fit(x, y, batch_size=8, epochs=3, initial_epoch=1)
    assert alike.optimizer.iterations == 2 + 3 + 5
    other = _dropout_mlp()
    other.compile(nn.Adam(0.01), "sparse_categorical_crossentropy")  # no accuracy logged
    other.load(tmp_path / "stopped.npz")
    history = other.fit(x, y, batch_size=8, epochs=2, initial_epoch=1)
    assert other.optimizer.iterations == 2 + 5 and list(history.history) == ["loss"]


def test_a_model_holds_one_iterators_batch():
    x, y = _blobs()
    model = _dropout_mlp()
    for _ in range(3):  # a notebook cell run again: a new generator each time
        undo = _interrupt_step(model, 2)
        with pytest.raises(KeyboardInterrupt):
            model.fit(_batches(x, y), steps_per_epoch=5)
        undo()
    iterator, item, _ = model._held_batch  # the last generator's batch only: the others are let go
    assert item[0].shape == (8, 4) and "_held_batches" not in vars(model)
