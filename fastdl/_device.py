"""Arrays for the cuda backend: what its ops take in and what they answer with.

An op on the cuda backend takes NumPy arrays (copied to the device, the answer copied back: NumPy
in, NumPy out) or device arrays: anything with `__cuda_array_interface__` (CuPy arrays, PyTorch
CUDA tensors, numba device arrays), used in place without a copy, the answer a device array of the
first input's kind. One call never mixes the two: a host array beside a device array is an error
that names both, never a silent transfer. Under numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1,
which the tests use where no device is present) the simulator's own arrays are the device arrays.
"""

import math
import weakref

import numpy as np


def cuda():
    """numba.cuda, imported on first use (importing fastdl never touches CUDA)."""
    from numba import cuda as module

    return module


def simulated():
    """Whether numba.cuda is its simulator (NUMBA_ENABLE_CUDASIM=1)."""
    import numba

    return bool(numba.config.ENABLE_CUDASIM)


# Whether arrays of a type live on the device, remembered for the types that decide it (NumPy's,
# numba's, CuPy's; a torch tensor may be on either side): a training step asks a few dozen times,
# and __cuda_array_interface__ is a property that builds a dict each time it is read.
_ON_DEVICE = {np.ndarray: False}
_DECIDED_BY_TYPE = ("numba.", "numba_cuda.", "cupy.", "numpy.")


def is_device(array):
    """Whether `array` lives on the CUDA device (see the module docstring)."""
    kind = type(array)
    answer = _ON_DEVICE.get(kind)
    if answer is None:
        answer = hasattr(array, "__cuda_array_interface__") or (kind.__name__ == "FakeCUDAArray" and simulated())
        if kind.__module__.startswith(_DECIDED_BY_TYPE):
            _ON_DEVICE[kind] = answer
    return answer


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


def _layout(array):
    """(shape, strides, itemsize) of a device array, from its __cuda_array_interface__ (strides
    None: C-contiguous) or, for the simulator's arrays, from the NumPy array they wrap."""
    if hasattr(array, "__cuda_array_interface__"):
        interface = array.__cuda_array_interface__
        return tuple(interface["shape"]), interface["strides"], np.dtype(interface["typestr"]).itemsize
    return tuple(array.shape), tuple(array.strides), np.dtype(array.dtype).itemsize


def _c_ordered(shape, strides, itemsize):
    """Whether strides lay out shape's values in C order without gaps (an axis of one value may
    have any stride, as NumPy's flag allows)."""
    if strides is None or 0 in shape:
        return True
    expected = itemsize
    for size, stride in zip(reversed(shape), reversed(strides)):
        if size > 1 and stride != expected:
            return False
        expected *= size
    return True


def is_c_contiguous(array):
    """Whether a device array is C-contiguous (see _layout)."""
    return _c_ordered(*_layout(array))


def check_c_contiguous(array, name):
    """Raise TypeError unless device array `array` is C-contiguous.

    fastdl reshapes device arrays in place, and numba does that without a copy: on a GPU a
    Fortran-order array would be read with C strides (its values scrambled, silently) and a
    strided one refused deep in a layer. So the layout is checked where device arrays come in.
    """
    shape, strides, itemsize = _layout(array)
    if _c_ordered(shape, strides, itemsize):
        return
    fortran = _c_ordered(shape[::-1], strides[::-1], itemsize)
    layout = "in Fortran order" if fortran else f"with strides {tuple(strides)} (a slice with a step, or swapped axes)"
    raise TypeError(f"{name} on the device must be C-contiguous, got shape {shape} {layout}: pass a C-contiguous "
                    "copy (cupy.ascontiguousarray(x), x.contiguous() for a torch tensor, or "
                    "numba.cuda.to_device(np.ascontiguousarray(x)))")


def shares_memory(a, b):
    """Whether arrays a and b may share memory (their byte ranges overlap): NumPy's test for host
    arrays, the interfaces' pointers for device arrays; never for one of each."""
    if is_device(a) != is_device(b):
        return False
    if not is_device(a):
        return np.may_share_memory(a, b)
    if not hasattr(a, "__cuda_array_interface__"):  # the simulator's arrays wrap NumPy arrays
        return np.may_share_memory(a._ary, b._ary)
    (low_a, high_a), (low_b, high_b) = _byte_range(a), _byte_range(b)
    return low_a < high_b and low_b < high_a


def _byte_range(array):
    """[first, last + 1) bytes a device array's values take, from its interface."""
    start = array.__cuda_array_interface__["data"][0]
    shape, strides, itemsize = _layout(array)
    if 0 in shape:
        return start, start
    if strides is None:
        return start, start + math.prod(shape) * itemsize
    low = sum(min(0, (n - 1) * s) for n, s in zip(shape, strides))
    high = sum(max(0, (n - 1) * s) for n, s in zip(shape, strides))
    return start + low, start + high + itemsize


def shape_dtype(array):
    """(shape, dtype) of a device array without copying it."""
    if hasattr(array, "__cuda_array_interface__"):
        interface = array.__cuda_array_interface__
        return tuple(interface["shape"]), np.dtype(interface["typestr"])
    return tuple(array.shape), np.dtype(array.dtype)


def view(array):
    """A numba device array over a device array's memory (no copy), for kernels to take (a numba
    device array is returned as it is)."""
    if simulated() or hasattr(array, "gpu_data"):  # a numba device array already
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


def host(array):
    """A device array copied to a NumPy array; a host array as it is."""
    return array.copy_to_host() if is_device(array) else array


def host_copy(array):
    """A NumPy copy of a host or device array."""
    return array.copy_to_host() if is_device(array) else np.array(array)


def last_axis_rows(array):
    """A host or device array as rows of its last axis: itself when 2-D (reshaping a numba device
    array costs host time)."""
    width = array.shape[array.ndim - 1]
    return array if array.ndim == 2 else reshaped(array, (array.size // width if width else 0, width))


def copy(array):
    """A copy of a host or device array, on the same side: the caller's own, which later steps
    writing their reused buffers do not change."""
    if not is_device(array):
        return np.array(array)
    out = empty(array.shape, array.dtype)
    out.copy_to_device(array)
    return out


def assign(target, values):
    """target[...] = values for a host or device target (values: a host or device array)."""
    if is_device(target):
        target.copy_to_device(values if is_device(values) else np.ascontiguousarray(values, dtype=target.dtype))
    else:
        target[...] = host(values)


def zeros(shape, dtype):
    """A device array of zeros."""
    return to_device(np.zeros(shape, dtype))


_scratch = {}


def scratch(key, shape, dtype):
    """A device work array kept under `key` for reuse (grown when too small): the cuda ops' counterpart
    of fastdl._parallel.scratch, so that a training step allocates no device memory."""
    dtype, shape = np.dtype(dtype), tuple(shape)
    buffer, views = _scratch.get((key, dtype), (None, None))
    size = math.prod(shape)
    if buffer is None or buffer.size < size:
        buffer, views = empty(max(size, 1), dtype), {}
        _scratch[(key, dtype)] = buffer, views
    if shape not in views:  # a view made once per shape (numba makes views in Python)
        views[shape] = buffer[:size].reshape(shape)
    return views[shape]


def buffer(cache, key, shape, dtype):
    """The device array cache[key], made again when the shape or dtype asked for changes: what a
    training step writes each time reuses one array."""
    array = cache.get(key)
    if array is None or array.shape != tuple(shape) or array.dtype != np.dtype(dtype):
        array = cache[key] = empty(shape, dtype)
    return array


def recent_key(cache, kind, shape, most=4):
    """The key (kind, shape) of a buffer in `cache` for arrays of `shape`, keeping the buffers of
    the `most` shapes of that kind used last and dropping older ones.

    A model's batches come in few shapes (full batches, the last one of an epoch, validation's),
    each worth a buffer of its own, not one reallocated at each change; but predictions over
    inputs of many lengths would otherwise keep a device buffer (and its page-locked staging
    copy) for every length.
    """
    key = (kind, tuple(shape))
    if key in cache:
        cache[key] = cache.pop(key)  # now the one used last
        return key
    older = [other for other in cache if isinstance(other, tuple) and len(other) == 2 and other[0] == kind]
    for other in older[:max(0, len(older) - most + 1)]:
        del cache[other]
    return key


def upload(cache, key, array):
    """A host array copied into the device buffer cache[key] (see buffer): a step's transfers
    (batches, targets, dropout draws) reuse one buffer each.

    The copy is queued behind the device's work instead of waiting for it: it goes from
    page-locked host memory (a staging array kept per buffer), asynchronously on the default
    stream, which the kernels and GEMMs use. A copy from ordinary host memory first waits for the
    device to finish everything it was given, so that each upload in a training step (a dropout
    layer's draws, the loss's targets) stopped the host from queueing the step's launches ahead of
    the device. A staging array is written again once its last copy is done (an event).
    """
    array = np.ascontiguousarray(array)
    target = buffer(cache, key, array.shape, array.dtype)
    if array.size:
        staging, copied = per_array(_STAGING, target, _staging)
        copied.synchronize()  # returns at once unless the last copy from staging is still queued
        staging[...] = array
        stream = _default_stream()
        target.copy_to_device(staging, stream=stream)
        copied.record(stream)
    return target


# Page-locked host arrays and their events, per device buffer that upload() fills.
_STAGING = {}


def _staging(target):
    """(a page-locked host array of target's shape and dtype, an event for its last copy)."""
    event = cuda().event() if simulated() else cuda().event(timing=False)  # the simulator's takes no arguments
    return cuda().pinned_array(target.shape, target.dtype), event


_SIMULATED_STREAM = []


def _default_stream():
    """The default stream as an object, for asynchronous copies ordered with the launches (the
    simulator has no default_stream(): one stream of its own stands in)."""
    if not simulated():
        return cuda().default_stream()
    if not _SIMULATED_STREAM:
        _SIMULATED_STREAM.append(cuda().stream())
    return _SIMULATED_STREAM[0]


def fits(nbytes):
    """Whether nbytes more fit in the device's free memory (always, on the simulator)."""
    if simulated():
        return True
    free, _ = cuda().current_context().get_memory_info()
    return nbytes <= free


def per_array(cache, array, make):
    """make(array), worked out once per live array object: cache maps id(array) to (a weak reference,
    the value), and an entry goes when its array does (a value that holds the array, a view, would
    keep its memory alive). An array type without weak references gets make(array) every time.

    For what a training step asks of the same buffers again and again, where numba answers in Python
    (a reshaped view: some 10 us; a GEMM's pointers and strides from __cuda_array_interface__)."""
    key = id(array)
    entry = cache.get(key)
    if entry is not None and entry[0]() is array:
        return entry[1]
    value = make(array)
    try:
        reference = weakref.ref(array, lambda _, key=key: cache.pop(key, None))
    except TypeError:
        return value
    cache[key] = (reference, value)
    return value


# Reshaped views of device arrays, kept per (array, shape): a training step of a convolutional model
# asks for about a hundred.
_VIEWS = {}


def reshaped(array, shape):
    """array.reshape(shape) for a device array, the view kept for the next call; a NumPy array's own.

    A device array must be C-contiguous (TypeError otherwise, check_c_contiguous): numba's reshape
    on a GPU copies nothing and reads a Fortran-order array with C strides. (Its simulator's
    reshape copies correctly, which would hide that from the tests.)"""
    if not is_device(array):
        return array.reshape(shape)
    views = per_array(_VIEWS, array, lambda _: {})
    if shape not in views:
        check_c_contiguous(array, "an array to reshape")
        views[shape] = array.reshape(shape)
    return views[shape]



# numba.cuda, bound at the row-scaling kernel's first use: a module global, which numba reads when it
# compiles the kernel (at its first launch) and its simulator swaps for its own.
_numba_cuda = None
_row_scaling = []  # the compiled kernel (importing fastdl compiles nothing)


def _scale_rows(rows, weights):
    index = _numba_cuda.grid(1)
    width = rows.shape[1]
    if index < rows.shape[0] * width:
        i = index // width
        rows[i, index - i * width] *= weights[i]


def scale_rows(rows, weights):
    """rows (r, m) *= weights[:, None] in place, on the device (weights: a device vector (r,) of
    rows' dtype): a weighted loss's gradient, each sample's rows by its weight. One thread an entry."""
    global _numba_cuda
    if not _row_scaling:
        _numba_cuda = cuda()
        _row_scaling.append(_numba_cuda.jit(_scale_rows))
    size = rows.shape[0] * rows.shape[1]
    if size:
        threads = max(1, min(128, size))
        _row_scaling[0][-(-size // threads), threads](rows, weights)


_channel_affine = []  # the compiled kernel


def _scale_shift(rows, scale, offset, out):
    index = _numba_cuda.grid(1)
    width = rows.shape[1]
    if index < rows.shape[0] * width:
        i = index // width
        j = index - i * width
        product = rows[i, j] * scale[j]  # rounded, then the sum: the host's two roundings
        out[i, j] = product + offset[j]


def scale_shift(rows, scale, offset, out):
    """out = rows * scale + offset on the device, rows and out (r, c), scale and offset device
    vectors (c,) of their dtype (a channel's each): nn.Rescaling. One thread an entry."""
    global _numba_cuda
    if not _channel_affine:
        _numba_cuda = cuda()
        _channel_affine.append(_numba_cuda.jit(_scale_shift))
    size = rows.shape[0] * rows.shape[1]
    if size:
        threads = max(1, min(128, size))
        _channel_affine[0][-(-size // threads), threads](rows, scale, offset, out)
