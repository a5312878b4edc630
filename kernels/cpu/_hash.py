"""splitmix64, the counter-based generator every backend draws its random numbers from (Numba).

Mirrors kernels/npy/_hash.py.
"""

import numpy as np

from ._jit import helper

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)
SHIFT27, SHIFT30, SHIFT31 = np.uint64(27), np.uint64(30), np.uint64(31)


@helper()
def mix64(z):
    """splitmix64's finaliser (uint64 arithmetic wraps)."""
    z = (z ^ (z >> SHIFT30)) * MIX1
    z = (z ^ (z >> SHIFT27)) * MIX2
    return z ^ (z >> SHIFT31)
