"""fastdl.repro.a2: the accuracy table sets the write-up's counts beside fastdl's and says why they differ."""

import json
from pathlib import Path

import pytest

from fastdl.repro import a2

COURSE_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "leiden-digits"


@pytest.fixture(autouse=True)
def no_data_env(monkeypatch):
    """Tests choose their data explicitly; a developer's $FASTDL_DATA must not leak in."""
    monkeypatch.delenv("FASTDL_DATA", raising=False)


@pytest.mark.skipif(not COURSE_DIR.is_dir(), reason=f"course data not found at {COURSE_DIR}")
def test_course_table_shows_the_write_up_beside_fastdl(tmp_path):
    a2.run(data_dir=COURSE_DIR, out_dir=tmp_path, quick=True)
    table = json.loads((tmp_path / "a2" / "accuracy.json").read_text())
    assert table["headers"][-1] == "Write-up (correct / incorrect / accuracy)"
    # The write-up's table, row by row (course-projects.md, assignment 2).
    assert [row[-1] for row in table["rows"]] == ["1683 / 24 / 98.59%", "881 / 119 / 88.10%",
                                                  "1707 / 0 / 100.00%", "872 / 128 / 87.20%"]
    text = (tmp_path / "a2" / "accuracy.md").read_text()
    assert "| Online | Train |" in text and "| 1707 / 0 / 100.00% |" in text
    assert "differ from the write-up's by a few samples" in text and "saturated" in text
    assert "Quick run" in text


def test_other_data_shows_no_write_up_counts(tmp_path):
    a2.run(out_dir=tmp_path, quick=True)  # the embedded 8x8 digits: not the course's splits
    table = json.loads((tmp_path / "a2" / "accuracy.json").read_text())
    assert [row[-1] for row in table["rows"]] == ["-"] * 4
    assert "not shown" in table["notes"][0]
