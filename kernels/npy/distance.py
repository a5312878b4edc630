"""Distance kernels (numpy reference); mirrors kernels/cpu/distance.py."""

import numpy as np


def distances_from_gram(gram, A, B, sq_norms_a, sq_norms_b, refine_tol, unscale, squared, n_threads):
    """Turn a Gram block A @ B.T into (squared) Euclidean distances, in place."""
    norm_sum = sq_norms_a[:, None] + sq_norms_b[None, :]
    d2 = norm_sum - 2.0 * gram
    rows, cols = np.nonzero(d2 <= refine_tol * norm_sum)
    for start in range(0, rows.size, 4096):
        r, c = rows[start : start + 4096], cols[start : start + 4096]
        diff = A[r].astype(np.float64) - B[c].astype(np.float64)
        d2[r, c] = np.einsum("ij,ij->i", diff, diff)
    with np.errstate(over="ignore"):  # a distance beyond the dtype's range is inf, as in the compiled kernels
        gram[...] = d2 * unscale * unscale if squared else np.sqrt(d2) * unscale


def shift_rows(X, origin, scale, out, out_norms, n_threads):
    """out = (X - origin) * scale, worked in float64 and stored in out's dtype."""
    step = max(1, (1 << 16) // max(X.shape[1], 1))  # rows per chunk: temporaries stay in cache
    for start in range(0, X.shape[0], step):
        stop = min(X.shape[0], start + step)
        chunk = np.subtract(X[start:stop], origin, dtype=np.float64)
        chunk *= scale
        out[start:stop] = chunk
        stored = out[start:stop].astype(np.float64, copy=False)
        np.einsum("ij,ij->i", stored, stored, out=out_norms[start:stop])


def column_stats(X, out_sums, out_min, out_max, n_threads):
    """Float64 sums, minima and maxima of X's columns (X (n, d), n >= 1)."""
    with np.errstate(over="ignore", invalid="ignore"):  # huge values overflow to inf, as in the compiled kernels
        np.sum(X, axis=0, dtype=np.float64, out=out_sums)
    out_min[...] = X.min(axis=0)
    out_max[...] = X.max(axis=0)
