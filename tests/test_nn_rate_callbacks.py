"""fastdl.nn's learning-rate callbacks, LearningRateScheduler and ReduceLROnPlateau, against Keras 3's rules."""

import numpy as np
import pytest

from fastdl import nn
from fastdl.nn.callbacks import EarlyStopping, LearningRateScheduler, ModelCheckpoint, ReduceLROnPlateau


def _data(dtype=np.float64, n=8):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 3)).astype(dtype), rng.normal(size=(n, 2)).astype(dtype)


def _model(backend="numpy", dtype=np.float64, optimizer=None, seed=0):
    model = nn.Sequential([nn.Input((3,)), nn.Dense(2)], seed=seed, dtype=dtype, backend=backend)
    model.compile(optimizer or nn.SGD(1.0), "mse")
    return model


class _Script(nn.Callback):
    """Puts values[epoch] into the epoch's logs as `key` (listed first, the callbacks after it see it)."""

    def __init__(self, values, key="val_loss"):
        self.values, self.key = values, key

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]


class _Holder:
    """A stand-in model: all the callbacks use is its optimizer."""

    def __init__(self, rate):
        self.optimizer = nn.SGD(rate)


def _drive(callback, values, rate, key="val_loss"):
    """(the learning_rate logged at each epoch, the rate after) of `callback` given fake logs {key: value}."""
    holder = _Holder(rate)
    callback.set_model(holder)
    callback.on_train_begin({})
    logged = []
    for epoch, value in enumerate(values):
        logs = {key: value}
        callback.on_epoch_end(epoch, logs)
        logged.append(logs["learning_rate"])
    return logged, holder.optimizer.learning_rate


def _keras_reduce(values, rate, factor, patience, cooldown, min_lr, min_delta, mode):
    """Keras 3's ReduceLROnPlateau.on_epoch_end written out as it is: (rates logged, rate after)."""
    less = mode == "min"
    best, wait, cooling, logged = (np.inf if less else -np.inf), 0, 0, []
    for current in values:
        logged.append(rate)
        if cooling > 0:
            cooling -= 1
            wait = 0
        if (current < best - min_delta) if less else (current > best + min_delta):
            best, wait = current, 0
        elif cooling == 0:
            wait += 1
            if wait >= patience and rate > min_lr:
                rate = max(rate * factor, min_lr)
                cooling, wait = cooldown, 0
    return logged, rate


# A plateau by hand (rate 1, factor 0.5, patience 2, min_lr 0.2, min_delta 0): best 1.0, 0.9; epochs 2
# and 3 do not improve, so epoch 3 reduces to 0.5 (its logs still hold the 1.0 it trained with); ...
_VALUES = [1.0, 0.9, 0.95, 0.92, 0.91, 0.93, 0.85, 0.86, 0.87, 0.88, 0.89, 0.9, 0.91]
_RATES = {
    # Without cooldown: reductions at epochs 3 (0.9 not beaten twice), 5 and 8 (to min_lr, not 0.125).
    0: [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.25, 0.2, 0.2, 0.2, 0.2],
    # cooldown=1 is spent in the epoch after a reduction, whose wait then counts: as cooldown=0 (Keras).
    1: [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.25, 0.2, 0.2, 0.2, 0.2],
    # cooldown=2: epoch 4 (and 9) not counted; reductions at epochs 3, 8 and 11.
    2: [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.2],
}


@pytest.mark.parametrize("cooldown", [0, 1, 2])
def test_plateau_rates_by_hand(cooldown):
    callback = ReduceLROnPlateau(factor=0.5, patience=2, cooldown=cooldown, min_lr=0.2, min_delta=0.0)
    logged, after = _drive(callback, _VALUES, 1.0)
    assert logged == _RATES[cooldown] and after == 0.2
    assert (logged, after) == _keras_reduce(_VALUES, 1.0, 0.5, 2, cooldown, 0.2, 0.0, "min")


def test_plateau_max_mode_patience_zero_and_nan():
    # "val_accuracy" is watched in max mode; 0.6 does not beat 0.6 + min_delta, so patience 0 reduces at once.
    callback = ReduceLROnPlateau("val_accuracy", factor=0.1, patience=0, min_delta=0.01)
    assert callback.mode == "max"
    logged, after = _drive(callback, [0.5, 0.6, 0.6, 0.65, 0.64], 0.1, key="val_accuracy")
    assert logged == [0.1, 0.1, 0.1, 0.1 * 0.1, 0.1 * 0.1] and after == 0.1 * 0.1 * 0.1
    # A NaN never improves, not even as the first value (Keras' best starts at inf): it counts as a wait.
    logged, after = _drive(ReduceLROnPlateau(factor=0.5, patience=1), [np.nan, 1.0, 1.0], 1.0)
    assert logged == [1.0, 0.5, 0.5] and after == 0.25


def test_plateau_matches_keras_on_random_sequences():
    rng = np.random.default_rng(0)
    for _ in range(200):
        values = list(np.round(rng.random(rng.integers(1, 30)), 1))  # rounded: many ties
        factor, patience, cooldown = rng.choice([0.0, 0.1, 0.5]), int(rng.integers(0, 4)), int(rng.integers(0, 4))
        min_lr, min_delta, mode = rng.choice([0.0, 0.01, 0.3]), rng.choice([0.0, 0.05]), rng.choice(["min", "max"])
        callback = ReduceLROnPlateau("score", factor, patience, 0, mode, min_delta, cooldown, min_lr)
        assert _drive(callback, values, 1.0, key="score") == _keras_reduce(values, 1.0, factor, patience, cooldown,
                                                                           min_lr, min_delta, mode)


def test_each_fit_starts_afresh():
    callback = ReduceLROnPlateau(factor=0.5, patience=1)
    assert _drive(callback, [0.5, 0.6], 1.0) == ([1.0, 1.0], 0.5)
    assert _drive(callback, [0.7, 0.8], 1.0) == ([1.0, 1.0], 0.5)  # 0.7 is the new fit's best, not worse than 0.5


def test_plateau_in_a_real_fit(backend, dtype):
    x, y = _data(dtype)
    model = _model(backend, dtype, nn.SGD(0.1))
    reduce = ReduceLROnPlateau(factor=0.5, patience=2, cooldown=2, min_lr=0.1 * 0.2, min_delta=0.0)
    history = model.fit(x, y, epochs=len(_VALUES), batch_size=4, callbacks=[_Script(_VALUES), reduce])
    assert history.history["learning_rate"] == [0.1 * rate for rate in _RATES[2]]
    assert model.optimizer.learning_rate == 0.1 * 0.2
    # On the real loss: nothing beats the first epoch by 10, so each epoch after reduces the rate.
    model = _model(backend, dtype, nn.Adam(0.01))
    history = model.fit(x, y, epochs=4, batch_size=4, callbacks=[ReduceLROnPlateau("loss", 0.5, 1, min_delta=10)])
    assert history.history["learning_rate"] == [0.01, 0.01, 0.005, 0.0025]
    assert model.optimizer.learning_rate == 0.00125


def test_scheduler_sets_the_rate_each_epoch_and_history_records_it(backend, dtype):
    x, y = _data(dtype)
    model = _model(backend, dtype, nn.SGD(0.1))
    history = model.fit(x, y, epochs=3, callbacks=[LearningRateScheduler(lambda epoch, lr: 0.2 if epoch == 0
                                                                           else lr / 2)])
    assert history.history["learning_rate"] == [0.2, 0.1, 0.05] and model.optimizer.learning_rate == 0.05
    # A schedule of the epoch alone; a resumed fit passes the true epoch index, from initial_epoch or the count.
    seen = []
    scheduler = LearningRateScheduler(lambda epoch: seen.append(epoch) or 0.01 * (epoch + 1))
    history = model.fit(x, y, epochs=5, initial_epoch=3, callbacks=[scheduler])
    assert seen == [3, 4] and history.history["learning_rate"] == [0.04, 0.05]
    model.fit(x, y, epochs=1, callbacks=[scheduler])
    assert seen == [3, 4, 5] and model.optimizer.learning_rate == 0.06


def test_scheduler_on_an_iterator_of_batches(backend, dtype):
    x, y = _data(dtype)

    def batches():
        while True:
            yield x[:4], y[:4]

    model = _model(backend, dtype, nn.SGD(0.1))
    history = model.fit(batches(), epochs=3, steps_per_epoch=2,
                        callbacks=[LearningRateScheduler(lambda epoch, lr: [0.3, 0.2, 0.1][epoch])])
    assert history.history["learning_rate"] == [0.3, 0.2, 0.1] and model.optimizer.iterations == 6


def _two_epochs(backend, dtype, optimizer, callbacks=(), between=None):
    """Weights after two epochs (unshuffled, batches of 4) of a fresh model; between(model) runs after the first
    where given (two fits of one epoch then)."""
    x, y = _data(dtype)
    model = _model(backend, dtype, optimizer)
    if between is None:
        model.fit(x, y, epochs=2, batch_size=4, shuffle=False, callbacks=list(callbacks))
    else:
        model.fit(x, y, epochs=1, batch_size=4, shuffle=False)
        between(model)
        model.fit(x, y, epochs=1, batch_size=4, shuffle=False)
    return model.get_weights()


def _assert_rate_changes_the_next_step(backend, dtype, name):
    make = {"sgd": lambda: nn.SGD(0.1), "momentum": lambda: nn.SGD(0.1, momentum=0.9),
            "rmsprop": lambda: nn.RMSprop(0.01), "adam": lambda: nn.Adam(0.01)}[name]
    rate = make().learning_rate
    scheduled = _two_epochs(backend, dtype, make(), [LearningRateScheduler(lambda epoch, lr: lr if epoch == 0
                                                                           else lr * 0.3)])

    def set_rate(model):
        model.optimizer.learning_rate = rate * 0.3

    for a, b, unchanged in zip(scheduled, _two_epochs(backend, dtype, make(), between=set_rate),
                               _two_epochs(backend, dtype, make())):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, unchanged)
    if name == "sgd":  # no slots: a fresh optimizer of the new rate takes the same step
        def recompile(model):
            model.compile(nn.SGD(rate * 0.3), "mse")

        for a, b in zip(scheduled, _two_epochs(backend, dtype, make(), between=recompile)):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["sgd", "momentum", "rmsprop", "adam"])
def test_a_changed_rate_takes_the_next_step_as_set(backend, dtype, name):
    _assert_rate_changes_the_next_step(backend, dtype, name)


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_a_changed_rate_takes_the_next_step_on_the_device(cuda_backend, name):
    _assert_rate_changes_the_next_step(cuda_backend, np.float32, name)


def test_together_with_early_stopping(backend):
    x, y = _data()
    model = _model(backend)
    values = [1.0, 0.9, 0.95, 0.96, 0.97, 0.98, 0.5]
    history = model.fit(x, y, epochs=len(values), callbacks=[
        _Script(values), ReduceLROnPlateau(factor=0.5, patience=1), EarlyStopping(patience=3)])
    assert history.epoch == [0, 1, 2, 3, 4] and history.history["learning_rate"] == [1.0, 1.0, 1.0, 0.5, 0.25]


def test_a_model_of_several_outputs(backend):
    from fastdl.nn import Dense, Input, Model

    inputs = Input((3,))
    model = Model(inputs, [Dense(2, name="a")(inputs), Dense(1, name="b")(inputs)], seed=0, backend=backend)
    model.compile(nn.SGD(0.1), ["mse", "mse"])
    x, y = _data()
    history = model.fit(x, [y, y[:, :1]], epochs=3, validation_data=(x, [y, y[:, :1]]),
                        callbacks=[ReduceLROnPlateau("val_b_loss", 0.5, 0, min_delta=10)])
    # The first epoch is the best; each one after fails to beat it by 10, and reduces the rate at its end.
    assert history.history["learning_rate"] == [0.1, 0.1, 0.05] and "val_a_loss" in history.history
    assert model.optimizer.learning_rate == 0.025


def test_a_missing_monitor_warns_naming_the_logged_keys():
    # Where a callback of yours could have added it (else fit refuses it before training: test_nn_callbacks).
    x, y = _data()
    model = _model()
    yours = nn.LambdaCallback(on_epoch_end=lambda epoch, logs: None)
    with pytest.warns(UserWarning, match=r"^ReduceLROnPlateau monitors 'val_loss', but fit logged learning_rate, "
                                         r"loss \(give fit validation_data or validation_split\): the learning rate "
                                         r"is not reduced$"):
        history = model.fit(x, y, epochs=2, callbacks=[yours, ReduceLROnPlateau(patience=0)])
    assert history.history["learning_rate"] == [1.0, 1.0] and model.optimizer.learning_rate == 1.0


@pytest.mark.parametrize("checkpoint_first, saved", [(False, 0.5), (True, 1.0)])
def test_a_checkpoint_saves_the_reduced_rate_and_a_loaded_model_goes_on_with_it(backend, tmp_path,
                                                                                 checkpoint_first, saved):
    x, y = _data()
    path = tmp_path / "last.npz"
    model = _model(backend)
    callbacks = [ReduceLROnPlateau("val_loss", 0.5, 0), ModelCheckpoint(path, "val_loss")]
    model.fit(x, y, epochs=2, callbacks=[_Script([1.0, 2.0]), *(callbacks[::-1] if checkpoint_first else callbacks)])
    assert model.optimizer.learning_rate == 0.5
    loaded = _model(backend, seed=5).load(path)  # compiled with the rate 1.0
    assert loaded.optimizer.learning_rate == saved and loaded.epochs_trained == 2
    if not checkpoint_first:  # the same state: one more epoch lands on the same weights
        model.fit(x, y, epochs=1)
        loaded.fit(x, y, epochs=1)
        for a, b in zip(model.get_weights(), loaded.get_weights()):
            np.testing.assert_array_equal(a, b)


def test_verbose_lines_as_keras(capsys):
    x, y = _data()
    model = _model(optimizer=nn.SGD(0.5))
    model.fit(x, y, epochs=2, callbacks=[LearningRateScheduler(lambda epoch, lr: lr, verbose=1),
                                         _Script([1.0, 2.0]), ReduceLROnPlateau(patience=0, verbose=True)])
    assert capsys.readouterr().out.splitlines() == [
        "Epoch 1: LearningRateScheduler setting learning rate to 0.5.",
        "Epoch 2: LearningRateScheduler setting learning rate to 0.5.",
        "Epoch 2: ReduceLROnPlateau reducing learning rate to 0.05."]


@pytest.mark.parametrize("make, error, match", [
    (lambda: ReduceLROnPlateau(factor=1.0), ValueError, "factor >= 1"),
    (lambda: ReduceLROnPlateau(factor=-0.5), ValueError, "factor must be a finite number >= 0"),
    (lambda: ReduceLROnPlateau(factor=np.nan), ValueError, "factor must be"),
    (lambda: ReduceLROnPlateau(factor="0.5"), ValueError, "factor must be"),
    (lambda: ReduceLROnPlateau(patience=-1), ValueError, "patience must be an integer >= 0"),
    (lambda: ReduceLROnPlateau(patience=1.5), ValueError, "patience must be an integer >= 0"),
    (lambda: ReduceLROnPlateau(cooldown=-1), ValueError, "cooldown must be an integer >= 0"),
    (lambda: ReduceLROnPlateau(min_lr=-1e-3), ValueError, "min_lr must be a finite number >= 0"),
    (lambda: ReduceLROnPlateau(min_lr=np.inf), ValueError, "min_lr must be"),
    (lambda: ReduceLROnPlateau(min_delta=-1), ValueError, "min_delta must be"),
    (lambda: ReduceLROnPlateau(mode="up"), ValueError, "mode must be"),
    (lambda: ReduceLROnPlateau(monitor=3), TypeError, "monitor must be the name"),
    (lambda: ReduceLROnPlateau(verbose=-1), ValueError, "verbose must be"),
    (lambda: LearningRateScheduler(0.1), TypeError, "schedule must be a function"),
    (lambda: LearningRateScheduler(lambda epoch, lr, extra: lr), TypeError, r"schedule must take \(epoch, lr\)"),
    (lambda: LearningRateScheduler(lambda: 0.1), TypeError, r"schedule must take \(epoch, lr\) or \(epoch\)"),
    (lambda: LearningRateScheduler(lambda epoch: 0.1, verbose="yes"), ValueError, "verbose must be"),
])
def test_bad_arguments_are_refused_when_made(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("rate", [np.nan, -0.1, np.inf, "0.1", None, True, np.array([0.1])])
def test_a_bad_scheduled_rate_stops_fit_before_the_epoch(backend, rate):
    x, y = _data()
    model = _model(backend)
    weights = model.get_weights()
    with pytest.raises(ValueError, match=r"^LearningRateScheduler's schedule gave .* as the learning rate of epoch 2 "
                                         r"\(index 1\); it must be a finite number >= 0$"):
        model.fit(x, y, epochs=3, callbacks=[LearningRateScheduler(lambda epoch, lr: 0.5 if epoch == 0 else rate)])
    assert model.epochs_trained == 1 and model.optimizer.learning_rate == 0.5
    assert not np.array_equal(weights[0], model.get_weights()[0])


def test_schedule_rates_of_other_types_are_taken():
    for rate in (1, np.float32(0.25), np.int64(2), 0.0):
        scheduler = LearningRateScheduler(lambda epoch: rate)
        scheduler.set_model(_Holder(0.5))
        scheduler.on_epoch_begin(0)
        logs = {}
        scheduler.on_epoch_end(0, logs)
        assert logs["learning_rate"] == float(rate) and type(logs["learning_rate"]) is float


def test_a_type_error_inside_a_schedule_is_not_taken_for_one_of_the_epoch_alone():
    def schedule(epoch, lr):
        return lr * "2"  # a bug: Keras would call schedule(epoch) next and report a missing argument

    model = _model()
    x, y = _data()
    with pytest.raises(TypeError, match="can't multiply sequence"):
        model.fit(x, y, callbacks=[LearningRateScheduler(schedule)])
    # A callable without a readable signature is called as Keras calls it: (epoch, lr), else (epoch).
    scheduler = LearningRateScheduler(max)
    scheduler.set_model(_Holder(0.5))
    for epoch in range(3):
        scheduler.on_epoch_begin(epoch)
    assert scheduler.model.optimizer.learning_rate == 2.0  # max(2, 1.0)


@pytest.mark.parametrize("make", [lambda: LearningRateScheduler(lambda epoch: 0.1), lambda: ReduceLROnPlateau()])
def test_a_model_without_an_optimizer_is_a_clear_error(make):
    callback = make()
    callback.set_model(nn.Sequential([nn.Input((3,)), nn.Dense(2)]))
    with pytest.raises(ValueError, match=rf"^{type(callback).__name__} sets the learning rate of the model's "
                                         r"optimizer, but the model has none: call model.compile"):
        callback.on_train_begin({})
