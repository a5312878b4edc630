"""CIFAR-10 from cifar-10-python.tar.gz, as ``keras.datasets.cifar10.load_data()``.

The tarball holds ``cifar-10-batches-py/data_batch_1`` ... ``data_batch_5`` and ``test_batch``:
Python 2 pickles of dicts with ``b"data"`` (uint8, one 3072-byte row per image: the R, G and B
planes of 32x32) and ``b"labels"`` (list of int); batches re-pickled by Python 3 (protocols 2 to 5)
are read too. The members are read straight from the tarball
and unpickled by an unpickler that builds numpy arrays and nothing else: a pickle can run any
code its author likes, so no other global (os.system, eval, ...) is ever looked up.
"""

import codecs
import io
import pickle
import tarfile
import zlib

import numpy as np

from fastdl.data import _download, _files

NAME = "cifar-10"
BASE_URL = "https://www.cs.toronto.edu/~kriz/"
TARBALL = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
ROW_BYTES = 3 * 32 * 32
N_CLASSES = 10

SYSTEM_DIRS = ()  # no system-wide copy is looked for

SHA256 = {TARBALL: "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"}
FILES = tuple(SHA256)

# What a pickled numpy array needs; numpy 2 moved numpy.core to numpy._core, and the published
# pickles (numpy 1, Python 2) name the old module. ndarray.__reduce__ gives this numpy's own
# _reconstruct; protocol 5 pickles an array as _frombuffer(bytes, dtype, shape, order), which
# builds it from the bytes and nothing else (an object dtype is refused by np.frombuffer).
_RECONSTRUCT = np.empty(0).__reduce__()[0]
_FROMBUFFER = np.empty(1).__reduce_ex__(5)[0]


def _latin1_encode(text, encoding="utf-8"):
    """_codecs.encode as Python 3's protocol 2 uses it (bytes as latin-1 text), any other codec refused."""
    if encoding.replace("_", "-").lower() not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refused to encode with {encoding!r}: a CIFAR-10 batch only needs latin1")
    return codecs.encode(text, encoding)


def _empty_bytes(*args):
    """bytes() as protocol 2 pickles b"" (bytes(n) and the like are refused)."""
    if args:
        raise pickle.UnpicklingError("refused to call bytes with arguments: a pickle only needs bytes() for b''")
    return b""


_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # Python 3 pickles bytes with protocol 2 as _codecs.encode(text, "latin1"), and b"" as bytes().
    ("_codecs", "encode"): _latin1_encode,
    ("__builtin__", "bytes"): _empty_bytes,
    ("builtins", "bytes"): _empty_bytes,
}


class ArrayUnpickler(pickle.Unpickler):
    """Unpickle dicts, lists, numbers, bytes and numpy arrays; refuse every other global."""

    def find_class(self, module, name):
        """The allowed numpy global, or :class:`pickle.UnpicklingError` for anything else."""
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused to load global {module}.{name}: a CIFAR-10 batch holds only numpy "
                f"arrays, lists, numbers and bytes") from None


def load_cifar10(path=None, verify=True):
    """Load CIFAR-10 as ``((x_train, y_train), (x_test, y_test))``, like Keras.

    Parameters
    ----------
    path : str or Path, optional
        Directory holding cifar-10-python.tar.gz (or a ``cifar-10/`` subfolder with it). Looked
        at first; then $FASTDL_DATA and the download cache ($FASTDL_CACHE_DIR, default
        ~/.cache/fastdl). The tarball itself is read (and checked against its published
        SHA-256), never a ``cifar-10-batches-py/`` folder extracted from it.
    verify : bool, default True
        Check the tarball against the published SHA-256; False accepts other data in the same
        format.

    Returns
    -------
    (x_train, y_train), (x_test, y_test)
        x uint8 of shape (n_samples, 32, 32, 3), channels-last RGB (50000 train, 10000 test);
        y uint8 of shape (n_samples, 1), classes 0-9.

    Raises
    ------
    DatasetNotFoundError
        ``path``, or $FASTDL_DATA when the search reaches it, names no directory, or the
        tarball is in none of the places looked at; the message lists them (and an extracted
        ``cifar-10-batches-py/`` folder found there instead).
    ValueError
        The tarball is damaged, lacks a batch, holds a pickle of anything but arrays and
        lists, or, with ``verify=True``, is not the published file.
    """
    (tarball,) = locate(path)
    if verify:
        _files.check_file(tarball, SHA256[TARBALL], NAME, system_dirs=SYSTEM_DIRS)
    batches = _read_batches(tarball, TRAIN_BATCHES + (TEST_BATCH,))
    train = [batches[name] for name in TRAIN_BATCHES]
    x_train = _to_images(np.concatenate([data for data, _ in train]))
    y_train = np.concatenate([labels for _, labels in train]).reshape(-1, 1)
    x_test = _to_images(batches[TEST_BATCH][0])
    y_test = batches[TEST_BATCH][1].reshape(-1, 1)
    return (x_train, y_train), (x_test, y_test)


def locate(path=None):
    """Path of cifar-10-python.tar.gz, as a one-element list.

    Raises
    ------
    DatasetNotFoundError
        As :func:`load_cifar10`.
    """
    try:
        return _files.locate(NAME, FILES, path, SYSTEM_DIRS)
    except _files.DatasetNotFoundError as error:
        extracted = [directory / FOLDER for directory, _ in _files.search_dirs(NAME, path, SYSTEM_DIRS)
                     if (directory / FOLDER).is_dir()]
        if not extracted:
            raise
        # Keras leaves the tarball's content extracted there: say why that is not read.
        raise _files.DatasetNotFoundError(
            f"{error}\n{extracted[0]} is the tarball's content, extracted; fastdl reads {TARBALL} itself "
            f"(whose published SHA-256 it checks): put it in {extracted[0].parent}") from None


def download(directory=None, base_url=None):
    """Fetch cifar-10-python.tar.gz into ``directory/cifar-10`` (default: the download cache).

    Parameters
    ----------
    directory : str or Path, optional
        Parent directory; default $FASTDL_CACHE_DIR or ~/.cache/fastdl.
    base_url : str, optional
        URL prefix of the tarball; default ``BASE_URL``.

    Returns
    -------
    dict
        Path -> "downloaded", "already present", or "downloaded; the file there before ..."
        naming the free name a file that failed the checksum was renamed to (see
        :func:`fastdl.data._download.download`).
    """
    return _download.download(NAME, FILES, base_url or BASE_URL, SHA256, directory)


def _to_images(rows):
    """(n, 3072) rows of R, G, B planes -> C-contiguous (n, 32, 32, 3)."""
    return np.ascontiguousarray(rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def _read_batches(tarball, names):
    """{batch name: (data, labels)} read in one pass over the tarball (gzip cannot seek back)."""
    wanted = {f"{FOLDER}/{name}": name for name in names}
    batches = {}
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for member in tar:
                if member.name in wanted and member.isfile():
                    where = f"{tarball}:{member.name}"
                    batches[wanted[member.name]] = _parse_batch(
                        tar.extractfile(member).read(), where)
    except (tarfile.TarError, EOFError, zlib.error) as error:
        raise ValueError(f"{tarball}: damaged or truncated tarball ({error})") from error
    missing = [member for member, name in wanted.items() if name not in batches]
    if missing:
        raise ValueError(f"{tarball} lacks {', '.join(missing)}")
    return batches


def _parse_batch(raw, where):
    """Unpickle one batch with :class:`ArrayUnpickler` and check its data and labels."""
    try:
        batch = ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as error:  # a damaged pickle can fail in many ways; name the member
        raise ValueError(f"{where}: not a CIFAR-10 batch ({type(error).__name__}: {error})") \
            from error
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError(f"{where}: expected a dict with b'data' and b'labels'")
    data = batch[b"data"]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == ROW_BYTES):
        raise ValueError(f"{where}: b'data' must be an uint8 array of shape (n, {ROW_BYTES})")
    labels = np.asarray(batch[b"labels"])
    if labels.shape != (len(data),) or (labels.size and labels.dtype.kind not in "iu"):
        raise ValueError(f"{where}: b'labels' must be {len(data)} integers, one per image")
    if labels.size and (labels.min() < 0 or labels.max() >= N_CLASSES):
        raise ValueError(f"{where}: labels must lie in 0-9")
    return data, labels.astype(np.uint8)
