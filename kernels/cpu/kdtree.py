"""kd-tree kernels (Numba): build a tree over reference rows, exact k nearest neighbours from it.

Mirrors kernels/cy/kdtree.pyx. The tree is implicit: node i has children 2i+1 and 2i+2, owns the
rows node_start[i]..node_end[i]-1 of the permutation `perm`, and lo[i], hi[i] bound them. The
rows are ranked by the exact float64 distance of kernels/cpu/neighbors.py, ties to the lower
original index, so a query gives the brute-force path's answer bit for bit.
"""

import numpy as np
from numba import prange

from . import distance, neighbors
from ._jit import compile_kernel, helper, launch
from .distance import LANES
from .neighbors import ROW_TASK, _exact, _heap_out, _push

_helper = helper()
_inlined = helper(inline="always")


@_inlined
def _swap_rows(points, perm, i, j):
    """Swap rows i and j of points and of perm."""
    perm[i], perm[j] = perm[j], perm[i]
    for f in range(points.shape[1]):
        points[i, f], points[j, f] = points[j, f], points[i, f]


@_helper
def _select(points, perm, start, stop, nth, dim):
    """Reorder rows start..stop-1 of points (and perm) so that points[nth, dim] is in its sorted
    place, smaller-or-equal values before it and larger-or-equal after (Hoare's selection,
    median-of-three pivot). Whole rows move: the passes after it read them in order."""
    left, right = start, stop - 1
    while right > left:
        a, b, c = points[left, dim], points[(left + right) // 2, dim], points[right, dim]
        pivot = max(min(a, b), min(max(a, b), c))
        i, j = left, right
        while i <= j:
            while points[i, dim] < pivot:
                i += 1
            while points[j, dim] > pivot:
                j -= 1
            if i <= j:
                _swap_rows(points, perm, i, j)
                i += 1
                j -= 1
        if nth <= j:
            right = j
        elif nth >= i:
            left = i
        else:
            return


@_inlined
def _fit_box(points, start, stop, lo, hi):
    """lo, hi = the bounding box of rows start..stop-1 of points, in float64."""
    for f in range(points.shape[1]):
        low = high = np.float64(points[start, f])
        for i in range(start + 1, stop):
            value = np.float64(points[i, f])
            low = min(low, value)
            high = max(high, value)
        lo[f], hi[f] = low, high


def _build_kdtree(points, perm, node_start, node_end, lo, hi):
    n, n_features = points.shape
    n_nodes = lo.shape[0]
    n_inner = n_nodes // 2
    for i in range(n):
        perm[i] = i
    node_start[0], node_end[0] = 0, n
    _fit_box(points, 0, n, lo[0], hi[0])
    # Top-down, one level at a time (its nodes in parallel): split each node's widest side at the
    # median row. A child's box is first its parent's cut at the median (a superset, enough to
    # choose the side to split); the exact boxes, which the queries prune by, come after.
    first = 0
    while first < n_inner:
        for node in prange(first, 2 * first + 1):
            start, stop = node_start[node], node_end[node]
            dim = 0
            for f in range(1, n_features):
                if hi[node, f] - lo[node, f] > hi[node, dim] - lo[node, dim]:
                    dim = f
            mid = start + (stop - start) // 2
            _select(points, perm, start, stop, mid, dim)
            child = 2 * node + 1
            node_start[child], node_end[child] = start, mid
            node_start[child + 1], node_end[child + 1] = mid, stop
            for f in range(n_features):
                lo[child, f], hi[child, f] = lo[node, f], hi[node, f]
                lo[child + 1, f], hi[child + 1, f] = lo[node, f], hi[node, f]
            hi[child, dim] = lo[child + 1, dim] = np.float64(points[mid, dim])
        first = 2 * first + 1
    # Exact boxes: the leaves' from their rows, then each parent's around its children's.
    for leaf in prange(n_inner, n_nodes):
        _fit_box(points, node_start[leaf], node_end[leaf], lo[leaf], hi[leaf])
    for node in range(n_inner - 1, -1, -1):
        for f in range(n_features):
            lo[node, f] = min(lo[2 * node + 1, f], lo[2 * node + 2, f])
            hi[node, f] = max(hi[2 * node + 1, f], hi[2 * node + 2, f])


_build_serial = compile_kernel(_build_kdtree, exact=True)
_build_parallel = compile_kernel(_build_kdtree, parallel=True, exact=True)


def build_kdtree(points, perm, node_start, node_end, lo, hi, n_threads):
    """Build a kd-tree of lo.shape[0] = 2**levels - 1 nodes over points (m, d), float32/float64.

    points: a copy of the reference rows, reordered in place into tree order; perm (m,) int64
    gets their original indices; node_start, node_end (n_nodes,) int64: each node's range of
    rows, none empty (m >= 2**(levels - 1)); lo, hi (n_nodes, d) float64: each node's bounding box.
    """
    launch(_build_serial, _build_parallel, n_threads, points, perm, node_start, node_end, lo, hi)


@_inlined
def _box_bound(query, lo, hi):
    """Squared float64 distance from query to the box lo..hi: no row inside is nearer."""
    total = 0.0
    for f in range(query.shape[0]):
        value = np.float64(query[f])
        gap = max(lo[f] - value, value - hi[f], 0.0)
        total += gap * gap
    return total


@_inlined
def _squared_distance(query, row):
    """|query - row|^2 in float64, summed in feature order (within some d units of roundoff of
    the exact distance's square, as a box's bound)."""
    total = 0.0
    for f in range(query.shape[0]):
        diff = np.float64(query[f]) - np.float64(row[f])
        total += diff * diff
    return total


@_inlined
def _beyond(bound, kth, rel_margin, abs_margin):
    """Whether every row whose squared distance is at least `bound` (rounded as _box_bound does)
    has an exact distance above kth: with margins far wider than either side's rounding, the
    subnormal range included. kth * kth = inf (never pruned) where it would overflow."""
    return bound * rel_margin - abs_margin > kth * kth


def _kdtree_knn(X_query, points, perm, node_start, node_end, lo, hi, rel_margin, abs_margin, out_dist, out_idx):
    n = X_query.shape[0]
    k = out_idx.shape[1]
    n_nodes = lo.shape[0]
    n_inner = n_nodes // 2
    depth = 1
    while (1 << depth) - 1 < n_nodes:
        depth += 1
    for task in prange((n + ROW_TASK - 1) // ROW_TASK):
        keys = np.empty(k)
        index = np.empty(k, np.int64)
        # Depth-first, nearer child first: each step pops one node and pushes at most two.
        stack = np.empty(depth + 1, np.int64)
        bounds = np.empty(depth + 1)
        lane = np.empty(LANES)
        for i in range(task * ROW_TASK, min(n, (task + 1) * ROW_TASK)):
            query = X_query[i]
            size = 0
            stack[0], bounds[0], top = 0, 0.0, 1
            while top > 0:
                top -= 1
                node = stack[top]
                if size == k and _beyond(bounds[top], keys[0], rel_margin, abs_margin):
                    continue
                if node >= n_inner:
                    for j in range(node_start[node], node_end[node]):
                        # A plain sum of squares screens out, as a box's bound would, the rows
                        # beyond the k-th distance before their exact distance is computed.
                        if size < k or not _beyond(_squared_distance(query, points[j]), keys[0], rel_margin,
                                                   abs_margin):
                            size = _push(keys, index, size, _exact(query, points[j], 1.0, lane), perm[j])
                    continue
                near, far = 2 * node + 1, 2 * node + 2
                near_bound, far_bound = _box_bound(query, lo[near], hi[near]), _box_bound(query, lo[far], hi[far])
                if far_bound < near_bound:
                    near, far, near_bound, far_bound = far, near, far_bound, near_bound
                stack[top], bounds[top] = far, far_bound
                stack[top + 1], bounds[top + 1] = near, near_bound
                top += 2
            _heap_out(keys, index, 1.0, out_dist[i], out_idx[i])


# uses: neighbors' _exact and _push, and distance's code in _exact, are inlined (see compile_kernel).
_knn_serial = compile_kernel(_kdtree_knn, exact=True, uses=(distance, neighbors))
_knn_parallel = compile_kernel(_kdtree_knn, parallel=True, exact=True, uses=(distance, neighbors))


def kdtree_knn(X_query, points, perm, node_start, node_end, lo, hi, rel_margin, abs_margin, out_dist, out_idx,
               n_threads):
    """Exact k nearest reference rows per query row, from a tree of build_kdtree.

    X_query (n, d) and points (m, d), the reference rows in tree order (X_ref[perm]), of one dtype;
    perm, node_start, node_end, lo, hi: the tree. A node is skipped when its box's squared distance
    b has b * rel_margin - abs_margin above the square of the k-th distance so far. out_dist (n, k)
    gets the exact float64 distances (neighbors.knn_from_gram's, key_scale 1), out_idx (n, k) the
    original indices, ascending, equal distances in index order; 1 <= k <= m.
    """
    launch(_knn_serial, _knn_parallel, n_threads, X_query, points, perm, node_start, node_end, lo, hi,
           rel_margin, abs_margin, out_dist, out_idx)
