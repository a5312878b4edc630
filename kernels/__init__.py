"""Compute-only kernels, one operation family per module, mirrored across backends.

npy/  vectorised numpy (the reference backend)
cpu/  Numba @njit kernels
cy/   Cython extensions (OpenMP when the build had it)
gpu/  numba.cuda kernels (later)

Kernels never validate or allocate their outputs: fastdl's public functions do that first.
"""
