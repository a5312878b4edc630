"""fastdl.repro.a4 on tiny Fashion-MNIST and CIFAR-10 files: outputs, scaling, models, the CLI."""

import json
from pathlib import Path

import numpy as np
import pytest

import dataset_files
from fastdl.cli import main
from fastdl.data import scale_images
from fastdl.repro import ASSIGNMENTS, a4, get_runner, report

# Tiny data: 60 + 20 Fashion images, 50 + 10 CIFAR images; the first 10 are the validation set.
TINY = dict(quick=True, verify=False, n_validation=10)
OUTPUT_FILES = ["accuracy.md", "accuracy.json", "epoch_times.md", "epoch_times.json",
                "learning_curves_mlp.png", "learning_curves_cnn.png", "confusion_matrices.png",
                "confusion_matrices.json", "summary.json"]


@pytest.fixture(autouse=True)
def no_data_env(monkeypatch, tmp_path):
    """Data comes from the test's own directories: no $FASTDL_DATA, an empty download cache."""
    monkeypatch.delenv("FASTDL_DATA", raising=False)
    monkeypatch.setenv("FASTDL_CACHE_DIR", str(tmp_path / "empty-cache"))


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fashion")
    dataset_files.write_fashion_mnist(directory, n_train=60, n_test=20)
    return directory


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cifar")
    dataset_files.write_cifar10(directory, n_per_batch=10, n_test=10)
    return directory


@pytest.fixture(scope="module")
def fashion_run(fashion_dir, tmp_path_factory):
    """One quick run on the tiny Fashion files, recording the splits the models were given."""
    prepared, real_prepare = [], a4.prepare_splits

    def spy(*args, **kwargs):
        prepared.append(real_prepare(*args, **kwargs))
        return prepared[-1]

    out = tmp_path_factory.mktemp("out")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("FASTDL_DATA", raising=False)
        patch.setattr(a4, "prepare_splits", spy)
        result = a4.run(data_dir=fashion_dir, out_dir=out, **TINY)
    return result, out / "a4" / "fashion", prepared


def test_quick_run_writes_tables_and_figures_naming_the_source(fashion_run, fashion_dir):
    result, out, _ = fashion_run
    for name in OUTPUT_FILES:
        assert (out / name).is_file(), name
        assert str(out / name) in result["files"]
    source = result["source"]
    assert "Fashion-MNIST" in source and str(fashion_dir) in source and "unverified" in source
    assert "quick run" in source
    for stem in ("accuracy", "epoch_times"):
        assert source in (out / f"{stem}.md").read_text()
        assert json.loads((out / f"{stem}.json").read_text())["source"] == source
    assert json.loads((out / "confusion_matrices.json").read_text())["source"] == source
    assert json.loads((out / "summary.json").read_text())["source"] == source
    # The write-up's numbers stand beside ours, and the note explains its CNN's test score.
    table = (out / "accuracy.md").read_text()
    assert "0.92 / 0.88 / 0.85" in table and "0.92 / 0.89 / 0.22" in table
    assert "never scaled" in table and "Quick run" in table


def test_quick_run_results(fashion_run):
    result, _, _ = fashion_run
    assert result["quick"] is True and result["auto_quick"] is False and result["estimate"] is None
    assert result["n_images"] == {"train": 50, "validation": 10, "test": 20}
    assert result["parameters"] == {"mlp": 266_610, "cnn": 1_413_834}
    assert result["write_up"]["cnn"] == {"train": 0.92, "validation": 0.89, "test": 0.22}
    for kind in ("mlp", "cnn"):
        assert set(result["accuracies"][kind]) == {"train", "validation", "test"}
        assert all(0 <= value <= 1 for value in result["accuracies"][kind].values())
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert len(result["history"][kind][key]) == a4.QUICK_EPOCHS
        assert len(result["seconds_per_epoch"][kind]) == a4.QUICK_EPOCHS
        assert all(seconds > 0 for seconds in result["seconds_per_epoch"][kind])
        matrix = np.asarray(result["confusion_matrices"][kind])
        assert matrix.shape == (10, 10) and matrix.sum() == 20
        assert np.trace(matrix) / 20 == pytest.approx(result["accuracies"][kind]["test"])


def test_run_scales_every_split_alike(fashion_run, fashion_dir):
    """The write-up's CNN scored 0.22 on unscaled test images: ours sees [0, 1] everywhere."""
    _, _, prepared = fashion_run
    (splits,) = prepared
    arrays = dataset_files.write_fashion_mnist(fashion_dir / "again", n_train=60, n_test=20)
    expected = {"train": arrays["x_train"][10:], "validation": arrays["x_train"][:10],
                "test": arrays["x_test"]}
    for split, (x, y) in splits.items():
        assert x.dtype == np.float32 and x.shape[1:] == (28, 28, 1)
        np.testing.assert_array_equal(x[..., 0], expected[split].astype(np.float32) / 255)
        assert y.dtype == np.int64 and y.ndim == 1


def test_prepare_splits_scales_identically_and_cuts_validation_first():
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (30, 4, 4, 3), dtype=np.uint8)
    x_train[0, 0, 0, 0], x_train[-1, 0, 0, 0] = 255, 255
    x_test = x_train[:12].copy()  # the same pixels must come out the same in every split
    y_train, y_test = rng.integers(0, 10, (30, 1)), rng.integers(0, 10, (12, 1))
    splits = a4.prepare_splits(x_train, y_train, x_test, y_test, n_validation=12)
    x_val, y_val = splits["validation"]
    x_tr, y_tr = splits["train"]
    x_te, _ = splits["test"]
    np.testing.assert_array_equal(x_val, x_te)
    np.testing.assert_array_equal(x_tr, x_train[12:] / np.float32(255))
    np.testing.assert_array_equal(y_val, y_train[:12, 0])
    np.testing.assert_array_equal(y_tr, y_train[12:, 0])
    for x, _ in splits.values():
        assert x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert x_te.max() == 1.0 and x_tr.max() == 1.0
    limited = a4.prepare_splits(x_train, y_train, x_test, y_test, n_validation=12,
                                sizes={"train": 5, "test": 3})
    assert {split: len(y) for split, (_, y) in limited.items()} == {
        "train": 5, "validation": 12, "test": 3}
    assert a4.split_counts(30, 12, 12, {"train": 5, "test": 3}) == {
        "train": 5, "validation": 12, "test": 3}


def test_scaling_refuses_anything_but_uint8_pixels():
    with pytest.raises(TypeError, match="uint8"):
        scale_images(np.ones((2, 28, 28), dtype=np.float32))
    with pytest.raises(ValueError, match="training images"):
        a4.prepare_splits(np.zeros((5, 2, 2), np.uint8), np.zeros(5), np.zeros((1, 2, 2), np.uint8),
                          np.zeros(1), n_validation=5)


def test_course_model_parameter_counts():
    assert a4.course_mlp().count_params() == 266_610
    assert a4.course_cnn().count_params() == 1_413_834
    # CIFAR-10: only the input changes (7x7x3 first filters, 4x4x256 flattened).
    assert a4.course_mlp((32, 32, 3)).count_params() == 3072 * 300 + 300 + 30_100 + 1010
    assert a4.course_cnn((32, 32, 3)).count_params() == (
        1_413_834 + 7 * 7 * 2 * 64 + (4 * 4 - 3 * 3) * 256 * 128)


def test_cifar_quick_run(cifar_dir, tmp_path):
    result = a4.run(data_dir=cifar_dir, out_dir=tmp_path, dataset="cifar10", **TINY)
    out = tmp_path / "a4" / "cifar10"
    for name in OUTPUT_FILES:
        assert (out / name).is_file(), name
    assert "CIFAR-10" in result["source"] and result["dataset"] == "cifar10"
    assert result["n_images"] == {"train": 40, "validation": 10, "test": 10}
    assert "0.75 / 0.71 / 0.54" in (out / "accuracy.md").read_text()
    assert json.loads((out / "confusion_matrices.json").read_text())["classes"][0] == "airplane"


def test_runs_are_deterministic(fashion_run, fashion_dir, tmp_path):
    first, _, _ = fashion_run
    again = a4.run(data_dir=fashion_dir, out_dir=tmp_path, **TINY)
    assert again["accuracies"] == first["accuracies"]
    assert again["history"] == first["history"]


@pytest.mark.parametrize("estimate, expect_quick", [(report.AUTO_QUICK_SECONDS + 1, True),
                                                    (report.AUTO_QUICK_SECONDS - 1, False)])
def test_auto_quick_follows_the_estimate(estimate, expect_quick, fashion_dir, tmp_path,
                                         monkeypatch, capsys):
    seen = {}

    def fake_estimate(images, labels, counts, epochs=None, backend=None):
        seen["counts"] = counts
        print("<timing>")
        return {"mlp": estimate / 4, "cnn": 3 * estimate / 4, "total": estimate}

    monkeypatch.setattr(a4, "estimate_full_seconds", fake_estimate)
    # A "full" run on the tiny data: train only a 5-image subset so the test stays fast.
    monkeypatch.setitem(a4.SETTINGS, "mlp", dict(a4.SETTINGS["mlp"], epochs=2))
    monkeypatch.setitem(a4.SETTINGS, "cnn", dict(a4.SETTINGS["cnn"], epochs=1))
    result = a4.run(data_dir=fashion_dir, out_dir=tmp_path, quick=None, verify=False,
                    n_validation=10, sizes={"train": 5, "validation": 5, "test": 5})
    assert seen["counts"] == {"train": 5, "validation": 5, "test": 5}
    assert result["auto_quick"] is True and result["quick"] is expect_quick
    assert result["estimate"]["total"] == estimate
    printed = capsys.readouterr().out
    # The header, then what the seconds of timing are for, then the decision.
    order = ["== Assignment 4: MLP and CNN on Fashion-MNIST ==", "Estimating how long the full run takes here",
             "<timing>", "A full run"]
    assert [printed.index(text) for text in order] == sorted(printed.index(text) for text in order)
    # The message names the images and epochs that run: the caller's sizes, not the quick run's.
    if expect_quick:
        assert "quick run" in printed and "fastdl reproduce a4 --full" in printed
        assert "5 training, 5 validation and 5 test images, 1 epoch per model" in printed
        assert "2,000" not in printed
        assert len(result["history"]["mlp"]["loss"]) == a4.QUICK_EPOCHS
    else:
        assert "running it: 5 training, 5 validation and 5 test images, MLP 2 and CNN 1 epochs" in printed
        assert len(result["history"]["mlp"]["loss"]) == 2
    assert "Estimated full run" in (tmp_path / "a4" / "fashion" / "epoch_times.md").read_text()


def test_estimate_scales_timed_batches_to_a_full_run():
    rng = np.random.default_rng(0)
    images = rng.random((40, 8, 8, 1), dtype=np.float32)
    labels = rng.integers(0, 10, 40)
    small = a4.estimate_full_seconds(images, labels, {"train": 100, "validation": 10, "test": 10})
    assert set(small) == {"mlp", "cnn", "total"}
    assert small["total"] == pytest.approx(small["mlp"] + small["cnn"]) and small["total"] > 0


def test_registry_lists_a4():
    assert "a4" in ASSIGNMENTS
    assert get_runner("a4") is a4.run


# -- the command line ------------------------------------------------------------------------


def test_cli_reproduce_a4_cifar(cifar_dir, tmp_path, monkeypatch, capsys):
    calls = []
    real_run = a4.run

    def small_run(data_dir=None, out_dir="results", quick=None, verify=True, dataset="fashion"):
        kwargs = dict(data_dir=data_dir, out_dir=out_dir, quick=quick, verify=verify,
                      dataset=dataset)
        calls.append(kwargs)
        return real_run(n_validation=10, **kwargs)

    monkeypatch.setattr(a4, "run", small_run)
    args = ["reproduce", "a4", "--dataset", "cifar10", "--quick", "--no-verify",
            "--data-dir", str(cifar_dir), "--out", str(tmp_path)]
    assert main(args) == 0
    assert calls[0]["dataset"] == "cifar10" and calls[0]["quick"] is True
    assert calls[0]["verify"] is False
    assert (tmp_path / "a4" / "cifar10" / "accuracy.md").is_file()
    assert "a4: data source: CIFAR-10" in capsys.readouterr().out


@pytest.mark.parametrize("flags, quick", [([], None), (["--quick"], True), (["--full"], False)])
def test_cli_quick_full_and_auto(flags, quick, tmp_path, monkeypatch):
    calls = []

    def fake_run(data_dir=None, out_dir="results", quick=None, verify=True, dataset="fashion"):
        calls.append({"quick": quick, "dataset": dataset})
        return {"source": "fake", "files": []}

    monkeypatch.setattr(a4, "run", fake_run)
    assert main(["reproduce", "a4", "--out", str(tmp_path), *flags]) == 0
    assert calls == [{"quick": quick, "dataset": "fashion"}]


def test_cli_quick_and_full_exclude_each_other(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["reproduce", "a4", "--quick", "--full", "--out", str(tmp_path)])
    assert "not allowed with" in capsys.readouterr().err


def test_cli_dataset_goes_only_to_runners_that_take_it(tmp_path, monkeypatch):
    from fastdl.repro import a3

    calls = []

    def fake_a3(data_dir=None, out_dir="results", quick=False, **kwargs):
        calls.append(kwargs)
        return {"source": "fake", "files": []}

    monkeypatch.setattr(a3, "run", fake_a3)
    assert main(["reproduce", "a3", "--dataset", "cifar10", "--out", str(tmp_path)]) == 0
    assert calls == [{}]


def test_cli_missing_data_exits_2_for_a4_and_is_skipped_in_all(tmp_path, monkeypatch, capsys):
    import fastdl.repro as repro
    from fastdl.repro import a3

    empty = tmp_path / "no-data"
    empty.mkdir()
    args = ["--dataset", "cifar10", "--data-dir", str(empty), "--quick", "--out", str(tmp_path)]
    assert main(["reproduce", "a4", *args]) == 2
    err = capsys.readouterr().err
    assert "cifar-10 not found" in err and "fastdl data download cifar-10" in err

    # Everything (`make run`): the message is printed and the assignments after a4 still run.
    ran = []
    monkeypatch.setattr(a3, "run", lambda **kwargs: ran.append(kwargs) or {"source": "x"})
    monkeypatch.setattr(repro, "ASSIGNMENTS", {"a4": ASSIGNMENTS["a4"], "a3": ASSIGNMENTS["a3"]})
    assert main(["reproduce", *args]) == 0
    out = capsys.readouterr().out
    assert "a4: skipped" in out and "fastdl data download cifar-10" in out
    assert len(ran) == 1 and "a3: data source: x" in out


def test_makefile_run_installs_fashion_mnist_first():
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    assert "dataset-fashion-mnist" in makefile and "/usr/share/datasets/fashion-mnist" in makefile


# --- the real data, where the Debian package is installed ----------------------------------------

REAL_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not REAL_FASHION.is_dir(),
                    reason="Fashion-MNIST is not installed (Debian: apt-get install "
                           "dataset-fashion-mnist; `make run` installs it as root)")
def test_quick_run_on_real_fashion_mnist(tmp_path):
    """The quick run `make run` does: verified data, and test accuracy close to validation
    (the write-up's CNN fell to 0.22 on test because its test images were never scaled)."""
    result = a4.run(data_dir=REAL_FASHION, out_dir=tmp_path, quick=True)
    assert "SHA-256 verified" in result["source"] and "quick run" in result["source"]
    assert result["n_images"] == a4.QUICK_SIZES
    # One epoch on 2,000 images: the MLP is well past chance (measured: about 0.6).
    assert result["accuracies"]["mlp"]["validation"] > 0.4
    for kind in ("mlp", "cnn"):
        accuracy = result["accuracies"][kind]
        assert abs(accuracy["test"] - accuracy["validation"]) < 0.08, (kind, accuracy)


@pytest.mark.cuda
def test_run_on_the_cuda_backend_names_the_device(cuda_backend, fashion_dir, tmp_path, monkeypatch):
    """--backend cuda reaches the models (small stand-ins here: the simulator runs every GPU thread
    as Python), and the tables and the summary say what trained them."""
    from fastdl import nn

    def tiny(kind):
        def build(input_shape, seed=0, backend=None):
            head = [nn.MaxPool2D(4), nn.Conv2D(2, 3, activation="relu")] if kind == "cnn" else []
            return nn.Sequential([nn.Input(tuple(input_shape)), *head, nn.Flatten(),
                                  nn.Dense(10, activation="softmax")], seed=seed, backend=backend)
        return build

    monkeypatch.setattr(a4, "BUILDERS", {"mlp": tiny("mlp"), "cnn": tiny("cnn")})
    result = a4.run(data_dir=fashion_dir, out_dir=tmp_path, backend="cuda", sizes={"train": 6, "validation": 4,
                                                                                    "test": 4}, **TINY)
    assert result["device"].startswith("cuda")
    assert "Trained on cuda" in (tmp_path / "a4" / "fashion" / "epoch_times.md").read_text()
    assert json.loads((tmp_path / "a4" / "fashion" / "summary.json").read_text())["device"] == result["device"]


def test_cli_backend_goes_to_runners_that_train_networks(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_run(data_dir=None, out_dir="results", quick=None, verify=True, dataset="fashion", backend=None):
        calls.append(backend)
        return {"source": "fake", "files": []}

    monkeypatch.setattr(a4, "run", fake_run)
    assert main(["reproduce", "a4", "--backend", "cuda", "--out", str(tmp_path)]) == 0
    assert calls == ["cuda"]
    assert main(["reproduce", "a3", "--backend", "cuda", "--out", str(tmp_path)]) != 0
    assert "a3 trains none" in capsys.readouterr().err


def test_one_epoch_leaves_later_epochs_empty(fashion_run):
    """A quick run has one epoch per model: no later epochs to average, images/s from the first."""
    _, out, _ = fashion_run
    table = json.loads((out / "epoch_times.json").read_text())
    later, rate = table["headers"].index("Later epochs, mean (s)"), table["headers"].index("Images/s")
    for row in table["rows"]:
        assert row[3] == 1 and row[later] == "-" and row[rate].endswith("(first epoch)"), row
    assert "first epoch" in (out / "epoch_times.md").read_text()


def test_epoch_time_cells_average_the_later_epochs():
    from fastdl.repro import report

    assert report.epoch_time_cells([3.0, 1.0, 2.0], 300) == ("3.00", "1.50", "200")
    assert report.epoch_time_cells([2.0], 300) == ("2.00", "-", "150 (first epoch)")


def test_learning_curves_mark_training_and_validation_apart(monkeypatch, tmp_path):
    """One epoch draws one point per curve: their markers must tell training from validation."""
    from fastdl.repro import report

    figures = []
    monkeypatch.setattr(report, "save_figure", lambda fig, path, source=None: figures.append(fig) or str(path))
    history = {"accuracy": [0.4], "val_accuracy": [0.6], "loss": [1.9], "val_loss": [1.5]}
    report.plot_learning_curves({"MLP": history}, tmp_path / "curves.png", "tiny")
    for ax in figures[0].axes:
        train, validation = ax.get_lines()
        assert train.get_marker() != validation.get_marker()
    report.get_pyplot().close(figures[0])


@pytest.mark.parametrize("threads, words", [(1, "on 1 CPU thread ("), (2, "on 2 CPU threads (")])
def test_compute_device_counts_its_threads(threads, words):
    import fastdl
    from fastdl.repro.report import compute_device

    with fastdl.use_backend("numba"):
        previous = fastdl.get_num_threads()
        fastdl.set_num_threads(threads)
        try:
            assert words in compute_device()
        finally:
            fastdl.set_num_threads(previous)
