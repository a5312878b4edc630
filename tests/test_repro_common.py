"""What every reproduction shares (fastdl.repro and fastdl.repro.report): the registry's run, the
time estimate's decision, summaries, scaling and capped split sizes."""

import json

import numpy as np
import pytest

import fastdl.repro as repro
from fastdl.repro import a5, report


def test_run_leaves_quick_to_the_runner_as_the_cli_does(monkeypatch):
    """repro.run("a5") must estimate the time (quick=None), not start the hours-long full run."""
    calls = []
    monkeypatch.setattr(a5, "run", lambda **kwargs: calls.append(kwargs) or {"files": []})
    repro.run("a5", out_dir="unused")
    assert calls == [{"data_dir": None, "out_dir": "unused", "quick": None}]


def test_write_summary_lists_itself(tmp_path):
    result = report.write_summary(tmp_path / "a0", {"quick": True, "values": np.arange(2), "files": ["x.md"]})
    path = str(tmp_path / "a0" / "summary.json")
    assert result["files"] == ["x.md", path]
    assert json.loads((tmp_path / "a0" / "summary.json").read_text()) == {
        "quick": True, "values": [0, 1], "files": ["x.md", path]}


def test_scale_images_adds_the_channel_axis_and_refuses_other_dtypes():
    images = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    scaled = report.scale_images(images)
    assert scaled.dtype == np.float32 and scaled.shape == (1, 2, 2, 1)
    np.testing.assert_array_equal(scaled[..., 0], images / np.float32(255))
    with pytest.raises(TypeError, match="uint8"):
        report.scale_images(images.astype(np.float32))
    with pytest.raises(ValueError, match=r"got shape \(2, 2\)"):
        report.scale_images(images[0])


def test_cap_counts_keeps_at_most_the_sizes_given():
    counts = {"train": 10, "validation": 4, "test": 6}
    assert report.cap_counts(counts) == counts
    assert report.cap_counts(counts, {"train": 3, "test": 99}) == {"train": 3, "validation": 4, "test": 6}


@pytest.mark.parametrize("quick, quick_run, said", [
    (False, True, "A full run takes about 5.0 min here (parts); running it: what runs."),
    (True, True, "so this is the quick run: what runs.\nThe full run: fastdl reproduce aN --full"),
    (True, False, "so the settings not given are the quick run's: what runs."),
])
def test_announce_decision(capsys, quick, quick_run, said):
    report.announce_decision({"total": 300.0}, "parts", quick, "what runs", "fastdl reproduce aN --full",
                             quick_run=quick_run)
    printed = capsys.readouterr().out
    assert said in printed and ("The full run" in printed) is quick


def test_seconds_per_image_times_training_and_inference(monkeypatch):
    """One warm-up batch untimed, then one epoch and one inference pass, each divided by the images."""
    calls = []

    class Model:
        def fit(self, x, y, epochs, batch_size, shuffle=True):
            calls.append(("fit", len(x), sorted(y) if isinstance(y, dict) else len(y), shuffle))

        def predict(self, x, batch_size):
            calls.append(("predict", len(x)))

    ticks = iter(range(100))
    monkeypatch.setattr(report.time, "perf_counter", lambda: float(next(ticks)))
    y = {"hour": np.zeros(12), "minute": np.zeros(12)}
    assert report.seconds_per_image(Model(), np.zeros((12, 2)), y, 4) == (1 / 12, 1 / 12)
    assert calls == [("fit", 4, ["hour", "minute"], True), ("predict", 4),
                     ("fit", 12, ["hour", "minute"], False), ("predict", 12)]
    with pytest.raises(ValueError, match="infer must be"):
        report.seconds_per_image(Model(), np.zeros((4, 2)), np.zeros(4), 4, infer="score")
