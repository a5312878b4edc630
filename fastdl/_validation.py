"""Input checks shared by the public ops and models: run before any compiled code."""

import numbers

import numpy as np

from fastdl import _device

# all_finite looks at arrays of up to this many bytes with np.isfinite (numpy's vector loop),
# larger ones by a dot product of their values on fastdl's threads (measured here, 2 cores:
# 1.6 against 3.6 us for 1,000 float64 values, 29 against 57 us for 256K float32, a tie at 256K
# float64; 0.8 against 2.1 ms for 10M float32 values).
_ISFINITE_BYTES = 1 << 20
# Float arrays check_array passes as they are, with only their values looked at.
_NATIVE_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


class NonFiniteError(ValueError):
    """A value that must be finite is NaN or infinite (in training: what a too high learning rate
    or unscaled data lead to)."""


def compute_dtype(*arrays):
    """float32 when every input is float32, float64 otherwise."""
    return np.float32 if all(a.dtype.type is np.float32 for a in arrays) else np.float64


CUDA_HINT = ("or use backend='cuda' (where pairwise_distances, knn, MultiClassPerceptron and the XOR "
             "functions take device arrays)")


def device_array_error(X, name, taker="this call", hint=CUDA_HINT):
    """The TypeError for a device array X given to `taker` (e.g. "the 'numba' backend"), which takes
    NumPy arrays.

    Never a silent copy to the host: numba's device arrays would allow one (CuPy's and PyTorch's
    refuse it), hiding a transfer and answering NumPy where the cuda backend answers device arrays.
    """
    return TypeError(f"{name} is a device array ({type(X).__module__}.{type(X).__name__}) but {taker} "
                     f"takes NumPy arrays: copy it to the host, {hint}")


def check_host(X, name, taker="this call", hint=CUDA_HINT):
    """X as it is, unless it is a device array: then device_array_error."""
    if type(X) is not np.ndarray and _device.is_device(X):
        raise device_array_error(X, name, taker, hint)
    return X


def check_array(X, name, ndim, layout, allow_empty=False):
    """An ndim-D, finite, real ndarray (not yet converted); raises ValueError/TypeError otherwise.

    layout names the axes in the message, e.g. "(n_samples, n_features)". A device array is a
    TypeError (check_host): the ops that take them on the cuda backend route them elsewhere first.
    """
    if type(X) is np.ndarray and X.dtype in _NATIVE_FLOATS and X.ndim == ndim and (X.size or allow_empty):
        if not all_finite(X):  # the common case, in 1.5-2 us instead of 5-6 for a small array
            raise NonFiniteError(f"{name} contains NaN or infinity")
        return X
    if type(X) is np.ndarray:
        array = X
    else:  # subclasses too: np.matrix stays 2-D when raveled, and all_finite relies on ravel
        check_host(X, name)
        try:
            array = np.asarray(X)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be array-like of numbers: {exc}") from None
    # timedelta64 counts as an integer to numpy, but its values are durations, not numbers.
    if (array.dtype == object or array.dtype.kind == "m"
            or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_)):
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    if array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D {layout}, got shape {array.shape}")
    if not allow_empty and array.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {array.shape}")
    if np.issubdtype(array.dtype, np.floating) and not all_finite(array):
        raise NonFiniteError(f"{name} contains NaN or infinity")
    return array


def all_finite(array):
    """Whether a float array holds no NaN or infinity.

    Up to _ISFINITE_BYTES, np.isfinite says. A larger float32/float64 array is finite when the dot
    product of its values with themselves is: one pass over fastdl's threads with no temporary, 2.5x
    faster than np.isfinite for 10M values here (and more so on more cores). Only when that product
    overflows (values beyond about 1e19 in float32) are the minimum and maximum looked at.

    BLAS never threads the dot: OpenBLAS threads a float64 dot of over 10,000 values, and its
    threads then spin for some 100 ms on the cores that the fastdl op this check guards needs next
    (measured: a kNN query of the course digits took 4.4 ms after a check of its float64 queries
    instead of 2.4 ms); each of fastdl's threads holds BLAS to one thread.
    """
    if array.dtype not in _NATIVE_FLOATS or array.nbytes <= _ISFINITE_BYTES:
        return bool(np.isfinite(array).all())
    values = array.reshape(-1)
    with np.errstate(over="ignore"):
        total = sum(_squares_on_fastdl_threads(values).values())
    if np.isfinite(total):
        return True
    return bool(np.isfinite(values.min()) and np.isfinite(values.max()))


def _squares_on_fastdl_threads(values):
    """{first index: the sum of squares of values[first:last]} over row ranges of the 1-D values,
    on fastdl's threads with BLAS held to one thread in each."""
    from fastdl import backend
    from fastdl._parallel import STREAMED_VALUE_WORK, run_row_ranges, single_threaded_blas

    squares = {}

    def dot(first, last):
        with np.errstate(over="ignore"):  # (per thread)
            squares[first] = np.dot(values[first:last], values[first:last])

    with single_threaded_blas():
        # A value's work is a streamed one's, not a multiply-add's (a batch of 100 clocks, 2.25M
        # values, ran on the calling thread alone at any thread count).
        run_row_ranges(dot, values.size, backend.get_num_threads(), STREAMED_VALUE_WORK)
    return squares


def check_matrix(X, name, allow_empty=False):
    """A 2-D, finite, numeric ndarray (not yet converted); raises ValueError/TypeError otherwise."""
    return check_array(X, name, 2, "(n_samples, n_features)", allow_empty)


_MAX_PAIR = 2**31 - 1


def check_pair(value, name):
    """(a, b) of positive integers from an int or a pair of ints, e.g. strides or a pool size."""
    items = (value, value) if isinstance(value, numbers.Integral) else value
    try:
        items = tuple(items)
    except TypeError:
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}") from None
    if len(items) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    if any(isinstance(item, bool) or not isinstance(item, numbers.Integral) for item in items):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(items) < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    if max(items) > _MAX_PAIR:  # the kernels take int64; no image comes near this
        raise ValueError(f"{name} must be <= {_MAX_PAIR}, got {value!r}")
    return int(items[0]), int(items[1])


def as_compute(X, dtype):
    """C-contiguous, native-byte-order copy (or view) of X in `dtype`; uint8 etc. never wrap."""
    return np.ascontiguousarray(X, dtype=np.dtype(dtype).newbyteorder("="))


def as_compute_all(*arrays):
    """The arrays (None stays None) as C-contiguous arrays of their compute dtype, after it."""
    dtype = compute_dtype(*(a for a in arrays if a is not None))
    return (dtype, *(None if a is None else as_compute(a, dtype) for a in arrays))


def check_same_features(A, B, name_a="A", name_b="B"):
    if A.shape[1] != B.shape[1]:
        raise ValueError(
            f"{name_a} and {name_b} must have the same number of features, "
            f"got {name_a} {A.shape} and {name_b} {B.shape}"
        )


def check_int(value, name, low, high=None):
    """An integer in [low, high]; bools and floats are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"between {low} and {high}"
        raise ValueError(f"{name} must be {bounds}, got {value}")
    return value


def check_codes(y, n_samples, n_classes=None, name="y"):
    """Integer class codes 0..n_classes-1 as a contiguous int64 array, and n_classes."""
    y = np.asarray(check_host(y, name))
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {y.shape}")
    if y.shape[0] != n_samples:
        raise ValueError(f"{name} has {y.shape[0]} labels but X has {n_samples} samples")
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all() or not (y == np.round(y)).all():
            raise ValueError(f"{name} must hold integer class codes, got non-integer values")
    elif not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class codes, got dtype {y.dtype}")
    # Range checks on y's own values: converted first, uint64 codes past 2**63 would wrap around.
    if y.size and y.min() < 0:
        raise ValueError(f"{name} must hold class codes >= 0, got {int(y.min())}")
    top = int(y.max()) + 1 if y.size else 0
    if n_classes is None:
        n_classes = top
    else:
        n_classes = check_int(n_classes, "n_classes", 1)
        if top > n_classes:
            raise ValueError(f"{name} holds class code {top - 1}, outside 0..{n_classes - 1}")
    if top > 2**63:
        raise ValueError(f"{name} holds class code {top - 1}, beyond int64's range")
    return np.ascontiguousarray(y, dtype=np.int64), n_classes
