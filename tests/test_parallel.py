"""The row-parallel driver: splitting, concurrent callers, and BLAS limits put back afterwards."""

import concurrent.futures

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import fastdl
from fastdl import _parallel
from fastdl.ops import knn, pairwise_distances


def _blas_threads():
    return sorted(info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas")


@pytest.mark.parametrize("n_rows, n_threads", [(1, 4), (7, 2), (1000, 2), (1001, 3)])
def test_row_ranges_cover_every_row_once(n_rows, n_threads):
    ranges = _parallel.row_ranges(n_rows, n_threads, work_per_row=1 << 22)
    assert ranges[0][0] == 0 and ranges[-1][1] == n_rows
    assert all(stop == start for (_, stop), (start, _) in zip(ranges, ranges[1:]))
    assert len(ranges) == min(n_rows, n_threads)


def test_small_work_stays_on_one_thread():
    assert _parallel.row_ranges(1000, 8, work_per_row=1) == [(0, 1000)]


def test_concurrent_callers_get_the_same_answers_and_blas_is_restored(backend, rng):
    fastdl.set_num_threads(2)
    X_ref = rng.normal(size=(3000, 64))
    X_query = rng.normal(size=(400, 64))
    expected = knn(X_query, X_ref, 5, backend=backend)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: knn(X_query, X_ref, 5, backend=backend), range(8)))
    for distances, indices in results:
        np.testing.assert_array_equal(indices, expected[1])
        np.testing.assert_array_equal(distances, expected[0])
    assert set(_blas_threads()) == {2}  # every BLAS back to fastdl's count once the calls are done


def test_threads_do_not_change_distances(backend, rng):
    A = rng.normal(size=(600, 200))
    B = rng.normal(size=(500, 200))
    fastdl.set_num_threads(1)
    one = pairwise_distances(A, B, backend=backend)
    fastdl.set_num_threads(2)
    np.testing.assert_array_equal(pairwise_distances(A, B, backend=backend), one)


def test_sum_in_order_is_the_same_bits_on_any_number_of_threads(rng, monkeypatch):
    partials = {first: rng.normal(size=(5, 7)).astype(np.float32) for first in (40, 0, 13, 27)}
    expected = partials[0].copy()
    for first in (13, 27, 40):
        expected += partials[first]
    monkeypatch.setattr(_parallel, "MIN_WORK_PER_THREAD", 1)
    fastdl.set_num_threads(3)
    total = _parallel.sum_in_order({first: array.copy() for first, array in partials.items()})
    np.testing.assert_array_equal(total, expected)
    with pytest.raises(ValueError, match="C-contiguous"):
        _parallel.sum_in_order({0: partials[0].T, 5: partials[13].T})
