"""A review of the day's new fastdl.nn features found: a Sequential softmax classifier handing
the metrics its logits while training, a Loss given as a metric too overwriting the gradient it
keeps, mode "auto" minimising a metric of the user's, a learning rate a schedule set for an epoch
rolled back staying set, and CSVLogger appending rows under another header."""

import csv

import numpy as np
import pytest

from fastdl import NonFiniteError, nn


def _classifier(backend="numpy", seed=0):
    return nn.Sequential([nn.Input((4,)), nn.Dense(3, activation="softmax")], seed=seed, backend=backend)


def _data(n=12, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)), rng.integers(0, 3, n)


def _row_sum(y_true, y_pred):
    return y_pred.sum(axis=1)


def test_training_metrics_read_the_probabilities_not_the_logits(backend):
    x, codes = _data()
    one_hot = np.eye(3)[codes]
    model = _classifier(backend)
    model.compile(nn.SGD(0.0), "categorical_crossentropy", metrics=["accuracy", "mae", _row_sum])
    trained = model.train_on_batch(x, one_hot, return_dict=True)  # a rate of 0: the weights stay
    evaluated = model.evaluate(x, one_hot, batch_size=len(x), return_dict=True)
    for key in ("accuracy", "mae", "_row_sum"):
        np.testing.assert_allclose(trained[key], evaluated[key], rtol=1e-6, err_msg=key)
    np.testing.assert_allclose(trained["_row_sum"], 1.0, rtol=1e-6)
    history = model.fit(x, one_hot, batch_size=len(x), shuffle=False)
    np.testing.assert_allclose(history.history["mae"], [evaluated["mae"]], rtol=1e-6)


def test_a_loss_given_as_a_metric_too_leaves_the_step_as_without_it(backend):
    x, _ = _data()
    y = np.random.default_rng(1).normal(size=(len(x), 3))
    weights = np.linspace(0.0, 2.0, len(x))
    steps = []
    for as_metric in (False, True):
        loss = nn.Huber(0.5)
        model = nn.Sequential([nn.Input((4,)), nn.Dense(3)], seed=0, backend=backend)
        model.compile(nn.SGD(0.1), loss, metrics=[loss] if as_metric else None)
        logs = model.train_on_batch(x, y, sample_weight=weights, return_dict=True)
        steps.append(model.get_weights())
    np.testing.assert_array_equal(steps[0][0], steps[1][0])
    assert list(logs) == ["loss", "huber"]  # logged under the loss's name, as Keras


@pytest.mark.parametrize("make", [
    lambda: nn.EarlyStopping(monitor="val__row_sum"),
    lambda: nn.ModelCheckpoint("unused.npz", monitor="_row_sum"),
    lambda: nn.ReduceLROnPlateau(monitor="_row_sum"),
])
def test_mode_auto_refuses_a_metric_of_ones_own(make):
    x, codes = _data()
    model = _classifier()
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=[_row_sum])
    weights = model.get_weights()
    with pytest.raises(ValueError, match="'_row_sum' is a metric of your own.*give mode='max' or mode='min'"):
        model.fit(x, codes, validation_split=0.25, callbacks=[make()])
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), weights))


def test_mode_auto_still_knows_accuracy_mae_and_a_loss_given_as_a_metric():
    x, codes = _data()
    model = _classifier()
    model.compile("sgd", "sparse_categorical_crossentropy",
                  metrics=["accuracy", nn.SparseCategoricalCrossentropy()])
    up, down = nn.EarlyStopping(monitor="val_accuracy"), nn.EarlyStopping(monitor="sparse_categorical_crossentropy")
    model.fit(x, codes, validation_split=0.25, callbacks=[up, down])
    assert (up.mode, down.mode) == ("max", "min")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # (the overflow the rate causes)
def test_a_rate_set_for_an_epoch_that_is_rolled_back_goes_back_with_it(backend):
    x, _ = _data()
    model = nn.Sequential([nn.Input((4,)), nn.Dense(3)], seed=0, backend=backend)
    model.compile(nn.SGD(0.01), "mse")
    schedule = nn.LearningRateScheduler(lambda epoch, lr: 1e30 if epoch == 2 else lr)
    with pytest.raises(NonFiniteError, match="put back to those from before epoch 3"):
        model.fit(x * 1e3, np.ones((len(x), 3)), batch_size=4, epochs=4, callbacks=[schedule])
    assert model.optimizer.lr == 0.01 and model.epochs_trained == 2


def test_csv_logger_appends_under_the_files_own_columns(tmp_path):
    path = tmp_path / "log.csv"
    x, codes = _data()
    model = _classifier()
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.fit(x, codes, epochs=1, callbacks=[nn.CSVLogger(path)])
    with pytest.warns(UserWarning, match=r"\['val_loss'\] are not among the file's columns"):
        model.fit(x, codes, epochs=1, validation_split=0.25, callbacks=[nn.CSVLogger(path, append=True)])
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert [len(row) for row in rows] == [2, 2, 2] and rows[0] == ["epoch", "loss"]
