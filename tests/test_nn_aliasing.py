"""What fastdl.nn hands back is the caller's own, and what it takes it reads before it writes:
optimizer state snapshots, set_weights from the model's own arrays, inference outputs of layers
that pass their input on, and parameters assigned before their model places them."""

import numpy as np
import pytest

from fastdl import nn
from host_as_device import HostAsDevice


def _model(backend, *layers):
    model = nn.Sequential([nn.Input((4,)), *layers], seed=0, backend=backend)
    return model


def test_optimizer_state_dict_is_a_snapshot(backend):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 4)), rng.standard_normal((16, 2))
    model = _model(backend, nn.Dense(2))
    model.compile(nn.Adam(0.01), "mse")
    model.fit(x, y, batch_size=8)
    _, slots = model.optimizer.state_dict()
    before = {name: value.copy() for name, value in slots.items()}
    model.fit(x, y, batch_size=8)
    for name, value in slots.items():
        np.testing.assert_array_equal(value, before[name])


def test_set_weights_reads_every_value_before_writing(backend):
    model = _model(backend, nn.Dense(4), nn.Dense(4))
    model.predict(np.zeros((1, 4)))  # built
    k0, k1 = model.layers[0].kernel.value, model.layers[1].kernel.value
    expected = [k1.copy(), k0.copy()]
    weights = model.get_weights()
    weights[0], weights[2] = k1, k0  # the model's own arrays, swapped
    model.set_weights(weights)
    np.testing.assert_array_equal(model.layers[0].kernel.value, expected[0])
    np.testing.assert_array_equal(model.layers[1].kernel.value, expected[1])


@pytest.mark.parametrize("layer", [lambda: nn.Dropout(0.5), nn.Flatten, lambda: nn.Reshape((2, 2))],
                         ids=["dropout", "flatten", "reshape"])
def test_inference_outputs_are_the_callers_own(backend, layer):
    x = np.random.default_rng(1).standard_normal((3, 4))
    kept = x.copy()
    model = _model(backend, layer())
    out = model(x)
    assert not np.shares_memory(out, x)
    out[...] = 0
    np.testing.assert_array_equal(x, kept)
    alone = model.layers[0](x)
    assert not np.shares_memory(alone, x)


def test_a_parameter_assigned_before_placing_keeps_its_own_copy():
    layer = nn.Dense(3)
    x = np.ones((2, 4))
    layer(x)  # built outside a model: its parameters are not placed in flat buffers
    w = np.full(layer.kernel.value.shape, 0.5)
    layer.kernel.value = w
    before = layer(x)
    w[...] = 5.0
    np.testing.assert_array_equal(layer(x), before)


def test_device_arrays_share_memory_where_their_bytes_overlap():
    from fastdl import _device

    block = np.zeros((6, 4), np.float32)
    assert _device.shares_memory(HostAsDevice(block), HostAsDevice(block[2:3]))
    assert _device.shares_memory(HostAsDevice(block[::-1]), HostAsDevice(block[5:]))  # negative strides
    assert not _device.shares_memory(HostAsDevice(block[:2]), HostAsDevice(block[2:]))
    assert not _device.shares_memory(HostAsDevice(block[:0]), HostAsDevice(block))
    assert not _device.shares_memory(HostAsDevice(block), block)  # one of each side


def test_device_inference_outputs_are_the_callers_own(cuda_backend):
    from numba import cuda

    x = cuda.to_device(np.random.default_rng(2).standard_normal((3, 4)).astype(np.float32))
    model = nn.Sequential([nn.Input((4,)), nn.Dropout(0.5)], seed=0, backend=cuda_backend)
    out = model(x)
    assert out is not x
    np.testing.assert_array_equal(out.copy_to_host(), x.copy_to_host())
    dense = nn.Sequential([nn.Input((4,)), nn.Dense(2)], seed=0, backend=cuda_backend)
    assert hasattr(dense(x), "copy_to_host")  # device in, device out
