"""Losses and layers at the edges of their inputs: 1-D outputs given to a loss, a cyclic error far
past 2**53, a batch variance past float32's range, and Dropout seeds numpy refuses."""

import math
import warnings

import numpy as np
import pytest

from fastdl import nn
from fastdl._validation import NonFiniteError
from fastdl.nn.layers_extra import BatchNormalization

# -- losses called on 1-D outputs ----------------------------------------------------------------

REAL_TARGET_LOSSES = [
    (lambda: nn.MeanSquaredError(), [0.0, 1, 2, 3, 4]),
    (lambda: nn.CyclicMSE(3), [0.0, 1, 2, 3, 4]),
    (lambda: nn.BinaryCrossentropy(), [0.0, 1, 1, 0, 1]),
    (lambda: nn.BinaryCrossentropy(from_logits=True), [0.0, 1, 1, 0, 1]),
]


@pytest.mark.parametrize("make, y_true", REAL_TARGET_LOSSES)
def test_loss_takes_one_dimensional_outputs_as_one_column(make, y_true, backend, dtype):
    """As Keras: y_pred (n,) with y_true (n,) is the (n, 1) loss (it failed inside every kernel)."""
    y_true = np.array(y_true)
    y_pred = np.array([0.2, 0.9, 0.6, 0.4, 0.7], dtype)
    flat, column = make(), make()
    flat.backend = column.backend = backend
    value = flat(y_true, y_pred)
    assert value == column(y_true[:, None], y_pred[:, None])
    grad = flat.backward()
    assert grad.shape == (5,) and grad.dtype == dtype
    np.testing.assert_array_equal(grad, column.backward()[:, 0])
    if isinstance(flat, nn.MeanSquaredError) and not isinstance(flat, nn.CyclicMSE):
        assert value == pytest.approx(np.mean((y_pred.astype(np.float64) - y_true) ** 2), rel=1e-6)


@pytest.mark.parametrize("make, y_true", REAL_TARGET_LOSSES)
def test_loss_forward_refuses_targets_that_do_not_fit(make, y_true, backend):
    """forward() called directly: a clear ValueError naming both shapes, before any kernel."""
    loss = make()
    loss.backend = backend
    y_pred = np.full((5, 2), 0.5)
    for targets in (np.zeros(4), np.zeros((2, 5)), np.zeros((5, 3))):
        with pytest.raises(ValueError, match=rf"targets of shape \({targets.shape[0]},.*do not fit outputs of "
                                             r"shape \(5, 2\)"):
            loss.forward(y_pred, targets)
    assert loss.forward(y_pred, np.full((5, 2, 1), 0.5)) == loss.forward(y_pred, np.full((5, 2), 0.5))


def test_sparse_cross_entropy_on_one_dimensional_outputs_says_why():
    """Class codes need outputs with a class axis (an IndexError before)."""
    with pytest.raises(ValueError, match=r"class axis.*\(5,\)"):
        nn.SparseCategoricalCrossentropy()(np.zeros(5, int), np.full(5, 0.2))
    codes = np.array([0, 2, 1])  # the codes keep their (n,) shape
    assert nn.SparseCategoricalCrossentropy()(codes, np.full((3, 3), 1 / 3)) == pytest.approx(math.log(3))


# -- CyclicMSE far from the circle ---------------------------------------------------------------

@pytest.mark.parametrize("error", [1e20, -1e20, 3.0 * 2**60 + 2**10, 3e38])
def test_cyclic_mse_of_a_huge_error(error, backend, dtype):
    """The error round the dial of an error past 2**53 (e + period / 2 rounded it to a multiple of
    period / 2: 4 instead of 16 for 1e20 on a 12-hour dial), and its gradient."""
    loss = nn.CyclicMSE(12)
    loss.backend = backend
    y_pred = np.array([[error]], dtype)
    wrapped = math.remainder(float(y_pred[0, 0]), 12)  # exact, in [-6, 6] (no ties here)
    assert loss(np.zeros((1, 1)), y_pred) == wrapped ** 2
    assert loss.backward()[0, 0] == dtype(2 * wrapped)


def test_cyclic_mse_of_normal_errors_is_unchanged(backend, dtype, rng):
    """Errors within a period wrap bit for bit as before (fmod leaves them as they are)."""
    period = 2 * math.pi
    y_true = rng.uniform(-10, 10, (40, 3))
    y_pred = (y_true + rng.uniform(-0.999, 0.999, y_true.shape) * period).astype(dtype)
    error = y_pred.astype(np.float64) - y_true
    wrapped = np.mod(error + period / 2, period) - period / 2  # the formula before the fix
    loss = nn.CyclicMSE(period)
    loss.backend = backend
    assert loss(y_true, y_pred) == np.sum(wrapped * wrapped) / y_pred.size
    np.testing.assert_array_equal(loss.backward(), (2.0 * wrapped * (1.0 / y_pred.size)).astype(dtype))


@pytest.mark.cuda
def test_cyclic_mse_of_a_huge_error_on_cuda(cuda_backend):
    from numba import cuda

    from fastdl.kernels.gpu import loss as gpu_loss

    y_pred = np.array([[1e20, -1e20, 0.5]])
    grad, row_loss = cuda.device_array((1, 3)), cuda.device_array(1)
    gpu_loss.squared_error(cuda.to_device(y_pred), cuda.to_device(np.zeros((1, 3))), 12.0, 1.0, grad, row_loss, 1)
    np.testing.assert_array_equal(grad.copy_to_host(), [[8.0, -8.0, 1.0]])
    assert row_loss.copy_to_host()[0] == 16 + 16 + 0.25


# -- BatchNormalization of a channel past float32's range ----------------------------------------

# Channel 0 spreads past float32's variance range (|x - mean| > ~1.8e19), channel 1 is ordinary.
WIDE = np.array([[3e19, 0.0], [-3e19, 1.0], [1e19, 0.5]])


def _bn(backend, dtype, rng):
    layer = BatchNormalization(backend=backend)
    layer.build((2,), rng, dtype)
    layer.gamma.value[...] = [1.5, 2.0]
    layer.beta.value[...] = [0.25, -1.0]
    return layer


def test_batch_norm_channel_past_float32_range(backend, dtype, rng):
    """Normalised to order one (it was beta: 1 / sqrt(var) of a variance cast to inf), with its
    gradients, and no overflow warning. The float32 moving variance cannot hold that variance: it
    goes to inf, for fit's guard to stop on (a clipped one would mislead every later inference)."""
    x = WIDE.astype(dtype)
    layer, reference = _bn(backend, dtype, rng), _bn("numpy", np.float64, rng)
    dout = np.array([[1.0, -2.0], [0.5, 1.0], [-1.0, 0.25]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = layer.forward(x, training=True)
        dx = layer.backward(dout.astype(dtype))
    expected = reference.forward(x.astype(np.float64), training=True)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert abs(out[0, 0] - 0.25) > 1
    np.testing.assert_allclose(dx, reference.backward(dout), rtol=1e-5, atol=1e-30)
    np.testing.assert_allclose(layer.gamma.grad, reference.gamma.grad, rtol=1e-5)
    np.testing.assert_allclose(layer.beta.grad, reference.beta.grad, rtol=1e-6)
    assert layer.moving_variance.dtype == dtype and np.isfinite(layer.moving_variance[1])
    assert np.isfinite(layer.moving_variance[0]) == (dtype == np.float64)


def test_fit_stops_on_a_variance_its_dtype_cannot_hold():
    """A float32 channel past float32's variance range, or a float64 one past float64's: fit and
    train_on_batch stop (NonFiniteError) with the moving statistics put back, and train_on_batch
    takes no step (the weights, Adam's slots and the step count as they were)."""
    y = np.array([[1.0], [0.0], [1.0]])
    for dtype, scale in (("float32", 1.0), ("float64", 1e140)):
        model = nn.Sequential([nn.Input((2,)), BatchNormalization(), nn.Dense(1)], seed=0, dtype=dtype)
        model.compile("adam", "mse")
        model.train_on_batch(np.array([[0.1, 0.2], [0.3, -0.1], [0.5, 0.0]]), y)  # slots to keep
        before, iterations = model.get_weights(), model.optimizer.iterations
        variance = model.layers[0].moving_variance.copy()
        slots = [np.array(array) for array in model.optimizer.state_arrays()]
        with pytest.raises(NonFiniteError):
            model.fit(WIDE * scale, y, epochs=1, batch_size=3, verbose=0)
        np.testing.assert_array_equal(model.layers[0].moving_variance, variance)
        with pytest.raises(NonFiniteError, match="train_on_batch: .*moving statistics.*the step was not taken"):
            model.train_on_batch(WIDE * scale, y)
        for now, then in zip(model.get_weights(), before, strict=True):
            np.testing.assert_array_equal(now, then)
        for now, then in zip(model.optimizer.state_arrays(), slots, strict=True):
            np.testing.assert_array_equal(now, then)
        assert model.optimizer.iterations == iterations


@pytest.mark.cuda
def test_batch_norm_channel_past_float32_range_on_cuda(cuda_backend, rng):
    x = WIDE.astype(np.float32)
    models = [nn.Sequential([nn.Input((2,)), BatchNormalization()], seed=0, backend=name) for name in
              ("numpy", cuda_backend)]
    outs = []
    for model in models:
        model.build()
        outs.append(np.asarray(model.forward(x, training=True).copy_to_host() if model.on_device
                               else model.forward(x, training=True)))
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-6)
    assert abs(outs[1][0, 0]) > 0.5
    np.testing.assert_array_equal(models[1].layers[0].moving_variance, models[0].layers[0].moving_variance)


# -- Dropout's seed ------------------------------------------------------------------------------

@pytest.mark.parametrize("seed, error", [(-1, ValueError), (1.5, TypeError), ("7", TypeError)])
def test_dropout_seed_numpy_refuses_names_the_seed(seed, error):
    with pytest.raises(error, match=r"seed must be None, an int >= 0.*got " + repr(seed).replace(".", r"\.")):
        nn.Dropout(0.5, seed=seed)
    with pytest.raises(error, match="seed must be"):
        nn.Sequential([nn.Input((2,))], seed=seed)


def test_dropout_seed_still_seeds_its_masks():
    x = np.ones((4, 6))
    first, second = nn.Dropout(0.5, seed=3), nn.Dropout(0.5, seed=np.random.SeedSequence(3))
    np.testing.assert_array_equal(first.forward(x, training=True), second.forward(x, training=True))
    from fastdl.nn.model import seeded_generator  # the old import still works

    assert seeded_generator(3).random() == np.random.default_rng(3).random()

