"""kNN through the kd-tree (fastdl/ops/_kdtree.py): the GEMM path's answers, bit for bit.

On few features KnnIndex (and so fastdl.ops.knn and KNeighborsClassifier) searches a kd-tree on the
numba and cython backends. Its distances and indices must be exactly the GEMM path's (the same
exact float64 distances, ties to the lower index) and the naive ranking's. The thresholds are
lowered here so that small inputs take the tree.
"""

import numpy as np
import pytest

import naive
from conftest import RTOL, ready_backends
from fastdl import backend as fastdl_backend
from fastdl.neighbors import KNeighborsClassifier
from fastdl.ops import _kdtree, knn
from fastdl.ops._knn_index import FAR, KnnIndex

TREE_BACKENDS = ("numba", "cython")


@pytest.fixture
def small_trees(monkeypatch):
    """Every input with few enough features takes the tree, however few its rows and queries."""
    for name in ("MIN_REFS", "MIN_REFS_WIDE", "MIN_QUERIES"):
        monkeypatch.setattr(_kdtree, name, 1)


def _gemm_path(X_query, X_ref, k, backend):
    """fastdl.ops.knn's answer without the tree."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_kdtree, "MAX_FEATURES", 0)
        return knn(X_query, X_ref, k, backend=backend)


def _data(kind, rng, n_ref, n_query, n_features):
    """(X_ref, X_query) float64 of one kind: random, clustered, duplicate-heavy or an integer grid."""
    if kind == "random":
        rows = rng.normal(size=(n_ref + n_query, n_features))
    elif kind == "clustered":
        centres = rng.normal(scale=10.0, size=(4, n_features))
        rows = centres[rng.integers(0, 4, n_ref + n_query)] + 0.01 * rng.normal(size=(n_ref + n_query, n_features))
    elif kind == "duplicates":
        rows = rng.normal(size=(12, n_features))[rng.integers(0, 12, n_ref + n_query)]
    else:  # exact ties everywhere, across leaves
        rows = rng.integers(-3, 4, size=(n_ref + n_query, n_features)).astype(np.float64)
    return rows[:n_ref], rows[n_ref:]


def _check(X_query, X_ref, k, backend, dtype):
    """knn(...) against the naive ranking (indices exactly) and the GEMM path (bit for bit)."""
    X_query, X_ref = X_query.astype(dtype), X_ref.astype(dtype)
    distances, indices = knn(X_query, X_ref, k, backend=backend)
    expected_d, expected_i = naive.knn(X_query, X_ref, k)
    np.testing.assert_array_equal(indices, expected_i)
    np.testing.assert_allclose(distances, expected_d, rtol=RTOL[dtype], atol=RTOL[dtype])
    gemm_d, gemm_i = _gemm_path(X_query, X_ref, k, backend)
    np.testing.assert_array_equal(indices, gemm_i)
    np.testing.assert_array_equal(distances, gemm_d)
    assert distances.dtype == dtype
    return distances, indices


@pytest.mark.parametrize("kind", ["random", "clustered", "duplicates", "grid"])
@pytest.mark.parametrize("n_features", [2, 3, 5])
def test_one_off_knn_matches_naive_and_gemm_path(backend, dtype, rng, small_trees, kind, n_features):
    X_ref, X_query = _data(kind, rng, 300, 20, n_features)
    X_query = np.concatenate([X_query, X_ref[[0, 150, 299]]])  # queries on reference rows
    index = KnnIndex(X_ref.astype(dtype), backend)
    assert (index.tree is not None) == (backend in TREE_BACKENDS)
    for k in (1, 3, 300):
        _check(X_query, X_ref, k, backend, dtype)


def test_k_beyond_the_rows_is_refused(backend, small_trees):
    X = np.arange(10.0).reshape(5, 2)
    with pytest.raises(ValueError, match="k"):
        knn(X, X, 7, backend=backend)


@pytest.mark.parametrize("kind", ["clustered", "grid"])
def test_index_reuse_matches_naive(backend, dtype, rng, small_trees, kind):
    """One index, queried again with other rows and k; the classifier on top of it."""
    X_ref, X_query = (rows.astype(dtype) for rows in _data(kind, rng, 200, 30, 2))
    index = KnnIndex(X_ref, backend)
    for queries, k in ((X_query, 3), (X_query[:7], 200), (X_ref[::9], 1)):
        with fastdl_backend.use_backend(backend):
            distances, indices = index.query(np.ascontiguousarray(queries), k)
        expected_d, expected_i = naive.knn(queries, X_ref, k)
        np.testing.assert_array_equal(indices, expected_i)
        np.testing.assert_allclose(distances, expected_d, rtol=RTOL[dtype], atol=RTOL[dtype])
    labels = np.arange(200) % 3
    classifier = KNeighborsClassifier(n_neighbors=5, backend=backend).fit(X_ref, labels)
    np.testing.assert_array_equal(classifier.predict(X_query), naive.knn_classify(X_ref, labels, X_query, 5))
    _, indices = classifier.kneighbors(X_query, n_neighbors=4)
    np.testing.assert_array_equal(indices, naive.knn(X_query, X_ref, 4)[1])


@pytest.mark.parametrize("case", ["offset", "-offset", "huge", "tiny"])
def test_offsets_and_magnitudes(backend, dtype, rng, small_trees, case):
    """A 1e6 offset, and rows near the top or bottom of the dtype's range: exact float64 differences
    and box bounds with margins keep the tree's answers the GEMM path's."""
    X_ref, X_query = _data("random", rng, 150, 12, 3)
    # Powers of two, so that the naive ranking of the rows before scaling is exactly theirs.
    power = {np.float32: 100, np.float64: 660}[dtype]
    scale = {"huge": 2.0**power, "tiny": 2.0**-power}.get(case, 1.0)
    shift = {"offset": 1e6, "-offset": -1e6}.get(case, 0.0)
    X_ref, X_query = X_ref.astype(dtype), X_query.astype(dtype)  # as rounded, for the naive ranking
    naive_ref, naive_query = X_ref + dtype(shift), X_query + dtype(shift)
    X_ref, X_query = naive_ref * dtype(scale), naive_query * dtype(scale)
    assert (KnnIndex(X_ref, backend).tree is not None) == (backend in TREE_BACKENDS)
    for k in (1, 4):
        distances, indices = knn(X_query, X_ref, k, backend=backend)
        gemm_d, gemm_i = _gemm_path(X_query, X_ref, k, backend)
        np.testing.assert_array_equal(indices, gemm_i)
        np.testing.assert_array_equal(distances, gemm_d)
        np.testing.assert_array_equal(indices, naive.knn(naive_query, naive_ref, k)[1])


def test_near_ties_ranked_in_float64(backend, small_trees, rng):
    """Distances 1e-12 apart (relative), around a 1e3 offset: the pruning margin keeps them all."""
    directions = rng.normal(size=(120, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    X_ref = 1e3 + directions * (1.0 + 1e-12 * rng.permutation(120))[:, None]
    X_query = np.full((1, 3), 1e3)
    for k in (1, 5, 120):
        _, indices = knn(X_query, X_ref, k, backend=backend)
        np.testing.assert_array_equal(indices, naive.knn(X_query, X_ref, k)[1])


@pytest.mark.parametrize("backend_name", TREE_BACKENDS)
def test_rows_or_queries_the_tree_cannot_rank_go_to_the_gemm_path(small_trees, rng, backend_name):
    """Rows about 2**1000 apart (ranked scaled there), and non-finite rows or queries (KnnIndex
    taken directly), are left to the GEMM path; the others still use the tree."""
    if backend_name not in ready_backends():
        pytest.skip(f"backend {backend_name!r} is unavailable")
    assert KnnIndex(np.array([[-FAR], [0.0], [FAR]]), backend_name).tree is None
    X_ref = rng.normal(size=(100, 2))
    with_nan = X_ref.copy()
    with_nan[5, 1] = np.nan
    assert KnnIndex(with_nan, backend_name).tree is None
    index = KnnIndex(X_ref, backend_name)
    assert index.tree is not None and not index.gemm_ready  # the GEMM path's rows: made when needed
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_kdtree, "MAX_FEATURES", 0)
        plain = KnnIndex(X_ref, backend_name)
    for queries in (np.array([[FAR, 0.0]]), np.array([[np.inf, 0.0]]), np.array([[np.nan, 1.0]])):
        assert index.tree.query(queries, 2, backend_name) is None
        distances, indices = index.query(queries, 2)
        expected_d, expected_i = plain.query(queries, 2)
        np.testing.assert_array_equal(indices, expected_i)
        np.testing.assert_array_equal(distances, expected_d)
    assert index.gemm_ready


def test_numba_and_cython_twins_agree(dtype, rng):
    """Same tree (permutation, node ranges, boxes) and same answers from both kernels."""
    names = [name for name in TREE_BACKENDS if name in ready_backends()]
    if len(names) < 2:
        pytest.skip("needs both numba and cython")
    X_ref, X_query = (rows.astype(dtype) for rows in _data("grid", rng, 500, 40, 3))
    trees = [_kdtree.KdTree(X_ref, fastdl_backend.kernels("kdtree", name)[0]) for name in names]
    for name in ("perm", "node_start", "node_end", "lo", "hi", "points"):
        np.testing.assert_array_equal(getattr(trees[0], name), getattr(trees[1], name), err_msg=name)
    answers = [tree.query(X_query, 6, name) for tree, name in zip(trees, names)]
    np.testing.assert_array_equal(answers[0][0], answers[1][0])
    np.testing.assert_array_equal(answers[0][1], answers[1][1])


def test_answers_do_not_depend_on_the_thread_count(backend, rng, small_trees):
    X_ref, X_query = _data("grid", rng, 300, 50, 2)
    fastdl_backend.set_num_threads(1)
    one = knn(X_query, X_ref, 5, backend=backend)
    fastdl_backend.set_num_threads(2)
    two = knn(X_query, X_ref, 5, backend=backend)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])


@pytest.mark.parametrize("shape, tree", [
    ((2048, 2), True), ((1024, 4), True), ((8192, 8), True),  # few features, enough rows
    ((1000, 2), False), ((4096, 6), False),  # too few rows to pay for the tree
    ((10000, 16), False), ((1707, 256), False),  # too many features (the digits' shape)
])
def test_which_inputs_get_a_tree(backend, shape, tree):
    """The default thresholds (measured: see fastdl/ops/_kdtree.py); never on the numpy backend."""
    X_ref = np.random.default_rng(1).random(shape)
    assert (KnnIndex(X_ref, backend).tree is not None) == (tree and backend in TREE_BACKENDS)


def test_one_off_search_of_few_queries_builds_no_tree(backend, monkeypatch):
    """fastdl.ops.knn with fewer than MIN_QUERIES queries is done sooner without the tree."""
    built = []
    build = _kdtree.KdTree.__init__
    monkeypatch.setattr(_kdtree.KdTree, "__init__", lambda self, *args: built.append(build(self, *args)))
    X_ref = np.random.default_rng(2).random((2048, 2))
    knn(X_ref[:_kdtree.MIN_QUERIES - 1], X_ref, 2, backend=backend)
    assert not built
    knn(X_ref[:_kdtree.MIN_QUERIES], X_ref, 2, backend=backend)
    assert len(built) == (backend in TREE_BACKENDS)


def test_threads_sharing_a_tree_index_prepare_the_gemm_path_whole(backend, rng, small_trees, monkeypatch):
    # Queries the tree cannot answer (a NaN) make the GEMM path's arrays on first use; a thread
    # that came second saw the index marked ready before its arrays were there (AttributeError).
    import threading
    import time

    from fastdl.ops import _knn_index

    X_ref = rng.normal(size=(300, 3))
    queries = rng.normal(size=(20, 3))
    queries[0, 0] = np.nan
    index = KnnIndex(X_ref, backend)
    shift_origin = _knn_index.shift_origin
    monkeypatch.setattr(_knn_index, "shift_origin", lambda *args: time.sleep(0.05) or shift_origin(*args))
    answers, errors, start = [], [], threading.Barrier(4)

    def query():
        start.wait()
        try:
            answers.append(index.query(queries, 3))
        except Exception as exc:  # noqa: BLE001 (the test reports it)
            errors.append(exc)

    threads = [threading.Thread(target=query) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for distances, indices in answers[1:]:
        np.testing.assert_array_equal(indices, answers[0][1])
        np.testing.assert_array_equal(distances, answers[0][0])
