"""How the cuda kernels are compiled and launched: the decorator, launch shapes, thread indices."""

from numba import cuda

from fastdl import config

BLOCK = 128  # threads per block of the one-dimensional launches


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
