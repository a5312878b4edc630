"""Per-image affine resampling of channels-last images (N, H, W, C) and its gradient: the kernel of
fastdl.nn's RandomFlip, RandomRotation, RandomTranslation and RandomZoom, as Keras 3's
keras.ops.image.affine_transform."""

import math
import numbers

import numpy as np

from fastdl import _device
from fastdl import backend as _backend
from fastdl._parallel import threads_worth_it
from fastdl._validation import as_compute_all, check_array
from fastdl.ops._nn_on_device import Out, host_call

IMAGES = "(batch, height, width, channels)"
# Their codes are their places here, as the kernels number them.
FILL_MODES = ("reflect", "wrap", "constant", "nearest")
INTERPOLATIONS = ("bilinear", "nearest")
# Source coordinates beyond this are refused: the kernels take them as int64 after floor(), and no
# augmentation comes near (a translation moves by at most the image's size).
MAX_COORDINATE = 2.0**31


def fill_mode_code(fill_mode):
    """The kernels' code of fill_mode ("reflect", "wrap", "constant", "nearest"; any case)."""
    return _code(fill_mode, FILL_MODES, "fill_mode")


def interpolation_code(interpolation):
    """The kernels' code of interpolation ("bilinear", "nearest"; any case)."""
    return _code(interpolation, INTERPOLATIONS, "interpolation")


def _code(value, choices, name):
    if not isinstance(value, str) or value.lower() not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return choices.index(value.lower())


def check_fill_value(fill_value):
    """fill_value as a finite Python float (a bool, a string or NaN is refused)."""
    if isinstance(fill_value, bool) or not isinstance(fill_value, numbers.Real):
        raise TypeError(f"fill_value must be a real number, got {fill_value!r}")
    try:
        value = float(fill_value)
    except OverflowError:  # an int past float range
        value = math.inf
    if not math.isfinite(value):
        raise ValueError(f"fill_value must be finite, got {fill_value!r}")
    return value


def check_fill_fits(fill_value, dtype):
    """ValueError where fill_value is past the images' float dtype's range (1e300 for float32
    images), which would fill with infinity."""
    with np.errstate(over="ignore"):
        if not np.isfinite(np.dtype(dtype).type(fill_value)):
            raise ValueError(f"fill_value {fill_value!r} is beyond {np.dtype(dtype)}'s range: it would fill the images "
                             "with infinity")


def check_matrices(matrices, n_images, height, width):
    """matrices as a C-contiguous float64 array (n_images, 6), finite, mapping every output pixel
    to source coordinates within +-MAX_COORDINATE."""
    matrices = check_array(matrices, "matrices", 2, "(n_images, 6)", allow_empty=True)
    if matrices.shape != (n_images, 6):
        raise ValueError(f"matrices must have shape ({n_images}, 6), one row (a0, a1, a2, b0, b1, b2) per image, "
                         f"got {matrices.shape}")
    matrices = np.ascontiguousarray(matrices, dtype=np.float64)
    # The coordinates are affine in (row, column): their extremes are at the image's corners.
    corners = np.array([[0, 0, 1], [width - 1, 0, 1], [0, height - 1, 1], [width - 1, height - 1, 1]], np.float64)
    reach = np.abs(corners @ matrices.reshape(-1, 2, 3).transpose(0, 2, 1)).max(initial=0.0)
    if not reach < MAX_COORDINATE:
        raise ValueError(f"matrices map pixels to source coordinates as far as {reach:.3g}; at most "
                         f"{MAX_COORDINATE:.3g} are taken")
    return matrices


def affine_transform(images, matrices, interpolation="bilinear", fill_mode="constant", fill_value=0.0, *,
                     backend=None):
    """Resample each image through its own affine map, as keras.ops.image.affine_transform (its
    arguments in Keras 3's order, with its defaults; the layers' fill_mode default is "reflect").

    Parameters
    ----------
    images : array-like of shape (n_images, height, width, channels)
    matrices : array-like of shape (n_images, 6)
        Row s, (a0, a1, a2, b0, b1, b2), makes output pixel (row i, column j) of image s sample
        its input at column a0 * j + a1 * i + a2 and row b0 * j + b1 * i + b2 (pixel centres at
        integer coordinates): the first six of Keras' eight transform values (fastdl takes no
        projective part).
    interpolation : {"bilinear", "nearest"}, default "bilinear"
        Bilinear mixes the four pixels around the source point; nearest takes the pixel at
        (floor(y + 0.5), floor(x + 0.5)) (halves round up; Keras' backends differ among themselves there).
    fill_mode : {"constant", "reflect", "wrap", "nearest"}, default "constant"
        How pixels outside the image are found, per axis: constant (fill_value), reflect
        (d c b a | a b c d | d c b a), wrap (a b c d | a b c d), nearest (a a | a b c d | d d).
    fill_value : float, default 0.0
        The value outside the image with fill_mode "constant".
    backend : str, optional, keyword-only
        "auto", "numpy", "numba", "cython", "cuda" (None: the process default).

    Returns
    -------
    ndarray of shape (n_images, height, width, channels)
        float32 when images is float32, float64 otherwise; each value summed in float64 and
        rounded once, so the backends agree to within that rounding.
    """
    images = check_array(images, "images", 4, IMAGES)
    fill, interp = fill_mode_code(fill_mode), interpolation_code(interpolation)
    fill_value = check_fill_value(fill_value)
    matrices = check_matrices(matrices, *images.shape[:3])
    on_cuda = _backend.resolve("augment", backend) == "cuda"  # an unknown or unavailable backend fails here
    _, images = as_compute_all(images)
    if fill == FILL_MODES.index("constant"):  # (the only mode that reads it)
        check_fill_fits(fill_value, images.dtype)
    out = np.empty_like(images)
    if on_cuda:
        return host_call(affine_transform_into, images, matrices, Out(out), fill, fill_value, interp)
    return affine_transform_into(images, matrices, out, fill, fill_value, interp, backend)


def affine_transform_into(images, matrices, out, fill_mode, fill_value, interpolation, backend=None):
    """affine_transform into `out` for checked arrays; returns out.

    For callers that have checked their arrays (fastdl.nn's layers): images and out C-contiguous,
    of one float dtype and shape; matrices as check_matrices gives them (on the device where out
    is); fill_mode and interpolation codes, fill_value a float.
    """
    kernels, _ = _backend.kernels("augment", "cuda" if _device.is_device(out) else backend)
    kernels.affine_transform(images, matrices, fill_mode, fill_value, interpolation, out, _threads(images.shape))
    return out


def _threads(shape):
    """Threads for the kernels, which run one image per task: a pixel costs about what 16
    multiply-adds do (its source point, the taps' places and weights), and 8 more per channel."""
    n, h, w, c = shape
    return threads_worth_it(n, h * w * (16 + 8 * c))


def affine_transform_grad(dout, matrices, interpolation="bilinear", fill_mode="constant", *, backend=None):
    """Gradient of affine_transform with respect to its images (the map is linear in them).

    Parameters
    ----------
    dout : array-like of shape (n_images, height, width, channels)
        Gradient of the loss with respect to affine_transform's output.
    matrices, fill_mode, interpolation, backend
        As in affine_transform (fill_value does not matter: the filled values do not depend on
        the images).

    Returns
    -------
    ndarray of shape (n_images, height, width, channels)
        float32 when dout is float32, float64 otherwise: each output pixel's gradient times its
        interpolation weights, added to the pixels it sampled (the transpose of the resampling).
        The compiled kernels add in that dtype in output-pixel order, the numpy reference in
        float64; float32 results agree to a few roundings.
    """
    dout = check_array(dout, "dout", 4, IMAGES)
    fill, interp = fill_mode_code(fill_mode), interpolation_code(interpolation)
    matrices = check_matrices(matrices, *dout.shape[:3])
    on_cuda = _backend.resolve("augment", backend) == "cuda"
    _, dout = as_compute_all(dout)
    dx = np.empty_like(dout)
    if on_cuda:
        return host_call(affine_transform_grad_into, dout, matrices, Out(dx), fill, interp)
    return affine_transform_grad_into(dout, matrices, dx, fill, interp, backend)


def affine_transform_grad_into(dout, matrices, dx, fill_mode, interpolation, backend=None):
    """affine_transform_grad into dx for checked arrays (as affine_transform_into); returns dx."""
    kernels, _ = _backend.kernels("augment", "cuda" if _device.is_device(dx) else backend)
    kernels.affine_transform_backward(dout, matrices, fill_mode, interpolation, dx, _threads(dout.shape))
    return dx
