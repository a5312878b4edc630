"""The nearest-neighbour upsampling kernels of the pool family (upsample2d and its backward) against
slow loops, on every backend and both dtypes; the compiled backends give the same bits, and the
cuda kernels match the numpy reference (tiny shapes: the simulator runs every thread as Python)."""

import importlib

import numpy as np
import pytest

from conftest import ready_backends
from fastdl.backend import PACKAGES

SIZES = [(1, 1), (2, 2), (2, 3), (3, 1)]


def _kernels(backend):
    return importlib.import_module(f"{PACKAGES[backend]}.pool")


# Slow references: one element at a time ---------------------------------------------------------


def naive_upsample2d(x, size_h, size_w):
    n_images, h, w, c = x.shape
    out = np.empty((n_images, h * size_h, w * size_w, c), x.dtype)
    for n in range(n_images):
        for i in range(h * size_h):
            for j in range(w * size_w):
                for ch in range(c):
                    out[n, i, j, ch] = x[n, i // size_h, j // size_w, ch]
    return out


def naive_upsample2d_backward(dout, size_h, size_w):
    """Each block's sum in dout's dtype, from zero, block rows outer and columns inner."""
    n_images, out_h, out_w, c = dout.shape
    dx = np.empty((n_images, out_h // size_h, out_w // size_w, c), dout.dtype)
    for n in range(n_images):
        for i in range(dx.shape[1]):
            for j in range(dx.shape[2]):
                for ch in range(c):
                    total = dout.dtype.type(0)
                    for a in range(size_h):
                        for b in range(size_w):
                            total += dout[n, i * size_h + a, j * size_w + b, ch]
                    dx[n, i, j, ch] = total
    return dx


def _images(rng, dtype, shape):
    return rng.standard_normal(shape).astype(dtype)


def _forward(kernels, x, size_h, size_w, n_threads):
    n_images, h, w, c = x.shape
    out = np.full((n_images, h * size_h, w * size_w, c), np.nan, x.dtype)
    kernels.upsample2d(x, out, size_h, size_w, n_threads)
    return out


def _backward(kernels, dout, size_h, size_w, n_threads):
    n_images, out_h, out_w, c = dout.shape
    dx = np.full((n_images, out_h // size_h, out_w // size_w, c), np.nan, dout.dtype)  # overwritten
    kernels.upsample2d_backward(dout, dx, size_h, size_w, n_threads)
    return dx


# CPU backends -----------------------------------------------------------------------------------


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_upsample2d(backend, dtype, size, n_threads, rng):
    x = _images(rng, dtype, (3, 4, 5, 3))
    out = _forward(_kernels(backend), x, *size, n_threads)
    np.testing.assert_array_equal(out, naive_upsample2d(x, *size))


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_upsample2d_backward(backend, dtype, size, n_threads, rng):
    size_h, size_w = size
    dout = _images(rng, dtype, (3, 4 * size_h, 5 * size_w, 3))
    dx = _backward(_kernels(backend), dout, size_h, size_w, n_threads)
    # The reference sums in the kernels' order and dtype: the same bits, not just close.
    np.testing.assert_array_equal(dx, naive_upsample2d_backward(dout, size_h, size_w))
    np.testing.assert_allclose(dx, dout.astype(np.float64).reshape(3, 4, size_h, 5, size_w, 3).sum(axis=(2, 4)),
                               rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


def test_backward_is_the_adjoint_of_forward(backend, rng):
    """<upsample(x), dout> == <x, upsample_backward(dout)> in float64."""
    kernels = _kernels(backend)
    x = _images(rng, np.float64, (2, 3, 4, 2))
    dout = _images(rng, np.float64, (2, 6, 12, 2))
    lhs = np.vdot(_forward(kernels, x, 2, 3, 1), dout)
    rhs = np.vdot(x, _backward(kernels, dout, 2, 3, 1))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_empty_batch(backend, dtype, n_threads):
    kernels = _kernels(backend)
    x = np.empty((0, 3, 4, 2), dtype)
    out = np.empty((0, 6, 12, 2), dtype)
    kernels.upsample2d(x, out, 2, 3, n_threads)
    dx = np.empty((0, 3, 4, 2), dtype)
    kernels.upsample2d_backward(out, dx, 2, 3, n_threads)


def test_compiled_backends_give_the_same_bits(dtype):
    compiled = [name for name in ready_backends() if name != "numpy"]
    if len(compiled) < 2:
        pytest.skip(f"fewer than two compiled backends ready here: {compiled}")
    results = {}
    for backend in compiled:
        rng = np.random.default_rng(5)
        kernels = _kernels(backend)
        x = _images(rng, dtype, (4, 5, 3, 7))
        # A wide spread of magnitudes, so a different summation order would change bits.
        dout = (_images(rng, dtype, (4, 15, 6, 7)) * np.exp(rng.uniform(-8, 8, (4, 15, 6, 7)))).astype(dtype)
        for n_threads in (1, 2):
            results[backend, n_threads] = (_forward(kernels, x, 3, 2, n_threads),
                                           _backward(kernels, dout, 3, 2, n_threads))
    first = next(iter(results.values()))
    for key, (out, dx) in results.items():
        np.testing.assert_array_equal(out, first[0], err_msg=str(key))
        np.testing.assert_array_equal(dx, first[1], err_msg=str(key))


# cuda -------------------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.parametrize("size", [(1, 1), (2, 3)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_cuda_kernels_match_the_numpy_reference(cuda_backend, dtype, size):
    from numba import cuda

    gpu, reference = _kernels(cuda_backend), _kernels("numpy")
    size_h, size_w = size
    rng = np.random.default_rng(7)
    x = _images(rng, dtype, (2, 3, 2, 2))
    dout = _images(rng, dtype, (2, 3 * size_h, 2 * size_w, 2))

    d_out = cuda.device_array((2, 3 * size_h, 2 * size_w, 2), dtype)
    gpu.upsample2d(cuda.to_device(x), d_out, size_h, size_w, 1)
    np.testing.assert_array_equal(d_out.copy_to_host(), _forward(reference, x, size_h, size_w, 1))

    d_dx = cuda.to_device(np.full(x.shape, np.nan, dtype))  # overwritten
    gpu.upsample2d_backward(cuda.to_device(dout), d_dx, size_h, size_w, 1)
    # The same sums in the same order and dtype as the numpy reference: the same bits.
    np.testing.assert_array_equal(d_dx.copy_to_host(), _backward(reference, dout, size_h, size_w, 1))


@pytest.mark.cuda
def test_cuda_empty_batch(cuda_backend, dtype):
    from numba import cuda

    gpu = _kernels(cuda_backend)
    gpu.upsample2d(cuda.device_array((0, 2, 2, 2), dtype), cuda.device_array((0, 4, 6, 2), dtype), 2, 3, 1)
    gpu.upsample2d_backward(cuda.device_array((0, 4, 6, 2), dtype), cuda.device_array((0, 2, 2, 2), dtype), 2, 3, 1)
