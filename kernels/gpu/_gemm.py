"""Matrix products on the device for the cuda kernels: cuBLAS through CuPy where CuPy is installed
(about ten times a plain kernel's speed on an H200), else a shared-memory tiled numba.cuda kernel.
numba's simulator runs the threads of a block that share memory as Python threads in lock step,
which makes the tiled kernel some forty times slower there than a plain one thread per entry
kernel: the simulator (the tests' device) takes the plain one; the tiled one has its own tests.

gemm(a, b, out) writes out = a @ b for 2-D device arrays of one float dtype; a and b may be
transposed views (a.T), which both paths read in place.
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


def _tiled(element_type):
    @cuda.jit
    def kernel(a, b, out):
        a_tile = cuda.shared.array((TILE, TILE), element_type)
        b_tile = cuda.shared.array((TILE, TILE), element_type)
        ty, tx = cuda.threadIdx.y, cuda.threadIdx.x
        row = cuda.blockIdx.y * TILE + ty
        col = cuda.blockIdx.x * TILE + tx
        n_inner = a.shape[1]
        total = element_type(0)
        for start in range(0, n_inner, TILE):
            k = start + tx
            a_tile[ty, tx] = a[row, k] if row < a.shape[0] and k < n_inner else 0
            k = start + ty
            b_tile[ty, tx] = b[k, col] if k < n_inner and col < b.shape[1] else 0
            cuda.syncthreads()
            for i in range(TILE):
                total += a_tile[ty, i] * b_tile[i, tx]
            cuda.syncthreads()
        if row < out.shape[0] and col < out.shape[1]:
            out[row, col] = total

    return kernel


def _plain(element_type):
    @cuda.jit
    def kernel(a, b, out):
        row, col = cuda.grid(2)
        if row >= out.shape[0] or col >= out.shape[1]:
            return
        total = element_type(0)
        for k in range(a.shape[1]):
            total += a[row, k] * b[k, col]
        out[row, col] = total

    return kernel


_KERNELS = {}


def gemm(a, b, out):
    """out (m, n) = a (m, k) @ b (k, n), device arrays of one float dtype."""
    if out.shape[0] == 0 or out.shape[1] == 0:
        return
    cupy = _cupy()
    if cupy is not None:
        cupy.matmul(cupy.asarray(a), cupy.asarray(b), out=cupy.asarray(out))
        return
    dtype = np.dtype(out.dtype)
    if dtype not in _KERNELS:
        kind = _plain if numba.config.ENABLE_CUDASIM else _tiled
        _KERNELS[dtype] = kind(numba.from_dtype(dtype))
    if numba.config.ENABLE_CUDASIM:  # rows down x, columns down y
        grid, block = (math.ceil(out.shape[0] / 16), math.ceil(out.shape[1] / 16)), (16, 16)
    else:
        grid, block = (math.ceil(out.shape[1] / TILE), math.ceil(out.shape[0] / TILE)), (TILE, TILE)
    _KERNELS[dtype][grid, block](a, b, out)
