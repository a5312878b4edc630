"""Reference rows prepared once for exact k-nearest-neighbour queries.

The search runs in two steps. A float32 GEMM gives every (query, reference) squared distance with
a proven error bound; only the references whose lower bound can still reach the k-th smallest upper
bound are then ranked by their exact float64 distance. The result is the exact float64 answer at
nearly the cost of a float32 GEMM.
"""

import numpy as np

from fastdl.ops._shift import (
    block_rows, max_abs_shifted, power_of_two_scale, shift_origin, shifted, sq_row_norms,
)

_UNIT_ROUNDOFF32 = 2.0**-24
# Reference rows are scaled into [-1, 1]; queries scaled beyond this could overflow float32.
_MAX_SCALED = 2.0**50


class KnnIndex:
    """Reference rows X_ref (in their compute dtype) ready for `query`."""

    def __init__(self, X_ref):
        self.X_ref = X_ref
        self.origin = shift_origin(X_ref)
        self._prepare(max_abs_shifted(X_ref, self.origin))

    def _prepare(self, max_abs):
        self.scale = power_of_two_scale(max_abs)
        self.ref_scaled = shifted(self.X_ref, self.origin, np.float32, self.scale)
        self.ref_norms = sq_row_norms(self.ref_scaled)

    def query(self, X_query, k, kernels, n_threads):
        """(distances (n, k) float64, indices (n, k) int64) of the k nearest reference rows."""
        query_scaled = shifted(X_query, self.origin, np.float32, self.scale)
        if np.abs(query_scaled).max() > _MAX_SCALED:
            # Queries far outside the reference cloud: rescale both sides for this call.
            reach = max_abs_shifted(X_query, self.origin)
            self._prepare(max(reach, max_abs_shifted(self.X_ref, self.origin)))
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
                X_query[start:stop], self.X_ref, self.scale, distances[start:stop], indices[start:stop],
                n_threads,
            )
        return distances, indices
