"""Distance-based classifiers with the scikit-learn estimator API."""

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from fastdl._validation import all_finite, as_compute, check_host, check_int
from fastdl.ops._knn_index import KnnIndex, knn_index
from fastdl.ops.neighbors import class_centroids, majority_vote


def _is_plain(X):
    """X is what validate_data would hand back as it is: a C-contiguous, native-order float32 or
    float64 matrix with rows and columns, and only finite values."""
    return (
        type(X) is np.ndarray and X.ndim == 2 and X.dtype in (np.float32, np.float64)
        and X.dtype.isnative and X.flags.c_contiguous and X.size > 0 and all_finite(X)
    )


def _check_host(estimator, **arrays):
    """Refuse device arrays: the classifiers take NumPy arrays on every backend, as scikit-learn's
    estimators do (never a silent copy to the host; on cuda the fitted rows stay on the device)."""
    for name, array in arrays.items():
        check_host(array, name, type(estimator).__name__,
                   "as for any scikit-learn estimator (on backend='cuda' its fitted rows stay on the device)")


def _predict_data(estimator, X):
    """validate_data(estimator, X, reset=False) as float32 (kept) or float64 C arrays; plain NumPy
    input of the fitted width skips its general checks (a tenth of a kNN fit+predict here)."""
    if _is_plain(X) and X.shape[1] == estimator.n_features_in_ and not hasattr(estimator, "feature_names_in_"):
        return X
    _check_host(estimator, X=X)
    return validate_data(estimator, X, reset=False, dtype=[np.float64, np.float32], order="C")


def _fit_data(estimator, X, y):
    """Validated X (float32 kept, else float64), integer codes of y and the classes."""
    if _is_plain(X) and type(y) is np.ndarray and y.ndim == 1 and y.dtype.kind in "iu" and y.shape[0] == X.shape[0]:
        estimator.n_features_in_ = X.shape[1]  # what validate_data records, for plain NumPy input
        if hasattr(estimator, "feature_names_in_"):
            del estimator.feature_names_in_
    else:
        _check_host(estimator, X=X, y=y)
        X, y = validate_data(estimator, X, y, dtype=[np.float64, np.float32], order="C")
    if y.dtype.kind not in "biu":  # a 1-D array of integers is always a classification target
        check_classification_targets(y)
    return (X, *_encoded(y))


def _query_index(estimator, X):
    """(the fitted index to query X (float32 or float64) with, X in the dtype it takes).

    float32 queries of a float32 fit use the fitted index; any other pair ranks in float64, as
    fastdl.ops.knn does: float64 queries of a float32 fit through a float64 index of the same rows,
    built at the first such query (the cuda index ranks in float64 whatever the dtypes).
    """
    index = estimator._index
    if X.dtype == index.X_ref.dtype or not isinstance(index, KnnIndex):
        return index, as_compute(X, X.dtype)
    if index.X_ref.dtype == np.float64:
        return index, as_compute(X, np.float64)
    if getattr(estimator, "_index64", None) is None:
        estimator._index64 = KnnIndex(as_compute(index.X_ref, np.float64), estimator.backend)
    return estimator._index64, as_compute(X, np.float64)


def _encoded(y):
    """(int64 codes of y's values in sorted order, the sorted distinct values): np.unique's, by a
    count over small non-negative integer labels (the usual kind) without its sort."""
    if y.dtype.kind in "iu" and y.size and 0 <= y.min() and y.max() < 4 * y.size + 1024:
        present = np.bincount(y) > 0
        codes = (np.cumsum(present) - 1)[y]
        return codes, np.flatnonzero(present).astype(y.dtype)
    classes, codes = np.unique(y, return_inverse=True)
    return codes.astype(np.int64), classes


class KNeighborsClassifier(ClassifierMixin, BaseEstimator):
    """k-nearest-neighbours vote with exact Euclidean ranking (ties to the lower training index).

    Parameters
    ----------
    n_neighbors : int, default 3
    backend : str, optional
        "auto", "numpy", "numba", "cython", "cuda" (None: the process default).

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
        self._index, self._index64 = knn_index(X, self.backend), None
        return self

    def kneighbors(self, X, n_neighbors=None):
        """(distances, indices) of the nearest training rows of each row of X.

        Ranked in float64 unless both the training rows and X are float32 (then distances are
        float32), as in fastdl.ops.knn.
        """
        check_is_fitted(self)
        k = self.n_neighbors if n_neighbors is None else n_neighbors
        k = check_int(k, "n_neighbors", 1, self._index.X_ref.shape[0])
        index, X = _query_index(self, _predict_data(self, X))
        distances, indices = index.query(X, k)
        with np.errstate(over="ignore"):  # a distance beyond float32's range is inf, as in fastdl.ops.knn
            return distances.astype(X.dtype, copy=False), indices

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
        "auto", "numpy", "numba", "cython", "cuda" (None: the process default).

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
        self._index, self._index64 = knn_index(self.centroids_, self.backend), None
        return self

    def predict(self, X):
        """The class whose centroid is nearest to each row of X (ranked in float64 unless both the
        centroids and X are float32)."""
        check_is_fitted(self)
        index, X = _query_index(self, _predict_data(self, X))
        _, nearest = index.query(X, 1)
        return self.classes_[nearest[:, 0]]
