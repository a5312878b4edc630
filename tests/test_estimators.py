"""fastdl.neighbors estimators: the scikit-learn API, and the same predictions as scikit-learn."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier as SkKNeighborsClassifier
from sklearn.neighbors import NearestCentroid as SkNearestCentroid
from sklearn.utils.estimator_checks import parametrize_with_checks

import naive
from conftest import RTOL
from fastdl.neighbors import KNeighborsClassifier, NearestCentroid
from fastdl.ops import class_centroids, knn


def _blobs(rng, n_samples=90, n_features=4, n_classes=3, dtype=np.float64, spread=1.5):
    """Overlapping Gaussian blobs: continuous values, so no two distances tie."""
    centers = rng.normal(scale=2.0, size=(n_classes, n_features))
    y = rng.integers(0, n_classes, size=n_samples)
    X = centers[y] + rng.normal(scale=spread, size=(n_samples, n_features))
    return X.astype(dtype), y


# scikit-learn's own estimator checks. Both estimators pass every check that applies, so no check is
# listed as an expected failure; a future exception must be added to this dict with the reason.
EXPECTED_FAILED_CHECKS = {}


@parametrize_with_checks(
    [KNeighborsClassifier(), NearestCentroid()],
    expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS.get(type(estimator).__name__, {}),
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# Predictions against scikit-learn and the naive references --------------------------------------


@pytest.mark.parametrize("n_neighbors", [1, 3, 4, 7])
def test_knn_classifier_matches_sklearn(backend, dtype, rng, n_neighbors):
    X, y = _blobs(rng, dtype=dtype)
    X_test, _ = _blobs(rng, n_samples=40, dtype=dtype)
    ours = KNeighborsClassifier(n_neighbors=n_neighbors, backend=backend).fit(X, y)
    theirs = SkKNeighborsClassifier(n_neighbors=n_neighbors, algorithm="brute").fit(X.astype(np.float64), y)
    # Even k makes vote ties: both give them to the smaller label.
    np.testing.assert_array_equal(ours.predict(X_test), theirs.predict(X_test.astype(np.float64)))
    np.testing.assert_array_equal(ours.predict(X_test), naive.knn_classify(X, y, X_test, n_neighbors))
    assert ours.score(X_test, theirs.predict(X_test)) == 1.0


def test_knn_classifier_vote_tie_goes_to_smaller_label(backend):
    X = np.array([[0.0], [1.0], [-2.0], [3.0]])
    y = np.array([7, 5, 5, 7])
    # From 0.1 the nearest are rows 0, 1 (labels 7, 5): a tie that the smaller label, 5, wins.
    clf = KNeighborsClassifier(n_neighbors=2, backend=backend).fit(X, y)
    np.testing.assert_array_equal(clf.predict([[0.1]]), [5])
    sk = SkKNeighborsClassifier(n_neighbors=2, algorithm="brute").fit(X, y)
    np.testing.assert_array_equal(sk.predict([[0.1]]), [5])


def test_knn_classifier_distance_tie_goes_to_lower_index(backend):
    X = np.array([[1.0], [-1.0], [5.0]])
    y = np.array([1, 0, 0])
    # Rows 0 and 1 are equally far from 0.0: the lower index (row 0, label 1) is the nearest.
    clf = KNeighborsClassifier(n_neighbors=1, backend=backend).fit(X, y)
    np.testing.assert_array_equal(clf.predict([[0.0]]), [1])


def test_kneighbors_matches_ops_knn(backend, dtype, rng):
    X, y = _blobs(rng, dtype=dtype)
    X_test, _ = _blobs(rng, n_samples=10, dtype=dtype)
    clf = KNeighborsClassifier(n_neighbors=4, backend=backend).fit(X, y)
    distances, indices = clf.kneighbors(X_test)
    expected_d, expected_i = knn(X_test, X, 4, backend=backend)
    assert distances.dtype == dtype
    np.testing.assert_array_equal(indices, expected_i)
    np.testing.assert_allclose(distances, expected_d, rtol=RTOL[dtype])
    _, indices_6 = clf.kneighbors(X_test, n_neighbors=6)
    np.testing.assert_array_equal(indices_6, knn(X_test, X, 6, backend=backend)[1])


def test_nearest_centroid_matches_sklearn(backend, dtype, rng):
    X, y = _blobs(rng, dtype=dtype)
    X_test, _ = _blobs(rng, n_samples=50, dtype=dtype)
    ours = NearestCentroid(backend=backend).fit(X, y)
    theirs = SkNearestCentroid().fit(X.astype(np.float64), y)
    np.testing.assert_allclose(ours.centroids_, theirs.centroids_, rtol=RTOL[dtype], atol=RTOL[dtype])
    assert ours.centroids_.dtype == np.float64  # as scikit-learn's, float32 X too: the means rounded once
    np.testing.assert_array_equal(ours.predict(X_test), theirs.predict(X_test.astype(np.float64)))
    np.testing.assert_array_equal(ours.predict(X_test), naive.nearest_centroid_classify(X, y, X_test))


def test_nearest_centroid_tie_goes_to_smaller_label(backend):
    X = np.array([[-1.0], [-3.0], [1.0], [3.0]])
    y = np.array(["b", "b", "a", "a"])  # centroids: b at -2, a at 2
    clf = NearestCentroid(backend=backend).fit(X, y)
    np.testing.assert_array_equal(clf.classes_, ["a", "b"])
    np.testing.assert_array_equal(clf.centroids_, [[2.0], [-2.0]])
    np.testing.assert_array_equal(clf.predict([[0.0], [-0.5], [0.5]]), ["a", "b", "a"])


# The estimator API ------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [lambda b: KNeighborsClassifier(n_neighbors=3, backend=b),
                                  lambda b: NearestCentroid(backend=b)], ids=["knn", "centroid"])
def test_fit_predict_score_string_labels(backend, rng, make):
    X, codes = _blobs(rng, spread=0.3)
    names = np.array(["setosa", "versicolor", "virginica"])
    y = names[codes]
    clf = make(backend)
    assert clf.fit(X, y) is clf
    np.testing.assert_array_equal(clf.classes_, names)
    assert clf.n_features_in_ == X.shape[1]
    predicted = clf.predict(X)
    assert predicted.dtype == y.dtype
    assert set(predicted) <= set(names)
    score = clf.score(X, y)
    assert 0.9 <= score <= 1.0
    assert score == np.mean(predicted == y)


def test_classes_sorted_and_centroids_in_classes_order(backend, rng):
    X = rng.normal(size=(30, 2))
    y = np.array([10, -3, 4] * 10)
    clf = NearestCentroid(backend=backend).fit(X, y)
    np.testing.assert_array_equal(clf.classes_, [-3, 4, 10])
    for row, label in zip(clf.centroids_, clf.classes_):
        np.testing.assert_allclose(row, X[y == label].mean(axis=0), rtol=1e-12)


def test_get_params_set_params_clone():
    clf = KNeighborsClassifier(n_neighbors=5, backend="numpy")
    assert clf.get_params() == {"n_neighbors": 5, "backend": "numpy"}
    assert clf.set_params(n_neighbors=2) is clf
    assert clf.n_neighbors == 2
    assert clone(clf).get_params() == {"n_neighbors": 2, "backend": "numpy"}
    nc = NearestCentroid(backend="numba")
    assert nc.get_params() == {"backend": "numba"}
    assert nc.set_params(backend="numpy").backend == "numpy"


@pytest.mark.parametrize("estimator", [KNeighborsClassifier(n_neighbors=5), NearestCentroid()], ids=["knn", "centroid"])
def test_cross_val_score(estimator, rng):
    X, y = _blobs(rng, n_samples=120, spread=0.5)
    scores = cross_val_score(estimator, X, y, cv=3)
    assert scores.shape == (3,)
    assert (scores > 0.8).all()


@pytest.mark.parametrize("estimator", [KNeighborsClassifier(), NearestCentroid()], ids=["knn", "centroid"])
def test_predict_before_fit_raises(estimator):
    with pytest.raises(NotFittedError):
        estimator.predict(np.zeros((2, 3)))


def test_kneighbors_before_fit_raises():
    with pytest.raises(NotFittedError):
        KNeighborsClassifier().kneighbors(np.zeros((2, 3)))


@pytest.mark.parametrize("make", [lambda b: KNeighborsClassifier(n_neighbors=3, backend=b),
                                  lambda b: NearestCentroid(backend=b)], ids=["knn", "centroid"])
def test_pickle_roundtrip(backend, rng, make):
    X, y = _blobs(rng)
    clf = make(backend).fit(X, y)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict(X), clf.predict(X))


def test_n_neighbors_equal_to_n_samples(backend, rng):
    X, y = _blobs(rng, n_samples=9)
    clf = KNeighborsClassifier(n_neighbors=9, backend=backend).fit(X, y)
    # Every query sees the whole training set: the overall majority (smallest label on a tie).
    expected = naive.majority_vote(y[None, :], 3)[0]
    np.testing.assert_array_equal(clf.predict(X[:3]), [expected] * 3)


def test_n_neighbors_larger_than_training_set_raises(backend, rng):
    X, y = _blobs(rng, n_samples=5)
    clf = KNeighborsClassifier(n_neighbors=6, backend=backend).fit(X, y)
    with pytest.raises(ValueError, match="n_neighbors.*6"):
        clf.predict(X)


@pytest.mark.parametrize("bad", [0, -1])
def test_n_neighbors_below_one_raises(bad, rng):
    X, y = _blobs(rng, n_samples=10)
    with pytest.raises(ValueError, match=f"n_neighbors.*{bad}"):
        KNeighborsClassifier(n_neighbors=bad, backend="numpy").fit(X, y).predict(X)


@pytest.mark.parametrize("bad", [2.5, "3", None])
def test_n_neighbors_not_an_integer_raises(bad, rng):
    X, y = _blobs(rng, n_samples=10)
    with pytest.raises((TypeError, ValueError), match="n_neighbors"):
        KNeighborsClassifier(n_neighbors=bad, backend="numpy").fit(X, y).predict(X)


def test_predict_wrong_feature_count_raises(rng):
    X, y = _blobs(rng, n_samples=10)
    for clf in (KNeighborsClassifier(backend="numpy"), NearestCentroid(backend="numpy")):
        clf.fit(X, y)
        with pytest.raises(ValueError, match="features"):
            clf.predict(np.zeros((2, X.shape[1] + 1)))


def test_centroids_consistent_with_ops(backend, dtype, rng):
    X, y = _blobs(rng, dtype=dtype)
    clf = NearestCentroid(backend=backend).fit(X, y)
    np.testing.assert_allclose(clf.centroids_, class_centroids(X, y, backend=backend), rtol=RTOL[dtype])


@pytest.mark.parametrize("query_dtype", [np.float64, np.int64, np.float32])
def test_float32_fit_ranks_other_queries_in_float64(backend, rng, query_dtype):
    """A float32 fit must not round float64 queries to float32 (0.50000001 would become 0.5, a tie
    that goes to class 0); any pair but float32 with float32 ranks in float64, as ops.knn does."""
    X = np.array([[0.0], [1.0]], dtype=np.float32)
    knn_clf = KNeighborsClassifier(n_neighbors=1, backend=backend).fit(X, [0, 1])
    centroid = NearestCentroid(backend=backend).fit(X, [0, 1])
    if query_dtype == np.float64:
        np.testing.assert_array_equal(knn_clf.predict([[0.50000001]]), [1])
        np.testing.assert_array_equal(centroid.predict([[0.50000001]]), [1])
    X_train, y = _blobs(rng, dtype=np.float32)
    X_test = (_blobs(rng, n_samples=12)[0] * 3).astype(query_dtype)
    knn_clf = KNeighborsClassifier(n_neighbors=4, backend=backend).fit(X_train, y)
    for _ in range(2):  # the second query reuses the float64 index
        distances, indices = knn_clf.kneighbors(X_test)
        expected_d, expected_i = knn(X_test, X_train, 4, backend=backend)
        assert distances.dtype == expected_d.dtype
        np.testing.assert_array_equal(indices, expected_i)
        np.testing.assert_array_equal(distances, expected_d)
    theirs = SkNearestCentroid().fit(X_train, y)
    np.testing.assert_array_equal(NearestCentroid(backend=backend).fit(X_train, y).predict(X_test),
                                  theirs.predict(X_test))
