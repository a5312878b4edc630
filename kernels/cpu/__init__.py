"""Numba kernels, with the same module and function names as cy/ and npy/."""
