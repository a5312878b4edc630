"""fastdl.repro.a1: the write-up's numbers on the course data, and the files a run writes."""

import json
from pathlib import Path

import numpy as np
import pytest

from fastdl.data import COURSE_NAME, EMBEDDED_NAME
from fastdl.repro import ASSIGNMENTS, a1, get_runner

COURSE_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "leiden-digits"
needs_course_data = pytest.mark.skipif(
    not COURSE_DIR.is_dir(),
    reason=f"course data not found at {COURSE_DIR} (the shared folder beside the repository)")

# The write-up's table of centroid distances (course-projects.md, assignment 1), to 0.1.
WRITEUP_DISTANCES = np.array([
    [0.0, 14.4, 9.3, 9.1, 10.8, 7.5, 8.2, 11.9, 9.9, 11.5],
    [14.4, 0.0, 10.1, 11.7, 10.2, 11.1, 10.6, 10.7, 10.1, 9.9],
    [9.3, 10.1, 0.0, 8.2, 7.9, 7.9, 7.3, 8.9, 7.1, 8.9],
    [9.1, 11.7, 8.2, 0.0, 9.1, 6.1, 9.3, 8.9, 7.0, 8.4],
    [10.8, 10.2, 7.9, 9.1, 0.0, 8.0, 8.8, 7.6, 7.4, 6.0],
    [7.5, 11.1, 7.9, 6.1, 8.0, 0.0, 6.7, 9.2, 7.0, 8.3],
    [8.2, 10.6, 7.3, 9.3, 8.8, 6.7, 0.0, 10.9, 8.6, 10.4],
    [11.9, 10.7, 8.9, 8.9, 7.6, 9.2, 10.9, 0.0, 8.5, 5.4],
    [9.9, 10.1, 7.1, 7.0, 7.4, 7.0, 8.6, 8.5, 0.0, 6.4],
    [11.5, 9.9, 8.9, 8.4, 6.0, 8.3, 10.4, 5.4, 6.4, 0.0],
])
WRITEUP_CLASSIFIERS = {
    "nearest_centroid": {"train": (1474, 233), "test": (804, 196)},
    "knn3": {"train": (1671, 36), "test": (914, 86)},
}
QUICK_FILES = ["mean_digits.png", "centroid_distances.md", "centroid_distances.json", "pca.png",
               "classifiers.md", "classifiers.json", "confusion_matrices.png",
               "confusion_matrices.json", "summary.json"]


@pytest.fixture(autouse=True)
def no_data_env(monkeypatch):
    """Tests choose their data explicitly; a developer's $FASTDL_DATA must not leak in."""
    monkeypatch.delenv("FASTDL_DATA", raising=False)


@pytest.fixture(scope="module")
def course_result(tmp_path_factory):
    if not COURSE_DIR.is_dir():
        pytest.skip(f"course data not found at {COURSE_DIR}")
    return a1.run(data_dir=COURSE_DIR, out_dir=tmp_path_factory.mktemp("course"), quick=True)


@needs_course_data
def test_course_distance_table_matches_writeup(course_result):
    assert course_result["source"] == COURSE_NAME
    distances = np.array(course_result["centroid_distances"])
    np.testing.assert_array_equal(np.round(distances, 1), WRITEUP_DISTANCES)
    # The Markdown and JSON tables show the same values to 0.1 and name the source.
    md_path = next(f for f in course_result["files"] if f.endswith("centroid_distances.md"))
    text = Path(md_path).read_text()
    assert "| 7 | 11.9 | 10.7 | 8.9 | 8.9 | 7.6 | 9.2 | 10.9 | 0.0 | 8.5 | 5.4 |" in text
    assert COURSE_NAME in text
    table = json.loads(Path(md_path).with_suffix(".json").read_text())
    assert COURSE_NAME in table["source"]
    assert table["rows"][9][1:] == [f"{value:.1f}" for value in WRITEUP_DISTANCES[9]]

@needs_course_data
def test_course_hardest_pair_is_7_and_9(course_result):
    pair = course_result["hardest_pair"]
    assert pair["classes"] == [7, 9]
    assert pair["distance_rounded"] == 5.4


@needs_course_data
def test_course_classifier_counts_match_writeup(course_result):
    for key, splits in WRITEUP_CLASSIFIERS.items():
        for split, (correct, incorrect) in splits.items():
            counts = course_result["classifiers"][key][split]
            assert (counts["correct"], counts["incorrect"]) == (correct, incorrect), (key, split)
    md_path = next(f for f in course_result["files"] if f.endswith("classifiers.md"))
    text = Path(md_path).read_text()
    for accuracy in ("86.35%", "80.40%", "97.89%", "91.40%"):
        assert accuracy in text


@needs_course_data
def test_course_confusion_matrices_agree_with_counts(course_result):
    for key, splits in course_result["confusion_matrices"].items():
        for split, matrix in splits.items():
            matrix = np.array(matrix)
            assert matrix.shape == (10, 10)
            assert np.trace(matrix) == course_result["classifiers"][key][split]["correct"]


def test_quick_run_on_embedded_default_writes_files(tmp_path, capsys):
    result = a1.run(out_dir=tmp_path, quick=True)
    out = tmp_path / "a1"
    for name in QUICK_FILES:
        assert (out / name).is_file(), name
        assert str(out / name) in result["files"]
    assert not (out / "tsne.png").exists() and not (out / "umap.png").exists()
    assert result["source"] == EMBEDDED_NAME
    assert result["embeddings"]["tsne"]["status"].startswith("skipped")
    assert result["embeddings"]["umap"]["status"].startswith("skipped")
    assert np.array(result["centroid_distances"]).shape == (10, 10)
    a, b = result["hardest_pair"]["classes"]
    assert 0 <= a < b <= 9
    for key in ("nearest_centroid", "knn3"):
        for split, n in (("train", 1133), ("test", 664)):
            counts = result["classifiers"][key][split]
            assert counts["correct"] + counts["incorrect"] == n
            assert 0.7 < counts["accuracy"] <= 1.0
    assert {"load_data", "class_centroids", "pca", "knn3"} <= set(result["timings"])
    # Every table names its source, and the source is printed with the tables.
    for name in ("centroid_distances", "classifiers"):
        assert json.loads((out / f"{name}.json").read_text())["source"]
        assert EMBEDDED_NAME in (out / f"{name}.md").read_text()
    assert json.loads((out / "summary.json").read_text())["source"] == EMBEDDED_NAME
    printed = capsys.readouterr().out
    assert EMBEDDED_NAME in printed and "skipped" in printed and "UMAP compiles" not in printed


def test_full_run_says_before_t_sne_and_umap_that_they_take_a_while(tmp_path, monkeypatch, capsys):
    """40-87 s passed without a word after the distance table while t-SNE and UMAP ran."""
    import sklearn.manifold

    class Started(Exception):
        pass

    def tsne(**kwargs):
        raise Started  # the run stops where t-SNE starts: what was printed by then is under test

    monkeypatch.setattr(sklearn.manifold, "TSNE", tsne)
    with pytest.raises(Started):
        a1.run(out_dir=tmp_path, quick=False)
    printed = capsys.readouterr().out
    assert printed.index("Hardest pair") < printed.index(
        "t-SNE and UMAP maps of the training set (up to a minute on 2 cores; UMAP compiles its functions on "
        "its first run, up to a minute more)...")


def test_full_run_draws_tsne_and_umap(tmp_path):
    # The only full run in the suite: UMAP compiles slowly, so the smaller embedded data is used.
    pytest.importorskip("umap")
    result = a1.run(out_dir=tmp_path, quick=False)
    out = tmp_path / "a1"
    assert (out / "tsne.png").is_file() and (out / "umap.png").is_file()
    assert result["embeddings"]["tsne"]["centroids_2d"] is None
    assert np.array(result["embeddings"]["umap"]["centroids_2d"]).shape == (10, 2)
    assert {"tsne", "umap"} <= set(result["timings"])


def _doubled(x):
    return 2 * x


def _step(x):
    return x + 1


def test_umaps_numba_functions_get_a_disk_cache(monkeypatch):
    """Functions compiled without a cache get one, except where two dispatchers compile one
    function with different options (their cache entries would be mixed up); FASTDL_CACHE=0 turns
    it off."""
    import types

    import numba
    from numba.core.caching import NullCache

    def module():
        fake = types.ModuleType("fake_umap")
        fake.single = numba.njit(_doubled)
        fake.serial, fake.parallel = numba.njit(_step), numba.njit(_step, parallel=True)
        fake.other = 3
        return fake

    monkeypatch.setenv("FASTDL_CACHE", "0")
    off = module()
    a1._cache_numba_functions([off])
    assert isinstance(off.single._cache, NullCache)
    monkeypatch.delenv("FASTDL_CACHE")
    on = module()
    a1._cache_numba_functions([on, on])
    assert not isinstance(on.single._cache, NullCache) and on.single(2.0) == 4.0
    assert isinstance(on.serial._cache, NullCache) and isinstance(on.parallel._cache, NullCache)


def test_hardest_pair_skips_diagonal_and_breaks_ties_in_order():
    distances = np.array([[0.0, 2.0, 1.0], [2.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    assert a1.hardest_pair(distances)["classes"] == [0, 2]


def test_registry_lists_a1():
    assert "a1" in ASSIGNMENTS
    assert get_runner("a1") is a1.run
    with pytest.raises(ValueError, match="unknown assignment"):
        get_runner("a9")
