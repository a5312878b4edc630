"""fastdl.repro.a5 on tiny clock files: outputs, decoding, models, the split and the CLI."""

import json

import numpy as np
import pytest

from fastdl.cli import main
from fastdl.metrics import common_sense_errors
from fastdl.repro import ASSIGNMENTS, a5, a5_models, a5_report, get_runner, report
from fastdl.repro.a5_models import (decode_classes, decode_hands, decode_hours, decode_multihead,
                                    hand_angles, time_classes)

N_IMAGES = 40  # 32 train + 8 test: every model trains one small batch per epoch
OUTPUT_FILES = ["errors.md", "errors.json", "epoch_times.md", "epoch_times.json",
                "classification_sweep.png", "learning_curves.png", "worst_clocks.png",
                "error_histogram.png", "samples.png", "summary.json"]


def tiny_clocks(n=N_IMAGES, seed=0):
    """Course-format arrays: uint8 (n, 150, 150) noise and int64 (n, 2) [hour, minute] labels."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 150, 150), dtype=np.uint8)
    labels = np.stack([rng.integers(0, 12, n), rng.integers(0, 60, n)], axis=1)
    return images, labels.astype(np.int64)


@pytest.fixture(autouse=True)
def no_data_env(monkeypatch, tmp_path):
    """Data comes from the test's own directories: no $FASTDL_DATA, an empty cache."""
    monkeypatch.delenv("FASTDL_DATA", raising=False)
    monkeypatch.setenv("FASTDL_CACHE_DIR", str(tmp_path / "empty-cache"))


@pytest.fixture(scope="module")
def clock_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("clocks")
    images, labels = tiny_clocks()
    np.save(directory / "images.npy", images)
    np.save(directory / "labels.npy", labels)
    return directory


def one_epoch(calls):
    """a5.run with one epoch (and the CLI's arguments recorded), for the command-line tests."""
    real_run = a5.run

    def run(data_dir=None, out_dir="results", quick=None, verify=True):
        calls.append({"data_dir": data_dir, "quick": quick, "verify": verify})
        return real_run(data_dir=data_dir, out_dir=out_dir, quick=quick, verify=verify, epochs=1)

    return run


@pytest.fixture(scope="module")
def quick_run(clock_dir, tmp_path_factory):
    """`fastdl reproduce a5 --quick --data-dir DIR --out OUT` on the tiny files, one epoch."""
    out = tmp_path_factory.mktemp("out")
    calls, results = [], []
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("FASTDL_DATA", raising=False)
        patch.setenv("FASTDL_CACHE_DIR", str(out / "empty-cache"))
        wrapped = one_epoch(calls)
        patch.setattr(a5, "run", lambda **kwargs: results.append(wrapped(**kwargs)) or results[-1])
        status = main(["reproduce", "a5", "--quick", "--data-dir", str(clock_dir),
                       "--out", str(out)])
    return status, calls, results[0], out / "a5"


def test_cli_quick_run_with_data_dir_writes_every_output_naming_the_source(quick_run, clock_dir,
                                                                          capsys):
    status, calls, result, out = quick_run
    assert status == 0 and calls == [{"data_dir": str(clock_dir), "quick": True, "verify": True}]
    for name in OUTPUT_FILES:
        assert (out / name).is_file(), name
        assert str(out / name) in result["files"]
    source = result["source"]
    assert str(clock_dir) in source and "course clocks" in source and "quick run" in source
    for stem in ("errors", "epoch_times"):
        assert source in (out / f"{stem}.md").read_text()
        assert json.loads((out / f"{stem}.json").read_text())["source"] == source
    assert json.loads((out / "summary.json").read_text())["source"] == source
    table = (out / "errors.md").read_text()
    for numbers in ("13.44 / 47.66", "16.93 / 33.30", "14.62 / 24.79", "7.09 / 22.89",
                    "3.51 / 35.81", "1.98 / 41.15", "1.71 / 56.34", "1.53 / 83.38",
                    "4.91 / 11.71"):
        assert numbers in table
    assert "first minute" in table and "Quick run" in table and "hand angles" in table
    assert "1 of 1 on twice the clocks: the steps of 2 epochs" in table and "as many steps" not in table


def test_quick_run_results(quick_run):
    _, _, result, _ = quick_run
    assert result["quick"] is True and result["auto_quick"] is False
    assert result["estimate"] is None and result["epochs"] == 1
    assert result["n_images"] == {"train": 32, "test": 8}
    assert set(result["errors"]) == set(a5.MODELS) and len(a5.MODELS) == 10
    for key, errors in result["errors"].items():
        assert all(0 <= errors[split] <= 360 for split in ("train", "test")), key
        assert len(result["history"][key]["loss"]) == 1
        assert len(result["history"][key]["test_error"]) == 1
        assert result["seconds_per_epoch"][key][0] > 0
    assert set(result["left_edge"]) == {f"classes_{n}" for n in a5.CLASS_COUNTS}
    assert result["best"] == min(result["errors"], key=lambda k: result["errors"][k]["test"])
    assert result["write_up"]["multihead"] == {"train": 4.91, "test": 11.71}
    assert result["history"]["hands"]["test_error"][-1] == pytest.approx(
        result["errors"]["hands"]["test"])


def test_cli_quick_reads_fastdl_data(clock_dir, tmp_path, monkeypatch, capsys):
    """`fastdl reproduce a5 --quick --out DIR`: the data from $FASTDL_DATA, as a user sets it."""
    monkeypatch.setenv("FASTDL_DATA", str(clock_dir))
    real_run = a5.run
    monkeypatch.setattr(a5, "run", lambda **kwargs: real_run(
        **kwargs, sizes={"train": 8, "test": 4}, epochs=1))
    assert main(["reproduce", "a5", "--quick", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "a5" / "errors.md").is_file()
    assert f"a5: data source: course clocks from {clock_dir}" in capsys.readouterr().out


@pytest.mark.parametrize("flags, quick", [([], None), (["--quick"], True), (["--full"], False)])
def test_cli_quick_full_and_auto(flags, quick, tmp_path, monkeypatch):
    calls = []

    def fake_run(data_dir=None, out_dir="results", quick=None, verify=True):
        calls.append(quick)
        return {"source": "fake", "files": []}

    monkeypatch.setattr(a5, "run", fake_run)
    assert main(["reproduce", "a5", "--out", str(tmp_path), *flags]) == 0
    assert calls == [quick]


def test_full_run_on_tiny_data_with_overrides(tmp_path, monkeypatch):
    images, labels = tiny_clocks(20)
    monkeypatch.setattr(a5, "_load", lambda data_dir, verify: (images, labels, "tiny clocks"))
    result = a5.run(out_dir=tmp_path, quick=False, epochs=2, sizes={"train": 10})
    assert result["quick"] is False and "full run" in result["source"]
    assert result["n_images"] == {"train": 10, "test": 4} and result["epochs"] == 2
    # fastdl's own model: one epoch on the clocks and their mirror images, as many steps.
    assert [len(h["loss"]) for h in result["history"].values()] == [2] * 9 + [1]
    table = (tmp_path / "a5" / "errors.md").read_text()
    # A full run of fewer images and epochs says so, and is not called a quick run.
    assert "Quick run" not in table
    assert "10 of the 16 training images, 2 epochs instead of 60; not comparable" in table
    assert "rounded up (1 of 2 on twice the clocks: as many steps as the other models)" in table


@pytest.mark.parametrize("epochs, fit_epochs, steps", [
    (60, 30, "30 of 60 on twice the clocks: as many steps as the other models"),
    (3, 2, "2 of 3 on twice the clocks: the steps of 4 epochs of the other models, one epoch's steps more than theirs"),
])
def test_mirrored_model_takes_as_many_steps_only_for_even_epochs(epochs, fit_epochs, steps):
    """Half the epochs, rounded up, on twice the clocks: an odd count (the quick run's 3) takes more steps."""
    images, labels = tiny_clocks(4)
    assert a5_models.training_data("hands", images, labels, epochs)[2] == fit_epochs
    assert a5_report.mirrored_steps(epochs) == steps


@pytest.mark.parametrize("estimate, expect_quick", [(report.AUTO_QUICK_SECONDS + 1, True),
                                                    (report.AUTO_QUICK_SECONDS - 1, False)])
def test_auto_quick_follows_the_estimate(estimate, expect_quick, tmp_path, monkeypatch, capsys):
    images, labels = tiny_clocks(20)
    monkeypatch.setattr(a5, "_load", lambda data_dir, verify: (images, labels, "tiny clocks"))
    seen = {}

    def fake_estimate(images, labels, counts, epochs=None, keys=tuple(a5.MODELS), backend=None):
        seen["counts"] = counts
        print("<timing>")
        return {**{key: estimate / 10 for key in a5.MODELS}, "total": estimate}

    monkeypatch.setattr(a5, "estimate_full_seconds", fake_estimate)
    result = a5.run(out_dir=tmp_path, quick=None, epochs=1, sizes={"train": 6, "test": 3})
    assert seen["counts"] == {"train": 6, "test": 3}
    assert result["auto_quick"] is True and result["quick"] is expect_quick
    printed = capsys.readouterr().out
    # The header, then what the seconds of timing are for, then the decision.
    order = ["== Assignment 5: telling the time", "Estimating how long the full run takes here", "<timing>",
             "A full run"]
    assert [printed.index(text) for text in order] == sorted(printed.index(text) for text in order)
    # The message names what was estimated and what runs: the caller's sizes and epochs.
    assert "10 models, 1 epoch each on 6 training clocks" in printed
    assert "6 training and 3 test images, 1 epoch per model" in printed and "800" not in printed
    if expect_quick:
        assert "quick run" in printed and "fastdl reproduce a5 --full --epochs 1" in printed
    else:
        assert "running it" in printed
    assert "Estimated full run" in (tmp_path / "a5" / "epoch_times.md").read_text()


def test_models_trains_only_those_in_the_tables_order(tmp_path, monkeypatch, capsys):
    images, labels = tiny_clocks(20)
    monkeypatch.setattr(a5, "_load", lambda data_dir, verify: (images, labels, "tiny clocks"))
    monkeypatch.setattr(a5, "estimate_full_seconds", lambda *args, **kwargs: {
        "hands": 700.0, "multihead": 700.0, "total": 1400.0})
    result = a5.run(out_dir=tmp_path, epochs=1, sizes={"train": 6, "test": 3},
                    models=["hands", "multihead"])
    assert list(result["errors"]) == ["multihead", "hands"] == list(result["history"])
    assert "--full --models multihead,hands" in capsys.readouterr().out
    table = (tmp_path / "a5" / "errors.md").read_text()
    assert "Multi-head" in table and "hand angles" in table and "Regression" not in table
    written = {path.split("/")[-1] for path in result["files"]}
    assert "classification_sweep.png" not in written and "learning_curves.png" in written
    with pytest.raises(ValueError, match="unknown model.*'multi'.*choose from"):
        a5.run(out_dir=tmp_path, models=["multi"])


@pytest.mark.parametrize("quick, n_epochs, n_train, note", [
    (False, 30, 14400, "30 epochs instead of 60; not comparable with the write-up."),
    (False, 60, 1000, "1,000 of the 14,400 training images; not comparable with the write-up."),
    (True, 3, 800, "Quick run: 800 of the 14,400 training images, 3 epochs instead of 60; not comparable"),
    (True, 60, 14400, "Quick run; not comparable with the write-up."),
])
def test_errors_note_calls_only_a_quick_run_quick(tmp_path, quick, n_epochs, n_train, note):
    """A full-data run of fewer epochs is not a "Quick run"; the split's size is the data's."""
    a5_report.write_tables(tmp_path, "stub", {"multihead": {"train": 1.0, "test": 2.0}}, {}, {},
                           {"multihead": 1}, n_epochs, {"multihead": [1.0, 1.0]},
                           {"train": n_train, "test": 100}, None, quick, n_train_split=14400)
    notes = json.loads((tmp_path / "errors.json").read_text())["notes"]
    assert notes[-1].startswith(note) and ("Quick run" in " ".join(notes)) is quick


def test_course_length_run_has_no_shorter_note(tmp_path):
    a5_report.write_tables(tmp_path, "stub", {"multihead": {"train": 1.0, "test": 2.0}}, {}, {},
                           {"multihead": 1}, 60, {"multihead": [1.0, 1.0]},
                           {"train": 14400, "test": 3600}, None, False, n_train_split=14400)
    assert "not comparable" not in (tmp_path / "errors.md").read_text()


def test_cli_epochs_reaches_a5_and_its_help_says_so(tmp_path, monkeypatch):
    from fastdl.cli import _build_parser

    calls = []

    def fake_run(data_dir=None, out_dir="results", quick=None, epochs=None):
        calls.append({"quick": quick, "epochs": epochs})
        return {"source": "fake", "files": []}

    monkeypatch.setattr(a5, "run", fake_run)
    assert main(["reproduce", "a5", "--full", "--epochs", "30", "--out", str(tmp_path)]) == 0
    assert calls == [{"quick": False, "epochs": 30}]
    reproduce = _build_parser()._subparsers._group_actions[0].choices["reproduce"]
    (epochs_help,) = [action.help for action in reproduce._actions if "--epochs" in action.option_strings]
    assert epochs_help.startswith("a5, a6: epochs per model")


@pytest.mark.parametrize("epochs", [0, -1, 2.5, True])
def test_epochs_below_one_are_refused_before_loading(epochs, tmp_path, monkeypatch):
    monkeypatch.setattr(a5, "_load", lambda *args: pytest.fail("loaded before checking epochs"))
    with pytest.raises(ValueError, match=f"epochs must be an integer >= 1, got {epochs!r}"):
        a5.run(out_dir=tmp_path, quick=True, epochs=epochs)


def test_cli_models_option(tmp_path, monkeypatch, capsys):
    calls, real_run = [], a5.run

    def fake_run(data_dir=None, out_dir="results", quick=None, verify=True, models=None):
        calls.append(models)
        return {"source": "fake", "files": []}

    monkeypatch.setattr(a5, "run", fake_run)
    assert main(["reproduce", "a5", "--out", str(tmp_path), "--models", "multihead, hands"]) == 0
    assert main(["reproduce", "a5", "--out", str(tmp_path)]) == 0
    assert calls == [["multihead", "hands"], None]
    monkeypatch.setattr(a5, "run", real_run)  # checks the keys before it loads any data
    assert main(["reproduce", "a5", "--quick", "--out", str(tmp_path), "--models", "nope"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_estimate_scales_timed_batches_to_a_full_run(monkeypatch):
    # A clock that ticks one second per reading: the estimate's arithmetic, not this machine's
    # timing noise, is under test.
    ticks = iter(range(10 ** 6))
    monkeypatch.setattr(report.time, "perf_counter", lambda: float(next(ticks)))
    rng = np.random.default_rng(0)
    images = rng.random((30, 48, 48, 1), dtype=np.float32)  # the hands model pools 4 times
    _, labels = tiny_clocks(30)
    small = a5.estimate_full_seconds(images, labels, {"train": 100, "test": 20}, epochs=2)
    assert set(small) == {*a5.MODELS, "total"}
    assert small["total"] == pytest.approx(sum(small[key] for key in a5.MODELS))
    # Same architecture, same time: the two regressions, the six classifications.
    assert small["regression_mse"] == small["regression_cyclic"] > 0
    assert small["classes_24"] == small["classes_720"] > 0
    bigger = a5.estimate_full_seconds(images, labels, {"train": 100, "test": 20}, epochs=4)
    assert bigger["hands"] > small["hands"]


def test_cli_explicit_missing_or_bad_data_dir_exits_2(tmp_path, capsys):
    missing = tmp_path / "no-such-dir"
    assert main(["reproduce", "a5", "--quick", "--data-dir", str(missing),
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "clocks not found" in err and str(missing) in err and "images.npy" in err
    bad = tmp_path / "bad"
    bad.mkdir()
    np.save(bad / "images.npy", np.zeros((4, 150, 150), dtype=np.float32))  # not uint8 pixels
    np.save(bad / "labels.npy", np.zeros((4, 2), dtype=np.int64))
    assert main(["reproduce", "a5", "--quick", "--data-dir", str(bad),
                 "--out", str(tmp_path)]) == 2
    assert "fastdl: error:" in capsys.readouterr().err
    assert not (tmp_path / "a5" / "errors.md").exists()


def test_registry_lists_a5():
    assert "a5" in ASSIGNMENTS
    assert get_runner("a5") is a5.run


# -- the split ------------------------------------------------------------------------------------


def test_split_is_the_courses_permutation():
    images, labels = tiny_clocks(50)
    order = np.random.RandomState(42).permutation(50)
    train, test = a5.split_indices(50)
    np.testing.assert_array_equal(train, order[:40])
    np.testing.assert_array_equal(test, order[40:])
    splits = a5.prepare_splits(images, labels)
    x_train, y_train, raw_train = splits["train"]
    np.testing.assert_array_equal(y_train, labels[order[:40]])
    np.testing.assert_array_equal(raw_train, images[order[:40]])
    np.testing.assert_array_equal(x_train[..., 0], images[order[:40]] / np.float32(255))
    assert x_train.dtype == np.float32 and x_train.shape == (40, 150, 150, 1)
    # A quick run keeps the first images of each split of the full run.
    small = a5.prepare_splits(images, labels, {"train": 5, "test": 3})
    np.testing.assert_array_equal(small["train"][1], labels[order[:5]])
    np.testing.assert_array_equal(small["test"][1], labels[order[40:43]])
    with pytest.raises(ValueError, match="labels"):
        a5.prepare_splits(images, labels[:10])


# -- decoding -------------------------------------------------------------------------------------


def test_regression_output_is_read_modulo_12():
    np.testing.assert_allclose(decode_hours([2.25, 12.5, -0.25, 23.0]),
                               [[2, 15], [0, 30], [11, 45], [11, 0]])
    labels = np.array([[3, 30], [0, 0], [11, 59]])
    np.testing.assert_allclose(a5_models.targets("regression_cyclic", labels),
                               [3.5, 0.0, 11 + 59 / 60])


def test_classes_and_their_centre_and_left_edge():
    labels = np.array([[0, 0], [0, 29], [0, 30], [11, 59], [6, 1]])
    np.testing.assert_array_equal(time_classes(labels, 24), [0, 0, 1, 23, 12])
    np.testing.assert_array_equal(time_classes(labels, 720), [0, 29, 30, 719, 361])
    np.testing.assert_array_equal(time_classes(labels, 480), [0, 19, 20, 479, 240])
    # 24 classes: a bin is 30 minutes; its whole minutes are 30c .. 30c + 29.
    np.testing.assert_allclose(decode_classes([0, 1, 23], 24, "left"), [[0, 0], [0, 30], [11, 30]])
    np.testing.assert_allclose(decode_classes([0, 1, 23], 24), [[0, 14.5], [0, 44.5], [11, 44.5]])
    # 720 classes: one minute each, the centre is the minute itself.
    np.testing.assert_allclose(decode_classes([361], 720), [[6, 1]])
    np.testing.assert_allclose(decode_classes([361], 720, "left"), [[6, 1]])
    # 480 classes: 1.5 minutes; bin 0 holds minutes 0 and 1, bin 1 only minute 2.
    np.testing.assert_allclose(decode_classes([0, 1], 480), [[0, 0.5], [0, 2]])
    # Every label decodes back into its own bin, and on average the centre beats the left edge
    # by about half a bin (14.5 - 7.5 = 7 minutes for 24 classes).
    every = np.array([[h, m] for h in range(12) for m in range(60)])
    for n in a5.CLASS_COUNTS:
        classes = time_classes(every, n)
        np.testing.assert_array_equal(time_classes(decode_classes(classes, n), n), classes)
    centre = common_sense_errors(every, decode_classes(time_classes(every, 24), 24)).mean()
    left = common_sense_errors(every, decode_classes(time_classes(every, 24), 24, "left")).mean()
    assert centre == pytest.approx(7.5) and left == pytest.approx(14.5)
    with pytest.raises(ValueError, match="edge"):
        decode_classes([0], 24, "right")


def test_multihead_decoding():
    probabilities = np.eye(12)[[3, 11]]
    np.testing.assert_allclose(decode_multihead(probabilities, [[0.5], [1.2]]),
                               [[3, 30], [11, 59.999]])
    targets = a5_models.targets("multihead", np.array([[4, 15]]))
    assert targets["hour"].tolist() == [4] and targets["minute"].tolist() == [0.25]


def test_hand_angles_round_trip_and_the_hour_near_the_hour():
    every = np.array([[h, m] for h in range(12) for m in range(60)])
    np.testing.assert_allclose(decode_hands(hand_angles(every)), every, atol=1e-9)
    # The hour hand of 2:59 points almost at 3: the hour still comes out as 2, and that of
    # 3:01 just past 3 still gives 3, even when the hour hand is read a few minutes off.
    for true, hour_hand_error in (([2, 59], 20), ([2, 59], -20), ([3, 1], -20), ([3, 1], 20),
                                  ([11, 58], 25), ([0, 2], -25)):
        outputs = hand_angles(np.array([true]))
        angle = np.arctan2(outputs[0, 1], outputs[0, 0]) + 2 * np.pi * hour_hand_error / 720
        outputs[0, :2] = 0.7 * np.cos(angle), 0.7 * np.sin(angle)  # not unit length either
        np.testing.assert_allclose(decode_hands(outputs), [true], atol=1e-9)
    # A minute hand a little before 12 with the hour hand at 3: 2:58, not 3:58.
    outputs = hand_angles(np.array([[3, 0]]))
    minute_angle = -2 * np.pi * 2 / 60
    outputs[0, 2:] = np.cos(minute_angle), np.sin(minute_angle)
    np.testing.assert_allclose(decode_hands(outputs), [[2, 58]], atol=1e-9)
    # 12 o'clock reads 0:00 (the labels' hour), never 12:00 or 0:60.
    np.testing.assert_allclose(decode_hands(hand_angles(np.array([[0, 0]]))), [[0, 0]])


# -- the models -----------------------------------------------------------------------------------


def _conv(k, c_in, c_out):
    return k * k * c_in * c_out + c_out


def _dense(n_in, n_out):
    return n_in * n_out + n_out


def test_parameter_counts_match_keras():
    # 150 -> conv 148 -> pool 74 -> conv 72 -> pool 36 -> conv 34 -> pool 17: 17 * 17 * 32.
    flat = 17 * 17 * 32
    regression = (_conv(3, 1, 16) + _conv(3, 16, 32) + _conv(3, 32, 32) + _dense(flat, 128)
                  + _dense(128, 128) + _dense(128, 1))
    assert a5_models.compiled_model("regression_mse").count_params() == regression == 1_214_561
    for n in a5.CLASS_COUNTS:
        expected = (_conv(3, 1, 32) + 2 * _conv(3, 32, 32) + _dense(flat, 128) + _dense(128, 128)
                    + _dense(128, n))
        assert a5_models.compiled_model(f"classes_{n}").count_params() == expected
    trunk = _conv(3, 1, 16) + _conv(3, 16, 32) + _conv(3, 32, 32)
    multihead = (trunk + _dense(flat, 128) + _dense(128, 128) + _dense(128, 1)
                 + _dense(flat, 256) + _dense(256, 128) + _dense(128, 12))
    model = a5_models.compiled_model("multihead")
    assert model.count_params() == multihead == 3_616_749
    assert model.output_names == ["hour", "minute"]
    # A fourth convolution and pooling: 17 -> conv 15 -> pool 7: 7 * 7 * 64.
    hands = (trunk + _conv(3, 32, 64) + _dense(7 * 7 * 64, 256) + _dense(256, 128)
             + _dense(128, 4))
    assert a5_models.compiled_model("hands").count_params() == hands == 869_028


def test_models_are_seeded():
    images, labels = tiny_clocks(8)
    x = images[..., None].astype(np.float32) / 255
    outputs = []
    for _ in range(2):
        model = a5_models.compiled_model("multihead", seed=3)
        model.fit(x, a5_models.targets("multihead", labels), batch_size=4)
        outputs.append(model.predict(x[:2]))
    np.testing.assert_array_equal(outputs[0]["hour"], outputs[1]["hour"])
    np.testing.assert_array_equal(outputs[0]["minute"], outputs[1]["minute"])


def test_mirrored_clocks_show_twelve_less_the_time():
    from fastdl.data import render_clocks
    from fastdl.repro.a5_models import mirror_clocks, training_data

    labels = np.array([[2, 10], [0, 0], [11, 59], [6, 0], [3, 30]])
    images = np.arange(5 * 4 * 3).reshape(5, 4, 3)
    mirrored, mirrored_labels = mirror_clocks(images, labels)
    np.testing.assert_array_equal(mirrored_labels, [[9, 50], [0, 0], [0, 1], [6, 0], [8, 30]])
    np.testing.assert_array_equal(mirrored[:, :, 0], images[:, :, -1])
    np.testing.assert_array_equal(mirror_clocks(*mirror_clocks(images, labels))[1], labels)
    # The hands of a rendered upright clock, mirrored, are where the new label puts them.
    clocks, times = render_clocks(1, seed=3, size=64, max_turn=0, faces="one")
    np.testing.assert_allclose(hand_angles(mirror_clocks(clocks, times)[1]),
                               hand_angles(times) * [1, -1, 1, -1], atol=1e-12)

    x, y, epochs = training_data("hands", images, labels, 5)
    assert len(x) == 10 and epochs == 3 and training_data("hands", images, labels, 1)[2] == 1
    np.testing.assert_allclose(y[5:], hand_angles(mirrored_labels))
    x, y, epochs = training_data("multihead", images, labels, 5)
    assert x is images and epochs == 5 and set(y) == {"hour", "minute"}


def test_epoch_time_includes_the_test_prediction(tmp_path, monkeypatch):
    """The EpochTimer ends an epoch after the learning curve's test prediction, as the console
    line does, so the table's seconds are the console's."""
    images, labels = tiny_clocks(20)
    monkeypatch.setattr(a5, "_load", lambda data_dir, verify: (images, labels, "tiny clocks"))
    order = []
    for name, cls in (("tracker", a5.EpochTestError), ("timer", a5.nn.EpochTimer)):
        def on_epoch_end(self, epoch, logs=None, _name=name, _real=cls.on_epoch_end):
            order.append(_name)
            return _real(self, epoch, logs)
        monkeypatch.setattr(cls, "on_epoch_end", on_epoch_end)
    a5.run(out_dir=tmp_path, quick=True, epochs=1, sizes={"train": 6, "test": 3},
           models=["regression_mse"])
    assert order == ["tracker", "timer"]
    assert "prediction of the test split" in (tmp_path / "a5" / "epoch_times.md").read_text()


def test_one_epoch_leaves_later_epochs_empty(quick_run):
    _, _, _, out = quick_run
    table = json.loads((out / "epoch_times.json").read_text())
    later, rate = table["headers"].index("Later epochs, mean (s)"), table["headers"].index("Images/s")
    for row in table["rows"]:
        assert row[later] == "-" and row[rate].endswith("(first epoch)"), row


def _captured_figure(monkeypatch):
    """The figures handed to save_figure, instead of saving them."""
    figures = []
    monkeypatch.setattr(report, "save_figure", lambda fig, path, source=None: figures.append(fig) or str(path))
    return figures


def test_error_histogram_counts_are_plain_and_its_legend_clear_of_the_bars(monkeypatch, tmp_path):
    rng = np.random.default_rng(0)
    keys = ["regression_cyclic", "classes_24", "multihead", "hands"]
    test_errors = {key: rng.uniform(0, 360, 200) for key in keys}
    test_errors["hands"][:150] = 1.0  # a good model: one tall first bin, a thin tail
    errors = {key: {"test": float(value.mean())} for key, value in test_errors.items()}
    figures = _captured_figure(monkeypatch)
    a5_report.plot_error_histogram(test_errors, errors, tmp_path / "hist.png", "tiny")
    fig = figures[0]
    ax = fig.axes[0]
    # Empty bins sit at 0 (no log axis to drop them), and the ticks read as counts.
    assert ax.get_yscale() == "symlog" and ax.get_ylim()[0] == 0
    fig.canvas.draw()
    labels = [label.get_text() for label in ax.get_yticklabels()]
    assert "0" in labels and "10" in labels and "100" in labels
    assert all(text.replace(",", "").isdigit() for text in labels), labels
    assert ax.get_legend() is None and len(fig.legends) == 1  # below the axes, not on the bars
    # A quick run's few clocks a bin: a linear axis of whole counts.
    a5_report.plot_error_histogram({key: value[:40] for key, value in test_errors.items()}, errors,
                                   tmp_path / "quick.png", "tiny")
    assert figures[1].axes[0].get_yscale() == "linear" and figures[1].axes[0].get_ylim()[0] == 0
    for figure in figures:
        report.get_pyplot().close(figure)


def test_error_histogram_draws_the_trained_models_when_it_shows_none_of_them(monkeypatch, tmp_path):
    """--models regression_mse trains none of the four models the histogram shows: draw it, not nothing."""
    test_errors = {"regression_mse": np.random.default_rng(0).uniform(0, 360, 40)}
    errors = {"regression_mse": {"test": float(test_errors["regression_mse"].mean())}}
    figures = _captured_figure(monkeypatch)
    a5_report.plot_error_histogram(test_errors, errors, tmp_path / "hist.png", "tiny")
    ax = figures[0].axes[0]
    assert len(ax.patches) == 1 and ax.get_ylim()[1] > 0
    assert [text.get_text() for text in figures[0].legends[0].get_texts()] == [
        f"Regression, MSE: mean {errors['regression_mse']['test']:.1f}"]
    report.get_pyplot().close(figures[0])


def test_learning_curve_legend_is_outside_the_panels(monkeypatch, tmp_path):
    history = {key: {"loss": [3.0, 2.0], "test_error": [100.0, 90.0]} for key in a5.MODELS}
    figures = _captured_figure(monkeypatch)
    a5_report.plot_loss_and_test_error(history, tmp_path / "curves.png", "tiny")
    fig = figures[0]
    assert all(ax.get_legend() is None for ax in fig.axes) and len(fig.legends) == 1
    assert len(fig.legends[0].get_texts()) == len(a5.MODELS)
    report.get_pyplot().close(fig)


def test_footer_wraps_to_the_figure_width(tmp_path):
    """A long data source must not widen the saved figure (bbox_inches="tight" keeps all of it)."""
    from PIL import Image

    fig, ax = report.get_pyplot().subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1])
    path = report.save_figure(fig, tmp_path / "footer.png", source="synthetic clocks, " * 40)
    width, height = Image.open(path).size
    assert width <= 4 * 120 + 20  # 120 dpi: the figure's own width, give or take the tight margin
    assert height > 3 * 120  # the wrapped lines went below the figure
