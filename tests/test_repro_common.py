"""What every reproduction shares (fastdl.repro and fastdl.repro.report): the registry's run and how
it publishes a run's files, the time estimate's decision, summaries, scaling and capped split sizes."""

import json
import os

import numpy as np
import pytest

import fastdl.repro as repro
from fastdl.repro import a5, report


def test_run_leaves_quick_to_the_runner_as_the_cli_does(monkeypatch, tmp_path):
    """repro.run("a5") must estimate the time (quick=None), not start the hours-long full run."""
    calls = []
    monkeypatch.setattr(a5, "run", lambda **kwargs: calls.append(kwargs) or {"files": []})
    repro.run("a5", out_dir=tmp_path)
    (call,) = calls
    staging = call.pop("out_dir")  # the hidden folder the files are published from
    assert call == {"data_dir": None, "quick": None}
    assert staging.parent == tmp_path / "a5" and staging.name.startswith(".a5.") and staging.name.endswith(".partial")


def test_write_summary_lists_itself(tmp_path):
    result = report.write_summary(tmp_path / "a0", {"quick": True, "values": np.arange(2), "files": ["x.md"]})
    path = str(tmp_path / "a0" / "summary.json")
    assert result["files"] == ["x.md", path]
    assert json.loads((tmp_path / "a0" / "summary.json").read_text()) == {
        "quick": True, "values": [0, 1], "files": ["x.md", path]}


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


def test_seconds_per_image_times_each_batch_and_keeps_the_fastest(monkeypatch):
    """One warm-up batch untimed, then each batch trained on and inferred as a call of its own: the
    fastest call counts, over the batch's images. One pass over the three batches, timed as one,
    put the course MLP at 45 min in one run and 24 in the next (its full run: about a minute)."""
    calls, now = [], [0.0]

    class Model:  # batch 1 takes 1 s, the others 5 s (a busy machine), on a fake clock
        def fit(self, x, y, epochs, batch_size, shuffle=True):
            calls.append(("fit", int(x[0, 0]), len(x), sorted(y) if isinstance(y, dict) else len(y), shuffle))
            now[0] += 1 if x[0, 0] == 1 else 5

        def predict(self, x, batch_size):
            calls.append(("predict", int(x[0, 0]), len(x)))
            now[0] += 1 if x[0, 0] == 1 else 5

    monkeypatch.setattr(report.time, "perf_counter", lambda: now[0])
    x = np.repeat(np.arange(3.0), 4)[:, None] * np.ones((1, 2))  # batch b holds the value b
    y = {"hour": np.zeros(12), "minute": np.zeros(12)}
    assert report.seconds_per_image(Model(), x, y, 4) == (1 / 4, 1 / 4)
    # Every timed call is over report.TIMED_SECONDS: report.TIMED_BATCHES of each, one per batch.
    assert calls == [("fit", 0, 4, ["hour", "minute"], True), ("predict", 0, 4),
                     *[("fit", b, 4, ["hour", "minute"], False) for b in range(3)],
                     *[("predict", b, 4) for b in range(3)]]
    with pytest.raises(ValueError, match="infer must be"):
        report.seconds_per_image(Model(), np.zeros((4, 2)), np.zeros(4), 4, infer="score")
    with pytest.raises(ValueError, match="0 images"):
        report.seconds_per_image(Model(), np.zeros((0, 2)), np.zeros(0), 4)


def test_fastest_call_times_short_steps_again_up_to_its_budget(monkeypatch):
    seconds = iter([0.2, 0.1, 0.3, 0.05, 0.2, 9.0])  # each call's duration
    now = [0.0]
    steps = []

    def step(i):
        steps.append(i)
        now[0] += next(seconds)

    monkeypatch.setattr(report.time, "perf_counter", lambda: now[0])
    # Three calls at least; then more while they add up to under 0.5 s (0.6 after three: done).
    assert report.fastest_call(step, calls=3, seconds=0.5) == pytest.approx(0.1)
    assert steps == [0, 1, 2]
    steps.clear()
    # One call at least, then more while under 1 s in all, at most 3: 0.05, 0.2, 9.0 -> 0.05.
    assert report.fastest_call(step, calls=1, seconds=1.0, most=3) == pytest.approx(0.05)
    assert steps == [0, 1, 2]


def test_announce_estimate_says_it_is_timing(capsys):
    report.announce_estimate()
    assert capsys.readouterr().out == "Estimating how long the full run takes here (timing a few training steps)...\n"


# --- repro.run publishes a run's files all together, or none of them ------------------------------

def _fake_a3(monkeypatch, names, fail=None, seen=None):
    """a3's runner replaced by one writing ``names`` (and summary.json) into ``out_dir/a3``, raising
    ``fail`` instead of returning when given; ``seen`` collects the out_dir it was given."""
    from fastdl.repro import a3

    def run(data_dir=None, out_dir="results", quick=False):
        if seen is not None:
            seen.append(out_dir)
        out = os.path.join(out_dir, "a3")
        files = [report.write_json(os.path.join(out, name), {"run": len(names), "quick": quick}) for name in names]
        if fail is not None:
            raise fail
        return report.write_summary(out, {"quick": quick, "files": files, "out": out})

    monkeypatch.setattr(a3, "run", run)


def _snapshot(directory):
    """{path relative to directory: bytes} of every file below it."""
    return {str(path.relative_to(directory)): path.read_bytes() for path in directory.rglob("*") if path.is_file()}


def test_run_reports_the_final_paths_and_leaves_no_hidden_folder(tmp_path, monkeypatch):
    _fake_a3(monkeypatch, ["table.json", "tsne.json"])
    result = repro.run("a3", out_dir=tmp_path / "out", quick=False)
    final = tmp_path / "out" / "a3"
    assert result["files"] == [str(final / "table.json"), str(final / "tsne.json"), str(final / "summary.json")]
    assert result["out"] == str(final)
    summary = json.loads((final / "summary.json").read_text())
    assert summary["files"] == result["files"] and summary["out"] == str(final)
    assert os.listdir(tmp_path / "out") == ["a3"]  # the hidden folder is gone
    assert sorted(os.listdir(final)) == ["summary.json", "table.json", "tsne.json"]


def test_a_target_that_links_elsewhere_gets_the_files(tmp_path, monkeypatch):
    """results/a3 -> /bigdisk/a3 worked before runs were published: the hidden folder is made
    inside the target, so every move is a rename there (staged beside the link, a move across
    file systems failed and the finished run's files were deleted)."""
    elsewhere = tmp_path / "bigdisk" / "a3"
    elsewhere.mkdir(parents=True)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a3").symlink_to(elsewhere)
    seen = []
    _fake_a3(monkeypatch, ["table.json"], seen=seen)
    repro.run("a3", out_dir=tmp_path / "out", quick=True)
    assert seen[0].resolve().parent == elsewhere
    assert sorted(os.listdir(elsewhere)) == ["summary.json", "table.json"]


def test_files_that_cannot_be_moved_in_are_kept_and_named(tmp_path, monkeypatch):
    import errno

    _fake_a3(monkeypatch, ["table.json"])
    real_replace = os.replace

    def across_devices(source, destination):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "replace", across_devices)  # a subfolder linking to another file system
    repro.run("a3", out_dir=tmp_path / "out", quick=True)
    assert sorted(os.listdir(tmp_path / "out" / "a3")) == ["summary.json", "table.json"]

    def refused(source, destination):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "replace", refused)
    with pytest.raises(OSError, match=r"a3 finished, but its files could not all be moved .* those not moved are in"):
        repro.run("a3", out_dir=tmp_path / "again", quick=True)
    monkeypatch.setattr(os, "replace", real_replace)
    (staging,) = (tmp_path / "again" / "a3").iterdir()
    assert sorted(path.name for path in (staging / "a3").iterdir()) == ["summary.json", "table.json"]


def test_an_interrupted_run_leaves_the_previous_one_as_it_was(tmp_path, monkeypatch):
    """Ctrl-C while a full run draws its figures left its new tables beside the quick run's summary."""
    out = tmp_path / "out"
    _fake_a3(monkeypatch, ["table.json", "figure.json"])
    repro.run("a3", out_dir=out, quick=True)
    before = _snapshot(out)
    for error in (KeyboardInterrupt(), MemoryError("simulated")):
        _fake_a3(monkeypatch, ["table.json", "other.json"], fail=error)
        with pytest.raises(type(error)):
            repro.run("a3", out_dir=out, quick=False)
        assert _snapshot(out) == before and os.listdir(out) == ["a3"]
    # A folder made for a run that failed is removed again.
    _fake_a3(monkeypatch, ["table.json"], fail=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        repro.run("a3", out_dir=tmp_path / "new" / "out", quick=False)
    assert not (tmp_path / "new").exists()


def test_a_new_run_removes_what_only_the_previous_run_listed(tmp_path, monkeypatch):
    """a6 --epochs 3 then --epochs 1 left vae_samples_epoch_3.png behind, listed nowhere; a1's t-SNE
    survived a later --quick run that skipped it."""
    out = tmp_path / "out"
    _fake_a3(monkeypatch, ["table.json", "tsne.json", "epoch_3.json"])
    repro.run("a3", out_dir=out, quick=False)
    (out / "a3" / "notes.txt").write_text("the user's own file")
    _fake_a3(monkeypatch, ["table.json", "epoch_1.json"])
    result = repro.run("a3", out_dir=out, quick=True)
    assert sorted(os.listdir(out / "a3")) == ["epoch_1.json", "notes.txt", "summary.json", "table.json"]
    assert json.loads((out / "a3" / "table.json").read_text())["quick"] is True
    assert sorted(os.path.basename(path) for path in result["files"]) == ["epoch_1.json", "summary.json",
                                                                         "table.json"]


def test_a_real_run_interrupted_while_drawing_keeps_the_quick_run(tmp_path, monkeypatch):
    """The mixed-outputs report's case: a2's quick run, then a full run interrupted at its figure."""
    from fastdl.repro import a2

    monkeypatch.delenv("FASTDL_DATA", raising=False)
    quick = repro.run("a2", out_dir=tmp_path, quick=True)
    assert all(path.startswith(str(tmp_path / "a2")) and os.path.isfile(path) for path in quick["files"])
    before = _snapshot(tmp_path)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C while the figure is drawn

    monkeypatch.setattr(a2, "_plot_accuracy", interrupted)
    with pytest.raises(KeyboardInterrupt):
        repro.run("a2", out_dir=tmp_path, quick=False)
    assert _snapshot(tmp_path) == before
