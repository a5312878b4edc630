"""kNN pruned by projection lower bounds (fastdl/ops/_projection.py): the same exact answers.

Rows with 128+ features that vary mostly along a few directions take the pruned path; its answers
must equal the plain path's (same exact float64 distances) and the naive ranking, ties included.
"""

import numpy as np
import pytest

import naive
from conftest import RTOL
from fastdl import backend as fastdl_backend
from fastdl.ops import _knn_index, _projection
from fastdl.ops._knn_index import KnnIndex


def _low_rank(rng, n_ref, n_query, n_features=128, rank=6, noise=0.02, offset=0.0):
    """Reference and query rows near one rank-`rank` subspace: what images and embeddings look
    like to the projection."""
    n = n_ref + n_query
    basis = rng.normal(size=(rank, n_features))
    rows = rng.normal(size=(n, rank)) @ basis + noise * rng.normal(size=(n, n_features)) + offset
    return rows[:n_ref], rows[n_ref:]


def _index(X_ref, backend):
    with fastdl_backend.use_backend(backend):
        return KnnIndex(np.ascontiguousarray(X_ref), backend)


def _query(index, X_query, k, backend):
    with fastdl_backend.use_backend(backend):
        return index.query(np.ascontiguousarray(X_query), k)


def _plain(index, X_query, k, backend):
    projection, index.projection = index.projection, None
    try:
        return _query(index, X_query, k, backend)
    finally:
        index.projection = projection


def _check_pruned(X_ref, X_query, k, backend):
    index = _index(X_ref, backend)
    assert index.projection is not None, "the data should take the pruned path"
    distances, indices = _query(index, X_query, k, backend)
    assert index.last_ranked < X_query.shape[0] * X_ref.shape[0] / 4, "the bounds should rule rows out"
    plain_d, plain_i = _plain(index, X_query, k, backend)
    np.testing.assert_array_equal(indices, plain_i)
    np.testing.assert_array_equal(distances, plain_d)
    return distances, indices


@pytest.mark.parametrize("k", [1, 3, 9], ids=lambda k: f"k{k}")
def test_pruned_matches_plain_path(backend, dtype, rng, k):
    X_ref, X_query = _low_rank(rng, 400, 40)
    X_query = np.concatenate([X_ref[[5, 77]] + 1e-3, X_query])
    X_ref, X_query = X_ref.astype(dtype), X_query.astype(dtype)
    _check_pruned(X_ref, X_query, k, backend)


def test_pruned_matches_naive(backend, dtype, rng):
    X_ref, X_query = (rows.astype(dtype) for rows in _low_rank(rng, 140, 6))
    distances, indices = _check_pruned(X_ref, X_query, 4, backend)
    expected_d, expected_i = naive.knn(X_query, X_ref, 4)
    np.testing.assert_array_equal(indices, expected_i)
    np.testing.assert_allclose(distances, expected_d, rtol=RTOL[dtype], atol=RTOL[dtype])


def test_pruned_ties_go_to_lower_index(backend, dtype, rng):
    """Duplicated rows far apart: exact ties, which the exact stage meets in any order."""
    X_ref, _ = _low_rank(rng, 300, 0)
    X_ref[250] = X_ref[260] = X_ref[12]
    X_ref[200] = X_ref[7]
    X_ref = X_ref.astype(dtype)
    X_query = X_ref[[260, 12, 7, 200]]
    _, indices = _check_pruned(X_ref, X_query, 3, backend)
    np.testing.assert_array_equal(indices[0], [12, 250, 260])
    np.testing.assert_array_equal(indices[1], [12, 250, 260])
    np.testing.assert_array_equal(indices[2][:2], [7, 200])
    np.testing.assert_array_equal(indices[3][:2], [7, 200])


@pytest.mark.parametrize("offset", [1e6, -1e6])
def test_pruned_offset_data(backend, rng, offset):
    X_ref, X_query = _low_rank(rng, 300, 20, offset=offset)
    _check_pruned(X_ref, X_query, 5, backend)


def test_isotropic_data_keeps_the_plain_path(backend, rng, monkeypatch):
    """Rows that spread in every direction: the bounds would rule nothing out, which the rows held
    out tell before every reference is projected (that work was thrown away: 108 ms of 50000 x 256)."""
    def projected(*args):
        raise AssertionError("every reference projected for directions the held-out rows reject")

    monkeypatch.setattr(_projection.Projection, "__init__", projected)
    assert _index(rng.normal(size=(600, 128)), backend).projection is None


def test_directions_are_judged_on_rows_they_were_not_found_from(backend, rng):
    """784 features of noise, 196 directions: the top 196 of 256 rows hold 92% of those rows'
    spread (a sample of at least twice the directions and rows held out judge them truly)."""
    assert _index(rng.normal(size=(1000, 784)), backend).projection is None


def test_constant_rows_keep_the_plain_path(backend, dtype):
    X_ref = np.ones((600, 128), dtype=dtype)
    index = _index(X_ref, backend)
    assert index.projection is None
    distances, indices = _query(index, X_ref[:3] + 1, 2, backend)
    np.testing.assert_array_equal(indices, [[0, 1]] * 3)
    np.testing.assert_allclose(distances, np.sqrt(128), rtol=RTOL[dtype])


def test_few_features_keep_the_plain_path(backend, rng):
    assert _index(_low_rank(rng, 600, 0, n_features=64)[0], backend).projection is None


def test_loose_bounds_fall_back_to_the_plain_path(backend, rng, monkeypatch):
    """When a query ranks more rows than pruning can pay for, later queries skip the projection."""
    monkeypatch.setattr(_knn_index, "MAX_RANKED_SHARE", 1e-6)
    X_ref, X_query = _low_rank(rng, 300, 10)
    index = _index(X_ref, backend)
    distances, indices = _query(index, X_query, 3, backend)
    assert index.projection is None
    plain_d, plain_i = _query(index, X_query, 3, backend)
    np.testing.assert_array_equal(indices, plain_i)
    np.testing.assert_array_equal(distances, plain_d)


def test_projection_bounds_hold(rng):
    """The limit is a true bound: every row's computed term is within it at its own exact distance."""
    X_ref, X_query = (rows.astype(np.float32) for rows in _low_rank(rng, 300, 30))
    index = _index(X_ref, "numpy")
    projection = index.projection
    query_scaled, query_norms = index._scaled(X_query, index.scale)
    query_proj, query_proj_norms = projection.project(query_scaled)
    terms = projection.ref_proj_norms.astype(np.float32)[None, :] - 2 * (query_proj @ projection.ref_proj.T)
    exact = naive.pairwise_distances(X_query, X_ref, squared=True) * index.scale**2
    sigma, shift, slack, base = projection.limits(query_norms, query_proj_norms).T
    limit = (sigma[:, None] * np.sqrt(exact) + shift[:, None]) ** 2 + slack[:, None] - base[:, None]
    assert (terms <= limit).all()
    # ... and a useful one: most rows' terms are far beyond the limit at the nearest distance.
    nearest = (sigma * np.sqrt(exact.min(axis=1)) + shift) ** 2 + slack - base
    assert (terms > nearest[:, None]).mean() > 0.9


def test_directions_are_orthonormal(rng):
    X_ref = _low_rank(rng, 300, 0)[0].astype(np.float32)
    projection = _index(X_ref, "numpy").projection
    P = projection.P.astype(np.float64)
    assert P.shape == (128, int(128 * _projection.DIRECTIONS_PER_FEATURE))
    np.testing.assert_allclose(P.T @ P, np.eye(P.shape[1]), atol=1e-5)
    assert 1.0 <= projection.sigma < 1.0 + 1e-4
