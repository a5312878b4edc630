"""Slow, obviously correct references for the kernels: plain Python loops over float64 values.

Every function here trades speed for being checkable by eye; tests keep their shapes small.
"""

import math

import numpy as np


def _rows(X):
    """Rows of X as lists of Python floats (float64 arithmetic, no BLAS)."""
    return [[float(v) for v in row] for row in np.asarray(X)]


def sq_euclidean(a, b):
    """Squared Euclidean distance between two sequences, summed in float64."""
    total = 0.0
    for x, y in zip(a, b):
        diff = float(x) - float(y)
        total += diff * diff
    return total


def pairwise_distances(A, B=None, squared=False):
    """(n, m) float64 matrix of (squared) Euclidean distances, one pair at a time."""
    rows_a = _rows(A)
    rows_b = rows_a if B is None else _rows(B)
    out = np.empty((len(rows_a), len(rows_b)))
    for i, a in enumerate(rows_a):
        for j, b in enumerate(rows_b):
            d2 = sq_euclidean(a, b)
            out[i, j] = d2 if squared else math.sqrt(d2)
    return out


def knn(X_query, X_ref, k):
    """(distances, indices) of the k nearest rows of X_ref: sort by (exact distance, index)."""
    rows_r = _rows(X_ref)
    distances, indices = [], []
    for q in _rows(X_query):
        ranked = sorted((sq_euclidean(q, r), j) for j, r in enumerate(rows_r))[:k]
        distances.append([math.sqrt(d2) for d2, _ in ranked])
        indices.append([j for _, j in ranked])
    return np.array(distances, dtype=np.float64).reshape(-1, k), np.array(indices, dtype=np.int64).reshape(-1, k)


def majority_vote(neighbor_codes, n_classes):
    """Most frequent code per row; the first (smallest) code wins a tie."""
    out = []
    for row in np.asarray(neighbor_codes):
        counts = [0] * n_classes
        for code in row:
            counts[int(code)] += 1
        best = 0
        for c in range(n_classes):
            if counts[c] > counts[best]:
                best = c
        out.append(best)
    return np.array(out, dtype=np.int64)


def class_centroids(X, y, n_classes=None):
    """Mean row of each class code 0..n_classes-1, accumulated in float64."""
    rows = _rows(X)
    codes = [int(c) for c in np.asarray(y)]
    n_classes = max(codes) + 1 if n_classes is None else n_classes
    n_features = len(rows[0])
    sums = [[0.0] * n_features for _ in range(n_classes)]
    counts = [0] * n_classes
    for row, c in zip(rows, codes):
        counts[c] += 1
        for f, v in enumerate(row):
            sums[c][f] += v
    return np.array([[s / counts[c] for s in sums[c]] for c in range(n_classes)])


def knn_classify(X_train, y_train, X_test, k):
    """Labels by majority vote among the k nearest training rows (ties to the smaller label)."""
    classes = sorted(set(np.asarray(y_train).tolist()))
    code_of = {label: code for code, label in enumerate(classes)}
    codes = np.array([code_of[label] for label in np.asarray(y_train).tolist()])
    _, indices = knn(X_test, X_train, k)
    votes = majority_vote(codes[indices], len(classes))
    return np.array([classes[v] for v in votes])


def nearest_centroid_classify(X_train, y_train, X_test):
    """Label of the nearest class mean (ties to the smaller label)."""
    classes = sorted(set(np.asarray(y_train).tolist()))
    code_of = {label: code for code, label in enumerate(classes)}
    codes = [code_of[label] for label in np.asarray(y_train).tolist()]
    centroids = class_centroids(X_train, codes, len(classes))
    _, nearest = knn(X_test, centroids, 1)
    return np.array([classes[c] for c in nearest[:, 0]])


def shift_rows(X, origin, scale, out_dtype):
    """(X - origin) * scale row by row in float64, stored in out_dtype, and the stored rows' norms."""
    out = np.empty(X.shape, dtype=out_dtype)
    norms = np.empty(X.shape[0])
    for i in range(X.shape[0]):
        norm = 0.0
        for f in range(X.shape[1]):
            out[i, f] = (float(X[i, f]) - float(origin[f])) * scale
            norm += float(out[i, f]) ** 2
        norms[i] = norm
    return out, norms
