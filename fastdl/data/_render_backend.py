"""Which backend renders the synthetic clocks and faces: always a CPU one."""

from fastdl import backend as _backend


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
