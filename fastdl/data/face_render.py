"""Synthetic cartoon faces for the VAE and GAN of assignment 6, from compiled kernels.

:func:`render_faces` returns uint8 (n, size, size, 3) RGB images and each face's generative
factors (float64 (n, len(FACTOR_NAMES))): its pose, shape, colours, eyes, gaze, brows, mouth,
hair and so on, the numbers a small network can learn to read off the image (for a feature
network scoring generated faces with a Frechet distance). What the faces look like, and how
each image's parameters are drawn, is in :mod:`fastdl.data.face_design`; the kernels are
kernels/{npy,cpu,cy}/faces*.
"""

import numpy as np

from fastdl import backend as _backend
from fastdl.data import face_design
from fastdl.data._render_backend import check_render_arguments, renderer_backend
from fastdl.data._render_backend import MAX_SIZE, MIN_SIZE  # noqa: F401 (this renderer's limits, for its callers)
from fastdl.data.face_design import FACTOR_NAMES, FACTOR_RANGES, HAIR_STYLES

__all__ = ["FACTOR_NAMES", "FACTOR_RANGES", "HAIR_STYLES", "RENDERER_VERSION", "render_faces"]

# Changes whenever a seed's images change: a6's cached feature network (trained on rendered faces)
# is trained again then, and the faces.json of a set generate_faces wrote records it.
RENDERER_VERSION = 3  # 3: eyelids in the head's shaded skin inside the eye's outline, brows under the hair


def render_faces(n, seed=0, size=64, backend=None, first=0):
    """Render ``n`` synthetic cartoon faces and their generative factors.

    Face i depends only on (seed, first + i): rendering 200 gives the first 200 of rendering
    10,000, whatever the backend or the thread count (numpy, Numba and Cython give the same
    pixels).

    Parameters
    ----------
    n : int >= 0
        Number of images.
    seed : int in [0, 2**64 - 1], default 0
    size : int, default 64
        Images are size x size pixels (16 to 2048); the faces are the same at every size.
    backend : str, optional
        "numba", "cython", "numpy" (the slow reference), "auto" or None for the process
        default; where that is "cuda", "auto" (there are no CUDA renderer kernels, and the
        images are the same on every backend, so this changes nothing but the speed).
    first : int >= 0, default 0
        Index of the first face in the seed's sequence (to render a set in pieces);
        first + n - 1 <= 2**63 - 1.

    Returns
    -------
    images : ndarray of shape (n, size, size, 3), uint8
        RGB, channels last.
    factors : ndarray of shape (n, len(fastdl.data.FACE_FACTOR_NAMES)), float64
        Column j holds factor ``fastdl.data.FACE_FACTOR_NAMES[j]`` of each face, within
        ``fastdl.data.face_design.FACTOR_RANGES[name]``: positions in image widths, sizes in face
        units (about a head's half height), angles in degrees, colours in [0, 1], flags 0 or 1,
        hair_style an index into ``fastdl.data.face_design.HAIR_STYLES``.

    Raises
    ------
    ValueError
        ``backend="cuda"`` (the renderers run on the CPU backends), or ``n``, ``seed``, ``size``
        or ``first`` out of its range.
    TypeError
        ``n``, ``seed``, ``size`` or ``first`` is not an integer.
    """
    n, seed, size, first = check_render_arguments(n, seed, size, first, "face")
    kernels, _ = _backend.kernels("faces", renderer_backend(backend, "face"))
    images = np.empty((n, size, size, 3), dtype=np.uint8)  # first: a MemoryError before the draws' minutes
    factors, params = face_design.draw_parameters(seed, first, n)
    face_design.pixel_boxes(params, size)
    kernels.render_faces(params, images, _backend.get_num_threads())
    return images, factors
