"""The loaders' shared file handling, where it used to fail: damaged .npy headers, downloads that
replaced the user's files or failed without naming the URL, a partial $FASTDL_DATA, checksum
advice that went in a circle, a clocks.json fastdl did not write. No network: file:// URLs and a
stand-in for urlopen."""

import gzip
import io
import json
import os
import signal
import urllib.request

import numpy as np
import pytest

import dataset_files
from fastdl.cli import main
from fastdl.data import (DatasetNotFoundError, cifar10, clocks, fashion_mnist, load_cifar10, load_clocks,
                         load_face_array, load_fashion_mnist, load_image_folder)
from fastdl.data import _files

IMAGES = "train-images-idx3-ubyte.gz"


@pytest.fixture(autouse=True)
def isolated_places(tmp_path, monkeypatch):
    """No developer's $FASTDL_DATA, cache or Debian package leaks in; no clock is rendered."""
    monkeypatch.delenv("FASTDL_DATA", raising=False)
    monkeypatch.setenv("FASTDL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIRS", ())
    monkeypatch.setattr(clocks, "generate_clocks", lambda *args, **kwargs: pytest.fail("rendered clocks"))


@pytest.fixture
def published(tmp_path, monkeypatch):
    """A file:// "server" of tiny Fashion-MNIST files, taken for the published ones."""
    server = tmp_path / "server"
    arrays = dataset_files.write_fashion_mnist(server, seed=0)
    for name in fashion_mnist.FILES:
        monkeypatch.setitem(fashion_mnist.SHA256, name, _files.file_sha256(server / name, gunzip=True))
    monkeypatch.setattr(fashion_mnist, "BASE_URL", server.as_uri() + "/")
    return arrays


def npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def with_header(header, data=b""):
    """A version 1.0 .npy file of this header text (its length field says exactly its length)."""
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + data


LABELS = np.zeros((3, 2), np.int64)
FULL_HEADER = b"{'descr': '<i8', 'fortran_order': False, 'shape': (3, 2), }"
DAMAGED_HEADERS = {
    # numpy retries an old-format header through tokenize, which fails with its own TokenError
    "cut inside the dict": with_header(FULL_HEADER[:32], LABELS.tobytes()),
    "nested brackets": with_header(b"(" * 40, LABELS.tobytes()),
    # and sorting the keys, one of them bytes, to name them in its message: a TypeError
    "bytes key": with_header(b"{'descr': '<i8', 'fortran_order': False, b'shape': (3, 2), }",
                             LABELS.tobytes()),
}


# --- 1. a damaged .npy header is a ValueError naming the file ------------------------------------

@pytest.mark.parametrize("content", DAMAGED_HEADERS.values(), ids=DAMAGED_HEADERS.keys())
def test_damaged_npy_header_is_a_value_error_naming_the_file(tmp_path, content):
    path = tmp_path / "labels.npy"
    path.write_bytes(content)
    for read in (_files.read_npy_header, _files.load_npy, load_face_array):
        with pytest.raises(ValueError, match="damaged or truncated .npy header") as info:
            read(path)
        assert str(path) in str(info.value)
    np.save(tmp_path / "images.npy", np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(ValueError, match=f"{path}.*damaged"):
        load_clocks(tmp_path)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::SyntaxWarning",
                            "ignore:Reading `.npy`:UserWarning")  # numpy's, parsing the damaged text
def test_every_single_byte_header_corruption_is_refused_or_read(tmp_path):
    """Each byte of the header set to a few telling values: a ValueError or a valid header."""
    good = npy_bytes(LABELS)
    header_end = 10 + int.from_bytes(good[8:10], "little")
    path = tmp_path / "x.npy"
    for position in range(8, header_end):
        for value in b"\x00(['{\xff\"\\":
            content = bytearray(good)
            content[position] = value
            path.write_bytes(bytes(content))
            try:
                shape, dtype = _files.read_npy_header(path)
            except ValueError:
                continue
            assert shape == (3, 2) and dtype == np.int64, (position, value)


def test_cli_damaged_clock_labels_header_is_a_one_line_error(tmp_path, capsys):
    np.save(tmp_path / "images.npy", np.zeros((3, 8, 8), np.uint8))
    (tmp_path / "labels.npy").write_bytes(DAMAGED_HEADERS["cut inside the dict"])
    status = main(["reproduce", "a5", "--quick", "--data-dir", str(tmp_path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 2 and "fastdl: error:" in err and str(tmp_path / "labels.npy") in err
    assert "Traceback" not in err


def test_image_folder_cache_with_a_damaged_header_is_read_again(tmp_path):
    from PIL import Image

    root = tmp_path / "faces"
    root.mkdir()
    for i in range(2):
        Image.fromarray(np.full((20, 20, 3), 50 * i, np.uint8)).save(root / f"{i}.png")
    expected = load_image_folder(root, size=8)
    record = next((tmp_path / "cache" / "image-folders").glob("*.json"))
    array = record.parent / json.loads(record.read_text())["array"]
    array.write_bytes(with_header(b"{'descr': '|u1', 'fortran_order': False, 'shape': (2, 8, 8, 3), }"[:32],
                                  bytes(expected.nbytes)))
    np.testing.assert_array_equal(load_image_folder(root, size=8), expected)


def test_model_file_with_a_damaged_member_header_is_a_value_error(tmp_path):
    from fastdl import nn

    path = tmp_path / "model.npz"
    model = nn.Sequential([nn.Dense(100)])
    model.build((100,))
    model.save(path)
    content = bytearray(path.read_bytes())
    start = content.index(b"\x93NUMPY\x01\x00")  # a member larger than zipfile's first read
    content[start + 8:start + 10] = (32).to_bytes(2, "little")  # the header cut inside its dict
    path.write_bytes(bytes(content))
    other = nn.Sequential([nn.Dense(100)])
    other.build((100,))
    with pytest.raises(ValueError, match=f"{path} is damaged"):
        other.load(path)


# --- 7. a huge shape in a header does not wrap round ----------------------------------------------

def test_npy_size_check_does_not_overflow(tmp_path):
    path = tmp_path / "faces.npy"
    header = repr({"descr": "|u1", "fortran_order": False, "shape": (2 ** 60, 4, 4, 3)}).encode()
    path.write_bytes(with_header(header))  # 2**64 bytes of data: 0 in int64
    with pytest.raises(ValueError, match="is truncated"):
        _files.read_npy_header(path)
    with pytest.raises(ValueError, match="is truncated"):
        load_face_array(path)


# --- 2. download keeps a file it replaces -----------------------------------------------------------

def test_download_keeps_the_users_own_files(tmp_path, published, capsys):
    mine = tmp_path / "mine"
    own = dataset_files.write_fashion_mnist(mine / "fashion-mnist", seed=9)
    before = {name: (mine / "fashion-mnist" / name).read_bytes() for name in fashion_mnist.FILES}
    (mine / "fashion-mnist" / f"{IMAGES}.replaced").write_bytes(b"taken")  # a free name is found
    assert main(["data", "download", "fashion-mnist", "--data-dir", str(mine)]) == 0
    out = capsys.readouterr().out
    target = mine / "fashion-mnist"
    kept = {name: f"{name}.replaced" for name in fashion_mnist.FILES} | {IMAGES: f"{IMAGES}.replaced.1"}
    for name in fashion_mnist.FILES:
        assert (target / kept[name]).read_bytes() == before[name]
        assert f"{target / name}: downloaded; the file there before, not the published one, " \
               f"is now {kept[name]}" in out
    assert (target / f"{IMAGES}.replaced").read_bytes() == b"taken"
    np.testing.assert_array_equal(load_fashion_mnist(mine)[0][0], published["x_train"])
    assert not (own["x_train"] == published["x_train"]).all()


def test_download_over_a_valid_and_a_damaged_file(tmp_path, published):
    target = tmp_path / "d" / "fashion-mnist"
    dataset_files.write_fashion_mnist(target, seed=0)  # the published files
    (target / IMAGES).write_bytes(b"an interrupted copy")
    report = fashion_mnist.download(tmp_path / "d")
    assert report[target / IMAGES].endswith(f"is now {IMAGES}.replaced")
    assert [report[target / name] for name in fashion_mnist.FILES[1:]] == ["already present"] * 3
    assert (target / f"{IMAGES}.replaced").read_bytes() == b"an interrupted copy"
    load_fashion_mnist(tmp_path / "d")


def test_ctrl_c_between_the_renames_keeps_both_files(tmp_path, published, monkeypatch):
    # A Ctrl-C after the damaged file was renamed aside: the download still takes its place (it
    # was deleted, and no file was at the name), then the KeyboardInterrupt comes.
    target = tmp_path / "d" / "fashion-mnist"
    dataset_files.write_fashion_mnist(target, seed=0)
    (target / IMAGES).write_bytes(b"an interrupted copy")
    rename, sent = os.rename, []

    def rename_then_ctrl_c(source, destination):
        rename(source, destination)
        sent.append(destination)
        signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(os, "rename", rename_then_ctrl_c)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            fashion_mnist.download(tmp_path / "d")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert sent == [target / f"{IMAGES}.replaced"]
    assert (target / f"{IMAGES}.replaced").read_bytes() == b"an interrupted copy"
    monkeypatch.setattr(os, "rename", rename)
    load_fashion_mnist(tmp_path / "d")  # the published file, in place


# --- 6. download failures name the URL ---------------------------------------------------------------

class FakeResponse:
    """What urlopen returns: headers and a body read in blocks, then ``fail`` raised, if given."""

    def __init__(self, body, headers, fail=None):
        self.body, self.headers, self.fail = io.BytesIO(body), headers, fail

    def read(self, size):
        block = self.body.read(size)
        if not block and self.fail is not None:
            raise self.fail
        return block

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False


def test_stalled_download_names_the_url_and_is_a_network_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fashion_mnist, "BASE_URL", "http://example.invalid/fm/")
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: FakeResponse(
        b"\x1f\x8b", {"Content-Length": "1000"}, TimeoutError("timed out")))
    assert main(["data", "download", "fashion-mnist", "--data-dir", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert f"could not download http://example.invalid/fm/{IMAGES}: timed out" in err
    assert os.listdir(tmp_path / "d" / "fashion-mnist") == []  # no temporary file left
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: FakeResponse(
        b"", {}, ConnectionResetError(104, "Connection reset by peer")))
    with pytest.raises(OSError, match=f"could not download http://example.invalid/fm/{IMAGES}: .*reset"):
        fashion_mnist.download(tmp_path / "d")


@pytest.mark.parametrize("length", ["12, 12", "many", "-5"])
def test_malformed_content_length_is_taken_as_unknown(tmp_path, published, monkeypatch, length):
    server = tmp_path / "server"  # (published's files)
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: FakeResponse(
        (server / url.rsplit("/", 1)[1]).read_bytes(), {"Content-Length": length}))
    report = fashion_mnist.download(tmp_path / "d")
    assert set(report.values()) == {"downloaded"}
    load_fashion_mnist(tmp_path / "d")


# --- 3. $FASTDL_DATA holding part of a set is an error, as a path holding part of it is -------------

def test_partial_fastdl_data_is_an_error_naming_the_variable(tmp_path, monkeypatch):
    env = tmp_path / "env"
    dataset_files.write_fashion_mnist(env, seed=1)
    (env / "t10k-labels-idx1-ubyte.gz").unlink()
    dataset_files.write_fashion_mnist(tmp_path / "cache" / "fashion-mnist", seed=2)  # not to be read instead
    monkeypatch.setenv("FASTDL_DATA", str(env))
    with pytest.raises(DatasetNotFoundError, match=r"env \(\$FASTDL_DATA\) holds only part of fashion-mnist: "
                                                   r"t10k-labels-idx1-ubyte.gz"):
        load_fashion_mnist(verify=False)
    np.save(env / "images.npy", np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(DatasetNotFoundError, match=r"env \(\$FASTDL_DATA\) holds the clocks' images.npy but "
                                                   r"not their labels.npy"):
        load_clocks()


def test_partial_fastdl_data_with_the_set_in_its_subfolder_loads_the_subfolder(tmp_path, monkeypatch):
    env = tmp_path / "env"
    dataset_files.write_fashion_mnist(env, seed=1)
    (env / IMAGES).unlink()
    expected = dataset_files.write_fashion_mnist(env / "fashion-mnist", seed=3)
    monkeypatch.setenv("FASTDL_DATA", str(env))
    np.testing.assert_array_equal(load_fashion_mnist(verify=False)[0][0], expected["x_train"])


# --- 4. the checksum advice puts the published file where the same load finds it ------------------

def test_checksum_advice_for_a_given_folder_works(tmp_path, published, capsys):
    given = tmp_path / "given"
    dataset_files.write_fashion_mnist(given / "fashion-mnist", seed=0)
    (given / "fashion-mnist" / IMAGES).write_bytes(gzip.compress(b"not the published file"))
    with pytest.raises(ValueError) as info:
        load_fashion_mnist(given)
    command = f"fastdl data download fashion-mnist --data-dir {given}"
    assert f"`{command}`" in str(info.value) and "Delete" not in str(info.value)
    assert main(command.split()[1:]) == 0  # as the message says: nothing to delete first
    np.testing.assert_array_equal(load_fashion_mnist(given)[0][0], published["x_train"])


def test_checksum_advice_for_a_flat_folder_works(tmp_path, published):
    given = tmp_path / "given"
    dataset_files.write_fashion_mnist(given, seed=0)
    bad = given / "train-labels-idx1-ubyte.gz"
    bad.write_bytes(gzip.compress(b"not the published file"))
    with pytest.raises(ValueError) as info:
        load_fashion_mnist(given)
    command = f"fastdl data download fashion-mnist --data-dir {given}"
    assert f"Move it out of {given}" in str(info.value) and f"`{command}`" in str(info.value)
    bad.rename(tmp_path / bad.name)
    assert main(command.split()[1:]) == 0
    np.testing.assert_array_equal(load_fashion_mnist(given)[0][1], published["y_train"])


def test_partial_folder_advice_works(tmp_path, published):
    given = tmp_path / "given" / "fashion-mnist"
    dataset_files.write_fashion_mnist(given, seed=0)
    (given / IMAGES).unlink()
    with pytest.raises(DatasetNotFoundError) as info:
        load_fashion_mnist(tmp_path / "given")
    command = f"fastdl data download fashion-mnist --data-dir {tmp_path / 'given'}"
    assert f"`{command}`" in str(info.value)
    assert main(command.split()[1:]) == 0
    load_fashion_mnist(tmp_path / "given")


def test_checksum_advice_for_the_cache_needs_no_option(tmp_path, published):
    cache = tmp_path / "cache" / "fashion-mnist"
    dataset_files.write_fashion_mnist(cache, seed=0)
    (cache / IMAGES).write_bytes(gzip.compress(b"not the published file"))
    with pytest.raises(ValueError, match="with `fastdl data download fashion-mnist` "):
        load_fashion_mnist()
    fashion_mnist.download()
    load_fashion_mnist()


# --- 5. a clocks.json fastdl did not write ------------------------------------------------------------

@pytest.mark.parametrize("content", ['{"source": "course download, 2023", "n": 18000}', "{not json",
                                     '["a list"]', '{"kind": "course", "sha256": {}}'])
@pytest.mark.parametrize("verify", [True, False])
def test_foreign_clocks_json_is_ignored(tmp_path, content, verify):
    images = np.arange(4 * 8 * 8, dtype=np.uint8).reshape(4, 8, 8)
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "labels.npy", np.zeros((4, 2), np.int64))
    (tmp_path / "clocks.json").write_text(content)
    message = f"ignoring {tmp_path / 'clocks.json'}: not a clocks.json fastdl wrote"
    with pytest.warns(UserWarning, match=message):
        loaded, _, source = load_clocks(tmp_path, verify=verify, with_source=True)
    np.testing.assert_array_equal(loaded, images)
    assert source.startswith("course clocks")
    assert (tmp_path / "clocks.json").read_text() == content


@pytest.mark.parametrize("cut", [False, True], ids=["incomplete", "cut short"])
def test_damaged_sidecar_of_fastdl_still_says_regenerate(tmp_path, cut):
    """A clocks.json of fastdl's that is incomplete, or cut short so it no longer parses, is a
    damaged set, never read as the course's clocks unchecked."""
    np.save(tmp_path / "images.npy", np.zeros((4, 8, 8), np.uint8))
    np.save(tmp_path / "labels.npy", np.zeros((4, 2), np.int64))
    text = '{"kind": "synthetic", "renderer": "numba", "seed": 0, "sha256": {"images.npy": "00"}}'
    (tmp_path / "clocks.json").write_text(text[: len(text) // 2] if cut else '{"kind": "synthetic"}')
    for verify in (True, False):
        with pytest.raises(ValueError, match=f"Delete {tmp_path} and re-generate it"):
            load_clocks(tmp_path, verify=verify)


# --- minor: CIFAR-10's extracted folder, a $FASTDL_DATA that does not exist, .gz before plain ---------

def test_extracted_cifar10_folder_says_the_tarball_is_read(tmp_path):
    extracted = tmp_path / "cifar-10-batches-py"  # as Keras leaves it
    extracted.mkdir()
    (extracted / "data_batch_1").write_bytes(b"")
    message = f"{extracted} is the tarball's content, extracted; fastdl reads cifar-10-python.tar.gz itself"
    with pytest.raises(DatasetNotFoundError, match=message):
        load_cifar10(tmp_path)


def test_data_list_flags_a_fastdl_data_that_does_not_exist(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FASTDL_DATA", str(tmp_path / "typo"))
    assert main(["data", "list"]) == 0
    assert f"$FASTDL_DATA is {tmp_path / 'typo'}, which is not a directory" in capsys.readouterr().out
    assert main(["data", "list", "--data-dir", str(tmp_path / "other")]) == 0
    assert f"--data-dir is {tmp_path / 'other'}, which is not a directory" in capsys.readouterr().out


def test_gzipped_file_wins_over_the_plain_one(tmp_path):
    gzipped = dataset_files.write_fashion_mnist(tmp_path, seed=1)
    dataset_files.write_fashion_mnist(tmp_path, seed=2, compress=False)
    np.testing.assert_array_equal(load_fashion_mnist(tmp_path, verify=False)[0][0], gzipped["x_train"])
