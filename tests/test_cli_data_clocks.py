"""``fastdl data generate clocks`` and the clocks entry of ``fastdl data list``."""

import numpy as np
import pytest

from fastdl.cli import main
from fastdl.data import clock_render, load_clocks


@pytest.fixture(autouse=True)
def isolated_places(tmp_path, monkeypatch):
    """No developer's $FASTDL_DATA or cache leaks in; a fast seeded stand-in renderer."""
    monkeypatch.delenv("FASTDL_DATA", raising=False)
    monkeypatch.setenv("FASTDL_CACHE_DIR", str(tmp_path / "cache"))

    def fake_render(n, seed=0, size=150, backend=None, max_turn=180.0, faces="varied"):
        rng = np.random.default_rng(seed)
        images = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
        return images, np.stack([rng.integers(0, 12, n), rng.integers(0, 60, n)], axis=1)

    monkeypatch.setattr(clock_render, "render_clocks", fake_render)


def test_generate_into_data_dir(tmp_path, capsys):
    assert main(["data", "generate", "clocks", "--n", "5", "--seed", "3",
                 "--data-dir", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    directory = tmp_path / "d" / "clocks"
    assert f"wrote 5 synthetic clocks (seed 3) to {directory}" in out
    assert "images/s" in out and " s, " in out
    images, labels, source = load_clocks(tmp_path / "d", with_source=True)
    assert images.shape == (5, 150, 150) and labels.shape == (5, 2)
    assert "synthetic clocks" in source and "seed 3, one clock, turned at most 30 degrees, 5 images" in source
    assert not (tmp_path / "cache").exists()
    assert "note:" not in out  # the cache's set is left as it was


def test_generate_into_cache_is_what_load_clocks_reads(tmp_path, capsys):
    assert main(["data", "generate", "clocks", "--n", "4"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "cache" / "clocks") in out
    assert "note: load_clocks() and `fastdl reproduce a5` read these clocks now" in out  # 4, not 18,000
    images, _, source = load_clocks(with_source=True)
    assert len(images) == 4 and "seed 0" in source
    assert capsys.readouterr().err == ""  # read, not rendered again


@pytest.mark.parametrize("argv", [["data", "generate", "planets"],
                                  ["data", "generate", "clocks", "--n", "0"],
                                  ["data", "generate", "clocks", "--n", "many"],
                                  ["data", "generate", "clocks", "--seed", "-2"]])
def test_generate_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2


def test_generate_refuses_course_files_and_reports_unwritable(tmp_path, capsys):
    course = tmp_path / "d" / "clocks"
    course.mkdir(parents=True)
    np.save(course / "images.npy", np.zeros((2, 8, 8), np.uint8))
    np.save(course / "labels.npy", np.zeros((2, 2), np.int64))
    assert main(["data", "generate", "clocks", "--n", "2", "--data-dir", str(tmp_path / "d")]) == 2
    assert "without clocks.json" in capsys.readouterr().err
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert main(["data", "generate", "clocks", "--n", "2", "--data-dir", str(blocker)]) == 2
    assert "could not write the clocks" in capsys.readouterr().err


def test_data_list_shows_clocks(tmp_path, capsys):
    assert main(["data", "list", "--data-dir", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    section = out[out.index("clocks:"):]
    for expected in ("fastdl.data.load_clocks", "images.npy, labels.npy",
                     str(tmp_path / "d" / "clocks"), str(tmp_path / "cache" / "clocks"),
                     "synthetic clocks, rendered there on first use",
                     "fastdl data generate clocks"):
        assert expected in section
    assert "leiden-digits:" in out and "fashion-mnist:" in out


def test_generate_with_a_bounded_turn_is_recorded_and_named(tmp_path, monkeypatch):
    import json

    from fastdl.cli import main
    from fastdl.data import load_clocks

    monkeypatch.delenv("FASTDL_DATA", raising=False)
    assert main(["data", "generate", "clocks", "--n", "3", "--max-turn", "30",
                 "--data-dir", str(tmp_path)]) == 0
    sidecar = json.loads((tmp_path / "clocks" / "clocks.json").read_text())
    assert sidecar["max_turn"] == 30.0
    images, labels, source = load_clocks(tmp_path, with_source=True)
    assert images.shape == (3, 150, 150) and "turned at most 30 degrees" in source
    assert main(["data", "generate", "clocks", "--n", "3", "--max-turn", "200",
                 "--data-dir", str(tmp_path / "other")]) == 2


def test_generate_varied_faces_is_recorded_and_named(tmp_path):
    import json

    assert main(["data", "generate", "clocks", "--n", "2", "--faces", "varied",
                 "--data-dir", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "clocks" / "clocks.json").read_text())["faces"] == "varied"
    assert "varied clocks" in load_clocks(tmp_path, with_source=True)[2]
    with pytest.raises(SystemExit):
        main(["data", "generate", "clocks", "--faces", "some"])


def test_too_many_images_is_a_one_line_error(monkeypatch, tmp_path, capsys):
    def out_of_memory(n, **kwargs):
        raise MemoryError(f"Unable to allocate {n} images")

    monkeypatch.setattr(clock_render, "render_clocks", out_of_memory)
    assert main(["data", "generate", "clocks", "--n", "99999999999", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == "fastdl: error: out of memory (Unable to allocate 99999999999 images)\n"


def test_a5_with_an_unwritable_cache_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("")
    monkeypatch.setenv("FASTDL_CACHE_DIR", str(blocker))  # the synthetic clocks cannot be written
    assert main(["reproduce", "a5", "--quick", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "fastdl: error: " in err and "Traceback" not in err


def test_generate_into_cache_says_only_a_set_other_than_the_stand_in_replaces_it(monkeypatch, capsys):
    from fastdl.data import clocks

    monkeypatch.setattr(clocks, "SYNTHETIC_N", 3)
    monkeypatch.setattr(clocks, "DEFAULT_SET", {**clocks.DEFAULT_SET, "n": 3})
    assert main(["data", "generate", "clocks", "--n", "3"]) == 0
    assert "note:" not in capsys.readouterr().out
    assert main(["data", "generate", "clocks", "--n", "3", "--max-turn", "180", "--faces", "varied"]) == 0
    assert "not the stand-in for the course's set (3 clocks, seed 0, one clock turned at most 30 degrees)" \
        in capsys.readouterr().out


def test_generate_says_so_where_load_clocks_reads_the_set_from_data_dir(tmp_path, monkeypatch, capsys):
    """--data-dir naming $FASTDL_DATA (or the cache's folder) replaces what load_clocks() reads too."""
    monkeypatch.setenv("FASTDL_DATA", str(tmp_path / "data"))
    (tmp_path / "data").mkdir()
    assert main(["data", "generate", "clocks", "--n", "3", "--data-dir", str(tmp_path / "data")]) == 0
    assert "note: load_clocks() and `fastdl reproduce a5` read these clocks now" in capsys.readouterr().out
    assert main(["data", "generate", "clocks", "--n", "3", "--data-dir", str(tmp_path / "elsewhere")]) == 0
    assert "note:" not in capsys.readouterr().out
