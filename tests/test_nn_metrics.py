"""compile's metrics: "mae" and "mse", functions of the user's, beside "accuracy"; their names in
the logs and in metrics_names, their values against NumPy, and bad metrics refused at compile."""

import numpy as np
import pytest

from fastdl import nn


def _regression(n=50, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    return x, x @ np.array([1.0, 2.0, -1.0, 0.5]) + 0.1 * rng.normal(size=n)


def _regressor(backend, dtype, outputs=1, seed=0):
    model = nn.Sequential([nn.Input((4,)), nn.Dense(6, activation="tanh"), nn.Dense(outputs)],
                          backend=backend, dtype=dtype, seed=seed)
    return model


def _largest_error(y_true, y_pred):
    """Each sample's largest absolute error: a metric of the user's, per sample."""
    return np.abs(y_true - y_pred).max(axis=1)


def test_mae_mse_and_a_function_of_ones_own_match_numpy(backend, dtype):
    x, y = _regression()
    model = _regressor(backend, dtype)
    model.compile("adam", "mse", metrics=["mae", "mse", _largest_error])
    assert model.metrics_names == ["loss", "mae", "mse", "_largest_error"]
    errors = model.predict(x).astype(np.float64)[:, 0] - y
    logs = model.evaluate(x, y, batch_size=16, return_dict=True)  # batches of 16, 16, 16 and 2
    expected = {"loss": np.mean(errors ** 2), "mae": np.mean(np.abs(errors)), "mse": np.mean(errors ** 2),
                "_largest_error": np.mean(np.abs(errors))}
    assert logs.keys() == expected.keys()
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for key, value in expected.items():
        np.testing.assert_allclose(logs[key], value, rtol=tol, err_msg=key)


def test_fit_logs_every_metric_for_training_and_validation(backend):
    x, y = _regression()
    model = _regressor(backend, np.float64)
    model.compile("adam", "mse", metrics=["mean_absolute_error", "mean_squared_error"])
    history = model.fit(x, y, batch_size=10, epochs=2, validation_split=0.2)
    names = ["mean_absolute_error", "mean_squared_error"]
    assert list(history.history) == ["loss", *names, "val_loss", *(f"val_{name}" for name in names)]
    # The loss is the MSE, before each step as the metrics are: the two agree batch by batch.
    np.testing.assert_allclose(history.history["mean_squared_error"], history.history["loss"], rtol=1e-12)
    np.testing.assert_allclose(history.history["val_mean_squared_error"], history.history["val_loss"], rtol=1e-12)


def test_early_stopping_on_a_validation_mae_takes_lower_as_better(backend):
    x, y = _regression()
    model = _regressor(backend, np.float64)
    model.compile(nn.Adam(0.05), "mse", metrics=["mae"])
    stop = nn.EarlyStopping(monitor="val_mae", patience=1)
    model.fit(x, y, batch_size=10, epochs=3, validation_split=0.2, callbacks=[stop])
    assert stop.mode == "min"


def test_several_outputs_log_each_metric_under_its_output(backend):
    x, y = _regression()
    inputs = nn.Input((4,))
    hidden = nn.Dense(6, activation="relu")(inputs)
    time = nn.Dense(1, name="time")(hidden)
    sign = nn.Dense(2, activation="softmax", name="sign")(hidden)
    model = nn.Model(inputs, [time, sign], backend=backend, seed=0)
    model.compile("adam", {"time": "mse", "sign": "sparse_categorical_crossentropy"},
                  metrics={"time": ["mae", "mse"], "sign": ["accuracy"]})
    codes = (y > 0).astype(int)
    logs = model.evaluate(x, [y, codes], return_dict=True)
    # Keras 3's order: output by output, each output's metrics as compile lists them.
    assert model.metrics_names == ["loss", "time_loss", "sign_loss", "time_mae", "time_mse", "sign_accuracy"]
    time_pred, sign_pred = model.predict(x)
    np.testing.assert_allclose(logs["time_mae"], np.mean(np.abs(time_pred[:, 0] - y)), rtol=1e-5)
    np.testing.assert_allclose(logs["time_mse"], logs["time_loss"], rtol=1e-12)
    assert logs["sign_accuracy"] == np.mean(sign_pred.argmax(axis=1) == codes)


def test_mae_on_one_hot_targets_compares_probabilities(backend):
    rng = np.random.default_rng(1)
    x, codes = rng.normal(size=(20, 4)), rng.integers(0, 3, 20)
    one_hot = np.eye(3)[codes]
    model = nn.Sequential([nn.Input((4,)), nn.Dense(3, activation="softmax")], backend=backend, seed=0)
    model.compile("sgd", "categorical_crossentropy", metrics=["accuracy", "mae"])
    loss, accuracy, mae = model.evaluate(x, one_hot)
    probs = model.predict(x).astype(np.float64)
    np.testing.assert_allclose(mae, np.mean(np.abs(probs - one_hot)), rtol=1e-5)
    assert accuracy == np.mean(probs.argmax(axis=1) == codes)


def test_a_users_metric_gets_the_targets_as_the_loss_takes_them():
    seen = []

    def spy(y_true, y_pred):
        seen.append((y_true.shape, y_true.dtype, y_pred.shape))
        return 0.0

    x, y = _regression(8)
    model = _regressor("numpy", np.float32)
    model.compile("sgd", "mse", metrics=[spy])
    model.evaluate(x, y)  # (8,) targets for an (8, 1) output, as Keras takes them
    assert seen == [((8, 1), np.float64, (8, 1))]


@pytest.mark.parametrize("metrics, error, words", [
    (["mae", "mean_absolute_error"], ValueError, "given twice"),
    (["acc", "accuracy"], ValueError, "given twice"),
    (["rmse"], ValueError, "unknown metric 'rmse'"),
    ([3], TypeError, "metric 3"),
    ([["mae"]], ValueError, "dict keyed by output name"),
    ({"dense": ["mae"]}, ValueError, "as a list"),
])
def test_bad_metrics_are_refused_at_compile(metrics, error, words):
    model = _regressor("numpy", np.float64)
    with pytest.raises(error, match=words):
        model.compile("sgd", "mse", metrics=metrics)
    assert model.loss is None  # nothing was set


def test_a_metric_called_loss_is_refused():
    def loss(y_true, y_pred):
        return 0.0

    with pytest.raises(ValueError, match="may not be called 'loss'"):
        _regressor("numpy", np.float64).compile("sgd", "mse", metrics=[loss])


@pytest.mark.parametrize("metric", ["mae", "mse"])
def test_regression_metrics_are_refused_for_class_codes(metric):
    model = nn.Sequential([nn.Input((4,)), nn.Dense(3, activation="softmax")])
    with pytest.raises(ValueError, match="class codes"):
        model.compile("sgd", "sparse_categorical_crossentropy", metrics=[metric])


def test_a_metric_returning_text_is_a_type_error():
    x, y = _regression(8)
    model = _regressor("numpy", np.float64)
    model.compile("sgd", "mse", metrics=[lambda y_true, y_pred: "good"])
    with pytest.raises(TypeError, match="returned <U4 values"):
        model.evaluate(x, y)


@pytest.mark.cuda
def test_metrics_of_a_model_on_the_device_match_the_cpu(cuda_backend):
    x, y = _regression(8)
    logs = {}
    for backend in ("numpy", cuda_backend):
        model = _regressor(backend, np.float32)
        model.compile("sgd", "mse", metrics=["mae", _largest_error])
        logs[backend] = model.evaluate(x, y, batch_size=3, return_dict=True)
    for key, value in logs["numpy"].items():
        np.testing.assert_allclose(logs[cuda_backend][key], value, rtol=2e-5, err_msg=key)
