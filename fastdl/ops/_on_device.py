"""The cuda backend's distances and k nearest neighbours: the CPU ops' recipe on device arrays.

Inputs are NumPy arrays (checked as on the CPU, then copied over) or device arrays (checked by
shape and dtype here, and for NaN or infinity by the column pass every distance needs anyway);
see fastdl/_device.py. Both sides are shifted by the reference rows' mean and scaled by a power
of two, as fastdl.ops.distance explains, and the Gram blocks go through cuBLAS (CuPy) or a tiled
kernel; entries that cancellation would spoil are recomputed directly from the rows as given, and
k-nearest queries rank the Gram's candidates by exact distances, as on the CPU.
"""

import math

import numpy as np

from fastdl import _device
from fastdl import backend as _backend
from fastdl._validation import NonFiniteError, check_int, check_matrix, check_same_features, compute_dtype
from fastdl.ops._knn_index import gram_bounds, ranking_scale
from fastdl.ops._shift import block_rows, midpoint_origin, origin_and_reach, power_of_two_scale, reach_of

# Entries of a float64 distance block held at once (256 MiB).
BLOCK_ENTRIES = 1 << 25


def check_inputs(named):
    """Check a call's matrices (name -> array or None) on the host or on the device, alike.

    Returns (arrays as given or checked NumPy, the compute dtype, whether they are device arrays).
    """
    on_device = _device.on_device(named)
    if not on_device:
        checked = {name: None if a is None else check_matrix(a, name) for name, a in named.items()}
        return checked, compute_dtype(*(a for a in checked.values() if a is not None)), False
    dtypes = []
    for name, array in named.items():
        if array is None:
            continue
        shape, dtype = _device.shape_dtype(array)
        if len(shape) != 2:
            raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {shape}")
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"{name} on the device must be float32 or float64, got {dtype}")
        if 0 in shape:  # as on the host (check_matrix): no rows, or no features to measure by
            raise ValueError(f"{name} must not be empty, got shape {shape}")
        dtypes.append(dtype)
    dtype = np.float32 if all(d == np.float32 for d in dtypes) else np.float64
    return dict(named), dtype, True


class Shifted:
    """Rows on the device shifted by an origin and scaled, in float64 work and `dtype` storage,
    with their squared norms; `kernels` is the cuda distance module."""

    def __init__(self, X, origin, scale, dtype, kernels):
        n_rows, n_features = _device.shape_dtype(X)[0]
        self.rows = _device.empty((n_rows, n_features), dtype)
        self.norms = _device.empty(n_rows, np.float64)
        kernels.shift_rows(X, origin, scale, self.rows, self.norms, 1)


def _column_stats(X, name, kernels):
    """(sums, minima, maxima) of a device matrix's columns as NumPy float64; NaN or infinity raises.

    The sums may be inf or NaN where huge values overflow them (see fastdl.ops._shift.origin_and_reach).
    """
    sums, low, high = _stats(X, kernels)
    if not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise NonFiniteError(f"{name} contains NaN or infinity")
    if not np.isfinite(sums).all():
        # A NaN (which the minima and maxima can pass over), or huge values overflowing the sum:
        # scaled by a power of two below 1 / n_rows (exact), finite values cannot overflow it.
        n_rows, n_features = _device.shape_dtype(X)[0]
        scaled = Shifted(X, _device.to_device(np.zeros(n_features)), math.ldexp(1.0, -n_rows.bit_length()),
                         np.float64, kernels)
        if not np.isfinite(_stats(scaled.rows, kernels)[0]).all():
            raise NonFiniteError(f"{name} contains NaN or infinity")
    return sums, low, high


def _stats(X, kernels):
    """column_stats of a device matrix, as NumPy float64 (sums, minima, maxima)."""
    n_features = _device.shape_dtype(X)[0][1]
    stats = [_device.empty(n_features, np.float64) for _ in range(3)]
    kernels.column_stats(X, *stats, 1)
    return tuple(s.copy_to_host() for s in stats)


def _in_dtype(X, dtype, kernels):
    """Device rows X as `dtype` (a copy where X has the other float type; exact from float32)."""
    if _device.shape_dtype(X)[1] == dtype:
        return X
    n_features = _device.shape_dtype(X)[0][1]
    return Shifted(X, _device.to_device(np.zeros(n_features)), 1.0, dtype, kernels).rows


class DeviceKnnIndex:
    """Reference rows on the device, ready for distances and k-nearest queries (the cuda
    counterpart of fastdl.ops._knn_index.KnnIndex, with the same query contract).

    Work memory beside the inputs and outputs: the reference rows shifted and scaled in the op's
    dtype (float64 for query; n_ref x n_features), the same for the queries, and distance blocks
    of BLOCK_ENTRIES entries.
    """

    def __init__(self, X_ref, name="X_ref"):
        self.distance = _backend.kernels("distance", "cuda")[0]
        self.neighbors = _backend.kernels("neighbors", "cuda")[0]
        self.X_ref = X_ref if _device.is_device(X_ref) else _device.to_device(X_ref)
        self.n_ref, self.n_features = _device.shape_dtype(self.X_ref)[0]
        self.bounds = None  # the reference columns' (minima, maxima)
        if self.n_ref:
            sums, *self.bounds = _column_stats(self.X_ref, name, self.distance)
            self.origin, self.reach = origin_and_reach(sums, self.n_ref, *self.bounds)
        else:
            self.origin, self.reach = np.zeros(self.n_features), 0.0
        self._origin = _device.to_device(self.origin)
        self._scale, self._ref = None, None

    def _shifted(self, X, name, dtype):
        """(scale, shifted reference, shifted X): one origin and power-of-two scale for both sides."""
        reach = self.reach
        if X is not self.X_ref and _device.shape_dtype(X)[0][0]:
            _, low, high = _column_stats(X, name, self.distance)
            reach = max(reach, reach_of(self.origin, low, high))
            if not math.isfinite(reach):
                # Rows so far from the reference that a shift would overflow: another origin, this call only.
                if self.bounds is not None:
                    low, high = np.minimum(low, self.bounds[0]), np.maximum(high, self.bounds[1])
                origin, reach = midpoint_origin(low, high)
                scale, origin = power_of_two_scale(reach), _device.to_device(origin)
                ref = Shifted(self.X_ref, origin, float(scale), dtype, self.distance)
                return scale, ref, Shifted(X, origin, float(scale), dtype, self.distance)
        scale = power_of_two_scale(reach)
        if (scale, dtype) != self._scale:
            self._ref = Shifted(self.X_ref, self._origin, float(scale), dtype, self.distance)
            self._scale = (scale, dtype)
        rows = self._ref if X is self.X_ref else Shifted(X, self._origin, float(scale), dtype, self.distance)
        return scale, self._ref, rows

    def distances(self, X, name, dtype, squared, refine_tol):
        """Device (n, n_ref) distances of X's rows (a device array, or X_ref itself) to X_ref's."""
        scale, ref, rows = self._shifted(X, name, dtype)
        # Entries the GEMM cannot give accurately come from the rows as given (in dtype).
        X, X_ref = _in_dtype(X, dtype, self.distance), _in_dtype(self.X_ref, dtype, self.distance)
        out = _device.empty((rows.rows.shape[0], self.n_ref), dtype)
        for start, stop in block_rows(*out.shape, BLOCK_ENTRIES):
            block = out[start:stop]
            self.distance.gemm(rows.rows[start:stop], ref.rows, block, transpose_b=True)
            self.distance.distances_from_gram(block, X[start:stop], X_ref, rows.norms[start:stop],
                                              ref.norms, refine_tol, 1.0 / scale, bool(squared), 1)
        return out

    def query(self, X_query, k, name="X_query"):
        """(distances (n, k) float64, indices (n, k) int64) of the k nearest reference rows, by
        exact float64 distances (as the CPU backends rank), ties to the lower index: a float64
        GEMM's distances, with their proven error bound, pick the candidates. NumPy X_query gets
        NumPy answers, a device array device arrays."""
        host = not _device.is_device(X_query)
        X = _device.to_device(X_query) if host else X_query
        scale, ref, query = self._shifted(X, name, np.float64)
        dtypes = {_device.shape_dtype(a)[1] for a in (X, self.X_ref)}
        dtype = dtypes.pop() if len(dtypes) == 1 else np.float64  # the exact ranking's rows: one dtype
        X, X_ref = _in_dtype(X, dtype, self.distance), _in_dtype(self.X_ref, dtype, self.distance)
        bound_tol, bound_abs = gram_bounds(self.n_features, np.float64)
        # Both sides lie within 1 / scale of the origin in every feature (or scale is the smallest
        # power_of_two_scale gives, whose bound is beyond FAR anyway).
        key_scale = ranking_scale(2.0 * math.sqrt(self.n_features) / scale)
        n_queries = query.rows.shape[0]
        distances = _device.empty((n_queries, k), np.float64)
        indices = _device.empty((n_queries, k), np.int64)
        for start, stop in block_rows(n_queries, self.n_ref, BLOCK_ENTRIES):
            block = _device.empty((stop - start, self.n_ref), np.float64)
            self.distance.gemm(query.rows[start:stop], ref.rows, block, transpose_b=True)
            self.neighbors.knn_from_gram(block, query.norms[start:stop], ref.norms, bound_tol, bound_abs,
                                         X[start:stop], X_ref, key_scale, distances[start:stop],
                                         indices[start:stop], 1)
        if host:
            return distances.copy_to_host(), indices.copy_to_host()
        return distances, indices


def pairwise_distances(A, B, squared, refine_tol):
    """fastdl.ops.pairwise_distances on the cuda backend."""
    named = {"A": A} if B is None else {"A": A, "B": B}
    named, dtype, on_device = check_inputs(named)
    if B is not None:
        check_same_features(_Shape(named["A"]), _Shape(named["B"]))
    device = named if on_device else {name: _device.to_device(a) for name, a in named.items()}
    if B is None:
        index = DeviceKnnIndex(device["A"], "A")
        out = index.distances(index.X_ref, "A", dtype, squared, refine_tol[dtype])
    else:
        out = DeviceKnnIndex(device["B"], "B").distances(device["A"], "A", dtype, squared, refine_tol[dtype])
    return _device.answer(out, A)


def knn(X_query, X_ref, k):
    """fastdl.ops.knn on the cuda backend: DeviceKnnIndex's query, in the inputs' kind and dtype."""
    named, dtype, on_device = check_inputs({"X_query": X_query, "X_ref": X_ref})
    check_same_features(_Shape(named["X_query"]), _Shape(named["X_ref"]), "X_query", "X_ref")
    k = check_int(k, "k", 1, _Shape(named["X_ref"]).shape[0])
    device = named if on_device else {name: _device.to_device(a) for name, a in named.items()}
    distances, indices = DeviceKnnIndex(device["X_ref"]).query(device["X_query"], k)
    if dtype == np.float32:
        distances = _cast(distances, np.float32)
    return _device.answer(distances, X_query), _device.answer(indices, X_query)


def _cast(array, dtype):
    """A device array in another float dtype (through the host: the k columns are small); a
    distance beyond float32's range is inf, as on the CPU backends, without numpy's warning."""
    with np.errstate(over="ignore"):
        return _device.to_device(array.copy_to_host().astype(dtype))


class _Shape:
    """A device array seen by the shape checks of fastdl._validation."""

    def __init__(self, array):
        self.shape = _device.shape_dtype(array)[0] if _device.is_device(array) else array.shape
