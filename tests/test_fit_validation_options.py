"""fit's validation_freq, validation_batch_size and validation_steps (Keras 3's), and the callbacks
that watch a val_ value on the epochs fit does not validate."""

import csv
import warnings

import numpy as np
import pytest

from fastdl import nn


def _data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((48, 5)), rng.integers(0, 3, 48)


def _model(backend="numpy"):
    model = nn.Sequential([nn.Input((5,)), nn.Dense(8, activation="relu"), nn.Dense(3, activation="softmax")],
                          seed=1, dtype="float64", backend=backend)
    model.compile(nn.SGD(0.1), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.mark.parametrize("freq, validated", [(2, [2, 4]), ([1, 3], [1, 3]), (5, [])])
def test_validation_freq_validates_those_epochs_only(freq, validated, backend):
    x, y = _data()
    every = _model(backend).fit(x, y, epochs=4, batch_size=8, validation_split=0.25, shuffle=False).history
    some = _model(backend).fit(x, y, epochs=4, batch_size=8, validation_split=0.25, shuffle=False,
                               validation_freq=freq).history
    assert some["loss"] == every["loss"]  # validating changes nothing in training
    assert some.get("val_loss", []) == [every["val_loss"][epoch - 1] for epoch in validated]
    assert some.get("val_accuracy", []) == [every["val_accuracy"][epoch - 1] for epoch in validated]


def test_validation_batch_size_and_steps():
    x, y = _data()
    x_val, y_val = x[:10], y[:10]
    model = _model()
    history = model.fit(x, y, epochs=1, batch_size=16, validation_data=(x_val, y_val), validation_batch_size=4,
                        validation_steps=2).history
    # The first two batches of 4: evaluate on those 8 samples gives the same mean.
    assert history["val_loss"][0] == pytest.approx(model.evaluate(x_val[:8], y_val[:8], batch_size=4)[0], rel=1e-12)
    history = model.fit(x, y, epochs=1, batch_size=16, validation_data=(x_val, y_val), validation_batch_size=3,
                        shuffle=False).history
    assert len(history["val_loss"]) == 1


def test_callbacks_watching_val_values_pass_over_unvalidated_epochs(tmp_path):
    x, y = _data()
    stop = nn.EarlyStopping(monitor="val_loss", patience=1)
    checkpoint = nn.ModelCheckpoint(str(tmp_path / "best.npz"), monitor="val_loss", save_best_only=True)
    plateau = nn.ReduceLROnPlateau(monitor="val_loss", patience=5)
    log = tmp_path / "log.csv"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning that val_loss is missing
        history = _model().fit(x, y, epochs=4, batch_size=8, validation_split=0.25, validation_freq=2,
                               callbacks=[stop, checkpoint, plateau, nn.CSVLogger(str(log))]).history
    assert len(history["loss"]) == 4 and len(history["val_loss"]) == 2
    assert checkpoint.last_saved is not None
    with open(log, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["epoch"] for row in rows] == ["0", "1", "2", "3"]
    # The val_ columns are there from the first row, "NA" where fit did not validate, as Keras 3.
    assert [row["val_loss"] for row in rows[::2]] == ["NA", "NA"]
    assert [float(row["val_loss"]) for row in rows[1::2]] == pytest.approx(history["val_loss"], rel=1e-12)


def test_without_freq_a_missing_val_value_is_still_an_error():
    x, y = _data()
    with pytest.raises(ValueError, match="val_loss"):
        _model().fit(x, y, epochs=1, callbacks=[nn.EarlyStopping(monitor="val_loss")])


@pytest.mark.parametrize("options, error, match", [
    ({"validation_freq": 0}, ValueError, "validation_freq"),
    ({"validation_freq": "2"}, TypeError, "validation_freq"),
    ({"validation_freq": True}, TypeError, "validation_freq"),
    ({"validation_freq": [1, 0]}, ValueError, "validation_freq"),
    ({"validation_steps": 0}, ValueError, "validation_steps"),
    ({"validation_batch_size": 0}, ValueError, "validation_batch_size"),
])
def test_bad_validation_options_are_refused(options, error, match):
    x, y = _data()
    with pytest.raises(error, match=match):
        _model().fit(x, y, epochs=1, validation_split=0.25, **options)
