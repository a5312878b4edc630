"""Datasets: loaders of the course's and public data, renderers of synthetic clocks and faces, a downloader.

Only :func:`download_dataset` (``fastdl data download``) uses the network.

``DATASETS`` lists the known datasets for ``fastdl data list``, one entry per loader.
"""

from fastdl.data._files import DatasetNotFoundError
from fastdl.data.cifar10 import load_cifar10
from fastdl.data.clock_render import render_clocks
from fastdl.data.clocks import generate_clocks, load_clocks
from fastdl.data.face_render import FACTOR_NAMES as FACE_FACTOR_NAMES
from fastdl.data.face_render import render_faces
from fastdl.data.faces import generate_faces
from fastdl.data.image_folder import load_face_array, load_image_folder
from fastdl.data.digits import (
    COURSE_NAME,
    EMBEDDED_NAME,
    DigitsDataset,
    load_digits_dataset,
    load_embedded_digits,
    load_leiden_digits,
    resolve_data_dir,
)
from fastdl.data.fashion_mnist import load_fashion_mnist
from fastdl.data.streams import clock_batches, face_batches, scale_images

__all__ = [
    "COURSE_NAME",
    "DATASETS",
    "EMBEDDED_NAME",
    "DatasetNotFoundError",
    "DigitsDataset",
    "FACE_FACTOR_NAMES",
    "dataset_locations",
    "download_dataset",
    "clock_batches",
    "face_batches",
    "generate_clocks",
    "generate_faces",
    "load_cifar10",
    "load_clocks",
    "load_face_array",
    "load_image_folder",
    "render_clocks",
    "render_faces",
    "load_digits_dataset",
    "load_embedded_digits",
    "load_fashion_mnist",
    "load_leiden_digits",
    "resolve_data_dir",
    "scale_images",
]

# name -> (one-line description, loader name, files it reads)
DATASETS = {
    "leiden-digits": (
        "course handwritten digits, 1707 train / 1000 test, 16x16 in [-1, 1] (assignments 1-2)",
        "fastdl.data.load_leiden_digits",
        ("train_in.csv", "train_out.csv", "test_in.csv", "test_out.csv"),
    ),
    "fashion-mnist": (
        "Zalando's Fashion-MNIST, 60000 train / 10000 test, 28x28 uint8, 10 classes",
        "fastdl.data.load_fashion_mnist",
        ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    ),
    "cifar-10": (
        "CIFAR-10, 50000 train / 10000 test, 32x32x3 uint8, 10 classes",
        "fastdl.data.load_cifar10",
        ("cifar-10-python.tar.gz",),
    ),
    "clocks": (
        "course clock images, 18000 150x150 uint8 grayscale, labels [hour, minute] "
        "(assignment 5); else synthetic clocks rendered on first use",
        "fastdl.data.load_clocks",
        ("images.npy", "labels.npy"),
    ),
    "faces": (
        "synthetic cartoon faces, 64x64x3 uint8 with their generative factors (assignment 6), rendered "
        "on demand; real faces: `fastdl reproduce a6 --data folder:PATH` (PNG/JPEG) or npy:PATH",
        "fastdl.data.load_face_array",
        ("images.npy", "factors.npy"),
    ),
}


def _downloadable():
    """Dataset name -> its module (which has download, SYSTEM_DIRS)."""
    from fastdl.data import cifar10, fashion_mnist

    return {fashion_mnist.NAME: fashion_mnist, cifar10.NAME: cifar10}


def download_dataset(name, data_dir=None):
    """Fetch a dataset's published files into ``data_dir/name``, verified by SHA-256.

    Parameters
    ----------
    name : {"fashion-mnist", "cifar-10"}
        The dataset.
    data_dir : str or Path, optional
        Parent directory; default $FASTDL_CACHE_DIR or ~/.cache/fastdl, where the loaders look.

    Returns
    -------
    dict
        Path -> "downloaded", "already present" (a valid file is not fetched again), or
        "downloaded; the file there before, not the published one, is now NAME.replaced".
    """
    modules = _downloadable()
    if name not in modules:
        raise ValueError(f"cannot download {name!r}; downloadable: {', '.join(modules)}")
    return modules[name].download(data_dir)


def dataset_locations(name, data_dir=None):
    """Where a dataset is looked for, in order, as a list of (place, note) strings.

    Parameters
    ----------
    name : str
        A key of ``DATASETS``.
    data_dir : str or Path, optional
        An explicit directory (the ``--data-dir`` option), which is looked at first.

    Returns
    -------
    list of (str, str)
    """
    from pathlib import Path

    from fastdl import config

    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    if name == "clocks":
        from fastdl.data import clocks

        return clocks.locations(data_dir)
    if name == "faces":
        from fastdl.data import faces

        return [(str(faces.default_directory()), "`fastdl data generate faces` writes a set here; a6 reads it "
                 "with --data npy:<this folder>/images.npy, and renders its own faces otherwise")]
    modules = _downloadable()
    if name in modules:
        from fastdl.data._files import describe_places

        return describe_places(name, data_dir, modules[name].SYSTEM_DIRS)
    places = []
    if data_dir is not None:
        places.append((str(Path(data_dir)), "--data-dir (or its leiden-digits/ subfolder)"))
    env = config.data_dir()
    if env is None:
        places.append(("$FASTDL_DATA", "unset"))
    else:
        places.append((str(Path(env)), "$FASTDL_DATA (or its leiden-digits/ subfolder)"))
    if name == "leiden-digits":
        places.append(("sklearn.datasets.load_digits", "embedded default when neither is set: "
                       + EMBEDDED_NAME))
    return places
