"""Findings of a review of the layers: an Activation layer kept an inference batch (as its
logits), the image layers' shape errors, Dropout's backward allocating every step."""

import tracemalloc

import numpy as np
import pytest

from conftest import CPU_BACKENDS, skip_unless_available
from fastdl import nn
from fastdl.nn.layers_extra import BatchNormalization


@pytest.fixture(params=[*CPU_BACKENDS, "cuda"])
def any_backend(request):
    """Each backend, the cuda one included (on numba's simulator where no device is present)."""
    skip_unless_available(request.param)
    return request.param


def _rows_of(array):
    return None if array is None else array.shape[0]


# -- an inference pass leaves no logits on an Activation layer ---------------------------------

@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
@pytest.mark.parametrize("where", ["first", "last"])
def test_activation_keeps_no_inference_batch(any_backend, dtype, activation, where):
    units = 3
    if where == "first":
        layers = [nn.Activation(activation, input_shape=(4,)), nn.Dense(units)]
    else:
        layers = [nn.Dense(units, input_shape=(4,)), nn.Activation(activation)]
    model = nn.Sequential(layers, seed=0, backend=any_backend, dtype=dtype)
    act = model.layers[0 if where == "first" else 1]
    x = np.random.default_rng(0).standard_normal((7, 4)).astype(dtype)
    model(x)
    model.predict(x, batch_size=3)
    assert act._logits is None  # held X itself (first) or the Dense output (last)
    # Training still keeps a step's logits (for a loss fused with the activation).
    model.compile("sgd", "mse")
    model.train_on_batch(x[:5], np.zeros((5, units), dtype))
    assert _rows_of(act._logits) == 5
    model(x)
    assert _rows_of(act._logits) == 5  # the training step's, not this call's


def _loss_by_hand(loss, probabilities, y):
    p = np.clip(probabilities.astype(np.float64), 1e-12, 1 - 1e-12)
    if loss == "sparse_categorical_crossentropy":
        return -np.mean(np.log(p[np.arange(len(y)), y]))
    return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))


def _activation_model(kind, loss, backend, dtype):
    """A model whose output layer is an Activation fused with its loss (softmax + sparse
    categorical cross-entropy, sigmoid + binary cross-entropy)."""
    units, activation = (3, "softmax") if loss == "sparse_categorical_crossentropy" else (1, "sigmoid")
    if kind == "sequential":
        model = nn.Sequential([nn.Dense(units, input_shape=(4,)), nn.Activation(activation)], seed=0,
                              backend=backend, dtype=dtype)
    elif kind == "nested":  # the fused layer is the last of a model inside the model
        inner = nn.Sequential([nn.Dense(units, input_shape=(4,)), nn.Activation(activation)], seed=0,
                              backend=backend, dtype=dtype)
        model = nn.Sequential([nn.Input((4,)), inner], seed=0, backend=backend, dtype=dtype)
    else:
        inputs = nn.Input((4,))
        outputs = nn.Activation(activation)(nn.Dense(units)(inputs))
        model = nn.Model(inputs, outputs, seed=0, backend=backend, dtype=dtype)
    model.compile("sgd", loss)
    return model


@pytest.mark.parametrize("kind", ["sequential", "nested", "functional"])
@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", "binary_crossentropy"])
def test_fused_activation_losses_read_each_pass_logits(any_backend, dtype, kind, loss):
    # evaluate and fit's validation read the logits each inference pass records (the layer keeps
    # none of them): the loss of the probabilities predict gives, batch by uneven batch.
    rng = np.random.default_rng(1)
    x = rng.standard_normal((11, 4)).astype(dtype)
    y = rng.integers(0, 3, 11) if loss == "sparse_categorical_crossentropy" else rng.integers(0, 2, (11, 1))
    model = _activation_model(kind, loss, any_backend, dtype)
    tol = {np.float32: 1e-5, np.float64: 1e-10}[dtype]
    for _ in range(2):  # before training and after
        expected = _loss_by_hand(loss, model.predict(x), y)
        np.testing.assert_allclose(model.evaluate(x, y, batch_size=4), expected, rtol=tol)
        np.testing.assert_allclose(model.test_on_batch(x, y), expected, rtol=tol)
        history = model.fit(x[:8], y[:8], epochs=1, batch_size=4, validation_data=(x, y), shuffle=False)
        np.testing.assert_allclose(history.history["val_loss"][-1], _loss_by_hand(loss, model.predict(x), y), rtol=tol)


# -- the image layers' shape errors ------------------------------------------------------------

@pytest.mark.parametrize("layer", [lambda: nn.Conv2D(2, 3), nn.UpSampling2D, lambda: nn.Conv2DTranspose(2, 3),
                                   nn.MaxPool2D], ids=["Conv2D", "UpSampling2D", "Conv2DTranspose", "MaxPool2D"])
def test_image_layers_print_the_shape_they_got(layer):
    # Conv2D and UpSampling2D printed a nested tuple, "got (batch, (28, 28))".
    expected = r"expects images of shape \(batch, height, width, channels\), got \(batch, 28, 28\)$"
    with pytest.raises(ValueError, match=expected):
        layer().compute_output_shape((28, 28))
    with pytest.raises(ValueError, match=expected):
        nn.Sequential([nn.Input((28, 28)), layer()]).build()


# -- Dropout's backward pass writes into a buffer reused from step to step -----------------------

def test_dropout_backward_reuses_its_buffer(backend, dtype):
    model = nn.Sequential([nn.Input((6, 5)), nn.Dropout(0.5)], seed=0, backend=backend, dtype=dtype)
    layer = model.layers[0]
    rng = np.random.default_rng(2)
    x = rng.standard_normal((64, 6, 5)).astype(dtype)  # big enough that a tracer's own allocations stay below it
    layer.forward(x, training=True)
    mask = layer._mask.copy()
    grads = []
    for seed in (3, 4):
        dout = np.random.default_rng(seed).standard_normal(x.shape).astype(dtype)
        kept = dout.copy()
        dx = layer.backward(dout)
        np.testing.assert_array_equal(dout, kept)  # the layer above's gradient, unwritten
        assert dx.dtype == dtype and not np.shares_memory(dx, dout) and not np.shares_memory(dx, layer._mask)
        np.testing.assert_array_equal(dx, kept * mask)
        grads.append(dx)
    assert grads[0] is grads[1]
    tracemalloc.start()
    try:
        layer.backward(dout)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < x.nbytes  # no new gradient array


def test_dropout_trains_as_before(backend, dtype):
    # The gradient below a Dropout is dout * mask, so a Dense under it learns from it as it did.
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((16, 4)).astype(dtype), rng.standard_normal((16, 2)).astype(dtype)
    model = nn.Sequential([nn.Input((4,)), nn.Dense(8), nn.Dropout(0.25, seed=1), nn.Dense(2)], seed=0,
                          backend=backend, dtype=dtype)
    model.compile("sgd", "mse")
    model.train_on_batch(x, y)
    dense, dropout, top = model.layers
    dx_top = top._buffers["dx"].copy()
    ref_kernel = dense._x.astype(np.float64).T @ (dx_top * dropout._mask).astype(np.float64)
    tol = {np.float32: 1e-4, np.float64: 1e-10}[dtype]
    np.testing.assert_allclose(dense.kernel.grad, ref_kernel, rtol=tol, atol=tol)


# -- the clean-ups keep what they served -------------------------------------------------------

def test_batch_norm_counts_and_mse_targets(rng):
    layer = BatchNormalization()
    layer.build((3, 5), rng)
    assert (layer.count_params(), layer.count_non_trainable_params()) == (20, 10)
    y = np.arange(6.0)
    np.testing.assert_array_equal(nn.MeanSquaredError().check_targets(y, 6, (1,)), y[:, None])
    with pytest.raises(ValueError, match="NaN or infinity"):
        nn.MeanSquaredError().check_targets(np.array([0.0, np.nan]), 2, (1,))


@pytest.mark.parametrize("cls, kernel_shape, out_shape",
                         [(nn.Conv2D, (3, 2, 2, 4), (3, 6, 4)), (nn.Conv2DTranspose, (3, 2, 4, 2), (10, 6, 4))])
def test_convolutions_keep_their_kernel_layouts_and_geometry(backend, dtype, cls, kernel_shape, out_shape):
    layer = cls(4, (3, 2), strides=(2, 1), padding="same", activation="relu", backend=backend)
    model = nn.Sequential([nn.Input((5, 6, 2)), layer], seed=0, backend=backend, dtype=dtype)
    model.build()
    assert layer.kernel.value.shape == kernel_shape and layer.output_shape == out_shape
    assert model.predict(np.ones((2, 5, 6, 2), dtype)).shape == (2, *out_shape)
