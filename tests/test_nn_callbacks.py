"""fastdl.nn callbacks: EarlyStopping, ModelCheckpoint, resuming from a checkpoint, the progress bar."""

import io

import numpy as np
import pytest

from fastdl import nn
from test_nn_training import blobs, small_mlp


def _compiled(seed=0, optimizer=None):
    model = small_mlp(seed=seed)
    model.compile(optimizer or nn.Adam(lr=0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


class StopAfter(nn.Callback):
    def __init__(self, n_epochs):
        self.n_epochs = n_epochs

    def on_epoch_end(self, epoch, logs=None):
        return epoch + 1 >= self.n_epochs


class Recorder(nn.Callback):
    """Keeps a copy of the weights at the end of every epoch."""

    def on_train_begin(self, logs=None):
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.get_weights())


def _fit_scripted(model, values, callbacks, **kwargs):
    """fit whose callbacks see `values` as val_loss (the scripting callback must run first)."""
    x, y = blobs(64)

    class Script(nn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_loss"] = values[epoch]

    # The logs dict is shared by the epoch's callbacks, so the script's value reaches the ones after it.
    return model.fit(x, y, epochs=len(values), callbacks=[Script(), *callbacks], **kwargs)


def test_early_stopping_stops_and_restores_the_best_weights():
    model = _compiled()
    recorder = Recorder()
    stopper = nn.EarlyStopping(patience=2, restore_best_weights=True)
    history = _fit_scripted(model, [1.0, 0.5, 0.7, 0.6, 0.4, 0.3], [recorder, stopper])
    assert history.epoch == [0, 1, 2, 3]  # two epochs without improving on 0.5, then stop
    assert stopper.best_epoch == 1 and stopper.stopped_epoch == 3
    for restored, best in zip(model.get_weights(), recorder.weights[1]):
        np.testing.assert_array_equal(restored, best)


def test_early_stopping_patience_zero_without_restoring():
    model = _compiled()
    recorder = Recorder()
    history = _fit_scripted(model, [1.0, 0.9, 0.95, 0.5], [recorder, nn.EarlyStopping()])
    assert history.epoch == [0, 1, 2]
    np.testing.assert_array_equal(model.get_weights()[0], recorder.weights[2][0])


def test_early_stopping_baseline_and_warm_up():
    # Improving on the best but not on the baseline does not restart the wait (Keras' rule).
    assert _fit_scripted(_compiled(), [1.0, 0.9, 0.95, 0.97, 0.4], [nn.EarlyStopping(patience=3)]).epoch \
        == [0, 1, 2, 3, 4]
    stopper = nn.EarlyStopping(patience=3, baseline=0.5)
    assert _fit_scripted(_compiled(), [1.0, 0.9, 0.95, 0.97, 0.4], [stopper]).epoch == [0, 1, 2]
    assert stopper.best == 0.9 and stopper.stopped_epoch == 2
    stopper = nn.EarlyStopping(patience=1, baseline=0.5)
    assert _fit_scripted(_compiled(), [1.0, 0.45, 0.47, 0.46, 0.3], [stopper]).epoch == [0, 1, 2]
    # start_from_epoch: the first epochs are not watched.
    values = [1.0, 2.0, 3.0, 0.5, 0.6, 0.4]
    assert _fit_scripted(_compiled(), values, [nn.EarlyStopping()]).epoch == [0, 1]
    stopper = nn.EarlyStopping(start_from_epoch=2)
    assert _fit_scripted(_compiled(), values, [stopper]).epoch == [0, 1, 2, 3, 4]
    assert stopper.best_epoch == 3
    with pytest.raises(ValueError, match="start_from_epoch"):
        nn.EarlyStopping(start_from_epoch=-1)
    with pytest.raises(ValueError, match="baseline"):
        nn.EarlyStopping(baseline=float("nan"))


def test_early_stopping_on_a_real_metric():
    x, y = blobs(200)
    model = _compiled()
    stopper = nn.EarlyStopping(monitor="accuracy", patience=1, min_delta=0.5)
    history = model.fit(x, y, epochs=10, callbacks=[stopper])
    assert stopper.mode == "max" and len(history.epoch) == 2


def test_model_checkpoint_save_best_only(tmp_path):
    model = _compiled()
    checkpoint = nn.ModelCheckpoint(tmp_path / "ckpt-{epoch}.npz", save_best_only=True)
    _fit_scripted(model, [1.0, 0.5, 0.7, 0.5, 0.2], [checkpoint])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-1.npz", "ckpt-2.npz", "ckpt-5.npz"]
    assert checkpoint.last_saved == str(tmp_path / "ckpt-5.npz")
    every = nn.ModelCheckpoint(tmp_path / "all-{epoch:02d}-{loss:.2f}.npz")
    _fit_scripted(_compiled(), [1.0, 2.0], [every])
    assert len(list(tmp_path.glob("all-0[12]-*.npz"))) == 2


def test_checkpoint_holds_the_best_epoch(tmp_path):
    model = _compiled()
    recorder = Recorder()
    path = tmp_path / "best.npz"
    _fit_scripted(model, [1.0, 0.3, 0.7], [recorder, nn.ModelCheckpoint(path, save_best_only=True)])
    best = _compiled(seed=9).load(path)
    assert best.epochs_trained == 2
    for a, b in zip(best.get_weights(), recorder.weights[1]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("resume", ["epoch_count", "initial_epoch"])
def test_resume_from_a_checkpoint_continues_identically(tmp_path, resume):
    x, y = blobs(200)
    val = blobs(60, seed=1)
    straight = _compiled(seed=3)
    full = straight.fit(x, y, epochs=4, validation_data=val)

    interrupted = _compiled(seed=3)
    path = tmp_path / "last.npz"
    interrupted.fit(x, y, epochs=4, validation_data=val, callbacks=[nn.ModelCheckpoint(path), StopAfter(2)])
    assert interrupted.epochs_trained == 2

    resumed = _compiled(seed=77).load(path)
    if resume == "epoch_count":
        history = resumed.fit(x, y, epochs=2, validation_data=val)
    else:
        history = resumed.fit(x, y, epochs=4, initial_epoch=resumed.epochs_trained, validation_data=val)
    assert history.epoch == [2, 3]
    assert history.history["val_loss"] == full.history["val_loss"][2:]
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_bad_callback_arguments():
    x, y = blobs(32)
    with pytest.raises(TypeError, match="Callback"):
        _compiled().fit(x, y, callbacks=[lambda epoch, logs: None])
    with pytest.raises(ValueError, match=r"'val_loss', but fit will log accuracy, loss \(give fit validation_data"):
        _compiled().fit(x, y, callbacks=[nn.EarlyStopping()])
    with pytest.raises(ValueError, match="patience"):
        nn.EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match="mode"):
        nn.ModelCheckpoint("m.npz", mode="best")
    with pytest.raises(ValueError, match="initial_epoch"):
        _compiled().fit(x, y, epochs=2, initial_epoch=3)
    with pytest.raises(ValueError, match="verbose"):
        _compiled().fit(x, y, verbose=3)
    model = _compiled()
    with pytest.raises(ValueError, match="weight arrays"):
        model.set_weights(model.get_weights()[:-1])


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_only_on_a_terminal(monkeypatch):
    x, y = blobs(64)
    terminal = FakeTerminal()
    monkeypatch.setattr("sys.stdout", terminal)
    _compiled().fit(x, y, epochs=2, batch_size=16, verbose=1)
    text = terminal.getvalue()
    assert "Epoch 2/2" in text and "images/s" in text and "accuracy" in text and "4/4" in text
    # verbose=2 and non-terminals get plain lines (see test_verbose_prints_one_line_per_epoch).
    terminal = FakeTerminal()
    monkeypatch.setattr("sys.stdout", terminal)
    _compiled().fit(x, y, epochs=2, batch_size=16, verbose=2)
    lines = terminal.getvalue().strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("Epoch 1/2") and "\r" not in terminal.getvalue()


def test_early_stopping_restores_batch_norm_moving_statistics():
    """As in Keras, the weights put back include the non-trainable ones (moving mean and variance)."""
    model = nn.Sequential([nn.Dense(6, input_shape=(8,)), nn.BatchNormalization(), nn.Activation("relu"),
                           nn.Dense(3, activation="softmax")], seed=0)
    model.compile(nn.Adam(lr=0.01), "sparse_categorical_crossentropy")
    names = [name for name, _ in model._weight_arrays()]
    assert names[2:6] == ["batch_normalization/gamma", "batch_normalization/beta",
                          "batch_normalization/moving_mean", "batch_normalization/moving_variance"]
    recorder = Recorder()
    stopper = nn.EarlyStopping(patience=1, restore_best_weights=True)
    _fit_scripted(model, [1.0, 0.5, 0.7, 0.6], [recorder, stopper])
    best = recorder.weights[1]
    assert not np.array_equal(best[4], recorder.weights[2][4])  # the moving mean moved on after epoch 1
    for restored, expected in zip(model.get_weights(), best):
        np.testing.assert_array_equal(restored, expected)


def test_epoch_timer_records_one_duration_per_epoch():
    x, y = blobs()
    model = _compiled()
    timer = nn.EpochTimer()
    model.fit(x, y, epochs=3, batch_size=16, validation_data=(x, y), callbacks=[timer])
    assert len(timer.seconds) == 3 and all(s > 0 for s in timer.seconds)
    model.fit(x, y, epochs=1, callbacks=[timer])  # a new fit starts a new record
    assert len(timer.seconds) == 1


def test_checkpoint_keeps_its_best_across_fits(tmp_path):
    # As Keras: a later fit (a loop of fit(epochs=1), a resumed run) never writes a worse model over the best.
    val_loss = {0: 1.0, 1: 0.3, 2: 0.7, 3: 0.5, 4: 0.2}

    class Script(nn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_loss"] = val_loss[epoch]

    model, (x, y) = _compiled(), blobs(64)
    path = tmp_path / "best.npz"
    checkpoint = nn.ModelCheckpoint(path, save_best_only=True)
    model.fit(x, y, epochs=3, callbacks=[Script(), checkpoint])
    model.fit(x, y, epochs=1, callbacks=[Script(), checkpoint])
    assert _compiled().load(path).epochs_trained == 2
    model.fit(x, y, epochs=1, callbacks=[Script(), checkpoint])
    assert _compiled().load(path).epochs_trained == 5


def test_checkpoint_template_that_cannot_be_filled_is_a_clear_error(tmp_path):
    x, y = blobs(32)
    for template, match in [("w-{epoch:02d}-{val_acc:.2f}.npz", r"KeyError: 'val_acc'\); its fields can be epoch, "
                                                                r"accuracy, loss"),
                            ("w-{}.npz", "IndexError"), ("w-{epoch:s}.npz", "ValueError")]:
        with pytest.raises(ValueError, match=match):
            _compiled().fit(x, y, callbacks=[nn.ModelCheckpoint(tmp_path / template)])


def test_early_stopping_restores_the_best_weights_at_the_end_of_training():
    # As Keras 3 (on_train_end): also when fit runs to its last epoch, or another callback stops it.
    recorder = Recorder()
    model = _compiled()
    stopper = nn.EarlyStopping(patience=10, restore_best_weights=True)
    _fit_scripted(model, [1.0, 0.5, 0.7, 0.6], [recorder, stopper])
    assert stopper.stopped_epoch is None and stopper.best_epoch == 1
    for restored, best in zip(model.get_weights(), recorder.weights[1]):
        np.testing.assert_array_equal(restored, best)
    model = _compiled()
    _fit_scripted(model, [1.0, 0.5, 0.7, 0.6, 0.2], [recorder, nn.EarlyStopping(patience=10, restore_best_weights=True),
                                                   StopAfter(3)])
    for restored, best in zip(model.get_weights(), recorder.weights[1]):
        np.testing.assert_array_equal(restored, best)


def test_callbacks_take_keras_positional_order(tmp_path, capsys):
    # EarlyStopping(monitor, min_delta, patience, verbose, mode, baseline, restore_best_weights, start_from_epoch)
    stopper = nn.EarlyStopping("val_loss", 0.1, 5, 1, "min", 2.0, True, 3)
    assert (stopper.min_delta, stopper.patience, stopper.verbose, stopper.mode, stopper.baseline,
            stopper.restore_best_weights, stopper.start_from_epoch) == (0.1, 5, 1, "min", 2.0, True, 3)
    # ModelCheckpoint(filepath, monitor, verbose, save_best_only, save_weights_only, mode, save_freq,
    # initial_value_threshold)
    checkpoint = nn.ModelCheckpoint(tmp_path / "m.npz", "val_loss", 1, True, False, "min", "epoch", 0.6)
    assert (checkpoint.verbose, checkpoint.save_best_only, checkpoint.mode, checkpoint.best) == (1, True, "min", 0.6)
    for unsupported, match in [({"save_weights_only": True}, "save_weights_only=True"),
                               ({"save_freq": 10}, "save_freq=10")]:
        with pytest.raises(ValueError, match=match):
            nn.ModelCheckpoint(tmp_path / "m.npz", **unsupported)
    # verbose: Keras' lines; initial_value_threshold: no file until 0.6 is beaten.
    _fit_scripted(_compiled(), [1.0, 0.5, 0.7], [checkpoint, nn.EarlyStopping(patience=1, verbose=1,
                                                                              restore_best_weights=True)])
    path = tmp_path / "m.npz"
    assert capsys.readouterr().out.splitlines() == [
        "Epoch 1: val_loss did not improve from 0.60000",
        f"Epoch 2: val_loss improved from 0.60000 to 0.50000, saving model to {path}",
        f"Epoch 2: finished saving model to {path}",
        "Epoch 3: val_loss did not improve from 0.50000",
        "Epoch 3: early stopping",
        "Restoring model weights from the end of the best epoch: 2."]
    assert _compiled().load(path).epochs_trained == 2


HOOKS = ["on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_train_batch_begin",
         "on_train_batch_end", "on_test_begin", "on_test_end", "on_test_batch_begin", "on_test_batch_end"]


def _hook_recorder():
    calls = []

    def make(name):
        return lambda self, *args: calls.append((name, *(a for a in args if isinstance(a, int))))

    return type("Hooks", (nn.Callback,), {name: make(name) for name in HOOKS})(), calls


@pytest.mark.parametrize("functional", [False, True], ids=["sequential", "functional"])
def test_keras_hooks_in_keras_order(functional):
    """The hooks fit and evaluate call, in the order Keras 3.15 calls them (recorded there)."""
    x, y = blobs(6)
    if functional:
        inputs = nn.Input((8,))
        model = nn.Model(inputs, nn.Dense(3, activation="softmax")(inputs), seed=0)
        model.compile("sgd", "sparse_categorical_crossentropy")
    else:
        model = _compiled()
    callback, calls = _hook_recorder()
    model.fit(x, y, 4, 2, validation_data=(x, y), callbacks=[callback])
    model.evaluate(x, y, 4, callbacks=[callback])
    epoch = lambda e: [("on_epoch_begin", e), ("on_train_batch_begin", 0), ("on_train_batch_end", 0),  # noqa: E731
                       ("on_train_batch_begin", 1), ("on_train_batch_end", 1), ("on_test_begin",),
                       ("on_test_batch_begin", 0), ("on_test_batch_end", 0), ("on_test_batch_begin", 1),
                       ("on_test_batch_end", 1), ("on_test_end",), ("on_epoch_end", e)]
    test = [("on_test_begin",), ("on_test_batch_begin", 0), ("on_test_batch_end", 0), ("on_test_batch_begin", 1),
            ("on_test_batch_end", 1), ("on_test_end",)]
    assert calls == [("on_train_begin",), *epoch(0), *epoch(1), ("on_train_end",), *test]


def test_hook_logs_and_older_names():
    x, y = blobs(6)
    seen = {}

    class Older(nn.Callback):
        """Keras' older batch hooks: the base class's on_train_batch_begin / _end call them."""

        def on_batch_begin(self, batch, logs=None):
            seen.setdefault("begin", []).append(batch)

        def on_batch_end(self, batch, logs=None):
            seen.setdefault("end", []).append(sorted(logs))

        def on_test_batch_end(self, batch, logs=None):
            seen.setdefault("test", []).append(dict(logs))

        def on_test_end(self, logs=None):
            seen["test_end"] = logs

        def on_epoch_end(self, epoch, logs=None):
            logs["extra"] = 1.0

        def on_train_end(self, logs=None):
            seen["train_end"] = logs

    model, older = _compiled(), Older()
    history = model.fit(x, y, 4, 1, validation_data=(x, y), callbacks=[older])
    assert seen["begin"] == [0, 1] and seen["end"] == [["accuracy", "loss", "seen"]] * 2
    # The test batches' logs: the means so far; the last are the validation's (up to rounding).
    assert seen["test"][-1] == pytest.approx(seen["test_end"]) and len(seen["test"]) == 2
    assert seen["test_end"]["loss"] == pytest.approx(history.history["val_loss"][0])
    # on_train_end: the last epoch's logs as fit logged them (Keras': without what callbacks added).
    assert sorted(seen["train_end"]) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    # params["metrics"] (Keras 2's): the names fit logs, None where a callback of yours may add any.
    assert older.params == {"verbose": 0, "epochs": 1, "steps": 2, "metrics": None} and older.model is model


PREDICT_HOOKS = ["on_predict_begin", "on_predict_batch_begin", "on_predict_batch_end", "on_predict_end"]


@pytest.mark.parametrize("outputs", ["sequential", "tensor", "list", "dict"])
def test_predict_hooks_in_keras_order(outputs):
    """predict(callbacks=...) calls the hooks as Keras 3.15 does (recorded there), with the batch's
    outputs in the logs: {"outputs": array or list}, a dict's outputs flattened into the logs."""
    x, _ = blobs(5)
    if outputs == "sequential":
        model = _compiled()
    else:
        inputs = nn.Input((8,))
        heads = {"a": nn.Dense(2, name="a")(inputs), "b": nn.Dense(1, name="b")(inputs)}
        given = {"tensor": heads["a"], "list": [heads["a"], heads["b"]], "dict": heads}[outputs]
        model = nn.Model(inputs, given, seed=0)
    calls = []

    class Hooks(nn.Callback):
        def on_predict_begin(self, logs=None):
            calls.append(("on_predict_begin", logs, dict(self.params)))

        def on_predict_batch_begin(self, batch, logs=None):
            calls.append(("on_predict_batch_begin", batch, logs))

        def on_predict_batch_end(self, batch, logs=None):
            calls.append(("on_predict_batch_end", batch, logs))

        def on_predict_end(self, logs=None):
            calls.append(("on_predict_end", logs))

    predicted = model.predict(x, 2, 0, None, [Hooks()])  # Keras 3's order: batch_size, verbose, steps, callbacks
    assert [call[0] for call in calls] == ["on_predict_begin", *["on_predict_batch_begin", "on_predict_batch_end"] * 3,
                                           "on_predict_end"]
    assert calls[0][1:] == ({}, {"verbose": 0, "epochs": 1, "steps": 3}) and calls[-1][1] == {}
    ends = [call[2] for call in calls if call[0] == "on_predict_batch_end"]
    for batch, logs in enumerate(ends):
        rows = slice(2 * batch, 2 * batch + 2)
        if outputs == "dict":
            assert sorted(logs) == ["a", "b"] and all(np.array_equal(logs[k], predicted[k][rows]) for k in logs)
        elif outputs == "list":
            assert list(logs) == ["outputs"] and all(np.array_equal(a, p[rows]) for a, p in zip(logs["outputs"], predicted))
        else:
            assert list(logs) == ["outputs"] and np.array_equal(logs["outputs"], predicted[rows])
    with pytest.raises(ValueError, match="steps"):
        model.predict(x, 2, 0, 3)


def test_only_true_from_on_epoch_end_stops():
    """Keras ignores what on_epoch_end returns: a Keras callback returning its logs trains on."""
    x, y = blobs(16)

    class Returns(nn.Callback):
        def __init__(self, value):
            self.value = value

        def on_epoch_end(self, epoch, logs=None):
            return self.value if self.value is not None else logs

    for value, epochs in ((None, 3), (1, 3), ("stop", 3), (True, 1), (np.True_, 1)):
        assert len(_compiled().fit(x, y, 8, 3, callbacks=[Returns(value)]).history["loss"]) == epochs


def test_progress_rate_counts_the_images_trained(monkeypatch, capsys):
    """An epoch a callback stops after its first batch trained that batch's images, not all of them;
    the rate's clock stops at the last batch (validation not counted)."""
    from fastdl.nn import callbacks as callbacks_module

    class Clock:  # one second a reading
        now = 0.0

        @classmethod
        def perf_counter(cls):
            cls.now += 1.0
            return cls.now

    monkeypatch.setattr(callbacks_module, "time", Clock)
    x, y = blobs(16)

    class StopAtFirstBatch(nn.Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.model.stop_training = True

    _compiled().fit(x, y, 4, 1, 2, [StopAtFirstBatch()], validation_data=(x, y))
    # Readings: the epoch's start, the first batch's end (1 s: 4 images), the epoch's end.
    assert "(4 images/s)" in capsys.readouterr().out


def test_train_end_is_not_called_after_an_error():
    """As Keras: EarlyStopping restores nothing over the weights put back after a NaN loss."""
    x, y = blobs(32)
    ended = []

    class Ends(nn.Callback):
        def on_train_end(self, logs=None):
            ended.append(logs)

    class Fails(nn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        _compiled().fit(x, y, epochs=3, callbacks=[Ends(), Fails()])
    assert ended == []


def test_history_knows_its_model_and_params_and_predict_takes_batch_size_none():
    """As Keras: history.params (plots read history.params["epochs"]) and history.model; predict's
    batch_size=None is 32, as fit's and evaluate's."""
    x, y = np.random.default_rng(2).standard_normal((10, 3)), np.arange(10) % 2
    model = nn.Sequential([nn.Dense(2, activation="softmax", input_shape=(3,))], seed=0)
    model.compile("sgd", "sparse_categorical_crossentropy")
    history = model.fit(x, y, batch_size=4, epochs=2)
    assert history.params == {"verbose": 0, "epochs": 2, "steps": 3, "metrics": ["loss"]} and history.model is model
    np.testing.assert_array_equal(model.predict(x, batch_size=None), model.predict(x))


def test_a_missing_validation_metric_is_named_without_a_misleading_hint():
    x, y = np.random.default_rng(2).standard_normal((10, 3)), np.arange(10) % 2
    model = nn.Sequential([nn.Dense(2, activation="softmax", input_shape=(3,))], seed=0)
    model.compile("sgd", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="val_acuracy") as caught:
        model.fit(x, y, validation_split=0.2, callbacks=[nn.EarlyStopping("val_acuracy")])
    assert "validation_split" not in str(caught.value) and "val_loss" in str(caught.value)


def test_stopping_at_a_batch_begin_trains_that_batch_first():
    """As Keras: a callback that sets stop_training in on_train_batch_begin(1) still has batch 1
    trained and its end hook called; then training stops."""
    class StopAtBegin(nn.Callback):
        ends = []

        def on_train_batch_begin(self, batch, logs=None):
            if batch == 1:
                self.model.stop_training = True

        def on_train_batch_end(self, batch, logs=None):
            self.ends.append(batch)

    x, y = np.random.default_rng(0).normal(size=(6, 3)), np.arange(6) % 2
    model = nn.Sequential([nn.Dense(2, activation="softmax", input_shape=(3,))], seed=0)
    model.compile("sgd", "sparse_categorical_crossentropy")
    stop = StopAtBegin()
    history = model.fit(x, y, batch_size=2, epochs=3, callbacks=[stop], shuffle=False)
    assert stop.ends == [0, 1] and model.optimizer.iterations == 2 and len(history.epoch) == 1


MONITORS = {"no validation": lambda path: nn.EarlyStopping(), "typo": lambda path: nn.EarlyStopping("val_acc"),
            "rate": lambda path: nn.ReduceLROnPlateau(),
            "checkpoint": lambda path: nn.ModelCheckpoint(path, save_best_only=True)}


@pytest.mark.parametrize("kind", list(MONITORS))
def test_a_monitor_fit_will_not_log_is_refused_before_the_first_step(kind, tmp_path):
    # Not after an epoch (a4's CNN: 93 s): fit knows its names where every callback's are known.
    x, y = blobs(32)
    callback, model, steps = MONITORS[kind](tmp_path / "best.npz"), _compiled(), []
    validation = dict(validation_split=0.25) if kind == "typo" else {}
    counting = nn.LambdaCallback(on_train_batch_end=lambda batch, logs: steps.append(batch))
    with pytest.raises(ValueError, match=f"monitors '{callback.monitor}', but fit will log "):
        model.fit(x, y, epochs=2, callbacks=[callback, counting], **validation)
    assert steps == [] and model.optimizer.iterations == 0
    # A callback of yours may add the name: fit cannot know, and the value is looked for in the logs.
    adds = nn.LambdaCallback(on_epoch_end=lambda epoch, logs: logs.update({callback.monitor: 1.0 / (epoch + 1)}))
    model.fit(x, y, epochs=2, callbacks=[adds, callback], **validation)
    assert model.epochs_trained == 2
