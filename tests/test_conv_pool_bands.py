"""A convolution fused with the max pooling after it (fastdl.ops.conv_pool) on big images, in
horizontal bands of whole pooling windows (fastdl.ops.conv._Bands).

The `banded` fixture shrinks the budgets so that small images band too; each result is checked
against the same call unbanded (BAND_FACTOR infinite), which tests/test_conv_pool_fused.py checks
against the separate convolution and pooling.
"""

import threading
import tracemalloc

import numpy as np
import pytest

import fastdl
from conftest import RTOL, predict_and_step_unbanded_and_banded
from fastdl import nn
from fastdl.ops import conv as conv_ops
from fastdl.ops import conv_pool
from fastdl.ops.conv_pool import conv2d_pool_grad_into, conv2d_pool_into

# (x shape, kernel (kh, kw, out_channels), strides, padding, pool, path): leftover convolution rows
# and columns that no window covers, two images, strided windows between the bands' rows.
CONFIGS = [
    ((2, 19, 7, 3), (3, 3, 4), 1, "same", (2, 2), "im2col"),
    ((1, 40, 11, 2), (3, 3, 3), 2, "same", (3, 3), "im2col"),
    ((1, 37, 9, 2), (5, 5, 3), 2, "valid", (2, 2), "im2col"),
    ((1, 23, 8, 2), (2, 3, 3), (2, 1), "same", (3, 2), "im2col"),
    ((1, 20, 6, 1), (3, 3, 16), 1, "valid", (3, 3), "few_taps"),
    ((2, 17, 6, 20), (3, 3, 3), 1, "same", (2, 2), "kn2row"),
    ((1, 22, 8, 18), (5, 5, 2), 1, "valid", (3, 3), "kn2row"),
    ((1, 12, 5, 3), (1, 1, 4), 1, "valid", (2, 2), "direct"),  # banded for its block of outputs alone
]
WINOGRAD_CONFIGS = [
    ((1, 18, 6, 16), (3, 3, 16), 1, "same", (2, 2), "winograd"),
    ((1, 22, 8, 16), (3, 3, 17), 1, "valid", (3, 3), "winograd"),
]


def _problem(config, dtype, rng, ties=False):
    x_shape, (kh, kw, out_channels), strides, padding, pool, _ = config
    if ties:  # small integers: exact sums in any order, and many equal values in a window
        x = rng.integers(-1, 2, x_shape).astype(dtype)
        kernel = rng.integers(-1, 2, (kh, kw, x_shape[3], out_channels)).astype(dtype)
        bias = rng.integers(-1, 2, out_channels).astype(dtype)
    else:
        x = rng.normal(size=x_shape).astype(dtype)
        kernel = rng.normal(size=(kh, kw, x_shape[3], out_channels)).astype(dtype)
        bias = rng.normal(size=out_channels).astype(dtype)
    geometry = conv_ops._geometry(x.shape, kernel.shape, strides, padding)
    pooled_shape = (x_shape[0], geometry[2][0] // pool[0], geometry[2][1] // pool[1], out_channels)
    dpooled = rng.normal(size=pooled_shape).astype(dtype)
    if ties:
        dpooled = np.round(dpooled * 4)
    return x, kernel, bias, geometry, pool, dpooled


def _check_bands(x, kernel, geometry, pool, dpooled, path):
    """The fused convolution goes in two bands or more on `path`, each of whole pooling windows."""
    bands = conv_pool._bands(x, kernel, geometry, pool, dpooled)
    assert bands is not None and len(bands.bands) >= 2
    assert all((out_rows.stop - out_rows.start) % pool[0] == 0 for _, out_rows, _ in bands.bands)
    assert bands.bands[-1][1].stop == dpooled.shape[1] * pool[0]  # the rows the windows cover, no more
    plan = conv_ops._plan(x, kernel, geometry, x.dtype)
    paths = ("direct", "few_taps", "kn2row", "winograd")
    assert [name for name in paths if plan[name]] == ([] if path == "im2col" else [path])


def _forward_and_grads(x, kernel, bias, geometry, relu, pool, dpooled, backend):
    out, code = np.full_like(dpooled, np.nan), np.full(dpooled.shape, -7, np.int32)
    conv2d_pool_into(x, kernel, bias, geometry, int(relu), pool, out, code, backend)
    grads = np.full_like(x, np.nan), np.full_like(kernel, np.nan), np.full_like(bias, np.nan)
    conv2d_pool_grad_into(x, kernel, dpooled, code, geometry, pool, *grads, backend)
    return out, code, *grads


def _unbanded(monkeypatch, func, *args):
    with monkeypatch.context() as patch:
        patch.setattr(conv_ops, "BAND_FACTOR", np.inf)
        return func(*args)


def _compare(x, kernel, bias, geometry, relu, pool, dpooled, backend, monkeypatch, band_runs, exact):
    """Forward pass and gradients banded against unbanded: codes equal, values within rounding
    (to the bit where every sum is exact)."""
    args = x, kernel, bias, geometry, relu, pool, dpooled, backend
    got = _forward_and_grads(*args)
    assert len(band_runs) == 3
    want = _unbanded(monkeypatch, _forward_and_grads, *args)
    assert len(band_runs) == 3
    np.testing.assert_array_equal(got[1], want[1])
    assert got[1].min() >= -1 and got[1].max() < pool[0] * pool[1]
    taps = kernel[..., 0].size
    for name, a, b, terms in zip(("out", "dx", "dkernel", "dbias"), got[:1] + got[2:], want[:1] + want[2:],
                                 (taps, taps, dpooled[..., 0].size, dpooled[..., 0].size)):
        assert a.dtype == x.dtype and np.isfinite(a).all(), name
        if exact:
            np.testing.assert_array_equal(a, b, err_msg=name)
        else:
            tol = RTOL[x.dtype.type] * max(1.0, np.sqrt(terms))
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol, err_msg=name)


@pytest.mark.parametrize("config", CONFIGS, ids=[f"{c[-1]}-{i}" for i, c in enumerate(CONFIGS)])
@pytest.mark.parametrize("relu", [True, False], ids=["relu", "linear"])
@pytest.mark.parametrize("ties", [False, True], ids=["random", "ties"])
def test_bands_match_unbanded(backend, dtype, rng, config, relu, ties, banded, band_runs, monkeypatch):
    x, kernel, bias, geometry, pool, dpooled = _problem(config, dtype, rng, ties)
    _check_bands(x, kernel, geometry, pool, dpooled, config[-1])
    _compare(x, kernel, bias, geometry, relu, pool, dpooled, backend, monkeypatch, band_runs, exact=ties)


@pytest.mark.parametrize("config", WINOGRAD_CONFIGS, ids=str)
def test_winograd_bands_match_unbanded(backend, dtype, rng, config, banded, tiles, band_runs, monkeypatch):
    x, kernel, bias, geometry, pool, dpooled = _problem(config, dtype, rng)
    _check_bands(x, kernel, geometry, pool, dpooled, "winograd")
    assert (conv_ops._plan(x, kernel, geometry, dtype)["large_tiles"] is not None) == (tiles == 4)
    _compare(x, kernel, bias, geometry, True, pool, dpooled, backend, monkeypatch, band_runs, exact=False)


def test_input_or_weight_gradients_alone(backend, dtype, rng, banded):
    """dx None (a first layer), dkernel and dbias None (a frozen layer), dbias None (no bias): the
    gradients asked for have the bits they have with all three."""
    x, kernel, bias, geometry, pool, dpooled = _problem(CONFIGS[0], dtype, rng)
    _, code, *want = _forward_and_grads(x, kernel, bias, geometry, True, pool, dpooled, backend)
    for wanted in ((True, False, False), (False, True, True), (False, True, False)):
        got = [np.full_like(array, np.nan) if keep else None for keep, array in zip(wanted, (x, kernel, bias))]
        conv2d_pool_grad_into(x, kernel, dpooled, code, geometry, pool, *got, backend)
        for array, expected in zip(got, want):
            if array is not None:
                np.testing.assert_array_equal(array, expected)


def test_thread_count_does_not_change_the_bits(backend, rng, banded, band_runs, monkeypatch):
    """Pooled outputs, codes and all three gradients; the kernel and bias gradients of the bands
    are summed in groups (here of two bands) that do not follow the threads."""
    config = ((3, 50, 7, 3), (3, 3, 4), 1, "same", (2, 2), "im2col")  # 12 bands an image
    x, kernel, bias, geometry, pool, dpooled = _problem(config, np.float32, rng)
    bands = conv_pool._bands(x, kernel, geometry, pool, dpooled)
    assert len(bands.bands) == 12 and -(-3 * 6 // conv_ops.MIN_BATCHES) == 2
    monkeypatch.setattr(fastdl._parallel, "MIN_WORK_PER_THREAD", 1)
    results = {}
    for n_threads in (1, 2, 3):
        fastdl.set_num_threads(n_threads)
        results[n_threads] = _forward_and_grads(x, kernel, bias, geometry, True, pool, dpooled, backend)
    assert len(band_runs) == 3 * 3
    for n_threads in (2, 3):
        for got, want in zip(results[n_threads], results[1]):
            np.testing.assert_array_equal(got, want)


def test_bands_run_the_callers_backend(backend, rng, banded, monkeypatch):
    """Pool threads do not see use_backend's context: the bands take the calling thread's
    backend, and its kernels are loaded before the bands run (regression: two pool threads
    loading a family for the first time at once raced on OMP_WAIT_POLICY, a KeyError)."""
    others = [name for name in ("numpy", "numba", "cython") if name != backend and fastdl.backend_status()[name][0]]
    if not others:
        pytest.skip("no other backend to tell from the one asked for")
    x, kernel, bias, geometry, pool, dpooled = _problem(CONFIGS[0], np.float32, rng)
    monkeypatch.setattr(fastdl._parallel, "MIN_WORK_PER_THREAD", 1)
    fastdl.set_num_threads(2)
    fastdl.set_backend(others[0])
    lookup, load, run = fastdl.backend.kernels, fastdl.backend._load, conv_ops._Bands.run
    used, threads, loads = set(), set(), []

    def kernels(family, backend=None):
        module, name = lookup(family, backend)
        used.add(name)
        threads.add(threading.get_ident())
        return module, name

    def first_load(name, family):
        if (name, family) not in fastdl.backend._module_cache:
            loads.append((family, running))
        return load(name, family)

    def bands_run(self, *args, **kwargs):
        nonlocal running
        running = True
        try:
            return run(self, *args, **kwargs)
        finally:
            running = False

    running = False
    monkeypatch.setattr(fastdl.backend, "kernels", kernels)
    monkeypatch.setattr(fastdl.backend, "_load", first_load)
    monkeypatch.setattr(fastdl.backend, "_module_cache", {})  # every family loads anew
    monkeypatch.setattr(conv_ops._Bands, "run", bands_run)
    with fastdl.use_backend(backend):
        _forward_and_grads(x, kernel, bias, geometry, True, pool, dpooled, None)
    assert used == {backend} and len(threads) == 2
    assert loads and not [family for family, inside in loads if inside]


def _model(dtype):
    """Two fused pairs: im2col pooled 2x2, few taps pooled 3x3 (leftover rows and columns)."""
    return nn.Sequential([nn.Input((20, 9, 3)), nn.Conv2D(4, 3, padding="same", activation="relu"), nn.MaxPool2D(2),
                          nn.Conv2D(16, 3, padding="same"), nn.MaxPool2D(3),
                          nn.Flatten(), nn.Dense(2, activation="softmax")], seed=0, dtype=dtype)


def test_model_predict_and_train_step(dtype, rng, monkeypatch, band_runs):
    """A model of fused convolutions and poolings predicts and trains on one image banded as it
    does unbanded."""
    x = rng.random((1, 20, 9, 3)).astype(dtype)

    def fused(model):
        assert [isinstance(step, tuple) for step in model._steps] == [True, True, False, False]

    runs = predict_and_step_unbanded_and_banded(monkeypatch, band_runs, lambda: _model(dtype), x, np.array([1]),
                                                built=fused)
    (predicted, loss, weights, calls), (banded_predicted, banded_loss, banded_weights, banded_calls) = runs
    # predict and the step's forward pass: 2 pairs each; the backward pass: 2 phases a pair.
    assert calls == 0 and banded_calls == 2 + 2 + 2 * 2
    tol = RTOL[dtype] * 10
    np.testing.assert_allclose(banded_predicted, predicted, rtol=tol, atol=tol)
    np.testing.assert_allclose(banded_loss, loss, rtol=tol, atol=tol)
    for got, want in zip(banded_weights, weights):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_course_models_are_not_banded():
    """The course's fused convolutions and poolings (28x28 to 150x150 images) keep their plans:
    none is near banding, by its work arrays or its block of outputs."""
    from fastdl.repro import a5_models, models

    built = [models.course_cnn(), models.course_cnn((32, 32, 3))]
    for model in built:
        model.build()
    built += [a5_models.compiled_model(key) for key in ("regression_mse", "classes_720", "multihead", "hands")]
    pairs = [(conv, pool) for model in built for conv, pool in zip(model.layers, model.layers[1:])
             if type(conv) is nn.Conv2D and conv.fuses_with(pool)]
    assert len(pairs) == 3 * 2 + 3 * 3 + 4
    for dtype in (np.float32, np.float64):
        for conv, pool in pairs:
            # Shapes and dtype alone: nothing allocated.
            x = np.broadcast_to(np.zeros((), dtype), (100, *conv.input_shape))
            pooled = np.broadcast_to(np.zeros((), dtype), (100, *pool.output_shape))
            kernel = conv.kernel.value.astype(dtype)
            for factor in (conv_ops.BAND_FACTOR, conv_ops.BAND_FACTOR / 2):
                with pytest.MonkeyPatch.context() as patch:
                    patch.setattr(conv_ops, "BAND_FACTOR", factor)
                    assert conv_pool._bands(x, kernel, conv._geometry, pool._window[:2], pooled) is None, \
                        (conv.name, conv.input_shape, factor)


@pytest.mark.parametrize("grad", [False, True], ids=["forward", "grad"])
@pytest.mark.parametrize("shape, kernel_size, out_channels", [((1, 512, 512, 4), 5, 4), ((1, 512, 512, 2), 1, 96)],
                         ids=["im2col", "direct"])
def test_one_big_image_takes_little_memory(backend, rng, shape, kernel_size, out_channels, grad):
    """One 512x512 image's 5x5 patch matrix would be 105 MB, a 1x1 convolution's 96 outputs
    before pooling 101 MB: in bands each thread's work arrays stay near the budget (regression:
    the whole image's were allocated)."""
    x = rng.random(shape, dtype=np.float32)
    kernel = rng.random((kernel_size, kernel_size, shape[3], out_channels), dtype=np.float32) - 0.5
    bias = np.zeros(out_channels, np.float32)
    geometry = conv_ops._geometry(x.shape, kernel.shape, 1, "same")
    pooled = np.empty((1, shape[1] // 2, shape[2] // 2, out_channels), np.float32)
    code = np.empty(pooled.shape, np.int32)
    dx, dkernel, dbias = np.empty_like(x), np.empty_like(kernel), np.empty_like(bias)
    small = conv_ops._geometry((1, 40, 40, shape[3]), kernel.shape, 1, "same")  # compiled outside the trace
    conv2d_pool_into(x[:, :40, :40].copy(), kernel, bias, small, 1, (2, 2), pooled[:, :20, :20].copy(),
                     code[:, :20, :20].copy(), backend)
    conv2d_pool_into(x, kernel, bias, geometry, 1, (2, 2), pooled, code, backend)
    tracemalloc.start()
    try:
        if grad:
            conv2d_pool_grad_into(x, kernel, pooled, code, geometry, (2, 2), dx, dkernel, dbias, backend)
        else:
            conv2d_pool_into(x, kernel, bias, geometry, 1, (2, 2), pooled, code, backend)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 24 * 2**20, f"{peak / 2**20:.0f} MB"
