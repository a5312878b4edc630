"""More of the classic models: kNN's private training rows, predict_proba and scikit-learn's
kneighbors signature, the perceptron's mixed-dtype scores, the many-class vote, 64-bit integer
clock times, and the XOR functions' bad input."""

import pickle
import tracemalloc

import numpy as np
import pytest
from scipy.stats import mode
from sklearn.ensemble import VotingClassifier
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier as SkKNeighborsClassifier

import fastdl
from conftest import skip_unless_available
from fastdl._validation import NonFiniteError
from fastdl.linear import MultiClassPerceptron
from fastdl.metrics import common_sense_errors, hours_to_hm
from fastdl.neighbors import KNeighborsClassifier, NearestCentroid
from fastdl.ops import majority_vote
from fastdl.xor import draw_weights, lazy_search_stats, train_xor


def _blobs(rng, n_samples=90, n_features=4, n_classes=3, dtype=np.float64):
    """Overlapping Gaussian blobs: continuous values, so no two distances tie."""
    centers = rng.normal(scale=2.0, size=(n_classes, n_features))
    y = rng.integers(0, n_classes, size=n_samples)
    X = centers[y] + rng.normal(scale=1.5, size=(n_samples, n_features))
    return X.astype(dtype), y


# The training rows are the estimator's own -------------------------------------------------------


def test_knn_answers_for_the_rows_it_was_fitted_on(backend, dtype, rng):
    """A change to the caller's X after fit changes no answer (it left the index's bounds and its
    rows out of step: neighbours of neither the old nor the new rows)."""
    X, y = _blobs(rng, n_samples=200, n_features=5, dtype=dtype)
    X_query = (rng.normal(size=(50, 5)) * 0.5).astype(dtype)
    fresh = KNeighborsClassifier(3, backend=backend).fit(X.copy(), y)
    expected = fresh.kneighbors(X_query)
    clf = KNeighborsClassifier(3, backend=backend).fit(X, y)
    X *= 0.5
    distances, indices = clf.kneighbors(X_query)
    np.testing.assert_array_equal(indices, expected[1])
    np.testing.assert_array_equal(distances, expected[0])
    np.testing.assert_array_equal(clf.predict(X_query), fresh.predict(X_query))


def test_knn_float64_queries_of_a_float32_fit_use_the_fitted_rows(backend, rng):
    """The float64 index of a float32 fit is built at the first float64 query: from the fitted
    rows, not from the caller's array as it is by then."""
    X, y = _blobs(rng, n_samples=120, dtype=np.float32)
    X_query = rng.normal(size=(30, 4))
    expected = KNeighborsClassifier(3, backend=backend).fit(X.copy(), y).kneighbors(X_query)
    clf = KNeighborsClassifier(3, backend=backend).fit(X, y)
    X[:] = X[::-1]
    distances, indices = clf.kneighbors(X_query)
    assert distances.dtype == np.float64
    np.testing.assert_array_equal(indices, expected[1])
    np.testing.assert_array_equal(distances, expected[0])


# predict_proba and kneighbors as scikit-learn's --------------------------------------------------


@pytest.mark.parametrize("n_neighbors", [1, 3, 4, 7])
def test_knn_predict_proba_matches_sklearn(backend, dtype, rng, n_neighbors):
    X, codes = _blobs(rng, dtype=dtype)
    y = np.array([11, 3, 7])[codes]  # classes_ [3, 7, 11]: columns in sorted label order
    X_test, _ = _blobs(rng, n_samples=40, dtype=dtype)
    ours = KNeighborsClassifier(n_neighbors, backend=backend).fit(X, y)
    theirs = SkKNeighborsClassifier(n_neighbors, algorithm="brute").fit(X.astype(np.float64), y)
    proba = ours.predict_proba(X_test)
    assert proba.shape == (40, 3) and proba.dtype == np.float64
    np.testing.assert_array_equal(proba, theirs.predict_proba(X_test.astype(np.float64)))
    # predict takes the first largest share: the smaller label on a tie.
    np.testing.assert_array_equal(ours.predict(X_test), ours.classes_[np.argmax(proba, axis=1)])


def test_knn_probability_scoring_and_soft_voting(rng):
    X, y = _blobs(rng, n_samples=60, n_classes=2)
    for scoring in ("roc_auc", "neg_log_loss"):
        ours = cross_val_score(KNeighborsClassifier(5), X, y, cv=3, scoring=scoring, error_score="raise")
        theirs = cross_val_score(SkKNeighborsClassifier(5, algorithm="brute"), X, y, cv=3, scoring=scoring)
        np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    voting = VotingClassifier([("knn", KNeighborsClassifier(5))], voting="soft").fit(X, y)
    np.testing.assert_array_equal(voting.predict(X), KNeighborsClassifier(5).fit(X, y).predict(X))


def test_kneighbors_return_distance_false(backend, rng):
    X, y = _blobs(rng)
    clf = KNeighborsClassifier(4, backend=backend).fit(X, y)
    indices = clf.kneighbors(X[:7], return_distance=False)
    np.testing.assert_array_equal(indices, clf.kneighbors(X[:7])[1])
    np.testing.assert_array_equal(clf.kneighbors(X[:7], 2, False), indices[:, :2])


@pytest.mark.parametrize("n_neighbors", [1, 3])
def test_kneighbors_of_the_training_rows_matches_sklearn(backend, dtype, rng, n_neighbors):
    """X=None: each training row's neighbours among the others, as scikit-learn's."""
    X, y = _blobs(rng, n_samples=60, dtype=dtype)
    ours = KNeighborsClassifier(n_neighbors, backend=backend).fit(X, y)
    theirs = SkKNeighborsClassifier(n_neighbors, algorithm="brute").fit(X.astype(np.float64), y)
    distances, indices = ours.kneighbors()
    expected_distances, expected_indices = theirs.kneighbors()
    assert indices.shape == (60, n_neighbors) and distances.dtype == dtype
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(distances, expected_distances, rtol=1e-6 if dtype == np.float32 else 1e-12)
    np.testing.assert_array_equal(ours.kneighbors(n_neighbors=2, return_distance=False), theirs.kneighbors(
        n_neighbors=2, return_distance=False))
    np.testing.assert_array_equal(ours.predict(None), theirs.predict(None))
    np.testing.assert_array_equal(ours.predict_proba(None), theirs.predict_proba(None))


def test_kneighbors_of_the_training_rows_with_duplicates(backend):
    """A row is never its own neighbour, a duplicate of it is: ranked as any row, lower index first
    (row 2's nearest other row is row 0, also where its own index is beyond its first k + 1)."""
    X = np.array([[0.0], [0.0], [0.0], [5.0], [6.0]])
    clf = KNeighborsClassifier(1, backend=backend).fit(X, [0, 1, 1, 0, 0])
    distances, indices = clf.kneighbors()
    np.testing.assert_array_equal(indices, [[1], [0], [0], [4], [3]])
    np.testing.assert_array_equal(distances, [[0.0], [0.0], [0.0], [1.0], [1.0]])
    np.testing.assert_array_equal(clf.kneighbors(n_neighbors=2, return_distance=False),
                                  [[1, 2], [0, 2], [0, 1], [4, 0], [3, 0]])
    np.testing.assert_array_equal(clf.kneighbors(n_neighbors=4, return_distance=False)[:, -1], [4, 4, 4, 2, 2])


def test_kneighbors_of_the_training_rows_needs_another_row():
    clf = KNeighborsClassifier(3).fit(np.eye(3), [0, 1, 2])
    with pytest.raises(ValueError, match="n_neighbors must be below the 3 training rows"):
        clf.kneighbors()
    with pytest.raises(ValueError, match="n_neighbors must be between 1 and 3"):
        clf.kneighbors(np.eye(3), 4)
    assert clf.kneighbors(n_neighbors=2)[1].shape == (3, 2)


# The perceptron scores float64 input in float64 -----------------------------------------------------


def test_perceptron_float32_fit_scores_float64_input_in_float64(rng):
    X = rng.normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
    model = MultiClassPerceptron(max_epochs=30).fit(X.astype(np.float32), y)
    assert model.weights_.dtype == np.float32
    queries = np.array([[1e39, 0.0, 0.0], [0.0, 1e39, 0.0], [0.5, -0.25, 2.0]])
    expected = np.hstack([queries, np.ones((3, 1))]) @ model.weights_.astype(np.float64)
    scores = model.decision_function(queries)
    assert scores.dtype == np.float64 and np.isfinite(scores).all()
    np.testing.assert_array_equal(scores, expected)
    np.testing.assert_array_equal(model.predict(queries), model.classes_[np.argmax(expected, axis=1)])
    # float32 input keeps float32 scores, as before.
    ordinary = X[:5].astype(np.float32)
    scores32 = model.decision_function(ordinary)
    assert scores32.dtype == np.float32
    np.testing.assert_array_equal(scores32, np.hstack([ordinary, np.ones((5, 1), np.float32)]) @ model.weights_)


# The vote counts only each row's k codes ------------------------------------------------------------


def test_vote_numpy_reference_has_no_class_table(rng):
    """Many classes (one per training row: identification) make no (n, n_classes) count table."""
    codes = rng.integers(0, 100_000, size=(100, 3))
    codes[::2, 2] = codes[::2, 1]  # every other row has a majority
    tracemalloc.start()
    try:
        out = majority_vote(codes, 100_000, backend="numpy")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20
    np.testing.assert_array_equal(out, mode(codes, axis=1, keepdims=False).mode)


def test_vote_numba_allocates_per_thread_not_per_row(rng):
    """The Numba kernel's counters are one array per thread, not one per row."""
    skip_unless_available("numba")
    nrt = pytest.importorskip("numba.core.runtime._nrt_python")  # numba's own counters
    from numba.core.runtime import rtsys

    codes = rng.integers(0, 1000, size=(400, 5))
    majority_vote(codes, 1000, backend="numba")  # compiled first
    enabled = nrt.memsys_stats_enabled()
    nrt.memsys_enable_stats()
    try:
        before = rtsys.get_allocation_stats().alloc
        out = majority_vote(codes, 1000, backend="numba")
        allocations = rtsys.get_allocation_stats().alloc - before
    finally:
        if not enabled:
            nrt.memsys_disable_stats()
    assert allocations <= 2 * fastdl.get_num_threads() + 8
    np.testing.assert_array_equal(out, mode(codes, axis=1, keepdims=False).mode)


@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_vote_many_classes_all_backends(backend, rng, n_threads):
    codes = rng.integers(0, 50_000, size=(301, 4))
    codes[::3, 3] = codes[::3, 0]
    codes[1::3, 2:] = codes[1::3, :2]  # 2-2 ties: the smaller code
    before = fastdl.get_num_threads()
    try:
        fastdl.set_num_threads(n_threads)
        out = majority_vote(codes, 50_000, backend=backend)
    finally:
        fastdl.set_num_threads(before)
    np.testing.assert_array_equal(out, mode(codes, axis=1, keepdims=False).mode)


# Clock times: 64-bit integers reduced exactly -------------------------------------------------------


def _dial_error(hours_a, minutes_a, hours_b, minutes_b):
    """The common-sense error of two integer times, in Python's exact integers."""
    difference = ((hours_a * 60 + minutes_a) - (hours_b * 60 + minutes_b)) % 720
    return min(difference, 720 - difference)


@pytest.mark.parametrize("int_dtype", [np.int64, np.uint64])
def test_common_sense_errors_of_64_bit_integer_times(int_dtype):
    big = [2**62 + 3, 2**63 - 1, 2**53 + 1] + ([2**64 - 1] if int_dtype == np.uint64 else [-(2**62) - 3])
    rows = [[h, m] for h in big for m in (0, 7, 2**61 + 5)]
    got = common_sense_errors(np.array(rows, dtype=int_dtype), [[3, 10]] * len(rows))
    np.testing.assert_array_equal(got, [_dial_error(h, m, 3, 10) for h, m in rows])


def test_hours_to_hm_of_64_bit_integer_hours():
    hours = np.array([2**62 + 3, -(2**62) - 3, 2**63 - 1], dtype=np.int64)
    np.testing.assert_array_equal(hours_to_hm(hours), [[h % 12, 0.0] for h in hours.tolist()])
    np.testing.assert_array_equal(hours_to_hm(np.array([2**64 - 1], dtype=np.uint64)), [[3.0, 0.0]])


# fastdl.xor: bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("z, error", [(-1.96, ValueError), (0.0, ValueError), (float("nan"), ValueError),
                                      (float("inf"), ValueError), (1e308, ValueError), ("95%", TypeError),
                                      (True, TypeError)])
def test_lazy_search_stats_checks_confidence_z(z, error):
    with pytest.raises(error, match="confidence_z"):
        lazy_search_stats([4, 5], confidence_z=z)


def test_lazy_search_stats_interval_is_ordered():
    stats = lazy_search_stats([4, 5], confidence_z=np.float32(2.5))
    assert 0.0 < stats["p_low"] < stats["p"] < stats["p_high"] < 1.0


def test_train_xor_refuses_to_go_non_finite(backend):
    """float32 weights overflow at this lr: an error naming lr, not NaN weights reported as a
    descent stuck at 2 misclassified points."""
    weights = draw_weights(1, seed=3)[0].astype(np.float32)
    with np.errstate(all="ignore"), pytest.raises(NonFiniteError, match="lr=1e\\+300"):
        train_xor(weights, 1e300, 10, backend=backend)


@pytest.mark.parametrize("n_features", [2, 64], ids=["kd-tree", "gemm"])
def test_knn_pickles_its_rows_only(backend, dtype, rng, n_features):
    # The pickle held the index's scaled rows, norms and projection (1.65x the rows on the course
    # digits), and after a float64 query of a float32 fit the float64 index too (5.6x).
    X = rng.random((2000, n_features)).astype(dtype)
    y = rng.integers(0, 5, len(X))
    queries = rng.random((300, n_features))
    for model in (KNeighborsClassifier(3, backend=backend).fit(X, y), NearestCentroid(backend=backend).fit(X, y)):
        expected = model.predict(queries)  # float64 queries: a float64 index of float32 rows
        data = pickle.dumps(model)
        assert len(data) < X.nbytes + y.nbytes + 20_000
        restored = pickle.loads(data)
        np.testing.assert_array_equal(restored.predict(queries), expected)
        np.testing.assert_array_equal(restored.predict(queries.astype(dtype)), model.predict(queries.astype(dtype)))


def test_nearest_centroid_refuses_one_class_as_sklearn():
    X = np.arange(8.0).reshape(4, 2)
    with pytest.raises(ValueError, match="NearestCentroid needs at least two classes, got one class: 'a'"):
        NearestCentroid().fit(X, ["a"] * 4)
    assert NearestCentroid().fit(X, [0, 0, 1, 1]).predict(X[:1]) == [0]


def test_confusion_matrix_refuses_codes_outside_its_classes():
    from fastdl.repro.report import confusion_matrix

    np.testing.assert_array_equal(confusion_matrix([0, 2, 2], [0, 1, 2], 3), [[1, 0, 0], [0, 0, 0], [0, 1, 1]])
    np.testing.assert_array_equal(confusion_matrix(np.array([0, 2], np.int64), np.array([0, 1], np.uint64), 3),
                                  [[1, 0, 0], [0, 0, 0], [0, 1, 0]])
    with pytest.raises(ValueError, match=r"y_pred holds codes 0\.\.3, outside 0\.\.2"):
        confusion_matrix([0, 1, 2, 2], [0, 3, 2, 1], 3)
    with pytest.raises(ValueError, match="y_true must be 1-D integer class codes"):
        confusion_matrix([0.9, 1.0], [0, 1], 2)
