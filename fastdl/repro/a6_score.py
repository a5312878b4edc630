"""Assignment 6's score: the Fréchet distance between generated and real images in the feature
space of a small network that fastdl trains once per data source and caches.

What "it learned faces" means is a number: Gaussians fitted to the features of 2,000 generated
and 2,000 held-out real images are compared with ``fastdl.metrics.frechet_distance`` (FID's
formula on a network of our own, so values compare within fastdl, not with published FIDs).

The feature network (three stride-2 convolutions, Dense 128 features) learns, on synthetic faces,
to predict the renderer's generative factors (face shape, skin, eyes, mouth, hair, background,
pose), so its features see what makes faces differ; on Fashion-MNIST it learns the ten classes.
Image folders and the course's face arrays are scored with the faces network: it reads any
64x64 colour face.
"""

import contextlib
import hashlib
from pathlib import Path

import numpy as np

from fastdl import config, nn
from fastdl.metrics import frechet_distance
from fastdl.data import scale_images

FEATURES = 128
SETTINGS = {  # images and epochs the feature network trains on
    True: {"images": 3000, "epochs": 3},   # quick
    False: {"images": 20000, "epochs": 6},  # full
}
FEATURE_SEED = 7  # renders faces that are none of the training or held-out ones (seed 0)
BATCH = 64


def _network(image_shape, outputs, activation, seed):
    """(model that trains, model of the same layers that gives the Dense-128 features)."""
    images = nn.Input(image_shape, name="image")
    hidden = images
    for i, filters in enumerate((32, 64, 64)):
        hidden = nn.Conv2D(filters, 3, strides=2, padding="same", activation="relu", name=f"conv_{i + 1}")(hidden)
    features = nn.Dense(FEATURES, activation="relu", name="features")(nn.Flatten(name="flatten")(hidden))
    head = nn.Dense(outputs, activation=activation, name="head")(features)
    return nn.Model(images, head, seed=seed, name="scorer"), nn.Model(images, features, seed=seed, name="features")


def _training_data(kind, image_shape, quick, fashion=None):
    """(float32 images, targets) the feature network learns from."""
    settings = SETTINGS[bool(quick)]
    if kind == "fashion":
        images, labels = fashion()
        keep = min(settings["images"], len(images))
        return scale_images(images[:keep]), np.asarray(labels[:keep]).reshape(-1).astype(np.int64)
    from fastdl.data import render_faces

    images, factors = render_faces(settings["images"], seed=FEATURE_SEED, size=image_shape[0])
    factors = np.asarray(factors, dtype=np.float64)
    spread = factors.std(axis=0)
    targets = (factors - factors.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    return scale_images(images), targets.astype(np.float32)


def _head(kind, settings):
    """(outputs, activation, loss, description) of the feature network for a data kind."""
    if kind == "fashion":
        return 10, "softmax", "sparse_categorical_crossentropy", "Fashion-MNIST classes"
    from fastdl.data.face_render import FACTOR_NAMES

    return len(FACTOR_NAMES), None, "mse", f"factors of {settings['images']} synthetic faces"


def cache_path(kind, image_shape, quick, cache_dir=None, seed=0):
    """Where feature_network caches its network for these arguments (a faces network also by
    the renderer's version: a new renderer draws other faces)."""
    settings = SETTINGS[bool(quick)]
    key = f"{kind}-{'x'.join(map(str, image_shape))}-{settings['images']}-{settings['epochs']}-{seed}"
    if kind != "fashion":
        from fastdl.data.face_render import RENDERER_VERSION

        key += f"-renderer{RENDERER_VERSION}"
    directory = Path(cache_dir) if cache_dir is not None else config.cache_dir() / "a6"
    return directory / f"features-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def training_seconds(kind, image_shape, quick, cache_dir=None, seed=0):
    """Seconds feature_network takes here to train its network: 0 where it reads the network
    from the cache, else a timed training step (the fastest of a few,
    :func:`fastdl.repro.report.fastest_call`) times its steps. Reading its training images is
    left out (rendering 20,000 faces takes seconds)."""
    from fastdl.repro import report

    settings = SETTINGS[bool(quick)]
    scorer, _, cached = _scorer(kind, image_shape, quick, cache_dir, seed)
    if cached:
        return 0.0
    outputs = _head(kind, settings)[0]
    rng = np.random.default_rng(seed)
    images = rng.random((BATCH, *image_shape), dtype=np.float32)
    targets = (rng.integers(0, outputs, BATCH) if kind == "fashion"
               else rng.standard_normal((BATCH, outputs), dtype=np.float32))
    scorer.train_on_batch(images, targets)  # allocation and first-call costs
    step = report.fastest_call(lambda i: scorer.train_on_batch(images, targets), calls=2)
    return step * -(-settings["images"] // BATCH) * settings["epochs"]


def feature_network(kind, image_shape, quick, fashion=None, cache_dir=None, seed=0, verbose=0):
    """The trained feature model for a data kind ("faces" or "fashion"), from the cache when there.

    Parameters
    ----------
    kind : {"faces", "fashion"}
    image_shape : tuple (size, size, channels)
    quick : bool
        The quick network trains on fewer images for fewer epochs (cached apart).
    fashion : callable, optional
        ``fashion() -> (uint8 images, labels)``: Fashion-MNIST's training images, padded to
        image_shape (kind "fashion"); called only when the network is not in the cache.
    cache_dir : Path, optional
        Default: ``$FASTDL_CACHE_DIR/a6`` (``~/.cache/fastdl/a6``).

    Returns
    -------
    (fastdl.nn.Model giving (n, 128) features, str describing it)
    """
    settings = SETTINGS[bool(quick)]
    what = f"feature network ({_head(kind, settings)[3]}, {settings['epochs']} epochs)"
    scorer, features, cached = _scorer(kind, image_shape, quick, cache_dir, seed)
    if cached:
        return features, what + ", cached"
    path = cache_path(kind, image_shape, quick, cache_dir, seed)
    scorer.fit(*_training_data(kind, image_shape, quick, fashion), epochs=settings["epochs"], batch_size=BATCH,
               verbose=verbose, seed=seed)
    with contextlib.suppress(OSError):  # an unwritable cache: scoring goes on without it
        scorer.save(path)
    return features, what


def _scorer(kind, image_shape, quick, cache_dir, seed):
    """(compiled model that trains, its features model, whether the trained network was read
    from the cache into them): no cache, an unreadable or unsearchable one, is False (train)."""
    outputs, activation, loss, _ = _head(kind, SETTINGS[bool(quick)])
    scorer, features = _network(image_shape, outputs, activation, seed)
    scorer.compile(nn.Adam(1e-3), loss)
    try:
        scorer.load(cache_path(kind, image_shape, quick, cache_dir, seed))
    except (OSError, ValueError, KeyError):
        return scorer, features, False
    return scorer, features, True


def features_of(network, images_unit):
    """(n, 128) float64 features of float32 images in [0, 1]."""
    return network.predict(images_unit, batch_size=256).astype(np.float64)


def score(network, generated_unit, reference_features):
    """Fréchet distance of generated images (float32 in [0, 1]) from the reference features."""
    return float(frechet_distance(features_of(network, generated_unit), reference_features))
