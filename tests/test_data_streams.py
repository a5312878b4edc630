"""fastdl.data's endless batches of rendered clocks and faces, and the scaling they share with the
course's splits."""

import itertools

import numpy as np
import pytest

from fastdl import nn
from fastdl.data import clock_batches, face_batches, render_clocks, render_faces, scale_images

SIZE = 32  # small pictures: the renderers' cost is per pixel


def test_scale_images_adds_the_channel_axis_and_refuses_other_dtypes():
    images = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    scaled = scale_images(images)
    assert scaled.dtype == np.float32 and scaled.shape == (1, 2, 2, 1)
    np.testing.assert_array_equal(scaled[..., 0], images / np.float32(255))
    with pytest.raises(TypeError, match="uint8"):
        scale_images(images.astype(np.float32))
    with pytest.raises(ValueError, match=r"got shape \(2, 2\)"):
        scale_images(images[0])


@pytest.mark.parametrize("backend", ["numba", "cython", "numpy"])
def test_clock_batches_continue_the_rendered_sequence(backend):
    stream = clock_batches(3, seed=5, first=7, size=SIZE, max_turn=30, faces="one", backend=backend)
    batches = list(itertools.islice(stream, 2))
    images, labels = render_clocks(6, seed=5, first=7, size=SIZE, max_turn=30, faces="one", backend=backend)
    np.testing.assert_array_equal(np.concatenate([x for x, _ in batches]), scale_images(images))
    np.testing.assert_array_equal(np.concatenate([t for _, t in batches]), labels)
    assert batches[0][0].shape == (3, SIZE, SIZE, 1) and batches[0][0].dtype == np.float32


@pytest.mark.parametrize("backend", ["numba", "cython", "numpy"])
def test_face_batches_continue_the_rendered_sequence(backend):
    batches = list(itertools.islice(face_batches(2, seed=1, first=3, size=SIZE, backend=backend), 2))
    images, factors = render_faces(4, seed=1, first=3, size=SIZE, backend=backend)
    np.testing.assert_array_equal(np.concatenate([x for x, _ in batches]), scale_images(images))
    np.testing.assert_array_equal(np.concatenate([f for _, f in batches]), factors)
    assert batches[0][0].shape == (2, SIZE, SIZE, 3)


@pytest.mark.parametrize("make, kwargs, error, match", [
    (clock_batches, {"batch_size": 0}, ValueError, "batch_size"),
    (clock_batches, {"batch_size": 2.5}, TypeError, "batch_size"),
    (clock_batches, {"first": -1}, ValueError, "first"),
    (clock_batches, {"size": 8}, ValueError, "size"),
    (clock_batches, {"faces": "many"}, ValueError, "faces"),
    (clock_batches, {"max_turn": 200}, ValueError, "max_turn"),
    (face_batches, {"seed": -1}, ValueError, "seed"),
    (face_batches, {"size": 4096}, ValueError, "size"),
])
def test_bad_arguments_are_refused_at_the_call_not_the_first_batch(make, kwargs, error, match):
    with pytest.raises(error, match=match):
        make(**{"size": SIZE, **kwargs})


def test_a_clock_model_trains_on_fresh_clocks():
    model = nn.Sequential([nn.Conv2D(2, 3, strides=2, activation="relu", input_shape=(SIZE, SIZE, 1)),
                           nn.Flatten(), nn.Dense(1)], seed=0)
    model.compile("sgd", "mse")
    stream = ((x, t[:, 0] + t[:, 1] / 60) for x, t in clock_batches(4, size=SIZE))
    history = model.fit(stream, epochs=2, steps_per_epoch=3)
    assert len(history.history["loss"]) == 2 and model.optimizer.iterations == 6
