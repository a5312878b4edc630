"""Matrix products on the device for the cuda kernels: cuBLAS through CuPy where CuPy is installed
(about ten times a plain kernel's speed on an H200), else a shared-memory tiled numba.cuda kernel.
numba's simulator runs the threads of a block that share memory as Python threads in lock step,
which makes the tiled kernel some forty times slower there than a plain one thread per entry
kernel: the simulator (the tests' device) takes the plain one; the tiled one has its own tests.

gemm(a, b, out, transpose_a, transpose_b) writes out = op(a) @ op(b), op(x) = x.T where asked, as
BLAS does: for 2-D device arrays of one float dtype, each read in place. A transpose is a flag, not
`a.T`: numba's `.T` of a device array is a copy made by a kernel of its own.
"""

import math

import numba
import numpy as np
from numba import cuda

# Threads per block side and shared tile side; the simulator runs a thread as Python, so there
# a small tile keeps tiny test products quick.
TILE = 4 if numba.config.ENABLE_CUDASIM else 16


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
    def kernel(a, b, out, transpose_a, transpose_b):
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
            out[row, col] = total

    return kernel


def _plain(element_type):
    @cuda.jit
    def kernel(a, b, out, transpose_a, transpose_b):
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
        out[row, col] = total

    return kernel


_KERNELS = {}


def gemm(a, b, out, transpose_a=False, transpose_b=False):
    """out (m, n) = op(a) @ op(b), op(x) = x.T where transpose_x: device arrays of one float dtype."""
    if out.shape[0] == 0 or out.shape[1] == 0:
        return
    cupy = _cupy()
    if cupy is not None:
        left, right = cupy.asarray(a), cupy.asarray(b)  # CuPy's .T is a view
        cupy.matmul(left.T if transpose_a else left, right.T if transpose_b else right, out=cupy.asarray(out))
        return
    dtype = np.dtype(out.dtype)
    if dtype not in _KERNELS:
        kind = _plain if numba.config.ENABLE_CUDASIM else _tiled
        _KERNELS[dtype] = kind(numba.from_dtype(dtype))
    if numba.config.ENABLE_CUDASIM:  # rows down x, columns down y
        grid, block = (math.ceil(out.shape[0] / 16), math.ceil(out.shape[1] / 16)), (16, 16)
    else:
        grid, block = (math.ceil(out.shape[1] / TILE), math.ceil(out.shape[0] / TILE)), (TILE, TILE)
    _KERNELS[dtype][grid, block](a, b, out, bool(transpose_a), bool(transpose_b))
