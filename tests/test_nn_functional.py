"""fastdl.nn.functional: a multi-output Model on one trunk learns, its gradients check, it saves and refuses bad input."""

import numpy as np
import pytest

from fastdl import nn
from fastdl.nn.functional import Input, Model
from naive import numeric_grad


def clock_like(n=800, seed=0):
    """8 features; a 3-class "hour" target and a real "minute" target, both readable from the features."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 8)).astype(np.float32)
    return x, {"hour": x[:, :3].argmax(axis=1), "minute": (2 * x[:, 3] + x[:, 4]).astype(np.float32)}


def two_heads(seed=0, dtype="float32", **trunk_kwargs):
    x = Input(8)
    trunk = nn.Dense(32, activation="relu", **trunk_kwargs)(x)
    hour = nn.Dense(3, activation="softmax", name="hour")(trunk)
    minute = nn.Dense(1, name="minute")(trunk)
    return Model(x, {"hour": hour, "minute": minute}, seed=seed, dtype=dtype)


def compiled(seed=0, **kwargs):
    model = two_heads(seed)
    model.compile("adam", loss={"hour": "sparse_categorical_crossentropy", "minute": "mse"}, **kwargs)
    return model


def test_two_heads_learn():
    x, y = clock_like()
    model = compiled(metrics={"hour": ["accuracy"]})
    history = model.fit(x, y, epochs=15, batch_size=32)
    logs = history.history
    assert logs["hour_accuracy"][-1] > 0.85
    assert logs["minute_loss"][-1] < 0.1 * logs["minute_loss"][0]
    assert "minute_accuracy" not in logs
    scores = model.evaluate(x, y, return_dict=True)
    assert scores["hour_accuracy"] > 0.85 and scores["minute_loss"] < 0.5
    # As Keras: without return_dict, the values in the order metrics_names gives.
    assert model.metrics_names == ["loss", "hour_loss", "minute_loss", "hour_accuracy"]
    assert model.evaluate(x, y) == [scores[name] for name in model.metrics_names]
    predicted = model.predict(x[:10])
    assert set(predicted) == {"hour", "minute"}
    assert predicted["hour"].shape == (10, 3) and predicted["minute"].shape == (10, 1)
    np.testing.assert_allclose(predicted["hour"].sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(model(x[:10])["minute"], predicted["minute"])


def test_history_has_per_output_losses():
    x, y = clock_like(300)
    val = (x[:50], {"hour": y["hour"][:50], "minute": y["minute"][:50]})
    model = compiled(loss_weights={"hour": 2.0, "minute": 0.5})
    logs = model.fit(x, y, epochs=2, batch_size=64, validation_data=val).history
    assert set(logs) == {"loss", "hour_loss", "minute_loss", "val_loss", "val_hour_loss", "val_minute_loss"}
    for prefix in ("", "val_"):
        weighted = 2.0 * np.array(logs[prefix + "hour_loss"]) + 0.5 * np.array(logs[prefix + "minute_loss"])
        np.testing.assert_allclose(logs[prefix + "loss"], weighted, rtol=1e-10)
    assert len(logs["loss"]) == 2


def test_shared_trunk_gradients_match_finite_differences():
    # The trunk feeds two layers; "aux" is an output that also feeds the minute head, so the
    # gradients of both reach the trunk and must be summed.
    rng = np.random.default_rng(1)
    x = Input(4)
    trunk = nn.Dense(5, activation="tanh", kernel_regularizer=nn.l2(0.01))(x)
    hour = nn.Dense(3, activation="softmax", name="hour")(trunk)
    aux = nn.Dense(3, activation="sigmoid", name="aux")(trunk)
    minute = nn.Dense(2, name="minute")(aux)
    model = Model(x, [hour, aux, minute], seed=0, dtype="float64")
    assert model.output_names == ["hour", "aux", "minute"]
    model.compile("sgd", loss={"hour": "sparse_categorical_crossentropy", "aux": "mse", "minute": nn.CyclicMSE(60)},
                  loss_weights=[1.0, 0.3, 2.0])
    xb = rng.standard_normal((6, 4))
    _, targets = model._check_xy(xb, {"hour": rng.integers(0, 3, 6), "aux": rng.random((6, 3)),
                                      "minute": rng.uniform(-5, 5, (6, 2))})

    def loss():
        return model._batch_losses(model._forward(xb, training=True), targets)["loss"]

    loss()
    model.optimizer.zero_grad()
    model._backward_from_loss()
    for name, p in model.parameters():
        np.testing.assert_allclose(p.grad, numeric_grad(loss, p.value), rtol=1e-6, atol=1e-8, err_msg=name)


def test_save_load_round_trip(tmp_path):
    x, y = clock_like(200)
    model = compiled(seed=0)
    model.fit(x, y, epochs=2, batch_size=32)
    path = tmp_path / "two_heads.npz"
    model.save(path)
    other = compiled(seed=1)
    other.load(path)
    assert other.epochs_trained == 2
    for key, value in model.predict(x).items():
        np.testing.assert_array_equal(other.predict(x)[key], value)
    # Both resume identically: the optimizer state and the shuffling generator were saved too.
    first = model.fit(x, y, epochs=1, batch_size=32).history
    second = other.fit(x, y, epochs=1, batch_size=32).history
    assert first == second


def test_callbacks_and_summary(tmp_path):
    x, y = clock_like(200)
    model = compiled()
    stop = nn.EarlyStopping(monitor="val_minute_loss", patience=1, restore_best_weights=True)
    checkpoint = nn.ModelCheckpoint(tmp_path / "ckpt.npz", monitor="val_loss", save_best_only=True)
    model.fit(x, y, epochs=3, batch_size=32, validation_split=0.25, callbacks=[stop, checkpoint])
    assert checkpoint.last_saved is not None
    text = model.summary(print_fn=None)
    assert f"Total params: {model.count_params():,}" in text
    assert model.count_params() == (8 * 32 + 32) + (32 * 3 + 3) + (32 + 1)
    assert "hour (Dense)" in text and "Connected to" in text


def test_layers_and_weights_in_keras_order():
    """model.layers (and get_weights) as Keras 3 orders them, checked against it: the farthest from
    the outputs first, ties in the order a walk back from the outputs reaches them; so
    set_weights(keras_model.get_weights()) puts every weight in its own layer."""
    inputs = Input(3)
    shallow = nn.Dense(3, name="e1")(inputs)
    deep = nn.Dense(3, name="d2")(nn.Dense(3, name="d1")(inputs))
    two_heads = Model(inputs, [shallow, deep])
    # As Keras, the input's layer first (model.layers[:k] reaches the layers Keras' does).
    assert [layer.name for layer in two_heads.layers] == ["input", "d1", "e1", "d2"]
    rows = [line.split()[0] for line in two_heads.summary(print_fn=None).splitlines() if "(Dense)" in line]
    assert rows == ["d1", "e1", "d2"]  # the summary's rows too
    chain = nn.Dense(2, name="c")(nn.Dense(3, name="b")(nn.Dense(3, name="a")(inputs)))
    model = Model(inputs, [nn.Dense(2, name="x")(inputs), chain])
    assert [layer.name for layer in model.layers] == ["input", "a", "b", "x", "c"]
    assert [w.shape for w in model.get_weights()] == [(3, 3), (3,), (3, 3), (3,), (3, 2), (2,), (3, 2), (2,)]


def test_a_refused_model_leaves_its_layers_unbuilt():
    """A Model refused while building (here a model inside it of another dtype) leaves the layers
    built before the refusal unbuilt: a Model made of them afterwards builds them its own way."""
    inputs = Input(4)
    out = nn.Sequential([nn.Dense(2, input_shape=(3,))], name="inner")(nn.Dense(3, name="first")(inputs))
    with pytest.raises(ValueError, match="same dtype"):
        Model(inputs, out, dtype="float64")
    model = Model(inputs, out)
    assert model.layers[1].name == "first" and model.layers[1].kernel.value.dtype == np.float32


def test_single_output_and_sequential_input():
    x, y = clock_like(100)
    inputs = Input(8)
    out = nn.Dense(1)(nn.Dense(4, activation="relu")(inputs))
    model = Model(inputs, out, seed=0)
    assert model.output_names == ["dense_1"]
    model.compile("sgd", loss="mse")
    logs = model.fit(x, y["minute"], epochs=1).history
    # One output given as a tensor: logged, evaluated and predicted as Keras does, as Sequential's.
    assert set(logs) == {"loss"}
    assert isinstance(model.evaluate(x, y["minute"]), float) and model.predict(x[:3]).shape == (3, 1)
    # One output in a dict or a list of one, as Keras 3 (checked against it): logged and evaluated
    # as one tensor; predict gives the dict, and for the list of one the array itself.
    named = Model(inputs, {"minute": out}, seed=0)
    named.compile("sgd", loss="mse", metrics=["accuracy"])
    assert set(named.fit(x, y["minute"]).history) == {"loss", "accuracy"}
    assert named.predict(x[:3]).keys() == {"minute"} and named.metrics_names == ["loss", "accuracy"]
    assert named.evaluate(x, y["minute"]) == list(named.evaluate(x, y["minute"], return_dict=True).values())
    listed = Model(inputs, [out], seed=0)
    listed.compile("sgd", loss=["mse"])
    assert listed.predict(x[:3]).shape == (3, 1)
    assert listed.evaluate(x, [y["minute"]]) == listed.evaluate(x, y["minute"])  # [y] as Keras takes it
    assert set(listed.fit(x, [y["minute"]], epochs=1).history) == {"loss"}
    # The functional Input also heads a Sequential model.
    sequential = nn.Sequential([Input(8), nn.Dense(2)])
    assert sequential.predict(x[:3]).shape == (3, 2)


def test_bad_input():
    x, y = clock_like(60)
    model = compiled()
    with pytest.raises(ValueError, match=r"no targets for outputs \['minute'\]"):
        model.fit(x, {"hour": y["hour"]})
    with pytest.raises(ValueError, match="unknown outputs"):
        model.fit(x, {**y, "second": y["minute"]})
    with pytest.raises(ValueError, match="give the targets as a dict"):
        model.fit(x, y["hour"])
    with pytest.raises(ValueError, match=r"60 samples but the targets of output 'minute' have 59"):
        model.fit(x, {"hour": y["hour"], "minute": y["minute"][:-1]})
    with pytest.raises(ValueError, match="output 'hour'"):
        model.fit(x, {"hour": y["hour"] + 5, "minute": y["minute"]})
    with pytest.raises(ValueError, match="expects"):
        model.fit(x[:, :5], y)
    with pytest.raises(ValueError, match=r"unknown outputs \['second'\]"):
        two_heads().compile("sgd", loss={"hour": "mse", "second": "mse"})
    with pytest.raises(ValueError, match=r"no loss for outputs \['minute'\]"):
        two_heads().compile("sgd", loss={"hour": "mse"})
    with pytest.raises(ValueError, match="loss_weights"):
        two_heads().compile("sgd", loss="mse", loss_weights={"hour": -1.0})
    with pytest.raises(RuntimeError, match="compile"):
        two_heads().fit(x, y)


def test_bad_graphs():
    inputs, other = Input(8), Input(8)
    dense = nn.Dense(3)
    hidden = dense(inputs)
    with pytest.raises(ValueError, match="already called"):
        dense(other)
    with pytest.raises(ValueError, match="not from this model's input"):
        Model(inputs, nn.Dense(2)(other))
    with pytest.raises(ValueError, match="put a Flatten"):
        nn.Dense(2)(Input((4, 4, 1)))
    with pytest.raises(ValueError, match="two outputs"):
        Model(inputs, {"a": hidden, "b": hidden})
    with pytest.raises(TypeError, match="made by calling layers"):
        Model(inputs, inputs)
    with pytest.raises(ValueError, match="used twice"):
        Model(inputs, [nn.Dense(2, name="head")(hidden), nn.Dense(2, name="head")(hidden)])
