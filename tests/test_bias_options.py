"""bias_initializer and bias_regularizer of Dense, Conv2D and Conv2DTranspose (Keras 3's options):
the bias's first values, its penalty in the loss and its gradient in a step, on every backend."""

import numpy as np
import pytest

from fastdl import nn


def _layer(kind, **options):
    if kind == "dense":
        return nn.Input((5,)), nn.Dense(3, **options)
    make = nn.Conv2D if kind == "conv" else nn.Conv2DTranspose
    return nn.Input((4, 4, 2)), make(3, 2, padding="same", **options)


def _model(kind, backend, dtype, seed=0, **options):
    first, layer = _layer(kind, **options)
    layers = [first, layer] if kind == "dense" else [first, layer, nn.Flatten()]
    model = nn.Sequential(layers, seed=seed, dtype=dtype, backend=backend)
    model.build()
    return model, layer


def _data(kind, model, rng):
    x = rng.standard_normal((6, *model.layers[0].input_shape))
    return x, rng.standard_normal((6, *model.output_shape))


KINDS = ["dense", "conv", "transpose"]


@pytest.mark.parametrize("kind", KINDS)
def test_the_default_bias_is_zeros_and_leaves_the_kernel_as_it_was(kind, dtype):
    plain, layer = _model(kind, "numpy", dtype)
    named, named_layer = _model(kind, "numpy", dtype, bias_initializer="zeros")
    np.testing.assert_array_equal(layer.bias.value, np.zeros(3, dtype))
    np.testing.assert_array_equal(named_layer.kernel.value, layer.kernel.value)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("initializer, expected", [
    ("ones", np.ones(3)), (nn.initializers.Constant(0.25), np.full(3, 0.25)),
    (lambda shape, rng, dtype: np.arange(shape[0], dtype=dtype), np.arange(3.0)),
])
def test_bias_initializer_sets_the_first_bias(kind, dtype, initializer, expected):
    _, layer = _model(kind, "numpy", dtype, bias_initializer=initializer)
    assert layer.bias.value.dtype == dtype
    np.testing.assert_array_equal(layer.bias.value, expected.astype(dtype))


def test_a_random_bias_is_drawn_after_the_kernel():
    """The kernel keeps the values a model of the same seed had before: the bias draws after it."""
    _, plain = _model("dense", "numpy", np.float64, seed=7)
    _, drawn = _model("dense", "numpy", np.float64, seed=7, bias_initializer="random_normal")
    np.testing.assert_array_equal(drawn.kernel.value, plain.kernel.value)
    assert np.all(drawn.bias.value != 0) and np.abs(drawn.bias.value).max() < 0.05 * 4


@pytest.mark.parametrize("kind", KINDS)
def test_bias_regularizer_adds_its_penalty_and_gradient(kind, backend, dtype, rng):
    """One SGD step with an L1L2 penalty on the bias, against the same step without it plus the
    penalty's hand-written gradient; evaluate's loss carries the penalty."""
    x, y = None, None
    results = {}
    for penalised in (False, True):
        options = {"bias_initializer": nn.initializers.Constant(0.5)}
        if penalised:
            options["bias_regularizer"] = nn.L1L2(l1=0.1, l2=0.2)
        model, layer = _model(kind, backend, dtype, seed=1, **options)
        model.compile(nn.SGD(0.1), "mse")
        if x is None:
            x, y = _data(kind, model, rng)
        before = model.evaluate(x, y, verbose=0)
        model.train_on_batch(x, y)
        results[penalised] = before, layer.kernel.value.copy(), layer.bias.value.copy()
    penalty = 0.1 * 3 * 0.5 + 0.2 * 3 * 0.25
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert results[True][0] == pytest.approx(results[False][0] + penalty, rel=tol)
    np.testing.assert_allclose(results[True][1], results[False][1], rtol=tol, atol=tol)
    step = 0.1 * (0.1 * np.sign(0.5) + 2 * 0.2 * 0.5)
    np.testing.assert_allclose(results[True][2], results[False][2] - step, rtol=tol, atol=tol)


def test_dense_takes_keras_positional_order():
    layer = nn.Dense(4, "relu", True, "he_uniform", "ones", "l2", "l1")
    assert isinstance(layer.kernel_regularizer, nn.L2) and isinstance(layer.bias_regularizer, nn.L1)
    assert isinstance(layer.bias_initializer, nn.initializers.Ones)


@pytest.mark.parametrize("options, match", [
    ({"bias_initializer": "bogus"}, "bias_initializer"),
    ({"bias_regularizer": "l3"}, "bias_regularizer"),
    ({"bias_initializer": lambda shape, rng, dtype: np.zeros(2)}, "bias_initializer returned an array of shape"),
    ({"bias_initializer": "orthogonal"}, "Orthogonal"),
])
def test_bad_bias_options_are_refused_by_name(options, match):
    with pytest.raises(ValueError, match=match):
        _model("dense", "numpy", np.float32, **options)


def test_without_bias_a_bias_regularizer_costs_nothing(rng):
    model, layer = _model("dense", "numpy", np.float64, use_bias=False, bias_regularizer="l2")
    model.compile("sgd", "mse")
    assert model.regularization_loss() == 0.0
    model.train_on_batch(*_data("dense", model, rng))


@pytest.mark.cuda
def test_bias_regularizer_on_cuda_as_on_the_cpu(cuda_backend, rng):
    x, y = None, None
    weights = {}
    for backend in ("numpy", "cuda"):
        model, layer = _model("conv", backend, np.float64, seed=2, bias_initializer="random_uniform",
                              bias_regularizer=nn.L1L2(0.1, 0.2))
        model.compile(nn.SGD(0.1), "mse")
        if x is None:
            x, y = _data("conv", model, rng)
        model.fit(x, y, epochs=2, batch_size=3, verbose=0)
        weights[backend] = model.get_weights()
    for cpu, gpu in zip(weights["numpy"], weights["cuda"]):
        np.testing.assert_allclose(gpu, cpu, rtol=1e-10, atol=1e-12)
