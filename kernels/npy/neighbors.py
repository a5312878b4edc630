"""Neighbour kernels (numpy reference); mirrors kernels/cpu/neighbors.py."""

import numpy as np

from .distance import CHUNK, exact_distances


def knn_from_gram(gram, sq_norms_q, sq_norms_r, bound_tol, bound_abs, X_query, X_ref, key_scale, out_dist, out_idx,
                  n_threads):
    """Exact k nearest reference rows per query row, from an approximate Gram block."""
    k = out_idx.shape[1]
    norm_sum = sq_norms_q[:, None] + sq_norms_r[None, :]
    approx = norm_sum - 2.0 * gram
    bound = bound_tol * norm_sum + bound_abs
    cap = np.partition(approx + bound, k - 1, axis=1)[:, k - 1]
    # "Not above" the cap: a NaN (as the compiled kernels read it) rules nothing out.
    _rank_exact(~(approx - bound > cap[:, None]), X_query, X_ref, key_scale, out_dist, out_idx)


def knn_from_bounds(gram, sq_norms_r, limits, X_query, X_ref, exact_scale, out_dist, out_idx, n_threads):
    """Exact k nearest reference rows per query row, pruned by lower bounds; returns rows ranked."""
    k = out_idx.shape[1]
    terms = sq_norms_r.astype(gram.dtype) - (gram + gram)
    # The k rows of smallest term bound the k-th exact distance; rows whose term exceeds the limit
    # that bound gives cannot be among the k nearest.
    first = np.argpartition(terms, k - 1, axis=1)[:, :k]
    rows = np.arange(terms.shape[0])[:, None]
    kth = np.full(terms.shape, False)
    kth[rows, first] = True
    _rank_exact(kth, X_query, X_ref, 1.0, out_dist, out_idx)
    sigma, shift, slack, base = limits.T
    limit = (sigma * (out_dist[:, -1] * exact_scale) * (1 + 1e-15) + shift) ** 2 + slack - base
    candidates = kth | (terms <= limit.astype(np.float64)[:, None])
    _rank_exact(candidates, X_query, X_ref, 1.0, out_dist, out_idx)
    return int(candidates.sum())


def _rank_exact(candidates, X_query, X_ref, key_scale, out_dist, out_idx):
    """The k = out_idx.shape[1] nearest of each row's candidates (n, m) bool by exact distance
    (see distance.exact_distances) times key_scale, equal ones in index order."""
    k = out_idx.shape[1]
    rows, cols = np.nonzero(candidates)
    exact = np.full(candidates.shape, np.inf)
    for start in range(0, rows.size, CHUNK):
        r, c = rows[start : start + CHUNK], cols[start : start + CHUNK]
        sums, unscales = exact_distances(X_query[r], X_ref[c])
        with np.errstate(over="ignore"):  # a key beyond float64's range is inf, as in the compiled kernels
            exact[r, c] = np.sqrt(sums) * (unscales * key_scale)
    # Candidates first (one at an infinite distance included), then by distance; lexsort is
    # stable, so equal distances keep the lower index first.
    order = np.lexsort((exact, ~candidates), axis=1)[:, :k]
    out_idx[...] = order
    with np.errstate(over="ignore"):  # a distance beyond float64's range is inf
        out_dist[...] = np.take_along_axis(exact, order, axis=1) / key_scale


def majority_vote(neighbor_codes, n_classes, out, n_threads):
    """Most frequent class code per row; ties go to the smaller code.

    Counts only the k codes of each row (no (n, n_classes) table), from the row sorted: there,
    seen[t] is how many copies of the code at position t positions 0..t hold. Its largest value is
    the top count, reached first by the smallest code with that count.
    """
    n, k = neighbor_codes.shape
    if k == 0:
        out[...] = 0  # no votes: every count is zero and code 0 wins, as in the compiled kernels
        return
    ranked = np.sort(neighbor_codes, axis=1)
    column = np.broadcast_to(np.arange(k), ranked.shape)
    run_starts = np.ones(ranked.shape, dtype=bool)
    run_starts[:, 1:] = ranked[:, 1:] != ranked[:, :-1]
    seen = column - np.maximum.accumulate(np.where(run_starts, column, 0), axis=1) + 1
    out[...] = ranked[np.arange(n), np.argmax(seen, axis=1)]


def class_sums(X, codes, out_sums, out_counts, n_threads):
    """Per-class feature sums (float64, rows added in order) and counts."""
    out_sums[...] = 0.0
    with np.errstate(over="ignore", invalid="ignore"):  # huge values overflow to inf, as in the compiled kernels
        np.add.at(out_sums, codes, X.astype(np.float64))
    out_counts[...] = np.bincount(codes, minlength=out_counts.shape[0])
