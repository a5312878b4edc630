"""nn.Rescaling: x * scale + offset in the layer's dtype (the product rounded, then the sum, as
Keras), one number or one per channel, its gradient dout * scale, on every backend and the cuda
backend (simulator), and bad coefficients refused."""

import numpy as np
import pytest

from fastdl import nn


def _expected(x, scale, offset, dtype):
    return (x.astype(dtype) * np.asarray(scale, dtype)).astype(dtype) + np.asarray(offset, dtype)


@pytest.mark.parametrize("scale, offset", [(1 / 255, 0.0), (1 / 127.5, -1.0), ([0.5, 2.0, -1.0], [0.0, 1.0, 0.25])])
def test_rescaling_matches_keras_arithmetic(backend, dtype, scale, offset):
    x = np.random.default_rng(0).integers(0, 256, (4, 5, 5, 3)).astype(dtype)
    model = nn.Sequential([nn.Input((5, 5, 3)), nn.Rescaling(scale, offset)], backend=backend, dtype=dtype)
    np.testing.assert_array_equal(model.predict(x), _expected(x, scale, offset, dtype))
    layer = nn.Rescaling(scale, offset)  # alone, so that its input gradient is wanted
    layer(x.astype(dtype), training=True)
    dout = np.random.default_rng(1).normal(size=x.shape).astype(dtype)
    np.testing.assert_array_equal(layer.backward(dout), dout * np.asarray(scale, dtype))


def test_rescaling_trains_before_and_after_other_layers(backend):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (16, 4)).astype(np.float32), rng.normal(size=(16, 1))
    model = nn.Sequential([nn.Input((4,)), nn.Rescaling(1 / 255), nn.Dense(3), nn.Rescaling(2.0, 0.5), nn.Dense(1)],
                          seed=0, backend=backend)
    model.compile(nn.SGD(0.01), "mse")
    history = model.fit(x, y, epochs=5, batch_size=16)
    assert history.history["loss"][-1] < history.history["loss"][0]


@pytest.mark.parametrize("kwargs, error, words", [
    ({"scale": "big"}, TypeError, "scale must be a number"),
    ({"scale": [[1.0]]}, TypeError, "scale must be a number"),
    ({"scale": np.nan}, ValueError, "scale must be finite"),
    ({"scale": 1.0, "offset": np.inf}, ValueError, "offset must be finite"),
])
def test_bad_coefficients_are_refused(kwargs, error, words):
    with pytest.raises(error, match=words):
        nn.Rescaling(**kwargs)


def test_per_channel_coefficients_must_match_the_channels():
    with pytest.raises(ValueError, match="scale has 2 values, but its inputs \\(5, 5, 3\\) have 3 channels"):
        nn.Sequential([nn.Input((5, 5, 3)), nn.Rescaling([1.0, 2.0])]).predict(np.ones((1, 5, 5, 3)))


@pytest.mark.cuda
def test_rescaling_on_the_device_matches_the_cpu(cuda_backend):
    x = np.random.default_rng(0).integers(0, 256, (2, 3, 3, 2)).astype(np.float32)
    results = []
    for backend in ("numpy", cuda_backend):
        model = nn.Sequential([nn.Input((3, 3, 2)), nn.Rescaling([1 / 255, 0.5], [0.0, -1.0]), nn.Flatten(),
                               nn.Dense(1)], seed=0, backend=backend)
        model.compile(nn.SGD(0.1), "mse")
        model.fit(x, np.ones((2, 1)), epochs=2)
        results.append((model.predict(x), model.get_weights()))
    for cpu, gpu in zip(*[[r[0], *r[1]] for r in results]):
        np.testing.assert_allclose(gpu, cpu, rtol=2e-6, atol=1e-7)
