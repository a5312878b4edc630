"""Rendering synthetic cartoon faces (64x64 RGB uint8, assignment 6's data), faces per second.

Contenders draw the same faces (the parameters of fastdl.data.face_design, seed 0):

- fastdl[numba], fastdl[cython]: the compiled renderer, images in parallel over the cores.
  A second group (marked big) renders a training set of 10,000 at once; the target is 5,000
  faces/s on 2 cores (the set in 2 s).
- fastdl[numpy]: the plain numpy renderer of the same design (the backends' reference),
  vectorised over each image's pixels.

Each note gives the contender's faces/s (mean round), drawing the parameters included.
"""

import pytest

from fastdl.data import render_faces

GROUP = "render 200 synthetic faces 64x64x3"
SET_GROUP = "render a training set: 10,000 synthetic faces 64x64x3"
SIZE = 64
N_SMALL = 200
N_SET = 10000


@pytest.mark.parametrize("backend", ["numba", "cython"])
def bench_render_fastdl(benchmark, backend, require_fastdl_backend, name_contender):
    require_fastdl_backend("faces", backend)
    render_faces(8, backend=backend)  # compiles (or loads the cache) before timing
    benchmark.pedantic(render_faces, args=(N_SMALL,), kwargs={"backend": backend}, rounds=20, iterations=1)
    name_contender(GROUP, f"fastdl[{backend}]", _rate(N_SMALL))


@pytest.mark.big
@pytest.mark.parametrize("backend", ["numba", "cython"])
def bench_render_training_set(benchmark, backend, require_fastdl_backend, name_contender):
    require_fastdl_backend("faces", backend)
    render_faces(8, backend=backend)
    benchmark.pedantic(render_faces, args=(N_SET,), kwargs={"backend": backend}, rounds=3, iterations=1)
    name_contender(SET_GROUP, f"fastdl[{backend}]", _rate(N_SET))


def bench_render_numpy(benchmark, name_contender):
    benchmark.pedantic(render_faces, args=(N_SMALL,), kwargs={"backend": "numpy"}, rounds=2, iterations=1)
    name_contender(GROUP, "numpy (same design, vectorised per image)", _rate(N_SMALL))


def _rate(n):
    """The note: faces/s from the mean time."""
    return lambda stats: f"{n / stats.mean:,.0f} faces/s"
