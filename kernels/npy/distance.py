"""Distance kernels (numpy reference); mirrors kernels/cpu/distance.py."""

import numpy as np

LANES = 8  # float64 partial sums of an exact distance, as the compiled kernels
# A sum of squared differences in [SAFE_MIN, float64 max] is accurate as it stands: squares that
# fell below float64's normal range cost it at most n_features * 2**-1075, under 2**-175 of it.
# Outside that range the differences are scaled by SCALE_DOWN (largest one above 1) or SCALE_UP.
SAFE_MIN = 2.0**-900
SCALE_DOWN, SCALE_UP = 2.0**-600, 2.0**600
CHUNK = 4096  # pairs per step of the reference loops
# Differences per step of direct_distances: larger temporaries cost more in fresh pages than they
# save (measured here: 50 x 50 rows of 128 features, 0.8 ms in steps of 2^15, 1.9 in 2^13, 2.8 in 2^16).
DIRECT_CHUNK_VALUES = 1 << 15


def _lane_sums(diff):
    """Sums of diff**2 over each row of diff (n, d) float64, in the compiled kernels' order.

    Feature f adds into lane f % LANES in order, and the lanes are added pairwise.
    """
    squares = np.zeros((diff.shape[0], -(-diff.shape[1] // LANES) * LANES))
    np.multiply(diff, diff, out=squares[:, : diff.shape[1]])
    lane = np.zeros((diff.shape[0], LANES))
    for start in range(0, squares.shape[1], LANES):
        lane += squares[:, start : start + LANES]
    l0, l1, l2, l3, l4, l5, l6, l7 = lane.T
    return ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))


def exact_distances(A, B):
    """(sums, unscales): |A[i] - B[i]| = sqrt(sums[i]) * unscales[i] for rows of A, B (n, d).

    Differences are taken in float64 from the rows as given; where their squares could over- or
    underflow, they are scaled by a power of two first (exact), which unscales undoes: scaled
    before the subtraction when the scale is below 1 (a difference beyond float64's range comes
    back into it), after it otherwise.
    """
    with np.errstate(over="ignore"):  # a difference beyond float64 is inf until scaled
        diff = np.subtract(A, B, dtype=np.float64)
        sums = _lane_sums(diff)
    unscales = np.ones_like(sums)
    # NaN stays NaN at any scale (scaled up, a NaN row's other squares would overflow: a warning).
    redo = np.flatnonzero(~((sums >= SAFE_MIN) & (sums <= np.finfo(np.float64).max)) & ~np.isnan(sums))
    if redo.size:
        down = np.abs(diff[redo]).max(axis=1) > 1.0
        scales = np.where(down, SCALE_DOWN, SCALE_UP)[:, None]
        a, b = A[redo].astype(np.float64), B[redo].astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):  # in the branch np.where drops
            diff = np.where(down[:, None], a * scales - b * scales, (a - b) * scales)
        sums[redo] = _lane_sums(diff)
        unscales[redo] = 1.0 / scales[:, 0]
    return sums, unscales


def _exact_entries(A, B, squared):
    """|A[i] - B[i]| (squared: its square) in float64 for rows of A, B (n, d): refined or direct
    entries, from exact_distances; beyond float64's range, inf, as in the compiled kernels."""
    sums, unscales = exact_distances(A, B)
    with np.errstate(over="ignore"):
        return sums * unscales * unscales if squared else np.sqrt(sums) * unscales


def distances_from_gram(gram, A, B, sq_norms_a, sq_norms_b, refine_tol, unscale, squared, n_threads):
    """Turn a Gram block of shifted, scaled rows into (squared) Euclidean distances, in place.

    Entries the GEMM formula leaves inaccurate are computed from the original rows A and B.
    """
    norm_sum = sq_norms_a[:, None] + sq_norms_b[None, :]
    # Rounded to gram's type first, as the compiled kernels store it before their tests.
    d2 = (norm_sum - 2.0 * gram).astype(gram.dtype).astype(np.float64)
    rows, cols = np.nonzero(d2 <= refine_tol * norm_sum)
    # A distance beyond the dtype's range is inf, as in the compiled kernels; the entries whose d2
    # went negative are recomputed below.
    with np.errstate(over="ignore", invalid="ignore"):
        out = d2 * unscale * unscale if squared else np.sqrt(d2) * unscale
        for start in range(0, rows.size, CHUNK):
            r, c = rows[start : start + CHUNK], cols[start : start + CHUNK]
            out[r, c] = _exact_entries(A[r], B[c], squared)
        gram[...] = out


def direct_distances(A, B, out, squared, n_threads):
    """out[i, j] = |A[i] - B[j]| (squared: its square), every entry from the rows as given
    (exact_distances), as distances_from_gram's refined entries: a block of A's rows against all
    of B's at a time, by broadcasting, and the pairs whose squares left float64's range again by
    exact_distances (scaled)."""
    m, n_features = B.shape
    step = max(1, DIRECT_CHUNK_VALUES // max(1, m * n_features))  # rows of A per step
    columns = B.astype(np.float64)
    with np.errstate(over="ignore"):  # beyond the dtype's range: inf, as in the compiled kernels
        for start in range(0, A.shape[0], step):
            rows = A[start : start + step].astype(np.float64)
            sums = _lane_sums((rows[:, None, :] - columns[None]).reshape(-1, n_features)).reshape(len(rows), m)
            block = sums if squared else np.sqrt(sums)
            r, c = np.nonzero(~((sums >= SAFE_MIN) & (sums <= np.finfo(np.float64).max)))
            if r.size:
                block[r, c] = _exact_entries(A[start + r], B[c], squared)
            out[start : start + step] = block


def shift_rows(X, origin, scale, out, out_norms, n_threads):
    """out = (X - origin) * scale, worked in float64 and stored in out's dtype; out_norms gets the
    squared norms of the rows as stored, summed in the compiled kernels' order."""
    step = max(1, (1 << 16) // max(X.shape[1], 1))  # rows per chunk: temporaries stay in cache
    # Queries far outside the references overflow float32 here (inf, as in the compiled kernels,
    # silently): the caller sees the norms and rescales.
    with np.errstate(over="ignore"):
        for start in range(0, X.shape[0], step):
            stop = min(X.shape[0], start + step)
            chunk = np.subtract(X[start:stop], origin, dtype=np.float64)
            chunk *= scale
            out[start:stop] = chunk
            out_norms[start:stop] = _lane_sums(out[start:stop].astype(np.float64, copy=False))


def column_stats(X, out_sums, out_min, out_max, n_threads):
    """Float64 sums, minima and maxima of X's columns (X (n, d), n >= 1)."""
    with np.errstate(over="ignore", invalid="ignore"):  # huge values overflow to inf, as in the compiled kernels
        if X.shape[1] == 1:
            # A single column is one contiguous run, which np.sum adds pairwise; cumsum adds in order.
            out_sums[...] = np.cumsum(X[:, 0], dtype=np.float64)[-1]
        else:
            # Over axis 0 of a C-contiguous array numpy adds the rows in order, as the compiled kernels.
            np.sum(X, axis=0, dtype=np.float64, out=out_sums)
    out_min[...] = X.min(axis=0)
    out_max[...] = X.max(axis=0)
