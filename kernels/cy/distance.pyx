"""Distance kernels (Cython); mirrors kernels/cpu/distance.py and kernels/npy/distance.py."""

from cython cimport floating
from cython.parallel cimport prange
from libc.float cimport DBL_MAX
from libc.math cimport NAN, fabs, isnan, sqrt
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

cdef enum:
    LANES = 8  # float64 partial sums of a squared norm (one AVX-512 vector), as the Numba kernel
    PAIR_BLOCK = 256  # pairs a row of A takes at a time in direct_distances, as the Numba kernel
    MIN_BLOCK_PAIRS = 16  # ... where B has this many rows, as the Numba kernel
    COLUMN_BLOCK = 64  # fewest columns per thread in column_stats, as the Numba kernel
    ALIGN = 64  # bytes: column_stats' accumulators start on a cache line (an AVX-512 vector)

include "exact_distance.pxi"

# The Gram block's (or a shifted copy's) float type may differ from that of its rows.
ctypedef fused gram_floating:
    float
    double


cdef inline double _exact_entry(
    const floating* a_row, const floating* b_row, Py_ssize_t n_features, bint squared,
) noexcept nogil:
    """|a - b| (squared: its square) in float64, from _exact_distance: a refined or direct entry."""
    cdef double total, unscale
    total, unscale = _exact_distance(a_row, b_row, n_features)
    return total * unscale * unscale if squared else sqrt(total) * unscale


cdef inline void _distance_row(
    gram_floating* gram_row, const floating* a_row, const floating* B, double sq_norm_a,
    const double* sq_norms_b, double refine_tol, double unscale, bint squared, Py_ssize_t m,
    Py_ssize_t n_features,
) noexcept nogil:
    """One row of distances_from_gram, in the Numba kernel's passes."""
    cdef Py_ssize_t j, n_close = 0
    cdef double norm_sum
    for j in range(m):
        norm_sum = sq_norm_a + sq_norms_b[j]
        gram_row[j] = <gram_floating>(norm_sum - 2.0 * gram_row[j])
        n_close += <double>gram_row[j] <= refine_tol * norm_sum  # tested as stored, in every backend
    if n_close > 0:
        for j in range(m):
            if gram_row[j] <= refine_tol * (sq_norm_a + sq_norms_b[j]):
                gram_row[j] = NAN
    if squared:
        for j in range(m):
            gram_row[j] = <gram_floating>(<double>gram_row[j] * unscale * unscale)
    else:
        for j in range(m):
            gram_row[j] = <gram_floating>(sqrt(<double>gram_row[j]) * unscale)
    if n_close > 0:
        for j in range(m):
            if isnan(gram_row[j]):
                gram_row[j] = <gram_floating>_exact_entry(a_row, B + j * n_features, n_features, squared)


def distances_from_gram(
    gram_floating[:, ::1] gram, const floating[:, ::1] A, const floating[:, ::1] B,
    const double[::1] sq_norms_a, const double[::1] sq_norms_b, double refine_tol, double unscale,
    bint squared, int n_threads,
):
    """Turn a Gram block of shifted, scaled rows into (squared) Euclidean distances, in place.

    gram: (n, m) float32/float64, overwritten; sq_norms_a (n,), sq_norms_b (m,): float64 squared
    norms of the rows it was made of, which were scaled by 1 / unscale (a power of two). Entries
    whose squared distance is below refine_tol * (|a|^2 + |b|^2) lost digits to cancellation:
    they are computed from A (n, d) and B (m, d), the original rows (see _exact_distance).
    """
    cdef Py_ssize_t n = gram.shape[0], m = gram.shape[1], n_features = A.shape[1]
    cdef Py_ssize_t i
    if n == 0 or m == 0:
        return
    with nogil:
        for i in prange(n, num_threads=n_threads, schedule="static"):
            _distance_row(
                &gram[i, 0], &A[i, 0], &B[0, 0], sq_norms_a[i], &sq_norms_b[0],
                refine_tol, unscale, squared, m, n_features,
            )


cdef inline void _direct_blocks(
    floating* out_row, const floating* a_row, const double* columns, const floating* B, bint squared,
    Py_ssize_t m, Py_ssize_t n_features,
) noexcept nogil:
    """One row of direct_distances, PAIR_BLOCK pairs at a time (as the Numba kernel): a pass over
    one feature reads a block of B's columns contiguously and vectorises over the pairs."""
    cdef double lanes[LANES * PAIR_BLOCK]  # lanes[t * PAIR_BLOCK + k]: pair k's lane t, as in _lane_sum
    cdef double totals[PAIR_BLOCK]
    cdef double* lane_f
    cdef const double* column
    cdef double a, diff
    cdef Py_ssize_t start, width, f, k, n_outside
    for start in range(0, m, 256):  # PAIR_BLOCK: Cython needs a literal step for a C loop
        width = min(<Py_ssize_t>PAIR_BLOCK, m - start)
        for f in range(LANES):
            for k in range(width):
                lanes[f * PAIR_BLOCK + k] = 0.0
        for f in range(n_features):
            a = <double>a_row[f]
            column = columns + f * m + start
            lane_f = lanes + (f % LANES) * PAIR_BLOCK
            for k in range(width):
                diff = a - column[k]
                lane_f[k] += diff * diff
        # The lanes summed pairwise and the totals checked as in _exact_distance: the same bits.
        n_outside = 0
        for k in range(width):
            totals[k] = (((lanes[k] + lanes[PAIR_BLOCK + k]) + (lanes[2 * PAIR_BLOCK + k] + lanes[3 * PAIR_BLOCK + k]))
                         + ((lanes[4 * PAIR_BLOCK + k] + lanes[5 * PAIR_BLOCK + k])
                            + (lanes[6 * PAIR_BLOCK + k] + lanes[7 * PAIR_BLOCK + k])))
            n_outside += not (SAFE_MIN <= totals[k] <= DBL_MAX)
        if squared:
            for k in range(width):
                out_row[start + k] = <floating>totals[k]
        else:
            for k in range(width):
                out_row[start + k] = <floating>sqrt(totals[k])
        if n_outside > 0:  # pairs whose squares over- or underflowed: scaled first
            for k in range(width):
                if not (SAFE_MIN <= totals[k] <= DBL_MAX):
                    out_row[start + k] = <floating>_exact_entry(
                        a_row, B + (start + k) * n_features, n_features, squared)


cdef inline void _direct_pairs(
    floating* out_row, const floating* a_row, const floating* B, bint squared, Py_ssize_t m,
    Py_ssize_t n_features,
) noexcept nogil:
    """One row of direct_distances, a pair at a time (gcc vectorises each pair's 8 lanes)."""
    cdef Py_ssize_t j
    for j in range(m):
        out_row[j] = <floating>_exact_entry(a_row, B + j * n_features, n_features, squared)


cdef inline void _direct_row(
    floating* out_row, const floating* a_row, const double* columns, const floating* B, bint squared,
    Py_ssize_t m, Py_ssize_t n_features,
) noexcept nogil:
    """One row of direct_distances: by blocks of pairs where B's columns were copied, else a pair at a time."""
    if columns != NULL:
        _direct_blocks(out_row, a_row, columns, B, squared, m, n_features)
    else:
        _direct_pairs(out_row, a_row, B, squared, m, n_features)


def direct_distances(
    const floating[:, ::1] A, const floating[:, ::1] B, floating[:, ::1] out, bint squared, int n_threads,
):
    """out[i, j] = |A[i] - B[j]| (squared: its square), every entry from the rows as given.

    A (n, d) and B (m, d) float32/float64 (n, m >= 1), out (n, m) of their dtype. Each entry is
    _exact_distance's, as distances_from_gram's refined entries: for inputs too small for the
    GEMM formula's fixed costs to pay. A row of A runs against blocks of B's rows, vectorised over
    the pairs (_direct_blocks), where B has MIN_BLOCK_PAIRS rows or more and its copy as columns pays: few
    features, or 8 rows of A or more with float32 rows (float64 ones under 48 features); else a
    pair at a time (measured here: 1 x 1000 x 508 float64, 64 against 401 us; 100 x 100 x 16,
    33 against 49). Both give the same bits.
    """
    cdef Py_ssize_t n = out.shape[0], m = out.shape[1], n_features = A.shape[1]
    cdef Py_ssize_t i, j, f
    cdef bint blocks = m >= MIN_BLOCK_PAIRS and (
        n_features < 16 or (n >= 8 and (floating is float or n_features < 48)))
    cdef double* columns = NULL
    if blocks:
        # B's columns as rows of float64 (exact), read contiguously by _direct_blocks.
        columns = <double*> malloc(max(1, n_features * m) * sizeof(double))
        if columns == NULL:
            raise MemoryError("direct_distances: no memory for B's columns")
    with nogil:
        if blocks:
            for j in range(m):
                for f in range(n_features):
                    columns[f * m + j] = <double>B[j, f]
        if n_threads == 1:  # no OpenMP region: it would cost more than a small input's work
            for i in range(n):
                _direct_row(&out[i, 0], &A[i, 0], columns, &B[0, 0], squared, m, n_features)
        else:
            for i in prange(n, num_threads=n_threads, schedule="static"):
                _direct_row(&out[i, 0], &A[i, 0], columns, &B[0, 0], squared, m, n_features)
    free(columns)


cdef inline double _shift_row(
    const floating* x, const double* origin, double scale, gram_floating* out, Py_ssize_t n_features,
) noexcept nogil:
    """out = (x - origin) * scale in out's type; returns the float64 squared norm of out.

    Feature f's square adds into lane f % LANES and the lanes are summed pairwise (as the Numba
    kernel), an order that vectorises.
    """
    cdef Py_ssize_t full = n_features - n_features % LANES
    cdef Py_ssize_t f, t
    cdef double stored
    cdef double lane[LANES]
    for t in range(LANES):
        lane[t] = 0.0
    for f in range(0, full, 8):  # LANES: Cython needs a literal step for a C loop
        for t in range(LANES):
            out[f + t] = <gram_floating>((<double>x[f + t] - origin[f + t]) * scale)
            stored = <double>out[f + t]
            lane[t] += stored * stored
    for f in range(full, n_features):
        out[f] = <gram_floating>((<double>x[f] - origin[f]) * scale)
        stored = <double>out[f]
        lane[f - full] += stored * stored
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]))


def shift_rows(
    const floating[:, ::1] X, const double[::1] origin, double scale, gram_floating[:, ::1] out,
    double[::1] out_norms, int n_threads,
):
    """out = (X - origin) * scale, worked in float64 and stored in out's dtype, in one pass.

    X (n, d) float32/float64, origin (d,) float64, out (n, d) float32/float64; out_norms (n,) gets
    the float64 squared norms of the rows as stored.
    """
    cdef Py_ssize_t n = X.shape[0], n_features = X.shape[1]
    cdef Py_ssize_t i
    with nogil:
        for i in prange(n, num_threads=n_threads, schedule="static"):
            out_norms[i] = _shift_row(&X[i, 0], &origin[0], scale, &out[i, 0], n_features)



cdef inline double* _aligned(void* block) noexcept nogil:
    """The first ALIGN-byte boundary after `block`'s start (a block with ALIGN bytes to spare)."""
    return <double*> (<char*> block + (ALIGN - <size_t> block % ALIGN))


cdef int _column_range_stats(
    const floating* X, Py_ssize_t n, Py_ssize_t n_features, Py_ssize_t width,
    double* out_sums, double* out_min, double* out_max,
) noexcept nogil:
    """column_stats of the `width` columns from X's first (X and the outputs point at it); 1 where
    its accumulators could not be allocated, else 0.

    Rows outer, so that X is read once, in memory order (a pass per block of columns read it once
    per block, a row's stride between reads: 2-7x slower on matrices beyond the caches). The
    accumulators are fresh memory, which the compiler knows aliases neither X nor each other (the
    outputs might), so that the loop over the columns vectorises; aligned, as on the stack: at
    malloc's 16 bytes that loop took 1.5x as long.
    """
    cdef Py_ssize_t i, f
    cdef const floating* row
    cdef double value
    cdef void* sums_block = malloc(width * sizeof(double) + ALIGN)
    cdef void* low_block = malloc(width * sizeof(double) + ALIGN)
    cdef void* high_block = malloc(width * sizeof(double) + ALIGN)
    cdef double* sums
    cdef double* low
    cdef double* high
    cdef int failed = sums_block == NULL or low_block == NULL or high_block == NULL
    if not failed:
        sums, low, high = _aligned(sums_block), _aligned(low_block), _aligned(high_block)
        for f in range(width):
            sums[f] = X[f]
            low[f] = sums[f]
            high[f] = sums[f]
        for i in range(1, n):
            row = X + i * n_features
            for f in range(width):
                value = row[f]
                sums[f] += value
                low[f] = value if value < low[f] else low[f]
                high[f] = value if value > high[f] else high[f]
        memcpy(out_sums, sums, width * sizeof(double))
        memcpy(out_min, low, width * sizeof(double))
        memcpy(out_max, high, width * sizeof(double))
    free(sums_block)
    free(low_block)
    free(high_block)
    return failed


def column_stats(
    const floating[:, ::1] X, double[::1] out_sums, double[::1] out_min, double[::1] out_max,
    int n_threads,
):
    """Float64 sums, minima and maxima of X's columns (X (n, d), n >= 1), in one pass over X.

    Threads own disjoint ranges of columns and add the rows in order, so the sums do not depend
    on the thread count.
    """
    cdef Py_ssize_t n = X.shape[0], n_features = X.shape[1]
    cdef Py_ssize_t n_parts = max(1, min(n_threads, n_features // COLUMN_BLOCK))
    cdef Py_ssize_t part, first
    cdef int failed = 0
    with nogil:
        for part in prange(n_parts, num_threads=n_parts, schedule="static"):
            first = part * n_features // n_parts
            failed += _column_range_stats(
                &X[0, first], n, n_features, (part + 1) * n_features // n_parts - first,
                &out_sums[first], &out_min[first], &out_max[first],
            )
    if failed:
        raise MemoryError("column_stats: no memory for the accumulators")
