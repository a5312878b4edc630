"""Reference rows prepared once for exact k-nearest-neighbour queries.

The search runs in two steps. A float32 GEMM gives every (query, reference) squared distance with
a proven error bound; only the references whose lower bound can still reach the k-th smallest upper
bound are then ranked by their exact float64 distance. The result is the exact float64 answer at
nearly the cost of a float32 GEMM.
"""

import math

import numpy as np

from fastdl.ops._shift import block_rows, shift_origin, shifted, sq_row_norms

_UNIT_ROUNDOFF32 = 2.0**-24
# Scaled rows stay within [-1, 1]; refuse queries that would overflow float32 in the GEMM.
_MAX_SCALED = 2.0**50


def _power_of_two_scale(max_abs):
    """A power of two s with max_abs * s in (0.5, 1]: exact to apply and to undo."""
    if max_abs == 0.0:
        return 1.0
    return 2.0 ** (-math.ceil(math.log2(max_abs)))


class KnnIndex:
    """Reference rows X_ref (in their compute dtype) ready for `query`."""

    def __init__(self, X_ref):
        self.X_ref = X_ref
        self.origin = shift_origin(X_ref)
        self._prepare(float(np.abs(X_ref - self.origin).max()) if X_ref.size else 0.0)

    def _prepare(self, max_abs):
        self.scale = _power_of_two_scale(max_abs)
        self.ref_scaled = shifted(self.X_ref, self.origin, np.float32, self.scale)
        self.ref_norms = sq_row_norms(self.ref_scaled)

    def query(self, X_query, k, kernels, n_threads):
        """(distances (n, k) float64, indices (n, k) int64) of the k nearest reference rows."""
        query_scaled = shifted(X_query, self.origin, np.float32, self.scale)
        if np.abs(query_scaled).max() > _MAX_SCALED:
            # Queries far outside the reference cloud: rescale both sides for this call.
            reach = float(np.abs(np.subtract(X_query, self.origin, dtype=np.float64)).max())
            self._prepare(max(reach, float(np.abs(self.X_ref - self.origin).max())))
            query_scaled = shifted(X_query, self.origin, np.float32, self.scale)
        query_norms = sq_row_norms(query_scaled)
        n_features = X_query.shape[1]
        # |approx - exact| <= (gamma_d + 4u) * (|q|^2 + |r|^2): the GEMM's rounding plus the rounding
        # of each element to float32; bound_abs covers float32 subnormals.
        bound_tol = 1.01 * (n_features + 8) * _UNIT_ROUNDOFF32
        bound_abs = (n_features + 8) * 2.0**-120
        n, m = X_query.shape[0], self.X_ref.shape[0]
        distances = np.empty((n, k))
        indices = np.empty((n, k), dtype=np.int64)
        gram = np.empty(min(n, block_rows(n, m)[0][1]) * m, dtype=np.float32)
        for start, stop in block_rows(n, m):
            block = gram[: (stop - start) * m].reshape(stop - start, m)
            np.dot(query_scaled[start:stop], self.ref_scaled.T, out=block)
            kernels.knn_from_gram(
                block, query_norms[start:stop], self.ref_norms, bound_tol, bound_abs,
                X_query[start:stop], self.X_ref, distances[start:stop], indices[start:stop], n_threads,
            )
        return distances, indices
