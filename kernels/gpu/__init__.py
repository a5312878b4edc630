"""numba.cuda kernels: the registry's place for the "cuda" backend; kernels arrive in a later issue."""
