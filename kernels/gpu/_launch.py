"""Launch shapes shared by the cuda kernels."""

BLOCK = 128  # threads per block of the one-dimensional launches


def grid_1d(n):
    """(blocks, threads per block) for one thread per item of n: at least one block, and small
    blocks for small n (numba's simulator runs every thread as Python)."""
    threads = max(1, min(BLOCK, n))
    return max(1, -(-n // threads)), threads
