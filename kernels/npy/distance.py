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
# save (measured here, 1 x 1000 rows of 508 features: 1.5 ms in steps of 2^14, 2.6 in 2^13, 1.7 in 2^15).
DIRECT_CHUNK_VALUES = 1 << 14


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


def _feature_lane_sums(diff):
    """_lane_sums of the columns of diff (d, pairs) float64, from its squares grouped in blocks of
    8 features (zero-padded): numpy adds the blocks one after the other when it reduces over the
    outer axis (each lane's squares in order, as the compiled kernels), over all pairs at once."""
    n_features, n_pairs = diff.shape
    squares = np.zeros((-(-n_features // LANES) * LANES, n_pairs))
    np.multiply(diff, diff, out=squares[:n_features])
    l0, l1, l2, l3, l4, l5, l6, l7 = np.add.reduce(squares.reshape(-1, LANES, n_pairs), axis=0)
    return ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))


def direct_distances(A, B, out, squared, n_threads):
    """out[i, j] = |A[i] - B[j]| (squared: its square), every entry from the rows as given
    (exact_distances), as distances_from_gram's refined entries: blocks of pairs (rows of A by
    rows of B, DIRECT_CHUNK_VALUES differences) at a time, by broadcasting feature-major, and the
    pairs whose squares left float64's range again by exact_distances (scaled)."""
    m, n_features = B.shape
    pairs = max(1, DIRECT_CHUNK_VALUES // max(1, n_features))  # pairs per step
    width = min(m, pairs)  # rows of B per step
    height = max(1, pairs // width)  # rows of A per step
    columns = B.T.astype(np.float64)
    with np.errstate(over="ignore"):  # beyond the dtype's range: inf, as in the compiled kernels
        for top in range(0, A.shape[0], height):
            rows = A[top : top + height].T.astype(np.float64)
            for left in range(0, m, width):
                diff = rows[:, :, None] - columns[:, None, left : left + width]
                sums = _feature_lane_sums(diff.reshape(n_features, -1)).reshape(diff.shape[1:])
                block = sums if squared else np.sqrt(sums)
                r, c = np.nonzero(~((sums >= SAFE_MIN) & (sums <= np.finfo(np.float64).max)))
                if r.size:
                    block[r, c] = _exact_entries(A[top + r], B[left + c], squared)
                out[top : top + height, left : left + width] = block


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
