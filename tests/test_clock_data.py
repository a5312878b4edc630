"""The clock data of assignment 5: where it is looked for, the synthetic fallback, bad files."""

import io
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from fastdl.data import (DatasetNotFoundError, clock_render, clocks, dataset_locations, generate_clocks,
                         load_clocks)

SIZE = 16  # course-style files in these tests are small squares


@pytest.fixture(autouse=True)
def isolated_places(tmp_path, monkeypatch):
    """No developer's $FASTDL_DATA or cache leaks in; the cache is per test; tiny renders."""
    monkeypatch.delenv("FASTDL_DATA", raising=False)
    monkeypatch.setenv("FASTDL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(clocks, "SYNTHETIC_N", 6)


@pytest.fixture
def renders(monkeypatch):
    """A fast stand-in for the renderer (random pixels, seeded); the list records each call."""
    calls = []

    def fake_render(n, seed=0, size=150, backend=None, max_turn=180.0, faces="varied"):
        calls.append((n, seed, size, faces))
        rng = np.random.default_rng(seed)
        images = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
        labels = np.stack([rng.integers(0, 12, n), rng.integers(0, 60, n)], axis=1)
        return images, labels

    monkeypatch.setattr(clock_render, "render_clocks", fake_render)
    return calls


def write_course(directory, n=4, seed=0, images=None, labels=None):
    """Course-style images.npy (uint8 (n, 16, 16)) and labels.npy (int (n, 2)); returns both."""
    rng = np.random.default_rng(seed)
    if images is None:
        images = rng.integers(0, 256, (n, SIZE, SIZE), dtype=np.uint8)
    if labels is None:
        labels = np.stack([rng.integers(0, 12, n), rng.integers(0, 60, n)], axis=1)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / "images.npy", images)
    np.save(directory / "labels.npy", labels)
    return images, labels


def assert_loaded(loaded, expected):
    images, labels = loaded[:2]
    assert images.dtype == np.uint8 and labels.dtype == np.int64
    assert images.flags.c_contiguous and labels.flags.c_contiguous
    np.testing.assert_array_equal(images, expected[0])
    np.testing.assert_array_equal(labels, expected[1])


def listing(directory):
    return sorted(path.name for path in Path(directory).iterdir())


# --- the course's files and where they are looked for ------------------------------------------

def test_course_files_and_source(tmp_path):
    expected = write_course(tmp_path / "course", n=5)
    images, labels, source = load_clocks(tmp_path / "course", with_source=True)
    assert_loaded((images, labels), expected)
    assert images.shape == (5, SIZE, SIZE) and labels.shape == (5, 2)
    assert source == f"course clocks from {tmp_path / 'course'} (5 images, 16x16)"
    assert len(load_clocks(tmp_path / "course")) == 2
    assert not (tmp_path / "cache").exists()  # nothing rendered


def test_search_order_path_env_cache_and_subfolders(tmp_path, monkeypatch, renders):
    written = {name: write_course(tmp_path / name / "clocks", seed=seed)
               for seed, name in enumerate(("arg", "env", "cache"))}
    monkeypatch.setenv("FASTDL_DATA", str(tmp_path / "env"))
    assert_loaded(load_clocks(tmp_path / "arg"), written["arg"])
    assert_loaded(load_clocks(), written["env"])
    (tmp_path / "empty").mkdir()
    assert_loaded(load_clocks(tmp_path / "empty"), written["env"])  # falls through
    with pytest.raises(DatasetNotFoundError, match="typo.*does not exist"):
        load_clocks(tmp_path / "typo")  # asked for a place that is not there: no fallback
    monkeypatch.setenv("FASTDL_DATA", str(tmp_path / "envtypo"))  # no synthetic stand-in then
    with pytest.raises(DatasetNotFoundError, match=r"envtypo \(\$FASTDL_DATA\) does not exist"):
        load_clocks()
    monkeypatch.delenv("FASTDL_DATA")
    assert_loaded(load_clocks(), written["cache"])
    # The directory itself beats its clocks/ subfolder.
    top = write_course(tmp_path / "arg", seed=7)
    assert_loaded(load_clocks(tmp_path / "arg"), top)
    assert renders == []


def test_labels_of_any_integer_type_become_int64(tmp_path):
    labels = np.array([[11, 59], [0, 0], [3, 30]], dtype=">u2")  # big-endian uint16
    expected = write_course(tmp_path, n=3, labels=labels)
    assert_loaded(load_clocks(tmp_path), expected)


def test_cache_files_without_sidecar_are_course_data(tmp_path, renders):
    expected = write_course(tmp_path / "cache" / "clocks", n=3)
    images, labels, source = load_clocks(with_source=True)
    assert_loaded((images, labels), expected)
    assert source.startswith("course clocks from ") and renders == []


# --- the synthetic fallback --------------------------------------------------------------------

def test_synthetic_set_rendered_on_first_use_then_read(tmp_path, capsys, renders):
    cache = tmp_path / "cache" / "clocks"
    images, labels, source = load_clocks(with_source=True)
    err = capsys.readouterr().err
    assert f"rendering 6 synthetic clocks into {cache} (first use" in err
    assert renders == [(6, 0, 150, "one")]
    assert images.shape == (6, 150, 150) and images.dtype == np.uint8
    assert labels.shape == (6, 2) and labels.dtype == np.int64
    assert listing(cache) == ["clocks.json", "images.npy", "labels.npy"]
    sidecar = json.loads((cache / "clocks.json").read_text())
    assert sidecar["kind"] == "synthetic" and sidecar["seed"] == 0 and sidecar["n"] == 6
    assert sidecar["faces"] == "one" and sidecar["max_turn"] == 30.0
    assert set(sidecar["sha256"]) == {"images.npy", "labels.npy"}
    assert source.startswith("synthetic clocks (fastdl ")
    assert source.endswith(f"seed 0, one clock, turned at most 30 degrees, 6 images, 150x150) from {cache}")

    again = load_clocks(with_source=True)
    assert renders == [(6, 0, 150, "one")] and capsys.readouterr() == ("", "")
    assert_loaded(again, (images, labels))
    assert again[2] == source


def test_generated_set_found_in_a_data_dir_is_synthetic(tmp_path, renders):
    assert generate_clocks(4, seed=3, directory=tmp_path / "d" / "clocks", size=20) \
        == tmp_path / "d" / "clocks"
    images, labels, source = load_clocks(tmp_path / "d", with_source=True)
    assert images.shape == (4, 20, 20)
    assert "synthetic clocks" in source and "seed 3, one clock, turned at most 30 degrees, 4 images, 20x20" in source
    assert not (tmp_path / "cache").exists()


def test_the_real_renderer_writes_a_loadable_set(tmp_path):
    directory = generate_clocks(3, directory=tmp_path / "real")
    images, labels = load_clocks(tmp_path / "real")
    assert images.shape == (3, 150, 150) and images.dtype == np.uint8
    assert ((labels[:, 0] >= 0) & (labels[:, 0] < 12)).all()
    assert ((labels[:, 1] >= 0) & (labels[:, 1] < 60)).all()
    digests = json.loads((directory / "clocks.json").read_text())["sha256"]
    generate_clocks(3, directory=tmp_path / "again")
    assert json.loads((tmp_path / "again" / "clocks.json").read_text())["sha256"] == digests


def test_checksum_mismatch_says_delete_and_regenerate(tmp_path, renders):
    load_clocks()
    cache = tmp_path / "cache" / "clocks"
    labels = np.load(cache / "labels.npy")
    labels[0] = [(labels[0, 0] + 1) % 12, labels[0, 1]]  # still valid, but not what was rendered
    np.save(cache / "labels.npy", labels)
    with pytest.raises(ValueError) as info:
        load_clocks()
    message = str(info.value)
    for expected in (cache / "labels.npy", "SHA-256 recorded in clocks.json", f"Delete {cache}",
                     "fastdl data generate clocks"):
        assert str(expected) in message
    np.testing.assert_array_equal(load_clocks(verify=False)[1], labels)
    assert len(renders) == 1  # a damaged set is reported, never silently re-rendered


def test_malformed_sidecar_is_named(tmp_path):
    """A clocks.json marked as fastdl's but incomplete is named; one fastdl did not write is ignored
    (test_data_files_more.py::test_foreign_clocks_json_is_ignored)."""
    write_course(tmp_path)
    (tmp_path / "clocks.json").write_text('{"kind": "synthetic"}')
    with pytest.raises(ValueError, match="clocks.json"):
        load_clocks(tmp_path, verify=False)


# --- bad files: a clear ValueError naming the file, nothing rendered or written -----------------

def _npy_bytes(array, allow_pickle=False):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def _npz_bytes():
    buffer = io.BytesIO()
    np.savez(buffer, images=np.zeros((2, SIZE, SIZE), np.uint8))
    return buffer.getvalue()


GOOD_IMAGES = np.zeros((4, SIZE, SIZE), np.uint8)
GOOD_LABELS = np.array([[1, 2], [3, 4], [5, 6], [7, 8]])

BAD_FILES = {
    "truncated data": ("images.npy", _npy_bytes(GOOD_IMAGES)[:-10], "is truncated"),
    "trailing bytes": ("labels.npy", _npy_bytes(GOOD_LABELS) + b"\0" * 8, "labels.npy has trailing bytes"),
    "truncated header": ("images.npy", _npy_bytes(GOOD_IMAGES)[:20], "truncated .npy header"),
    "text file": ("labels.npy", b"1,2\n3,4\n", "not a .npy file"),
    "npz archive": ("images.npy", _npz_bytes(), "not a .npy file"),
    "plain pickle": ("labels.npy", pickle.dumps(GOOD_LABELS), "not a .npy file"),
    "object array": ("labels.npy", _npy_bytes(GOOD_LABELS.astype(object), allow_pickle=True),
                     "pickled/object arrays are refused"),
    "float images": ("images.npy", _npy_bytes(GOOD_IMAGES.astype(np.float32)), "must be uint8"),
    "2-D images": ("images.npy", _npy_bytes(GOOD_IMAGES.reshape(4, -1)), "height == width"),
    "non-square images": ("images.npy", _npy_bytes(GOOD_IMAGES[:, :, :8]), "height == width"),
    "RGB images": ("images.npy", _npy_bytes(np.zeros((4, SIZE, SIZE, 3), np.uint8)),
                   r"\(n_samples, height, width\)"),
    "no images": ("images.npy", _npy_bytes(GOOD_IMAGES[:0]), "holds no images"),
    "0x0 images": ("images.npy", _npy_bytes(np.zeros((4, 0, 0), np.uint8)), "images of 0x0 pixels"),
    "three label columns": ("labels.npy", _npy_bytes(np.zeros((4, 3), np.int64)),
                            r"\(n_samples, 2\)"),
    "float labels": ("labels.npy", _npy_bytes(GOOD_LABELS.astype(np.float64)), "integers"),
    "hour 12": ("labels.npy", _npy_bytes(np.array([[1, 2], [12, 0], [5, 6], [7, 8]])),
                "hour 12 in row 1 is outside 0-11"),
    "minute 60": ("labels.npy", _npy_bytes(np.array([[1, 2], [3, 4], [5, 60], [7, 8]])),
                  "minute 60 in row 2 is outside 0-59"),
    "negative minute": ("labels.npy", _npy_bytes(np.array([[1, -1], [3, 4], [5, 6], [7, 8]])),
                        "minute -1 in row 0"),
    "counts differ": ("labels.npy", _npy_bytes(GOOD_LABELS[:3]), "holds 3 labels but"),
}


@pytest.mark.parametrize("file_name, content, message", BAD_FILES.values(), ids=BAD_FILES)
def test_bad_files_name_the_file(tmp_path, renders, file_name, content, message):
    data = tmp_path / "data"
    write_course(data, images=GOOD_IMAGES, labels=GOOD_LABELS)
    (data / file_name).write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        load_clocks(data)
    assert str(data / file_name) in str(info.value)
    assert renders == [] and not (tmp_path / "cache").exists()
    assert listing(data) == ["images.npy", "labels.npy"]


def test_pickled_payload_never_runs(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    array = np.empty(4, dtype=object)
    array[:] = [Payload()] * 4
    write_course(tmp_path, images=GOOD_IMAGES, labels=GOOD_LABELS)
    (tmp_path / "labels.npy").write_bytes(_npy_bytes(array, allow_pickle=True))
    with pytest.raises(ValueError, match="pickled/object arrays are refused"):
        load_clocks(tmp_path)
    assert not marker.exists()


# --- generate: atomic, never a partial set -----------------------------------------------------

@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, OSError])
def test_interrupted_save_leaves_nothing(tmp_path, monkeypatch, renders, interrupt):
    real_save, calls = np.save, []

    def failing_save(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise interrupt("disk full")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(interrupt):
        generate_clocks(5)
    assert listing(tmp_path / "cache" / "clocks") == []
    monkeypatch.setattr(np, "save", real_save)
    # Nothing there passes for a set: the next load renders a complete one.
    assert load_clocks()[0].shape == (6, 150, 150) and len(renders) == 2


def test_interrupted_render_writes_nothing(tmp_path, monkeypatch):
    def failing_render(n, seed=0, size=150, backend=None, max_turn=180.0, faces="varied"):
        raise KeyboardInterrupt

    monkeypatch.setattr(clock_render, "render_clocks", failing_render)
    with pytest.raises(KeyboardInterrupt):
        load_clocks()
    assert not (tmp_path / "cache" / "clocks").exists()


def test_interrupted_renames_never_leave_a_set_that_passes(tmp_path, monkeypatch, renders):
    directory = tmp_path / "cache" / "clocks"
    real_replace = os.replace

    def interrupt_after_first(source, target):
        if interrupt_after_first.calls:
            raise KeyboardInterrupt
        interrupt_after_first.calls.append(target)
        return real_replace(source, target)

    interrupt_after_first.calls = []
    monkeypatch.setattr(os, "replace", interrupt_after_first)
    with pytest.raises(KeyboardInterrupt):
        generate_clocks(5)
    monkeypatch.setattr(os, "replace", real_replace)
    assert interrupt_after_first.calls == [directory / "clocks.json"]
    assert listing(directory) == ["clocks.json"]  # the temporaries are gone
    assert clocks.find() is None  # not taken for a set

    # Over a complete set, a new sidecar beside the old files fails the checksum check.
    generate_clocks(5, seed=0)
    interrupt_after_first.calls = []
    monkeypatch.setattr(os, "replace", interrupt_after_first)
    with pytest.raises(KeyboardInterrupt):
        generate_clocks(5, seed=1)
    monkeypatch.setattr(os, "replace", real_replace)
    assert listing(directory) == ["clocks.json", "images.npy", "labels.npy"]
    with pytest.raises(ValueError, match="does not match the SHA-256"):
        load_clocks()


def test_generate_never_overwrites_course_files(tmp_path, renders):
    expected = write_course(tmp_path / "course")
    with pytest.raises(ValueError, match="without clocks.json"):
        generate_clocks(3, directory=tmp_path / "course")
    assert renders == []
    assert_loaded(load_clocks(tmp_path / "course"), expected)


def test_the_source_names_the_resolved_directory_and_an_unverified_set(tmp_path, renders, monkeypatch):
    generate_clocks(1, directory=tmp_path / "set" / "clocks")
    monkeypatch.chdir(tmp_path)
    *_, source = load_clocks("set", with_source=True)
    assert f"1 image, 150x150) from {tmp_path / 'set' / 'clocks'}" in source and "not checked" not in source
    *_, source = load_clocks("set", verify=False, with_source=True)
    assert source.endswith("not checked against its checksums (verify=False, --no-verify)")


def test_a_cache_that_cannot_be_written_is_said_before_rendering(tmp_path, renders, monkeypatch):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("FASTDL_CACHE_DIR", str(tmp_path / "a-file"))
    with pytest.raises(NotADirectoryError, match=r"cannot write into .*a-file.clocks \(under the cache .*"
                                                 r"\$FASTDL_CACHE_DIR"):
        generate_clocks(3)
    assert renders == []


def test_generate_never_overwrites_files_beside_a_sidecar_it_did_not_write(tmp_path, renders):
    expected = write_course(tmp_path / "course")
    (tmp_path / "course" / "clocks.json").write_text("{}")
    with pytest.raises(ValueError, match="not a sidecar fastdl wrote"):
        generate_clocks(3, directory=tmp_path / "course")
    assert renders == [] and (tmp_path / "course" / "clocks.json").read_text() == "{}"
    np.testing.assert_array_equal(np.load(tmp_path / "course" / "images.npy"), expected[0])


def test_a_given_directory_with_one_of_the_two_files_is_an_error(tmp_path, monkeypatch, renders):
    write_course(tmp_path / "env")
    monkeypatch.setenv("FASTDL_DATA", str(tmp_path / "env"))
    write_course(tmp_path / "half")
    (tmp_path / "half" / "labels.npy").unlink()
    with pytest.raises(DatasetNotFoundError, match="images.npy but not their labels.npy"):
        load_clocks(tmp_path / "half")  # not the set in $FASTDL_DATA, not a rendered one
    assert renders == []


def test_generate_replaces_an_earlier_synthetic_set(tmp_path, renders):
    generate_clocks(3, seed=1, directory=tmp_path)
    generate_clocks(4, seed=2, directory=tmp_path)
    images, labels, source = load_clocks(tmp_path, with_source=True)
    assert len(images) == 4 and "seed 2, one clock, turned at most 30 degrees, 4 images" in source
    assert listing(tmp_path) == ["clocks.json", "images.npy", "labels.npy"]


def test_generate_replaces_a_set_whose_sidecar_is_damaged(tmp_path, renders):
    """load_clocks says to re-generate a set whose clocks.json (fastdl's: it holds the mark) is cut
    short; generate_clocks does so, where it refused such a set as someone's own before."""
    generate_clocks(3, seed=1, directory=tmp_path)
    sidecar = tmp_path / "clocks.json"
    sidecar.write_text(sidecar.read_text()[:-30])
    with pytest.raises(ValueError, match="is not valid JSON.*re-generate"):
        load_clocks(tmp_path)
    generate_clocks(4, seed=2, directory=tmp_path)
    assert len(load_clocks(tmp_path)[0]) == 4


@pytest.mark.parametrize("arguments, error, message", [
    ({"n": 0}, ValueError, "n must be >= 1"), ({"n": 2.5}, TypeError, "n must be an integer"),
    ({"n": True}, TypeError, "n must be an integer"), ({"seed": -1}, ValueError, "seed must be >= 0"),
    ({"size": 12}, ValueError, "size must be >= 16")])
def test_generate_checks_its_arguments(tmp_path, renders, arguments, error, message):
    # As render_clocks: a value of the wrong type is a TypeError (it was a ValueError here).
    with pytest.raises(error, match=message):
        generate_clocks(directory=tmp_path / "g", **{"n": 3, **arguments})
    assert renders == [] and not (tmp_path / "g").exists()


def test_dataset_locations_lists_places_and_fallback(tmp_path, monkeypatch):
    places = dataset_locations("clocks", data_dir="/somewhere")
    assert [place for place, _ in places] == [
        "/somewhere", "/somewhere/clocks", "$FASTDL_DATA", str(tmp_path / "cache"),
        str(tmp_path / "cache" / "clocks"), str(tmp_path / "cache" / "clocks")]
    assert "synthetic" in places[-1][1] and "first use" in places[-1][1]
    monkeypatch.setenv("FASTDL_DATA", str(tmp_path / "env"))
    assert [place for place, _ in dataset_locations("clocks")][:2] == [
        str(tmp_path / "env"), str(tmp_path / "env" / "clocks")]


def test_outdated_synthetic_cache_is_rendered_again(capsys, renders, monkeypatch):
    from fastdl.data import clock_render

    with monkeypatch.context() as patch:
        patch.setattr(clock_render, "RENDERER_VERSION", clock_render.RENDERER_VERSION - 1)
        load_clocks()
    capsys.readouterr()
    load_clocks()
    assert "older version of fastdl" in capsys.readouterr().err
    load_clocks()
    assert len(renders) == 2


def test_cache_of_varied_clocks_from_before_one_clock_is_rendered_again(tmp_path, capsys, renders):
    """fastdl's default set had varied clocks and no "faces" in clocks.json before it was one
    clock: such a cache is rendered again; a set the user generated with faces="varied" is kept."""
    cache = tmp_path / "cache" / "clocks"
    load_clocks()
    sidecar = json.loads((cache / "clocks.json").read_text())
    del sidecar["faces"]
    (cache / "clocks.json").write_text(json.dumps(sidecar))
    capsys.readouterr()
    load_clocks()
    err = capsys.readouterr().err
    assert "older version of fastdl" in err and len(renders) == 2
    assert "the new default settings (one clock, turned at most 30 degrees, 150x150)" in err
    assert json.loads((cache / "clocks.json").read_text())["faces"] == "one"

    generate_clocks(6, faces="varied")
    *_, source = load_clocks(with_source=True)
    assert len(renders) == 3 and "varied clocks" in source


def test_outdated_cache_the_user_generated_is_rendered_again_with_its_settings(tmp_path, capsys,
                                                                              renders):
    """`fastdl data generate clocks --faces varied --max-turn 180 --size 32` into the cache, then
    a new renderer version: the set is rendered again as the user made it, not with the defaults."""
    cache = tmp_path / "cache" / "clocks"
    generate_clocks(6, size=32, max_turn=180.0, faces="varied")
    sidecar = json.loads((cache / "clocks.json").read_text())
    sidecar["renderer_version"] = clock_render.RENDERER_VERSION - 1
    (cache / "clocks.json").write_text(json.dumps(sidecar))
    *_, source = load_clocks(with_source=True)
    assert "with their recorded settings (varied clocks, 32x32)" in capsys.readouterr().err
    assert renders == [(6, 0, 32, "varied")] * 2 and "varied clocks, 6 images, 32x32" in source
    rendered = json.loads((cache / "clocks.json").read_text())
    assert rendered["max_turn"] == 180.0
    assert rendered["renderer_version"] == clock_render.RENDERER_VERSION


@pytest.mark.parametrize("key, value, message", [
    ("max_turn", None, r"max_turn .*\[0, 180\], got None"),
    ("max_turn", "30", r"max_turn .*got '30'"),
    ("faces", "many", r"faces .*got 'many'"),
    ("size", 4.5, r"size .*got 4.5"),
    ("size", 4096, r"size .*got 4096"),
    ("seed", None, r"seed .*got None"),
])
def test_hand_edited_sidecar_settings_are_named(tmp_path, renders, key, value, message):
    data = generate_clocks(3, seed=1, directory=tmp_path / "set")
    sidecar = json.loads((data / "clocks.json").read_text())
    sidecar[key] = value
    (data / "clocks.json").write_text(json.dumps(sidecar))
    with pytest.raises(ValueError, match=f"clocks.json records an invalid {message}") as info:
        load_clocks(data, with_source=True)
    assert f"Delete {data} and re-generate it" in str(info.value)


def test_a_damaged_set_says_how_to_make_the_same_set_again(tmp_path, renders):
    """The re-generate hint of a set whose sidecar is read carries its recorded settings: the
    command (or, for a size the command does not take, the call) makes the same set again."""
    data = generate_clocks(5, seed=3, directory=tmp_path / "clocks", max_turn=90.0, faces="varied")
    (data / "labels.npy").write_bytes((data / "labels.npy").read_bytes()[:-1] + b"\x01")
    with pytest.raises(ValueError, match=r"`fastdl data generate clocks --n 5 --seed 3 --max-turn 90.0 --faces varied "
                                         r"--data-dir .*`"):
        load_clocks(data)
    other = generate_clocks(2, seed=1, directory=tmp_path / "mine", size=32)
    (other / "labels.npy").write_bytes((other / "labels.npy").read_bytes()[:-1] + b"\x01")
    with pytest.raises(ValueError, match=r"generate_clocks\(directory='.*mine', n=2, seed=1, max_turn=30.0, "
                                         r"faces='one', size=32\)"):
        load_clocks(other)
