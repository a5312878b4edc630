"""A Conv2D or Conv2DTranspose layer's kernel transform (Winograd's, kn2row's tap matrix) kept between inference calls
(fastdl.ops.conv.KeptTransform): made once while the kernel stays the same, made again as soon as
a value changes (a training step, set_weights, a write into the kernel), never kept by a copy."""

import copy
import pickle

import numpy as np
import pytest

from fastdl import nn
from fastdl.ops import conv as conv_ops

# (input shape, filters, path): 3x3 kernels between 16+ channels take Winograd, stride-1 layers
# with fewer filters than inputs kn2row.
LAYERS = [((6, 7, 16), 16, "winograd"), ((9, 9, 20), 3, "kn2row")]
# (input shape, filters, strides, path): a stride-2 transposed 3x3 one runs in sub-pixel phases,
# a stride-1 one as the convolution by its flipped kernel.
TRANSPOSED = [((4, 5, 16), 16, 2, "subpixel"), ((6, 6, 16), 16, 1, "winograd")]


def _model(backend, dtype, shape, filters, pooled=False, strides=None):
    conv = nn.Conv2D(filters, 3, padding="same", activation="relu") if strides is None else \
        nn.Conv2DTranspose(filters, 3, strides=strides, padding="same", activation="relu")
    layers = [nn.Input(shape), conv]
    layers += [nn.MaxPool2D(2)] if pooled else []
    model = nn.Sequential(layers + [nn.Flatten(), nn.Dense(3)], backend=backend, dtype=dtype, seed=0)
    model.compile(nn.SGD(0.1), "mse")
    return model


@pytest.fixture
def transforms(monkeypatch):
    """The keys of the transforms KeptTransform makes (each call of make)."""
    made, get = [], conv_ops.KeptTransform.get

    def counting(self, kernel, key, make):
        return get(self, kernel, key, lambda: made.append(key[0]) or make())

    monkeypatch.setattr(conv_ops.KeptTransform, "get", counting)
    return made


def _fresh_predict(model, x, backend, dtype, shape, filters, pooled, strides=None):
    other = _model(backend, dtype, shape, filters, pooled, strides)
    other.set_weights(model.get_weights())
    return other.predict(x, batch_size=2)


@pytest.mark.parametrize("pooled", [False, True], ids=["conv", "conv+pool"])
@pytest.mark.parametrize("shape, filters, path", LAYERS, ids=[layer[2] for layer in LAYERS])
def test_the_transform_follows_the_kernel(backend, dtype, rng, transforms, shape, filters, path, pooled):
    _follows_the_kernel(backend, dtype, rng, transforms, shape, filters, path, pooled)


@pytest.mark.parametrize("shape, filters, strides, path", TRANSPOSED, ids=[layer[3] for layer in TRANSPOSED])
def test_the_transposed_transform_follows_the_kernel(backend, dtype, rng, transforms, shape, filters, strides, path):
    _follows_the_kernel(backend, dtype, rng, transforms, shape, filters, path, False, strides)


def _follows_the_kernel(backend, dtype, rng, transforms, shape, filters, path, pooled, strides=None):
    model = _model(backend, dtype, shape, filters, pooled, strides)
    fresh = lambda: _fresh_predict(model, x, backend, dtype, shape, filters, pooled, strides)  # noqa: E731
    x = rng.standard_normal((5, *shape)).astype(dtype)
    first = model.predict(x, batch_size=2)
    assert transforms == [path]  # three batches, one transform
    np.testing.assert_array_equal(model.predict(x, batch_size=2), first)
    assert transforms == [path]

    model.train_on_batch(x, rng.standard_normal((5, 3)).astype(dtype))  # the kernel changes
    after_step = model.predict(x, batch_size=2)
    np.testing.assert_array_equal(after_step, fresh())
    assert not np.array_equal(after_step, first)

    conv = model.layers[0]
    conv.kernel.value[0, 0, 0, 0] = -conv.kernel.value[0, 0, 0, 0]  # one value, written in place
    written = model.predict(x, batch_size=2)
    np.testing.assert_array_equal(written, fresh())
    assert not np.array_equal(written, after_step)

    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    np.testing.assert_array_equal(model.predict(x), np.zeros((5, 3), dtype))


def test_sign_of_zero_and_nan_bits_count_as_changes():
    kept, made = conv_ops.KeptTransform(), []
    kernel = np.zeros((3, 3, 2, 2), np.float32)
    make = lambda: made.append(1) or kernel * 1  # noqa: E731
    kept.get(kernel, "key", make)
    kernel[0, 0, 0, 0] = -0.0
    kept.get(kernel, "key", make)
    kernel[0, 0, 0, 0] = np.nan
    kept.get(kernel, "key", make)
    kept.get(kernel, "key", make)  # the same NaN: the same bits
    kept.get(kernel, "other key", make)
    kept.get(kernel[:, :, :1].copy(), "other key", make)  # another shape
    assert len(made) == 5


def test_copies_and_pickles_keep_no_transform(backend, rng):
    model = _model(backend, np.float32, *LAYERS[0][:2])
    x = rng.standard_normal((2, *LAYERS[0][0])).astype(np.float32)
    model.predict(x)
    assert model.layers[0]._kept._entry is not None
    for other in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert other.layers[0]._kept._entry is None
        np.testing.assert_array_equal(other.predict(x), model.predict(x))  # one batch each
