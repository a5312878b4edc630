"""LambdaCallback and CSVLogger, as Keras 3's: hooks called with Keras' arguments, the CSV file's
header and rows, appending, resuming, and bad arguments refused when the callback is made."""

import csv

import numpy as np
import pytest

from fastdl import nn
from test_nn_training import blobs, small_mlp


def _compiled(backend="numpy"):
    model = small_mlp(seed=0, backend=backend)
    model.compile(nn.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_lambda_callback_calls_each_hook_given_with_keras_arguments(backend):
    calls = []
    callback = nn.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: calls.append(("epoch_begin", epoch)),
        on_epoch_end=lambda epoch, logs: calls.append(("epoch_end", epoch, sorted(logs))),
        on_train_begin=lambda logs: calls.append(("train_begin",)),
        on_train_end=lambda logs: calls.append(("train_end",)),
        on_train_batch_end=lambda batch, logs: calls.append(("batch_end", batch)),
        on_test_batch_end=lambda batch, logs: calls.append(("test_batch_end", batch)))
    x, y = blobs(40)
    _compiled(backend).fit(x, y, batch_size=16, epochs=2, validation_split=0.25, callbacks=[callback])
    epoch = [("batch_end", 0), ("batch_end", 1), ("test_batch_end", 0)]
    names = ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert calls == [("train_begin",), ("epoch_begin", 0), *epoch, ("epoch_end", 0, names),
                     ("epoch_begin", 1), *epoch, ("epoch_end", 1, names), ("train_end",)]


def test_what_a_lambda_returns_does_not_stop_training():
    x, y = blobs(16)
    history = _compiled().fit(x, y, epochs=3, callbacks=[nn.LambdaCallback(on_epoch_end=lambda epoch, logs: True)])
    assert len(history.history["loss"]) == 3  # Keras ignores it; model.stop_training stops


def test_lambda_callback_can_stop_training_through_the_model():
    model = _compiled()
    stop = nn.LambdaCallback(on_epoch_end=lambda epoch, logs: setattr(model, "stop_training", epoch == 1))
    x, y = blobs(16)
    assert len(model.fit(x, y, epochs=5, callbacks=[stop]).history["loss"]) == 2


@pytest.mark.parametrize("kwargs, error, words", [
    ({"on_epoch_ends": print}, ValueError, "no hooks \\['on_epoch_ends'\\]"),
    ({"on_epoch_end": "print"}, TypeError, "on_epoch_end must be a function"),
    ({"on_test_end": 3}, TypeError, "on_test_end must be a function"),
])
def test_lambda_callback_refuses_bad_hooks(kwargs, error, words):
    with pytest.raises(error, match=words):
        nn.LambdaCallback(**kwargs)


def _rows(path, separator=","):
    with open(path, newline="") as f:
        return list(csv.reader(f, delimiter=separator))


def test_csv_logger_writes_a_header_and_a_row_per_epoch(backend, tmp_path):
    path = tmp_path / "log.csv"
    x, y = blobs(40)
    history = _compiled(backend).fit(x, y, epochs=3, validation_split=0.25, callbacks=[nn.CSVLogger(path)])
    rows = _rows(path)
    assert rows[0] == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    assert [row[0] for row in rows[1:]] == ["0", "1", "2"]
    for i, name in enumerate(rows[0][1:], start=1):
        assert [float(row[i]) for row in rows[1:]] == history.history[name]  # every digit kept


def test_csv_logger_appends_without_a_second_header_and_counts_epochs_on(tmp_path):
    path = tmp_path / "log.tsv"
    model = _compiled()
    x, y = blobs(16)
    model.fit(x, y, epochs=2, callbacks=[nn.CSVLogger(path, separator="\t")])
    model.fit(x, y, epochs=3, initial_epoch=2, callbacks=[nn.CSVLogger(path, separator="\t", append=True)])
    rows = _rows(path, "\t")
    assert rows[0] == ["epoch", "accuracy", "loss"]
    assert [row[0] for row in rows[1:]] == ["0", "1", "2"]
    model.fit(x, y, epochs=1, callbacks=[nn.CSVLogger(path, separator="\t")])  # afresh (fit goes on counting)
    assert [row[0] for row in _rows(path, "\t")] == ["epoch", "3"]


def test_csv_logger_keeps_the_epochs_finished_before_an_error(tmp_path):
    path = tmp_path / "log.csv"

    class Fail(nn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("stop here")

    x, y = blobs(16)
    with pytest.raises(RuntimeError, match="stop here"):
        _compiled().fit(x, y, epochs=4, callbacks=[nn.CSVLogger(path), Fail()])
    assert [row[0] for row in _rows(path)] == ["epoch", "0", "1"]


def test_csv_logger_writes_na_for_a_missing_name_and_warns_of_a_new_one(tmp_path):
    logger = nn.CSVLogger(tmp_path / "log.csv")
    logger.on_train_begin()
    logger.on_epoch_end(0, {"loss": 1.0, "val_loss": 2.0})
    logger.on_epoch_end(1, {"loss": 0.5})
    with pytest.warns(UserWarning, match=r"\['accuracy'\] are not among the file's columns"):
        logger.on_epoch_end(2, {"loss": 0.25, "val_loss": 1.0, "accuracy": 0.5})
    assert _rows(tmp_path / "log.csv") == [["epoch", "loss", "val_loss"], ["0", "1.0", "2.0"], ["1", "0.5", "NA"],
                                           ["2", "0.25", "1.0"]]


@pytest.mark.parametrize("kwargs, error", [
    ({"filename": 3}, TypeError),
    ({"filename": "log.csv", "separator": ", "}, ValueError),
    ({"filename": "log.csv", "separator": ""}, ValueError),
])
def test_csv_logger_refuses_bad_arguments(kwargs, error):
    with pytest.raises(error):
        nn.CSVLogger(**kwargs)


def test_csv_logger_into_a_missing_folder_fails_before_training(tmp_path):
    model = _compiled()
    weights = model.get_weights()
    x, y = blobs(16)
    with pytest.raises(FileNotFoundError):
        model.fit(x, y, epochs=1, callbacks=[nn.CSVLogger(tmp_path / "no" / "log.csv")])
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), weights))
