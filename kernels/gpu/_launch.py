"""How the cuda kernels are compiled and launched: the decorator, launch shapes, thread indices, and
the column reductions' blocks."""

import math

import numba
from numba import cuda

from fastdl import config

BLOCK = 128  # threads per block of the one-dimensional launches
# A column reduction's block: COLUMNS_PER_BLOCK neighbouring columns (its threads read neighbouring
# entries of a row) by ROW_GROUPS interleaved groups of rows, whose sums a fixed tree in shared memory
# adds (deterministic). The simulator runs each thread as Python: small blocks there.
COLUMNS_PER_BLOCK = 4 if numba.config.ENABLE_CUDASIM else 32
ROW_GROUPS = 2 if numba.config.ENABLE_CUDASIM else 8  # a power of two, for the tree


def kernel(function):
    """cuda.jit(function) with its compiled code cached on disk, as the CPU kernels' (numba's cache,
    beside the source or in the user's cache directory): a process's first launch of a kernel in a
    signature then loads the code instead of compiling it again with NVVM. In memory only with
    FASTDL_CACHE=0 or where no cache location is writable (a read-only install without a home
    directory)."""
    if config.numba_cache():
        try:
            return cuda.jit(cache=True)(function)
        except RuntimeError:  # numba finds no writable cache location
            pass
    return cuda.jit(function)


def grid_1d(n):
    """(blocks, threads per block) for one thread per item of n: at least one block, and small
    blocks for small n (numba's simulator runs every thread as Python)."""
    threads = max(1, min(BLOCK, n))
    return max(1, -(-n // threads)), threads


@cuda.jit(device=True)
def unravel(index, height, width, channels):
    """(image, row, column, channel) of entry `index` of a C-ordered (n, height, width, channels) array."""
    return (index // (channels * width * height), (index // (channels * width)) % height,
            (index // channels) % width, index % channels)


def column_blocks(columns):
    """(grid, block) of a column reduction over `columns` columns: threads (column, row group)."""
    return math.ceil(columns / COLUMNS_PER_BLOCK), (COLUMNS_PER_BLOCK, ROW_GROUPS)


@cuda.jit(device=True)
def groups_total(partials, tx, ty):
    """The sum of column tx of partials (ROW_GROUPS, COLUMNS_PER_BLOCK) float64 shared memory, by a
    fixed tree; every thread of the block calls it and gets the total."""
    stride = ROW_GROUPS // 2
    while stride > 0:
        cuda.syncthreads()
        if ty < stride:
            partials[ty, tx] += partials[ty + stride, tx]
        stride //= 2
    cuda.syncthreads()
    total = partials[0, tx]
    cuda.syncthreads()  # read by all before partials is written again
    return total

