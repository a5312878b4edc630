"""Reference rows prepared once for exact k-nearest-neighbour queries.

The search runs in two steps. A float32 GEMM gives every (query, reference) squared distance with
a proven error bound; only the references whose lower bound can still reach the k-th smallest upper
bound are then ranked by their exact float64 distance. The result is the exact float64 answer at
nearly the cost of a float32 GEMM.

Where the references vary mostly along a few directions (fastdl/ops/_projection.py), the GEMM runs
on their projection instead, a quarter of the features: its distances are proven lower bounds, and
only the few references they cannot rule out are ranked exactly.
"""

import math

import numpy as np

from fastdl import backend as _backend
from fastdl._parallel import run_row_ranges, single_threaded_blas
from fastdl._validation import as_compute, check_host, check_int
from fastdl.ops._kdtree import KdTree
from fastdl.ops._projection import Projection
from fastdl.ops._shift import block_rows, power_of_two_scale, shift_origin, shifted

# Reference rows are scaled into [-1, 1]; a query row whose scaled squared norm passes this could
# overflow float32 in the GEMM, so that call rescales both sides.
_MAX_SCALED_NORM = 2.0**100
# Pruning pays while the bounds leave at most this share of the rows to rank exactly.
MAX_RANKED_SHARE = 1 / 16
# float32 Gram entries of one query's blocks, all threads together (128 MiB): each thread's row
# range gets its share. A block keeps at least MIN_BLOCK_ROWS rows (fewer make the GEMM slower:
# 1.3-1.7x at some 26 rows, none at 210) while that fits GRAM_ENTRIES alone.
GRAM_ENTRIES = 1 << 25
MIN_BLOCK_ROWS = 256


# Exact distances are ranked as they are, unless rows reach so far apart that a distance could pass
# float64's range: they are then ranked times KEY_SCALE, which keeps every distance between finite
# rows finite (below 2**1088), and ranked by its true size (subnormal keys below 2**-958 lose digits).
FAR = 2.0**1000
KEY_SCALE = 2.0**-64


def ranking_scale(farthest):
    """knn_from_gram's key_scale for rows no farther apart than `farthest`: 1.0, or KEY_SCALE."""
    return 1.0 if farthest < FAR else KEY_SCALE


def gram_bounds(n_features, dtype):
    """(bound_tol, bound_abs) for knn_from_gram, for a GEMM in `dtype` (float32 or float64).

    The squared distance |q|^2 + |r|^2 - 2 q.r from rows shifted, scaled into [-1, 1] and stored in
    dtype is within bound_tol * (|q|^2 + |r|^2) + bound_abs of the exact one: (gamma_d + 4u) from
    the GEMM's rounding and each element's, and bound_abs for dtype's subnormals.
    """
    info = np.finfo(dtype)
    return 1.01 * (n_features + 8) * float(info.eps) / 2, (n_features + 8) * 64 * float(info.tiny)


def knn_index(X_ref, backend=None):
    """An index over X_ref (C-contiguous float32/float64) for `backend`: KnnIndex on the CPU
    backends, fastdl.ops._on_device.DeviceKnnIndex on cuda; both answer query(X_query, k).

    The index keeps its own copy of X_ref (on the device, or on the host): it is kept for later
    queries, and a change to the caller's array after this call must not leave the rows it ranks
    out of step with the bounds it computed here.
    """
    if _backend.resolve("neighbors", backend) == "cuda":
        from fastdl.ops._on_device import DeviceKnnIndex

        return DeviceKnnIndex(X_ref)
    return KnnIndex(X_ref.copy(), backend)


class KnnIndex:
    """Reference rows X_ref (C-contiguous float32/float64) ready for `query` on a backend.

    Few features and many rows (fastdl/ops/_kdtree.py) get a kd-tree, with the same answers; the
    GEMM path's scaled rows are then made only if a query needs them (see query).
    """

    def __init__(self, X_ref, backend=None, n_queries=None):
        self.X_ref = X_ref
        self.backend = backend
        # n_queries: how many rows the index will answer, where known (a one-off search).
        self._build(n_queries)

    def _build(self, n_queries=None):
        self.tree = KdTree.build(self.X_ref, self.backend, n_queries)
        self.gemm_ready, self.projection = False, None
        if self.tree is None:
            self._prepare_gemm()
        self.built = True

    def __getstate__(self):
        # A copy or pickle (a fitted estimator's) keeps the rows only: the tree or the GEMM path's
        # arrays, 0.7-1.3x the rows' size again, are made anew at the first query.
        return {"X_ref": self.X_ref, "backend": self.backend, "built": False}

    def _prepare_gemm(self):
        """The shifted, scaled float32 rows and the projection of the GEMM path."""
        X_ref = self.X_ref
        self.origin, self.reach = shift_origin(X_ref, self._distance_kernels(), _backend.get_num_threads())
        self.scale = power_of_two_scale(self.reach)
        self.ref_scaled, self.ref_norms = self._scaled(X_ref, self.scale)
        self.projection = Projection.build(self.ref_scaled, self.ref_norms, _backend.get_num_threads())
        self.gemm_ready = True  # last: another thread querying the index meanwhile makes them too

    def _distance_kernels(self):
        return _backend.kernels("distance", self.backend)[0]

    def _scaled(self, X, scale, origin=None):
        """float32 (X - origin) * scale and its float64 squared row norms (origin: self.origin)."""
        origin = self.origin if origin is None else origin
        return shifted(X, origin, np.float32, scale, self._distance_kernels(), _backend.get_num_threads())

    def query(self, X_query, k):
        """(distances (n, k) float64, indices (n, k) int64) of the k nearest reference rows.

        X_query: (n, n_features) numbers that X_ref's dtype holds exactly (float64 queries of
        float32 rows are a TypeError: index the rows in float64); NaN and inf are allowed.
        k: 1 <= k <= n_ref.
        """
        X_query, k = self._checked(X_query, k)
        if X_query.shape[0] == 0:
            return self._results(X_query, k)
        if not self.built:
            self._build()
        if self.tree is not None:
            # None where the tree cannot answer as the GEMM path would (see KdTree.query).
            found = self.tree.query(X_query, k, self.backend)
            if found is not None:
                return found
        if not self.gemm_ready:
            self._prepare_gemm()
        n_threads = _backend.get_num_threads()
        scale, ref_scaled, ref_norms = self.scale, self.ref_scaled, self.ref_norms
        query_scaled, query_norms = self._scaled(X_query, scale)
        rescaled = not query_norms.max() <= _MAX_SCALED_NORM or self.reach == 0.0  # the test catches inf
        if rescaled:
            # Queries far outside the reference cloud, or references all alike (their spread sets
            # no scale, and tiny distances would vanish): one origin and scale from both sides,
            # for this call only.
            origin, reach = shift_origin(self.X_ref, self._distance_kernels(), n_threads, X_query)
            scale = power_of_two_scale(reach)
            ref_scaled, ref_norms = self._scaled(self.X_ref, scale, origin)
            query_scaled, query_norms = self._scaled(X_query, scale, origin)
        # |q - r| <= |q - origin| + |r - origin|, from the scaled rows' norms (Python floats: inf
        # without a warning).
        key_scale = ranking_scale((math.sqrt(query_norms.max()) + math.sqrt(ref_norms.max())) / scale)
        if self.projection is not None and not rescaled and key_scale == 1.0:
            return self._query_pruned(X_query, query_scaled, query_norms, k)
        kernels, _ = _backend.kernels("neighbors", self.backend)
        n_features = X_query.shape[1]
        bound_tol, bound_abs = gram_bounds(n_features, np.float32)
        distances, indices = self._results(X_query, k)

        def step(start, stop, gram):
            np.dot(query_scaled[start:stop], ref_scaled.T, out=gram)
            kernels.knn_from_gram(
                gram, query_norms[start:stop], ref_norms, bound_tol, bound_abs, X_query[start:stop],
                self.X_ref, key_scale, distances[start:stop], indices[start:stop], 1,
            )

        self._in_blocks(X_query.shape[0], n_features, step)
        return distances, indices

    def _checked(self, X_query, k):
        """X_query as a C-contiguous array of X_ref's dtype, and k, checked: the kernels trust
        both (k past n_ref read heap slots never filled; Cython takes one dtype and C order)."""
        X_ref = self.X_ref
        X_query = np.asarray(check_host(X_query, "X_query"))
        if X_query.ndim != 2 or X_query.shape[1] != X_ref.shape[1]:
            raise ValueError(f"X_query must be 2-D with X_ref's {X_ref.shape[1]} features, got shape {X_query.shape}")
        if X_query.dtype.kind not in "biuf":
            raise TypeError(f"X_query must hold real numbers, got dtype {X_query.dtype}")
        if not np.can_cast(X_query.dtype, X_ref.dtype):
            raise TypeError(f"X_query ({X_query.dtype}) does not convert exactly to the index's {X_ref.dtype} "
                            f"rows: index them as float64 to query in float64")
        return as_compute(X_query, X_ref.dtype), check_int(k, "k", 1, X_ref.shape[0])

    def _query_pruned(self, X_query, query_scaled, query_norms, k):
        """query() through the projection's lower bounds: only rows they cannot rule out are ranked."""
        kernels, _ = _backend.kernels("neighbors", self.backend)
        projection = self.projection
        distances, indices = self._results(X_query, k)
        ranked = []

        def step(start, stop, gram):
            query_proj, query_proj_norms = projection.project(query_scaled[start:stop])
            np.dot(query_proj, projection.ref_proj.T, out=gram)
            ranked.append(kernels.knn_from_bounds(
                gram, projection.ref_proj_norms, projection.limits(query_norms[start:stop], query_proj_norms),
                X_query[start:stop], self.X_ref, self.scale, distances[start:stop], indices[start:stop], 1,
            ))

        self._in_blocks(X_query.shape[0], projection.P.shape[1], step)
        self.last_ranked = sum(ranked)  # rows ranked exactly, for tests and tuning
        if self.last_ranked > X_query.shape[0] * self.X_ref.shape[0] * MAX_RANKED_SHARE:
            self.projection = None  # the bounds rule out too little here: plain GEMMs from now on
        return distances, indices

    def _results(self, X_query, k):
        return np.empty((X_query.shape[0], k)), np.empty((X_query.shape[0], k), dtype=np.int64)

    def _in_blocks(self, n, n_features, step):
        """step(start, stop, gram) over blocks of the n query rows; gram is a float32 (rows, n_ref)
        buffer. Each thread takes a range of rows and works through it in blocks of its share of
        GRAM_ENTRIES (see there). Blocks only size the float32 bounds' GEMMs: the answers, ranked
        by exact distances, are the same for any blocking."""
        m = self.X_ref.shape[0]
        total = GRAM_ENTRIES

        def search(first, last):
            share = total * (last - first) // max(n, 1)
            blocks = block_rows(last - first, m, min(total, max(share, MIN_BLOCK_ROWS * m)))
            gram = np.empty(blocks[0][1] * m, dtype=np.float32)
            for start, stop in blocks:
                step(first + start, first + stop, gram[: (stop - start) * m].reshape(stop - start, m))

        # BLAS on one thread even for a single range (small work): OpenBLAS' threads would then
        # spin for up to 0.1 s on the cores that the next op's threads need.
        with single_threaded_blas():
            run_row_ranges(search, n, _backend.get_num_threads(), m * n_features)
