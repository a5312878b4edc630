"""numba.cuda kernels, the "cuda" backend; each module mirrors its kernels/cpu/ namesake.

A launcher takes device arrays that fastdl's ops allocated and checked, picks the grid and block
sizes and launches; nothing else. Importing a module compiles nothing.
"""

# The operation families whose ops run on the cuda backend; the registry says so for the others.
# conv, dense, loss, norm, optim and pool have their kernels here (tested on their own) but
# fastdl.nn does not train on the device yet.
FAMILIES = ("distance", "neighbors", "perceptron", "xor")
