"""The losses of fastdl.nn at layer and model level, on outputs a Keras user's mistakes give: a last
layer that is no softmax (or no sigmoid), targets of another layout or dtype, extreme latent
variances. Gradients are checked against finite differences in float64."""

import numpy as np
import pytest

from fastdl import nn
from fastdl.nn.losses import (BinaryCrossentropy, CategoricalCrossentropy, MeanSquaredError,
                              SparseCategoricalCrossentropy)

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
