"""Matrix products on the device for the cuda kernels: cuBLAS through CuPy where CuPy is installed
(about ten times a plain kernel's speed on an H200), else a shared-memory tiled numba.cuda kernel.
numba's simulator runs the threads of a block that share memory as Python threads in lock step,
which makes the tiled kernel some forty times slower there than a plain one thread per entry
kernel: the simulator (the tests' device) takes the plain one; the tiled one has its own tests.

gemm(a, b, out, transpose_a, transpose_b, accumulate) writes out = op(a) @ op(b), op(x) = x.T where
asked (out += with accumulate), as BLAS does: for 2-D device arrays of one float dtype, each read in
place. A transpose is a flag, not `a.T`: numba's `.T` of a device array is a copy made by a kernel
of its own.

cuBLAS is called through CuPy's bindings with the arrays' device pointers (class _Cublas): wrapping
three arrays as CuPy arrays for cupy.matmul costs more host time than a small layer's product
takes on the device. Its first product of each kind is checked against cupy.matmul; a mismatch, or
an error of CuPy's bindings themselves (BindingError), switches them off for the process with a
warning, and cupy.matmul does the products. An error of the arrays given (shapes that do not
multiply, an object without a device pointer) is the caller's and is raised as it is.
"""

import math
import warnings

import numba
import numpy as np
from numba import cuda

from fastdl._device import per_array

# Threads per block side and shared tile side; the simulator runs a thread as Python, so there
# a small tile keeps tiny test products quick.
TILE = 4 if numba.config.ENABLE_CUDASIM else 16
MAX_GRID_Y = 65535  # CUDA's limit on a grid's y (and z) dimension; x takes 2**31 - 1 blocks


def _cupy():
    """CuPy, when installed and numba.cuda is a real device (the simulator has no cuBLAS)."""
    if numba.config.ENABLE_CUDASIM:
        return None
    try:
        import cupy
    except ImportError:
        return None
    return cupy


@cuda.jit(device=True)
def _entry(matrix, i, j, transposed, rows, cols, zero):
    """op(matrix)[i, j] (matrix[j, i] when transposed) for op(matrix) of shape (rows, cols), or zero outside."""
    if i >= rows or j >= cols:
        return zero
    if transposed:
        return matrix[j, i]
    return matrix[i, j]


def _tiled(element_type):
    @cuda.jit
    def kernel(a, b, out, transpose_a, transpose_b, accumulate):
        a_tile = cuda.shared.array((TILE, TILE), element_type)
        b_tile = cuda.shared.array((TILE, TILE), element_type)
        ty, tx = cuda.threadIdx.y, cuda.threadIdx.x
        row = cuda.blockIdx.y * TILE + ty
        col = cuda.blockIdx.x * TILE + tx
        n_rows, n_cols = out.shape
        n_inner = a.shape[0] if transpose_a else a.shape[1]
        zero = element_type(0)
        total = zero
        for start in range(0, n_inner, TILE):
            a_tile[ty, tx] = _entry(a, row, start + tx, transpose_a, n_rows, n_inner, zero)
            b_tile[ty, tx] = _entry(b, start + ty, col, transpose_b, n_inner, n_cols, zero)
            cuda.syncthreads()
            for i in range(TILE):
                total += a_tile[ty, i] * b_tile[i, tx]
            cuda.syncthreads()
        if row < n_rows and col < n_cols:
            if accumulate:
                total += out[row, col]
            out[row, col] = total

    return kernel


def _plain(element_type):
    @cuda.jit
    def kernel(a, b, out, transpose_a, transpose_b, accumulate):
        row, col = cuda.grid(2)
        n_rows, n_cols = out.shape
        if row >= n_rows or col >= n_cols:
            return
        n_inner = a.shape[0] if transpose_a else a.shape[1]
        total = element_type(0)
        for k in range(n_inner):
            left = a[k, row] if transpose_a else a[row, k]
            right = b[col, k] if transpose_b else b[k, col]
            total += left * right
        if accumulate:
            total += out[row, col]
        out[row, col] = total

    return kernel


def _matmul(cupy, a, b, out, transpose_a, transpose_b, accumulate):
    """gemm by cupy.matmul on CuPy views of the arrays (CuPy's .T is a view)."""
    left, right, result = cupy.asarray(a), cupy.asarray(b), cupy.asarray(out)
    product = cupy.matmul(left.T if transpose_a else left, right.T if transpose_b else right,
                          out=None if accumulate else result)
    if accumulate:
        result += product


class BindingError(RuntimeError):
    """A failure of CuPy's cuBLAS bindings (or their product disagreeing with cupy.matmul), not of
    the arrays given: gemm falls back to cupy.matmul for good."""


class _Cublas:
    """cuBLAS sgemm/dgemm on the arrays' device pointers, on the legacy default stream (numba's).

    A row-major matrix is, to column-major cuBLAS, its transpose with the row stride as leading
    dimension, so out = op(a) @ op(b) is asked for as out^T = op(b)^T @ op(a)^T.
    """

    def __init__(self, cupy, cublas):
        self.cupy, self.cublas = cupy, cublas
        self.checked = set()
        self.scalars = {}  # host alpha and beta values, kept alive for their pointers
        # Each array's layout, worked out once: a layer's buffers come back every step, and numba
        # builds __cuda_array_interface__ in Python each time it is read.
        self.layouts = {}

    def _scalar(self, value, dtype):
        key = (value, dtype)
        if key not in self.scalars:
            self.scalars[key] = np.array([value], dtype)
        return self.scalars[key].ctypes.data

    @staticmethod
    def _layout(array):
        """(device pointer, leading dimension) of a 2-D array with unit column stride, else None."""
        interface = array.__cuda_array_interface__
        rows, cols = interface["shape"]
        itemsize = np.dtype(interface["typestr"]).itemsize
        strides = interface["strides"] or (cols * itemsize, itemsize)
        if strides[1] != itemsize and cols > 1:
            return None
        lead = strides[0] // itemsize if rows > 1 else max(cols, 1)
        return (interface["data"][0], lead) if lead >= max(cols, 1) else None

    def __call__(self, a, b, out, transpose_a, transpose_b, accumulate):
        """Whether it ran the product (False: a layout cuBLAS cannot take here). The arrays are read
        first (their errors are the caller's); a failure of the bindings is a BindingError."""
        dtype = np.dtype(out.dtype)
        k = a.shape[0] if transpose_a else a.shape[1]
        layouts = [per_array(self.layouts, x, self._layout) for x in (a, b, out)]
        if k == 0 or None in layouts or dtype not in (np.float32, np.float64):
            return False
        (a_ptr, lda), (b_ptr, ldb), (out_ptr, ldo) = layouts
        m, n = out.shape
        cublas = self.cublas
        try:
            handle = self.cupy.cuda.device.get_cublas_handle()
            cublas.setStream(handle, 0)
            cublas.setPointerMode(handle, cublas.CUBLAS_POINTER_MODE_HOST)
            call = cublas.sgemm if dtype == np.float32 else cublas.dgemm
            call(handle, cublas.CUBLAS_OP_T if transpose_b else cublas.CUBLAS_OP_N,
                 cublas.CUBLAS_OP_T if transpose_a else cublas.CUBLAS_OP_N, n, m, k,
                 self._scalar(1, dtype), b_ptr, ldb, a_ptr, lda, self._scalar(1 if accumulate else 0, dtype),
                 out_ptr, ldo)
        except Exception as error:  # only binding calls above, with plain numbers and pointers
            raise BindingError(f"{type(error).__name__}: {error}") from error
        return True

    def checked_call(self, a, b, out, transpose_a, transpose_b, accumulate):
        """__call__, its first product of each kind checked against cupy.matmul (run first, so that
        arrays that do not multiply raise its error, the caller's, before cuBLAS is tried)."""
        kind = (np.dtype(out.dtype).str, bool(transpose_a), bool(transpose_b), bool(accumulate))
        if kind in self.checked:
            return self(a, b, out, transpose_a, transpose_b, accumulate)
        cupy = self.cupy
        before = cupy.array(cupy.asarray(out))
        expected = cupy.array(before)
        _matmul(cupy, a, b, expected, transpose_a, transpose_b, accumulate)
        try:
            if not self(a, b, out, transpose_a, transpose_b, accumulate):
                return False
            scale = float(cupy.abs(expected).max()) or 1.0
            if float(cupy.abs(cupy.asarray(out) - expected).max()) > 1e-4 * scale:
                raise BindingError(f"cuBLAS through pointers disagrees with cupy.matmul for {kind}")
        except BindingError:
            cupy.asarray(out)[...] = before  # as it was: the caller's fallback starts over
            raise
        self.checked.add(kind)
        return True


_KERNELS = {}
_DIRECT = {}  # "cublas": the _Cublas that products go to, or None once unusable


def _direct(cupy):
    """The _Cublas (made on first use), or None where CuPy's bindings are unusable or failed."""
    if "cublas" not in _DIRECT:
        try:
            from cupy_backends.cuda.libs import cublas

            _DIRECT["cublas"] = _Cublas(cupy, cublas)
        except Exception as error:  # CuPy without its cuBLAS bindings
            _fall_back(f"are unavailable ({error})")
    return _DIRECT["cublas"]


def _fall_back(why):
    warnings.warn(f"fastdl: CuPy's cuBLAS bindings {why}; using cupy.matmul", RuntimeWarning, stacklevel=3)
    _DIRECT["cublas"] = None


def gemm(a, b, out, transpose_a=False, transpose_b=False, accumulate=False):
    """out (m, n) = op(a) @ op(b) (out += with accumulate), op(x) = x.T where transpose_x: device
    arrays of one float dtype."""
    if out.shape[0] == 0 or out.shape[1] == 0:
        return
    cupy = _cupy()
    if cupy is not None:
        direct = _direct(cupy)
        try:
            if direct is not None and direct.checked_call(a, b, out, transpose_a, transpose_b, accumulate):
                return
        except BindingError as error:  # a failed check has put out back as it was
            _fall_back(f"failed ({error})")
        _matmul(cupy, a, b, out, transpose_a, transpose_b, accumulate)
        return
    if numba.config.ENABLE_CUDASIM:  # rows down x, columns down y
        grid, block = (math.ceil(out.shape[0] / 16), math.ceil(out.shape[1] / 16)), (16, 16)
        _kernel(_plain, out.dtype)[grid, block](a, b, out, bool(transpose_a), bool(transpose_b), bool(accumulate))
        return
    tiled_gemm(a, b, out, transpose_a, transpose_b, accumulate)


def _kernel(kind, dtype):
    key = (kind, np.dtype(dtype))
    if key not in _KERNELS:
        _KERNELS[key] = kind(numba.from_dtype(np.dtype(dtype)))
    return _KERNELS[key]


def tiled_gemm(a, b, out, transpose_a=False, transpose_b=False, accumulate=False):
    """gemm by the tiled kernel: columns of tiles down the grid's x, rows of tiles down its y, in
    slices of at most MAX_GRID_Y rows of tiles (a convolution's patch matrix of 100 clocks of
    150x150 has 2.19 million rows: 136,900 tiles)."""
    kernel = _kernel(_tiled, out.dtype)
    rows_per_launch = MAX_GRID_Y * TILE
    for first in range(0, out.shape[0], rows_per_launch):
        rows = slice(first, min(first + rows_per_launch, out.shape[0]))
        part = a[:, rows] if transpose_a else a[rows]
        grid = (math.ceil(out.shape[1] / TILE), math.ceil((rows.stop - rows.start) / TILE))
        kernel[grid, (TILE, TILE)](part, b, out[rows], bool(transpose_a), bool(transpose_b), bool(accumulate))
