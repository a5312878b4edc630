"""splitmix64, the counter-based generator every backend draws its random numbers from (numba.cuda).

Mirrors kernels/cpu/_hash.py. uint64 arithmetic wraps on the device as in Numba; numba's CUDA
simulator runs device functions as Python on NumPy scalars, which wrap too but warn on overflow
(np.errstate is per thread there, so a launcher cannot silence it for the kernel's threads), so on
the simulator the two hashing functions silence it themselves.
"""

import functools

import numba
import numpy as np
from numba import cuda

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)
SHIFT27, SHIFT30, SHIFT31 = np.uint64(27), np.uint64(30), np.uint64(31)


def _wrapping(function):
    """A device function whose uint64 overflow wraps silently, on the device and the simulator."""
    if numba.config.ENABLE_CUDASIM:
        python_function = function

        @functools.wraps(python_function)
        def function(*args):
            with np.errstate(over="ignore"):
                return python_function(*args)

    return cuda.jit(device=True)(function)


@_wrapping
def mix64(z):
    """splitmix64's finaliser (uint64 arithmetic wraps)."""
    z = (z ^ (z >> SHIFT30)) * MIX1
    z = (z ^ (z >> SHIFT27)) * MIX2
    return z ^ (z >> SHIFT31)


@_wrapping
def counter_hash(key, counter):
    """mix64(key + counter * GOLDEN): the hash of counter `counter` (uint64) of the stream `key`."""
    return mix64(key + counter * GOLDEN)
