"""Lower bounds on distances from a projection onto the reference rows' main directions.

For a d x p matrix P with largest singular value sigma, |P^T (q - r)| <= sigma |q - r|: distances
between projected rows, less their proven rounding error, bound the true distances from below.
When the rows vary mostly along a few directions (images, embeddings), a p-dimensional GEMM with
p = d / 4 then rules out nearly every reference row, and only the few left are ranked exactly.
"""

import numpy as np

from fastdl._parallel import run_row_ranges, single_threaded_blas

_UNIT_ROUNDOFF32 = 2.0**-24
# Pruning is tried from this many features, with this fraction of them as directions.
MIN_FEATURES = 128
DIRECTIONS_PER_FEATURE = 0.25
# Rows sampled to find the directions (at least twice as many as directions), and subspace iterations.
SAMPLE_ROWS = 256
ITERATIONS = 2
# The directions must hold this fraction of other rows' spread (squared distance to the mean);
# otherwise the bounds are too loose to rule much out and the plain GEMM is faster. Measured here
# on 1700 x 256 rows: 0.88 (the course digits) leaves 20 rows a query to rank exactly, 0.85 about
# 50, 0.79 over 120 (break-even), isotropic noise's 0.25 all of them.
MIN_CAPTURED = 0.82


def _gamma(n):
    """Higham's gamma_n for float32: the relative error bound of an n-term dot product."""
    return n * _UNIT_ROUNDOFF32 / (1.0 - n * _UNIT_ROUNDOFF32)


def _cholesky_qr(V):
    """Orthonormal float64 columns spanning V's: Cholesky QR, or an eigenbasis when V is ill-conditioned."""
    gram = V.T @ V
    try:
        return V @ np.linalg.inv(np.linalg.cholesky(gram)).T
    except np.linalg.LinAlgError:
        values, vectors = np.linalg.eigh(gram)
        keep = values > values[-1] * 1e-10
        return V @ (vectors[:, keep] / np.sqrt(values[keep]))


def _orthonormal(V):
    """Float32 orthonormal columns P spanning V's, and P^T P in float64 (exact but for rounding).

    One Cholesky QR leaves ill-conditioned columns only nearly orthonormal. Up to 1% off is fine
    (sigma accounts for it, and bounds loosen by at most 0.5%); beyond, a second pass fixes it.
    """
    Q = V.astype(np.float64)
    for _ in range(2):
        Q = _cholesky_qr(Q)
        P = Q.astype(np.float32)
        P64 = P.astype(np.float64)
        product = P64.T @ P64
        if np.linalg.norm(product - np.eye(P.shape[1])) < 1e-2:
            break
    return P, product


class Projection:
    """Main directions P of shifted, scaled float32 reference rows, and the bounds they give."""

    def __init__(self, P, product, ref_scaled, ref_norms, n_threads):
        """P (d, p) float32 and P^T P computed in float64."""
        n_features, n_directions = P.shape
        self.P = P
        # sigma^2 = |P^T P|_2 <= 1 + |P^T P - I|_F, plus the rounding of that float64 product:
        # entry (i, j) is within gamma_d |p_i| |p_j| (float64), which sums to gamma_d |P|_F^2.
        squared_frobenius = float(np.trace(product)) * (1.0 + 1e-12)
        error = np.linalg.norm(product - np.eye(n_directions)) + 1.01 * n_features * 2.0**-53 * squared_frobenius
        self.sigma = float(np.sqrt(1.0 + error * (1.0 + 1e-12)))
        frobenius = np.sqrt(squared_frobenius)
        # A projected row is within (sigma u' + gamma_d |P|_F) |row| of the projection of the
        # exact row: its rounding to float32 (u' covers the float64 shift before it) and the GEMM.
        self.shift_per_norm = self.sigma * 1.01 * _UNIT_ROUNDOFF32 + _gamma(n_features) * frobenius
        # float32 subnormals: _knn_index.gram_bounds(n_features, np.float32)[1], written out
        # (_knn_index imports this module).
        self.shift_abs = (n_features + 8) * 64 * float(np.finfo(np.float32).tiny)
        self.gram_tol = _gamma(n_directions) + 4.0 * _UNIT_ROUNDOFF32
        n_rows = ref_scaled.shape[0]
        self.ref_proj = np.empty((n_rows, n_directions), dtype=np.float32)
        self.ref_proj_norms = np.empty(n_rows)

        def project(first, last):
            self.ref_proj[first:last], self.ref_proj_norms[first:last] = self.project(ref_scaled[first:last])

        run_row_ranges(project, n_rows, n_threads, n_features * n_directions)
        self.max_ref_norm = float(np.sqrt(ref_norms.max()))
        self.max_ref_proj_norm = float(self.ref_proj_norms.max())

    @classmethod
    def build(cls, ref_scaled, ref_norms, n_threads):
        """A Projection, or None where pruning would not pay: few features or rows, or rows that
        do not concentrate along a few directions."""
        n_rows, n_features = ref_scaled.shape
        n_directions = int(n_features * DIRECTIONS_PER_FEATURE)
        if n_features < MIN_FEATURES or n_rows < 4 * n_directions:
            return None
        # The directions come from one sample of rows and are judged on another: judged on its
        # own sample, p directions always look good when the sample has few more than p rows.
        n_sample = max(SAMPLE_ROWS, 2 * n_directions)
        step = max(2, n_rows // n_sample)
        sample = np.ascontiguousarray(ref_scaled[::step][:n_sample])
        held_out = np.arange(step // 2, n_rows, step)[:SAMPLE_ROWS]
        # All of it with BLAS single-threaded: its threads, once woken, spin for up to 0.1 s on the
        # cores the queries need (measured: 100 instead of 60 ms for the next 2000 queries).
        with single_threaded_blas():
            return cls._build(ref_scaled, ref_norms, n_threads, n_directions, sample, held_out)

    @classmethod
    def _build(cls, ref_scaled, ref_norms, n_threads, n_directions, sample, held_out):
        """build's work: directions from `sample`, judged on the rows `held_out` (indices)."""
        # Subspace iteration from sample rows: the leading directions of the sample's spread
        # sample^T sample, applied as two thin products. Columns are only rescaled between steps
        # and made orthonormal once at the end.
        V = sample[:: max(1, sample.shape[0] // n_directions)][:n_directions].T
        for _ in range(ITERATIONS):
            V = sample.T @ (sample @ V)
            V /= np.sqrt(np.einsum("ij,ij->j", V, V)) + np.float32(1e-30)
        P, product = _orthonormal(V)
        # Judged on the held-out rows' projection alone, before all the references are projected:
        # rows that do not concentrate (any isotropic data) would throw that work away (108 of a
        # 50000 x 256 index's ms; judging takes 4.5).
        held_out_proj = ref_scaled[held_out] @ P
        held_out_proj64 = held_out_proj.astype(np.float64)
        captured = np.einsum("ij,ij->", held_out_proj64, held_out_proj64)
        spread_held_out = ref_norms[held_out].sum()
        if not (spread_held_out > 0 and captured >= MIN_CAPTURED * spread_held_out):
            return None  # (rows all at the mean have no directions to prune by)
        return cls(np.ascontiguousarray(P), product, ref_scaled, ref_norms, n_threads)

    def project(self, scaled):
        """Projected float32 rows and their float64 squared norms."""
        proj = scaled @ self.P
        proj64 = proj.astype(np.float64)
        return proj, np.einsum("ij,ij->i", proj64, proj64)

    def limits(self, query_norms, query_proj_norms):
        """(n, 4) float64 rows (sigma, shift, slack, base) for knn_from_bounds.

        A reference row r within exact squared distance T of query q has projected distance
        |a - b| <= sigma sqrt(T) + shift (the rounding of both sides), and the computed term
        |b|^2 - 2 a.b in float32 is within slack of |a - b|^2 - |a|^2; base is |a|^2.
        """
        out = np.empty((query_norms.shape[0], 4))
        out[:, 0] = self.sigma * (1.0 + 1e-12)  # also covers the float64 rounding of the exact T
        out[:, 1] = self.shift_per_norm * (np.sqrt(query_norms) + self.max_ref_norm) + self.shift_abs
        norm_sum = query_proj_norms + self.max_ref_proj_norm
        # The float32 term's error, subnormals, and the float64 rounding of the limit itself.
        out[:, 2] = (self.gram_tol + 1e-12) * norm_sum + self.shift_abs
        out[:, 3] = query_proj_norms
        return out
