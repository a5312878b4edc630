"""A kd-tree over few-feature reference rows, for exact k-nearest-neighbour queries.

On 2-8 features a float32 GEMM spends its work on rows a tree never looks at: the tree visits the
few leaves near each query and ranks their rows by the same exact float64 distance as the GEMM
path (fastdl/ops/_knn_index.py), ties to the lower index, so its answers are that path's, bit for
bit. It prunes a node only when its box's distance, with margins far wider than any rounding,
is above the k-th exact distance so far. Runs on the numba and cython backends (kernels/*/kdtree);
KnnIndex takes the GEMM path elsewhere, and where a distance could come near float64's range.
"""

import math

import numpy as np

from fastdl import backend as _backend

# Where the tree beats the GEMM path (measured on uniform data, the tree's worst case, 2000
# queries, k = 1 and 10, 2 cores): from MIN_REFS reference rows on up to 4 features, from
# MIN_REFS_WIDE on 5 to MAX_FEATURES (at 10 features it wins only from 1e5 rows, and not at k = 10;
# at 12 and 16 it loses 2-5x).
MAX_FEATURES = 8
MIN_REFS = 1024
MIN_REFS_WIDE = 8192
# A one-off search (fastdl.ops.knn) with fewer queries is done before the tree is built.
MIN_QUERIES = 256
# Rows per leaf, at most (at least half of it).
LEAF_SIZE = 32
# A node is skipped when its box's squared distance b has b * REL_MARGIN - ABS_MARGIN above the
# k-th squared distance: an exact distance and a box's bound, summed in other orders, agree to
# some 20 units of roundoff (2e-15), and to 2**-1070 where squares fall below float64's normals.
REL_MARGIN = 1.0 - 2.0**-30
ABS_MARGIN = 2.0**-1000
# Rows whose extent (diagonal of their bounding box) reaches this take the GEMM path: there its
# ranking scale could leave 1 (_knn_index.ranking_scale), and the tree's answers differ from it.
MAX_EXTENT = 2.0**1000 / 4  # _knn_index.FAR / 4, written out (_knn_index imports this module)


def tree_kernels(backend):
    """The kdtree kernel module for `backend` (its neighbors backend), or None where there is none:
    the numpy and cuda backends, or a build without the extension."""
    name = _backend.resolve("neighbors", backend)
    if name not in ("numba", "cython"):
        return None
    try:
        return _backend.kernels("kdtree", name)[0]
    except _backend.BackendUnavailableError:
        return None


def _extent(low, high):
    """The diagonal of the box low..high (inf where it overflows or holds NaN); math.hypot's, as
    squares would overflow from 1e154 on."""
    with np.errstate(over="ignore", invalid="ignore"):
        extent = math.hypot(*(high - low).tolist())
    return extent if not math.isnan(extent) else math.inf


class KdTree:
    """A kd-tree over X_ref (C-contiguous float32/float64), or None from `build` where it does not pay."""

    def __init__(self, X_ref, kernels):
        n_ref, n_features = X_ref.shape
        levels = 1 + max(0, math.ceil(math.log2(n_ref / LEAF_SIZE))) if n_ref > LEAF_SIZE else 1
        n_nodes = (1 << levels) - 1
        self.perm = np.empty(n_ref, dtype=np.int64)
        self.node_start = np.empty(n_nodes, dtype=np.int64)
        self.node_end = np.empty(n_nodes, dtype=np.int64)
        self.lo = np.empty((n_nodes, n_features))
        self.hi = np.empty((n_nodes, n_features))
        self.points = X_ref.copy()  # reordered into tree order by the build
        kernels.build_kdtree(self.points, self.perm, self.node_start, self.node_end, self.lo, self.hi,
                             _backend.get_num_threads())

    @classmethod
    def build(cls, X_ref, backend=None, n_queries=None):
        """A tree over X_ref where it pays and answers as the GEMM path: few features, enough rows
        (and queries, where their number is known), all finite and within MAX_EXTENT of each
        other, on a backend with kdtree kernels."""
        n_ref, n_features = X_ref.shape
        if not 1 <= n_features <= MAX_FEATURES or n_ref < (MIN_REFS if n_features <= 4 else MIN_REFS_WIDE):
            return None
        if n_queries is not None and n_queries < MIN_QUERIES:
            return None
        kernels = tree_kernels(backend)
        if kernels is None or not np.isfinite([X_ref.min(), X_ref.max()]).all():
            return None
        tree = cls(X_ref, kernels)
        return tree if _extent(tree.lo[0], tree.hi[0]) < MAX_EXTENT else None

    def query(self, X_query, k, backend=None):
        """(distances (n, k) float64, indices (n, k) int64) as KnnIndex.query, or None where the
        tree cannot answer: a backend without kdtree kernels, queries not finite or too far out.

        X_query: C-contiguous, of the reference rows' dtype; 1 <= k <= n_ref.
        """
        kernels = tree_kernels(backend)
        if kernels is None:
            return None
        if X_query.size:
            # A box around the rows and queries (the queries' from their smallest and largest
            # values: two fast passes, NaN kept).
            low = np.minimum(self.lo[0], X_query.min())
            high = np.maximum(self.hi[0], X_query.max())
            if not _extent(low, high) < MAX_EXTENT:
                return None
        distances = np.empty((X_query.shape[0], k))
        indices = np.empty((X_query.shape[0], k), dtype=np.int64)
        kernels.kdtree_knn(X_query, self.points, self.perm, self.node_start, self.node_end, self.lo, self.hi,
                           REL_MARGIN, ABS_MARGIN, distances, indices, _backend.get_num_threads())
        return distances, indices
