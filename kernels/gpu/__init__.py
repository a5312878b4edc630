"""numba.cuda kernels, the "cuda" backend; each module mirrors its kernels/cpu/ namesake.

A launcher takes device arrays that fastdl's ops allocated and checked, picks the grid and block
sizes and launches; nothing else. Importing a module compiles nothing.
"""

# The operation families with CUDA kernels so far; the registry says so for the others.
FAMILIES = ("distance", "neighbors", "perceptron", "xor")
