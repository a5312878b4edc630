"""Convolutions of big images in horizontal bands of output rows (fastdl.ops.conv._Bands).

Where one image's work array (patch matrix, per-tap products, Winograd tiles) would take more
than BAND_FACTOR times its path's budget, conv2d_into and conv2d_grad_into run band by band. The
`banded` fixture shrinks the budgets so that small images band too; each result is checked
against the naive loops and against the same call unbanded (BAND_FACTOR infinite).
"""

import threading
import tracemalloc

import numpy as np
import pytest

import fastdl
import naive
from conftest import RTOL, predict_and_step_unbanded_and_banded
from fastdl import nn
from fastdl.ops import conv as conv_ops
from fastdl.ops.conv import conv2d, conv2d_grad
from fastdl.ops.conv_transpose import conv2d_transpose, conv2d_transpose_grad

# (n_images, height, width, in_channels, kernel size (h, w), out_channels, strides, padding, path)
CONFIGS = [
    (2, 13, 6, 2, (3, 3), 3, 1, "same", "im2col"),
    (1, 21, 5, 3, (5, 5), 2, 2, "same", "im2col"),
    (1, 20, 7, 2, (7, 7), 3, 1, "valid", "im2col"),
    (1, 16, 5, 2, (1, 1), 3, 2, "valid", "im2col"),  # rows between the windows and past the last: no band reads them
    (1, 15, 6, 2, (3, 2), 2, (2, 1), ((1, 2), (2, 0)), "im2col"),  # explicit padding, uneven strides
    (1, 25, 6, 2, (4, 3), 2, 3, ((3, 0), (1, 1)), "im2col"),  # stride 3: bands' windows between rows
    (1, 18, 6, 1, (3, 3), 16, 1, "same", "few_taps"),
    (1, 18, 6, 20, (3, 3), 3, 1, "same", "kn2row"),
    (1, 20, 5, 20, (5, 5), 2, 1, ((2, 0), (0, 1)), "kn2row"),
    (1, 16, 4, 16, (3, 3), 16, 1, "same", "winograd"),
    (1, 18, 5, 16, (3, 3), 17, 1, "valid", "winograd"),
]


def _data(rng, config, dtype):
    n, h, w, c_in, (kh, kw), c_out, strides, padding, path = config
    x = rng.normal(size=(n, h, w, c_in)).astype(dtype)
    kernel = rng.normal(size=(kh, kw, c_in, c_out)).astype(dtype)
    bias = rng.normal(size=c_out).astype(dtype)
    return x, kernel, bias, strides, padding, path


def _close(actual, expected, dtype, terms):
    tol = RTOL[dtype] * max(1.0, np.sqrt(terms))
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol)


def _bands(x, kernel, strides, padding):
    geometry = conv_ops._geometry(x.shape, kernel.shape, strides, padding)
    return conv_ops._Bands.of(x, kernel, geometry)


def _unbanded(monkeypatch, func, *args, **kwargs):
    with monkeypatch.context() as patch:
        patch.setattr(conv_ops, "BAND_FACTOR", np.inf)
        return func(*args, **kwargs)


def _check_bands(x, kernel, strides, padding, path):
    """The convolution goes in two bands or more on `path`, each at least the kernel's height."""
    bands = _bands(x, kernel, strides, padding)
    assert bands is not None and len(bands.bands) >= 2
    assert min(out_rows.stop - out_rows.start for _, out_rows, _ in bands.bands) >= kernel.shape[0]
    geometry = conv_ops._geometry(x.shape, kernel.shape, strides, padding)
    plan = conv_ops._plan(x, kernel, geometry, x.dtype)
    paths = ("direct", "few_taps", "kn2row", "winograd")
    assert [name for name in paths if plan[name]] == ([] if path == "im2col" else [path])


_naive_results = {}


def _naive(x, kernel, bias, dout, strides, padding):
    """naive.conv2d and conv2d_grad, computed once for the backends and Winograd's tiles (slow loops)."""
    key = (x.tobytes(), x.shape, kernel.tobytes(), kernel.shape, bias.tobytes(), str(strides), str(padding))
    if key not in _naive_results:
        _naive_results[key] = (naive.conv2d(x, kernel, bias, strides, padding),
                               naive.conv2d_grad(x, kernel, dout, strides, padding))
    return _naive_results[key]


def _compare(x, kernel, bias, strides, padding, backend, monkeypatch):
    """conv2d and conv2d_grad, banded, against the naive loops and against the unbanded path."""
    dtype = x.dtype.type
    out_shape = (x.shape[0], *conv_ops._geometry(x.shape, kernel.shape, strides, padding)[2], kernel.shape[3])
    dout = np.random.default_rng(1).normal(size=out_shape).astype(dtype)
    expected, expected_grads = _naive(x, kernel, bias, dout, strides, padding)
    out = conv2d(x, kernel, bias, strides=strides, padding=padding, backend=backend)
    taps = kernel[..., 0].size
    _close(out, expected, dtype, taps)
    _close(out, _unbanded(monkeypatch, conv2d, x, kernel, bias, strides=strides, padding=padding, backend=backend),
           dtype, taps)
    grads = conv2d_grad(x, kernel, dout, strides=strides, padding=padding, backend=backend)
    unbanded = _unbanded(monkeypatch, conv2d_grad, x, kernel, dout, strides=strides, padding=padding,
                         backend=backend)
    for got, want, other, terms in zip(grads, expected_grads, unbanded,
                                       (kernel.size, dout[..., 0].size, dout[..., 0].size)):
        assert got.dtype == dtype and got.shape == want.shape
        _close(got, want, dtype, terms)
        _close(got, other, dtype, terms)


@pytest.mark.parametrize("config", [c for c in CONFIGS if c[-1] != "winograd"], ids=str)
def test_bands_match_naive_and_unbanded(backend, dtype, rng, config, banded, monkeypatch):
    x, kernel, bias, strides, padding, path = _data(rng, config, dtype)
    _check_bands(x, kernel, strides, padding, path)
    _compare(x, kernel, bias, strides, padding, backend, monkeypatch)


@pytest.mark.parametrize("config", [c for c in CONFIGS if c[-1] == "winograd"], ids=str)
def test_winograd_bands_match_naive_and_unbanded(backend, dtype, rng, config, banded, tiles, monkeypatch):
    x, kernel, bias, strides, padding, path = _data(rng, config, dtype)
    _check_bands(x, kernel, strides, padding, path)
    geometry = conv_ops._geometry(x.shape, kernel.shape, strides, padding)
    assert (conv_ops._plan(x, kernel, geometry, dtype)["large_tiles"] is not None) == (tiles == 4)
    _compare(x, kernel, bias, strides, padding, backend, monkeypatch)


HEIGHT_CONFIGS = [
    (1, 23, 5, 2, (3, 3), 2, 1, "same", "im2col"),
    (1, 40, 5, 2, (5, 3), 2, 2, ((2, 1), (1, 1)), "im2col"),
    (1, 45, 4, 2, (4, 3), 2, 3, ((3, 0), (1, 1)), "im2col"),
]


@pytest.mark.parametrize("height", [1, 2, 4, 5])
def test_band_heights(backend, rng, height, monkeypatch):
    """Bands of other heights (raised to the kernel's), the last taking the rows left over."""
    monkeypatch.setattr(conv_ops, "_band_height", lambda *_: height)
    for config in HEIGHT_CONFIGS:
        x, kernel, bias, strides, padding, path = _data(rng, config, np.float64)
        bands = _bands(x, kernel, strides, padding)
        rows = [out_rows.stop - out_rows.start for _, out_rows, _ in bands.bands]
        assert len(rows) >= 2 and rows[:-1] == [max(height, kernel.shape[0])] * (len(rows) - 1)
        assert rows[0] <= rows[-1] < 2 * rows[0]
        _compare(x, kernel, bias, strides, padding, backend, monkeypatch)


def test_input_or_weight_gradients_alone(backend, dtype, rng, banded, monkeypatch):
    """dx None (a first layer), dkernel and dbias None (a frozen layer), dbias None (no bias)."""
    x, kernel, _, strides, padding, _ = _data(rng, CONFIGS[0], dtype)
    geometry = conv_ops._geometry(x.shape, kernel.shape, strides, padding)
    dout = rng.normal(size=(*x.shape[:3], kernel.shape[3])).astype(dtype)
    want = naive.conv2d_grad(x, kernel, dout, strides, padding)
    for wanted in ((True, False, False), (False, True, True), (False, True, False), (True, True, False)):
        got = [np.full_like(array, np.nan) if keep else None
               for keep, array in zip(wanted, (x, kernel, dout[0, 0, 0]))]
        conv_ops.conv2d_grad_into(x, kernel, dout, geometry, *got, backend)
        for array, expected, terms in zip(got, want, (kernel.size, dout[..., 0].size, dout[..., 0].size)):
            if array is not None:
                _close(array, expected, dtype, terms)


def test_thread_count_does_not_change_the_bits(backend, rng, banded, monkeypatch):
    """The bands' kernel and bias gradients are summed in groups that do not follow the threads."""
    x, kernel, bias, strides, padding, _ = _data(rng, (3, 26, 7, 3, (3, 3), 4, 1, "same", "im2col"), np.float32)
    dout = rng.normal(size=(3, 26, 7, 4)).astype(np.float32)
    monkeypatch.setattr(fastdl._parallel, "MIN_WORK_PER_THREAD", 1)
    results = {}
    for n_threads in (1, 2, 3):
        fastdl.set_num_threads(n_threads)
        results[n_threads] = (conv2d(x, kernel, bias, padding=padding, backend=backend),
                              *conv2d_grad(x, kernel, dout, padding=padding, backend=backend))
    for n_threads in (2, 3):
        for got, want in zip(results[n_threads], results[1]):
            np.testing.assert_array_equal(got, want)


def test_bands_run_the_callers_backend(rng, banded, monkeypatch):
    """Pool threads do not see use_backend's context: the bands take the calling thread's backend."""
    ready = [name for name in ("numba", "cython") if fastdl.backend_status()[name][0]]
    if not ready:
        pytest.skip("no compiled backend to tell from the process default")
    x, kernel, bias, strides, padding, _ = _data(rng, CONFIGS[0], np.float32)
    dout = rng.normal(size=(*x.shape[:3], kernel.shape[3])).astype(np.float32)
    monkeypatch.setattr(fastdl._parallel, "MIN_WORK_PER_THREAD", 1)
    fastdl.set_num_threads(2)
    fastdl.set_backend(ready[0])
    lookup, used, threads = fastdl.backend.kernels, set(), set()

    def kernels(family, backend=None):
        module, name = lookup(family, backend)
        used.add(name)
        threads.add(threading.get_ident())
        return module, name

    monkeypatch.setattr(fastdl.backend, "kernels", kernels)
    with fastdl.use_backend("numpy"):
        conv2d(x, kernel, bias, padding=padding)
        conv2d_grad(x, kernel, dout, padding=padding)
    assert used == {"numpy"} and len(threads) == 2


def test_transposed_convolution_at_stride_1(backend, dtype, rng, banded, band_runs, monkeypatch):
    """conv2d_transpose at stride 1 is a convolution with the flipped kernel: banded as well."""
    x = rng.normal(size=(1, 14, 5, 3)).astype(dtype)
    kernel = rng.normal(size=(3, 3, 2, 3)).astype(dtype)
    bias = rng.normal(size=2).astype(dtype)
    out = conv2d_transpose(x, kernel, bias, padding="same", backend=backend)
    dout = rng.normal(size=out.shape).astype(dtype)
    grads = conv2d_transpose_grad(x, kernel, dout, padding="same", backend=backend)
    assert len(band_runs) == 3
    _close(out, naive.conv2d_transpose(x, kernel, bias, 1, "same"), dtype, 18)
    _close(out, _unbanded(monkeypatch, conv2d_transpose, x, kernel, bias, padding="same", backend=backend), dtype, 18)
    unbanded = _unbanded(monkeypatch, conv2d_transpose_grad, x, kernel, dout, padding="same", backend=backend)
    for got, want in zip(grads, unbanded):
        _close(got, want, dtype, 70)


def _model(dtype):
    """im2col, few taps, Winograd and a strided im2col layer."""
    return nn.Sequential([nn.Input((20, 7, 3)), nn.Conv2D(4, 3, padding="same", activation="relu"),
                          nn.Conv2D(16, 3, padding="same", activation="tanh"),
                          nn.Conv2D(16, 3, padding="same", activation="relu"),
                          nn.Conv2D(3, 5, strides=2, padding="same"),
                          nn.GlobalAveragePooling2D(), nn.Dense(2, activation="softmax")], seed=0, dtype=dtype)


def test_model_predict_and_train_step(dtype, rng, monkeypatch, band_runs):
    """A model of convolutions predicts and trains on one image banded as it does unbanded."""
    x = rng.random((1, 20, 7, 3)).astype(dtype)
    runs = predict_and_step_unbanded_and_banded(monkeypatch, band_runs, lambda: _model(dtype), x, np.array([1]))
    (predicted, loss, weights, calls), (banded_predicted, banded_loss, banded_weights, banded_calls) = runs
    # predict and the step's forward pass: 4 layers each; the backward pass: 2 phases a layer.
    assert calls == 0 and banded_calls == 4 + 4 + 2 * 4
    _close(banded_predicted, predicted, dtype, 100)
    _close(banded_loss, loss, dtype, 100)
    for got, want in zip(banded_weights, weights):
        _close(got, want, dtype, 100)


def _layer_inputs(model):
    return [(layer, layer.input_shape) for layer in model.layers if type(layer) is nn.Conv2D]


def test_course_models_are_not_banded():
    """The course's models (28x28 to 150x150 images) keep their plans: no layer is near banding."""
    from fastdl.repro import a5_models, a6_models, models

    built = [models.course_cnn(), models.course_cnn((32, 32, 3))]
    for shape in ((64, 64, 3), (32, 32, 1)):
        built += [a6_models.conv_net(shape, 1, "critic", seed=0),
                  a6_models.deconv_net(16, shape, "sigmoid", "generator", seed=0)]
    for model in built:
        model.build()
    built += [a5_models.compiled_model(key) for key in ("regression_mse", "classes_720", "multihead", "hands")]
    layers = [item for model in built for item in _layer_inputs(model)]
    assert len(layers) >= 20
    for dtype in (np.float32, np.float64):
        for layer, shape in layers:
            x = np.broadcast_to(np.zeros((), dtype), (100, *shape))  # shapes and dtype alone: nothing allocated
            kernel = layer.kernel.value.astype(dtype)
            assert conv_ops._Bands.of(x, kernel, layer._geometry) is None, (layer.name, shape)
            # ... nor would be at half the threshold (the clock CNN's 74x74x32 layer takes 2.5
            # budgets of Winograd tiles in float64).
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(conv_ops, "BAND_FACTOR", conv_ops.BAND_FACTOR / 2)
                assert conv_ops._Bands.of(x, kernel, layer._geometry) is None, (layer.name, shape)


@pytest.mark.parametrize("shape, kernel_size, grad", [((1, 512, 512, 4), 5, False), ((1, 512, 512, 4), 5, True),
                                                      ((1, 320, 256, 32), 3, False), ((1, 320, 256, 32), 3, True)],
                         ids=["im2col", "im2col-grad", "winograd", "winograd-grad"])
def test_one_big_image_takes_little_memory(backend, rng, shape, kernel_size, grad):
    """One 512x512 image's 5x5 patch matrix would be 105 MB, a 320x256x32 image's Winograd tiles
    84 MB: in bands each thread's work arrays stay near the budget (regression: the whole
    image's was allocated)."""
    x = rng.random(shape, dtype=np.float32)
    kernel = rng.random((kernel_size, kernel_size, shape[3], shape[3]), dtype=np.float32) - 0.5
    dout = x.copy()
    conv2d(x[:, :40], kernel, padding="same", backend=backend)  # compiled outside the trace
    tracemalloc.start()
    try:
        if grad:
            conv2d_grad(x, kernel, dout, padding="same", backend=backend)
        else:
            conv2d(x, kernel, padding="same", backend=backend)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    outputs = (1 + grad) * x.nbytes  # the output, or dx and dout's copies
    assert peak < outputs + 24 * 2**20, f"{peak / 2**20:.0f} MB"
