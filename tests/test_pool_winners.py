"""MaxPooling2D's recorded winners: a training forward pass records each window's winner (uint8)
and backward scatters dout by it instead of scanning every window of x again.

The winners' kernels against the recomputing ones, bit for bit (outputs and gradients, ties, NaN,
-0.0 and NaN gradients, overlapping and gapped windows, "same" padding, one thread or two), the
winners' numbering, the layer's use of them (and its fallbacks: inference passes, windows of more
than 256 cells, no input gradient needed), and finite differences in float64."""

import itertools

import numpy as np
import pytest

import naive
from conftest import RTOL, ready_backends
from fastdl import backend as fastdl_backend
from fastdl import nn
from fastdl.ops.pool import (MAX_WINNER_CELLS, max_pool2d, max_pool2d_grad, max_pool2d_grad_into,
                             max_pool2d_grad_winners_into, max_pool2d_into, max_pool2d_winners_into,
                             pool_geometry, records_winners)

# (input shape, pool_size, strides, padding): tiled, overlapping, gapped, padded, rectangular.
CONFIGS = [
    ((2, 4, 4, 3), 2, None, "valid"),
    ((2, 7, 9, 5), 2, None, "valid"),
    ((1, 7, 5, 2), 3, 1, "valid"),
    ((3, 7, 9, 1), 2, 3, "valid"),
    ((2, 6, 5, 4), (3, 2), (1, 2), "valid"),
    ((1, 5, 7, 3), 2, None, "same"),
    ((2, 8, 8, 6), 3, 2, "same"),
    ((2, 7, 6, 2), 3, 2, "same"),
    ((1, 8, 5, 3), 3, 1, "same"),
    ((2, 5, 5, 2), 1, 3, "same"),
    ((1, 9, 4, 17), (2, 3), (3, 1), "same"),
]


def _ids(config):
    shape, pool, strides, padding = config
    return f"{'x'.join(map(str, shape))}-p{pool}-s{strides}-{padding}".replace(" ", "")


def _inputs(kind, shape, out_shape, dtype, rng):
    """x and dout: random values, or few distinct values (ties), or those with NaNs in x and -0.0
    and NaN in dout."""
    if kind == "random":
        x = rng.standard_normal(shape)
    else:
        x = rng.integers(-2, 2, shape).astype(np.float64)
    dout = rng.standard_normal(out_shape)
    if kind == "nan":
        x[rng.random(shape) < 0.2] = np.nan
        x[0, 0, 0] = np.nan  # a NaN that starts its window
        dout[rng.random(out_shape) < 0.3] = -0.0
        dout[rng.random(out_shape) < 0.05] = np.nan
    return x.astype(dtype), dout.astype(dtype)


def _bits(a):
    return np.ascontiguousarray(a).view(np.uint8)


@pytest.mark.parametrize("kind", ["random", "ties", "nan"])
@pytest.mark.parametrize("config", CONFIGS, ids=_ids)
def test_winner_kernels_match_the_recomputing_kernels_to_the_bit(backend, dtype, rng, config, kind):
    shape, pool, strides, padding = config
    *window, out_h, out_w = pool_geometry(shape, pool, strides, padding)
    out_shape = (shape[0], out_h, out_w, shape[3])
    x, dout = _inputs(kind, shape, out_shape, dtype, rng)
    kernels, _ = fastdl_backend.kernels("pool", backend)
    expected_out, expected_dx = np.empty(out_shape, dtype), np.empty(shape, dtype)
    kernels.max_pool2d_forward(x, expected_out, *window, 1)
    kernels.max_pool2d_backward(x, dout, expected_dx, *window, 1)
    for n_threads in (1, 2):
        out = np.full(out_shape, 5, dtype)
        winners = np.full(out_shape, 255, np.uint8)
        dx = np.full(shape, 7, dtype)  # every cell is overwritten, those in no window with 0
        kernels.max_pool2d_forward_winners(x, out, winners, *window, n_threads)
        kernels.max_pool2d_backward_winners(winners, dout, dx, *window, n_threads)
        np.testing.assert_array_equal(_bits(out), _bits(expected_out))
        np.testing.assert_array_equal(_bits(dx), _bits(expected_dx))
    if kind != "nan":
        np.testing.assert_allclose(dx, naive.max_pool2d_grad(x, dout, pool, strides, padding),
                                   rtol=RTOL[dtype], atol=RTOL[dtype])


def test_winners_number_the_unclipped_windows_cells(backend, dtype):
    """Cell (a, b) of a window is a * pool_w + b from its unclipped top-left corner: the first
    maximum in row-major order, the first NaN where the window holds one, and the first image cell
    where padding clips the window."""
    x = np.array([[1, 3, 3, 0],
                  [3, 2, 0, np.nan],
                  [0, 0, 5, 5],
                  [np.nan, np.nan, 5, 5]], dtype)[None, :, :, None]
    window = pool_geometry(x.shape, 2, None, "valid")[:6]
    out, winners = np.empty((1, 2, 2, 1), dtype), np.empty((1, 2, 2, 1), np.uint8)
    max_pool2d_winners_into(x, out, winners, window, backend)
    np.testing.assert_array_equal(winners[0, :, :, 0], [[1, 3], [2, 0]])
    # 3x3 "same" at stride 1 on 3x3: one padded cell on every side, so the windows at the border
    # start on a padded cell and their first image cell wins a tie.
    x = np.full((1, 3, 3, 1), 4, dtype)
    window = pool_geometry(x.shape, 3, 1, "same")[:6]
    assert window[4:] == (1, 1)
    out, winners = np.empty((1, 3, 3, 1), dtype), np.empty((1, 3, 3, 1), np.uint8)
    max_pool2d_winners_into(x, out, winners, window, backend)
    np.testing.assert_array_equal(winners[0, :, :, 0], [[4, 3, 3], [1, 0, 0], [1, 0, 0]])


def _layer(pool, strides, padding, shape, backend, dtype):
    layer = nn.MaxPooling2D(pool, strides, padding, backend=backend)
    layer.build(shape[1:], np.random.default_rng(0), dtype)
    return layer


class _Counting:
    """Counts the calls of the pool kernels' recomputing backward, passing them on."""

    def __init__(self, kernels, monkeypatch):
        self.calls = 0
        original = kernels.max_pool2d_backward

        def counted(*args):
            self.calls += 1
            return original(*args)

        monkeypatch.setattr(kernels, "max_pool2d_backward", counted)


@pytest.mark.parametrize("config", [CONFIGS[1], CONFIGS[6], CONFIGS[7]], ids=_ids)
def test_layer_training_pass_records_winners_and_backward_uses_them(backend, dtype, rng, config, monkeypatch):
    shape, pool, strides, padding = config
    layer = _layer(pool, strides, padding, shape, backend, dtype)
    counting = _Counting(fastdl_backend.kernels("pool", backend)[0], monkeypatch)
    for kind in ("random", "ties", "nan"):
        x, dout = _inputs(kind, shape, (shape[0], *layer.output_shape), dtype, rng)
        counting.calls = 0
        out = layer.forward(x, training=True).copy()
        dx = layer.backward(dout).copy()
        assert counting.calls == 0  # no window was scanned again
        # The recomputing ops (their _into forms: the public ones refuse NaN).
        expected_out, expected_dx = np.empty_like(out), np.empty_like(dx)
        max_pool2d_into(x, expected_out, layer._window, backend)
        max_pool2d_grad_into(x, dout, expected_dx, layer._window, backend)
        assert counting.calls == 1
        np.testing.assert_array_equal(_bits(out), _bits(expected_out))
        np.testing.assert_array_equal(_bits(dx), _bits(expected_dx))


def test_layer_backward_after_an_inference_pass_finds_the_winners_again(backend, dtype, rng, monkeypatch):
    """An inference pass records no winners (threads may share the layer): backward, after one,
    is the gradient at that pass's input, as before."""
    shape, pool, strides, padding = CONFIGS[6]
    layer = _layer(pool, strides, padding, shape, backend, dtype)
    counting = _Counting(fastdl_backend.kernels("pool", backend)[0], monkeypatch)
    trained = rng.standard_normal(shape).astype(dtype)
    x, dout = _inputs("ties", shape, (shape[0], *layer.output_shape), dtype, rng)
    layer.forward(trained, training=True)
    winners = layer._buffers["winners"].copy()
    out = layer.forward(x)
    np.testing.assert_array_equal(layer._buffers["winners"], winners)  # left alone
    np.testing.assert_array_equal(out, max_pool2d(x, pool, strides, padding, backend=backend))
    dx = layer.backward(dout)
    assert counting.calls == 1
    np.testing.assert_array_equal(dx, max_pool2d_grad(x, dout, pool, strides, padding, backend=backend))


def test_windows_too_large_for_uint8_winners_are_recomputed(backend, rng, monkeypatch):
    shape = (2, 17, 16, 3)
    window = pool_geometry(shape, (17, 16), None, "valid")[:6]
    assert window[0] * window[1] > MAX_WINNER_CELLS and not records_winners(window, backend)
    assert records_winners(pool_geometry(shape, 16, None, "valid")[:6], backend)
    layer = _layer((17, 16), None, "valid", shape, backend, np.float64)
    counting = _Counting(fastdl_backend.kernels("pool", backend)[0], monkeypatch)
    x, dout = _inputs("ties", shape, (2, 1, 1, 3), np.float64, rng)
    layer.forward(x, training=True)
    dx = layer.backward(dout)
    assert counting.calls == 1 and "winners" not in layer._buffers
    np.testing.assert_array_equal(dx, max_pool2d_grad(x, dout, (17, 16), backend=backend))


def test_layer_without_input_gradient_records_nothing_and_returns_none(backend, rng):
    """needs_input_grad False (a model's first layers): no winners, no gradient, as AveragePooling2D."""
    shape = (2, 4, 4, 3)
    layer = _layer(2, None, "valid", shape, backend, np.float32)
    layer.needs_input_grad = False
    x, dout = _inputs("random", shape, (2, 2, 2, 3), np.float32, rng)
    layer.forward(x, training=True)
    assert layer.backward(dout) is None and "winners" not in layer._buffers


@pytest.mark.parametrize("config", [CONFIGS[2], CONFIGS[4], CONFIGS[7], CONFIGS[10]], ids=_ids)
def test_layer_gradient_matches_finite_differences(backend, rng, config):
    shape, pool, strides, padding = config
    layer = _layer(pool, strides, padding, shape, backend, np.float64)
    # Values at least 0.1 apart: no near-ties, so finite differences never cross a switch.
    x = rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1 - 1.0
    weights = rng.standard_normal((shape[0], *layer.output_shape))
    layer.forward(x, training=True)
    dx = layer.backward(weights).copy()
    eps = 1e-6
    numeric = np.empty_like(x)
    for index in np.ndindex(x.shape):
        bumped = x.copy()
        bumped[index] += eps
        up = np.sum(weights * layer.forward(bumped))
        bumped[index] -= 2 * eps
        down = np.sum(weights * layer.forward(bumped))
        numeric[index] = (up - down) / (2 * eps)
    np.testing.assert_allclose(dx, numeric, rtol=1e-6, atol=1e-8)


def test_model_with_unfused_pools_trains_alike_on_every_cpu_backend():
    """A model whose MaxPool2D layers record winners (after BatchNormalization, 3x3 stride 2
    "same", so not fused with a convolution) trains to the same weights on every CPU backend."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((12, 9, 9, 2))
    y = rng.integers(0, 3, 12)
    results = {}
    for backend in ready_backends():
        model = nn.Sequential([
            nn.Conv2D(4, 3, padding="same", activation="relu", input_shape=(9, 9, 2)), nn.BatchNormalization(),
            nn.MaxPool2D(3, 2, "same"), nn.Conv2D(3, 2, activation="tanh"), nn.MaxPool2D(2, 1),
            nn.Flatten(), nn.Dense(3, activation="softmax")], seed=0, backend=backend, dtype=np.float64)
        model.compile("sgd", "sparse_categorical_crossentropy")
        history = model.fit(x, y, epochs=2, batch_size=4, shuffle=False, verbose=0)
        pools = [layer for layer in model.layers if isinstance(layer, nn.MaxPool2D)]
        assert all("winners" in layer._buffers for layer in pools)
        results[backend] = (history.history["loss"], model.get_weights())
    losses, weights = results.pop("numpy")
    for backend, (other_losses, other_weights) in results.items():
        np.testing.assert_allclose(other_losses, losses, rtol=1e-9, err_msg=backend)
        for got, want in zip(other_weights, weights):
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, err_msg=backend)


@pytest.mark.parametrize("pool, strides", list(itertools.product([1, 2, 3, (2, 3)], [None, 1, 2, 3])))
def test_op_wrappers_agree_with_the_public_gradient(backend, dtype, rng, pool, strides):
    shape = (2, 7, 8, 3)
    for padding in ("valid", "same"):
        *window, out_h, out_w = pool_geometry(shape, pool, strides, padding)
        x, dout = _inputs("ties", shape, (2, out_h, out_w, 3), dtype, rng)
        out, winners, dx = np.empty(dout.shape, dtype), np.empty(dout.shape, np.uint8), np.empty(shape, dtype)
        max_pool2d_winners_into(x, out, winners, window, backend)
        max_pool2d_grad_winners_into(winners, dout, dx, window, backend)
        np.testing.assert_array_equal(out, max_pool2d(x, pool, strides, padding, backend=backend))
        np.testing.assert_array_equal(dx, max_pool2d_grad(x, dout, pool, strides, padding, backend=backend))
