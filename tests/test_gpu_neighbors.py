"""Distances, k nearest neighbours and the neighbour classifiers on the cuda backend against the
numpy reference (numba's CUDA simulator where no device is present: tiny shapes)."""

import numpy as np
import pytest

import fastdl
import naive
from conftest import RTOL
from fastdl.neighbors import KNeighborsClassifier, NearestCentroid
from fastdl.ops import class_centroids, knn, majority_vote, pairwise_distances
from test_knn import far_and_near

pytestmark = pytest.mark.cuda


def _device(array):
    from numba import cuda

    return cuda.to_device(array)


def _host(array):
    return array.copy_to_host() if hasattr(array, "copy_to_host") else np.asarray(array)


@pytest.mark.parametrize("offset", [0.0, 1e6], ids=["centred", "offset 1e6"])
@pytest.mark.parametrize("squared", [False, True])
def test_pairwise_distances(cuda_backend, cuda_scale, dtype, squared, offset):
    rng = np.random.default_rng(1)
    A = (rng.normal(size=(5 * cuda_scale, 6)) + offset).astype(dtype)
    B = (rng.normal(size=(7 * cuda_scale, 6)) + offset).astype(dtype)
    A[1] = B[2]  # a zero distance, which the GEMM formula alone would get wrong
    for args in ((A, B), (A,)):
        got = pairwise_distances(*args, squared=squared, backend=cuda_backend)
        want = pairwise_distances(*(a.astype(np.float64) for a in args), squared=squared, backend="numpy")
        assert type(got) is np.ndarray and got.dtype == dtype and got.shape == want.shape
        scale = np.abs(want).max()
        np.testing.assert_allclose(got, want, rtol=RTOL[dtype] * 10, atol=RTOL[dtype] * 10 * scale)
        assert (got >= 0).all()
    assert pairwise_distances(A, B, backend=cuda_backend)[1, 2] == 0


def test_device_arrays_in_device_arrays_out(cuda_backend, rng):
    A, B = rng.normal(size=(4, 3)), rng.normal(size=(5, 3))
    out = pairwise_distances(_device(A), _device(B), backend=cuda_backend)
    assert not isinstance(out, np.ndarray)
    np.testing.assert_allclose(_host(out), pairwise_distances(A, B, backend="numpy"), rtol=1e-12)
    distances, indices = knn(_device(A), _device(B), 2, backend=cuda_backend)
    expected = knn(A, B, 2, backend="numpy")
    np.testing.assert_array_equal(_host(indices), expected[1])
    np.testing.assert_allclose(_host(distances), expected[0], rtol=1e-12)


def test_knn_ties_and_every_k(cuda_backend, cuda_scale, dtype):
    rng = np.random.default_rng(2)
    X_ref = rng.normal(size=(8 * cuda_scale, 4)).astype(dtype)
    X_ref[5] = X_ref[1]  # an exact tie: the lower index comes first
    X_query = np.vstack([X_ref[:3], rng.normal(size=(3, 4)).astype(dtype)])
    for k in (1, 3, X_ref.shape[0]):
        distances, indices = knn(X_query, X_ref, k, backend=cuda_backend)
        want_d, want_i = knn(X_query, X_ref, k, backend="numpy")
        assert distances.dtype == dtype and indices.dtype == np.int64
        np.testing.assert_array_equal(indices, want_i)
        np.testing.assert_allclose(distances, want_d, rtol=RTOL[dtype], atol=RTOL[dtype])
    assert knn(X_ref[1:2], X_ref, 2, backend=cuda_backend)[1].tolist() == [[1, 5]]


def test_knn_ranks_by_exact_distances(cuda_backend, dtype):
    """Candidates from the GEMM, ranked by exact distances from the rows as given, as on the CPU:
    GEMM distances of shifted rows ordered an exact tie by the higher index, and a near tie far
    from the references' mean wrongly."""
    X_ref = np.array([[0.0, -1.0], [3.0, -1.0], [1.0, -1.0], [0.0, 3.0], [-2.0, 1.0], [-1.0, 1.0]], dtype=dtype)
    X_query = np.array([[2.0, -1.0]], dtype=dtype)  # rows 1 and 2 both at distance exactly 1
    distances, indices = knn(X_query, X_ref, 2, backend=cuda_backend)
    np.testing.assert_array_equal(indices, [[1, 2]])
    np.testing.assert_array_equal(distances, [[1.0, 1.0]])
    classifier = KNeighborsClassifier(n_neighbors=1, backend=cuda_backend).fit(X_ref, [0, 1, 2, 0, 0, 0])
    np.testing.assert_array_equal(classifier.predict(X_query), [1])
    X_ref = np.array([[2e9], [0.0], [1.0], [1.0 + 2e-6]], dtype=dtype)
    X_query = np.array([[1.0 + 1.03e-6]], dtype=dtype)
    distances, indices = knn(X_query, X_ref, 3, backend=cuda_backend)
    want_d, want_i = knn(X_query, X_ref, 3, backend="numpy")
    np.testing.assert_array_equal(indices, want_i)
    np.testing.assert_array_equal(distances, want_d)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the simulator's NumPy scalars
@pytest.mark.parametrize("case", ["huge", "tiny"])
def test_small_distances_beside_a_far_row(cuda_backend, dtype, case):
    """As tests/test_knn.py and test_distance.py's tests of that name: each refined or ranked pair at
    its own scale, from the rows as given."""
    X_ref, X_query = far_and_near(dtype, case)
    distances, indices = knn(X_query, X_ref, 2, backend=cuda_backend)
    np.testing.assert_array_equal(indices, [[2, 1]])
    expected = np.abs(X_query.astype(np.float64) - X_ref.astype(np.float64).T)
    np.testing.assert_allclose(distances[0], expected[0, [2, 1]], rtol=np.finfo(dtype).eps)
    got = pairwise_distances(X_query, X_ref, backend=cuda_backend)
    np.testing.assert_allclose(got, expected.astype(dtype), rtol=2 * np.finfo(dtype).eps)
    big = np.finfo(dtype).max
    X = np.array([[-0.8 * big, 0.0], [0.6 * big, 1.0], [0.6 * big, 2.0]], dtype=dtype)
    assert pairwise_distances(X, backend=cuda_backend)[1, 2] == 1.0


def test_near_rows_far_from_the_mean_keep_their_digits(cuda_backend, dtype):
    """The refined entry comes from the rows as given, not their shifted copies (as on the CPU)."""
    far, offset = {np.float32: (1000.0, 1e-3), np.float64: (2e9, 1e-6)}[dtype]
    B = np.array([[far], [0.0], [1.0]], dtype=dtype)
    A = np.array([[1.0 + offset]], dtype=dtype)
    got = pairwise_distances(A, B, backend=cuda_backend)
    np.testing.assert_allclose(got[0, 2], float(A[0, 0]) - 1.0, rtol=2 * np.finfo(dtype).eps)


def test_classifiers_take_numpy_arrays_as_scikit_learn_estimators(cuda_backend, rng):
    """A device array is refused, never copied to the host behind the caller's back (numba's would
    allow it; CuPy's would fail inside scikit-learn's checks)."""
    X = rng.normal(size=(6, 2))
    y = np.array([0, 1, 2, 0, 1, 2])
    for estimator in (KNeighborsClassifier(n_neighbors=1, backend=cuda_backend), NearestCentroid(backend=cuda_backend)):
        name = type(estimator).__name__
        with pytest.raises(TypeError, match=f"^X is a device array .* but {name} takes NumPy arrays"):
            estimator.fit(_device(X), y)
        with pytest.raises(TypeError, match=f"^y is a device array .* but {name} takes NumPy arrays"):
            estimator.fit(X, _device(y))
        estimator.fit(X, y)
        with pytest.raises(TypeError, match=f"^X is a device array .* but {name} takes NumPy arrays"):
            estimator.predict(_device(X))


def test_classifiers_and_their_ops(cuda_backend, cuda_scale, rng):
    X = rng.normal(size=(20 * cuda_scale, 5))
    y = rng.integers(0, 3, size=X.shape[0])
    for estimator in (KNeighborsClassifier(n_neighbors=3, backend=cuda_backend), NearestCentroid(backend=cuda_backend)):
        reference = type(estimator)(backend="numpy").fit(X, y)
        np.testing.assert_array_equal(estimator.fit(X, y).predict(X[:8]), reference.predict(X[:8]))
    np.testing.assert_allclose(class_centroids(X, y, backend=cuda_backend), class_centroids(X, y, backend="numpy"),
                               rtol=1e-13)
    votes = rng.integers(0, 4, size=(9, 4))
    votes[0] = [2, 1, 1, 2]  # a tie goes to the smaller code
    np.testing.assert_array_equal(majority_vote(votes, 4, backend=cuda_backend), majority_vote(votes, 4, backend="numpy"))
    with fastdl.use_backend(cuda_backend):
        np.testing.assert_allclose(pairwise_distances(X[:3]), pairwise_distances(X[:3], backend="numpy"), rtol=1e-12)


@pytest.mark.parametrize("n_features, n_classes", [(3, 7), (130, 3)], ids=["classes>features", "features>block"])
def test_class_centroids_cover_every_feature_and_class(cuda_backend, dtype, n_features, n_classes):
    """class_sums starts one thread per feature and per class code: more classes than features (the
    counts' threads beyond the features), and more features than one block of threads (128)."""
    rng = np.random.default_rng(4)
    n_samples = 2 * n_classes + 1
    X = rng.normal(size=(n_samples, n_features)).astype(dtype)
    y = np.arange(n_samples) % n_classes
    rng.shuffle(y)
    out = class_centroids(X, y, backend=cuda_backend)
    assert type(out) is np.ndarray and out.shape == (n_classes, n_features) and out.dtype == dtype
    np.testing.assert_allclose(out, naive.class_centroids(X, y), rtol=RTOL[dtype], atol=RTOL[dtype])


def test_bad_input_is_a_clear_error(cuda_backend):
    host = np.ones((3, 2))
    with pytest.raises(ValueError, match="B is a host array .* A is on the CUDA device|A is a host array"):
        pairwise_distances(_device(host), host, backend=cuda_backend)
    with pytest.raises(TypeError, match="float32 or float64"):
        pairwise_distances(_device(np.ones((3, 2), np.int64)), backend=cuda_backend)
    with pytest.raises(ValueError, match="2-D"):
        pairwise_distances(_device(np.ones(3)), backend=cuda_backend)
    bad = host.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        pairwise_distances(_device(bad), backend=cuda_backend)
    with pytest.raises(ValueError, match="NaN"):
        pairwise_distances(bad, backend=cuda_backend)
    with pytest.raises(ValueError, match="features"):
        pairwise_distances(np.ones((2, 3)), host, backend=cuda_backend)
    with pytest.raises(ValueError, match="k"):
        knn(host, host, 4, backend=cuda_backend)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the simulator's NumPy scalars
def test_values_near_float64_max(cuda_backend):
    """Column sums that overflow move the origin to the range's midpoint, as on the CPU: no NaN,
    and only distances beyond float64's range are inf; a NaN the minima skip is still caught."""
    X = np.array([[1e308, 0.0], [9e307, 1.0], [-1e308, 2.0]])
    for args in ((X,), (_device(X),)):
        got = _host(pairwise_distances(*args, backend=cuda_backend))
        np.testing.assert_allclose(got, pairwise_distances(X, backend="numpy"), rtol=1e-12)
        assert np.isinf(got[0, 2]) and np.isfinite(got[0, 1])
    queries = np.array([[1.6e308, 0.0], [-1.7e308, 0.0]])  # far enough that a shift by the mean overflows
    distances, indices = knn(queries, X[[0, 2]], 2, backend=cuda_backend)
    np.testing.assert_array_equal(indices, [[0, 1], [1, 0]])
    np.testing.assert_allclose(distances[:, 0], [6e307, 7e307], rtol=1e-12)
    assert np.isinf(distances[:, 1]).all()
    bad = X.copy()
    bad[1, 0] = np.nan  # behind row 0, so the minima and maxima pass over it; the sum overflows too
    with pytest.raises(ValueError, match="NaN"):
        pairwise_distances(_device(bad), backend=cuda_backend)


def test_knn_float32_distance_past_range_is_inf_without_a_warning(cuda_backend):
    # As on the CPU backends: the float64 ranking's distance rounds to inf, with no numpy warning.
    import warnings

    query, ref = np.array([[3e38, 0.0]], np.float32), np.array([[-3e38, 0.0], [0.0, 0.0]], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        distances, indices = knn(query, ref, 2, backend=cuda_backend)
    np.testing.assert_array_equal(indices, [[1, 0]])
    assert distances.dtype == np.float32 and distances[0, 0] == np.float32(3e38) and distances[0, 1] == np.inf
