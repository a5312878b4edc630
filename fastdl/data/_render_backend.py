"""What the renderers of synthetic clocks and faces share: their arguments' checks, and which
backend renders (always a CPU one)."""

from fastdl import backend as _backend
from fastdl._validation import check_int

MIN_SIZE = 16  # pixels along a side
MAX_SIZE = 2048
LAST_INDEX = 2 ** 63 - 1  # an image's index in its seed's sequence


def check_render_arguments(n, seed, size, first, what):
    """(n, seed, size, first) of a renderer of `what` ("image", "face"), checked: ints, n >= 0,
    seed < 2**64, size in [MIN_SIZE, MAX_SIZE], and every index first .. first + n - 1 in range."""
    n = check_int(n, "n", 0)
    seed = check_int(seed, "seed", 0, 2 ** 64 - 1)
    size = check_int(size, "size", MIN_SIZE, MAX_SIZE)
    first = check_int(first, "first", 0, LAST_INDEX)
    if first + n - 1 > LAST_INDEX:
        raise ValueError(f"first + n - 1 (the last {what}'s index) must be <= 2**63 - 1, got {first + n - 1}")
    return n, seed, size, first


def renderer_backend(backend, what):
    """The backend name to render ``what`` ("clock", "face") with.

    There are no CUDA renderer kernels, and the images are the same on every backend, so a
    process whose default is cuda (its networks train on the GPU) renders with "auto", the
    fastest CPU backend here; asking for "cuda" by name is a ValueError.
    """
    if backend is None:
        return "auto" if _backend.selects_cuda() else None
    if _backend.selects_cuda(backend):
        raise ValueError(f"the {what} renderers run on the CPU backends ('auto', 'numpy', 'numba', "
                         f"'cython'), not on cuda; their images are the same on every backend")
    return backend
