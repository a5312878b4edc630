"""Rendering synthetic analog clocks (150x150 uint8, assignment 5's data), images per second.

Contenders draw the same clocks (the parameters of fastdl.data.clock_design, seed 0):

- fastdl[numba], fastdl[cython]: the compiled renderer. A second group (marked big) renders the
  course's 18,000 at once: the target is 5,000 images/s on 2 cores, the set in under 4 s.
- fastdl[numpy]: the plain numpy renderer of the same design (the backends' reference),
  vectorised over each image's pixels.
- matplotlib: what a student would write: each clock drawn with patches, lines and text
  (face, rim, ticks, numerals, hands) under the affine part of the clock's pose, rasterised by
  Agg and read back as grey levels; without the background clutter, blur and noise, which
  would only slow it further.

Every contender renders the same 40 clocks a round; each note gives its images/s (mean round).
"""

import numpy as np
import pytest

from fastdl.data import clock_design, render_clocks
from fastdl.kernels.npy import clock_layout as L

GROUP = "render 40 synthetic clocks 150x150"
COURSE_GROUP = "render the course-size set: 18,000 synthetic clocks 150x150"
SIZE = 150
N_SMALL = 40
N_COURSE = 18000


@pytest.mark.parametrize("backend", ["numba", "cython"])
def bench_render_fastdl(benchmark, backend, require_fastdl_backend, name_contender):
    require_fastdl_backend("clock", backend)
    render_clocks(8, backend=backend)  # compiles (or loads the cache) before timing
    benchmark.pedantic(render_clocks, args=(N_SMALL,), kwargs={"backend": backend}, rounds=20, iterations=1)
    name_contender(GROUP, f"fastdl[{backend}]", _rate(N_SMALL))


@pytest.mark.big
@pytest.mark.parametrize("backend", ["numba", "cython"])
def bench_render_course_set(benchmark, backend, require_fastdl_backend, name_contender):
    require_fastdl_backend("clock", backend)
    render_clocks(8, backend=backend)
    benchmark.pedantic(render_clocks, args=(N_COURSE,), kwargs={"backend": backend}, rounds=3, iterations=1)
    name_contender(COURSE_GROUP, f"fastdl[{backend}]", _rate(N_COURSE))


def bench_render_numpy(benchmark, name_contender):
    benchmark.pedantic(render_clocks, args=(N_SMALL,), kwargs={"backend": "numpy"}, rounds=2, iterations=1)
    name_contender(GROUP, "numpy (same design, vectorised per image)", _rate(N_SMALL))


def bench_render_matplotlib(benchmark, name_contender):
    labels, params, _ = clock_design.draw_parameters(0, 0, N_SMALL)
    images = matplotlib_clocks(params[:2])
    assert images.shape == (2, SIZE, SIZE) and images.std() > 10  # it draws something
    benchmark.pedantic(matplotlib_clocks, args=(params,), rounds=2, iterations=1)
    name_contender(GROUP, "matplotlib (patches + text, Agg)", _rate(N_SMALL))


def _rate(n):
    """The note: images/s from the mean time."""
    return lambda stats: f"{n / stats.mean:,.0f} images/s"


def matplotlib_clocks(params):
    """Draw each clock of `params` with matplotlib, as a student would; (n, 150, 150) uint8."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.patches import Circle
    from matplotlib.transforms import Affine2D

    images = np.empty((len(params), SIZE, SIZE), dtype=np.uint8)
    fig = plt.figure(figsize=(1.5, 1.5), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    for i, p in enumerate(params):
        ax.clear()
        ax.set_xlim(0, 1)
        ax.set_ylim(1, 0)
        ax.axis("off")
        fig.patch.set_facecolor(str(np.clip(p[L.BG], 0, 1)))
        pose = Affine2D(_affine_pose(p)) + ax.transData
        outer = 1 + p[L.RIM_WIDTH]
        ax.add_patch(Circle((0, 0), outer, color=str(p[L.RIM]), transform=pose))
        ax.add_patch(Circle((0, 0), 1, color=str(p[L.FACE]), transform=pose))
        ink = str(p[L.INK])
        for k in range(60):
            if p[L.TICKS] == 0 or (p[L.TICKS] == 1 and k % 5):
                continue
            length = p[L.HOUR_TICK_LEN] if k % 5 == 0 else p[L.MIN_TICK_LEN]
            width = p[L.HOUR_TICK_W] if k % 5 == 0 else p[L.MIN_TICK_W]
            s, c = np.sin(k * np.pi / 30), np.cos(k * np.pi / 30)
            r0, r1 = p[L.TICK_OUTER] - length, p[L.TICK_OUTER]
            ax.plot([r0 * s, r1 * s], [r0 * c, r1 * c], color=ink, linewidth=width * 150 * 0.35, transform=pose)
        if p[L.NUMERALS]:
            for k in range(0, 12, 1 if p[L.NUMERALS] == 1 else 3):
                s, c = np.sin(k * np.pi / 6), np.cos(k * np.pi / 6)
                ax.text(p[L.NUM_RADIUS] * s, p[L.NUM_RADIUS] * c, str(k or 12), color=ink, ha="center",
                        va="center", fontsize=p[L.NUM_HEIGHT] * 40, transform=pose)
        for base in (L.HOUR_HAND, L.MINUTE_HAND) + ((L.SECOND_HAND,) if p[L.SECONDS] else ()):
            dx, dy = p[base + L.HAND_DX], p[base + L.HAND_DY]
            tail, length = p[base + L.HAND_TAIL], p[base + L.HAND_LEN]
            ax.plot([-tail * dx, length * dx], [-tail * dy, length * dy], color=str(p[base + L.HAND_VALUE]),
                    linewidth=p[base + L.HAND_WIDTH] * 150 * 0.7, solid_capstyle="butt", transform=pose)
        ax.add_patch(Circle((0, 0), p[L.CAP], color=str(p[L.HAND]), transform=pose))
        fig.canvas.draw()
        rgba = np.asarray(fig.canvas.buffer_rgba())
        images[i] = (rgba[..., :3].mean(axis=2)).astype(np.uint8)
    plt.close(fig)
    return images


def _affine_pose(p):
    """The affine part of the clock's pose: where the face's centre lands and how the face's
    axes stretch there (the renderer's perspective, to first order)."""
    forward = np.linalg.inv(p[L.HINV:L.HINV + 9].reshape(3, 3))
    centre = forward[:2, 2] / forward[2, 2]
    jacobian = (forward[:2, :2] - np.outer(centre, forward[2, :2])) / forward[2, 2]
    matrix = np.eye(3)
    matrix[:2, :2], matrix[:2, 2] = jacobian, centre
    return matrix
