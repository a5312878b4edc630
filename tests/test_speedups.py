"""The layouts and shortcuts of the fast paths: the input gradients' kernels made C-contiguous
(transposed, not read through a transposed view), and fit's NaN check of x done once."""

import numpy as np
import pytest

import fastdl
import fastdl._parallel
import fastdl.nn.batches
from fastdl import nn
from fastdl.backend import kernels as backend_kernels
from fastdl.ops import _toom_cook, _winograd, conv2d_grad, conv_transpose
from fastdl.ops import conv as conv_ops

from conftest import ready_backends
import naive


def _split_everything(monkeypatch, n_threads):
    """n_threads, and (above one) every pass split over them, however little its work."""
    fastdl.set_num_threads(n_threads)
    monkeypatch.setattr(fastdl._parallel, "MIN_WORK_PER_THREAD", 1 if n_threads > 1 else 1 << 22)


@pytest.mark.parametrize("channels", [(64, 64), (64, 80), (70, 90), (128, 64)], ids=str)
def test_large_tiles_transposed_kernel_is_the_transpose(dtype, rng, monkeypatch, channels):
    """F(4x4, 3x3)'s input gradient kernel (points, out, in) holds the forward transform,
    C-contiguous, with the same bits for any thread count (blocks of output channels, not all
    multiples of 16). Its GEMMs have other shapes than the forward's, whose bits some BLAS builds
    do not give (OpenBLAS 0.3.31's Haswell kernels on an AVX-512 EPYC round a product's columns
    by their place in it): the forward's values within a 9-term float sum's rounding."""
    in_channels, out_channels = channels
    kernel = rng.normal(size=(3, 3, in_channels, out_channels)).astype(dtype)
    geometry = conv_ops._geometry((2, 13, 14, in_channels), kernel.shape, 1, "same")
    large = _winograd.large_tiles_plan(kernel.shape, geometry, np.dtype(dtype))
    forward = [u.copy() for u in large.transform_kernel(kernel, "test forward kernel")]
    exact = large._g_g.astype(np.float64) @ kernel.reshape(9, -1).astype(np.float64)
    bound = 16 * np.finfo(dtype).eps * np.abs(large._g_g.astype(np.float64)) @ np.abs(kernel.reshape(9, -1))
    first = None
    for n_threads in (1, 3):
        _split_everything(monkeypatch, n_threads)
        transposed = large.transform_kernel(kernel, "test transposed kernel", transposed=True)
        assert isinstance(transposed, _toom_cook.TransposedKernels)
        assert len(transposed) == len(forward) > 1
        for u, u_t in zip(forward, transposed):
            assert u_t.flags.c_contiguous and u_t.shape == (len(u), out_channels, in_channels)
        whole = np.concatenate([u_t.transpose(0, 2, 1) for u_t in transposed]).reshape(exact.shape)
        assert np.all(np.abs(whole - exact) <= bound)
        assert np.all(np.abs(np.concatenate(forward).reshape(exact.shape) - exact) <= bound)
        if first is None:
            first = [u_t.copy() for u_t in transposed]
        for u_t, u_first in zip(transposed, first):
            np.testing.assert_array_equal(u_t, u_first)


def _subpixel_case(rng, dtype, in_channels=24, filters=20):
    x = rng.normal(size=(3, 6, 7, in_channels)).astype(dtype)
    kernel = rng.normal(size=(3, 3, filters, in_channels)).astype(dtype)
    geometry = conv_transpose.transpose_geometry(x.shape, kernel.shape, 2, "same")
    plan = conv_transpose._plan(x.shape, kernel.shape, geometry, dtype)["subpixel"]
    assert plan is not None
    dout = rng.normal(size=(3, *geometry[0], filters)).astype(dtype)
    return x, kernel, dout, plan


def test_subpixel_transposed_kernels(dtype, rng, monkeypatch):
    """Plan.transform_kernels(transposed=True) is the forward layout's transpose, C-contiguous, for
    any thread count; Plan.backward takes either layout, the same partial and bias sums and the
    same input gradient (to rounding: BLAS may order a GEMM's sums otherwise for a transposed
    operand)."""
    x, kernel, dout, plan = _subpixel_case(rng, dtype)
    forward = plan.transform_kernels(kernel)
    assert not isinstance(forward, _toom_cook.TransposedKernels)
    for n_threads in (1, 3):
        _split_everything(monkeypatch, n_threads)
        transposed = plan.transform_kernels(kernel, transposed=True)
        assert isinstance(transposed, _toom_cook.TransposedKernels)
        for u, u_t in zip(forward, transposed):
            assert u_t.flags.c_contiguous
            np.testing.assert_array_equal(u_t, u.transpose(0, 2, 1))
    kernels = backend_kernels("winograd", "numba")[0]
    results = []
    for layout in (forward, transposed):
        partial, bias_sum, dx = np.zeros(plan.partial_shape, dtype), np.zeros(dout.shape[3]), np.empty_like(x)
        plan.backward(x, dout, layout, partial, dx, bias_sum, kernels)
        results.append((partial, bias_sum, dx))
    (partial, bias_sum, dx), (partial_t, bias_sum_t, dx_t) = results
    np.testing.assert_array_equal(partial_t, partial)
    np.testing.assert_array_equal(bias_sum_t, bias_sum)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(dx_t, dx, rtol=rtol, atol=rtol * np.abs(dx).max())
    want = naive.conv2d(dout.astype(np.float64), kernel.astype(np.float64), None, 2, "same")  # the input gradient
    np.testing.assert_allclose(dx_t, want, rtol=100 * rtol, atol=100 * rtol * np.abs(want).max())


def test_turned_kernel_is_c_contiguous(dtype, rng):
    """F(2x2, 3x3)'s input gradient kernel is an array of its own layout, not a transposed view."""
    kernel = rng.normal(size=(3, 3, 5, 7)).astype(dtype)
    turned = _winograd.turned_kernel(_winograd.transform_kernel(kernel, "kernel"), "turned")
    assert turned.shape == (16, 7, 5) and turned.flags.c_contiguous


CASES = {  # n, h, w, in, kernel, out, stride, padding: one per path of the backward pass
    "im2col": (5, 12, 12, 7, 3, 9, 2, "valid"),
    "1x1": (4, 6, 5, 8, 1, 12, 1, "valid"),
    "F(2x2)": (4, 9, 9, 20, 3, 24, 1, "same"),
    "F(4x4)": (4, 13, 13, 64, 3, 72, 1, "same"),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_input_gradient_same_bits_for_every_backend_and_thread_count(rng, monkeypatch, case):
    """dx (whose kernel is transposed once a call, on fastdl's threads) is the same bits for 1 to 3
    threads with every pass split and for every compiled backend, and agrees with the reference."""
    n, h, w, in_channels, k, out_channels, stride, padding = CASES[case]
    x = rng.normal(size=(n, h, w, in_channels)).astype(np.float32)
    kernel = (rng.normal(size=(k, k, in_channels, out_channels)) / (k * np.sqrt(in_channels))).astype(np.float32)
    geometry = conv_ops._geometry(x.shape, kernel.shape, stride, padding)
    dout = rng.normal(size=(n, *geometry[2], out_channels)).astype(np.float32)
    plan = conv_ops._plan(x, kernel, geometry, np.float32)
    path = "F(4x4)" if plan["large_tiles"] else "F(2x2)" if plan["winograd"] else "1x1" if plan["direct"] else "im2col"
    assert path == case and not plan["kn2row"]
    results = []
    for backend in [name for name in ready_backends() if name != "numpy"]:
        for n_threads in (1, 2, 3):
            _split_everything(monkeypatch, n_threads)
            results.append(conv2d_grad(x, kernel, dout, strides=stride, padding=padding, backend=backend)[0])
    for dx in results[1:]:
        np.testing.assert_array_equal(dx, results[0])
    want = naive.conv2d_grad(x.astype(np.float64), kernel.astype(np.float64), dout.astype(np.float64), stride,
                             padding)[0]
    np.testing.assert_allclose(results[0], want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def _blobs(n, rng):
    x = rng.normal(size=(n, 8)).astype(np.float32)
    return x, rng.integers(0, 3, n)


def _mlp():
    model = nn.Sequential([nn.Dense(8, activation="relu", input_shape=(8,)), nn.Dense(3)], seed=0)
    model.compile(nn.SGD(0.01), "sparse_categorical_crossentropy")
    return model


def _count_checks(monkeypatch):
    """A list that fit's NaN checks of batches append their row counts to."""
    checked, check = [], fastdl.nn.batches.all_finite

    def counting(array):
        checked.append(len(array))
        return check(array)

    monkeypatch.setattr(fastdl.nn.batches, "all_finite", counting)
    return checked


def test_fit_checks_its_arrays_once_before_training(rng, monkeypatch):
    # x whole, once a fit, in one pass (fastdl's threads), not batch by batch; validation x too.
    x, y = _blobs(100, rng)
    checked = _count_checks(monkeypatch)
    _mlp().fit(x, y, batch_size=32, epochs=3)
    assert checked == [100]
    checked.clear()
    _mlp().fit(x, y, batch_size=32, epochs=3, validation_split=0.2)
    assert checked[:2] == [80, 20]


@pytest.mark.parametrize("shuffle", [False, True])
def test_fit_names_the_sample_with_nan_and_trains_nothing(rng, shuffle):
    x, y = _blobs(100, rng)
    x[90, 3], x[95, 0] = np.nan, np.inf
    model = _mlp()
    before = model.get_weights()
    with pytest.raises(ValueError, match=r"^x\[90\] holds NaN or infinity: nothing was trained"):
        model.fit(x, y, batch_size=32, epochs=3, shuffle=shuffle)
    for now, then in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(now, then)
    assert model.optimizer.iterations == 0 and model.epochs_trained == 0


def test_fit_names_data_beyond_the_model_dtypes_range(rng):
    # float64 data a float32 model would take as infinity; validation x is checked before training too.
    x, y = _blobs(100, rng)
    wide = x.astype(np.float64)
    wide[7, 1] = -1e39
    with pytest.raises(ValueError, match=r"^x\[7\] holds NaN or infinity or a value beyond float32's range"):
        _mlp().fit(wide, y, epochs=1)
    model = _mlp()
    with pytest.raises(ValueError, match=r"^validation x\[3\] holds NaN or infinity or a value beyond"):
        model.fit(x, y, epochs=1, validation_data=(wide[4:], y[4:]))
    assert model.optimizer.iterations == 0
    with pytest.raises(ValueError, match=r"^x\[100\] \(in the validation split\) holds NaN"):
        _mlp().fit(np.vstack([x, x[:2] * np.nan]), np.concatenate([y, y[:2]]), epochs=1, validation_split=0.02)


def test_fit_checks_strided_x_too(rng):
    # A view with a column stride is checked a block of rows at a time (no copy of all of x).
    wide = rng.normal(size=(100, 16)).astype(np.float32)
    wide[61, 6] = np.inf
    wide[62, 7] = np.nan  # a column the view leaves out
    with pytest.raises(ValueError, match=r"^x\[61\] holds NaN or infinity"):
        _mlp().fit(wide[:, ::2], rng.integers(0, 3, 100), epochs=1)


def test_fit_checks_each_fit_afresh(rng, monkeypatch):
    """A second fit (resuming) checks x again: x may have changed between the calls."""
    x, y = _blobs(64, rng)
    model = _mlp()
    model.fit(x, y, batch_size=32, epochs=2)
    x[40, 0] = np.nan
    with pytest.raises(ValueError, match=r"^x\[40\] holds NaN"):
        model.fit(x, y, batch_size=32, epochs=2, shuffle=False)
