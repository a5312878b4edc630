"""Dense, Conv2D and Conv2DTranspose with the activations whose gradient needs their input (swish,
gelu, mish, hard_swish): the layer keeps its pre-activation in training, its gradients match finite
differences on every backend, and a model trains to the same weights on each."""

import numpy as np
import pytest

import naive
from fastdl import nn

NAMES = ["swish", "gelu", "mish", "hard_swish"]


def _layer(kind, activation):
    if kind == "dense":
        return nn.Dense(3, activation=activation, bias_initializer=nn.initializers.Constant(0.1)), (4,)
    make = nn.Conv2D if kind == "conv" else nn.Conv2DTranspose
    return make(2, 2, padding="same", activation=activation, bias_initializer=nn.initializers.Constant(0.1)), (3, 3, 2)


@pytest.mark.parametrize("kind", ["dense", "conv", "transpose"])
@pytest.mark.parametrize("activation", NAMES)
def test_layer_gradients_match_finite_differences(kind, activation, backend, rng):
    layer, input_shape = _layer(kind, activation)
    layer.backend = backend
    layer.build(input_shape, np.random.default_rng(0), np.float64)
    x = rng.standard_normal((2, *input_shape)) * 2  # both sides of hard_swish's kinks at +-3
    weights = rng.standard_normal((2, *layer.compute_output_shape(input_shape)))

    def loss():
        return float((layer.forward(x, training=False) * weights).sum())

    out = layer.forward(x, training=True)
    np.testing.assert_allclose(out, layer.forward(x), rtol=1e-15)  # inference gives the same output
    layer.forward(x, training=True)
    dx = layer.backward(weights.copy())
    np.testing.assert_allclose(dx, naive.numeric_grad(loss, x), rtol=1e-5, atol=1e-7)
    for name, p in layer.parameters():
        np.testing.assert_allclose(p.grad, naive.numeric_grad(loss, p.value), rtol=1e-5, atol=1e-7, err_msg=name)


def _trained(backend, dtype, activation):
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((8, 4, 4, 1)), rng.integers(0, 3, 8)
    model = nn.Sequential([
        nn.Input((4, 4, 1)), nn.Conv2D(2, 3, activation=activation), nn.Flatten(),
        nn.Dense(4, activation=activation), nn.Dense(3, activation="softmax"),
    ], seed=1, dtype=dtype, backend=backend)
    model.compile(nn.SGD(0.1), "sparse_categorical_crossentropy")
    history = model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    return history.history["loss"], model.get_weights()


@pytest.mark.parametrize("activation", NAMES)
def test_a_model_trains_alike_on_every_backend(activation, backend, dtype):
    losses, weights = _trained(backend, dtype, activation)
    reference_losses, reference = _trained("numpy", dtype, activation)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(losses, reference_losses, rtol=tol, atol=tol)
    for got, want in zip(weights, reference):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.cuda
@pytest.mark.parametrize("activation", ["swish", "gelu"])
def test_a_model_trains_on_cuda_as_on_the_cpu(cuda_backend, activation):
    losses, weights = _trained("cuda", np.float64, activation)
    reference_losses, reference = _trained("numpy", np.float64, activation)
    np.testing.assert_allclose(losses, reference_losses, rtol=1e-10)
    for got, want in zip(weights, reference):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("first", [lambda: nn.Activation("gelu"), lambda: nn.Dense(6, activation="swish")])
def test_a_model_keeps_no_batch_of_the_callers_after_its_calls(first):
    """The pre-activation a training step keeps is dropped with the pass, as its input and output
    are: an Activation first in a model would otherwise hold the caller's training batch."""
    model = nn.Sequential([nn.Input((5,)), first(), nn.Dense(3)], seed=0)
    model.compile("sgd", "mse")
    x = np.random.default_rng(0).standard_normal((8, 5)).astype(np.float32)
    model.train_on_batch(x, np.zeros((8, 3), np.float32))
    model.predict(x[:2])
    assert model.layers[0]._pre is None


@pytest.mark.parametrize("activation", NAMES)
def test_inference_fuses_the_activation_with_the_bias_and_matches_training(activation):
    layer, input_shape = _layer("dense", activation)
    layer.build(input_shape, np.random.default_rng(0), np.float32)
    x = np.random.default_rng(1).standard_normal((4, *input_shape)).astype(np.float32)
    np.testing.assert_array_equal(layer.forward(x, training=False), layer.forward(x, training=True))
