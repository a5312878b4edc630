"""Distance-based classifiers with the scikit-learn estimator API."""

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from fastdl._validation import as_compute, check_int
from fastdl.ops._knn_index import KnnIndex
from fastdl.ops.neighbors import class_centroids, majority_vote


def _fit_data(estimator, X, y):
    """Validated X (float32 kept, else float64), integer codes of y and the classes."""
    X, y = validate_data(estimator, X, y, dtype=[np.float64, np.float32], order="C")
    if y.dtype.kind not in "biu":  # a 1-D array of integers is always a classification target
        check_classification_targets(y)
    classes, codes = np.unique(y, return_inverse=True)
    return X, codes.astype(np.int64), classes


class KNeighborsClassifier(ClassifierMixin, BaseEstimator):
    """k-nearest-neighbours vote with exact Euclidean ranking (ties to the lower training index).

    Parameters
    ----------
    n_neighbors : int, default 3
    backend : str, optional
        "auto", "numpy", "numba", "cython" (None: the process default).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    """

    def __init__(self, n_neighbors=3, backend=None):
        self.n_neighbors = n_neighbors
        self.backend = backend

    def fit(self, X, y):
        X, self._codes, self.classes_ = _fit_data(self, X, y)
        self._index = KnnIndex(X, self.backend)
        return self

    def kneighbors(self, X, n_neighbors=None):
        """(distances, indices) of the nearest training rows of each row of X."""
        check_is_fitted(self)
        k = self.n_neighbors if n_neighbors is None else n_neighbors
        k = check_int(k, "n_neighbors", 1, self._index.X_ref.shape[0])
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32], order="C")
        dtype = self._index.X_ref.dtype
        distances, indices = self._index.query(as_compute(X, dtype), k)
        return distances.astype(dtype, copy=False), indices

    def predict(self, X):
        """Majority class among the n_neighbors nearest training rows; ties go to the smaller label."""
        _, indices = self.kneighbors(X)
        votes = majority_vote(self._codes[indices], len(self.classes_), backend=self.backend)
        return self.classes_[votes]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


class NearestCentroid(ClassifierMixin, BaseEstimator):
    """Assigns each sample the class of the nearest class mean (Euclidean; ties to the smaller label).

    Parameters
    ----------
    backend : str, optional
        "auto", "numpy", "numba", "cython" (None: the process default).

    Attributes
    ----------
    centroids_ : ndarray of shape (n_classes, n_features)
    classes_ : ndarray of shape (n_classes,)
    """

    def __init__(self, backend=None):
        self.backend = backend

    def fit(self, X, y):
        X, codes, self.classes_ = _fit_data(self, X, y)
        self.centroids_ = class_centroids(X, codes, len(self.classes_), backend=self.backend)
        self._index = KnnIndex(self.centroids_, self.backend)
        return self

    def predict(self, X):
        """The class whose centroid is nearest to each row of X."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32], order="C")
        _, nearest = self._index.query(as_compute(X, self.centroids_.dtype), 1)
        return self.classes_[nearest[:, 0]]
