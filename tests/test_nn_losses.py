"""The losses of fastdl.nn at layer and model level, on outputs a Keras user's mistakes give: a last
layer that is no softmax (or no sigmoid), targets of another layout or dtype, extreme latent
variances. Gradients are checked against finite differences in float64."""

import numpy as np
import pytest

from fastdl import nn
from fastdl.nn.losses import (BinaryCrossentropy, CategoricalCrossentropy, MeanSquaredError,
                              SparseCategoricalCrossentropy)
from test_nn_keras_semantics import numeric_grads

EPSILON = 1e-7

# Rows that are no softmax's: a negative sum, a sum below 1e-7 (saturated sigmoids), entries the
# clip to [1e-7, 1 - 1e-7] catches from both sides, an ordinary row.
ODD_ROWS = np.array([[-1.0, -2.0, 0.5],
                     [2.06e-9, 3.1e-9, 4.7e-9],
                     [2.0, -0.5, 0.1],
                     [0.2, 0.3, 0.5],
                     [-0.4, 0.1, -0.3]])
CODES = np.array([0, 2, 1, 1, 2])


def keras_cross_entropy(outputs, targets):
    """Keras 3's categorical_crossentropy(from_logits=False), in float64: scale, clip, log."""
    p = np.clip(outputs / outputs.sum(axis=-1, keepdims=True), EPSILON, 1 - EPSILON)
    return float(np.mean(-(targets * np.log(p)).sum(axis=-1)))


def numeric_grad(loss_of, values, relative_step=1e-6):
    """d loss_of(values) / d values by central differences, each step relative to its value."""
    grad = np.zeros_like(values)
    for idx in np.ndindex(values.shape):
        step = relative_step * max(abs(values[idx]), 1e-300)
        up, down = values.copy(), values.copy()
        up[idx] += step
        down[idx] -= step
        grad[idx] = (loss_of(up) - loss_of(down)) / (2 * step)
    return grad


def _targets(cls, codes, n_classes=3):
    return codes if cls is SparseCategoricalCrossentropy else np.eye(n_classes)[codes]


@pytest.mark.parametrize("cls", [SparseCategoricalCrossentropy, CategoricalCrossentropy])
def test_cross_entropy_of_any_row_is_keras_formula(cls):
    targets = _targets(cls, CODES)
    assert cls().forward(ODD_ROWS, targets) == pytest.approx(keras_cross_entropy(ODD_ROWS, np.eye(3)[CODES]),
                                                             rel=1e-12)
    # Each row alone too (the negative and the tiny sums were once clamped to 1e-7).
    for i in range(len(ODD_ROWS)):
        assert cls().forward(ODD_ROWS[i:i + 1], targets[i:i + 1]) == pytest.approx(
            keras_cross_entropy(ODD_ROWS[i:i + 1], np.eye(3)[CODES[i:i + 1]]), rel=1e-12)


@pytest.mark.parametrize("cls", [SparseCategoricalCrossentropy, CategoricalCrossentropy])
def test_cross_entropy_gradient_of_any_row_is_the_slope_of_its_loss(cls):
    targets = _targets(cls, CODES)
    loss = cls()
    loss.forward(ODD_ROWS, targets)
    grad = loss.backward()
    numeric = numeric_grad(lambda v: cls().forward(v, targets), ODD_ROWS)
    for row in range(len(ODD_ROWS)):  # rows' slopes differ by orders of magnitude (1 / sum)
        np.testing.assert_allclose(grad[row], numeric[row], rtol=1e-6,
                                   atol=1e-7 * max(np.abs(numeric[row]).max(), 1.0))
    # Where the clip is active the loss is flat: row 2's target is on an entry scaled to -0.31.
    assert np.all(grad[2] == 0)


def test_soft_targets_on_odd_rows_match_finite_differences():
    rng = np.random.default_rng(4)
    outputs = np.concatenate([ODD_ROWS, rng.normal(size=(3, 3))])
    targets = rng.random(outputs.shape)  # not one-hot, rows not summing to 1
    loss = CategoricalCrossentropy()
    assert loss.forward(outputs, targets) == pytest.approx(keras_cross_entropy(outputs, targets), rel=1e-12)
    grad = loss.backward()
    numeric = numeric_grad(lambda v: CategoricalCrossentropy().forward(v, targets), outputs)
    for row in range(len(outputs)):
        np.testing.assert_allclose(grad[row], numeric[row], rtol=1e-6,
                                   atol=1e-7 * max(np.abs(numeric[row]).max(), 1.0))


def test_cross_entropy_of_a_row_summing_to_zero_is_finite():
    """Keras' loss is NaN there; fastdl takes the sum as 1e-7: the clipped loss, a finite gradient."""
    outputs = np.array([[0.0, 0.0, 0.0], [1.0, -1.0, 0.0]])
    loss = SparseCategoricalCrossentropy()
    assert loss.forward(outputs, np.array([0, 2])) == pytest.approx(-np.log(EPSILON))
    grad = loss.backward()
    assert np.isfinite(grad).all() and np.all(grad[0] == 0)


def test_a_linear_last_layer_under_cross_entropy_trains_without_blowing_up():
    """The common mistake (no softmax, from_logits=False) must not give 1e13 gradients."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype(np.float32)
    y = rng.integers(0, 3, 32)
    model = nn.Sequential([nn.Input((4,)), nn.Dense(8, activation="relu"), nn.Dense(3)], seed=0)
    model.compile(nn.SGD(learning_rate=0.01), "sparse_categorical_crossentropy")
    before = model.get_weights()
    model.train_on_batch(x, y)
    step = max(np.abs(a - b).max() for a, b in zip(model.get_weights(), before))
    assert step < 0.1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_cross_entropy_has_no_gradient_where_clipped(backend, dtype):
    """Outputs of a last layer that is no sigmoid: outside [1e-7, 1 - 1e-7] the clipped loss is flat."""
    outputs = np.array([[-0.3, 0.0], [1.7, 1.0], [0.6, 0.9]], dtype)  # column 0 away from the clip's edges
    targets = np.array([[1.0, 1.0], [0.0, 0.0], [0.0, 1.0]])
    loss = BinaryCrossentropy()
    loss.backend = backend
    loss.forward(outputs, targets)
    grad = loss.backward()
    assert grad.dtype == dtype
    clipped = (outputs < EPSILON) | (outputs > 1 - EPSILON)
    assert np.all(grad[clipped] == 0)
    p, y = outputs[~clipped].astype(np.float64), targets[~clipped]
    np.testing.assert_allclose(grad[~clipped], (p - y) / (p * (1 - p)) / outputs.size, rtol=1e-6)
    if dtype is np.float64:
        column = outputs[:, :1].copy()
        numeric = numeric_grad(lambda v: BinaryCrossentropy().forward(v, targets[:, :1]), column)
        np.testing.assert_allclose(grad[:, :1] * 2, numeric, atol=1e-8)  # 2: the mean was over both columns


# Keras 3's per-value binary cross-entropy of [1, 0.99999994, 1 - 2**-23, 1e-9, 0] against [0, 0, 0,
# 1, 1] (torch backend; TensorFlow's clip is the same): it clips in the outputs' dtype, and float32's
# 1 - 1e-7 is 1 - 2**-23, so -log(1 - p) at the top is 23 log 2 = 15.94 there, not 16.12.
CLIP_CASE = [1.0, 0.99999994, 1 - 2.0**-23, 1e-9, 0.0]
KERAS_CLIPPED = {np.float32: [15.942385, 15.942385, 15.942385, 16.118096, 16.118096],
                 np.float64: [16.118096, 16.118096, 15.942385, 16.118096, 16.118096]}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_cross_entropy_clips_in_the_outputs_dtype_as_keras(backend, dtype):
    outputs = np.array([CLIP_CASE], dtype)
    targets = np.array([[0.0, 0.0, 0.0, 1.0, 1.0]])
    for j, want in enumerate(KERAS_CLIPPED[dtype]):
        loss = BinaryCrossentropy()
        loss.backend = backend
        assert loss.forward(outputs[:, j:j + 1], targets[:, j:j + 1]) == pytest.approx(want, rel=1e-6)
    model = nn.Sequential([nn.Input((5,)), nn.Reshape((5,))], dtype=dtype.__name__, backend=backend)
    model.compile("sgd", "binary_crossentropy")
    assert model.evaluate(outputs, targets) == pytest.approx(np.mean(KERAS_CLIPPED[dtype]), rel=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_categorical_cross_entropy_clips_in_the_outputs_dtype_as_keras(dtype):
    """A row [1, 0, 0] against class 0: -log(high) with Keras' top bound in the outputs' dtype,
    1 - 2**-23 in float32 (loss 1.19e-7), 1 - 1e-7 in float64 (1.0e-7); against class 1
    -log(float32(1e-7)) or -log(1e-7)."""
    outputs = np.array([[1.0, 0.0, 0.0]], dtype)
    low, high = (float(np.float32(1e-7)), 1 - 2.0**-23) if dtype is np.float32 else (1e-7, 1 - 1e-7)
    for cls in (CategoricalCrossentropy, SparseCategoricalCrossentropy):
        targets = [np.eye(3)[:1], np.eye(3)[1:2]] if cls is CategoricalCrossentropy else [np.array([0]), np.array([1])]
        assert cls().forward(outputs, targets[0]) == pytest.approx(-np.log(high), rel=1e-12)
        assert cls().forward(outputs, targets[1]) == pytest.approx(-np.log(low), rel=1e-12)


def test_a_linear_last_layer_under_binary_cross_entropy_trains_without_blowing_up(backend):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype(np.float32)
    y = (rng.random((32, 1)) > 0.5).astype(np.float32)
    model = nn.Sequential([nn.Input((4,)), nn.Dense(8, activation="relu"), nn.Dense(1)], seed=0, backend=backend)
    model.compile(nn.SGD(learning_rate=0.01), "binary_crossentropy")
    before = model.get_weights()
    model.train_on_batch(x, y)
    assert max(np.abs(a - b).max() for a, b in zip(model.get_weights(), before)) < 0.1


@pytest.mark.parametrize("loss", ["mse", "binary_crossentropy"])
def test_targets_of_another_layout_are_refused(loss):
    rng = np.random.default_rng(0)
    model = nn.Sequential([nn.Input((4, 4, 3)), nn.Conv2D(3, 1, activation="sigmoid")], seed=0)
    model.compile("sgd", loss)
    x = rng.random((2, 4, 4, 3)).astype(np.float32)
    channels_first = np.transpose(x, (0, 3, 1, 2))  # the right number of values, scrambled if reshaped
    with pytest.raises(ValueError, match=r"\(2, 4, 4, 3\).*got \(2, 3, 4, 4\)"):
        model.evaluate(x, channels_first)


@pytest.mark.parametrize("cls", [MeanSquaredError, BinaryCrossentropy])
def test_targets_differing_only_in_axes_of_one_are_reshaped(cls):
    rng = np.random.default_rng(0)
    flat = rng.random(5).round()
    np.testing.assert_array_equal(cls().check_targets(flat, 5, (1,)), flat[:, None])
    images = rng.random((2, 1, 3, 3)).round()
    np.testing.assert_array_equal(cls().check_targets(images, 2, (3, 3, 1)), images.reshape(2, 3, 3, 1))
    with pytest.raises(ValueError, match=r"\(2, 3, 2\).*got \(2, 2, 3\)"):
        cls().check_targets(rng.random((2, 2, 3)).round(), 2, (3, 2))


@pytest.mark.parametrize("targets", [np.eye(3)[[0, 1, 2, 0]].astype(int).astype(str),
                                     np.eye(3)[[0, 1, 2, 0]].astype(int).astype("S1"),
                                     np.eye(3)[[0, 1, 2, 0]] + 1j,
                                     np.array([[1, 0, None]] * 4, object)],
                         ids=["str", "bytes", "complex", "object"])
def test_categorical_targets_must_hold_real_numbers(targets):
    model = nn.Sequential([nn.Input((4,)), nn.Dense(3, activation="softmax")], seed=0)
    model.compile("sgd", "categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32)
    with pytest.raises(TypeError, match="real numbers"):
        model.evaluate(x, targets)
    with pytest.raises(TypeError, match="real numbers"):
        CategoricalCrossentropy().check_targets(targets, 4, (3,))


def test_kl_term_of_float32_sampling_is_worked_out_in_float64():
    """exp(z_log_var) overflows float32 at z_log_var of 89; the KL term's sum is float64 anyway."""
    x = np.random.default_rng(0).normal(size=(5, 4))
    inputs = nn.Input((4,))
    z_mean, z_log_var = nn.Dense(3, name="zm")(inputs), nn.Dense(3, name="zv")(inputs)
    model = nn.Model(inputs, nn.Sampling(kl_weight=0.7)([z_mean, z_log_var]), seed=0, dtype="float32")
    layers = {layer.name: layer for layer in model.layers}
    layers["zv"].bias.value[...] = 89.0
    model(x)
    mean = x.astype(np.float32) @ layers["zm"].kernel.value + layers["zm"].bias.value
    log_var = x.astype(np.float32) @ layers["zv"].kernel.value + layers["zv"].bias.value
    mean, log_var = mean.astype(np.float64), log_var.astype(np.float64)
    expected = 0.7 * np.mean(-0.5 * np.sum(1 + log_var - mean ** 2 - np.exp(log_var), axis=1))
    assert np.isfinite(model.losses).all()
    assert model.losses[0] == pytest.approx(expected, rel=1e-4)  # log_var's float32 rounding, times exp


# -- a sigmoid output fused with binary cross-entropy (as Keras on TensorFlow) ----------------------

def softplus_loss(z, y):
    """Keras on TensorFlow's binary cross-entropy of sigmoid(z): the mean of softplus(z) - y z, float64."""
    z = np.asarray(z, np.float64)
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def sigmoid_output_model(kind, activation="sigmoid", backend=None, dtype="float64"):
    """(model, the layer whose bias makes the output's logits, sample shape): a model whose output
    is `activation`'s, made by the layer `kind` names, alone or inside a model."""
    def sequential(*layers, shape=(3,), seed=0):
        return nn.Sequential([nn.Input(shape), *layers], seed=seed, dtype=dtype, backend=backend)

    if kind == "dense":
        last = nn.Dense(2, activation=activation)
        return sequential(nn.Dense(4, activation="tanh"), last), last, (3,)
    if kind == "activation":
        last = nn.Dense(2)
        return sequential(last, nn.Activation(activation or "linear")), last, (3,)
    if kind == "conv2d":  # per-pixel targets, as a VAE's
        last = nn.Conv2D(2, 3, padding="same", activation=activation)
        return sequential(last, shape=(4, 4, 2)), last, (4, 4, 2)
    if kind == "conv2d_transpose":
        last = nn.Conv2DTranspose(1, 3, strides=2, padding="same", activation=activation)
        return sequential(last, shape=(2, 2, 2)), last, (2, 2, 2)
    if kind == "functional":
        inputs, last = nn.Input((3,)), nn.Dense(2, activation=activation)
        model = nn.Model(inputs, last(nn.Dense(4, activation="tanh")(inputs)), seed=0, dtype=dtype, backend=backend)
        return model, last, (3,)
    if kind == "decoder_in_functional":  # a6's VAE: a Sequential decoder is the functional model's output
        last = nn.Conv2D(1, 3, padding="same", activation=activation)
        decoder = sequential(nn.Dense(8, activation="relu"), nn.Reshape((2, 2, 2)), last, seed=1)
        inputs = nn.Input((3,))
        return nn.Model(inputs, decoder(nn.Dense(3)(inputs)), seed=0, dtype=dtype, backend=backend), last, (3,)
    if kind == "functional_in_sequential":
        inner_inputs, last = nn.Input((3,)), nn.Dense(2, activation=activation)
        inner = nn.Model(inner_inputs, last(inner_inputs), seed=1, dtype=dtype, backend=backend)
        return sequential(nn.Dense(3, activation="tanh"), inner), last, (3,)
    raise AssertionError(kind)


SIGMOID_KINDS = ["dense", "activation", "conv2d", "conv2d_transpose", "functional", "decoder_in_functional",
                 "functional_in_sequential"]


def _saturated(kind, backend, dtype="float64"):
    """A sigmoid-output model (sigmoid_output_model) whose output bias is moved by +-20, so that
    some outputs saturate on the wrong side of their targets (p < 1e-7 for a target of 1, or
    p > 1 - 1e-7 for 0); its inputs, targets (0, 1 and soft ones), and its logits' twin (the same
    layers and weights with a linear output)."""
    rng = np.random.default_rng(0)
    model, last, shape = sigmoid_output_model(kind, backend=backend, dtype=dtype)
    x = rng.standard_normal((4, *shape))
    out_shape = model.predict(x[:1]).shape[1:]  # (builds it)
    last.bias.value[...] += np.where(np.arange(last.bias.value.size) % 2 == 0, -20.0, 20.0)
    y = rng.choice([0.0, 1.0, 0.3], size=(4, *out_shape))
    twin, _, _ = sigmoid_output_model(kind, activation=None, backend=backend, dtype=dtype)
    twin.predict(x[:1])
    twin.set_weights(model.get_weights())
    return model, x, y, twin


@pytest.mark.parametrize("kind", SIGMOID_KINDS)
def test_binary_cross_entropy_of_a_sigmoid_output_starts_from_its_logits(backend, kind):
    """As Keras on TensorFlow: loss softplus(z) - y z of the sigmoid's input z (not the clipped loss
    of p), its gradient the slope of that loss even where p saturated; predictions are sigmoid(z),
    accuracy reads them (p > 0.5); fit and evaluate log the same loss for the same weights."""
    model, x, y, twin = _saturated(kind, backend)
    model.compile(nn.SGD(1.0), "binary_crossentropy", metrics=["accuracy"])
    z = twin.predict(x)
    assert (np.abs(z) > 17).any()  # saturated outputs: p = sigmoid(z) within 1e-7 of 0 or 1
    np.testing.assert_allclose(model.predict(x), 1 / (1 + np.exp(-z)), rtol=1e-12)
    expected = [softplus_loss(z, y), np.mean((z > 0) == (y > 0.5))]
    np.testing.assert_allclose(model.evaluate(x, y), expected, rtol=1e-10)
    numeric = numeric_grads(model, lambda: model.evaluate(x, y, batch_size=len(x))[0])
    before = model.get_weights()
    np.testing.assert_allclose(model.train_on_batch(x, y), expected, rtol=1e-10)  # the loss before the step
    for b, a, e in zip(before, model.get_weights(), numeric):
        np.testing.assert_allclose(b - a, e, atol=1e-8)
    model.set_weights(before)
    model.compile(nn.SGD(0.0), "binary_crossentropy", metrics=["accuracy"])
    logged = model.fit(x, y, batch_size=len(x), verbose=0).history
    np.testing.assert_allclose([logged["loss"][0], logged["accuracy"][0]], expected, rtol=1e-10)
    assert model._fused() if isinstance(model, nn.Sequential) else model._fused_outputs


def test_fused_binary_cross_entropy_is_the_same_on_every_backend(dtype):
    from conftest import ready_backends

    results = {}
    for backend in ready_backends():
        model, x, y, _ = _saturated("decoder_in_functional", backend, dtype)
        model.compile(nn.Adam(0.01), "binary_crossentropy")
        losses = [model.train_on_batch(x, y) for _ in range(3)]
        results[backend] = losses, model.get_weights()
    tol = 1e-10 if dtype is np.float64 else 2e-5
    reference = results.pop("numpy")
    for losses, weights in results.values():
        np.testing.assert_allclose(losses, reference[0], rtol=tol)
        for a, b in zip(weights, reference[1]):
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_a_sigmoid_output_another_layer_reads_is_not_fused(backend):
    """As for softmax: the loss's gradient would have to meet the other layer's at p, so the
    output keeps Keras' clipped loss (no gradient where clipped)."""
    inputs = nn.Input((2,))
    probs = nn.Dense(1, activation="sigmoid", name="p")(inputs)
    model = nn.Model(inputs, [probs, nn.Dense(1, name="q")(probs)], seed=0, dtype="float64", backend=backend)
    model.compile(nn.SGD(0.1), ["binary_crossentropy", "mse"])
    layer = model.layers[1] if model.layers[1].name == "p" else model.layers[0]
    layer.kernel.value[...] = 0.0
    layer.bias.value[...] = -18.0  # p = 1.5e-8, clipped to 1e-7
    x, y = np.ones((4, 2)), [np.ones((4, 1)), np.zeros((4, 1))]
    assert not model._fused_outputs
    logs = model.train_on_batch(x, y, return_dict=True)
    assert logs["p_loss"] == pytest.approx(-np.log(EPSILON), rel=1e-12)
    assert abs(layer.bias.value[0] + 18.0) < 1e-6  # only q's gradient through the saturated sigmoid


def test_outputs_that_are_no_sigmoids_keep_the_clipped_binary_cross_entropy(backend):
    for activation in (None, "relu", "tanh"):
        model, _, _ = sigmoid_output_model("dense", activation=activation, backend=backend)
        model.compile("sgd", "binary_crossentropy")
        assert not model._fused()
    model, _, _ = sigmoid_output_model("dense", backend=backend)
    model.compile("sgd", nn.BinaryCrossentropy(from_logits=True))  # outputs taken as logits as they are
    assert not model._fused()


# --- losses and layers of one's own (fastdl has no automatic differentiation) ------------------

class _MeanAbsoluteError(nn.Loss):
    """A loss of one's own, written as the README shows: forward and backward only."""

    def forward(self, y_pred, y_true):
        self._grad = np.sign(y_pred - y_true) / y_pred.size
        return float(np.mean(np.abs(y_pred - y_true)))

    def backward(self):
        return self._grad


def test_a_loss_of_ones_own_needs_only_forward_and_backward():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 3)), rng.normal(size=32)
    model = nn.Sequential([nn.Input((3,)), nn.Dense(1)], seed=0, dtype="float64")
    model.compile(nn.SGD(0.05), _MeanAbsoluteError())
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=5, batch_size=8, verbose=0)
    assert model.evaluate(x, y, verbose=0) < before
    assert model.evaluate(x, y, verbose=0) == pytest.approx(np.mean(np.abs(model.predict(x, verbose=0)[:, 0] - y)))


def test_a_function_as_loss_says_how_to_write_one():
    def common_sense(y_true, y_pred):
        return ((y_pred - y_true + 6) % 12 - 6) ** 2

    model = nn.Sequential([nn.Input((3,)), nn.Dense(1)])
    with pytest.raises(TypeError, match=r"'common_sense' is a function: .*subclass of nn\.Loss.*CyclicMSE"):
        model.compile("sgd", common_sense)


def test_a_loss_without_backward_says_what_is_missing():
    class Half(nn.Loss):
        def forward(self, y_pred, y_true):
            return float(np.mean((y_pred - y_true) ** 2))

    model = nn.Sequential([nn.Input((3,)), nn.Dense(1)], seed=0)
    model.compile("sgd", Half())
    with pytest.raises(NotImplementedError, match=r"Half gives no backward\(\).*d loss / d y_pred"):
        model.fit(np.ones((4, 3)), np.ones(4), epochs=1, verbose=0)


def test_a_loss_called_as_keras_calls_one():
    assert MeanSquaredError()([1.0, 1.0], [[1.0], [3.0]]) == pytest.approx(2.0)
    assert nn.CyclicMSE(12)([[0.5]], [[11.5]]) == pytest.approx(1.0)  # 11:30 for 0:30 is an hour off
    probabilities = np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]], np.float32)
    assert SparseCategoricalCrossentropy()([0, 1], probabilities) == pytest.approx(
        -(np.log(0.5) + np.log(0.8)) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="targets must have shape"):
        MeanSquaredError()(np.ones((2, 3)), np.ones((2, 1)))


def test_a_layer_without_backward_says_what_is_missing():
    class Doubled(nn.Layer):  # a Keras Lambda(lambda x: 2 * x), forward only
        def forward(self, x, training=False):
            return 2 * x

    model = nn.Sequential([nn.Input((3,)), nn.Dense(4), Doubled(name="doubled"), nn.Dense(1)], seed=0)
    model.compile("sgd", "mse")
    assert model.predict(np.ones((2, 3)), verbose=0).shape == (2, 1)
    with pytest.raises(NotImplementedError, match=r"Doubled \(doubled\) gives no backward\(dout\): .*automatic"):
        model.fit(np.ones((4, 3)), np.ones(4), epochs=1, verbose=0)


@pytest.mark.parametrize("name", ["Lambda", "to_categorical", "load_model", "TensorBoard"])
def test_keras_names_fastdl_lacks_say_what_to_write_instead(name):
    with pytest.raises(AttributeError, match=f"fastdl.nn has no {name}; instead: "):
        getattr(nn, name)
    with pytest.raises(AttributeError, match="no attribute 'Nonsense'"):
        nn.Nonsense
