"""kd-tree kernels (Cython): build a tree over reference rows, exact k nearest neighbours from it.

Mirrors kernels/cpu/kdtree.py (see there for the tree's layout). The heap is neighbors.pyx's
(heap.pxi).
"""

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.float cimport DBL_MAX
from libc.math cimport fabs, sqrt
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc

cdef enum:
    LANES = 8  # float64 partial sums of an exact distance, as neighbors.pyx
    ROW_TASK = 16  # query rows per parallel task, as the Numba kernel

include "exact_distance.pxi"
include "heap.pxi"


cdef inline void _heap_out(
    double* keys, int64_t* index, Py_ssize_t k, double* out_dist, int64_t* out_idx,
) noexcept nogil:
    """Heap-sort the full max-heap of the k best (key, index) pairs into ascending order."""
    cdef Py_ssize_t last
    for last in range(k - 1, -1, -1):
        out_dist[last] = keys[0]
        out_idx[last] = index[0]
        keys[0] = keys[last]
        index[0] = index[last]
        _sift_down(keys, index, last, 0)


cdef inline void _swap_rows(floating* points, int64_t* perm, Py_ssize_t n_features, Py_ssize_t i,
                            Py_ssize_t j) noexcept nogil:
    """Swap rows i and j of points and of perm."""
    cdef Py_ssize_t f
    cdef floating value
    perm[i], perm[j] = perm[j], perm[i]
    for f in range(n_features):
        value = points[i * n_features + f]
        points[i * n_features + f] = points[j * n_features + f]
        points[j * n_features + f] = value


cdef void _select(floating* points, int64_t* perm, Py_ssize_t n_features, Py_ssize_t start, Py_ssize_t stop,
                  Py_ssize_t nth, Py_ssize_t dim) noexcept nogil:
    """Reorder rows start..stop-1 so that row nth holds its sorted place on feature dim (Hoare's
    selection, median-of-three pivot), as the Numba kernel."""
    cdef Py_ssize_t left = start, right = stop - 1, i, j
    cdef floating a, b, c, pivot
    while right > left:
        a = points[left * n_features + dim]
        b = points[((left + right) // 2) * n_features + dim]
        c = points[right * n_features + dim]
        pivot = max(min(a, b), min(max(a, b), c))
        i, j = left, right
        while i <= j:
            while points[i * n_features + dim] < pivot:
                i += 1
            while points[j * n_features + dim] > pivot:
                j -= 1
            if i <= j:
                _swap_rows(points, perm, n_features, i, j)
                i += 1
                j -= 1
        if nth <= j:
            right = j
        elif nth >= i:
            left = i
        else:
            return


cdef inline void _fit_box(const floating* points, Py_ssize_t n_features, Py_ssize_t start, Py_ssize_t stop,
                          double* lo, double* hi) noexcept nogil:
    """lo, hi = the bounding box of rows start..stop-1 of points, in float64."""
    cdef Py_ssize_t f, i
    cdef double low, high, value
    for f in range(n_features):
        low = high = <double>points[start * n_features + f]
        for i in range(start + 1, stop):
            value = <double>points[i * n_features + f]
            low = min(low, value)
            high = max(high, value)
        lo[f], hi[f] = low, high


def build_kdtree(floating[:, ::1] points, int64_t[::1] perm, int64_t[::1] node_start, int64_t[::1] node_end,
                 double[:, ::1] lo, double[:, ::1] hi, int n_threads):
    """Build a kd-tree of lo.shape[0] = 2**levels - 1 nodes over points (m, d), as the Numba kernel.

    points: a copy of the reference rows, reordered in place into tree order; perm (m,) int64
    gets their original indices; node_start, node_end (n_nodes,) int64: each node's range of
    rows, none empty (m >= 2**(levels - 1)); lo, hi (n_nodes, d) float64: each node's bounding box.
    """
    cdef Py_ssize_t n = points.shape[0], n_features = points.shape[1], n_nodes = lo.shape[0]
    cdef Py_ssize_t n_inner = n_nodes // 2, first, node, parent, child, start, stop, mid, dim, f, i
    if n == 0 or n_features == 0:
        return
    for i in range(n):
        perm[i] = i
    node_start[0], node_end[0] = 0, n
    _fit_box(&points[0, 0], n_features, 0, n, &lo[0, 0], &hi[0, 0])
    with nogil:
        # Top-down, one level at a time (its nodes in parallel); see the Numba kernel.
        first = 0
        while first < n_inner:
            for node in prange(first, 2 * first + 1, num_threads=n_threads, schedule="dynamic"):
                start, stop = node_start[node], node_end[node]
                dim = 0
                for f in range(1, n_features):
                    if hi[node, f] - lo[node, f] > hi[node, dim] - lo[node, dim]:
                        dim = f
                mid = start + (stop - start) // 2
                _select(&points[0, 0], &perm[0], n_features, start, stop, mid, dim)
                child = 2 * node + 1
                node_start[child], node_end[child] = start, mid
                node_start[child + 1], node_end[child + 1] = mid, stop
                for f in range(n_features):
                    lo[child, f], hi[child, f] = lo[node, f], hi[node, f]
                    lo[child + 1, f], hi[child + 1, f] = lo[node, f], hi[node, f]
                hi[child, dim] = <double>points[mid, dim]
                lo[child + 1, dim] = <double>points[mid, dim]
            first = 2 * first + 1
        # Exact boxes: the leaves' from their rows, then each parent's around its children's.
        for node in prange(n_inner, n_nodes, num_threads=n_threads, schedule="static"):
            _fit_box(&points[0, 0], n_features, node_start[node], node_end[node], &lo[node, 0], &hi[node, 0])
        for parent in range(n_inner - 1, -1, -1):
            for f in range(n_features):
                lo[parent, f] = min(lo[2 * parent + 1, f], lo[2 * parent + 2, f])
                hi[parent, f] = max(hi[2 * parent + 1, f], hi[2 * parent + 2, f])


cdef inline double _box_bound(const floating* query, const double* lo, const double* hi,
                              Py_ssize_t n_features) noexcept nogil:
    """Squared float64 distance from query to the box lo..hi: no row inside is nearer."""
    cdef double total = 0.0, value, gap
    cdef Py_ssize_t f
    for f in range(n_features):
        value = <double>query[f]
        gap = max(max(lo[f] - value, value - hi[f]), 0.0)
        total += gap * gap
    return total


cdef inline double _squared_distance(const floating* query, const floating* row, Py_ssize_t n_features) noexcept nogil:
    """|query - row|^2 in float64, summed in feature order (a lower bound as a box's, see _beyond)."""
    cdef double total = 0.0, diff
    cdef Py_ssize_t f
    for f in range(n_features):
        diff = <double>query[f] - <double>row[f]
        total += diff * diff
    return total


cdef inline bint _beyond(double bound, double kth, double rel_margin, double abs_margin) noexcept nogil:
    """Whether every row whose squared distance is at least `bound` (as summed here) has an exact
    distance above kth; see the Numba kernel's _beyond."""
    return bound * rel_margin - abs_margin > kth * kth


cdef void _query_row(
    const floating* query, const floating* points, const int64_t* perm, const int64_t* node_start,
    const int64_t* node_end, const double* lo, const double* hi, Py_ssize_t n_nodes, Py_ssize_t n_features,
    Py_ssize_t k, double rel_margin, double abs_margin, double* keys, int64_t* index, int64_t* stack,
    double* bounds, double* out_dist, int64_t* out_idx,
) noexcept nogil:
    """One query row of kdtree_knn; keys, index (k), stack and bounds (depth + 1) are scratch."""
    cdef Py_ssize_t n_inner = n_nodes // 2, size = 0, top = 1, node, near, far, j
    cdef double near_bound, far_bound, total, unscale
    stack[0], bounds[0] = 0, 0.0
    # Depth-first, nearer child first: each step pops one node and pushes at most two.
    while top > 0:
        top -= 1
        node = stack[top]
        if size == k and _beyond(bounds[top], keys[0], rel_margin, abs_margin):
            continue
        if node >= n_inner:
            for j in range(node_start[node], node_end[node]):
                # A plain sum of squares screens out the rows beyond the k-th distance first.
                if size == k and _beyond(_squared_distance(query, points + j * n_features, n_features), keys[0],
                                         rel_margin, abs_margin):
                    continue
                total, unscale = _exact_distance(query, points + j * n_features, n_features)
                size = _push(keys, index, k, size, sqrt(total) * (unscale * 1.0), perm[j])
            continue
        near, far = 2 * node + 1, 2 * node + 2
        near_bound = _box_bound(query, lo + near * n_features, hi + near * n_features, n_features)
        far_bound = _box_bound(query, lo + far * n_features, hi + far * n_features, n_features)
        if far_bound < near_bound:
            near, far = far, near
            near_bound, far_bound = far_bound, near_bound
        stack[top], bounds[top] = far, far_bound
        stack[top + 1], bounds[top + 1] = near, near_bound
        top += 2
    _heap_out(keys, index, k, out_dist, out_idx)


def kdtree_knn(
    const floating[:, ::1] X_query, const floating[:, ::1] points, const int64_t[::1] perm,
    const int64_t[::1] node_start, const int64_t[::1] node_end, const double[:, ::1] lo, const double[:, ::1] hi,
    double rel_margin, double abs_margin, double[:, ::1] out_dist, int64_t[:, ::1] out_idx, int n_threads,
):
    """Exact k nearest reference rows per query row, from a tree of build_kdtree (as the Numba kernel).

    X_query (n, d) and points (m, d), the reference rows in tree order, of one dtype; perm,
    node_start, node_end, lo, hi: the tree. A node is skipped when its box's squared distance b has
    b * rel_margin - abs_margin above the square of the k-th distance so far. out_dist (n, k) gets
    the exact float64 distances, out_idx (n, k) the original indices, ascending, equal distances in
    index order; 1 <= k <= m.
    """
    cdef Py_ssize_t n = X_query.shape[0], n_features = X_query.shape[1], k = out_idx.shape[1]
    cdef Py_ssize_t n_nodes = lo.shape[0], depth = 1, i
    cdef double* keys = NULL
    cdef int64_t* index = NULL
    cdef double* bounds = NULL
    cdef int failed = 0
    cdef int* failed_ptr = &failed
    if n == 0 or k == 0:
        return
    while (1 << depth) - 1 < n_nodes:
        depth += 1
    with nogil, parallel(num_threads=n_threads):
        # Per-thread scratch: the heap's keys and the node bounds, the heap's indices and the stack.
        keys = <double*> malloc((k + depth + 1) * sizeof(double))
        index = <int64_t*> malloc((k + depth + 1) * sizeof(int64_t))
        if keys == NULL or index == NULL:
            failed_ptr[0] = 1
        for i in prange(n, schedule="dynamic", chunksize=ROW_TASK):
            if keys == NULL or index == NULL:
                continue
            _query_row(&X_query[i, 0], &points[0, 0], &perm[0], &node_start[0], &node_end[0], &lo[0, 0],
                       &hi[0, 0], n_nodes, n_features, k, rel_margin, abs_margin, keys, index, index + k,
                       keys + k, &out_dist[i, 0], &out_idx[i, 0])
        free(keys)
        free(index)
    if failed:
        raise MemoryError("kdtree_knn: no memory for the per-thread scratch")
