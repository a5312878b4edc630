"""Endless training batches from the renderers: fresh clocks or faces at every step, as a model's
fit takes them (``model.fit(clock_batches(100, max_turn=30), steps_per_epoch=180, epochs=10)``,
with the labels mapped to the model's targets).

A network that sees each image once cannot learn it by heart: where a fixed set of 14,400 freely
turned clocks is learnt by heart and read at chance (README, "Datasets"), a stream gives as many
as the training has steps for. Image i of a stream is image i of the renderer's seed, so a stream
is as reproducible as a rendered set, and a stopped training goes on with new images from
``first=`` the number it has trained on."""

import functools

import numpy as np

from fastdl._validation import check_int
from fastdl.data.clock_render import render_clocks
from fastdl.data.face_render import render_faces


def scale_images(images):
    """uint8 images as float32 in [0, 1] (x / 255), channels-last with a channel axis.

    The one scaling every split of every assignment goes through (a4's test images too: the
    write-up's CNN scored 0.22 on test because its test images were never scaled), and every
    batch of clock_batches and face_batches.

    Parameters
    ----------
    images : ndarray of shape (n, height, width) or (n, height, width, channels), uint8

    Returns
    -------
    ndarray of shape (n, height, width, channels), float32
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"images must be uint8 pixels (0-255), got dtype {images.dtype}")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(f"images must be (n, height, width[, channels]), got shape {images.shape}")
    return images.astype(np.float32) / np.float32(255)


def clock_batches(batch_size=100, seed=0, first=0, *, size=150, max_turn=180.0, faces="varied", backend=None):
    """An endless iterator of batches of synthetic clocks, (images, labels), for a model's fit.

    Batch k holds images first + k * batch_size onwards of ``render_clocks(..., seed=seed)``,
    scaled as the course scaled its clocks (:func:`scale_images`). Map the labels to what a
    model learns on the way, e.g. for assignment 5's multi-head model::

        from fastdl.repro import a5_models
        model = a5_models.compiled_model("multihead")
        batches = ((x, a5_models.targets("multihead", t)) for x, t in clock_batches(100, max_turn=30))
        model.fit(batches, steps_per_epoch=180, epochs=10)   # 180,000 clocks, each seen once

    ``max_turn=30`` as load_clocks' set: turned by any angle (render_clocks' default, kept here
    so that the stream is render_clocks' images), clocks keep the course's networks at chance.

    Parameters
    ----------
    batch_size : int >= 1, default 100
        The course's batch size for its clock models.
    seed, first, size, max_turn, faces, backend
        As :func:`fastdl.data.render_clocks` (``first``: the stream's first image).

    Returns
    -------
    iterator of (images, labels)
        images: ndarray (batch_size, size, size, 1), float32 in [0, 1]; labels: ndarray
        (batch_size, 2), int64, [hour 0-11, minute 0-59].

    Raises
    ------
    ValueError, TypeError
        At once (not at the first batch), for an argument render_clocks would refuse.
    """
    render = functools.partial(render_clocks, seed=seed, size=size, max_turn=max_turn, faces=faces, backend=backend)
    return _stream(render, batch_size, first)


def face_batches(batch_size=32, seed=0, first=0, *, size=64, backend=None):
    """An endless iterator of batches of synthetic faces, (images, factors), for a model's fit.

    Batch k holds faces first + k * batch_size onwards of ``render_faces(..., seed=seed)``,
    scaled to [0, 1] (:func:`scale_images`). An autoencoder learns the images themselves::

        model.fit(((x, x) for x, _ in face_batches(32)), steps_per_epoch=300, epochs=10)

    Parameters
    ----------
    batch_size : int >= 1, default 32
    seed, first, size, backend
        As :func:`fastdl.data.render_faces` (``first``: the stream's first face).

    Returns
    -------
    iterator of (images, factors)
        images: ndarray (batch_size, size, size, 3), float32 in [0, 1]; factors: ndarray
        (batch_size, len(FACE_FACTOR_NAMES)), float64, as render_faces gives them.

    Raises
    ------
    ValueError, TypeError
        At once (not at the first batch), for an argument render_faces would refuse.
    """
    render = functools.partial(render_faces, seed=seed, size=size, backend=backend)
    return _stream(render, batch_size, first)


def _stream(render, batch_size, first):
    """The batches of render(batch_size, first=...) from `first` on, the first rendered now: the
    arguments are checked here, where a generator would check them only at its first batch."""
    batch_size = check_int(batch_size, "batch_size", 1)
    first = check_int(first, "first", 0)
    images, values = render(batch_size, first=first)
    return _batches(render, batch_size, first, (scale_images(images), values))


def _batches(render, batch_size, first, batch):
    while True:
        yield batch
        first += batch_size
        images, values = render(batch_size, first=first)
        batch = scale_images(images), values
