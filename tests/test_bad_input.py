"""Bad and awkward input: clear ValueError/TypeError before any compiled code runs, and arrays in
unusual layouts, byte orders or integer dtypes giving the same answers as clean float copies."""

import warnings

import numpy as np
import pytest

from fastdl.neighbors import KNeighborsClassifier, NearestCentroid
from fastdl.ops import class_centroids, knn, majority_vote, pairwise_distances

GOOD = np.arange(12, dtype=np.float64).reshape(4, 3) / 7.0
LABELS = np.array([0, 1, 0, 1])

# Each entry puts `bad` in one matrix argument of one op, keeping the others valid.
MATRIX_ARGS = {
    "pairwise-A": lambda bad, b: pairwise_distances(bad, GOOD, backend=b),
    "pairwise-B": lambda bad, b: pairwise_distances(GOOD, bad, backend=b),
    "pairwise-self": lambda bad, b: pairwise_distances(bad, backend=b),
    "knn-query": lambda bad, b: knn(bad, GOOD, 1, backend=b),
    "knn-ref": lambda bad, b: knn(GOOD, bad, 1, backend=b),
    "centroids-X": lambda bad, b: class_centroids(bad, np.zeros(_n_rows(bad), dtype=int), backend=b),
}


def _n_rows(bad):
    try:
        return len(bad)
    except TypeError:  # scalars and None: the labels only need to be valid on their own
        return 1


NAME_IN_MESSAGE = {"pairwise-A": "A", "pairwise-B": "B", "pairwise-self": "A", "knn-query": "X_query",
                   "knn-ref": "X_ref", "centroids-X": "X"}


def _nonfinite(value):
    bad = GOOD.copy()
    bad[1, 2] = value
    return bad


@pytest.fixture(params=list(MATRIX_ARGS))
def op(request):
    return request.param


# Shapes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.zeros(3), np.zeros((2, 3, 1)), np.float64(1.0)], ids=["1d", "3d", "0d"])
def test_wrong_dimensionality(backend, op, bad):
    with pytest.raises(ValueError, match=rf"{NAME_IN_MESSAGE[op]} must be 2-D.*{re_shape(bad.shape)}"):
        MATRIX_ARGS[op](bad, backend)


@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (0, 0)])
def test_empty_arrays(backend, op, shape):
    with pytest.raises(ValueError, match=rf"must not be empty.*{re_shape(shape)}"):
        MATRIX_ARGS[op](np.zeros(shape), backend)


def test_mismatched_feature_counts(backend):
    A, B = np.zeros((3, 2)), np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"same number of features.*\(3, 2\).*\(4, 3\)"):
        pairwise_distances(A, B, backend=backend)
    with pytest.raises(ValueError, match=r"same number of features.*X_query \(3, 2\).*X_ref \(4, 3\)"):
        knn(A, B, 1, backend=backend)


def test_mismatched_sample_counts(backend):
    with pytest.raises(ValueError, match="3 labels but X has 4 samples"):
        class_centroids(GOOD, [0, 1, 0], backend=backend)
    for estimator in (KNeighborsClassifier(backend=backend), NearestCentroid(backend=backend)):
        with pytest.raises(ValueError, match=r"\[4, 3\]"):
            estimator.fit(GOOD, [0, 1, 0])


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_nonfinite_values(backend, op, value):
    with pytest.raises(ValueError, match=f"{NAME_IN_MESSAGE[op]} contains NaN or infinity"):
        MATRIX_ARGS[op](_nonfinite(value), backend)


@pytest.mark.parametrize("value", [np.nan, np.inf], ids=["nan", "inf"])
def test_nonfinite_values_in_estimators(backend, value):
    for estimator in (KNeighborsClassifier(n_neighbors=1, backend=backend), NearestCentroid(backend=backend)):
        with pytest.raises(ValueError, match="NaN|infinity"):
            estimator.fit(_nonfinite(value), LABELS)
        estimator.fit(GOOD, LABELS)
        with pytest.raises(ValueError, match="NaN|infinity"):
            estimator.predict(_nonfinite(value))


# k ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [0, -1, 5, 100])
def test_k_out_of_range(backend, k):
    with pytest.raises(ValueError, match=rf"k must be between 1 and 4, got {k}"):
        knn(GOOD, GOOD, k, backend=backend)


@pytest.mark.parametrize("k", [2.0, 1.5, "2", None, True, np.array([2])], ids=repr)
def test_k_not_an_integer(backend, k):
    with pytest.raises(TypeError, match="k must be an integer"):
        knn(GOOD, GOOD, k, backend=backend)


def test_k_numpy_integer_accepted(backend):
    _, indices = knn(GOOD, GOOD, np.int32(2), backend=backend)
    assert indices.shape == (4, 2)


# Labels and class codes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "labels, error, message",
    [
        ([0, 1.5, 0, 1], ValueError, "integer class codes"),
        ([0, np.nan, 0, 1], ValueError, "integer class codes"),
        (["a", "b", "a", "b"], TypeError, "integer class codes"),
        ([0, -1, 0, 1], ValueError, "class codes >= 0, got -1"),
        ([[0, 1], [0, 1]], ValueError, r"1-D, got shape \(2, 2\)"),
    ],
    ids=["float", "nan", "strings", "negative", "2d"],
)
def test_bad_class_codes(backend, labels, error, message):
    with pytest.raises(error, match=message):
        class_centroids(GOOD, np.array(labels, dtype=object if isinstance(labels[0], str) else None),
                        backend=backend)


def test_class_code_outside_n_classes(backend):
    with pytest.raises(ValueError, match=r"class code 3, outside 0..1"):
        class_centroids(GOOD, [0, 1, 3, 1], n_classes=2, backend=backend)


def test_class_without_samples(backend):
    with pytest.raises(ValueError, match=r"classes \[1, 3\] have no samples"):
        class_centroids(GOOD, [0, 2, 0, 2], n_classes=4, backend=backend)


@pytest.mark.parametrize(
    "codes, n_classes, error, message",
    [
        ([[0, 3]], 3, ValueError, "class code 3, outside 0..2"),  # would index past the counts
        ([[0, -1]], 3, ValueError, "class codes >= 0, got -1"),
        ([[0, 1.5]], 3, ValueError, "integer class codes"),
        ([0, 1], 3, ValueError, r"2-D \(n_samples, k\).*\(2,\)"),
        (np.zeros((3, 0), dtype=int), 3, ValueError, r"k >= 1, got shape \(3, 0\)"),
        ([[0, 1]], 0, ValueError, "n_classes must be >= 1, got 0"),
        ([[0, 1]], 2.0, TypeError, "n_classes must be an integer"),
    ],
    ids=["too-large", "negative", "float", "1d", "k0", "n_classes0", "n_classes-float"],
)
def test_bad_vote_input(backend, codes, n_classes, error, message):
    with pytest.raises(error, match=message):
        majority_vote(np.asarray(codes), n_classes, backend=backend)


def test_estimators_reject_continuous_labels(backend):
    for estimator in (KNeighborsClassifier(backend=backend), NearestCentroid(backend=backend)):
        with pytest.raises(ValueError, match="continuous"):
            estimator.fit(GOOD, [0.5, 1.5, 0.25, 1.0])


# dtypes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        np.array([["a", "b"], ["c", "d"]]),
        np.array([[1.0, 2.0], [3.0, 4.0]], dtype=object),
        np.array([[1 + 2j, 0j]]),
        [[1.0, 2.0], [3.0]],  # ragged
        None,
        "text",
    ],
    ids=["str", "object", "complex", "ragged", "none", "string-scalar"],
)
def test_non_numeric_input_is_type_error(backend, op, bad):
    if bad is None and op == "pairwise-B":
        pytest.skip("B=None means B=A")
    with pytest.raises(TypeError, match=NAME_IN_MESSAGE[op]):
        MATRIX_ARGS[op](bad, backend)


def test_estimators_reject_strings(backend):
    X = np.array([["a", "b"], ["c", "d"]])
    for estimator in (KNeighborsClassifier(n_neighbors=1, backend=backend), NearestCentroid(backend=backend)):
        with pytest.raises((TypeError, ValueError)):
            estimator.fit(X, [0, 1])


def test_uint8_no_wraparound(backend):
    """0 - 255 must not wrap to 1 in uint8: the answer equals the float64 one."""
    A = np.array([[0, 255, 7], [255, 0, 200], [3, 3, 3]], dtype=np.uint8)
    B = np.array([[255, 0, 0], [0, 0, 0]], dtype=np.uint8)
    A64, B64 = A.astype(np.float64), B.astype(np.float64)
    out = pairwise_distances(A, B, backend=backend)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, pairwise_distances(A64, B64, backend=backend), rtol=1e-12)
    np.testing.assert_allclose(out[0, 0], np.sqrt(255**2 * 2 + 49), rtol=1e-12)
    np.testing.assert_allclose(pairwise_distances(A, B, squared=True, backend=backend)[1, 1], 255**2 + 200**2,
                               rtol=1e-12)
    d, i = knn(A, B, 2, backend=backend)
    d64, i64 = knn(A64, B64, 2, backend=backend)
    np.testing.assert_array_equal(i, i64)
    np.testing.assert_allclose(d, d64, rtol=1e-12)


def test_small_signed_ints_and_bools(backend):
    A = np.array([[-128, 127], [0, 1]], dtype=np.int8)
    np.testing.assert_allclose(pairwise_distances(A, backend=backend)[0, 1], np.hypot(128, 126), rtol=1e-12)
    Z = np.array([[True, False], [False, True]])
    np.testing.assert_allclose(pairwise_distances(Z, backend=backend), [[0, np.sqrt(2)], [np.sqrt(2), 0]])


# Layouts and byte orders ------------------------------------------------------------------------


def _readonly(X):
    X = X.copy()
    X.flags.writeable = False
    return X


def _strided(X):
    if X.ndim == 1:
        wide = np.zeros(X.shape[0] * 2, dtype=X.dtype)
        wide[::2] = X
        return wide[::2]
    wide = np.zeros((X.shape[0] * 2, X.shape[1] * 3), dtype=X.dtype)
    wide[::2, ::3] = X
    view = wide[::2, ::3]
    assert not view.flags.c_contiguous
    return view


def _fortran(X):
    return np.asfortranarray(X)


def _big_endian(X):
    return X.astype(X.dtype.newbyteorder(">"))


def _all_at_once(X):
    out = _big_endian(_strided(np.asfortranarray(X)))
    out = np.asfortranarray(out)
    out.flags.writeable = False
    return out


LAYOUTS = {"readonly": _readonly, "strided": _strided, "fortran": _fortran, "big-endian": _big_endian,
           "all": _all_at_once}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layouts_give_the_clean_answer(backend, dtype, rng, layout):
    make = LAYOUTS[layout]
    A = rng.normal(size=(7, 4)).astype(dtype)
    B = rng.normal(size=(9, 4)).astype(dtype)
    y = np.arange(7) % 3
    tol = dict(rtol=1e-12 if dtype == np.float64 else 1e-6, atol=1e-12 if dtype == np.float64 else 1e-6)
    A2, B2 = make(A), make(B)
    np.testing.assert_allclose(pairwise_distances(A2, B2, backend=backend),
                               pairwise_distances(A, B, backend=backend), **tol)
    d2, i2 = knn(A2, B2, 3, backend=backend)
    d, i = knn(A, B, 3, backend=backend)
    np.testing.assert_array_equal(i2, i)
    np.testing.assert_allclose(d2, d, **tol)
    np.testing.assert_allclose(class_centroids(A2, make(y), backend=backend),
                               class_centroids(A, y, backend=backend), **tol)
    codes = rng.integers(0, 3, size=(6, 4))
    np.testing.assert_array_equal(majority_vote(make(codes), 3, backend=backend),
                                  majority_vote(codes, 3, backend=backend))
    for estimator in (KNeighborsClassifier(n_neighbors=3, backend=backend), NearestCentroid(backend=backend)):
        np.testing.assert_array_equal(estimator.fit(A2, make(y)).predict(B2), estimator.fit(A, y).predict(B))


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layouts_keep_the_output_dtype(backend, dtype, rng, layout):
    A = LAYOUTS[layout](rng.normal(size=(5, 3)).astype(dtype))
    assert pairwise_distances(A, backend=backend).dtype == dtype
    assert knn(A, A, 2, backend=backend)[0].dtype == dtype
    assert class_centroids(A, [0, 1, 0, 1, 0], backend=backend).dtype == dtype


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix's own
def test_numpy_matrix_input(backend, dtype, rng):
    """np.matrix stays 2-D when raveled: it is taken as a plain array, with the plain answer."""
    A = rng.normal(size=(7, 4)).astype(dtype)
    B = rng.normal(size=(9, 4)).astype(dtype)
    np.testing.assert_array_equal(pairwise_distances(np.asmatrix(A), np.asmatrix(B), backend=backend),
                                  pairwise_distances(A, B, backend=backend))
    for got, want in zip(knn(np.asmatrix(A), np.asmatrix(B), 3, backend=backend), knn(A, B, 3, backend=backend)):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(class_centroids(np.asmatrix(A), np.arange(7) % 3, backend=backend),
                                  class_centroids(A, np.arange(7) % 3, backend=backend))


def test_uint64_class_codes_past_int64_are_reported_as_given(backend):
    """Checked before the int64 conversion, which would wrap 2**63 + 5 around to a negative code."""
    codes = np.array([[0, 2**63 + 5]], dtype=np.uint64)
    with pytest.raises(ValueError, match="class code 9223372036854775813, outside 0..2"):
        majority_vote(codes, 3, backend=backend)
    with pytest.raises(ValueError, match="class code 9223372036854775813, beyond int64"):
        majority_vote(codes, None, backend=backend)
    with pytest.raises(ValueError, match="class code 9223372036854775813"):
        class_centroids(GOOD[:2], codes[0], backend=backend)


# Extreme magnitudes -----------------------------------------------------------------------------


def test_knn_subnormal_data(backend):
    # A power-of-two scale lifts subnormal values into range, so the ranking and distances survive.
    X_ref = np.array([[1e-310], [-3e-310], [2e-310]])
    distances, indices = knn(np.zeros((1, 1)), X_ref, 3, backend=backend)
    np.testing.assert_array_equal(indices, [[0, 2, 1]])
    np.testing.assert_allclose(distances, [[1e-310, 2e-310, 3e-310]], rtol=1e-6)


def test_knn_huge_finite_values(backend):
    X_ref = np.array([[1e160], [-3e160], [2e160]])
    distances, indices = knn(np.zeros((1, 1)), X_ref, 3, backend=backend)
    np.testing.assert_array_equal(indices, [[0, 2, 1]])
    np.testing.assert_allclose(distances, [[1e160, 2e160, 3e160]], rtol=1e-12)


def test_pairwise_huge_finite_values_give_no_nan(backend):
    X = np.array([[1e160], [-1e160], [3e160]])
    out = pairwise_distances(X, backend=backend)
    np.testing.assert_allclose(out, [[0, 2e160, 2e160], [2e160, 0, 4e160], [2e160, 4e160, 0]], rtol=1e-12)


def test_pairwise_subnormal_values_keep_their_distances(backend):
    X = np.array([[1e-310], [-1e-310], [3e-310]])
    out = pairwise_distances(X, backend=backend)
    np.testing.assert_allclose(out, [[0, 2e-310, 2e-310], [2e-310, 0, 4e-310], [2e-310, 4e-310, 0]], rtol=1e-6)


def test_no_negative_or_nan_for_large_but_safe_values(backend, dtype, rng):
    X = (rng.normal(size=(6, 3)) * 1e15).astype(dtype)
    sq = pairwise_distances(X, squared=True, backend=backend)
    assert np.isfinite(sq).all() and (sq >= 0).all()


def _near_float_max(dtype):
    """Rows at 0.6, 0.5 and -0.6 times the dtype's largest value: in float64 their column sum
    overflows, and in either dtype the distances from the last row to the others do."""
    return (np.array([[0.6], [0.5], [-0.6]]) * np.finfo(dtype).max).astype(dtype)


def test_pairwise_near_float_max_is_exact_or_inf(backend, dtype):
    X = _near_float_max(dtype)
    near = float(X[0, 0]) - float(X[1, 0])  # exact in float64
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NaN, and no overflow warning from any backend
        out = pairwise_distances(X, backend=backend)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, [[0, near, np.inf], [near, 0, np.inf], [np.inf, np.inf, 0]], rtol=1e-6)


def test_knn_near_float_max_ranks_overflowing_distances(backend, dtype):
    """Distances beyond the dtype's range are inf, and still ranked by their true size."""
    X = _near_float_max(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        distances, indices = knn(X, X, 3, backend=backend)
    np.testing.assert_array_equal(indices, [[0, 1, 2], [1, 0, 2], [2, 1, 0]])
    assert distances.dtype == dtype and np.isinf(distances[:, 2]).all() and np.isinf(distances[2, 1])
    np.testing.assert_allclose(distances[:2, 1], float(X[0, 0]) - float(X[1, 0]), rtol=1e-6)


def test_estimators_near_float64_max(backend):
    """The bug-hunt's case: mean rows overflowed, so an index and the class centroids held NaN/inf."""
    X = np.array([[1e308], [1.5e308], [-1e308], [-1.5e308]])
    query = np.array([[1.6e308], [-1.6e308], [1e300]])
    knn_clf = KNeighborsClassifier(n_neighbors=1, backend=backend).fit(X, [0, 0, 1, 1])
    np.testing.assert_array_equal(knn_clf.predict(query), [0, 1, 0])
    _, indices = knn_clf.kneighbors(query, n_neighbors=4)
    np.testing.assert_array_equal(indices, [[1, 0, 2, 3], [3, 2, 0, 1], [0, 2, 1, 3]])
    centroid = NearestCentroid(backend=backend).fit(X, [0, 0, 1, 1])
    np.testing.assert_allclose(centroid.centroids_, [[1.25e308], [-1.25e308]], rtol=1e-15)
    np.testing.assert_array_equal(centroid.predict(query), [0, 1, 0])


def re_shape(shape):
    """A regex matching a shape tuple as Python prints it."""
    return "\\(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + "\\)"


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, ">f8"])
def test_all_finite_finds_every_nonfinite_value(dtype):
    """all_finite's dot product overflows on huge finite values: it then looks again, exactly."""
    from fastdl._validation import all_finite

    huge = np.finfo(np.dtype(dtype)).max / 2
    values = np.linspace(-1, 1, 101).astype(dtype)
    assert all_finite(values) and all_finite(values[:0]) and all_finite(values[::3])
    for value in (np.nan, np.inf, -np.inf):
        for at in (0, 50, 100):
            bad = values.copy()
            bad[at] = value
            assert not all_finite(bad) and not all_finite(bad.reshape(1, 101))
    big = values.copy()
    big[7] = huge
    assert all_finite(big)
    big[8] = np.nan
    assert not all_finite(big)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_finite_never_lets_blas_thread_its_dot(dtype, monkeypatch):
    """A BLAS-threaded dot leaves threads spinning on the cores the next op needs. An array past
    _ISFINITE_BYTES (here every array) is looked at by dots on fastdl's threads (here forced with
    little work), with BLAS held to one thread. The answer is np.isfinite's."""
    import fastdl
    from fastdl import _parallel, _validation
    from fastdl._validation import all_finite

    calls = []
    dot = np.dot

    def watched(a, b, *args, **kwargs):
        calls.append((a.size, _parallel.blas_held()))
        return dot(a, b, *args, **kwargs)

    fastdl.set_num_threads(2)
    values = np.linspace(-1, 1, 30_001).astype(dtype)
    monkeypatch.setattr(_validation, "_ISFINITE_BYTES", 0)
    monkeypatch.setattr(_parallel, "MIN_WORK_PER_THREAD", 1000)
    monkeypatch.setattr(np, "dot", watched)
    assert all_finite(values) and all_finite(np.stack([values, values], axis=1)[:, 1])
    for value in (np.nan, np.inf, -np.inf):
        for at in (0, 15_000, 30_000):
            bad = values.copy()
            bad[at] = value
            assert not all_finite(bad)
    big = values.copy()
    big[[3, 29_000]] = np.finfo(dtype).max / 2  # the squares overflow: looked at again
    assert all_finite(big)
    monkeypatch.undo()
    assert calls and all(held for _, held in calls)


def _on_device(array):
    """array as a numba device array (the simulator's where no GPU is present: see conftest)."""
    from conftest import skip_unless_available

    skip_unless_available("cuda")
    from numba import cuda

    return cuda.to_device(np.ascontiguousarray(array))


@pytest.mark.parametrize("op", MATRIX_ARGS)
def test_device_arrays_are_refused_on_cpu_backends(backend, op):
    """numba's device arrays convert to NumPy when asked: a CPU backend must not copy one to the
    host behind the caller's back (and answer NumPy where the cuda backend answers device arrays)."""
    with pytest.raises(TypeError, match=f"^{NAME_IN_MESSAGE[op]} is a device array .*backend='cuda'"):
        MATRIX_ARGS[op](_on_device(GOOD), backend)


def test_device_labels_are_refused_on_cpu_backends(backend):
    with pytest.raises(TypeError, match="^y is a device array"):
        class_centroids(GOOD, _on_device(LABELS), backend=backend)


def test_estimators_refuse_device_arrays_on_cpu_backends(backend):
    from fastdl.linear import MultiClassPerceptron

    for estimator in (KNeighborsClassifier(n_neighbors=1, backend=backend), NearestCentroid(backend=backend),
                      MultiClassPerceptron(max_epochs=1, backend=backend)):
        with pytest.raises(TypeError, match="^X is a device array .*backend='cuda'"):
            estimator.fit(_on_device(GOOD), LABELS)
        with pytest.raises(TypeError, match="^y is a device array .*backend='cuda'"):
            estimator.fit(GOOD, _on_device(LABELS))
        estimator.fit(GOOD, LABELS)
        with pytest.raises(TypeError, match="device array|host"):
            estimator.predict(_on_device(GOOD))
