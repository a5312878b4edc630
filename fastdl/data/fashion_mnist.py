"""Fashion-MNIST from its four IDX files, as ``keras.datasets.fashion_mnist.load_data()``.

IDX format: a big-endian 32-bit magic number 0x0000080N (unsigned bytes, N dimensions), N
big-endian 32-bit sizes, then the data row-major. The published files are gzipped; the same
files uncompressed are accepted too. Debian's ``dataset-fashion-mnist`` package installs them
under /usr/share/datasets/fashion-mnist.
"""

import math
import struct

import numpy as np

from fastdl.data import _download, _files

NAME = "fashion-mnist"
BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
SYSTEM_DIRS = ("/usr/share/datasets/fashion-mnist",)
HINT = "or on Debian/Ubuntu `apt-get install dataset-fashion-mnist`"
IMAGE_SHAPE = (28, 28)
N_CLASSES = 10

# SHA-256 of each file's decompressed content, so the .gz and the uncompressed copy both check.
SHA256 = {
    "train-images-idx3-ubyte.gz":
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz":
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz":
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz":
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
FILES = tuple(SHA256)  # train images, train labels, test images, test labels


def load_fashion_mnist(path=None, verify=True):
    """Load Fashion-MNIST as ``((x_train, y_train), (x_test, y_test))``, like Keras.

    Parameters
    ----------
    path : str or Path, optional
        Directory holding the four IDX files (or a ``fashion-mnist/`` subfolder with them).
        Looked at first; then $FASTDL_DATA, the download cache ($FASTDL_CACHE_DIR, default
        ~/.cache/fastdl) and /usr/share/datasets/fashion-mnist. Each file may be gzipped (its
        published name) or not (the name without .gz); where a directory holds both, the
        gzipped one is read and the other ignored, whatever it holds.
    verify : bool, default True
        Check each file's decompressed content against the published SHA-256; False accepts
        other data in the same format.

    Returns
    -------
    (x_train, y_train), (x_test, y_test)
        x uint8 of shape (n_samples, 28, 28) (60000 train, 10000 test); y uint8 of shape
        (n_samples,), classes 0-9.

    Raises
    ------
    DatasetNotFoundError
        ``path``, or $FASTDL_DATA when the search reaches it, names no directory or holds only
        some of the files, or no directory holds the files; the message lists where they were
        looked for and how to fetch them.
    ValueError
        A file is not valid IDX data or, with ``verify=True``, not the published file (the
        message gives the `fastdl data download` command that puts the published one where
        this search reads it).
    """
    paths = locate(path)
    arrays = [_read_idx(file, SHA256[name], 3 if "images" in name else 1, verify)
              for file, name in zip(paths, FILES)]
    x_train, y_train, x_test, y_test = arrays
    for images, labels, image_path, label_path in ((x_train, y_train, *paths[:2]),
                                                   (x_test, y_test, *paths[2:])):
        if len(images) != len(labels):
            raise ValueError(f"{label_path} holds {len(labels)} labels but {image_path} "
                             f"holds {len(images)} images")
        if labels.size and labels.max() >= N_CLASSES:
            raise ValueError(f"{label_path}: label {labels.max()} is outside 0-9")
    return (x_train, y_train), (x_test, y_test)


def locate(path=None):
    """Paths of the four files (train images, train labels, test images, test labels).

    Raises
    ------
    DatasetNotFoundError
        As :func:`load_fashion_mnist`.
    """
    return _files.locate(NAME, FILES, path, SYSTEM_DIRS, gzip_content=True, hint=HINT)


def download(directory=None, base_url=None):
    """Fetch the four files into ``directory/fashion-mnist`` (default: the download cache).

    Parameters
    ----------
    directory : str or Path, optional
        Parent directory; default $FASTDL_CACHE_DIR or ~/.cache/fastdl.
    base_url : str, optional
        URL prefix of the files; default ``BASE_URL``.

    Returns
    -------
    dict
        Path -> "downloaded", "already present", or "downloaded; the file there before ..."
        naming the free name a file that failed the checksum was renamed to (see
        :func:`fastdl.data._download.download`).
    """
    return _download.download(NAME, FILES, base_url or BASE_URL, SHA256, directory,
                           gzip_content=True)


def _read_idx(path, expected, ndim, verify):
    """Read one IDX file of unsigned bytes with ``ndim`` dimensions; ValueError names it."""
    content = _files.read_verified(path, expected, NAME, verify, SYSTEM_DIRS)
    header = 4 * (1 + ndim)
    if len(content) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(content)} bytes, expected "
                         f"{header})")
    magic, *shape = struct.unpack_from(f">{1 + ndim}I", content)
    if magic != 0x800 + ndim:
        raise ValueError(f"{path}: magic number 0x{magic:08x}, expected 0x{0x800 + ndim:08x} "
                         f"(IDX file of unsigned bytes with {ndim} dimension(s))")
    if ndim == 3 and tuple(shape[1:]) != IMAGE_SHAPE:
        raise ValueError(f"{path}: images are {shape[1]}x{shape[2]}, expected 28x28")
    size = math.prod(shape)
    if len(content) != header + size:
        problem = "is truncated" if len(content) < header + size else "has trailing bytes"
        raise ValueError(f"{path} {problem}: its header says {size} bytes of data "
                         f"(shape {tuple(shape)}), it holds {len(content) - header}")
    return np.frombuffer(content, dtype=np.uint8, offset=header).reshape(shape)
