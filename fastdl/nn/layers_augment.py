"""Keras 3's random image augmentation layers: RandomFlip, RandomRotation, RandomTranslation and
RandomZoom over channels-last images, on the compiled affine resampling of fastdl.ops.augment.

Each layer transforms its batch only in training (fit, train_on_batch, model(x, training=True)),
each image by its own random draw; otherwise it passes its input on as it is. The draws are made
on the host, in float64, from the layer's generator (its seed's, else its model's, as Dropout's),
into one (a0, a1, a2, b0, b1, b2) matrix per image (Keras' transform convention): a seed gives the
same batches on every backend, to within the float rounding of the resampling (each value is
summed in float64 and rounded once: the CPU backends and the CUDA simulator give the same bits
here; a device may fuse multiply-adds, an ulp or so).

Differences from Keras 3, each a choice: a factor given as a (low, high) pair must have
low <= high (Keras sorts the pair); the draws come from NumPy's generator, not Keras' seed
generator, so a seed does not give Keras' own images; the "nearest" interpolation rounds halves
up (Keras' backends differ among themselves there); fill_mode and interpolation may be in any
case; the images are channels-last batches only (data_format None or "channels_last"; a single
3-D image is taken as a batch of 2-D ones, and refused).
"""

import math
import numbers

import numpy as np

from fastdl import _device
from fastdl.nn.layers import _same_batch, check_images
from fastdl.nn.module import Layer, as_layer_input, check_data_format, seeded_generator
from fastdl.ops.augment import (affine_transform_grad_into, affine_transform_into, check_fill_fits,
                                check_fill_value, fill_mode_code, interpolation_code)

FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")


def check_factor(factor, name, low=-1.0, high=1.0):
    """Keras' factor argument as (lower, upper): a number f gives (-|f|, |f|), a pair (lower,
    upper) itself; every bound within [low, high] and lower <= upper, else a ValueError naming the
    value (a TypeError for what is no number or pair of numbers)."""
    try:
        if _is_number(factor):
            bounds = (-abs(float(factor)), abs(float(factor)))
        elif isinstance(factor, (tuple, list)) and len(factor) == 2 and all(_is_number(f) for f in factor):
            bounds = (float(factor[0]), float(factor[1]))
        else:
            raise TypeError(f"{name} must be a number or a (lower, upper) pair of numbers, got {factor!r}")
    except OverflowError:  # an int past float range
        bounds = (-math.inf, math.inf)
    if not all(low <= b <= high for b in bounds):  # NaN fails here too
        raise ValueError(f"{name} must lie in [{low:g}, {high:g}], got {factor!r}")
    if bounds[0] > bounds[1]:
        raise ValueError(f"{name}'s lower bound must not exceed its upper bound, got {factor!r} "
                         "(Keras would sort the pair: give it as (lower, upper))")
    return bounds


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class _RandomTransform(Layer):
    """A layer that resamples each training image through a random affine map that `_draw` makes;
    the identity in inference. The kernels' fill and interpolation codes default to "nearest"
    both, which copies a flip's pixels exactly; _set_fill sets a layer's own."""

    runs_on_device = True
    PASS_STATE = Layer.PASS_STATE + ("_matrices",)
    _matrices = None  # the last training pass's (n, 6) float64 matrices, for backward
    _fill, _interpolation, _fill_value = fill_mode_code("nearest"), interpolation_code("nearest"), 0.0

    def __init__(self, seed=None, data_format=None, **kwargs):
        super().__init__(**kwargs)
        check_data_format(data_format, type(self).__name__)
        self.seed = seed
        # Its own generator, else (None) its model's, as Dropout: see fastdl.nn.model.build_in_model.
        self.rng = None if seed is None else seeded_generator(seed)

    def _set_fill(self, fill_mode, interpolation, fill_value):
        self._fill, self._interpolation = fill_mode_code(fill_mode), interpolation_code(interpolation)
        self.fill_mode, self.interpolation = fill_mode.lower(), interpolation.lower()
        self.fill_value = self._fill_value = check_fill_value(fill_value)

    def compute_output_shape(self, input_shape):
        check_images(self, input_shape)
        return input_shape

    def forward(self, x, training=False):
        self._check_input(x)
        x = as_layer_input(x, self.dtype, self.input_shape, type(self).__name__)  # (as it is, in a model)
        if not training:
            self._matrices = None
            return x
        if self.rng is None:
            self.rng = np.random.default_rng()
        if self._fill == fill_mode_code("constant"):  # (the only mode that reads it)
            check_fill_fits(self._fill_value, x.dtype)
        n, h, w, _ = x.shape
        matrices = np.ascontiguousarray(self._draw(n, h, w), dtype=np.float64)
        if self.on_device:
            matrices = _device.upload(self._buffers, "matrices", matrices)
        self._matrices = matrices
        return affine_transform_into(x, matrices, self._buffer("out", x.shape), self._fill, self._fill_value,
                                     self._interpolation, self.backend)

    def _check_input(self, x):
        """A TypeError for images that are no real numbers (as_layer_input would drop a complex
        part), a ValueError for another sample shape: in inference, which computes nothing, too."""
        if not _device.is_device(x):
            dtype = np.asarray(x).dtype
            if not (np.issubdtype(dtype, np.number) or dtype == np.bool_) or dtype.kind in "cm":
                raise TypeError(f"{type(self).__name__} takes images of real numbers, got dtype {dtype}")
        if tuple(x.shape[1:]) != tuple(self.input_shape):
            raise ValueError(f"{type(self).__name__} expects inputs of shape (batch, "
                             f"{', '.join(map(str, self.input_shape))}), got {tuple(x.shape)}")

    def backward(self, dout):
        if self._matrices is None:  # an inference pass: the identity
            return dout
        dout = as_layer_input(dout, self.dtype, self.output_shape, type(self).__name__ + " backward")
        if not self.needs_input_grad:
            return None
        _same_batch(dout, self._matrices)
        return affine_transform_grad_into(dout, self._matrices, self._buffer("dx", dout.shape), self._fill,
                                          self._interpolation, self.backend)

    def _draw(self, n, h, w):
        raise NotImplementedError


class RandomFlip(_RandomTransform):
    """Flips each training image left-right and/or top-bottom with probability 1/2, as Keras 3.

    Parameters
    ----------
    mode : {"horizontal", "vertical", "horizontal_and_vertical"}, default "horizontal_and_vertical"
        Which flips. With "horizontal_and_vertical" an image is flipped both ways or not at all (a
        180-degree turn half the time): one draw per image, as Keras 3 (tf.keras 2 drew the two
        flips apart).
    seed : int, optional
        Gives the layer a generator of its own; by default it draws from its model's.
    data_format : None or "channels_last", default None
    """

    def __init__(self, mode="horizontal_and_vertical", seed=None, data_format=None, **kwargs):
        super().__init__(seed, data_format, **kwargs)
        if not isinstance(mode, str) or mode.lower() not in FLIP_MODES:
            raise ValueError(f"RandomFlip mode must be one of {', '.join(map(repr, FLIP_MODES))}, got {mode!r}")
        self.mode = mode.lower()  # (a flip maps pixel centres onto pixel centres: the default
        # nearest sampling copies them exactly)

    def _draw(self, n, h, w):
        flipped = self.rng.random(n) <= 0.5  # Keras' test: a uniform draw <= 0.5
        matrices = np.tile(np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]), (n, 1))
        if self.mode != "vertical":  # column j samples column w - 1 - j
            matrices[flipped, 0], matrices[flipped, 2] = -1.0, w - 1.0
        if self.mode != "horizontal":
            matrices[flipped, 4], matrices[flipped, 5] = -1.0, h - 1.0
        return matrices


class RandomRotation(_RandomTransform):
    """Rotates each training image about its centre by a random angle, as Keras 3.

    Parameters
    ----------
    factor : float or (float, float)
        The angle's range as fractions of a full turn (2 pi), each in [-1, 1]: f gives
        [-|f| * 2 pi, |f| * 2 pi], (lower, upper) [lower * 2 pi, upper * 2 pi] (lower <= upper).
        Positive angles turn the image counter-clockwise.
    fill_mode : {"reflect", "wrap", "constant", "nearest"}, default "reflect"
        How the corners the rotation uncovers are filled: reflect (d c b a | a b c d | d c b a),
        wrap (a b c d | a b c d), constant (fill_value), nearest (a a | a b c d | d d).
    interpolation : {"bilinear", "nearest"}, default "bilinear"
    seed : int, optional
        Gives the layer a generator of its own; by default it draws from its model's.
    fill_value : float, default 0.0
        The value outside the image with fill_mode "constant".
    data_format : None or "channels_last", default None

    Notes
    -----
    Output pixel (x, y) samples the input at x' = cos(t) x - sin(t) y + ox, y' = sin(t) x +
    cos(t) y + oy, which turns about ((w - 1) / 2, (h - 1) / 2): Keras 3's matrix.
    """

    def __init__(self, factor, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0,
                 data_format=None, **kwargs):
        super().__init__(seed, data_format, **kwargs)
        self.factor = check_factor(factor, "RandomRotation factor")
        self._set_fill(fill_mode, interpolation, fill_value)

    def _draw(self, n, h, w):
        angle = self.rng.uniform(self.factor[0] * 2 * math.pi, self.factor[1] * 2 * math.pi, n)
        cos, sin = np.cos(angle), np.sin(angle)
        x_offset = ((w - 1) - (cos * (w - 1) - sin * (h - 1))) / 2
        y_offset = ((h - 1) - (sin * (w - 1) + cos * (h - 1))) / 2
        return np.stack([cos, -sin, x_offset, sin, cos, y_offset], axis=1)


class RandomTranslation(_RandomTransform):
    """Shifts each training image by a random fraction of its height and width, as Keras 3.

    Parameters
    ----------
    height_factor, width_factor : float or (float, float)
        The shift's range as fractions of the height (width), each in [-1, 1]: f gives
        [-|f|, |f|], (lower, upper) itself (lower <= upper). A positive shift moves the image
        down (right); the shift in pixels is the draw times the height (width), not rounded.
    fill_mode, interpolation, seed, fill_value, data_format
        As in RandomRotation.

    Notes
    -----
    The heights are drawn first, then the widths (one of each per image), as Keras does.
    """

    def __init__(self, height_factor, width_factor, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, data_format=None, **kwargs):
        super().__init__(seed, data_format, **kwargs)
        self.height_factor = check_factor(height_factor, "RandomTranslation height_factor")
        self.width_factor = check_factor(width_factor, "RandomTranslation width_factor")
        self._set_fill(fill_mode, interpolation, fill_value)

    def _draw(self, n, h, w):
        dy = self.rng.uniform(*self.height_factor, n) * h
        dx = self.rng.uniform(*self.width_factor, n) * w
        ones, zeros = np.ones(n), np.zeros(n)
        return np.stack([ones, zeros, -dx, zeros, ones, -dy], axis=1)


class RandomZoom(_RandomTransform):
    """Zooms each training image in or out about its centre by a random factor, as Keras 3.

    Parameters
    ----------
    height_factor : float or (float, float)
        The vertical zoom's range, each bound in [-1, 1]: f gives [-|f|, |f|], (lower, upper)
        itself (lower <= upper). The image is sampled 1 + draw times as far from its centre:
        a positive draw zooms out, a negative one in.
    width_factor : float or (float, float), optional
        The same across; None (the default) zooms both ways by the height's draw, keeping the
        aspect ratio.
    fill_mode, interpolation, seed, fill_value, data_format
        As in RandomRotation.

    Notes
    -----
    The heights' draws come first, then the widths', as Keras does.
    """

    def __init__(self, height_factor, width_factor=None, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, data_format=None, **kwargs):
        super().__init__(seed, data_format, **kwargs)
        self.height_factor = check_factor(height_factor, "RandomZoom height_factor")
        self.width_factor = None if width_factor is None else check_factor(width_factor, "RandomZoom width_factor")
        self._set_fill(fill_mode, interpolation, fill_value)

    def _draw(self, n, h, w):
        zoom_y = 1.0 + self.rng.uniform(*self.height_factor, n)
        zoom_x = zoom_y if self.width_factor is None else 1.0 + self.rng.uniform(*self.width_factor, n)
        zeros = np.zeros(n)
        return np.stack([zoom_x, zeros, (w - 1) / 2 * (1 - zoom_x), zeros, zoom_y, (h - 1) / 2 * (1 - zoom_y)], axis=1)
