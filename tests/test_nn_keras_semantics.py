"""fastdl.nn where a Keras user's expectation was once broken: models as layers, calls outside fit,
layers added or shared, cross-entropies over positions, binary accuracy, calls that fail halfway,
a callback stopping mid-epoch. Gradients are checked against finite differences in float64."""

import json

import numpy as np
import pytest

from fastdl import nn
from fastdl.nn.losses import CategoricalCrossentropy, SparseCategoricalCrossentropy

pytestmark = pytest.mark.parametrize("backend", ["numpy", "cython"])


def numeric_grads(model, loss_of, eps=1e-6):
    """d loss_of() / d each of model's weights, by central differences (float64 models)."""
    weights = model.get_weights()
    grads = []
    for i, w in enumerate(weights):
        g = np.zeros_like(w)
        for idx in np.ndindex(w.shape):
            values = []
            for sign in (1, -1):
                shifted = [a.copy() for a in weights]
                shifted[i][idx] += sign * eps
                model.set_weights(shifted)
                values.append(loss_of())
            g[idx] = (values[0] - values[1]) / (2 * eps)
        grads.append(g)
    model.set_weights(weights)
    return grads


def sgd_step_grads(model, weights_of, step):
    """The gradient that one SGD(lr=1) step applied to weights_of(): before - after."""
    before = weights_of.get_weights()
    step()
    return [b - a for b, a in zip(before, weights_of.get_weights())]


@pytest.mark.parametrize("compile_inner", [False, True], ids=["uncompiled", "compiled"])
def test_a_functional_model_as_a_layer_passes_the_gradient_through_its_softmax(backend, compile_inner):
    # The inner model's own fused loss (softmax + cross-entropy) must not apply when it is a layer.
    rng = np.random.default_rng(0)
    z, y = rng.standard_normal((6, 2)), np.eye(3)[rng.integers(0, 3, 6)]
    generator = nn.Sequential([nn.Dense(5, activation="tanh", input_shape=(2,)), nn.Dense(4)], seed=1,
                              dtype="float64", backend=backend, name="generator")
    inputs = nn.Input((4,))
    classes = nn.Dense(3, activation="softmax")(nn.Dense(5, activation="tanh")(inputs))
    classifier = nn.Model(inputs, classes, seed=2, dtype="float64", backend=backend, name="classifier")
    if compile_inner:
        classifier.compile("adam", "sparse_categorical_crossentropy")
    classifier.trainable = False
    latent = nn.Input((2,))
    stacked = nn.Model(latent, classifier(generator(latent)), seed=3, dtype="float64", backend=backend)
    stacked.compile(nn.SGD(1.0), "mse")
    expected = numeric_grads(generator, lambda: stacked.evaluate(z, y))
    got = sgd_step_grads(stacked, generator, lambda: stacked.train_on_batch(z, y))
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, atol=1e-8)


def test_training_calls_return_the_callers_own_arrays(backend):
    model = nn.Sequential([nn.Dense(3, input_shape=(4,)), nn.Dense(2)], seed=0, backend=backend)
    layer = model.layers[0]
    first = model(np.ones((2, 4), np.float32), training=True)
    kept = first.copy()
    model(np.zeros((2, 4), np.float32), training=True)
    layer(np.full((2, 4), 3, np.float32), training=True)
    np.testing.assert_array_equal(first, kept)
    a = layer(np.ones((2, 4), np.float32), training=True)
    b = layer(np.zeros((2, 4), np.float32), training=True)
    assert a is not b and not np.array_equal(a, b)


def test_a_layer_called_before_it_is_built_builds_itself(backend):
    x = np.random.default_rng(0).standard_normal((5, 4))
    dense = nn.Dense(3, backend=backend)
    out = dense(x)
    assert dense.built and dense.dtype == np.float64 and out.shape == (5, 3)
    np.testing.assert_allclose(out, x @ dense.kernel.value + dense.bias.value)
    assert nn.BatchNormalization()(x.astype(np.float32), training=True).dtype == np.float32
    assert nn.Dropout(0.5)(x, training=True).shape == x.shape
    with pytest.raises(ValueError, match="batch"):
        nn.Dense(3)(np.ones(4))
    with pytest.raises(ValueError, match=r"\(batch, 4\)"):
        dense(np.ones((2, 5)))


def test_a_layer_added_after_compile_trains_and_the_others_keep_their_state(backend):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 4)), rng.standard_normal((16, 3))
    model = nn.Sequential([nn.Dense(8, activation="relu", input_shape=(4,))], seed=0, dtype="float64",
                          backend=backend)
    model.compile(nn.Adam(0.01), "mse")
    model.fit(x[:, :], np.zeros((16, 8)), epochs=1)
    moments = [slot.copy() for slot in model.optimizer.state["m"]]
    iterations = model.optimizer.iterations
    model.add(nn.Dense(3))
    before = model.get_weights()
    model.train_on_batch(x, y)
    assert all(not np.array_equal(b, a) for b, a in zip(before, model.get_weights()))
    assert len(model.optimizer.params) == 4 and model.optimizer.iterations == iterations + 1
    # The first layer's moments went on from where they were (one more Adam step: m = 0.9 m + 0.1 g).
    assert not np.allclose(model.optimizer.state["m"][0], 0.1 * model.layers[0].kernel.grad)
    np.testing.assert_allclose(model.optimizer.state["m"][0], 0.9 * moments[0] + 0.1 * model.layers[0].kernel.grad)


def test_an_unnamed_layer_shared_by_two_sequentials_keeps_its_name(backend):
    shared = nn.Dense(5, backend=backend)
    first = nn.Sequential([nn.Input((4,)), shared, nn.Dense(2)])
    second = nn.Sequential([nn.Dense(4, input_shape=(4,)), shared, nn.Dense(2)])
    assert [layer.name for layer in first.layers] == ["dense", "dense_1"]
    assert [layer.name for layer in second.layers] == ["dense_1", "dense", "dense_2"]
    inputs = nn.Input((4,))
    model = nn.Model(inputs, shared(nn.Dense(4)(inputs)))
    assert [layer.name for layer in model.layers] == ["input", "dense_1", "dense"]
    with pytest.raises(ValueError, match="used twice.*name="):
        nn.Sequential([nn.Dense(4, input_shape=(4,), name="a"), nn.Dense(2, name="a")])


def per_position_model(backend, loss):
    model = nn.Sequential([nn.Conv2D(3, 1, activation="softmax", input_shape=(2, 2, 1))], seed=0,
                          dtype="float64", backend=backend)
    model.compile(nn.SGD(1.0), loss, metrics=["accuracy"])
    return model


@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", "categorical_crossentropy"])
def test_cross_entropy_is_the_mean_over_positions(backend, loss):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 2, 2, 1))
    codes = rng.integers(0, 3, (4, 2, 2))
    y = codes if loss.startswith("sparse") else np.eye(3)[codes]
    model = per_position_model(backend, loss)
    probs = model.predict(x)
    expected_loss = -np.log(np.take_along_axis(probs, codes[..., None], axis=3)).mean()
    expected_accuracy = np.mean(probs.argmax(axis=3) == codes)
    np.testing.assert_allclose(model.evaluate(x, y), [expected_loss, expected_accuracy], rtol=1e-10)
    expected = numeric_grads(model, lambda: model.evaluate(x, y)[0])
    got = sgd_step_grads(model, model, lambda: model.train_on_batch(x, y))
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, atol=1e-8)


def test_per_position_codes_of_the_wrong_shape_are_refused(backend):
    model = per_position_model(backend, "sparse_categorical_crossentropy")
    x = np.zeros((4, 2, 2, 1))
    with pytest.raises(ValueError, match=r"must have shape \(4, 2, 2\)"):
        model.evaluate(x, np.zeros(4, int))
    assert model.evaluate(x, np.zeros((4, 2, 2, 1), int))[0] > 0  # a trailing axis of 1 is fine


@pytest.mark.parametrize("cls", [SparseCategoricalCrossentropy, CategoricalCrossentropy])
def test_cross_entropy_of_outputs_that_are_no_softmax_scales_them_first(backend, cls):
    # As Keras: outputs are divided by their sum before the log, and the gradient goes through that.
    rng = np.random.default_rng(2)
    outputs = rng.uniform(0.1, 0.9, (5, 2, 4))
    codes = rng.integers(0, 4, (5, 2))
    targets = codes if cls is SparseCategoricalCrossentropy else np.eye(4)[codes]
    loss = cls()
    loss.backend = backend
    scaled = outputs / outputs.sum(axis=-1, keepdims=True)
    expected = -np.log(np.take_along_axis(scaled, codes[..., None], axis=-1)).mean()
    assert loss.forward(outputs, targets) == pytest.approx(expected, rel=1e-12)
    grad = loss.backward()
    numeric = np.zeros_like(outputs)
    for idx in np.ndindex(outputs.shape):
        values = []
        for sign in (1, -1):
            shifted = outputs.copy()
            shifted[idx] += sign * 1e-6
            values.append(cls().forward(shifted, targets))
        numeric[idx] = (values[0] - values[1]) / 2e-6
    np.testing.assert_allclose(grad, numeric, atol=1e-8)


def test_accuracy_with_binary_cross_entropy_scores_each_output(backend):
    model = nn.Sequential([nn.Dense(3, activation="sigmoid", input_shape=(4,))], seed=0, backend=backend)
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(3).standard_normal((6, 4)).astype(np.float32)
    targets = (model.predict(x) > 0.5).astype(np.float32)
    assert model.evaluate(x, targets)[1] == 1.0
    targets[0] = 1 - targets[0]
    assert model.evaluate(x, targets)[1] == pytest.approx(15 / 18)


def _saturated_sigmoid(layer):
    """Set a sigmoid output layer's weights so that it gives p = sigmoid(-18) = 1.5e-8 everywhere."""
    layer.kernel.value[...] = 0.0
    layer.bias.value[...] = -18.0


@pytest.mark.parametrize("kind", ["dense", "conv2d", "vae_decoder", "gan"])
def test_a_sigmoid_output_saturated_on_the_wrong_side_still_learns(backend, kind):
    """As Keras on TensorFlow, whose binary_crossentropy reads a sigmoid output's logits z: against
    a target of 1, p = sigmoid(-18) has loss softplus(18) and gradient sigmoid(z) - 1 = -1 at z (a
    clipped loss, flat below p = 1e-7, would leave it saturated for good). The same through a
    Sequential that is a functional model's output (a VAE's decoder), and for a GAN's generator
    under its frozen discriminator's sigmoid."""
    lr, steps, rng = 0.1, 20, np.random.default_rng(0)
    if kind == "dense":
        model = nn.Sequential([nn.Input((2,)), nn.Dense(1, activation="sigmoid")], seed=0, backend=backend)
        out = model.layers[-1]
        x, y = np.ones((8, 2)), np.ones((8, 1))
    elif kind == "conv2d":
        model = nn.Sequential([nn.Input((3, 3, 1)), nn.Conv2D(2, 3, padding="same", activation="sigmoid")], seed=0,
                              backend=backend)
        out = model.layers[-1]
        x, y = rng.random((4, 3, 3, 1)), np.ones((4, 3, 3, 2))
    elif kind == "vae_decoder":
        out = nn.Conv2D(1, 3, padding="same", activation="sigmoid")
        decoder = nn.Sequential([nn.Input((2,)), nn.Dense(4), nn.Reshape((2, 2, 1)), out], seed=1, backend=backend)
        inputs = nn.Input((2,))
        model = nn.Model(inputs, decoder(nn.Dense(2)(inputs)), seed=0, backend=backend)
        x, y = rng.random((4, 2)), np.ones((4, 2, 2, 1))
    else:
        generator = nn.Sequential([nn.Input((2,)), nn.Dense(2)], seed=1, backend=backend)
        discriminator = nn.Sequential([nn.Input((2,)), nn.Dense(1, activation="sigmoid")], seed=2, backend=backend)
        discriminator.compile("sgd", "binary_crossentropy")
        discriminator.trainable = False
        noise = nn.Input((2,))
        model = nn.Model(noise, discriminator(generator(noise)), seed=0, backend=backend)
        out = discriminator.layers[-1]
        x, y = rng.standard_normal((8, 2)), np.ones((8, 1))
    model.compile(nn.SGD(lr), "binary_crossentropy")
    model.predict(x[:1])  # built
    _saturated_sigmoid(out)
    assert model.evaluate(x, y) == pytest.approx(np.logaddexp(0.0, 18.0), rel=1e-6)  # not -log(1e-7) = 16.1
    if kind == "gan":
        out.kernel.value[...] = 0.5  # the generator's gradient comes through the discriminator's kernel
        before = generator.get_weights()
        model.train_on_batch(x, y)
        assert all(np.abs(b - a).max() > 1e-3 for b, a in zip(before, generator.get_weights()))
        assert out.bias.value[0] == -18.0  # frozen
        return
    for _ in range(steps):
        model.train_on_batch(x, y)
    # Each step adds lr times the mean of 1 - p over the output's values, one channel's share each.
    np.testing.assert_allclose(out.bias.value, -18.0 + steps * lr / out.bias.value.size, atol=1e-3)


def test_calls_that_fail_leave_the_model_as_it_was(backend, tmp_path):
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((8, 4)), rng.standard_normal((8, 2))
    model = nn.Sequential([nn.Dense(3, input_shape=(4,)), nn.Dense(2)], seed=0, backend=backend)
    model.compile("adam", "mse")
    model.fit(x, y, epochs=1)
    optimizer, loss, weights = model.optimizer, model.loss, model.get_weights()
    with pytest.raises(ValueError, match="unknown metric"):
        model.compile("sgd", "binary_crossentropy", metrics=["rmse"])
    assert model.optimizer is optimizer and model.loss is loss
    with pytest.raises(ValueError, match="dense_1/kernel"):
        model.set_weights([w + 1 for w in weights[:2]] + [np.ones((5, 5)), weights[3]])
    other = nn.Sequential([nn.Dense(3, input_shape=(4,)), nn.Dense(5)], seed=1)
    other.save(tmp_path / "other.npz")
    with pytest.raises(ValueError, match="dense_1/kernel"):
        model.load(tmp_path / "other.npz")
    sgd = nn.Sequential([nn.Dense(3, input_shape=(4,)), nn.Dense(2)], seed=2, backend=backend)
    sgd.compile("sgd", "mse")
    sgd.fit(x, y, epochs=2)
    sgd.save(tmp_path / "sgd.npz")
    with pytest.raises(ValueError, match="SGD's, not Adam's"):
        model.load(tmp_path / "sgd.npz")
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert model.epochs_trained == 1

    inputs = nn.Input((4,))
    functional = nn.Model(inputs, {"a": nn.Dense(2)(inputs)})
    functional.compile("adam", "mse")
    optimizer, loss = functional.optimizer, functional.loss
    with pytest.raises(ValueError, match="loss_weights"):
        functional.compile("sgd", "binary_crossentropy", loss_weights={"a": -1})
    assert functional.optimizer is optimizer and functional.loss is loss


class StopAtBatch(nn.Callback):
    def __init__(self, batch):
        self.batch, self.batches = batch, 0

    def on_batch_end(self, batch, logs=None):
        self.batches += 1
        if batch == self.batch:
            self.model.stop_training = True


@pytest.mark.parametrize("functional", [False, True], ids=["sequential", "functional"])
def test_a_callback_stops_training_after_the_batch(backend, functional):
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((40, 4)), rng.standard_normal((40, 2))
    if functional:
        inputs = nn.Input((4,))
        model = nn.Model(inputs, nn.Dense(2)(inputs), backend=backend)
    else:
        model = nn.Sequential([nn.Dense(2, input_shape=(4,))], backend=backend)
    model.compile("sgd", "mse")
    stop = StopAtBatch(1)
    history = model.fit(x, y, epochs=3, batch_size=10, callbacks=[stop])
    assert stop.batches == 2 and len(history.history["loss"]) == 1 and model.epochs_trained == 1


def test_predict_and_evaluate_take_keras_keywords(backend):
    model = nn.Sequential([nn.Dense(3, activation="softmax", input_shape=(4,))], seed=0, backend=backend)
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = np.random.default_rng(6).standard_normal((5, 4)), np.array([0, 1, 2, 0, 1])
    np.testing.assert_array_equal(model.predict(x, verbose=0), model.predict(x, verbose="auto"))
    loss, accuracy = model.evaluate(x, y, verbose=0)
    assert model.evaluate(x, y, return_dict=True) == {"loss": loss, "accuracy": accuracy}
    assert model.metrics_names == ["loss", "accuracy"]
    assert model.test_on_batch(x, y, return_dict=True) == {"loss": loss, "accuracy": accuracy}
    assert model.train_on_batch(x, y, return_dict=True) == {"loss": loss, "accuracy": accuracy}
    assert nn.Sequential([nn.Dense(1, input_shape=(4,))]).metrics_names == []  # as Keras before compile
    with pytest.raises(ValueError, match="verbose"):
        model.predict(x, verbose=3)


@pytest.mark.parametrize("loss", ["sparse", "categorical"])
def test_cross_entropy_from_logits(backend, loss):
    # A linear last layer with from_logits=True trains as the same layer with a softmax does.
    rng = np.random.default_rng(7)
    x, codes = rng.standard_normal((8, 4)), rng.integers(0, 3, 8)
    y = codes if loss == "sparse" else np.eye(3)[codes]
    kind = SparseCategoricalCrossentropy if loss == "sparse" else CategoricalCrossentropy
    runs = []
    for activation, from_logits in (("softmax", False), (None, True)):
        model = nn.Sequential([nn.Dense(3, activation=activation, input_shape=(4,))], seed=0, dtype="float64",
                              backend=backend)
        model.compile(nn.SGD(0.5), kind(from_logits=from_logits), metrics=["accuracy"])
        runs.append((model.evaluate(x, y), model.train_on_batch(x, y), model.get_weights()))
    for a, b in zip(runs[0][:2], runs[1][:2]):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    for a, b in zip(runs[0][2], runs[1][2]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    # On a softmax layer's outputs, from_logits takes their softmax again, as Keras does.
    model = nn.Sequential([nn.Dense(3, activation="softmax", input_shape=(4,))], seed=0, dtype="float64",
                          backend=backend)
    model.compile("sgd", kind(from_logits=True))
    probs = model.predict(x)
    again = np.exp(probs) / np.exp(probs).sum(axis=1, keepdims=True)
    assert model.evaluate(x, y) == pytest.approx(-np.log(again[np.arange(8), codes]).mean(), rel=1e-12)


def test_batch_normalization_takes_the_last_axis(backend):
    x = np.random.default_rng(8).standard_normal((4, 3, 3, 2))
    for axis in (-1, 3):
        assert nn.BatchNormalization(axis=axis, backend=backend)(x, training=True).shape == x.shape
    with pytest.raises(ValueError, match="last axis"):
        nn.BatchNormalization(axis=1)(x)


def test_unnamed_models_inside_a_model_take_distinct_names(backend, tmp_path):
    # As Keras' sequential, sequential_1: two unnamed Sequentials make a GAN without names given.
    discriminator = nn.Sequential([nn.Input((4,)), nn.Dense(1)], seed=0, backend=backend)
    generator = nn.Sequential([nn.Input((2,)), nn.Dense(4)], seed=1, backend=backend)
    z = nn.Input((2,))
    gan = nn.Model(z, discriminator(generator(z)), backend=backend)
    assert (generator.name, discriminator.name, gan.name) == ("sequential", "sequential_1", "model")
    names = [name for name, _ in gan.parameters()]
    assert names[0].startswith("sequential/") and names[-1].startswith("sequential_1/")
    gan.compile("adam", "mse")
    gan.save(tmp_path / "gan.npz")
    # Kept once taken: another model around them names the weights as the first did.
    stack = nn.Sequential([generator, discriminator], backend=backend)
    assert [name for name, _ in stack.parameters()] == names
    stack.compile("adam", "mse")
    stack.load(tmp_path / "gan.npz")
    with pytest.raises(ValueError, match="used twice"):
        x = nn.Input((2,))
        nn.Model(x, nn.Sequential([nn.Input((2,)), nn.Dense(2)], name="a")(
            nn.Sequential([nn.Input((2,)), nn.Dense(2)], name="a")(x)))


def test_accuracy_is_logged_under_the_name_compile_was_given(backend):
    # Keras logs metrics=["acc"] as "acc" (old course code plots history.history["acc"]).
    x, y = np.random.default_rng(7).standard_normal((12, 4)), np.arange(12) % 3
    model = nn.Sequential([nn.Dense(3, activation="softmax", input_shape=(4,))], seed=0, backend=backend)
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["acc"])
    history = model.fit(x, y, epochs=2, validation_split=0.25)
    assert sorted(history.history) == ["acc", "loss", "val_acc", "val_loss"]
    assert model.evaluate(x, y, return_dict=True).keys() == {"loss", "acc"}
    assert nn.EarlyStopping(monitor="val_acc").mode == "max"
    inputs = nn.Input((4,))
    outputs = nn.Dense(3, activation="softmax", name="digit")(inputs)
    big = nn.Dense(2, activation="softmax", name="big")(inputs)
    functional = nn.Model(inputs, {"digit": outputs, "big": big}, seed=0, backend=backend)
    functional.compile("sgd", "sparse_categorical_crossentropy", metrics=["acc"])
    assert "digit_acc" in functional.fit(x, {"digit": y, "big": y % 2}).history


def _dense_stack(backend, *layers, seed=0):
    return nn.Sequential([nn.Input(4), *layers], seed=seed, dtype="float64", backend=backend)


def test_compile_reads_trainable_whatever_optimizer_it_is_given(backend):
    # Fine-tuning recompiles with the same optimizer: the flags must follow (they stayed those of
    # the first compile, so the unfrozen base never learned and a frozen BN kept moving).
    rng = np.random.default_rng(10)
    x, y = rng.standard_normal((16, 4)), rng.standard_normal((16, 2))
    base, norm = nn.Dense(3, name="base"), nn.BatchNormalization(name="norm")
    model = _dense_stack(backend, base, norm, nn.Dense(2, name="head"))
    optimizer = nn.SGD(0.1)
    base.trainable = False
    model.compile(optimizer, "mse")
    model.fit(x, y, batch_size=8)
    base.trainable, norm.trainable = True, False
    model.compile(optimizer, "mse")
    kernel, statistics = base.kernel.value.copy(), [a.copy() for _, a in norm.non_trainable_state()]
    model.fit(x, y, batch_size=8)
    assert not np.array_equal(kernel, base.kernel.value)
    for before, (_, after) in zip(statistics, norm.non_trainable_state()):
        np.testing.assert_array_equal(before, after)
    # Compiled with every layer frozen, unfreezing without compiling again trains nothing (Keras).
    frozen = _dense_stack(backend, nn.Dense(3), nn.Dense(2))
    frozen.trainable = False
    frozen.compile(nn.SGD(0.1), "mse")
    frozen.trainable = True
    weights = frozen.get_weights()
    with pytest.warns(UserWarning, match="no trainable weights"):
        frozen.fit(x, y)
    for before, after in zip(weights, frozen.get_weights()):
        np.testing.assert_array_equal(before, after)


def test_an_optimizer_belongs_to_one_model(backend):
    first, second = _dense_stack(backend, nn.Dense(2)), _dense_stack(backend, nn.Dense(2))
    optimizer = nn.SGD(0.1)
    first.compile(optimizer, "mse")
    first.compile(optimizer, "mse")  # the same model again: fine
    with pytest.raises(ValueError, match="trains another model"):
        second.compile(optimizer, "mse")
    first.compile(nn.SGD(0.1), "mse")  # first trains with another one now: this one is free
    second.compile(optimizer, "mse")
    assert second.optimizer is optimizer
    # A copied model's optimizer is a copy, which the copy claims at its first step.
    import copy

    twin = copy.deepcopy(second)
    x, y = np.ones((2, 4)), np.ones((2, 2))
    third = _dense_stack(backend, nn.Dense(2))
    third.compile(twin.optimizer, "mse")
    with pytest.raises(ValueError, match="trains another model"):
        twin.fit(x, y)


def test_a_layer_reached_twice_through_models_is_refused(backend):
    shared = nn.Dense(4, name="shared")
    first = nn.Sequential([nn.Input(4), shared], name="first", backend=backend)
    second = nn.Sequential([nn.Input(4), shared], name="second", backend=backend)
    with pytest.raises(ValueError, match="layer 'second/shared' is also 'first/shared' in model 'outer'"):
        nn.Sequential([first, second], name="outer", backend=backend).build((4,))


def test_optimizer_state_of_other_weights_is_refused(backend, tmp_path):
    def model(frozen):
        layers = [nn.Dense(3, name=f"l{i}") for i in range(3)]
        layers[0].trainable = not frozen
        built = _dense_stack(backend, *layers)
        built.compile(nn.Adam(0.01), "mse")
        return built

    rng = np.random.default_rng(11)
    trained = model(frozen=False)
    trained.fit(rng.standard_normal((8, 4)), rng.standard_normal((8, 3)))
    trained.save(tmp_path / "all.npz")
    with pytest.raises(ValueError, match=r"optimizer's state of weights \['l0/kernel', .*this model's optimizer "
                                         r"trains \['l1/kernel'"):
        model(frozen=True).load(tmp_path / "all.npz")


def test_optimizer_state_is_matched_to_its_weights_by_name(backend, tmp_path):
    """A file whose optimizer state lists the same weights in another order (a functional model
    saved before it listed its layers in Keras' order) loads each slot into its own weight."""
    def model():
        inputs = nn.Input(4)
        heads = [nn.Dense(2, name="e1")(inputs), nn.Dense(2, name="d2")(nn.Dense(3, name="d1")(inputs))]
        built = nn.Model(inputs, heads, seed=0, backend=backend)
        built.compile(nn.Adam(0.01), ["mse", "mse"])
        return built

    rng = np.random.default_rng(3)
    x, ys = rng.standard_normal((8, 4)), [rng.standard_normal((8, 2)) for _ in range(2)]
    trained = model()
    trained.fit(x, ys)
    trained.save(tmp_path / "keras_order.npz")
    with np.load(tmp_path / "keras_order.npz") as data:
        arrays = dict(data)
    meta = json.loads(str(arrays["meta"]))
    names = meta["optimizer_weights"]
    order = names[::-1]  # the same weights, listed the other way round
    meta["optimizer_weights"] = order
    for slot in ("m", "v"):
        for i, name in enumerate(order):
            arrays[f"opt:{slot}/{i}"] = trained.optimizer.state[slot][names.index(name)]
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "reordered.npz", **arrays)
    loaded = model().load(tmp_path / "reordered.npz")
    for slot in ("m", "v"):
        for mine, theirs in zip(loaded.optimizer.state[slot], trained.optimizer.state[slot]):
            np.testing.assert_array_equal(mine, theirs)


class _FirstColumn(nn.Layer):
    """A layer of a user's that forgets compute_output_shape."""

    def forward(self, x, training=False):
        return x[:, :1]

    def backward(self, dout):
        raise NotImplementedError


class _Scale(nn.Layer):
    """A layer of a user's whose build does not call Layer.build, as Keras' examples often write it."""

    def build(self, input_shape, rng, dtype=np.float32):
        self.w = nn.Parameter(np.ones(input_shape, dtype))

    def forward(self, x, training=False):
        self._x = x
        return x * self.w.value

    def backward(self, dout):
        self.w.grad[...] = (dout * self._x).sum(axis=0)
        return dout * self.w.value


class _SoftmaxHead(nn.Layer):
    """A layer of a user's that names its activation, as Keras layers do, and computes it itself."""

    activation = "softmax"

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, x, training=False):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        self._out = e / e.sum(axis=1, keepdims=True)
        return self._out

    def backward(self, dout):
        return self._out * (dout - (dout * self._out).sum(axis=1, keepdims=True))


def test_layers_of_a_users_own(backend):
    x = np.random.default_rng(12).standard_normal((6, 4))
    with pytest.raises(ValueError, match=r"returned outputs of shape \(3, 1\) for 3 samples, but its compute_output_shape "
                                         r"gives \(batch, 4\)"):
        _dense_stack(backend, _FirstColumn(name="first_column")).predict(x[:3])
    model = _dense_stack(backend, _FirstColumn(name="first_column"))
    model.compile("sgd", "mse")
    with (pytest.raises(ValueError, match=r"batch 1: layer 'first_column' returned .*; training stopped$"),
          pytest.warns(UserWarning, match="has no weights")):
        model.fit(x, x)  # no hint at the learning rate: nothing went NaN
    # Built without Layer.build: still built, so another model reuses its trained weights.
    scale = _Scale()
    model = _dense_stack(backend, scale)
    model.compile(nn.SGD(0.1), "mse")
    model.fit(x, 3 * x, epochs=2)
    weights = scale.w
    assert scale.built and scale.output_shape == (4,)
    _dense_stack(backend, scale, nn.Dense(1)).predict(x)
    assert scale.w is weights
    # Its own softmax is not taken for fastdl's (whose logits a fused loss would start from).
    head = _dense_stack(backend, nn.Dense(3), _SoftmaxHead())
    head.compile(nn.SGD(1.0), "sparse_categorical_crossentropy")
    codes = np.arange(6) % 3
    losses = head.fit(x, codes, epochs=3).history["loss"]
    assert losses[-1] < losses[0]
    probs = head.predict(x)
    assert head.evaluate(x, codes) == pytest.approx(-np.log(probs[np.arange(6), codes]).mean(), rel=1e-12)


def test_layer_calls_inputs_and_added_losses(backend):
    class Penalty(nn.Layer):
        def forward(self, x, training=False):
            self.add_loss(2.0)
            return x

    penalty = Penalty()
    for _ in range(3):
        penalty(np.ones((2, 3)))
    assert penalty.losses == [2.0]  # the last call's terms
    with pytest.raises(ValueError, match=r"add_loss takes one number.*shape \(3,\)"):
        nn.Layer().add_loss(np.ones(3))
    for bad in (4.0, None, "4"):
        with pytest.raises(TypeError, match="shape must be an int or a tuple of ints"):
            nn.Input(bad)
    assert nn.Dense(2, input_shape=4).input_shape == (4,)


def test_losses_given_as_a_list_in_output_order(backend):
    inputs = nn.Input((4,))
    outputs = [nn.Dense(3, activation="softmax", name="a")(inputs), nn.Dense(1, name="b")(inputs)]
    model = nn.Model(inputs, outputs, seed=0, backend=backend)
    model.compile("sgd", ["sparse_categorical_crossentropy", "mse"], loss_weights=[1.0, 0.5])
    assert isinstance(model.loss["a"], SparseCategoricalCrossentropy)
    assert isinstance(model.loss["b"], nn.MeanSquaredError)
    x = np.random.default_rng(13).standard_normal((6, 4))
    history = model.fit(x, [np.arange(6) % 3, x[:, :1]])
    assert set(history.history) == {"loss", "a_loss", "b_loss"}
    with pytest.raises(ValueError, match=r"loss has 1 entries for 2 outputs"):
        model.compile("sgd", ["mse"])


@pytest.mark.parametrize("make", [lambda: nn.SGD(0.05, momentum=0.9), nn.RMSprop, nn.Adam],
                         ids=["momentum", "rmsprop", "adam"])
def test_compiling_again_keeps_the_optimizers_state(backend, make):
    # A Keras optimizer compiled again keeps its step count and slots (fine-tuning recompiles).
    rng = np.random.default_rng(14)
    x, y = rng.standard_normal((12, 4)), rng.standard_normal((12, 2))

    def model():
        built = _dense_stack(backend, nn.Dense(3, activation="tanh"), nn.Dense(2))
        built.compile(make(), "mse")
        return built

    straight, recompiled = model(), model()
    straight.fit(x, y, epochs=5, batch_size=12, shuffle=False)
    recompiled.fit(x, y, epochs=3, batch_size=12, shuffle=False)
    recompiled.compile(recompiled.optimizer, "mse")
    recompiled.fit(x, y, epochs=2, batch_size=12, shuffle=False)
    assert recompiled.optimizer.iterations == 5
    for a, b in zip(straight.get_weights(), recompiled.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_keras_argument_names(backend):
    assert nn.Adam(learning_rate=2e-4, beta_1=0.5).lr == 2e-4
    assert nn.SGD(learning_rate=0.1, momentum=0.9).lr == 0.1
    assert nn.RMSprop(learning_rate=1e-2).lr == 1e-2
    assert nn.LeakyReLU(negative_slope=0.1).alpha == 0.1
    with pytest.raises(ValueError, match="learning_rate must be a finite number"):
        nn.Adam(learning_rate=-1.0)
    for make in (nn.RMSprop, nn.Adam):
        with pytest.raises(ValueError, match="epsilon must be > 0"):
            make(epsilon=0)


class _DropsSamples(nn.Layer):
    """A layer of a user's that returns one row whatever the batch."""

    def forward(self, x, training=False):
        return x[:1]

    def backward(self, dout):
        raise NotImplementedError


def test_more_edges_of_building_loading_and_compiling(backend, tmp_path):
    import copy
    import gc
    import threading

    rng = np.random.default_rng(15)
    x, y = rng.standard_normal((6, 4)), rng.standard_normal((6, 2))
    # A refused build leaves the model as it was.
    model = _dense_stack(backend, nn.Dense(2))
    model.build()
    with pytest.raises(ValueError, match=r"built for inputs \(4,\), not \(5,\)"):
        model.build((5,))
    assert model.input_shape == (4,) and model.predict(x).shape == (6, 2)
    # Outputs of another batch size are named, not broadcast.
    with pytest.raises(ValueError, match=r"returned outputs of shape \(1, 4\) for 6 samples"):
        _dense_stack(backend, _DropsSamples(name="drops")).predict(x)
    # A copied model compiled again with its own optimizer keeps its step count and slots.
    model.compile(nn.Adam(0.01), "mse")
    model.fit(x, y, epochs=2, batch_size=6)
    twin = copy.deepcopy(model)
    twin.compile(twin.optimizer, "mse")
    assert twin.optimizer.iterations == 2
    # Load into an unbuilt model that cannot be copied (a lock in a layer of the user's).
    model.save(tmp_path / "m.npz")
    locked = nn.Dense(2)
    locked.lock = threading.Lock()
    unbuilt = nn.Sequential([locked], seed=0, dtype="float64", backend=backend)
    unbuilt.compile(nn.Adam(0.01), "mse")
    unbuilt.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(unbuilt.predict(x), model.predict(x))
    # Saved after a layer was added, before the next step: the file holds its slots too.
    model.add(nn.Dense(3))
    model.save(tmp_path / "added.npz")
    model.load(tmp_path / "added.npz")
    # Keras' learning_rate attribute; epsilon 0 in float32 is refused.
    model.optimizer.learning_rate = 0.5
    assert model.optimizer.lr == 0.5
    with pytest.raises(ValueError, match="epsilon must be > 0 in float32"):
        nn.Adam(epsilon=1e-50)
    with pytest.raises(ValueError, match="negative_slope must be"):
        nn.LeakyReLU(negative_slope=-1)
    # An optimizer whose model is gone (unreachable, in a reference cycle) is free.
    shared = nn.SGD(0.1)
    gone = _dense_stack(backend, nn.Dense(2))
    gone.compile(shared, "mse")
    gone.cycle = gone
    del gone
    gc.disable()
    try:
        _dense_stack(backend, nn.Dense(2)).compile(shared, "mse")
    finally:
        gc.enable()


# Keras 3's positional order: an argument given by position either means what it means in Keras
# or is refused, never taken for another option.


def test_global_pooling_and_flatten_take_keras_data_format_first(backend):
    """GlobalAveragePooling2D("channels_last") once kept the image axes (bool of the string)."""
    x = np.ones((2, 3, 3, 2))
    for pool in (nn.GlobalAveragePooling2D, nn.GlobalMaxPooling2D):
        assert pool("channels_last", backend=backend)(x).shape == (2, 2)
        assert pool(None, True, backend=backend)(x).shape == (2, 1, 1, 2)
        with pytest.raises(ValueError, match="channels-last"):
            pool("channels_first")
        with pytest.raises(TypeError, match="keepdims must be True or False, got 'False'"):
            pool(keepdims="False")
    assert nn.Flatten("channels_last", backend=backend)(x).shape == (2, 18)
    with pytest.raises(ValueError, match="channels-last"):
        nn.Flatten("channels_first")


def test_dropout_takes_keras_noise_shape_second(backend):
    """Dropout(0.5, noise_shape) once took the noise shape for a seed."""
    for noise_shape in ([2, 1, 1, 2], (None, 1, 1, 2)):
        with pytest.raises(ValueError, match="noise_shape is not supported"):
            nn.Dropout(0.5, noise_shape)
    assert nn.Dropout(0.5, None, 3).rng.random() == np.random.default_rng(3).random()


def test_dense_and_conv_take_keras_positional_order(backend):
    # Dense(units, activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
    # bias_regularizer); its old order is refused, not misread.
    dense = nn.Dense(4, "relu", False, "he_normal", "ones", "l2", "l1")
    assert not dense.use_bias and dense.kernel_initializer is nn.module.he_normal
    assert isinstance(dense.bias_regularizer, nn.L1)
    with pytest.raises(TypeError, match="use_bias must be True or False, got 'he_normal'"):
        nn.Dense(4, "relu", "he_normal")
    with pytest.raises(TypeError, match="positional"):
        nn.Dense(4, "relu", True, "he_normal", "zeros", None, None, "l2")  # Keras' activity_regularizer
    # Conv2D / Conv2DTranspose: Keras' fifth is data_format (output_padding), no fastdl option.
    for conv in (nn.Conv2D, nn.Conv2DTranspose):
        assert conv(4, 3, 1, "same", activation="relu").activation == "relu"
        with pytest.raises(TypeError, match=f"{conv.__name__} takes filters, kernel_size, strides and padding by "
                                            "place, got 1 more: Keras 3's next ones"):
            conv(4, 3, 1, "same", "channels_last")
    with pytest.raises(TypeError, match="positional"):
        nn.Add((3,))  # Keras' Add takes no positional argument; input_shape is keyword only


class _KerasStyleInitializer:
    """Called as Keras calls its initializers, f(shape, dtype=None)."""

    def __call__(self, shape, dtype=None):
        return np.zeros(shape, dtype)


def test_an_initializer_of_another_signature_is_refused_at_construction(backend):
    for layer in (lambda init: nn.Dense(2, kernel_initializer=init),
                  lambda init: nn.Conv2D(2, 3, kernel_initializer=init)):
        with pytest.raises(TypeError,
                           match=r"takes \(shape, dtype=None\), not \(shape, rng, dtype\).*'glorot_uniform'"):
            layer(_KerasStyleInitializer())
        with pytest.raises(TypeError, match=r"not \(shape, rng, dtype\)"):
            layer(lambda shape: np.zeros(shape))
    # Functions of the right signature (or none Python can read) still go through.
    ones = nn.Dense(2, kernel_initializer=lambda shape, rng, dtype: np.ones(shape, dtype))
    model = nn.Sequential([nn.Input((3,)), ones], backend=backend)
    model.build()
    np.testing.assert_array_equal(model.get_weights()[0], np.ones((3, 2)))
    nn.Dense(2, kernel_initializer=lambda *args: np.ones(args[0], args[2]))


def test_input_takes_no_keras_batch_size_as_its_name(backend):
    """Keras 3's Input(shape, batch_size, ...): a second positional value is refused, not taken as
    the name."""
    with pytest.raises(TypeError):
        nn.Input((3,), 32)
    assert nn.Input((3,), name="pixels").name == "pixels"


def test_accuracies_in_logs_are_python_floats(backend):
    # They were np.float64 beside the losses' floats: [1.19, np.float64(0.25)].
    model = nn.Sequential([nn.Input((4,)), nn.Dense(3, activation="softmax")], seed=0, backend=backend)
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = np.random.default_rng(0).random((8, 4)).astype(np.float32), np.arange(8) % 3
    values = [*model.evaluate(x, y, verbose=0), *model.train_on_batch(x, y), *model.test_on_batch(x, y)]
    values += model.fit(x, y, epochs=1, verbose=0).history["accuracy"]
    assert all(type(value) is float for value in values)


def test_metrics_as_a_list_per_output_says_how_to_give_them(backend):
    # Keras 3's per-output lists met "unknown metric ['accuracy']; only 'accuracy' is supported".
    inputs = nn.Input((4,))
    outputs = [nn.Dense(3, activation="softmax", name="hour")(inputs), nn.Dense(1, name="minute")(inputs)]
    model = nn.Model(inputs, outputs, seed=0, backend=backend)
    with pytest.raises(ValueError, match=r"in a dict keyed by output name \(metrics=\{'hour': \['accuracy'\]\}\)"):
        model.compile("sgd", ["sparse_categorical_crossentropy", "mse"], metrics=[["accuracy"], []])


def test_weights_lists_are_keras_and_the_arrays_themselves(backend):
    """model.weights (get_weights' order, uncopied), trainable_weights and non_trainable_weights
    as Keras lists them: a frozen layer's kernel and BatchNormalization's moving statistics are
    non-trainable; a layer has the same three lists."""
    frozen = nn.Dense(3, name="frozen")
    frozen.trainable = False
    norm = nn.BatchNormalization(name="norm")
    model = nn.Sequential([nn.Input((2,)), frozen, norm, nn.Dense(1, name="out")], seed=0, backend=backend)
    shapes = lambda arrays: [a.shape for a in arrays]  # noqa: E731
    assert shapes(model.weights) == [a.shape for a in model.get_weights()] == [
        (2, 3), (3,), (3,), (3,), (3,), (3,), (3, 1), (1,)]
    assert len(model.trainable_weights) == 4  # gamma, beta, out's kernel and bias
    assert all(any(a is b for b in model.trainable_weights) for a in (norm.gamma.value, model.layers[2].kernel.value))
    assert len(model.non_trainable_weights) == 4  # frozen's kernel and bias, the moving statistics
    assert any(a is norm.moving_mean for a in model.non_trainable_weights)
    assert len(model.weights) == len(model.trainable_weights) + len(model.non_trainable_weights)
    assert shapes(norm.weights) == [(3,)] * 4 and len(norm.trainable_weights) == 2
    assert frozen.trainable_weights == [] and len(frozen.non_trainable_weights) == 2
    model.weights[0][...] = 7  # the arrays themselves
    assert (model.get_weights()[0] == 7).all()


def test_save_weights_and_load_weights_are_save_and_load(backend, tmp_path):
    model = nn.Sequential([nn.Input((2,)), nn.Dense(3)], seed=0, backend=backend)
    model.save_weights(tmp_path / "m.weights.npz")
    other = nn.Sequential([nn.Input((2,)), nn.Dense(3)], seed=1, backend=backend)
    assert other.load_weights(tmp_path / "m.weights.npz") is other
    for a, b in zip(model.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"not Keras' HDF5 or .keras: name the file m.weights.npz"):
        model.save_weights(tmp_path / "m.weights.h5")
    assert not (tmp_path / "m.weights.h5").exists()
    with pytest.raises(ValueError, match="not Keras' HDF5"):
        model.save_weights(tmp_path / "M.H5")


def test_a_layer_with_the_old_state_method_is_refused_at_once(backend):
    with pytest.raises(TypeError, match="defines a method non_trainable_weights.*non_trainable_state"):
        class Counting(nn.Layer):  # noqa: F841
            def non_trainable_weights(self):
                return [("count", np.zeros(1))]

    class StateMixin:  # the old method from a class that is no Layer
        def non_trainable_weights(self):
            return [("count", np.zeros(1))]

    with pytest.raises(TypeError, match="defines a method non_trainable_weights"):
        class Mixed(StateMixin, nn.Layer):  # noqa: F841
            pass


def test_a_layer_of_its_own_may_keep_an_attribute_named_weights(backend, tmp_path):
    """Keras' lists are properties that a layer's own attribute replaces (a layer written before
    them kept its kernel as self.weights): it trains and is saved as any Parameter."""

    class Scale(nn.Layer):
        def build(self, input_shape, rng, dtype=np.float32):
            super().build(input_shape, rng, dtype)
            self.weights = nn.Parameter(np.ones(input_shape, dtype))

        def forward(self, x, training=False):
            self._x = x
            return x * self.weights.value

        def backward(self, dout):
            self.weights.grad = (dout * self._x).sum(axis=0)
            return dout * self.weights.value

    model = nn.Sequential([nn.Input((2,)), Scale(name="scale"), nn.Dense(1)], seed=0, backend=backend)
    model.compile("sgd", "mse")
    model.fit(np.ones((4, 2), np.float32), np.zeros((4, 1), np.float32), verbose=0)
    scale = model.get_layer("scale")
    assert isinstance(scale.weights, nn.Parameter) and not (scale.weights.value == 1).all()
    model.save(tmp_path / "m.npz")
    assert model.load(tmp_path / "m.npz") is model


def test_non_trainable_weights_go_layer_by_layer_as_in_keras(backend):
    norm, frozen = nn.BatchNormalization(name="norm"), nn.Dense(2, name="frozen")
    frozen.trainable = False
    model = nn.Sequential([nn.Input((3,)), norm, frozen], seed=0, backend=backend)
    assert [a is b for a, b in zip(model.non_trainable_weights, [norm.moving_mean, norm.moving_variance,
                                                                frozen.kernel.value, frozen.bias.value])] == [True] * 4
