"""Neighbour kernels (numpy reference); mirrors kernels/cpu/neighbors.py."""

import numpy as np


def knn_from_gram(gram, sq_norms_q, sq_norms_r, bound_tol, bound_abs, X_query, X_ref, exact_scale, out_dist, out_idx, n_threads):
    """Exact k nearest reference rows per query row, from an approximate Gram block."""
    k = out_idx.shape[1]
    norm_sum = sq_norms_q[:, None] + sq_norms_r[None, :]
    approx = norm_sum - 2.0 * gram
    bound = bound_tol * norm_sum + bound_abs
    cap = np.partition(approx + bound, k - 1, axis=1)[:, k - 1]
    # "Not above" the cap: a NaN (as the compiled kernels read it) rules nothing out.
    _rank_exact(~(approx - bound > cap[:, None]), X_query, X_ref, exact_scale, out_dist, out_idx)


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
    _rank_exact(kth, X_query, X_ref, exact_scale, out_dist, out_idx)
    kth_exact = (out_dist[:, -1] * exact_scale) ** 2
    sigma, shift, slack, base = limits.T
    limit = (sigma * np.sqrt(kth_exact) * (1 + 1e-15) + shift) ** 2 + slack - base
    candidates = kth | (terms <= limit.astype(np.float64)[:, None])
    _rank_exact(candidates, X_query, X_ref, exact_scale, out_dist, out_idx)
    return int(candidates.sum())


def _rank_exact(candidates, X_query, X_ref, exact_scale, out_dist, out_idx):
    """The k = out_idx.shape[1] nearest of each row's candidates (n, m) bool by exact distance."""
    k = out_idx.shape[1]
    rows, cols = np.nonzero(candidates)
    exact = np.full(candidates.shape, np.inf)
    for start in range(0, rows.size, 4096):
        r, c = rows[start : start + 4096], cols[start : start + 4096]
        if exact_scale < 1.0:  # large values: scale first so that a - b cannot overflow
            diff = X_query[r].astype(np.float64) * exact_scale - X_ref[c].astype(np.float64) * exact_scale
        else:
            diff = (X_query[r].astype(np.float64) - X_ref[c]) * exact_scale
        exact[r, c] = np.einsum("ij,ij->i", diff, diff)
    order = np.argsort(exact, axis=1, kind="stable")[:, :k]  # stable: ties keep the lower index
    out_idx[...] = order
    with np.errstate(over="ignore"):  # a distance beyond float64's range is inf, as in the compiled kernels
        out_dist[...] = np.sqrt(np.take_along_axis(exact, order, axis=1)) / exact_scale


def majority_vote(neighbor_codes, n_classes, out, n_threads):
    """Most frequent class code per row; ties go to the smaller code."""
    n = neighbor_codes.shape[0]
    counts = np.zeros((n, n_classes), np.int64)
    np.add.at(counts, (np.repeat(np.arange(n), neighbor_codes.shape[1]), neighbor_codes.ravel()), 1)
    out[...] = np.argmax(counts, axis=1)  # argmax returns the first, i.e. smallest, maximum


def class_sums(X, codes, out_sums, out_counts, n_threads):
    """Per-class feature sums (float64, rows added in order) and counts."""
    out_sums[...] = 0.0
    with np.errstate(over="ignore", invalid="ignore"):  # huge values overflow to inf, as in the compiled kernels
        np.add.at(out_sums, codes, X.astype(np.float64))
    out_counts[...] = np.bincount(codes, minlength=out_counts.shape[0])
