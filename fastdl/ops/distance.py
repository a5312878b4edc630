"""Pairwise Euclidean distances."""

import numpy as np

from fastdl import backend as _backend
from fastdl._parallel import blocks, run_row_ranges, single_threaded_blas
from fastdl._validation import as_compute, check_matrix, check_same_features, compute_dtype
from fastdl.ops import _on_device
from fastdl.ops._shift import power_of_two_scale, shift_origin, shifted

# Entries with d^2 < REFINE_TOL * (|a|^2 + |b|^2) lost too many digits to cancellation in the GEMM
# formula and are recomputed directly from the rows as given, in float64; above it the relative
# error is at most about n_features * eps / REFINE_TOL.
REFINE_TOL = {np.float32: 2.0**-4, np.float64: 2.0**-12}
ROW_BLOCK = 256  # rows of A per GEMM
# Up to this much work (pairs x (features + DIRECT_PAIR_COST)) every entry is computed directly
# from the rows (the kernels' direct_distances, the refined entries' formula): the GEMM path's
# fixed costs (column statistics, shifted copies, BLAS limits) are more than the work there
# (measured here, 2 cores, float64: 100 x 100 rows of 16 features 45 us directly on one thread
# against 88 by the GEMM path, a tie at 100 x 100 of 64). One rule for every backend, so that
# every backend gives the same bits.
DIRECT_MAX_WORK = 1 << 19
DIRECT_PAIR_COST = 16  # a pair's fixed cost in the direct kernels, in features


def pairwise_distances(A, B=None, squared=False, backend=None):
    """Euclidean distances between the rows of A and the rows of B.

    Parameters
    ----------
    A : array-like of shape (n_samples_a, n_features)
    B : array-like of shape (n_samples_b, n_features), optional
        Defaults to A.
    squared : bool, default False
        Return squared distances.
    backend : str, optional
        "auto", "numpy", "numba", "cython", "cuda" (None: the process default).

    Returns
    -------
    ndarray of shape (n_samples_a, n_samples_b)
        float32 when the inputs are float32, float64 otherwise. On the cuda backend, A and B
        may be device arrays (CuPy, PyTorch CUDA, numba), and the answer is then a device array
        of A's kind; the work memory there is one float64-or-float32 shifted copy of A and of B.

    Notes
    -----
    Computed as |a|^2 + |b|^2 - 2 a.b with a BLAS GEMM, after shifting both sides by the mean of B
    (data far from the origin keeps its precision) and scaling them by a power of two (huge and
    subnormal values stay in range); entries small enough to suffer cancellation are recomputed
    directly from the rows as given (differences in float64, scaled pair by pair where squares
    would over- or underflow), so no squared distance is negative and small ones are accurate.
    Where the mean would overflow (column sums beyond float64's range), the midpoint of each
    column's range is the origin instead. A distance beyond the output dtype's range (e.g. from
    -1.5e308 to 1e308) is inf; every finite one is accurate.

    Small inputs (pairs x (features + 16) up to DIRECT_MAX_WORK, e.g. 100 x 100 rows of 16
    features or 50 x 50 of 128) skip the GEMM, whose set-up costs more than their work there:
    every entry is then computed directly from the rows as given, as the refined entries are.
    """
    if not isinstance(squared, (bool, np.bool_)):  # a string such as "no" would count as True
        raise TypeError(f"squared must be a bool, got {squared!r}")
    kernels, name = _backend.kernels("distance", backend)
    if name == "cuda":
        return _on_device.pairwise_distances(A, B, squared, REFINE_TOL)
    A, B = _checked(A, B)
    same = B is A
    dtype = A.dtype.type
    if A.shape[0] * B.shape[0] * (A.shape[1] + DIRECT_PAIR_COST) <= DIRECT_MAX_WORK:
        # The kernels run each row of their first argument against the rows of the second,
        # vectorised over those: the side with more rows goes second (|a - b| is the same bits
        # as |b - a|; 3000 rows to 1 took 3x as long the other way round).
        first, second = (B, A) if B.shape[0] < A.shape[0] else (A, B)
        out = np.empty((first.shape[0], second.shape[0]), dtype=dtype)
        kernels.direct_distances(first, second, out, bool(squared), 1)
        return out if first is A else np.ascontiguousarray(out.T)
    n_threads = _backend.get_num_threads()
    origin, reach = shift_origin(B, kernels, n_threads, None if same else A)
    # A power-of-two scale keeps huge and tiny values inside the GEMM's range; undone exactly.
    scale = power_of_two_scale(reach)
    A_shifted, norms_a = shifted(A, origin, dtype, scale, kernels, n_threads)
    B_shifted, norms_b = (A_shifted, norms_a) if same else shifted(B, origin, dtype, scale, kernels, n_threads)
    out = np.empty((A.shape[0], B.shape[0]), dtype=dtype)
    if same:
        _symmetric_distances(out, A, A_shifted, norms_a, 1.0 / scale, bool(squared), kernels, n_threads)
        return out

    def compute(first, last):
        # GEMMs of ROW_BLOCK rows at fixed places, so the same calls give the same bits for any
        # thread count (see fastdl._parallel.row_ranges); OpenBLAS packs B once per call, so a
        # block is large.
        for start, stop in blocks(first, last, ROW_BLOCK):
            block = out[start:stop]
            np.dot(A_shifted[start:stop], B_shifted.T, out=block)
            kernels.distances_from_gram(
                block, A[start:stop], B, norms_a[start:stop], norms_b,
                REFINE_TOL[dtype], 1.0 / scale, bool(squared), 1,
            )

    # BLAS on one thread even for a single range: a threaded GEMM may round otherwise.
    with single_threaded_blas():
        run_row_ranges(compute, A.shape[0], n_threads, B.shape[0] * A.shape[1], align=ROW_BLOCK)
    return out


def _symmetric_distances(out, A, A_shifted, norms, unscale, squared, kernels, n_threads):
    """out = the distances between A's rows, exactly symmetric (as scipy's squareform demands).

    Entry (i, j) and (j, i) of two GEMMs can round differently, so each block of ROW_BLOCK rows
    computes only its entries on and right of the diagonal (half of the work) and mirrors them.
    """
    n = A.shape[0]
    n_blocks = -(-n // ROW_BLOCK)
    refine_tol = REFINE_TOL[out.dtype.type]

    def block(start, buffer):
        stop = min(start + ROW_BLOCK, n)
        rows = stop - start
        gram = buffer[: rows * (n - start)].reshape(rows, n - start)
        np.dot(A_shifted[start:stop], A_shifted[start:].T, out=gram)
        kernels.distances_from_gram(
            gram, A[start:stop], A[start:], norms[start:stop], norms[start:], refine_tol, unscale, squared, 1,
        )
        # The diagonal square came from one GEMM, which need not be symmetric either.
        square, lower = gram[:, :rows], np.tril_indices(rows, -1)
        square[lower] = square.T[lower]
        out[start:stop, start:] = gram
        out[stop:, start:stop] = gram[:, rows:].T  # rows of later blocks, columns no other block writes

    # Blocks in the order first, last, second, second to last... (a block's work falls with its
    # start), so that the threads' contiguous shares of this list hold about equal work.
    order = [index for pair in range(n_blocks) for index in (pair, n_blocks - 1 - pair)][:n_blocks]

    def compute(first, last):
        buffer = np.empty(ROW_BLOCK * n, dtype=out.dtype)
        for index in order[first:last]:
            block(index * ROW_BLOCK, buffer)

    # Blocks at fixed places, whatever the thread count: the same GEMMs, the same bits.
    with single_threaded_blas():
        run_row_ranges(compute, n_blocks, n_threads, ROW_BLOCK * (n // 2 + ROW_BLOCK) * A.shape[1])


def _checked(A, B):
    """A and B (A where B is None) checked, as C-contiguous arrays of their compute dtype."""
    A = check_matrix(A, "A")
    B = A if B is None else check_matrix(B, "B")
    check_same_features(A, B)
    dtype = compute_dtype(A, B)
    same = B is A
    A = as_compute(A, dtype)
    return A, (A if same else as_compute(B, dtype))
