"""Synthetic analog clocks like the course's "tell the time" photographs, from compiled kernels.

:func:`render_clocks` returns what the course's ``images.npy`` and ``labels.npy`` hold: uint8
(n, 150, 150) grayscale images and int64 (n, 2) labels [hour 0-11, minute 0-59]. What the clocks
look like, and how each image's parameters are drawn, is in :mod:`fastdl.data.clock_design`;
the kernels are kernels/{npy,cpu,cy}/clock*.
"""

import numbers

import numpy as np

from fastdl import backend as _backend
from fastdl.data import clock_design
from fastdl.data._render_backend import check_render_arguments, renderer_backend
from fastdl.data._render_backend import MAX_SIZE, MIN_SIZE  # noqa: F401 (this renderer's limits, for its callers)

# Changes whenever a seed's images change: the cache's synthetic set is rendered again then.
RENDERER_VERSION = 3
_tables = None


def _static_tables():
    """The numerals' distance grids and the tick directions, built once."""
    global _tables
    if _tables is None:
        _tables = (clock_design.glyph_distances(), clock_design.tick_directions())
    return _tables


def check_max_turn(max_turn):
    """max_turn as a float of degrees in [0, 180]; TypeError for a non-number, ValueError outside."""
    if isinstance(max_turn, bool) or not isinstance(max_turn, numbers.Real):
        raise TypeError(f"max_turn must be a number of degrees in [0, 180], got {max_turn!r}")
    if not 0 <= max_turn <= 180:
        raise ValueError(f"max_turn must be a number of degrees in [0, 180], got {max_turn!r}")
    return float(max_turn)


def check_faces(faces):
    """faces if it is "varied" or "one"; TypeError for a non-string, ValueError otherwise."""
    if not isinstance(faces, str):
        raise TypeError(f"faces must be 'varied' or 'one', got {faces!r}")
    if faces not in clock_design.FACES:
        raise ValueError(f"faces must be 'varied' or 'one', got {faces!r}")
    return faces


def check_times(times, n):
    """times as int64 (n, 2) [hour 0-11, minute 0-59], or None; TypeError/ValueError otherwise."""
    if times is None:
        return None
    array = np.asarray(times)
    whole = np.issubdtype(array.dtype, np.integer) or (
        np.issubdtype(array.dtype, np.floating) and np.array_equal(array, np.round(array)))
    if not whole:
        raise TypeError(f"times must hold whole [hour, minute] numbers, got dtype {array.dtype}")
    if array.shape != (n, 2):
        raise ValueError(f"times must have shape (n, 2) = ({n}, 2), one [hour, minute] per clock, got {array.shape}")
    if n and not ((array[:, 0] >= 0).all() and (array[:, 0] < 12).all()
                  and (array[:, 1] >= 0).all() and (array[:, 1] < 60).all()):
        raise ValueError("times must hold hours 0-11 and minutes 0-59")
    return np.ascontiguousarray(array, dtype=np.int64)


def render_clocks(n, seed=0, size=150, backend=None, first=0, max_turn=180.0, faces="varied", times=None):
    """Render ``n`` synthetic analog clocks and their times.

    Image i depends only on (seed, first + i): rendering 200 gives the first 200 of rendering
    18,000, whatever the backend or the thread count (Numba and Cython give the same pixels).

    Parameters
    ----------
    n : int >= 0
        Number of images.
    seed : int >= 0, default 0
    size : int, default 150
        Images are size x size pixels (16 to 2048).
    backend : str, optional
        "numba", "cython", "numpy" (the slow reference), "auto" or None for the process
        default; where that is "cuda", "auto" (there are no CUDA renderer kernels, and the
        images are the same on every backend, so this changes nothing but the speed).
    first : int >= 0, default 0
        Index of the first image in the seed's sequence (to render a set in pieces);
        first + n - 1 <= 2**63 - 1.
    max_turn : float in [0, 180], default 180
        The whole clock turns in its own plane by up to this many degrees either way: 180, any
        angle; 0, 12 at the top of the face (the face's tilt away from the camera can show it
        up to about 8 degrees round in the picture). Clocks turned by any angle are far harder to learn: the course's
        networks stay at chance for hundreds of steps where upright ones start reading the time.
    faces : {"varied", "one"}, default "varied"
        "varied": every image is a clock of its own design (face, rim, ticks, numerals, hands).
        "one": every image shows the same clock, the seed's, each in its own pose, at its own
        time and in its own scene, like the course's photographs of one clock.
    times : array-like of shape (n, 2), optional
        [hour 0-11, minute 0-59] for each clock to show (a test set of chosen times: 11:59, 0:00)
        instead of its own random time; everything else about image i is as without it.

    Returns
    -------
    images : ndarray of shape (n, size, size), uint8
    labels : ndarray of shape (n, 2), int64
        [hour 0-11, minute 0-59] of each image (``times``, where given).

    Raises
    ------
    ValueError
        ``backend="cuda"``: the renderers run on the CPU backends.
    """
    n, seed, size, first = check_render_arguments(n, seed, size, first, "image")
    max_turn, faces, times = check_max_turn(max_turn), check_faces(faces), check_times(times, n)
    kernels, _ = _backend.kernels("clock", renderer_backend(backend, "clock"))
    images = np.empty((n, size, size), dtype=np.uint8)  # first: a MemoryError before the draws' minutes
    labels, params, keys = clock_design.draw_parameters(seed, first, n, max_turn, faces, times)
    clock_design.pixel_boxes(params, size)
    kernels.render_clocks(params, keys, *_static_tables(), images, _backend.get_num_threads())
    return images, labels
