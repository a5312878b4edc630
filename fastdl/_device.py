"""Arrays for the cuda backend: what its ops take in and what they answer with.

An op on the cuda backend takes NumPy arrays (copied to the device, the answer copied back: NumPy
in, NumPy out) or device arrays: anything with `__cuda_array_interface__` (CuPy arrays, PyTorch
CUDA tensors, numba device arrays), used in place without a copy, the answer a device array of the
first input's kind. One call never mixes the two: a host array beside a device array is an error
that names both, never a silent transfer. Under numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1,
which the tests use where no device is present) the simulator's own arrays are the device arrays.
"""

import numpy as np


def cuda():
    """numba.cuda, imported on first use (importing fastdl never touches CUDA)."""
    from numba import cuda as module

    return module


def simulated():
    """Whether numba.cuda is its simulator (NUMBA_ENABLE_CUDASIM=1)."""
    import numba

    return bool(numba.config.ENABLE_CUDASIM)


def is_device(array):
    """Whether `array` lives on the CUDA device (see the module docstring)."""
    if hasattr(array, "__cuda_array_interface__"):
        return True
    return type(array).__name__ == "FakeCUDAArray" and simulated()


def on_device(names_arrays):
    """Whether the arrays of one call (name -> array or None) are device arrays: True if all are,
    False if none is; a mix raises ValueError naming a host array and a device array."""
    given = {name: array for name, array in names_arrays.items() if array is not None}
    device = {name for name, array in given.items() if is_device(array)}
    if device and len(device) < len(given):
        host = next(name for name in given if name not in device)
        dev = next(iter(device))
        raise ValueError(
            f"{host} is a host array ({type(given[host]).__name__}) but {dev} is on the CUDA device "
            f"({type(given[dev]).__module__}.{type(given[dev]).__name__}): pass both as NumPy arrays "
            "or both as device arrays")
    return bool(device)


def shape_dtype(array):
    """(shape, dtype) of a device array without copying it."""
    if hasattr(array, "__cuda_array_interface__"):
        interface = array.__cuda_array_interface__
        return tuple(interface["shape"]), np.dtype(interface["typestr"])
    return tuple(array.shape), np.dtype(array.dtype)


def view(array):
    """A numba device array over a device array's memory (no copy), for kernels to take."""
    if simulated():
        return array
    return cuda().as_cuda_array(array)


def to_device(array):
    """A host array copied to the device (C-contiguous)."""
    return cuda().to_device(np.ascontiguousarray(array))


def empty(shape, dtype):
    """An uninitialised device array."""
    return cuda().device_array(shape, dtype=dtype)


def answer(result, like):
    """A device result as the caller expects it: a NumPy copy when `like` (the call's first
    array) is on the host or None, else a device array of like's kind, sharing result's memory."""
    if like is None or not is_device(like):
        return result.copy_to_host()
    package = type(like).__module__.split(".")[0]
    if package == "cupy":
        import cupy

        return cupy.asarray(result)
    if package == "torch":
        import torch

        return torch.as_tensor(result, device=like.device)
    return result
