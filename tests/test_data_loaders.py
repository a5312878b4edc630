"""Fashion-MNIST and CIFAR-10 loaders, where they look, checksums, downloads (file:// only)."""

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

import dataset_files
from fastdl.cli import main
from fastdl.data import (
    DatasetNotFoundError,
    dataset_locations,
    download_dataset,
    load_cifar10,
    load_fashion_mnist,
)
from fastdl.data import cifar10, fashion_mnist
from fastdl.data._files import file_sha256

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
IMAGES = "train-images-idx3-ubyte.gz"


@pytest.fixture(autouse=True)
def isolated_places(tmp_path, monkeypatch):
    """No developer's $FASTDL_DATA, cache or Debian package leaks in; the cache is per test."""
    monkeypatch.delenv("FASTDL_DATA", raising=False)
    monkeypatch.setenv("FASTDL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIRS", ())


def assert_arrays(loaded, expected):
    (x_train, y_train), (x_test, y_test) = loaded
    for key, array in zip(("x_train", "y_train", "x_test", "y_test"),
                          (x_train, y_train, x_test, y_test)):
        assert array.dtype == np.uint8 and array.shape == expected[key].shape, key
        assert array.flags.c_contiguous and array.flags.writeable, key
        np.testing.assert_array_equal(array, expected[key], err_msg=key)


def fashion_digests(directory):
    return {name: file_sha256(Path(directory) / name, gunzip=True) for name in fashion_mnist.FILES}


# --- loading tiny files ----------------------------------------------------------------------

@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "uncompressed"])
def test_fashion_mnist_tiny_files(tmp_path, compress):
    expected = dataset_files.write_fashion_mnist(tmp_path, n_train=7, n_test=3, compress=compress)
    loaded = load_fashion_mnist(tmp_path, verify=False)
    assert loaded[0][0].shape == (7, 28, 28) and loaded[0][1].shape == (7,)
    assert_arrays(loaded, expected)


def test_cifar10_tiny_tarball(tmp_path):
    expected = dataset_files.write_cifar10(tmp_path, n_per_batch=4, n_test=3)
    loaded = load_cifar10(tmp_path, verify=False)
    assert loaded[0][0].shape == (20, 32, 32, 3) and loaded[0][1].shape == (20, 1)
    assert loaded[1][0].shape == (3, 32, 32, 3) and loaded[1][1].shape == (3, 1)
    assert_arrays(loaded, expected)


def test_cifar10_channel_order_and_batch_order(tmp_path):
    """Each row is the R, G and B planes of 32x32; batches 1-5 are the training set in order."""
    members = {}
    for i, batch in enumerate(list(cifar10.TRAIN_BATCHES) + [cifar10.TEST_BATCH]):
        row = np.concatenate([np.full(1024, 10 * i + 1), np.full(1024, 10 * i + 2),
                              np.arange(1024) % 256]).astype(np.uint8)
        members[f"cifar-10-batches-py/{batch}"] = dataset_files.python2_pickle(
            {b"data": row[None, :], b"labels": [i]})
    dataset_files.write_tar(tmp_path / cifar10.TARBALL, dict(reversed(members.items())))
    (x_train, y_train), (x_test, y_test) = load_cifar10(tmp_path, verify=False)
    np.testing.assert_array_equal(y_train[:, 0], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(x_train[:, 5, 7, 0], [1, 11, 21, 31, 41])  # red
    np.testing.assert_array_equal(x_train[:, 5, 7, 1], [2, 12, 22, 32, 42])  # green
    assert x_test[0, 1, 2, 2] == 32 + 2  # blue: row 1, column 2 of the plane
    assert y_test.tolist() == [[5]]


# --- where the files are looked for -----------------------------------------------------------

def test_search_order_path_env_cache_system(tmp_path, monkeypatch):
    places = {name: tmp_path / name for name in ("arg", "env", "cache", "system")}
    written = {name: dataset_files.write_fashion_mnist(place, n_train=2, n_test=1, seed=seed)
               for seed, (name, place) in enumerate(places.items())}
    monkeypatch.setenv("FASTDL_DATA", str(places["env"]))
    monkeypatch.setenv("FASTDL_CACHE_DIR", str(places["cache"]))
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIRS", (str(places["system"]),))
    assert_arrays(load_fashion_mnist(places["arg"], verify=False), written["arg"])
    assert_arrays(load_fashion_mnist(verify=False), written["env"])
    # A path without the files falls through to the next place (it may hold other datasets).
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "train_in.csv").write_text("digits, say\n")
    assert_arrays(load_fashion_mnist(tmp_path / "empty", verify=False), written["env"])
    monkeypatch.delenv("FASTDL_DATA")
    assert_arrays(load_fashion_mnist(verify=False), written["cache"])
    monkeypatch.setenv("FASTDL_CACHE_DIR", str(tmp_path / "nothing"))
    assert_arrays(load_fashion_mnist(verify=False), written["system"])


def test_subfolders_and_default_cache_under_home(tmp_path, monkeypatch):
    monkeypatch.delenv("FASTDL_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    expected = dataset_files.write_cifar10(tmp_path / "home" / ".cache" / "fastdl" / "cifar-10")
    assert_arrays(load_cifar10(verify=False), expected)
    in_env = dataset_files.write_cifar10(tmp_path / "data" / "cifar-10", seed=1)
    monkeypatch.setenv("FASTDL_DATA", str(tmp_path / "data"))
    assert_arrays(load_cifar10(verify=False), in_env)
    fashion = dataset_files.write_fashion_mnist(tmp_path / "mine" / "fashion-mnist")
    assert_arrays(load_fashion_mnist(tmp_path / "mine", verify=False), fashion)


def test_fastdl_data_naming_no_directory_is_refused(tmp_path, monkeypatch):
    # A typo in $FASTDL_DATA must not quietly load the cache's copy instead.
    dataset_files.write_fashion_mnist(tmp_path / "cache" / "fashion-mnist")
    monkeypatch.setenv("FASTDL_DATA", str(tmp_path / "typo"))
    with pytest.raises(DatasetNotFoundError, match=r"typo \(\$FASTDL_DATA\) does not exist"):
        load_fashion_mnist(verify=False)
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("FASTDL_DATA", str(tmp_path / "file"))
    with pytest.raises(DatasetNotFoundError, match=r"file \(\$FASTDL_DATA\) is a file"):
        load_cifar10(verify=False)
    # An explicit directory holding the files is read before $FASTDL_DATA is looked at.
    given = dataset_files.write_fashion_mnist(tmp_path / "given", seed=3)
    assert_arrays(load_fashion_mnist(tmp_path / "given", verify=False), given)


def test_missing_dataset_says_where_and_how(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIRS", (str(tmp_path / "debian"),))
    (tmp_path / "given").mkdir()
    with pytest.raises(DatasetNotFoundError) as info:
        load_fashion_mnist(tmp_path / "given")
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    for expected in (tmp_path / "given", tmp_path / "given" / "fashion-mnist",
                     "$FASTDL_DATA", tmp_path / "cache", tmp_path / "cache" / "fashion-mnist",
                     tmp_path / "debian", *fashion_mnist.FILES,
                     "fastdl data download fashion-mnist", "apt-get install dataset-fashion-mnist"):
        assert str(expected) in message
    (tmp_path / "env").mkdir()
    monkeypatch.setenv("FASTDL_DATA", str(tmp_path / "env"))
    with pytest.raises(DatasetNotFoundError) as info:
        load_cifar10()
    message = str(info.value)
    for expected in (tmp_path / "env", tmp_path / "env" / "cifar-10", tmp_path / "cache",
                     "cifar-10-python.tar.gz", "fastdl data download cifar-10"):
        assert str(expected) in message
    assert "apt-get" not in message


def test_incomplete_directory_is_not_used(tmp_path, monkeypatch):
    dataset_files.write_fashion_mnist(tmp_path / "env")
    monkeypatch.setenv("FASTDL_DATA", str(tmp_path / "env"))
    given = tmp_path / "given"
    dataset_files.write_fashion_mnist(given)
    (given / "t10k-labels-idx1-ubyte.gz").unlink()
    # Not the complete set in $FASTDL_DATA: the given directory lacks a file, and says which.
    with pytest.raises(DatasetNotFoundError, match=r"given holds only part of fashion-mnist: "
                                                   r"t10k-labels-idx1-ubyte.gz \(or the same without .gz\) is not found there"):
        load_fashion_mnist(given, verify=False)
    # Complete in the given directory's subfolder: that one is read.
    expected = dataset_files.write_fashion_mnist(given / "fashion-mnist", seed=3)
    assert_arrays(load_fashion_mnist(given, verify=False), expected)


@pytest.mark.parametrize("load", [load_fashion_mnist, load_cifar10])
def test_a_given_path_that_does_not_exist_is_an_error(tmp_path, monkeypatch, load):
    dataset_files.write_fashion_mnist(tmp_path / "env")
    dataset_files.write_cifar10(tmp_path / "env")
    monkeypatch.setenv("FASTDL_DATA", str(tmp_path / "env"))
    with pytest.raises(DatasetNotFoundError, match=r"typo \(path argument / --data-dir\) does not exist"):
        load(tmp_path / "typo", verify=False)
    (tmp_path / "a-file").write_text("")
    with pytest.raises(DatasetNotFoundError, match="is a file, not a directory"):
        load(tmp_path / "a-file", verify=False)


def test_dataset_locations_lists_new_places(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIRS", (str(DEBIAN_DIR),))
    places = [place for place, _ in dataset_locations("fashion-mnist", data_dir="/somewhere")]
    assert places == ["/somewhere", "/somewhere/fashion-mnist", "$FASTDL_DATA",
                      str(tmp_path / "cache"), str(tmp_path / "cache" / "fashion-mnist"),
                      str(DEBIAN_DIR)]
    monkeypatch.setenv("FASTDL_DATA", str(tmp_path / "env"))
    places = [place for place, _ in dataset_locations("cifar-10")]
    assert places == [str(tmp_path / "env"), str(tmp_path / "env" / "cifar-10"),
                      str(tmp_path / "cache"), str(tmp_path / "cache" / "cifar-10")]


# --- checksums and damaged files ---------------------------------------------------------------

def test_fashion_checksum_mismatch_and_match(tmp_path, monkeypatch):
    expected = dataset_files.write_fashion_mnist(tmp_path)
    digests = fashion_digests(tmp_path)
    with pytest.raises(ValueError) as info:
        load_fashion_mnist(tmp_path)
    message = str(info.value)
    for part in (str(tmp_path / IMAGES), fashion_mnist.SHA256[IMAGES], digests[IMAGES],
                 "fastdl data download fashion-mnist", "verify=False", "--no-verify"):
        assert part in message
    for name, digest in digests.items():
        monkeypatch.setitem(fashion_mnist.SHA256, name, digest)
    assert_arrays(load_fashion_mnist(tmp_path), expected)
    # The checksum is of the content, so the uncompressed copy checks against the same table.
    dataset_files.write_fashion_mnist(tmp_path / "raw", compress=False)
    assert_arrays(load_fashion_mnist(tmp_path / "raw"), expected)


def test_cifar10_checksum_mismatch_and_match(tmp_path, monkeypatch):
    expected = dataset_files.write_cifar10(tmp_path)
    tarball = tmp_path / cifar10.TARBALL
    with pytest.raises(ValueError, match=r"cifar-10-python\.tar\.gz.*6d958be0.*verify=False"):
        load_cifar10(tmp_path)
    monkeypatch.setitem(cifar10.SHA256, cifar10.TARBALL, file_sha256(tarball))
    assert_arrays(load_cifar10(tmp_path), expected)


def rewrite_idx(directory, name, transform):
    path = Path(directory) / name
    path.write_bytes(gzip.compress(transform(gzip.decompress(path.read_bytes()))))


@pytest.mark.parametrize("name, transform, message", [
    (IMAGES, lambda data: data[:-5], "truncated"),
    (IMAGES, lambda data: data[:10], "truncated IDX header"),
    (IMAGES, lambda data: data + b"\0", f"{IMAGES} has trailing bytes"),
    (IMAGES, lambda data: b"\0\0\x08\x01" + data[4:], "magic number 0x00000801"),
    ("t10k-labels-idx1-ubyte.gz", lambda data: b"\0\0\x0d\x01" + data[4:], "magic number"),
    (IMAGES, lambda data: dataset_files.idx_bytes(np.zeros((60, 28, 27))), "28x28"),
    ("train-labels-idx1-ubyte.gz", lambda data: dataset_files.idx_bytes(np.zeros(59)),
     "59 labels"),
    ("t10k-labels-idx1-ubyte.gz", lambda data: dataset_files.idx_bytes(np.full(20, 10)),
     "outside 0-9"),
])
def test_bad_idx_files_name_the_file(tmp_path, name, transform, message):
    dataset_files.write_fashion_mnist(tmp_path)
    rewrite_idx(tmp_path, name, transform)
    with pytest.raises(ValueError, match=message) as info:
        load_fashion_mnist(tmp_path, verify=False)
    assert name in str(info.value)


@pytest.mark.parametrize("damage", [lambda raw: raw[: len(raw) // 2], lambda raw: b"junk" + raw],
                         ids=["truncated", "not-gzip"])
def test_damaged_gzip_and_tarball(tmp_path, damage):
    dataset_files.write_fashion_mnist(tmp_path)
    path = tmp_path / IMAGES
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ValueError, match=IMAGES):
        load_fashion_mnist(tmp_path, verify=False)
    dataset_files.write_cifar10(tmp_path)
    path = tmp_path / cifar10.TARBALL
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ValueError, match=cifar10.TARBALL):
        load_cifar10(tmp_path, verify=False)


def test_cifar10_missing_member_and_bad_batch(tmp_path):
    batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2]}
    members = {f"cifar-10-batches-py/{name}": dataset_files.python2_pickle(batch)
               for name in cifar10.TRAIN_BATCHES}
    dataset_files.write_tar(tmp_path / cifar10.TARBALL, members)
    with pytest.raises(ValueError, match="lacks cifar-10-batches-py/test_batch"):
        load_cifar10(tmp_path, verify=False)
    for bad, message in (({b"data": np.zeros((2, 100), np.uint8), b"labels": [1, 2]}, "3072"),
                         ({b"data": np.zeros((2, 3072)), b"labels": [1, 2]}, "uint8"),
                         ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}, "labels"),
                         ([1, 2, 3], "b'data'")):
        members["cifar-10-batches-py/test_batch"] = dataset_files.python2_pickle(bad)
        dataset_files.write_tar(tmp_path / cifar10.TARBALL, members)
        with pytest.raises(ValueError, match=message):
            load_cifar10(tmp_path, verify=False)


@pytest.mark.parametrize("payload", [
    b"cos\nsystem\n(S'touch {marker}'\ntR.",
    b"cbuiltins\nexec\n(S'open(\"{marker}\", \"w\").close()'\ntR.",
    b"cposix\nsystem\n(S'touch {marker}'\ntR.",
    pickle.dumps(Path("{marker}"), protocol=2),
], ids=["os.system", "builtins.exec", "posix.system", "pathlib"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, payload):
    marker = tmp_path / "pwned"
    payload = payload.replace(b"{marker}", str(marker).encode())
    with pytest.raises(pickle.UnpicklingError, match="refused"):
        cifar10.ArrayUnpickler(__import__("io").BytesIO(payload), encoding="bytes").load()
    members = {f"cifar-10-batches-py/{name}": payload
               for name in cifar10.TRAIN_BATCHES + (cifar10.TEST_BATCH,)}
    dataset_files.write_tar(tmp_path / cifar10.TARBALL, members)
    with pytest.raises(ValueError, match="refused to load global"):
        load_cifar10(tmp_path, verify=False)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_cifar10_batches_pickled_by_python3(tmp_path, protocol):
    """Protocol 2 pickles bytes as _codecs.encode(text, "latin1"), protocol 5 arrays as _frombuffer."""
    rng = np.random.default_rng(protocol)
    data = rng.integers(0, 256, (2, 3072), dtype=np.uint8)
    batch = pickle.dumps({b"data": data, b"labels": [3, 7], b"batch_label": b"x", b"empty": b""},
                         protocol=protocol)
    members = {f"cifar-10-batches-py/{name}": batch for name in cifar10.TRAIN_BATCHES + (cifar10.TEST_BATCH,)}
    dataset_files.write_tar(tmp_path / cifar10.TARBALL, members)
    (x_train, y_train), (x_test, y_test) = load_cifar10(tmp_path, verify=False)
    assert x_train.shape == (10, 32, 32, 3) and y_test.ravel().tolist() == [3, 7]
    np.testing.assert_array_equal(x_test, cifar10._to_images(data))


@pytest.mark.parametrize("payload, message", [
    (b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x05\x00\x00\x00rot13\x86R.", "refused to encode"),
    (b"\x80\x02c__builtin__\nbytes\nJ\x00\xca\x9a\x3b\x85R.", "refused to call bytes"),
], ids=["codecs-rot13", "bytes(10**9)"])
def test_protocol_2_helpers_do_only_what_bytes_need(payload, message):
    with pytest.raises(pickle.UnpicklingError, match=message):
        cifar10.ArrayUnpickler(__import__("io").BytesIO(payload), encoding="bytes").load()


# --- downloads, from file:// URLs only --------------------------------------------------------

def test_download_verifies_and_skips_valid_files(tmp_path, monkeypatch):
    source = tmp_path / "server"
    expected = dataset_files.write_fashion_mnist(source)
    for name, digest in fashion_digests(source).items():
        monkeypatch.setitem(fashion_mnist.SHA256, name, digest)
    monkeypatch.setattr(fashion_mnist, "BASE_URL", source.as_uri() + "/")
    report = download_dataset("fashion-mnist")
    target = tmp_path / "cache" / "fashion-mnist"
    assert report == {target / name: "downloaded" for name in fashion_mnist.FILES}
    assert sorted(os.listdir(target)) == sorted(fashion_mnist.FILES)
    umask = os.umask(0o022)
    os.umask(umask)
    assert (target / IMAGES).stat().st_mode & 0o777 == 0o666 & ~umask  # readable as usual
    assert_arrays(load_fashion_mnist(), expected)
    (source / IMAGES).unlink()  # a valid file is not fetched again
    assert set(download_dataset("fashion-mnist").values()) == {"already present"}


def test_corrupt_download_leaves_nothing_behind(tmp_path, monkeypatch):
    source = tmp_path / "server"
    dataset_files.write_cifar10(source)
    target = tmp_path / "data" / "cifar-10"
    target.mkdir(parents=True)
    (target / cifar10.TARBALL).write_bytes(b"an old damaged copy")
    with pytest.raises(ValueError, match="corrupt.*nothing was saved"):
        cifar10.download(tmp_path / "data", base_url=source.as_uri() + "/")
    assert os.listdir(target) == [cifar10.TARBALL]  # no temporary file left
    assert (target / cifar10.TARBALL).read_bytes() == b"an old damaged copy"
    # The right checksum: the damaged copy is replaced, and kept beside it (it might be someone's).
    monkeypatch.setitem(cifar10.SHA256, cifar10.TARBALL, file_sha256(source / cifar10.TARBALL))
    report = cifar10.download(tmp_path / "data", base_url=source.as_uri() + "/")
    kept = cifar10.TARBALL + ".replaced"
    assert report == {target / cifar10.TARBALL: f"downloaded; the file there before, not the published one, "
                                                f"is now {kept}"}
    assert sorted(os.listdir(target)) == [cifar10.TARBALL, kept]
    assert (target / kept).read_bytes() == b"an old damaged copy"
    load_cifar10(tmp_path / "data")


def test_unreachable_url_is_an_os_error(tmp_path):
    with pytest.raises(OSError, match="could not download"):
        cifar10.download(tmp_path / "data", base_url=(tmp_path / "nowhere").as_uri() + "/")
    assert os.listdir(tmp_path / "data" / "cifar-10") == []


# --- the command line --------------------------------------------------------------------------

def test_cli_data_download_and_list(tmp_path, monkeypatch, capsys):
    source = tmp_path / "server"
    dataset_files.write_fashion_mnist(source)
    for name, digest in fashion_digests(source).items():
        monkeypatch.setitem(fashion_mnist.SHA256, name, digest)
    monkeypatch.setattr(fashion_mnist, "BASE_URL", source.as_uri() + "/")
    assert main(["data", "download", "fashion-mnist", "--data-dir", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert out.count("downloaded") == 4 and str(tmp_path / "d" / "fashion-mnist") in out
    load_fashion_mnist(tmp_path / "d")

    monkeypatch.setattr(cifar10, "BASE_URL", (tmp_path / "nowhere").as_uri() + "/")
    assert main(["data", "download", "cifar-10"]) == 1
    assert "could not download" in capsys.readouterr().err
    dataset_files.write_cifar10(source)
    monkeypatch.setattr(cifar10, "BASE_URL", source.as_uri() + "/")
    assert main(["data", "download", "cifar-10"]) == 2  # checksum mismatch: a data error
    assert "nothing was saved" in capsys.readouterr().err

    assert main(["data", "list", "--data-dir", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    for expected in ("fashion-mnist:", "cifar-10:", "fastdl.data.load_fashion_mnist",
                     "cifar-10-python.tar.gz", str(tmp_path / "cache" / "cifar-10"),
                     str(tmp_path / "d" / "fashion-mnist")):
        assert expected in out
    with pytest.raises(SystemExit):
        main(["data", "download", "mnist"])



def test_cli_a6_with_an_empty_face_array_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "empty.npy").write_bytes(b"")  # an interrupted copy
    assert main(["reproduce", "a6", "--quick", "--data", f"npy:{tmp_path / 'empty.npy'}",
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastdl: error: ") and str(tmp_path / "empty.npy") in err
    assert "Traceback" not in err


# --- the real data, where the Debian package is installed ----------------------------------

@pytest.mark.skipif(not DEBIAN_DIR.is_dir(), reason=f"Fashion-MNIST not installed at {DEBIAN_DIR} "
                    "(Debian package dataset-fashion-mnist)")
def test_real_fashion_mnist(monkeypatch):
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIRS", (str(DEBIAN_DIR),))
    assert fashion_mnist.locate()[0].parent == DEBIAN_DIR
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist()  # verify=True
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert x_train.dtype == y_train.dtype == x_test.dtype == y_test.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(y_train), np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(y_test), np.full(10, 1000))
    assert x_train.max() == 255 and x_train.min() == 0
