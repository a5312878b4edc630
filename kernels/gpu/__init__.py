"""numba.cuda kernels, the "cuda" backend; each module mirrors its kernels/cpu/ namesake.

A launcher takes device arrays that fastdl's ops allocated and checked, picks the grid and block
sizes and launches; nothing else. Importing a module compiles nothing.
"""

# The operation families whose ops run on the cuda backend; the registry says so for the others.
FAMILIES = ("distance", "neighbors", "perceptron", "xor", "dense", "conv", "winograd", "pool", "loss", "optim", "norm",
            "augment")
