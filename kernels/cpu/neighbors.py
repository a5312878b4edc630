"""Neighbour kernels (Numba): kNN selection, majority vote, class sums.

Mirrors kernels/cy/neighbors.pyx and kernels/npy/neighbors.py.
"""

import numpy as np
from numba import prange

from . import distance
from ._jit import compile_kernel, helper, launch
from .distance import LANES, exact_distance

_helper = helper()
# Inlined into the caller's Numba IR, where LLVM may leave a small helper a call inside a hot loop.
_inlined = helper(inline="always")
# Not cached on their own: they inline distance.py's code, which Numba's cache would keep after an
# edit of that file (see _jit.helper); the kernels calling them name distance in `uses`.
_uses_distance = helper(cache=False)
FEATURE_BLOCK = 16  # features per task in class_sums: 128 bytes of each float64 output row
SCAN_BLOCK = 32  # kNN rows tested together for any candidate
ROW_TASK = 16  # query rows per parallel kNN task


@_helper
def _sift_down(keys, index, size, pos):
    """Restore the max-heap on (keys, index) below `pos`; larger index wins ties."""
    while True:
        child = 2 * pos + 1
        if child >= size:
            return
        if child + 1 < size and (
            keys[child + 1] > keys[child] or (keys[child + 1] == keys[child] and index[child + 1] > index[child])
        ):
            child += 1
        if keys[child] > keys[pos] or (keys[child] == keys[pos] and index[child] > index[pos]):
            keys[pos], keys[child] = keys[child], keys[pos]
            index[pos], index[child] = index[child], index[pos]
            pos = child
        else:
            return


@_inlined
def _push(keys, index, size, key, idx):
    """Offer (key, idx) to a max-heap holding the `len(keys)` smallest pairs; returns the new size."""
    capacity = keys.shape[0]
    if size < capacity:
        pos = size
        keys[pos] = key
        index[pos] = idx
        while pos > 0:
            parent = (pos - 1) // 2
            if keys[parent] > keys[pos] or (keys[parent] == keys[pos] and index[parent] > index[pos]):
                break
            keys[pos], keys[parent] = keys[parent], keys[pos]
            index[pos], index[parent] = index[parent], index[pos]
            pos = parent
        return size + 1
    if key < keys[0] or (key == keys[0] and idx < index[0]):
        keys[0] = key
        index[0] = idx
        _sift_down(keys, index, size, 0)
    return size


@_helper
def _heap_out(keys, index, key_scale, out_dist, out_idx):
    """Heap-sort the full max-heap of the k best (key, index) pairs into ascending order:
    distances (the keys over key_scale) into out_dist, indices into out_idx."""
    for last in range(out_idx.shape[0] - 1, -1, -1):
        out_dist[last] = keys[0] / key_scale
        out_idx[last] = index[0]
        keys[0] = keys[last]
        index[0] = index[last]
        _sift_down(keys, index, last, 0)


@_inlined
def _exact(query, row, key_scale, lane):
    """The exact float64 Euclidean distance of two original rows (see distance.exact_distance)
    times key_scale, a power of two: the key they are ranked by."""
    total, unscale = exact_distance(query, row, lane)
    return np.sqrt(total) * (unscale * key_scale)


@_helper
def _round_up(value, like):
    """The smallest number of like's type that is >= value (value is finite)."""
    rounded = like.dtype.type(value)
    if rounded < value:
        rounded = np.nextafter(rounded, like.dtype.type(np.inf))
    return rounded


@_inlined
def _fill_terms(gram_row, ref_terms, terms, start, stop):
    """terms[j] = ref_terms[j] - 2 gram_row[j] for j in start..stop-1."""
    for j in range(start, stop):
        terms[j] = ref_terms[j] - (gram_row[j] + gram_row[j])


@_inlined
def _any_within(blocks, b, limit, strict):
    """Whether row b of blocks holds a value below limit (not above it, NaN included, unless strict).

    A count of comparisons over a row of a 2-D view of the terms, (blocks, SCAN_BLOCK): that form
    vectorises (measured 4x faster than the same test over a 1-D range of the terms, or than
    their minimum, on an AVX-512 CPU).
    """
    count = np.int32(0)
    if strict:
        for t in range(blocks.shape[1]):
            count += np.int32(blocks[b, t] < limit)
    else:
        for t in range(blocks.shape[1]):
            count += np.int32(not (blocks[b, t] > limit))
    return count > 0


@_inlined
def _blocks_of(terms):
    """terms' full blocks of SCAN_BLOCK as a 2-D view (see _any_within) and the count of all
    blocks, the partial last one included."""
    n_full = terms.shape[0] // SCAN_BLOCK
    return terms[: n_full * SCAN_BLOCK].reshape(n_full, SCAN_BLOCK), -(-terms.shape[0] // SCAN_BLOCK)


@_uses_distance
def _knn_row(gram_row, ref_terms, slack, query, X_ref, key_scale, out_dist, out_idx, terms, keys, index,
             candidates, lane):
    """One query row of knn_from_gram; terms, keys, index, candidates and lane are scratch."""
    m = gram_row.shape[0]
    k = out_idx.shape[0]
    # Only rows whose term is within 2 slack of the k-th smallest term can be among the k
    # nearest. One pass over blocks of rows: the arithmetic and the test "any term within
    # reach" vectorise; the rare blocks that hold one keep the k smallest terms in a max-heap
    # (its top is the k-th smallest so far) and remember every row within reach; reach only
    # shrinks, so the remembered rows are a superset of those within reach at the end. The tests
    # read "not above": a NaN term rules nothing out, so out_dist and out_idx are always written.
    n_candidates = 0
    size = 0
    kth = np.inf
    reach = np.inf
    limit = terms.dtype.type(np.inf)  # reach rounded up to terms' type
    _fill_terms(gram_row, ref_terms, terms, 0, m)
    blocks, n_blocks = _blocks_of(terms)
    for b in range(n_blocks):
        block_start, block_end = b * SCAN_BLOCK, min(m, (b + 1) * SCAN_BLOCK)
        if b < blocks.shape[0] and not _any_within(blocks, b, limit, False):
            continue
        for j in range(block_start, block_end):
            if not (terms[j] > limit):
                candidates[n_candidates] = j
                n_candidates += 1
                if size < k or terms[j] < kth:
                    size = _push(keys, index, size, np.float64(terms[j]), j)
                    if size == k:
                        kth = keys[0]
                        reach = kth + 2.0 * slack
                        limit = _round_up(reach, terms)
    # Rank the rows still within reach by their exact float64 distance.
    size = 0
    for c in range(n_candidates):
        j = candidates[c]
        if not (terms[j] > reach):
            size = _push(keys, index, size, _exact(query, X_ref[j], key_scale, lane), j)
    _heap_out(keys, index, key_scale, out_dist, out_idx)


def _knn_from_gram(gram, sq_norms_q, sq_norms_r, bound_tol, bound_abs, X_query, X_ref, key_scale, out_dist, out_idx):
    n, m = gram.shape
    k = out_idx.shape[1]
    # terms[j] = ref_terms[j] - 2 gram[i, j] is row j's squared distance less the query's squared
    # norm; computing it in gram's type adds at most 3.1 unit roundoffs of q + r to the bound.
    ref_terms = sq_norms_r.astype(gram.dtype)
    tol = bound_tol + 4.0 * np.finfo(gram.dtype).eps / 2
    max_norm_r = sq_norms_r.max()
    # Scratch is allocated once per task of ROW_TASK rows.
    for task in prange((n + ROW_TASK - 1) // ROW_TASK):
        terms = np.empty(m, gram.dtype)
        keys = np.empty(k)
        index = np.empty(k, np.int64)
        candidates = np.empty(m, np.int64)
        lane = np.empty(LANES)
        for i in range(task * ROW_TASK, min(n, (task + 1) * ROW_TASK)):
            _knn_row(gram[i], ref_terms, tol * (sq_norms_q[i] + max_norm_r) + bound_abs, X_query[i],
                     X_ref, key_scale, out_dist[i], out_idx[i], terms, keys, index, candidates, lane)


# Never fastmath (FASTDL_FASTMATH): the ranking is that of exact distances, the Cython kernel's bits.
_knn_serial = compile_kernel(_knn_from_gram, exact=True, uses=(distance,))
_knn_parallel = compile_kernel(_knn_from_gram, parallel=True, exact=True, uses=(distance,))


def knn_from_gram(gram, sq_norms_q, sq_norms_r, bound_tol, bound_abs, X_query, X_ref, key_scale, out_dist, out_idx, n_threads):
    """Exact k nearest reference rows per query row, from an approximate Gram block.

    gram (n, m): approximate dot products of the (shifted, scaled) rows, float32 or float64;
    sq_norms_q (n,), sq_norms_r (m,): float64 squared norms of those rows, finite in gram's type;
    the approximate squared distance q + r - 2 g is within bound_tol * (q + r) + bound_abs of the
    true one (same scale). X_query (n, d), X_ref (m, d): the original rows, ranked by their exact
    float64 distances (distance.exact_distance) times key_scale, a power of two: 1, or below 1
    where distances could pass float64's range (they are then still ranked by their true size).
    out_dist (n, k) gets the distances, out_idx (n, k) int64 indices, ascending, equal ones in
    index order.
    """
    launch(_knn_serial, _knn_parallel, n_threads,
           gram, sq_norms_q, sq_norms_r, bound_tol, bound_abs, X_query, X_ref, key_scale, out_dist, out_idx)


@_uses_distance
def _knn_bounded_row(gram_row, ref_terms, limit_of, query, X_ref, exact_scale, out_dist, out_idx, terms, keys,
                     index, first, candidates, lane):
    """One query row of knn_from_bounds; returns how many rows it ranked exactly.

    terms[j] = ref_terms[j] - 2 gram_row[j] is row j's projected squared distance less the query's
    projected squared norm. limit_of (sigma, shift, slack, base) turns an exact distance t (scaled
    by exact_scale) into the largest term a row within t can have: (sigma t + shift)^2 + slack - base.
    """
    m = gram_row.shape[0]
    k = out_idx.shape[0]
    # Pass 1: the k smallest terms (any k rows give an upper bound on the k-th exact distance).
    _fill_terms(gram_row, ref_terms, terms, 0, m)
    blocks, n_blocks = _blocks_of(terms)
    size = 0
    kth = terms.dtype.type(np.inf)
    for b in range(n_blocks):
        block_start, block_end = b * SCAN_BLOCK, min(m, (b + 1) * SCAN_BLOCK)
        if size == k and b < blocks.shape[0] and not _any_within(blocks, b, kth, True):
            continue
        for j in range(block_start, block_end):
            if size < k or terms[j] < kth:
                size = _push(keys, index, size, np.float64(terms[j]), j)
                if size == k:
                    kth = terms.dtype.type(keys[0])
    first[:] = index[:]
    # Rank those k exactly; every row is ranked at most once (its term becomes +inf).
    size = 0
    for t in range(k):
        j = first[t]
        terms[j] = np.inf
        size = _push(keys, index, size, _exact(query, X_ref[j], 1.0, lane), j)
    n_ranked = k
    # Pass 2: the rows whose term is within the limit of that k-th exact distance...
    kth_exact = keys[0]
    limit = _bound_limit(kth_exact * exact_scale, limit_of, terms)
    n_candidates = 0
    for b in range(n_blocks):
        block_start, block_end = b * SCAN_BLOCK, min(m, (b + 1) * SCAN_BLOCK)
        if b < blocks.shape[0] and not _any_within(blocks, b, limit, False):
            continue
        for j in range(block_start, block_end):  # branch-free: written always, kept when within
            candidates[n_candidates] = j
            n_candidates += terms[j] <= limit
    # ... ranked exactly. The k-th exact distance and so the limit only shrink: rows beyond it by
    # then are skipped.
    for c in range(n_candidates):
        j = candidates[c]
        if terms[j] > limit:
            continue
        n_ranked += 1
        size = _push(keys, index, size, _exact(query, X_ref[j], 1.0, lane), j)
        if keys[0] < kth_exact:
            kth_exact = keys[0]
            limit = _bound_limit(kth_exact * exact_scale, limit_of, terms)
    _heap_out(keys, index, 1.0, out_dist, out_idx)
    return n_ranked


@_helper
def _bound_limit(kth_scaled, limit_of, terms):
    """The largest term (in terms' type) a row within distance kth_scaled (scaled as the
    projected rows) can have."""
    reach = limit_of[0] * kth_scaled + limit_of[1]
    return _round_up(reach * reach + limit_of[2] - limit_of[3], terms)


def _knn_from_bounds(gram, sq_norms_r, limits, X_query, X_ref, exact_scale, out_dist, out_idx):
    n, m = gram.shape
    k = out_idx.shape[1]
    ref_terms = sq_norms_r.astype(gram.dtype)
    n_ranked = 0
    for task in prange((n + ROW_TASK - 1) // ROW_TASK):
        terms = np.empty(m, gram.dtype)
        keys = np.empty(k)
        index = np.empty(k, np.int64)
        first = np.empty(k, np.int64)
        candidates = np.empty(m, np.int64)
        lane = np.empty(LANES)
        for i in range(task * ROW_TASK, min(n, (task + 1) * ROW_TASK)):
            n_ranked += _knn_bounded_row(gram[i], ref_terms, limits[i], X_query[i], X_ref, exact_scale,
                                         out_dist[i], out_idx[i], terms, keys, index, first, candidates, lane)
    return n_ranked


_bounds_serial = compile_kernel(_knn_from_bounds, exact=True, uses=(distance,))
_bounds_parallel = compile_kernel(_knn_from_bounds, parallel=True, exact=True, uses=(distance,))


def knn_from_bounds(gram, sq_norms_r, limits, X_query, X_ref, exact_scale, out_dist, out_idx, n_threads):
    """Exact k nearest reference rows per query row, pruned by lower bounds; returns rows ranked.

    gram (n, m): dot products of projected query and reference rows, float32 or float64;
    sq_norms_r (m,): float64 squared norms of the projected reference rows. limits (n, 4) float64,
    per query (sigma, shift, slack, base): a reference row whose exact distance times exact_scale
    (the projected rows' power-of-two scale) is at most t has sq_norms_r - 2 gram, as computed in
    gram's type, at most (sigma t + shift)^2 + slack - base. X_query, X_ref, out_dist, out_idx: as
    in knn_from_gram, with key_scale 1. Only rows that pass that test against the k-th exact distance so far are ranked.
    """
    return launch(_bounds_serial, _bounds_parallel, n_threads,
                  gram, sq_norms_r, limits, X_query, X_ref, exact_scale, out_dist, out_idx)


def _majority_vote(neighbor_codes, n_classes, out, n_tasks):
    n, k = neighbor_codes.shape
    if k == 0:
        out[:] = 0  # no votes: every count is zero and code 0 wins, as in the Cython kernel
        return
    rows_per_task = (n + n_tasks - 1) // n_tasks
    # One counter array per task, zeroed once: a row touches (and resets) only its own k codes,
    # so a row costs O(k) however many classes there are (Cython's kernel does the same).
    for task in prange(n_tasks):
        counts = np.zeros(n_classes, np.int64)
        for i in range(task * rows_per_task, min(n, (task + 1) * rows_per_task)):
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


_vote_serial = compile_kernel(_majority_vote)
_vote_parallel = compile_kernel(_majority_vote, parallel=True)


def majority_vote(neighbor_codes, n_classes, out, n_threads):
    """Most frequent class code per row of neighbor_codes (n, k) int64 into out (n,); ties -> smaller.

    O(k) per row and one counter array of n_classes per thread.
    """
    n_tasks = max(1, min(n_threads, neighbor_codes.shape[0]))
    launch(_vote_serial, _vote_parallel, n_threads, neighbor_codes, n_classes, out, n_tasks)


def _class_sums(X, codes, out_sums, out_counts, block):
    n, n_features = X.shape
    out_counts[:] = 0
    for i in range(n):
        out_counts[codes[i]] += 1
    # Threads own disjoint blocks of features and add the rows in order, so the sums do not
    # depend on the thread count.
    for b in prange((n_features + block - 1) // block):
        first = b * block
        stop = min(n_features, first + block)
        out_sums[:, first:stop] = 0.0
        for i in range(n):
            c = codes[i]
            for f in range(first, stop):
                out_sums[c, f] += X[i, f]


_sums_serial = compile_kernel(_class_sums, exact=True)
_sums_parallel = compile_kernel(_class_sums, parallel=True, exact=True)


def class_sums(X, codes, out_sums, out_counts, n_threads):
    """Per-class feature sums (float64) and counts of X (n, d) with int64 codes into out_sums (c, d).

    Each sum adds its rows in order, whatever the thread count.
    """
    launch(_sums_serial, _sums_parallel, n_threads, X, codes, out_sums, out_counts, FEATURE_BLOCK)
