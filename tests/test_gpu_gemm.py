"""The cuda backend's matrix products and array helpers (kernels/gpu/_gemm.py, _arrays.py) against NumPy.

Both GEMM kernels run here: the tiled one that a device without CuPy uses, and the plain one that
the simulator uses for the layers' products. Shapes are not multiples of the tile, and either
operand may be read transposed (a flag, as BLAS takes it), as the backward passes do.
"""

import math

import numba
import numpy as np
import pytest

from host_as_device import HostAsDevice

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize("kind", ["_tiled", "_plain"])
@pytest.mark.parametrize("transpose_a, transpose_b", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_kernels(cuda_backend, kind, transpose_a, transpose_b, accumulate, dtype):
    """out = op(a) @ op(b) (out += with accumulate) with the operands read in place through the
    transpose flags."""
    from numba import cuda

    from fastdl.kernels.gpu import _gemm

    rng = np.random.default_rng(0)
    a = rng.standard_normal((7, 5) if transpose_a else (5, 7)).astype(dtype)
    b = rng.standard_normal((6, 7) if transpose_b else (7, 6)).astype(dtype)
    start = rng.standard_normal((5, 6)).astype(dtype)
    out = cuda.to_device(start)
    kernel = getattr(_gemm, kind)(numba.from_dtype(np.dtype(dtype)))
    if kind == "_tiled":
        grid, block = (math.ceil(6 / _gemm.TILE), math.ceil(5 / _gemm.TILE)), (_gemm.TILE, _gemm.TILE)
    else:
        grid, block = (1, 1), (8, 8)
    kernel[grid, block](cuda.to_device(a), cuda.to_device(b), out, transpose_a, transpose_b, accumulate)
    expected = (a.T if transpose_a else a) @ (b.T if transpose_b else b) + (start if accumulate else 0)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out.copy_to_host(), expected, rtol=tol, atol=tol)

    result = cuda.to_device(start)  # the entry point the ops call
    _gemm.gemm(cuda.to_device(a), cuda.to_device(b), result, transpose_a, transpose_b, accumulate)
    np.testing.assert_allclose(result.copy_to_host(), expected, rtol=tol, atol=tol)


def test_array_helpers(cuda_backend):
    from numba import cuda

    from fastdl.kernels.gpu import _arrays

    rng = np.random.default_rng(1)
    source = rng.standard_normal((5, 3)).astype(np.float32)
    rows = np.array([4, 0, 4], np.int64)
    out = cuda.device_array((3, 3), np.float32)
    _arrays.take_rows(cuda.to_device(source), cuda.to_device(rows), out)
    np.testing.assert_array_equal(out.copy_to_host(), source[rows])

    a, b = rng.standard_normal(7), rng.standard_normal(7)
    result = cuda.to_device(b)
    _arrays.add(cuda.to_device(a), result, result)
    np.testing.assert_array_equal(result.copy_to_host(), a + b)
    _arrays.scale(cuda.to_device(a), 0.5, result)
    np.testing.assert_array_equal(result.copy_to_host(), a * 0.5)
    _arrays.add_scaled(cuda.to_device(a), 2.0, result)
    np.testing.assert_array_equal(result.copy_to_host(), a * 0.5 + a * 2.0)


class _ColumnMajorBlas:
    """cuBLAS' gemm contract (column-major, leading dimensions, op flags, host alpha and beta) on host memory."""

    CUBLAS_OP_N, CUBLAS_OP_T, CUBLAS_POINTER_MODE_HOST = 0, 1, 0

    def setStream(self, handle, stream):  # noqa: N802 - cuBLAS' name
        assert stream == 0

    def setPointerMode(self, handle, mode):  # noqa: N802
        assert mode == self.CUBLAS_POINTER_MODE_HOST

    @staticmethod
    def _matrix(pointer, rows, cols, lead, dtype):
        import ctypes

        itemsize = np.dtype(dtype).itemsize
        size = ((cols - 1) * lead + rows) * itemsize
        memory = (ctypes.c_char * size).from_address(pointer)
        return np.ndarray((rows, cols), dtype, buffer=memory, strides=(itemsize, lead * itemsize))

    def _gemm(self, dtype, handle, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        scalar = lambda pointer: self._matrix(pointer, 1, 1, 1, dtype)[0, 0]  # noqa: E731
        op_a = self._matrix(a, k, m, lda, dtype).T if transa == self.CUBLAS_OP_T else self._matrix(a, m, k, lda, dtype)
        op_b = self._matrix(b, n, k, ldb, dtype).T if transb == self.CUBLAS_OP_T else self._matrix(b, k, n, ldb, dtype)
        out = self._matrix(c, m, n, ldc, dtype)
        out[...] = scalar(alpha) * (op_a.astype(np.float64) @ op_b) + (scalar(beta) * out if scalar(beta) else 0)

    def sgemm(self, *args):
        self._gemm(np.float32, *args)

    def dgemm(self, *args):
        self._gemm(np.float64, *args)


@pytest.mark.parametrize("transpose_a, transpose_b", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cublas_call_maps_row_major_products(transpose_a, transpose_b, accumulate, dtype):
    """_Cublas asks column-major cuBLAS for out^T = op(b)^T op(a)^T with the row strides as leading
    dimensions: checked against cuBLAS' contract run on host memory, with row slices of wider
    arrays (leading dimension > columns) as the layers pass them."""
    from types import SimpleNamespace

    from fastdl.kernels.gpu import _gemm

    rng = np.random.default_rng(3)
    wide_a = rng.standard_normal((9, 11)).astype(dtype)
    wide_b = rng.standard_normal((8, 10)).astype(dtype)
    a = wide_a[1:8, 2:7] if transpose_a else wide_a[2:7, 1:8]  # op(a): 5 x 7
    b = wide_b[1:7, :7] if transpose_b else wide_b[:7, 2:8]  # op(b): 7 x 6
    out = rng.standard_normal((5, 6)).astype(dtype)
    expected = (a.T if transpose_a else a).astype(np.float64) @ (b.T if transpose_b else b) + (out if accumulate else 0)
    fake_cupy = SimpleNamespace(cuda=SimpleNamespace(device=SimpleNamespace(get_cublas_handle=lambda: 7)))
    cublas = _gemm._Cublas(fake_cupy, _ColumnMajorBlas())
    assert cublas(HostAsDevice(a), HostAsDevice(b), HostAsDevice(out), transpose_a, transpose_b, accumulate)
    np.testing.assert_allclose(out, expected, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_cublas_call_declines_what_it_cannot_take():
    """Arrays whose rows are not contiguous, and empty inner dimensions, go to cupy.matmul instead."""
    from types import SimpleNamespace

    from fastdl.kernels.gpu import _gemm

    cublas = _gemm._Cublas(SimpleNamespace(), _ColumnMajorBlas())
    wide = np.zeros((6, 8), np.float32)
    out = np.zeros((3, 3), np.float32)
    flags = (False, False, False)
    assert not cublas(HostAsDevice(wide[:3, ::2]), HostAsDevice(wide[:4, :3]), HostAsDevice(out), *flags)
    assert not cublas(HostAsDevice(wide[:3, :0]), HostAsDevice(wide[:0, :3]), HostAsDevice(out), *flags)


def test_cublas_reads_each_arrays_layout_once():
    """A layer's buffers come back every step: their pointers and strides are read once per array
    (numba builds __cuda_array_interface__ in Python), and forgotten with the array."""
    from types import SimpleNamespace

    from fastdl.kernels.gpu import _gemm

    reads = []

    class Counted(HostAsDevice):
        @property
        def __cuda_array_interface__(self):
            reads.append(self)
            return HostAsDevice.__cuda_array_interface__.fget(self)

    rng = np.random.default_rng(5)
    a, b = Counted(rng.standard_normal((4, 3))), Counted(rng.standard_normal((3, 2)))
    out = Counted(np.zeros((4, 2)))
    fake_cupy = SimpleNamespace(cuda=SimpleNamespace(device=SimpleNamespace(get_cublas_handle=lambda: 7)))
    cublas = _gemm._Cublas(fake_cupy, _ColumnMajorBlas())
    for _ in range(3):
        assert cublas(a, b, out, False, False, False)
    assert len(reads) == 3
    np.testing.assert_allclose(out.array, a.array @ b.array)
    other = Counted(np.zeros((4, 2)))
    assert cublas(a, b, other, False, False, True)
    assert len(reads) == 4 and len(cublas.layouts) == 4
    np.testing.assert_allclose(other.array, a.array @ b.array)
    del other, reads[:]
    assert len(cublas.layouts) == 3


def test_upload_queues_its_copy_from_staging(cuda_backend, monkeypatch):
    """_device.upload copies through one page-locked staging array per buffer, on a stream, and
    waits for that array's last copy before writing it again; the caller's array is free at once."""
    from fastdl import _device

    waits = []
    real_staging = _device._staging

    def staging(target):
        host, event = real_staging(target)

        class Event:  # the real event, its waits counted
            def synchronize(self):
                waits.append(True)
                event.synchronize()

            def record(self, stream):
                event.record(stream)

        return host, Event()

    monkeypatch.setattr(_device, "_staging", staging)
    cache = {}
    values = np.arange(6, dtype=np.int64)
    first = _device.upload(cache, "targets", values)
    values[:] = -1  # the copy was taken: changing the host array changes nothing on the device
    np.testing.assert_array_equal(first.copy_to_host(), np.arange(6))
    second = _device.upload(cache, "targets", np.arange(6, 12))
    assert second is first and len(waits) == 2
    np.testing.assert_array_equal(second.copy_to_host(), np.arange(6, 12))
    other = _device.upload(cache, "targets", np.zeros((2, 2), np.float32))  # a new shape: a new buffer
    assert other.shape == (2, 2) and other.dtype == np.float32
    assert _device.upload(cache, "none", np.zeros(0)).shape == (0,)


@pytest.mark.parametrize("transpose_a", [False, True])
def test_tiled_gemm_goes_in_slices_of_rows(cuda_backend, monkeypatch, transpose_a):
    """The tiled kernel's grid takes rows of tiles down y, at most 65535 of them (CUDA's limit):
    more rows go in slices, each a launch (here slices of 2 tiles' rows)."""
    from numba import cuda

    from fastdl.kernels.gpu import _gemm

    monkeypatch.setattr(_gemm, "MAX_GRID_Y", 2)
    rng = np.random.default_rng(2)
    rows = 5 * _gemm.TILE + 1  # three slices, the last of one row
    a = rng.standard_normal((3, rows) if transpose_a else (rows, 3))
    b = rng.standard_normal((3, 2))
    out = cuda.device_array((rows, 2))
    _gemm.tiled_gemm(cuda.to_device(a), cuda.to_device(b), out, transpose_a)
    np.testing.assert_allclose(out.copy_to_host(), (a.T if transpose_a else a) @ b, rtol=1e-12)
