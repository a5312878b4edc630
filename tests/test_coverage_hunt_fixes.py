"""What a hunt for code no test ran found: kernel initializers of the user's (float64 values for a
float32 model, the wrong shape, NaN), the name of a layer built outside a model in a shape error,
a .npy file of format 3.0 (sound, not "damaged"), and use_bias=False layers against their ops."""

import sys

import numpy as np
import pytest

from fastdl import nn
from fastdl.data import _files
from fastdl.ops import conv2d


def _normal(shape, rng, dtype):
    return rng.normal(0.0, 0.05, shape)  # float64, whatever the model's dtype


def test_an_initializer_returning_float64_serves_a_float32_model(backend):
    model = nn.Sequential([nn.Input((8, 8, 2)), nn.Conv2D(4, 3, kernel_initializer=_normal), nn.Flatten(),
                           nn.Dense(3, kernel_initializer=_normal)], seed=0, backend=backend, dtype=np.float32)
    expected = _normal((3, 3, 2, 4), np.random.default_rng(0), np.float32)
    model.compile("sgd", "mse")
    model.fit(np.ones((4, 8, 8, 2)), np.ones((4, 3)))
    assert [w.dtype for w in model.get_weights()] == [np.float32] * 4
    assert model.layers[0].kernel.value.shape == expected.shape


@pytest.mark.parametrize("initializer, error, words", [
    (lambda shape, rng, dtype: np.zeros((1, 1)), ValueError, r"returned an array of shape \(1, 1\) for a kernel"),
    (lambda shape, rng, dtype: np.full(shape, np.nan), ValueError, "returned NaN or infinite"),
    (lambda shape, rng, dtype: np.full(shape, 1e300), ValueError, "returned NaN or infinite values \\(in float32\\)"),
    (lambda shape, rng, dtype: np.full(shape, "a"), TypeError, "returned <U1 values"),
])
def test_an_initializer_returning_the_wrong_thing_is_named(initializer, error, words):
    model = nn.Sequential([nn.Input((8, 8, 2)), nn.Conv2D(4, 3, kernel_initializer=initializer, name="c")],
                          dtype=np.float32)
    with pytest.raises(error, match="layer c's kernel_initializer " + words):
        model.predict(np.ones((1, 8, 8, 2)))


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception notes are Python 3.11's")
def test_an_error_inside_an_initializer_says_which_layer_called_it():
    def broken(shape, rng, dtype):
        raise KeyError("oops")

    with pytest.raises(KeyError) as caught:
        nn.Sequential([nn.Input((4,)), nn.Dense(2, kernel_initializer=broken, name="d")]).predict(np.ones((1, 4)))
    assert "raised by layer d's kernel_initializer" in "".join(caught.value.__notes__)


def test_a_layer_built_outside_a_model_is_named_by_its_type():
    dense = nn.Dense(2)
    dense(np.ones((1, 4)))
    with pytest.raises(ValueError, match=r"layer Dense was built for inputs \(4,\), not \(7,\)"):
        dense(nn.Input((7,)))


def test_a_npy_file_of_format_3_is_not_called_damaged(tmp_path):
    path = tmp_path / "v3.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array(f, np.zeros(3, np.dtype([("\u00e9t\u00e9", "<u1")])), version=(3, 0))
    with pytest.raises(ValueError, match="format version 3.0, which fastdl does not read") as caught:
        _files.read_npy_header(path)
    assert "damaged" not in str(caught.value)


def test_layers_without_bias_compute_their_op_alone(backend, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 6, 6, 2)).astype(dtype)
    model = nn.Sequential([nn.Input((6, 6, 2)), nn.Conv2D(4, 3, use_bias=False), nn.Flatten(),
                           nn.Dense(5, use_bias=False)], seed=0, backend=backend, dtype=dtype)
    kernel, weights = model.get_weights()  # no biases
    expected = conv2d(x, kernel, None, backend="numpy").reshape(3, -1) @ weights
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-5 if dtype == np.float32 else 1e-12)
    assert model.count_params() == kernel.size + weights.size


def test_loading_slots_the_optimizer_does_not_keep_warns(tmp_path):
    x, y = np.ones((4, 3)), np.ones((4, 2))
    saved = nn.Sequential([nn.Input((3,)), nn.Dense(2)], seed=0)
    saved.compile(nn.SGD(0.1, momentum=0.9), "mse")
    saved.fit(x, y)
    saved.save(tmp_path / "m.npz")
    plain = nn.Sequential([nn.Input((3,)), nn.Dense(2)], seed=0)
    plain.compile(nn.SGD(0.1), "mse")
    with pytest.warns(UserWarning, match=r"slots \['velocity'\] that this SGD\(lr=0.1\) does not keep"):
        plain.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(plain.get_weights()[0], saved.get_weights()[0])
