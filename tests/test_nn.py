"""fastdl.nn layers and losses: finite-difference gradients in float64, parameter counts, bad input."""

import numpy as np
import pytest

from fastdl import nn
from fastdl.nn.losses import get_loss
from fastdl.repro.models import course_cnn, course_mlp
from naive import numeric_grad


def _check_layer(layer, input_shape, rng, reset=None, batch=2, backend=None):
    """Check dx and every parameter's grad against finite differences of sum(out * weights)."""
    layer.backend = backend
    layer.build(input_shape, rng, np.float64)
    x = rng.standard_normal((batch, *input_shape))
    # Keep ReLU/max-pool inputs away from their kinks, where finite differences are not gradients.
    x += np.sign(x) * 0.05
    for _, p in layer.parameters():
        p.value[...] = rng.standard_normal(p.value.shape) * 0.5

    def loss():
        if reset:
            reset()
        return float((layer.forward(x, training=True) * weights).sum())

    if reset:
        reset()
    out = layer.forward(x, training=True)
    weights = rng.standard_normal(out.shape)
    dx = layer.backward(weights.copy())
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-5, atol=1e-7)
    for name, p in layer.parameters():
        analytic = p.grad.copy()
        np.testing.assert_allclose(analytic, numeric_grad(loss, p.value), rtol=1e-5, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("activation", [None, "linear", "relu", "sigmoid", "tanh", "softmax"])
def test_dense_gradients(activation, rng, backend):
    _check_layer(nn.Dense(4, activation=activation), (5,), rng, batch=3, backend=backend)


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("strides", [1, 2])
def test_conv2d_gradients(padding, strides, rng, backend):
    layer = nn.Conv2D(3, (3, 2), strides=strides, padding=padding, activation="tanh")
    _check_layer(layer, (5, 6, 2), rng, backend=backend)


def test_conv2d_relu_gradients(rng):
    _check_layer(nn.Conv2D(2, 3, padding="same", activation="relu"), (4, 4, 2), rng)


@pytest.mark.parametrize("pool_size, strides, padding", [(2, None, "valid"), (3, 2, "same"), ((2, 3), 1, "valid")])
def test_max_pool_gradients(pool_size, strides, padding, rng, backend):
    _check_layer(nn.MaxPool2D(pool_size, strides, padding), (5, 7, 2), rng, backend=backend)


def test_flatten_gradients(rng):
    _check_layer(nn.Flatten(), (3, 2, 2), rng)


@pytest.mark.parametrize("layer", [nn.ReLU(), nn.Sigmoid(), nn.Tanh(), nn.Softmax()], ids=lambda l: type(l).__name__)
def test_activation_layer_gradients(layer, rng, backend):
    _check_layer(layer, (3, 4), rng, backend=backend)


def test_dropout_gradients_with_a_fixed_mask(rng, backend):
    layer = nn.Dropout(0.4)

    def reset():
        layer.rng = np.random.default_rng(7)

    _check_layer(layer, (4, 5), rng, reset=reset, backend=backend)
    # Inference passes everything through unchanged.
    x = rng.standard_normal((2, 4, 5))
    np.testing.assert_array_equal(layer.forward(x, training=False), x)


def test_dropout_keeps_the_expected_share():
    layer = nn.Dropout(0.5, seed=0)
    layer.build((1000,), None, np.float64)
    out = layer.forward(np.ones((10, 1000)), training=True)
    assert abs((out == 0).mean() - 0.5) < 0.02
    assert set(np.unique(out)) == {0.0, 2.0}


def _check_loss(loss, logits, y, fused, backend=None):
    loss.backend = backend

    def value():
        if fused:
            return loss.forward_logits(logits, targets)
        return loss.forward(nn.activations.softmax(logits) if isinstance(loss, nn.losses._CrossEntropy) else logits,
                            targets)

    targets = loss.check_targets(y, logits.shape[0], logits.shape[1:])
    value()
    analytic = loss.backward_logits() if fused else loss.backward()
    if not fused and isinstance(loss, nn.losses._CrossEntropy):
        probs = nn.activations.softmax(logits)
        analytic = nn.activations.grad("softmax", probs, analytic)
    np.testing.assert_allclose(analytic, numeric_grad(value, logits), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("fused", [True, False])
def test_sparse_crossentropy_gradient(fused, rng, backend):
    _check_loss(get_loss("sparse_categorical_crossentropy"), rng.standard_normal((4, 5)), [0, 4, 2, 2], fused, backend)


@pytest.mark.parametrize("fused", [True, False])
def test_categorical_crossentropy_gradient(fused, rng, backend):
    y = np.eye(5)[[1, 0, 3, 4]]
    _check_loss(get_loss("categorical_crossentropy"), rng.standard_normal((4, 5)), y, fused, backend)


def test_soft_targets_crossentropy_gradient(rng, backend):
    """Targets that are not one-hot (label smoothing, soft labels): the fused gradient is
    softmax * sum(y) - y."""
    y = rng.random((4, 5))
    _check_loss(get_loss("categorical_crossentropy"), rng.standard_normal((4, 5)), y, True, backend)


def test_mse_gradient(rng, backend):
    _check_loss(get_loss("mse"), rng.standard_normal((4, 3)), rng.standard_normal((4, 3)), False, backend)


def test_softmax_crossentropy_is_stable(backend):
    loss = get_loss("sparse_categorical_crossentropy")
    loss.backend = backend
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]])
    assert loss.forward_logits(logits, np.array([0, 0])) == pytest.approx(1e4)
    grad = loss.backward_logits()
    assert np.isfinite(grad).all()
    np.testing.assert_allclose(grad, [[0, 0, 0], [-0.5, 0.5, 0]], atol=1e-12)
    probs = nn.activations.softmax(np.array([[1000.0, 0.0]]))
    assert np.isfinite(probs).all()


def test_course_mlp_parameter_count():
    text = course_mlp().summary(print_fn=None)
    assert "Total params: 266,610" in text
    assert "(None, 784)" in text and "235,500" in text


def test_summary_columns_widen_for_long_names():
    long_name = "a_layer_name_longer_than_the_name_column"
    model = nn.Sequential([nn.Dense(4, input_shape=(3,), name=long_name), nn.Dense(2)])
    lines = model.summary(print_fn=None).splitlines()
    header, row, rule = lines[2], lines[4], lines[1]
    assert row.startswith(f" {long_name} (Dense)  ")
    assert row.index("(None, 4)") == header.index("Output Shape") and row.endswith("16")
    assert len(rule) == max(map(len, lines))
    inputs = nn.Input((5,))
    outputs = nn.Dense(2, name="out")(nn.Dense(3, name=long_name)(inputs))
    lines = nn.Model(inputs, {"out": outputs}).summary(print_fn=None).splitlines()
    row = next(line for line in lines if line.startswith(" out "))
    assert row.index("(None, 2)") == lines[2].index("Output Shape") and row.endswith(long_name)


def test_course_cnn_parameter_count():
    model = course_cnn()
    text = model.summary(print_fn=None)
    assert model.count_params() == 1_413_834
    assert "Total params: 1,413,834" in text
    assert "(None, 3, 3, 256)" in text and "(None, 28, 28, 64)" in text


def test_initialisers(rng):
    dense = nn.Dense(200)
    dense.build((300,), rng)
    limit = np.sqrt(6 / 500)
    assert dense.kernel.value.dtype == np.float32
    assert np.abs(dense.kernel.value).max() <= limit and np.abs(dense.kernel.value).max() > 0.9 * limit
    assert not dense.bias.value.any()
    conv = nn.Conv2D(64, 3, kernel_initializer="he_normal")
    conv.build((8, 8, 32), rng)
    std = np.sqrt(2 / (3 * 3 * 32))
    assert conv.kernel.value.std() == pytest.approx(std, rel=0.05)
    assert np.abs(conv.kernel.value).max() <= 2 * std / 0.87962566103423978 + 1e-6


def test_seed_reproduces_initialisation():
    a, b, c = course_mlp(seed=3), course_mlp(seed=3), course_mlp(seed=4)
    for (_, pa), (_, pb), (_, pc) in zip(a.parameters(), b.parameters(), c.parameters()):
        np.testing.assert_array_equal(pa.value, pb.value)
    assert not np.array_equal(a.parameters()[0][1].value, c.parameters()[0][1].value)


@pytest.mark.parametrize("bad", ["relu7", 3])
def test_unknown_activation(bad):
    with pytest.raises(ValueError, match="activation"):
        nn.Dense(3, activation=bad)


def test_unknown_loss_and_optimizer():
    model = course_mlp()
    with pytest.raises(ValueError, match="loss"):
        model.compile("sgd", "hinge")
    with pytest.raises(ValueError, match="optimizer"):
        model.compile("adafactor", "mse")
    with pytest.raises(ValueError, match="metric"):
        model.compile("sgd", "mse", metrics=["auc"])
    with pytest.raises(ValueError, match=r"'accuracy' is given twice \(as 'acc' too\)"):
        model.compile("sgd", "mse", metrics=["acc", "accuracy"])  # not one of them quietly dropped


def test_dense_needs_flat_input():
    with pytest.raises(ValueError, match="Flatten"):
        nn.Sequential([nn.Dense(3, input_shape=(4, 4))]).build()


def test_conv_bad_arguments():
    with pytest.raises(ValueError, match="padding"):
        nn.Conv2D(3, 3, padding="full")
    with pytest.raises(ValueError, match="empty"):
        nn.Sequential([nn.Conv2D(3, 5, input_shape=(3, 3, 1))]).build()
    with pytest.raises(ValueError, match="rate"):
        nn.Dropout(1.0)


@pytest.mark.parametrize("layer, shape", [(nn.Dropout(0.5, seed=0), (3,)), (nn.Flatten(), (2, 3)),
                                           (nn.BatchNormalization(), (3,)), (nn.Reshape((3, 2)), (6,))])
def test_backward_refuses_a_gradient_of_another_shape(layer, shape, rng):
    """A gradient that does not match the forward pass is refused, never broadcast into it."""
    layer.build(shape, rng, np.float64)
    out = layer.forward(rng.normal(size=(4, *shape)), training=True)
    for wrong in (out[:1], out[:, :1], out[:2]):
        with pytest.raises(ValueError, match="forward pass|backward"):
            layer.backward(np.ascontiguousarray(wrong))
    assert layer.backward(np.ones_like(out)).shape == (4, *shape)


# -- LeakyReLU, Reshape, L2 ------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.3, 0.01, 0.0])
def test_leaky_relu_gradients(alpha, rng):
    layer = nn.LeakyReLU(alpha)
    _check_layer(layer, (3, 4), rng)
    out = layer.forward(np.array([[-2.0, 0.0, 3.0]]))
    np.testing.assert_allclose(out, [[-2 * alpha, 0, 3]])


def test_leaky_relu_default_and_activation_argument(rng):
    # Keras 3: the LeakyReLU layer's slope is 0.3, the activation "leaky_relu"'s 0.2.
    assert nn.LeakyReLU().alpha == 0.3
    x = np.array([[-1.0, 2.0]])
    np.testing.assert_allclose(nn.Activation("leaky_relu")(x), [[-0.2, 2.0]])
    model = nn.Sequential([nn.Dense(2, activation="leaky_relu", input_shape=(2,))])
    model.set_weights([np.eye(2), np.zeros(2)])
    np.testing.assert_allclose(model.predict(x), [[-0.2, 2.0]])
    _check_layer(nn.Dense(4, activation="leaky_relu"), (5,), rng, batch=3)
    _check_layer(nn.Conv2D(2, 3, padding="same", activation="leaky_relu"), (4, 4, 2), rng)
    with pytest.raises(ValueError, match="alpha"):
        nn.LeakyReLU(-0.1)


def test_reshape(rng):
    _check_layer(nn.Reshape((3, 2, 2)), (12,), rng)
    layer = nn.Reshape((-1, 4))
    layer.build((2, 6), rng)
    assert layer.output_shape == (3, 4)
    model = nn.Sequential([nn.Dense(12, input_shape=(5,)), nn.Reshape((2, 3, 2)), nn.Conv2D(1, 2)])
    assert "(None, 2, 3, 2)" in model.summary(print_fn=None)
    with pytest.raises(ValueError, match="Reshape cannot"):
        nn.Sequential([nn.Reshape((5, 5), input_shape=(12,))]).build()
    with pytest.raises(ValueError, match="at most one -1"):
        nn.Reshape((-1, -1))


def test_shape_products_do_not_wrap():
    """Sizes past int64 stay exact (np.prod wrapped 2**32 x 2**32 to 0: a (0, 10) Dense kernel)."""
    assert nn.Flatten().compute_output_shape((2**32, 2**32)) == (2**64,)
    assert nn.Reshape((-1, 2)).compute_output_shape((2**32, 2**32)) == (2**63, 2)


@pytest.mark.parametrize("make_layer, input_shape", [
    (lambda: nn.Dense(3, activation="tanh", kernel_regularizer=nn.l2(0.05)), (4,)),
    (lambda: nn.Conv2D(2, 2, kernel_regularizer=nn.l2(0.05)), (3, 3, 2)),
], ids=["dense", "conv2d"])
def test_l2_regularizer_gradients(make_layer, input_shape, rng):
    layer = make_layer()
    layer.build(input_shape, rng, np.float64)
    x = rng.standard_normal((2, *input_shape))
    weights = rng.standard_normal((2, *layer.output_shape))
    kernel = layer.kernel.value
    expected_penalty = 0.05 * (kernel ** 2).sum()
    assert layer.regularization_loss() == pytest.approx(expected_penalty)

    def loss():
        return float((layer.forward(x) * weights).sum()) + layer.regularization_loss()

    layer.forward(x)
    layer.backward(weights)
    np.testing.assert_allclose(layer.kernel.grad, numeric_grad(loss, kernel), rtol=1e-5, atol=1e-7)


def test_l2_is_added_to_the_model_loss(rng):
    x, y = rng.standard_normal((6, 4)), rng.standard_normal((6, 2))
    plain = nn.Sequential([nn.Dense(2, input_shape=(4,))], seed=0, dtype="float64")
    penalised = nn.Sequential([nn.Dense(2, input_shape=(4,), kernel_regularizer="l2")], seed=0, dtype="float64")
    for model in (plain, penalised):
        model.compile("sgd", "mse")
    kernel = penalised.get_weights()[0]
    assert penalised.evaluate(x, y) == pytest.approx(plain.evaluate(x, y) + 0.01 * (kernel ** 2).sum())
    with pytest.raises(ValueError, match="kernel_regularizer"):
        nn.Dense(2, kernel_regularizer="l3")
    with pytest.raises(ValueError, match="L2 factor"):
        nn.l2(-1)


# -- binary cross-entropy and the cyclic loss ------------------------------------------------------
def _check_plain_loss(loss, y_pred, y, backend=None):
    loss.backend = backend
    targets = loss.check_targets(y, y_pred.shape[0], y_pred.shape[1:])

    def value():
        return loss.forward(y_pred, targets)

    value()
    np.testing.assert_allclose(loss.backward(), numeric_grad(value, y_pred), rtol=1e-5, atol=1e-8)


def test_binary_crossentropy_on_probabilities(rng):
    probs = rng.uniform(0.05, 0.95, (5, 2))
    y = rng.integers(0, 2, (5, 2)).astype(float)
    _check_plain_loss(get_loss("binary_crossentropy"), probs, y)
    loss = nn.BinaryCrossentropy()
    expected = -np.mean(y * np.log(probs) + (1 - y) * np.log(1 - probs))
    assert loss.forward(probs, y) == pytest.approx(expected)


def test_binary_crossentropy_from_logits(rng, backend):
    logits = rng.standard_normal((5, 3)) * 3
    y = rng.uniform(0, 1, (5, 3))
    _check_plain_loss(nn.BinaryCrossentropy(from_logits=True), logits, y, backend)
    probs = 1 / (1 + np.exp(-logits))
    assert nn.BinaryCrossentropy(from_logits=True).forward(logits, y) == pytest.approx(
        nn.BinaryCrossentropy().forward(probs, y))


def test_binary_crossentropy_from_logits_is_stable(backend):
    loss = nn.BinaryCrossentropy(from_logits=True)
    loss.backend = backend
    logits = np.array([[1e4], [-1e4], [1e4]])
    assert loss.forward(logits, np.array([[1.0], [0.0], [0.0]])) == pytest.approx(1e4 / 3)
    np.testing.assert_allclose(loss.backward(), [[0], [0], [1 / 3]], atol=1e-12)


def test_binary_crossentropy_bad_targets():
    loss = nn.BinaryCrossentropy()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        loss.check_targets(np.array([0.0, 2.0]), 2, (1,))
    with pytest.raises(ValueError, match="NaN"):
        loss.check_targets(np.array([0.0, np.nan]), 2, (1,))
    with pytest.raises(ValueError, match="shape"):
        loss.check_targets(np.zeros((2, 3)), 2, (1,))


def test_cyclic_mse(rng, backend):
    loss = nn.CyclicMSE(12)
    loss.backend = backend
    # 11.9 against 0.1 is 0.2 hours off the short way round, not 11.8.
    assert loss.forward(np.array([[11.9], [0.1], [3.0]]), np.array([[0.1], [11.9], [9.0]])) == pytest.approx(
        (0.2 ** 2 + 0.2 ** 2 + 6.0 ** 2) / 3)
    # Away from the wrap point (errors of exactly +-period/2) the gradient is the wrapped error's.
    y_pred = rng.uniform(-20, 30, (6, 2))
    y = rng.uniform(0, 12, (6, 2))
    _check_plain_loss(loss, y_pred, y, backend)
    assert (np.abs(loss.backward() * y.size / 2) <= 6).all()  # the wrapped errors
    with pytest.raises(ValueError, match="period"):
        nn.CyclicMSE(0)
    with pytest.raises(ValueError, match="period"):
        nn.CyclicMSE(float("nan"))


@pytest.mark.parametrize("size", [2, (2, 3), (1, 1)])
def test_upsampling_gradients(size, rng):
    _check_layer(nn.UpSampling2D(size), (3, 2, 2), rng)


def test_upsampling_repeats_pixels_and_checks_its_input(rng):
    layer = nn.UpSampling2D((2, 3))
    layer.build((2, 2, 1), rng, np.float64)
    x = rng.standard_normal((1, 2, 2, 1))
    out = layer.forward(x)
    np.testing.assert_array_equal(out, np.repeat(np.repeat(x, 2, axis=1), 3, axis=2))
    assert layer.output_shape == (4, 6, 1)
    with pytest.raises(ValueError, match=r"UpSampling2D expects inputs of shape \(batch, 2, 2, 1\)"):
        layer.forward(np.zeros((1, 3, 2, 1)))
    with pytest.raises(ValueError, match="UpSampling2D expects images"):
        nn.Sequential([nn.Input((4,)), nn.UpSampling2D()]).build()


def test_losses_and_dropout_take_integer_inputs(backend):
    """Integer outputs or inputs are computed in float64, as everywhere in fastdl."""
    loss = get_loss("mse")
    loss.backend = backend
    assert loss.forward(np.array([[1, 2]]), np.array([[0.0, 0.0]])) == pytest.approx(2.5)
    assert loss.backward().dtype == np.float64
    layer = nn.Dropout(0.5, seed=0, backend=backend)
    out = layer.forward(np.ones((4, 6), dtype=np.int64), training=True)
    assert out.dtype == np.float64 and set(np.unique(out)) <= {0.0, 2.0}
