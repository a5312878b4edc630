"""Tiny Fashion-MNIST and CIFAR-10 files in the exact formats of the published ones.

Other tests import these helpers (``import dataset_files``). The files are random, so they never
match the published SHA-256 checksums: load them with ``verify=False``, or monkeypatch the
expected-digest tables to test the checksum path.
"""

import gzip
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np

FASHION_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
CIFAR_TARBALL = "cifar-10-python.tar.gz"
CIFAR_FOLDER = "cifar-10-batches-py"


def idx_bytes(array):
    """An uint8 array in IDX format: magic 0x08 0x<ndim>, big-endian dims, then the data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_fashion_mnist(directory, n_train=60, n_test=20, seed=0, compress=True):
    """Write the four Fashion-MNIST IDX files (gzip unless ``compress=False``) into directory.

    Returns
    -------
    dict
        "x_train", "y_train", "x_test", "y_test": the uint8 arrays written, as the loader
        should return them.
    """
    rng = np.random.default_rng(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for key, name in FASHION_FILES.items():
        data = idx_bytes(arrays[key])
        if compress:
            (directory / f"{name}.gz").write_bytes(gzip.compress(data, mtime=0))
        else:
            (directory / name).write_bytes(data)
    return arrays


class _Python2Pickler(pickle._Pickler):
    """Write bytes and str as Python 2 ``str``, numpy as ``numpy.core``: like the CIFAR-10 batches.

    (In Python 2 every ``str``, numpy's dtype codes included, was a byte string.)
    """

    dispatch = dict(pickle._Pickler.dispatch)

    def save_python2_str(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    def save_ascii_str(self, obj):
        self.save_python2_str(obj.encode("ascii"))

    dispatch[bytes] = save_python2_str
    dispatch[str] = save_ascii_str

    def save_global(self, obj, name=None):
        module = obj.__module__.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)


def python2_pickle(obj):
    """Protocol-2 pickle of obj as Python 2 wrote it (bytes as ``str``)."""
    buffer = io.BytesIO()
    _Python2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def write_tar(path, members):
    """A gzip tarball holding ``{member name: bytes}``."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def write_cifar10(directory, n_per_batch=10, n_test=10, seed=0):
    """Write a cifar-10-python.tar.gz in the published format into directory.

    The members are ``cifar-10-batches-py/data_batch_1`` ... ``data_batch_5``, ``test_batch``
    and ``batches.meta``: protocol-2 pickles of dicts with bytes keys, ``b"data"`` an uint8
    array of shape (n, 3072) (R, G and B planes of 32x32) and ``b"labels"`` a list of int.

    Returns
    -------
    dict
        "x_train" uint8 (5 * n_per_batch, 32, 32, 3), "y_train" uint8 (5 * n_per_batch, 1),
        "x_test", "y_test" likewise: what the loader should return.
    """
    rng = np.random.default_rng(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    members, images, labels = {}, {"train": [], "test": []}, {"train": [], "test": []}
    batches = [(f"data_batch_{i}", "train", n_per_batch) for i in range(1, 6)]
    for batch, split, n in batches + [("test_batch", "test", n_test)]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        batch_labels = [int(label) for label in rng.integers(0, 10, n)]
        members[f"{CIFAR_FOLDER}/{batch}"] = python2_pickle({
            b"batch_label": f"{batch} of tiny test data".encode(),
            b"labels": batch_labels,
            b"data": data,
            b"filenames": [f"image_{i}.png".encode() for i in range(n)],
        })
        images[split].append(data.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1))
        labels[split].append(batch_labels)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
             "truck"]
    members[f"{CIFAR_FOLDER}/batches.meta"] = python2_pickle({
        b"label_names": [name.encode() for name in names],
        b"num_cases_per_batch": n_per_batch, b"num_vis": 3072})
    write_tar(directory / CIFAR_TARBALL, members)
    arrays = {}
    for split in ("train", "test"):
        arrays[f"x_{split}"] = np.ascontiguousarray(np.concatenate(images[split]))
        arrays[f"y_{split}"] = np.concatenate(labels[split]).astype(np.uint8).reshape(-1, 1)
    return arrays
