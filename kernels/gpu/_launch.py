"""Launch shapes and thread indices shared by the cuda kernels."""

from numba import cuda

BLOCK = 128  # threads per block of the one-dimensional launches


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
