"""Cython kernels, with the same module and function names as cpu/ and npy/."""
