"""Neighbour kernels (Cython): kNN selection, majority vote, class sums.

Mirrors kernels/cpu/neighbors.py and kernels/npy/neighbors.py.
"""

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.float cimport DBL_MAX
from libc.math cimport INFINITY, fabs, nextafter, nextafterf, sqrt
from libc.stdint cimport int64_t
from libc.stdlib cimport calloc, free, malloc

cdef enum:
    FEATURE_BLOCK = 16  # features per task in class_sums, as the Numba kernel
    LANES = 8  # float64 partial sums of an exact distance (one AVX-512 vector)
    SCAN_BLOCK = 32  # kNN rows tested together for any candidate (one AVX-512 float32 vector)

include "exact_distance.pxi"
include "heap.pxi"

# The Gram block's float type may differ from that of the rows it was made of.
ctypedef fused gram_floating:
    float
    double


cdef inline void _heap_out(
    double* keys, int64_t* index, Py_ssize_t k, double key_scale, double* out_dist, int64_t* out_idx,
) noexcept nogil:
    """Heap-sort the full max-heap of the k best (key, index) pairs into ascending order:
    distances (the keys over key_scale) into out_dist, indices into out_idx."""
    cdef Py_ssize_t last
    for last in range(k - 1, -1, -1):
        out_dist[last] = keys[0] / key_scale
        out_idx[last] = index[0]
        keys[0] = keys[last]
        index[0] = index[last]
        _sift_down(keys, index, last, 0)


cdef inline double _exact(
    const floating* a, const floating* b, Py_ssize_t n_features, double key_scale,
) noexcept nogil:
    """The exact float64 Euclidean distance of two original rows (_exact_distance, as the Numba
    kernels) times key_scale: the key they are ranked by."""
    cdef double total, unscale
    total, unscale = _exact_distance(a, b, n_features)
    return sqrt(total) * (unscale * key_scale)


cdef inline gram_floating _round_up(double value, gram_floating like) noexcept nogil:
    """The smallest value of gram's type that is >= value (value is finite)."""
    cdef gram_floating rounded = <gram_floating> value
    if rounded < value:
        if gram_floating is float:
            rounded = nextafterf(rounded, INFINITY)
        else:
            rounded = nextafter(rounded, INFINITY)
    return rounded


cdef void _knn_row(
    const gram_floating* gram_row, const gram_floating* ref_terms, double slack,
    const floating* query, const floating* X_ref, double key_scale, Py_ssize_t m,
    Py_ssize_t n_features, Py_ssize_t k, double* keys, int64_t* index, int64_t* candidates,
    gram_floating* terms, double* out_dist, int64_t* out_idx,
) noexcept nogil:
    """One query row of knn_from_gram; keys, index (k), candidates and terms (m) are scratch.

    terms[j] = ref_terms[j] - 2 gram_row[j] is the squared distance less the query's squared norm,
    within `slack` of the exact one; only rows whose term is within 2 slack of the k-th smallest
    term can be among the k nearest, and only those are ranked by their exact float64 distance.
    The tests read "not above": a NaN term rules nothing out, so its row is ranked exactly, and
    out_dist and out_idx are always written in full.
    """
    cdef Py_ssize_t j, c, block_start, block_end, size = 0, n_candidates = 0
    cdef double kth = INFINITY, reach = INFINITY
    cdef gram_floating limit = INFINITY
    cdef bint hit
    # One pass over blocks of rows. The arithmetic and the test "any term within reach" vectorise;
    # the rare blocks that hold one keep the k smallest terms in a max-heap (their top is the k-th
    # smallest so far) and remember every row within reach; reach only shrinks, so the remembered
    # rows are a superset of those within reach at the end.
    for block_start in range(0, m, 32):  # SCAN_BLOCK: Cython needs a literal step for a C loop
        block_end = min(m, block_start + SCAN_BLOCK)
        hit = False
        for j in range(block_start, block_end):
            terms[j] = ref_terms[j] - (gram_row[j] + gram_row[j])
            hit |= not (terms[j] > limit)
        if not hit:
            continue
        for j in range(block_start, block_end):
            if not (terms[j] > limit):
                candidates[n_candidates] = j
                n_candidates += 1
                if size < k or terms[j] < kth:
                    size = _push(keys, index, k, size, terms[j], j)
                    if size == k:
                        kth = keys[0]
                        reach = kth + 2.0 * slack
                        limit = _round_up(reach, limit)
    # Rank the rows still within reach by their exact float64 distance.
    size = 0
    for c in range(n_candidates):
        j = candidates[c]
        if not (terms[j] > reach):
            size = _push(keys, index, k, size, _exact(query, X_ref + j * n_features, n_features, key_scale), j)
    _heap_out(keys, index, k, key_scale, out_dist, out_idx)


def knn_from_gram(
    const gram_floating[:, ::1] gram, const double[::1] sq_norms_q, const double[::1] sq_norms_r,
    double bound_tol, double bound_abs, const floating[:, ::1] X_query, const floating[:, ::1] X_ref,
    double key_scale, double[:, ::1] out_dist, int64_t[:, ::1] out_idx, int n_threads,
):
    """Exact k nearest reference rows per query row, from an approximate Gram block.

    gram (n, m): approximate dot products of the (shifted, scaled) rows, float32 or float64;
    sq_norms_q (n,), sq_norms_r (m,): float64 squared norms of those rows, finite in gram's type;
    the approximate squared distance q + r - 2 g is within bound_tol * (q + r) + bound_abs of the
    true one (same scale). X_query (n, d), X_ref (m, d): the original rows, ranked by their exact
    float64 distances (_exact) times key_scale, a power of two: 1, or below 1 where distances
    could pass float64's range (they are then still ranked by their true size). out_dist (n, k)
    gets the distances, out_idx (n, k) int64 indices, ascending, equal ones in index order.
    """
    cdef Py_ssize_t n = gram.shape[0], m = gram.shape[1], k = out_idx.shape[1]
    cdef Py_ssize_t n_features = X_query.shape[1]
    cdef Py_ssize_t i, j
    cdef double max_norm_r = 0.0, tol, unit_roundoff
    cdef double* keys = NULL
    cdef int64_t* index = NULL
    cdef gram_floating* terms = NULL
    cdef gram_floating* ref_terms = NULL
    cdef int failed = 0
    cdef int* failed_ptr = &failed
    if n == 0 or k == 0:
        return
    if gram_floating is float:
        unit_roundoff = 2.0**-24
    else:
        unit_roundoff = 2.0**-53
    # Computing a term in gram's type adds at most 3.1 unit roundoffs of q + r to the bound.
    tol = bound_tol + 4.0 * unit_roundoff
    ref_terms = <gram_floating*> malloc(m * sizeof(gram_floating))
    if ref_terms == NULL:
        raise MemoryError("knn_from_gram: no memory for the reference terms")
    for j in range(m):
        ref_terms[j] = <gram_floating> sq_norms_r[j]
        if sq_norms_r[j] > max_norm_r:
            max_norm_r = sq_norms_r[j]
    with nogil, parallel(num_threads=n_threads):
        # Per-thread scratch, allocated once per thread: the heap's keys, then its indices and the
        # candidate rows, and the row's terms.
        keys = <double*> malloc(k * sizeof(double))
        index = <int64_t*> malloc((k + m) * sizeof(int64_t))
        terms = <gram_floating*> malloc(m * sizeof(gram_floating))
        if keys == NULL or index == NULL or terms == NULL:
            failed_ptr[0] = 1
        for i in prange(n, schedule="static"):
            if keys == NULL or index == NULL or terms == NULL:
                continue
            _knn_row(
                &gram[i, 0], ref_terms,
                tol * (sq_norms_q[i] + max_norm_r) + bound_abs,
                &X_query[i, 0], &X_ref[0, 0], key_scale, m, n_features, k, keys, index, index + k,
                terms, &out_dist[i, 0], &out_idx[i, 0],
            )
        free(keys)
        free(index)
        free(terms)
    free(ref_terms)
    if failed:
        raise MemoryError("knn_from_gram: no memory for the per-thread scratch")


cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define FASTDL_PREFETCH(address) __builtin_prefetch((address), 0, 3)
    #else
    #define FASTDL_PREFETCH(address) ((void) 0)
    #endif
    """
    void FASTDL_PREFETCH(const void* address) nogil


cdef inline void _prefetch_row(const floating* row, Py_ssize_t n_features) noexcept nogil:
    """Ask the cache for a row about to be read (one request per 64-byte line)."""
    cdef Py_ssize_t offset
    for offset in range(0, n_features * sizeof(floating), 64):
        FASTDL_PREFETCH(<const char*> row + offset)


cdef inline gram_floating _bound_limit(double kth_scaled, const double* limit_of, gram_floating like) noexcept nogil:
    """The largest term a row within distance kth_scaled (scaled as the projected rows) can have
    (see knn_from_bounds)."""
    cdef double reach = limit_of[0] * kth_scaled + limit_of[1]
    return _round_up(reach * reach + limit_of[2] - limit_of[3], like)


cdef Py_ssize_t _knn_bounded_row(
    const gram_floating* gram_row, const gram_floating* ref_terms, const double* limit_of,
    const floating* query, const floating* X_ref, double exact_scale, Py_ssize_t m,
    Py_ssize_t n_features, Py_ssize_t k, double* keys, int64_t* index, int64_t* first,
    int64_t* candidates, gram_floating* terms, double* out_dist, int64_t* out_idx,
) noexcept nogil:
    """One query row of knn_from_bounds (as the Numba kernel); returns how many rows it ranked.

    keys, index, first (k) and candidates, terms (m) are scratch.
    """
    cdef Py_ssize_t j, t, c, block_start, block_end, size = 0, n_ranked = k, n_candidates = 0
    cdef gram_floating kth = INFINITY
    cdef gram_floating limit
    cdef double kth_exact
    cdef bint hit
    # Pass 1: the k smallest terms (any k rows give an upper bound on the k-th exact distance).
    for j in range(m):
        terms[j] = ref_terms[j] - (gram_row[j] + gram_row[j])
    for block_start in range(0, m, 32):  # SCAN_BLOCK
        block_end = min(m, block_start + SCAN_BLOCK)
        if size == k and block_end - block_start == SCAN_BLOCK:
            hit = False
            for t in range(32):  # SCAN_BLOCK, a fixed count that the compiler unrolls
                hit |= terms[block_start + t] < kth
            if not hit:
                continue
        for j in range(block_start, block_end):
            if size < k or terms[j] < kth:
                size = _push(keys, index, k, size, terms[j], j)
                if size == k:
                    kth = <gram_floating> keys[0]
    # Rank those k exactly; every row is ranked at most once (its term becomes +inf).
    for t in range(k):
        first[t] = index[t]
        _prefetch_row(X_ref + first[t] * n_features, n_features)
    size = 0
    for t in range(k):
        j = first[t]
        terms[j] = INFINITY
        size = _push(keys, index, k, size, _exact(query, X_ref + j * n_features, n_features, 1.0), j)
    # Pass 2: the rows whose term is within the limit of that k-th exact distance...
    kth_exact = keys[0]
    limit = _bound_limit(kth_exact * exact_scale, limit_of, kth)
    for block_start in range(0, m, 32):  # SCAN_BLOCK
        block_end = min(m, block_start + SCAN_BLOCK)
        if block_end - block_start == SCAN_BLOCK:
            hit = False
            for t in range(32):  # SCAN_BLOCK
                hit |= terms[block_start + t] <= limit
            if not hit:
                continue
        for j in range(block_start, block_end):  # branch-free: written always, kept when within
            candidates[n_candidates] = j
            n_candidates += terms[j] <= limit
    # ... ranked exactly, each row fetched while the one before is summed. The k-th exact distance
    # and so the limit only shrink: rows beyond it by then are skipped.
    for c in range(n_candidates):
        if c + 1 < n_candidates:
            _prefetch_row(X_ref + candidates[c + 1] * n_features, n_features)
        j = candidates[c]
        if terms[j] > limit:
            continue
        n_ranked += 1
        size = _push(keys, index, k, size, _exact(query, X_ref + j * n_features, n_features, 1.0), j)
        if keys[0] < kth_exact:
            kth_exact = keys[0]
            limit = _bound_limit(kth_exact * exact_scale, limit_of, kth)
    _heap_out(keys, index, k, 1.0, out_dist, out_idx)
    return n_ranked


def knn_from_bounds(
    const gram_floating[:, ::1] gram, const double[::1] sq_norms_r, const double[:, ::1] limits,
    const floating[:, ::1] X_query, const floating[:, ::1] X_ref, double exact_scale,
    double[:, ::1] out_dist, int64_t[:, ::1] out_idx, int n_threads,
):
    """Exact k nearest reference rows per query row, pruned by lower bounds; returns rows ranked.

    gram (n, m): dot products of projected query and reference rows, float32 or float64;
    sq_norms_r (m,): float64 squared norms of the projected reference rows. limits (n, 4) float64,
    per query (sigma, shift, slack, base): a reference row whose exact distance times exact_scale
    (the projected rows' power-of-two scale) is at most t has sq_norms_r - 2 gram, as computed in
    gram's type, at most (sigma t + shift)^2 + slack - base. X_query, X_ref, out_dist, out_idx: as
    in knn_from_gram, with key_scale 1. Only rows that pass that test against the k-th exact distance so far are ranked.
    """
    cdef Py_ssize_t n = gram.shape[0], m = gram.shape[1], k = out_idx.shape[1]
    cdef Py_ssize_t n_features = X_query.shape[1]
    cdef Py_ssize_t i, j, n_ranked = 0
    cdef double* keys = NULL
    cdef int64_t* index = NULL
    cdef gram_floating* terms = NULL
    cdef gram_floating* ref_terms = NULL
    cdef int failed = 0
    cdef int* failed_ptr = &failed
    if n == 0 or k == 0:
        return 0
    ref_terms = <gram_floating*> malloc(m * sizeof(gram_floating))
    if ref_terms == NULL:
        raise MemoryError("knn_from_bounds: no memory for the reference terms")
    for j in range(m):
        ref_terms[j] = <gram_floating> sq_norms_r[j]
    with nogil, parallel(num_threads=n_threads):
        # Per-thread scratch: the heap's keys, its indices, the first k rows and the candidates, the
        # row's terms.
        keys = <double*> malloc(k * sizeof(double))
        index = <int64_t*> malloc((2 * k + m) * sizeof(int64_t))
        terms = <gram_floating*> malloc(m * sizeof(gram_floating))
        if keys == NULL or index == NULL or terms == NULL:
            failed_ptr[0] = 1
        for i in prange(n, schedule="static"):
            if keys == NULL or index == NULL or terms == NULL:
                continue
            n_ranked += _knn_bounded_row(
                &gram[i, 0], ref_terms, &limits[i, 0], &X_query[i, 0], &X_ref[0, 0], exact_scale, m,
                n_features, k, keys, index, index + k, index + 2 * k, terms, &out_dist[i, 0], &out_idx[i, 0],
            )
        free(keys)
        free(index)
        free(terms)
    free(ref_terms)
    if failed:
        raise MemoryError("knn_from_bounds: no memory for the per-thread scratch")
    return n_ranked


def majority_vote(
    const int64_t[:, ::1] neighbor_codes, Py_ssize_t n_classes, int64_t[::1] out, int n_threads,
):
    """Most frequent class code per row of neighbor_codes (n, k) int64 into out (n,); ties -> smaller."""
    cdef Py_ssize_t n = neighbor_codes.shape[0], k = neighbor_codes.shape[1]
    cdef Py_ssize_t i, t
    cdef int64_t* counts = NULL
    cdef int64_t code, winner, best
    cdef int failed = 0
    cdef int* failed_ptr = &failed
    if n == 0:
        return
    if k == 0:
        # No votes: every count is zero and code 0 wins, as in the Numba kernel.
        out[:] = 0
        return
    with nogil, parallel(num_threads=n_threads):
        counts = <int64_t*> calloc(n_classes if n_classes > 0 else 1, sizeof(int64_t))
        if counts == NULL:
            failed_ptr[0] = 1
        for i in prange(n, schedule="static"):
            if counts == NULL:
                continue
            for t in range(k):
                counts[neighbor_codes[i, t]] += 1
            # Only codes in the row have a nonzero count; ties go to the smaller code.
            winner = neighbor_codes[i, 0]
            best = counts[winner]
            for t in range(1, k):
                code = neighbor_codes[i, t]
                if counts[code] > best or (counts[code] == best and code < winner):
                    winner = code
                    best = counts[code]
            out[i] = winner
            for t in range(k):
                counts[neighbor_codes[i, t]] = 0
        free(counts)
    if failed:
        raise MemoryError("majority_vote: no memory for the per-thread counts")


def class_sums(
    const floating[:, ::1] X, const int64_t[::1] codes, double[:, ::1] out_sums, int64_t[::1] out_counts,
    int n_threads,
):
    """Per-class feature sums (float64) and counts of X (n, d) with int64 codes into out_sums (c, d).

    Each sum adds its rows in order, whatever the thread count.
    """
    cdef Py_ssize_t n = X.shape[0], n_features = X.shape[1], n_classes = out_sums.shape[0]
    cdef Py_ssize_t n_blocks = (n_features + FEATURE_BLOCK - 1) // FEATURE_BLOCK
    cdef Py_ssize_t b, i, f, c, first, stop
    out_counts[:] = 0
    out_sums[:, :] = 0.0
    with nogil:
        for i in range(n):
            out_counts[codes[i]] += 1
        # Threads own disjoint blocks of features and add the rows in order.
        for b in prange(n_blocks, num_threads=n_threads, schedule="static"):
            first = b * FEATURE_BLOCK
            stop = min(n_features, first + FEATURE_BLOCK)
            for i in range(n):
                c = codes[i]
                for f in range(first, stop):
                    out_sums[c, f] += X[i, f]
