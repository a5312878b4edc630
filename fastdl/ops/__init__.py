"""Public functional operations; each takes `backend=None` (None: the process default)."""

from fastdl.ops.augment import affine_transform, affine_transform_grad
from fastdl.ops.conv import conv2d, conv2d_grad
from fastdl.ops.conv_transpose import conv2d_transpose, conv2d_transpose_grad
from fastdl.ops.dense import activation_grad, dense, dense_grad
from fastdl.ops.distance import pairwise_distances
from fastdl.ops.neighbors import class_centroids, knn, majority_vote
from fastdl.ops.pool import avg_pool2d, avg_pool2d_grad, max_pool2d, max_pool2d_grad

__all__ = [
    "pairwise_distances", "knn", "class_centroids", "majority_vote",
    "conv2d", "conv2d_grad", "conv2d_transpose", "conv2d_transpose_grad",
    "dense", "dense_grad", "activation_grad", "max_pool2d", "max_pool2d_grad", "avg_pool2d", "avg_pool2d_grad",
    "affine_transform", "affine_transform_grad",
]
