"""fastdl.data: the course digits loader, its error messages and the embedded default."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from fastdl.data import (
    COURSE_NAME,
    EMBEDDED_NAME,
    DatasetNotFoundError,
    dataset_locations,
    load_digits_dataset,
    load_leiden_digits,
)
from fastdl.data.digits import CUSTOM_NAME, FILES

COURSE_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "leiden-digits"
needs_course_data = pytest.mark.skipif(
    not COURSE_DIR.is_dir(),
    reason=f"course data not found at {COURSE_DIR} (the shared folder beside the repository)")


@pytest.fixture(autouse=True)
def no_data_env(monkeypatch):
    """Tests choose their data explicitly; a developer's $FASTDL_DATA must not leak in."""
    monkeypatch.delenv("FASTDL_DATA", raising=False)


def write_digits(directory, n_train=6, n_test=4, n_features=256, seed=0):
    """Tiny CSV files in the course format; returns the directory."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        X = np.round(rng.uniform(-1, 1, size=(n, n_features)), 3)
        np.savetxt(directory / f"{split}_in.csv", X, delimiter=",", fmt="%g")
        (directory / f"{split}_out.csv").write_text(
            "".join(f"{label}\n" for label in rng.integers(0, 10, n)))
    return directory


# --- the course data ------------------------------------------------------------------------

@needs_course_data
def test_course_data_shapes_and_types():
    (X_train, y_train), (X_test, y_test) = load_leiden_digits(COURSE_DIR)
    assert X_train.shape == (1707, 256) and X_test.shape == (1000, 256)
    assert y_train.shape == (1707,) and y_test.shape == (1000,)
    assert X_train.dtype == np.float64 and y_train.dtype == np.int64
    assert X_train.min() >= -1 and X_train.max() <= 1
    assert set(np.unique(y_train)) == set(range(10))


@needs_course_data
def test_course_data_named_and_found_via_env_and_subfolder(monkeypatch):
    data = load_digits_dataset(COURSE_DIR)
    assert data.name == COURSE_NAME and data.image_shape == (16, 16)
    # $FASTDL_DATA may name the files' directory or its parent holding leiden-digits/.
    for env in (COURSE_DIR, COURSE_DIR.parent):
        monkeypatch.setenv("FASTDL_DATA", str(env))
        via_env = load_digits_dataset()
        assert via_env.name == COURSE_NAME
        np.testing.assert_array_equal(via_env.y_test, data.y_test)


# --- custom files, errors --------------------------------------------------------------------

def test_checksum_mismatch_names_file_and_verify_false(tmp_path):
    directory = write_digits(tmp_path / "digits")
    with pytest.raises(ValueError, match=r"train_in\.csv.*verify=False \(--no-verify\)"):
        load_leiden_digits(directory)
    data = load_digits_dataset(directory, verify=False)
    assert data.name == CUSTOM_NAME
    assert data.X_train.shape == (6, 256) and data.y_test.shape == (4,)
    assert data.y_train.dtype == np.int64


def test_missing_directory_named(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError, match="nowhere"):
        load_leiden_digits(missing)


def test_missing_directory_from_env_named(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTDL_DATA", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match=r"absent.*FASTDL_DATA"):
        load_leiden_digits()


def test_missing_single_file_named(tmp_path):
    directory = write_digits(tmp_path / "digits")
    (directory / "test_out.csv").unlink()
    with pytest.raises(FileNotFoundError) as info:
        load_leiden_digits(directory, verify=False)
    message = str(info.value)
    assert str(directory / "test_out.csv") in message
    assert "train_in.csv" not in message


def test_empty_directory_lists_all_files(tmp_path):
    # A DatasetNotFoundError, so `fastdl reproduce all` skips a1 and a2 and runs the rest.
    with pytest.raises(DatasetNotFoundError) as info:
        load_leiden_digits(tmp_path, verify=False)
    for name in FILES:
        assert name in str(info.value)


@pytest.mark.parametrize("corrupt, file_name, message", [
    (lambda d: (d / "train_in.csv").write_text("0.5,0.1\n"), "train_in.csv", "256"),
    (lambda d: (d / "test_out.csv").write_text("1\n2\n"), "test_out.csv", "2 labels"),
    (lambda d: (d / "train_out.csv").write_text("1\n2\nseven\n4\n5\n6\n"), "train_out.csv",
     "not an integer"),
    (lambda d: (d / "train_out.csv").write_text("1\n2\n3.5\n4\n5\n6\n"), "train_out.csv",
     "not an integer"),
    (lambda d: (d / "train_out.csv").write_text("1\n2\n12\n4\n5\n6\n"), "train_out.csv",
     "outside 0-9"),
    (lambda d: (d / "train_out.csv").write_text("1,2\n2\n3\n4\n5\n6\n"), "train_out.csv",
     "one label per line"),
    (lambda d: (d / "test_in.csv").write_text(""), "test_in.csv", "no images"),
    (lambda d: (d / "test_in.csv").write_text(",".join(["x"] * 256) + "\n"), "test_in.csv",
     "not a number"),
    (lambda d: (d / "test_in.csv").write_text(",".join(["3"] * 256) + "\n"), "test_in.csv",
     r"\[-1, 1\]"),
    (lambda d: (d / "test_out.csv").write_bytes((d / "test_out.csv").read_bytes() + b"\xe9\n"),
     "test_out.csv", "not UTF-8/ASCII text"),
    (lambda d: (d / "train_in.csv").write_bytes(b"\xff" + (d / "train_in.csv").read_bytes()),
     "train_in.csv", "not UTF-8/ASCII text"),
])
def test_malformed_files_name_the_file(tmp_path, corrupt, file_name, message):
    directory = write_digits(tmp_path / "digits")
    corrupt(directory)
    with pytest.raises(ValueError, match=message) as info:
        load_leiden_digits(directory, verify=False)
    assert file_name in str(info.value)


def test_byte_order_marks_are_skipped(tmp_path):
    """A spreadsheet's "CSV UTF-8" starts each file with a byte-order mark: read as without."""
    plain = load_digits_dataset(write_digits(tmp_path / "plain"), verify=False)
    directory = write_digits(tmp_path / "marked")
    for name in FILES:
        (directory / name).write_bytes(b"\xef\xbb\xbf" + (directory / name).read_bytes())
    marked = load_digits_dataset(directory, verify=False)
    for a, b in ((plain.X_train, marked.X_train), (plain.y_train, marked.y_train), (plain.y_test, marked.y_test)):
        np.testing.assert_array_equal(a, b)


@needs_course_data
def test_modified_course_file_fails_checksum(tmp_path):
    directory = tmp_path / "leiden-digits"
    shutil.copytree(COURSE_DIR, directory)
    with open(directory / "test_out.csv", "a") as handle:
        handle.write("\n")  # a harmless change that still alters the bytes
    with pytest.raises(ValueError, match="test_out.csv"):
        load_leiden_digits(directory)
    assert load_digits_dataset(directory, verify=False).name == CUSTOM_NAME


# --- the embedded default --------------------------------------------------------------------

def test_embedded_default_shapes_scale_and_determinism():
    first = load_digits_dataset()
    second = load_digits_dataset()
    assert first.name == EMBEDDED_NAME and first.image_shape == (8, 8)
    assert first.X_train.shape == (1133, 64) and first.X_test.shape == (664, 64)
    assert first.X_train.dtype == np.float64 and first.y_train.dtype == np.int64
    assert first.X_train.min() == -1.0 and first.X_train.max() == 1.0
    np.testing.assert_array_equal(first.X_train, second.X_train)
    np.testing.assert_array_equal(first.y_test, second.y_test)
    (X_train, y_train), (X_test, y_test) = load_leiden_digits()
    np.testing.assert_array_equal(y_train, first.y_train)
    assert len(y_train) + len(y_test) == 1797


def test_dataset_locations_mentions_env_and_default(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTDL_DATA", str(tmp_path))
    places = dict(dataset_locations("leiden-digits", data_dir="/somewhere"))
    assert "/somewhere" in places and str(tmp_path) in places
    assert "sklearn.datasets.load_digits" in places
    with pytest.raises(ValueError, match="unknown dataset"):
        dataset_locations("cifar-1000")
