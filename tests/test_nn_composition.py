"""Models as layers of other models, trainable flags, train_on_batch, add_loss and Sampling (a VAE's and a GAN's needs)."""

import numpy as np
import pytest

from fastdl import nn
from fastdl.nn import Input, Model
from naive import numeric_grad


def _generator(backend=None, dtype="float64", seed=1):
    return nn.Sequential([Input((3,)), nn.Dense(6, activation="tanh"), nn.Dense(4, activation="tanh")],
                         seed=seed, dtype=dtype, backend=backend, name="generator")


def _discriminator(backend=None, dtype="float64", seed=2):
    return nn.Sequential([Input((4,)), nn.Dense(5), nn.LeakyReLU(0.2), nn.Dense(1)],
                         seed=seed, dtype=dtype, backend=backend, name="discriminator")


def _gan(backend=None, dtype="float64"):
    generator, discriminator = _generator(backend, dtype), _discriminator(backend, dtype)
    discriminator.compile(nn.Adam(2e-4, beta_1=0.5), nn.BinaryCrossentropy(from_logits=True))
    discriminator.trainable = False
    z = Input((3,))
    gan = Model(z, discriminator(generator(z)), seed=3, dtype=dtype, backend=backend, name="gan")
    gan.compile(nn.Adam(1e-2, beta_1=0.5), nn.BinaryCrossentropy(from_logits=True))
    return generator, discriminator, gan


def test_frozen_model_inside_another_keeps_its_weights_and_passes_gradients():
    generator, discriminator, gan = _gan()
    frozen = discriminator.get_weights()
    before = generator.get_weights()
    z = np.random.default_rng(0).standard_normal((40, 3))
    gan.fit(z, np.ones((40, 1)), epochs=2, batch_size=8)
    for old, new in zip(frozen, discriminator.get_weights()):
        np.testing.assert_array_equal(old, new)
    assert all(not np.array_equal(old, new) for old, new in zip(before, generator.get_weights()))
    # Only the generator's weights have optimizer state.
    assert len(gan.optimizer.params) == len(generator.parameters())
    assert {id(p) for p in gan.optimizer.params} == {id(p) for _, p in generator.parameters()}


def test_trainable_is_read_at_compile_as_in_keras():
    _, discriminator, _ = _gan()
    # Compiled while trainable, the discriminator still trains alone after being frozen.
    before = discriminator.get_weights()
    discriminator.train_on_batch(np.ones((4, 4)), np.ones((4, 1)))
    assert all(not np.array_equal(old, new) for old, new in zip(before, discriminator.get_weights()))


def test_summary_counts_frozen_weights_as_non_trainable():
    _, _, gan = _gan()
    text = gan.summary(print_fn=None)
    # generator: 3*6+6 + 6*4+4 = 52 weights; discriminator: 4*5+5 + 5+1 = 31
    assert "Total params: 83" in text
    assert "Trainable params: 52" in text
    assert "Non-trainable params: 31" in text
    stack = nn.Sequential([_generator(), _discriminator()], dtype="float64", name="stack")
    stack.layers[1].trainable = False
    assert "Non-trainable params: 31" in stack.summary(print_fn=None)


def test_gradients_through_a_frozen_model_match_finite_differences(backend):
    generator, discriminator, gan = _gan(backend)
    rng = np.random.default_rng(4)
    z = rng.standard_normal((5, 3))
    _, targets = gan._check_xy(z, np.ones((5, 1)))

    def loss():
        return gan._batch_losses(gan._forward(z, training=True), targets)["loss"]

    loss()
    gan._backward_from_loss()
    for name, p in generator.parameters() + discriminator.parameters():
        np.testing.assert_allclose(p.grad, numeric_grad(loss, p.value), rtol=1e-6, atol=1e-9, err_msg=name)


def test_model_in_sequential_gives_the_same_outputs_and_gradients():
    generator, discriminator = _generator(), _discriminator()
    stack = nn.Sequential([generator, discriminator], dtype="float64", name="stack")
    z = np.random.default_rng(5).standard_normal((6, 3))
    np.testing.assert_allclose(stack.predict(z), discriminator.predict(generator.predict(z)), rtol=1e-12)
    dout = np.ones((6, 1))
    stack._forward(z, training=True)
    stack._backward(dout)
    grads = [p.grad.copy() for _, p in stack.parameters()]
    generator._forward(z, training=True)
    discriminator._forward(generator._forward(z, training=True), training=True)
    generator._backward(discriminator.backward(dout))
    for grad, (name, p) in zip(grads, stack.parameters()):
        np.testing.assert_allclose(grad, p.grad, rtol=1e-12, err_msg=name)
    assert [name for name, _ in stack.parameters()][0] == "generator/dense/kernel"


@pytest.mark.parametrize("kind", ["sequential", "model"])
def test_train_on_batch_is_one_step_of_fit(kind):
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((12, 4)), rng.integers(0, 3, 12)

    def make():
        if kind == "sequential":
            model = nn.Sequential([Input((4,)), nn.Dense(5, activation="relu"), nn.Dense(3, activation="softmax")],
                                  seed=0)
        else:
            inputs = Input((4,))
            model = Model(inputs, nn.Dense(3, activation="softmax", name="out")(nn.Dense(5, activation="relu")(inputs)),
                          seed=0)
        model.compile(nn.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    stepped, fitted = make(), make()
    result = stepped.train_on_batch(x, y)
    history = fitted.fit(x, y, epochs=1, batch_size=12, shuffle=False)
    for a, b in zip(stepped.get_weights(), fitted.get_weights()):
        np.testing.assert_array_equal(a, b)
    # A Model of one output given as a tensor answers as Sequential does (Keras).
    assert result == [history.history["loss"][0], history.history["accuracy"][0]]
    assert stepped.test_on_batch(x, y) == stepped.evaluate(x, y, batch_size=12)
    np.testing.assert_array_equal(stepped.predict_on_batch(x), stepped.predict(x))
    assert stepped.epochs_trained == 0


def _vae(backend=None, kl_weight=1.0, seed=0):
    """Input, Dense, z_mean, z_log_var, Sampling (layer 4, as Keras lists them), decoder: the one output
    named "decoder"."""
    x = Input((6,))
    hidden = nn.Dense(5, activation="tanh")(x)
    z_mean = nn.Dense(2, name="z_mean")(hidden)
    z_log_var = nn.Dense(2, name="z_log_var")(hidden)
    z = nn.Sampling(kl_weight=kl_weight)([z_mean, z_log_var])
    decoder = nn.Sequential([Input((2,)), nn.Dense(6, activation="sigmoid")], seed=1, dtype="float64",
                            backend=backend, name="decoder")
    return Model(x, {"decoder": decoder(z)}, seed=seed, dtype="float64", backend=backend, name="vae")


def test_vae_gradients_through_sampling_and_kl_match_finite_differences(backend):
    vae = _vae(backend, kl_weight=0.7)
    vae.compile("adam", "binary_crossentropy", loss_weights=6.0)
    rng = np.random.default_rng(7)
    x = rng.random((4, 6))
    _, targets = vae._check_xy(x, x)
    sampling = vae.layers[4]

    def loss():
        sampling.rng = np.random.default_rng(11)  # the same noise for every evaluation
        return vae._batch_losses(vae._forward(x, training=True), targets)["loss"]

    loss()
    vae._backward_from_loss()
    for name, p in vae.parameters():
        np.testing.assert_allclose(p.grad, numeric_grad(loss, p.value), rtol=1e-6, atol=1e-9, err_msg=name)


def test_kl_term_is_the_closed_form_and_is_added_to_the_loss():
    vae = _vae(kl_weight=0.5)
    vae.compile("adam", "binary_crossentropy")
    x = np.random.default_rng(8).random((5, 6))
    out = vae._forward(x, training=True)
    sampling = vae.layers[4]
    mean, log_var = sampling._z_mean, sampling._z_log_var
    kl = -0.5 * np.sum(1 + log_var - mean ** 2 - np.exp(log_var)) / 5
    assert vae.losses == pytest.approx([0.5 * kl], rel=1e-12)
    _, targets = vae._check_xy(x, x)
    logs = vae._batch_losses(out, targets)
    reconstruction = nn.BinaryCrossentropy().forward(out["decoder"], x)
    assert logs["loss"] == pytest.approx(reconstruction + 0.5 * kl, rel=1e-12)
    # Each forward pass replaces the term instead of piling them up.
    vae._forward(x, training=False)
    assert len(vae.losses) == 1


def test_sampling_is_deterministic_under_a_seed_and_follows_the_formula():
    x = np.random.default_rng(9).random((3, 6))
    first, second, other = _vae(seed=4), _vae(seed=4), _vae(seed=5)
    np.testing.assert_array_equal(first.predict(x)["decoder"], second.predict(x)["decoder"])
    assert not np.array_equal(first.predict(x)["decoder"], other.predict(x)["decoder"])
    sampling = nn.Sampling(kl_weight=0)
    sampling.build([(2,), (2,)], np.random.default_rng(0), np.float64)
    sampling.rng = np.random.default_rng(3)
    mean, log_var = np.array([[1.0, -2.0]]), np.array([[0.5, -1.0]])
    z = sampling.forward([mean, log_var])
    noise = np.random.default_rng(3).standard_normal((1, 2))
    np.testing.assert_allclose(z, mean + np.exp(log_var / 2) * noise, rtol=1e-12)
    assert sampling.losses == []


def test_composition_errors_are_clear():
    with pytest.raises(ValueError, match="two tensors of one shape"):
        x = Input((4,))
        nn.Sampling()([nn.Dense(2)(x), nn.Dense(3)(x)])
    with pytest.raises(ValueError, match="kl_weight"):
        nn.Sampling(kl_weight=-1)
    x = Input((4,))
    two_heads = Model(x, [nn.Dense(2, name="a")(x), nn.Dense(2, name="b")(x)], seed=0)
    with pytest.raises(ValueError, match="only a model with one output"):
        two_heads(Input((4,)))
    with pytest.raises(ValueError, match="same dtype"):
        nn.Sequential([_generator(dtype="float32"), _discriminator(dtype="float64")], dtype="float64").build((3,))
    with pytest.raises(ValueError, match="takes inputs of shape"):
        _discriminator()(Input((7,)))


def test_save_and_load_a_model_with_models_inside(tmp_path):
    generator, _, gan = _gan()
    z = np.random.default_rng(10).standard_normal((8, 3))
    gan.train_on_batch(z, np.ones((8, 1)))
    gan.save(tmp_path / "gan.npz")
    _, _, other = _gan()
    other.load(tmp_path / "gan.npz")
    np.testing.assert_array_equal(other.predict(z), gan.predict(z))
    assert "generator/dense/kernel" in {name for name, _ in gan.parameters()}


def _counting_backward(layer, calls):
    """Count the calls of layer.backward (its instance attribute shadows the class's method)."""
    method = layer.backward

    def backward(dout):
        calls.append(layer.name)
        return method(dout)

    layer.backward = backward


@pytest.mark.parametrize("kind", ["sequential", "model"])
def test_a_frozen_base_costs_no_backward_pass(kind):
    """Keras' transfer learning: frozen layers below a trained head are not run backwards at all."""
    base = [nn.Dense(6, activation="tanh", name="base_1"), nn.Dense(5, activation="tanh", name="base_2")]
    head = nn.Dense(2, name="head")
    if kind == "sequential":
        model = nn.Sequential([Input((3,)), *base, head], seed=0, dtype="float64")
    else:
        inputs = Input((3,))
        model = Model(inputs, head(base[1](base[0](inputs))), seed=0, dtype="float64")
    for layer in base:
        layer.trainable = False
    model.compile(nn.SGD(0.1), "mse")
    calls = []
    for layer in (*base, head):
        _counting_backward(layer, calls)
    frozen = [layer.kernel.value.copy() for layer in base]
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
    before, bias = head.kernel.value.copy(), head.bias.value.copy()
    model.train_on_batch(x, y)
    assert calls == ["head"] and not head.needs_input_grad
    for layer, kernel in zip(base, frozen):
        np.testing.assert_array_equal(layer.kernel.value, kernel)
    # The head's step is plain SGD on its gradient, the base's outputs its input.
    features = np.tanh(np.tanh(x @ base[0].kernel.value + base[0].bias.value) @ base[1].kernel.value
                       + base[1].bias.value)
    dout = 2 * (features @ before + bias - y) / y.size
    np.testing.assert_allclose(head.kernel.value, before - 0.1 * features.T @ dout, rtol=1e-12)


def test_layers_shared_by_two_models_take_each_models_gradient_flags():
    """Two models over the same layers, compiled with different layers frozen: each training step
    computes the input gradients its own model needs, whichever model trained last."""
    first, second = nn.Dense(4, activation="tanh", name="first"), nn.Dense(2, name="second")
    everything = nn.Sequential([Input((3,)), first, second], seed=0, dtype="float64")
    everything.compile(nn.SGD(0.0), "mse")  # lr 0: the weights stay, the gradients are what counts
    first.trainable = False
    top_only = nn.Sequential([Input((3,)), first, second], seed=0, dtype="float64")
    top_only.compile(nn.SGD(0.0), "mse")
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    top_only.train_on_batch(x, y)
    assert not second.needs_input_grad  # nothing below `second` learns in top_only
    everything.train_on_batch(x, y)
    assert second.needs_input_grad
    _, targets = everything._check_xy(x, y)

    def loss():
        return everything._batch_loss(everything._forward(x, training=True), targets)

    np.testing.assert_allclose(first.kernel.grad, numeric_grad(loss, first.kernel.value), rtol=1e-6, atol=1e-9)


def test_frozen_layers_pass_gradients_without_computing_their_own():
    """Frozen layers above a trained one compute the input gradients it needs, not their weights'."""
    trained = nn.Conv2D(3, 3, padding="same", activation="tanh", name="trained")
    frozen = [nn.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="strided"),
              nn.Conv2DTranspose(2, 3, strides=2, padding="same", name="transposed"),
              nn.Conv2D(2, 3, padding="same", activation="relu", name="pooled"), nn.MaxPool2D(2),
              nn.Flatten(), nn.Dense(2, name="dense")]
    model = nn.Sequential([Input((6, 6, 1)), trained, *frozen], seed=0, dtype="float64")
    for layer in frozen:
        layer.trainable = False
    model.compile(nn.SGD(0.0), "mse")  # lr 0: the weights stay, the gradients are what counts
    for layer in frozen:
        for _, p in layer.parameters():
            p.grad[...] = np.nan
    rng = np.random.default_rng(9)
    x, y = rng.standard_normal((3, 6, 6, 1)), rng.standard_normal((3, 2))
    model.train_on_batch(x, y)
    assert all(np.isnan(p.grad).all() for layer in frozen for _, p in layer.parameters())
    _, targets = model._check_xy(x, y)

    def loss():
        return model._batch_loss(model._forward(x, training=True), targets)

    for _, p in trained.parameters():
        np.testing.assert_allclose(p.grad, numeric_grad(loss, p.value), rtol=1e-6, atol=1e-9)


def _nested(seed=0):
    inner = nn.Sequential([nn.Dense(8, name="d")], seed=seed + 1, name="inner")
    return nn.Sequential([inner, nn.Dense(3, name="out")], seed=seed)


def test_a_refused_load_leaves_the_models_inside_unbuilt(tmp_path):
    """A file that does not fit an unbuilt model is refused and leaves it unbuilt, the model inside
    it too: it then takes inputs of any shape, with the weights a fresh model draws."""
    other = nn.Sequential([Input(6), nn.Sequential([nn.Dense(7, name="d")], name="inner"), nn.Dense(3, name="out")],
                          seed=0)
    other.compile("adam")
    other.save(tmp_path / "other.npz")
    model = _nested()
    model.compile(nn.Adam())
    with pytest.raises(ValueError, match="inner/d/kernel has shape"):
        model.load(tmp_path / "other.npz")
    inner = model.layers[0]
    assert not model.built and model.input_shape is None
    assert not inner.built and inner.input_shape is None and not inner.layers[0].built
    x = np.random.default_rng(0).normal(size=(10, 5)).astype(np.float32)
    fresh = _nested()
    np.testing.assert_array_equal(model.predict(x), fresh.predict(x))
    model.fit(x, np.zeros(10, int), epochs=1)  # the optimizer takes the parameters built for 5 features


def test_a_refused_build_leaves_no_layer_built_for_the_refused_shape():
    """Images too small for the pooling are refused at the pooling layer; the convolution before it
    is not left built for them, so images of a right size then go through."""
    def make():
        return nn.Sequential([nn.Conv2D(2, 3), nn.MaxPooling2D(2), nn.Flatten(), nn.Dense(3)], seed=0)

    model = make()
    with pytest.raises(ValueError, match="pool_size"):
        model.predict(np.zeros((1, 3, 3, 1), np.float32))
    assert not model.layers[0].built and model.layers[0].input_shape is None and model.input_shape is None
    x = np.random.default_rng(1).random((2, 8, 8, 1), dtype=np.float32)
    np.testing.assert_array_equal(model.predict(x), make().predict(x))
    # Inside another model: the refused build of the outer one unbuilds the inner one again.
    outer = nn.Sequential([make(), nn.Dense(2)], seed=3)
    with pytest.raises(ValueError, match="pool_size"):
        outer.build((3, 3, 1))
    assert not outer.layers[0].built and not outer.layers[0].layers[0].built
    assert outer.predict(x).shape == (2, 2)


def test_unnamed_layers_take_keras_3_names():
    """Each layer class's default name is Keras 3's (keras.src.utils.naming.to_snake_case; checked
    against Keras 3.15)."""
    expected = {
        nn.Conv2DTranspose(2, 3): "conv2d_transpose", nn.Conv2D(2, 3): "conv2d", nn.MaxPooling2D(): "max_pooling2d",
        nn.MaxPool2D(): "max_pooling2d", nn.BatchNormalization(): "batch_normalization",
        nn.UpSampling2D(): "up_sampling2d", nn.LeakyReLU(): "leaky_re_lu", nn.ReLU(): "re_lu", nn.Dense(2): "dense",
        nn.Dropout(0.1): "dropout", nn.Flatten(): "flatten", nn.Reshape((2,)): "reshape",
        nn.Activation("relu"): "activation", nn.Softmax(): "softmax", nn.Sequential(): "sequential",
    }
    for layer, name in expected.items():
        assert nn.module.default_layer_name(layer, ()) == name, type(layer).__name__
    model = nn.Sequential([Input((4, 4, 1)), nn.Conv2DTranspose(2, 3, strides=2, padding="same"),
                           nn.Conv2DTranspose(1, 3), nn.LeakyReLU()])
    assert [layer.name for layer in model.layers] == ["conv2d_transpose", "conv2d_transpose_1", "leaky_re_lu"]


def test_sequential_of_none_is_an_empty_model_to_add_to():
    """Sequential(None), Keras' default: no layers yet."""
    model = nn.Sequential(None, seed=0)
    assert model.layers == []
    model.add(Input(3))
    model.add(nn.Dense(2))
    assert model.predict(np.ones((1, 3))).shape == (1, 2)


def test_an_unseeded_model_inside_a_seeded_one_draws_from_its_generator():
    # Keras' way to augment: a Sequential of augmentation layers first in the model. Unseeded, it
    # and its layers draw from the outer model's generator, so the outer seed fixes their draws
    # and initial weights; given a seed of its own, it keeps its own generator.
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 6, 6, 1)), rng.integers(0, 2, 16)

    def model(inner_seed=None):
        augment = nn.Sequential([nn.RandomFlip("horizontal"), nn.RandomRotation(0.2), nn.Conv2D(2, 3),
                                 nn.Dropout(0.3)], seed=inner_seed)
        outer = nn.Sequential([nn.Input((6, 6, 1)), augment, nn.Flatten(), nn.Dense(2, activation="softmax")], seed=0)
        outer.compile("adam", "sparse_categorical_crossentropy")
        return outer, augment

    (a, inner_a), (b, _) = model(), model()
    losses = [m.fit(x, y, batch_size=4, epochs=2).history["loss"] for m in (a, b)]
    assert losses[0] == losses[1]
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert inner_a.rng is a.rng and all(layer.rng is a.rng for layer in inner_a.layers if hasattr(layer, "rng"))
    seeded, inner = model(inner_seed=5)
    seeded.build()
    assert inner.rng is not seeded.rng and inner.layers[0].rng is inner.rng
