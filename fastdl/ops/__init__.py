"""Public functional operations; each takes `backend=None` (None: the process default)."""

from fastdl.ops.distance import pairwise_distances
from fastdl.ops.neighbors import class_centroids, knn, majority_vote

__all__ = ["pairwise_distances", "knn", "class_centroids", "majority_vote"]
