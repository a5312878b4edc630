"""The course's handwritten digits (16x16, "leiden-digits") and the embedded 8x8 fallback.

The course data is four comma-separated files: ``train_in.csv`` / ``test_in.csv`` hold one
image per line (256 values in [-1, 1], 16x16 row-major) and ``train_out.csv`` /
``test_out.csv`` hold one integer label 0-9 per line. Nothing here touches the network: when
no directory is given and $FASTDL_DATA is unset, scikit-learn's bundled 8x8 digits stand in,
and every result names which of the two it came from.
"""

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastdl import config
from fastdl.data._files import DatasetNotFoundError, file_sha256

COURSE_NAME = "leiden-digits (course data)"
CUSTOM_NAME = "leiden-digits format (unverified custom data)"
EMBEDDED_NAME = "scikit-learn digits 8x8 (embedded default)"
SUBFOLDER = "leiden-digits"
N_FEATURES = 256
IMAGE_SHAPE = (16, 16)
N_CLASSES = 10

# SHA-256 of the files handed out with the course; a match is what lets a result say
# "course data" rather than "some CSV files of the same shape".
COURSE_SHA256 = {
    "train_in.csv": "6ef54543a0a87a7954aaa4d0f67853f34b208f0f578b4fa6c0b793b758bb32f1",
    "train_out.csv": "c8c69738935c97e8dfe8e25d823c259153929d2f16e7a320d671d8476c917254",
    "test_in.csv": "92eaee35337f1d03bed1a676b95969f96f34cf164b266b035ab6ef98beec9a12",
    "test_out.csv": "8c886d9ef36bfe0dc5e8d99cd06310f8e3f97574d01449ff807b8ac97913e1f1",
}
FILES = tuple(COURSE_SHA256)

# The course split is 1707 train : 1000 test; the embedded default keeps that proportion.
COURSE_TRAIN_FRACTION = 1707 / 2707
EMBEDDED_SEED = 0


@dataclass(frozen=True)
class DigitsDataset:
    """A train/test split of digit images with the name of where it came from.

    Attributes
    ----------
    X_train, X_test : ndarray of shape (n_samples, n_features), float64 in [-1, 1]
        Images flattened row-major.
    y_train, y_test : ndarray of shape (n_samples,), int64
        Labels 0-9.
    name : str
        Human-readable data source, e.g. "leiden-digits (course data)"; print it with results.
    image_shape : tuple of int
        (16, 16) for the course data, (8, 8) for the embedded default.
    source : str
        Directory the CSV files were read from, or the embedded dataset's origin.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    name: str
    image_shape: tuple
    source: str

    @property
    def n_classes(self):
        """Number of digit classes (always 10)."""
        return N_CLASSES

    def describe(self):
        """One line naming the data source and the split sizes."""
        return (f"{self.name}: {len(self.y_train)} train / {len(self.y_test)} test, "
                f"{self.image_shape[0]}x{self.image_shape[1]} images, from {self.source}")

    def as_tuples(self):
        """Return ``((X_train, y_train), (X_test, y_test))``."""
        return (self.X_train, self.y_train), (self.X_test, self.y_test)


def load_leiden_digits(path=None, verify=True):
    """Load the course digits as ``((X_train, y_train), (X_test, y_test))``.

    Parameters
    ----------
    path : str or Path, optional
        Directory holding train_in.csv, train_out.csv, test_in.csv and test_out.csv (or a
        ``leiden-digits/`` subfolder with them). None: $FASTDL_DATA, and when that is unset too,
        scikit-learn's bundled 8x8 digits (see :func:`load_digits_dataset`).
    verify : bool, default True
        Check the files against the course's SHA-256 checksums; False accepts other data of the
        same format.

    Returns
    -------
    (X_train, y_train), (X_test, y_test)
        X float64 of shape (n_samples, n_features) in [-1, 1]; y int64 of shape (n_samples,).

    Raises
    ------
    DatasetNotFoundError
        The directory or one of the four files is missing (the message names it); a
        FileNotFoundError.
    ValueError
        A file is malformed (also: not UTF-8/ASCII text) or, with ``verify=True``, is not the
        course's file.
    """
    return load_digits_dataset(path, verify=verify).as_tuples()


def load_digits_dataset(path=None, verify=True):
    """Load the digits with the name of their source; see :func:`load_leiden_digits`.

    Parameters
    ----------
    path : str or Path, optional
        Directory with the course CSV files (or its parent holding ``leiden-digits/``).
    verify : bool, default True
        Require the course files' SHA-256 checksums.

    Returns
    -------
    DigitsDataset
    """
    directory = resolve_data_dir(path)
    if directory is None:
        return load_embedded_digits()
    return _load_csv_dir(directory, verify)


def resolve_data_dir(path=None):
    """The directory holding the four CSV files, or None for the embedded default.

    ``path`` wins over $FASTDL_DATA. Either may point at the files' own directory or at a
    parent holding a ``leiden-digits/`` subfolder.

    Raises
    ------
    DatasetNotFoundError
        The given directory does not exist or lacks one of the files; the message names
        every path that was looked for. (A FileNotFoundError; `fastdl reproduce all` skips
        the assignments whose data this is and runs the rest.)
    """
    origin = "the path argument or --data-dir"
    if path is None:
        path = config.data_dir()
        origin = "$FASTDL_DATA"
        if path is None:
            return None
    base = Path(path).expanduser()
    if not base.is_dir():
        raise DatasetNotFoundError(f"digits data directory not found: {base} (from {origin})")
    candidates = [base, base / SUBFOLDER]
    for candidate in candidates:
        if all((candidate / name).is_file() for name in FILES):
            return candidate
    # Report the missing files of the candidate that has the most of them, so a single
    # missing file is named instead of a list of everything in two places.
    best = max(candidates, key=lambda c: sum((c / n).is_file() for n in FILES))
    missing = [str(best / name) for name in FILES if not (best / name).is_file()]
    if len(missing) == len(FILES):
        # No search goes on from here: the only other digits are scikit-learn's 8x8, another
        # dataset, which stands in only where no directory is named at all.
        raise DatasetNotFoundError(
            f"digits data files not found: looked for {', '.join(FILES)} in {base} and in "
            f"{base / SUBFOLDER} (from {origin}). Put the course's four files there, or name no "
            f"directory (no --data-dir, $FASTDL_DATA unset) for scikit-learn's 8x8 digits")
    raise DatasetNotFoundError(f"digits data file(s) not found: {', '.join(missing)} (from {origin})")


def load_embedded_digits():
    """scikit-learn's bundled 8x8 digits, scaled to [-1, 1], split like the course data.

    The split is a fixed permutation (``RandomState(0)``) with the course's 1707:1000
    proportion, so every run and every machine sees the same train and test sets.

    Returns
    -------
    DigitsDataset
    """
    import sklearn
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Pixel values are 0..16; map them to [-1, 1] like the course's images.
    X = bunch.data.astype(np.float64) / 8.0 - 1.0
    y = bunch.target.astype(np.int64)
    order = np.random.RandomState(EMBEDDED_SEED).permutation(len(y))
    n_train = int(round(len(y) * COURSE_TRAIN_FRACTION))
    train, test = order[:n_train], order[n_train:]
    return DigitsDataset(
        X_train=np.ascontiguousarray(X[train]), y_train=y[train],
        X_test=np.ascontiguousarray(X[test]), y_test=y[test],
        name=EMBEDDED_NAME, image_shape=(8, 8),
        source=f"sklearn.datasets.load_digits (scikit-learn {sklearn.__version__})",
    )


def _load_csv_dir(directory, verify):
    """Read and check the four CSV files of one directory."""
    matches = {}
    for name in FILES:
        actual = file_sha256(directory / name)
        matches[name] = actual == COURSE_SHA256[name]
        if verify and not matches[name]:
            raise ValueError(
                f"{directory / name} is not the course's {name}: SHA-256 {actual}, expected "
                f"{COURSE_SHA256[name]}. Pass verify=False (--no-verify) to accept other data of "
                f"the same format.")
    X_train = _read_images(directory / "train_in.csv")
    y_train = _read_labels(directory / "train_out.csv", len(X_train), directory / "train_in.csv")
    X_test = _read_images(directory / "test_in.csv")
    y_test = _read_labels(directory / "test_out.csv", len(X_test), directory / "test_in.csv")
    name = COURSE_NAME if all(matches.values()) else CUSTOM_NAME
    return DigitsDataset(X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test,
                         name=name, image_shape=IMAGE_SHAPE, source=str(directory.resolve()))


@contextlib.contextmanager
def _text_errors(path):
    """Re-raise a byte that is not UTF-8 as a ValueError naming the file."""
    try:
        yield
    except UnicodeDecodeError as error:
        # The offset in the error is within the chunk being decoded, not the file: not worth showing.
        raise ValueError(f"{path} is not UTF-8/ASCII text (byte 0x{error.object[error.start]:02x} cannot "
                         f"be decoded); the course's CSV files are plain ASCII") from error


def _lines(path):
    """(line number, stripped line) of a UTF-8 text file's non-blank lines, a byte-order mark at
    its start skipped (a spreadsheet's "CSV UTF-8" writes one); bytes that are not UTF-8 raise a
    ValueError naming the file."""
    with _text_errors(path), open(path, encoding="utf-8-sig") as handle:
        for line_no, line in enumerate(handle, start=1):
            if line := line.strip():
                yield line_no, line


def _read_images(path):
    """Parse an image CSV into float64 (n, 256), raising ValueError naming the file."""
    rows = []
    for line_no, line in _lines(path):
        fields = line.split(",")
        if len(fields) != N_FEATURES:
            raise ValueError(f"{path}, line {line_no}: expected {N_FEATURES} comma-separated "
                             f"values (a 16x16 image), found {len(fields)}")
        try:
            rows.append([float(field) for field in fields])
        except ValueError:
            raise ValueError(f"{path}, line {line_no}: a value is not a number") from None
    if not rows:
        raise ValueError(f"{path} holds no images")
    X = np.asarray(rows, dtype=np.float64)
    if not np.isfinite(X).all():
        raise ValueError(f"{path} holds NaN or infinite values")
    if X.min() < -1.0 or X.max() > 1.0:
        raise ValueError(f"{path}: pixel values must lie in [-1, 1], found "
                         f"[{X.min():g}, {X.max():g}]")
    return X


def _read_labels(path, n_expected, images_path):
    """Parse a label file (one integer 0-9 per line), raising ValueError naming the file."""
    labels = []
    for line_no, line in _lines(path):
        if "," in line:
            raise ValueError(f"{path}, line {line_no}: expected one label per line, "
                             f"found {line.count(',') + 1} comma-separated values")
        try:
            label = int(line)
        except ValueError:
            raise ValueError(f"{path}, line {line_no}: label {line!r} is not an integer") from None
        if not 0 <= label < N_CLASSES:
            raise ValueError(f"{path}, line {line_no}: label {label} is outside 0-9")
        labels.append(label)
    if len(labels) != n_expected:
        raise ValueError(f"{path} holds {len(labels)} labels but {images_path} holds "
                         f"{n_expected} images")
    return np.asarray(labels, dtype=np.int64)
