"""Distance-based classifiers with the scikit-learn estimator API."""

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from fastdl._validation import all_finite, as_compute, check_host, check_int
from fastdl.ops._knn_index import KnnIndex, knn_index
from fastdl.ops.neighbors import _class_means, majority_vote


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


def _without_self(distances, indices):
    """(distances, indices) of the k + 1 nearest training rows of each training row, less the row
    itself: k columns. A row missing from its own k + 1 nearest has k + 1 duplicates of lower
    index ahead of it, and its k nearest others are the first k (what scikit-learn drops instead
    is the first duplicate)."""
    n, k_plus_1 = indices.shape
    dropped = indices == np.arange(n)[:, None]
    dropped[~dropped.any(axis=1), -1] = True
    kept = ~dropped
    return distances[kept].reshape(n, k_plus_1 - 1), indices[kept].reshape(n, k_plus_1 - 1)


def _encoded(y):
    """(int64 codes of y's values in sorted order, the sorted distinct values): np.unique's, by a
    count over small non-negative integer labels (the usual kind) without its sort."""
    if y.dtype.kind in "iu" and y.size and 0 <= y.min() and y.max() < 4 * y.size + 1024:
        present = np.bincount(y) > 0
        codes = (np.cumsum(present) - 1)[y]
        return codes, np.flatnonzero(present).astype(y.dtype)
    classes, codes = np.unique(y, return_inverse=True)
    return codes.astype(np.int64), classes


class _Indexed:
    """The pickle of an estimator holding a KnnIndex: without the float64 index of float32 rows
    (made again at the first float64 query); the indexes themselves keep only their rows."""

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_index64", None)
        return state


class KNeighborsClassifier(_Indexed, ClassifierMixin, BaseEstimator):
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

    Notes
    -----
    fit keeps its own copy of the training rows: a later change to the caller's array changes no
    answer.
    """

    def __init__(self, n_neighbors=3, backend=None):
        self.n_neighbors = n_neighbors
        self.backend = backend

    def fit(self, X, y):
        """Keep a copy of the training rows, indexed for exact nearest-neighbour queries.

        n_neighbors is checked when predicting, against the number of training rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            float32 is kept; any other real dtype is converted to float64.
        y : array-like of shape (n_samples,)
            Class labels of any kind scikit-learn takes (integers, strings, ...).

        Returns
        -------
        self

        Raises
        ------
        ValueError
            X not a non-empty 2-D array of real numbers, NaN or infinity in X, y of another
            length or of continuous values.
        TypeError
            A device array: the classifier takes NumPy arrays on every backend.
        """
        X, self._codes, self.classes_ = _fit_data(self, X, y)
        self._index, self._index64 = knn_index(X, self.backend), None
        return self

    def kneighbors(self, X=None, n_neighbors=None, return_distance=True):
        """The nearest training rows of each row of X, as scikit-learn's kneighbors.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), optional
            None: the neighbours of each training row among the other training rows (a row is not
            its own neighbour; a duplicate of it is, ranked as any other row).
        n_neighbors : int, optional
            Neighbours per row (default: the estimator's n_neighbors), at most the training rows
            (fewer than them for X=None).
        return_distance : bool, default True
            Whether to return the distances too.

        Returns
        -------
        distances : ndarray of shape (n_queries, n_neighbors)
            Only with return_distance. Ranked in float64 unless both the training rows and X are
            float32 (then distances are float32), as in fastdl.ops.knn.
        indices : ndarray of shape (n_queries, n_neighbors), int64
            Training row indices by ascending distance, equal distances to the lower index.
        """
        check_is_fitted(self)
        n_fit = self._codes.shape[0]
        k = check_int(self.n_neighbors if n_neighbors is None else n_neighbors, "n_neighbors", 1)
        if X is None:
            if k >= n_fit:
                raise ValueError(f"n_neighbors must be below the {n_fit} training rows for X=None "
                                 f"(a row is not its own neighbour), got {k}")
            distances, indices = _without_self(*self._query(self._training_rows(), k + 1))
        else:
            k = check_int(k, "n_neighbors", 1, n_fit)
            distances, indices = self._query(_predict_data(self, X), k)
        return (distances, indices) if return_distance else indices

    def _query(self, X, k):
        """kneighbors' (distances, indices) for validated X."""
        index, X = _query_index(self, X)
        distances, indices = index.query(X, k)
        with np.errstate(over="ignore"):  # a distance beyond float32's range is inf, as in fastdl.ops.knn
            return distances.astype(X.dtype, copy=False), indices

    def _training_rows(self):
        """The fitted rows as a NumPy array (the index's own copy; on cuda copied from the device)."""
        rows = self._index.X_ref
        return rows if isinstance(rows, np.ndarray) else rows.copy_to_host()

    def predict(self, X):
        """Majority class among the n_neighbors nearest training rows; ties go to the smaller label.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), or None
            None: each training row, from its neighbours among the others (as in kneighbors).

        Returns
        -------
        ndarray of shape (n_queries,)
            Labels from classes_.

        Raises
        ------
        ValueError
            n_neighbors below 1 or above the training rows (X=None: not below them), X of another
            width, NaN or infinity in X.
        """
        indices = self.kneighbors(X, return_distance=False)
        votes = majority_vote(self._codes[indices], len(self.classes_), backend=self.backend)
        return self.classes_[votes]

    def predict_proba(self, X):
        """The share of each class among the n_neighbors nearest training rows.

        scikit-learn's KNeighborsClassifier.predict_proba with uniform weights: what roc_auc and
        neg_log_loss scoring and soft voting take. predict gives the class of the first largest
        share.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), or None
            None: each training row, from its neighbours among the others (as in kneighbors).

        Returns
        -------
        ndarray of shape (n_queries, n_classes), float64
            Columns in classes_ order; each row sums to 1 (vote counts over n_neighbors).
        """
        indices = self.kneighbors(X, return_distance=False)
        n, k = indices.shape
        n_classes = len(self.classes_)
        cells = np.arange(n)[:, None] * n_classes + self._codes[indices]
        return np.bincount(cells.ravel(), minlength=n * n_classes).reshape(n, n_classes) / k

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


class NearestCentroid(_Indexed, ClassifierMixin, BaseEstimator):
    """Assigns each sample the class of the nearest class mean (Euclidean; ties to the smaller label).

    Parameters
    ----------
    backend : str, optional
        "auto", "numpy", "numba", "cython", "cuda" (None: the process default).

    Attributes
    ----------
    centroids_ : ndarray of shape (n_classes, n_features), float64
        Each class's mean row, summed in float64 and rounded once, whatever X's dtype: float64
        for float32 X too, as scikit-learn's centroids_. (Rounded to float32, means of rows near
        1e6 moved by up to half a float32 ulp, 0.03, and changed 1% of predictions.)
    classes_ : ndarray of shape (n_classes,)

    Notes
    -----
    No decision_function, predict_proba or predict_log_proba, which scikit-learn's NearestCentroid
    has (since 1.5): its scores are squared distances in units of the pooled within-class standard
    deviation of each feature, plus the log class priors (ESL eq. 18.2), a ranking that can
    disagree with the Euclidean one of predict (this one's, and scikit-learn's with uniform
    priors). So roc_auc and neg_log_loss scoring and soft voting need another estimator here, e.g.
    KNeighborsClassifier, which has predict_proba.
    """

    def __init__(self, backend=None):
        self.backend = backend

    def fit(self, X, y):
        """Compute the mean row of each class (the training rows are not kept).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            float32 is read as it is (not copied to float64); any other real dtype is converted
            to float64. centroids_ is float64 either way.
        y : array-like of shape (n_samples,)
            Class labels of any kind scikit-learn takes (integers, strings, ...).

        Returns
        -------
        self

        Raises
        ------
        ValueError
            X not a non-empty 2-D array of real numbers, NaN or infinity in X, y of another
            length or of continuous values, or of one class only (as scikit-learn's).
        TypeError
            A device array: the classifier takes NumPy arrays on every backend.
        """
        X, codes, classes = _fit_data(self, X, y)
        if len(classes) < 2:
            raise ValueError(f"NearestCentroid needs at least two classes, got one class: {classes.tolist()[0]!r}")
        self.classes_ = classes
        self.centroids_ = _class_means(X, codes, len(self.classes_), self.backend)
        self._index, self._index64 = knn_index(self.centroids_, self.backend), None
        return self

    def predict(self, X):
        """The class whose centroid is nearest to each row of X.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Ranked in float64 against the float64 centroids_ (float32 X converted for it: 1000
            rows of 256 features against 10 centroids measured no slower).

        Returns
        -------
        ndarray of shape (n_queries,)
            Labels from classes_.

        Raises
        ------
        ValueError
            X of another width, NaN or infinity in X.
        """
        check_is_fitted(self)
        index, X = _query_index(self, _predict_data(self, X))
        _, nearest = index.query(X, 1)
        return self.classes_[nearest[:, 0]]
