"""``fastdl reproduce``: every option value checked before the first assignment runs, ``--out``'s ~,
Ctrl-C, and outputs that never mix two runs."""

import json
import os

import pytest

import fastdl.repro as repro
from fastdl.cli import main


@pytest.fixture(autouse=True)
def no_data_env(monkeypatch):
    """Runs use the embedded default unless a test says otherwise."""
    monkeypatch.delenv("FASTDL_DATA", raising=False)


def _recording(monkeypatch, names, ran):
    """Each named assignment's runner replaced by one that records its name in ``ran`` and writes a
    summary.json (its keyword arguments are those of the real runner, so the CLI passes the same)."""
    import importlib
    import inspect

    from fastdl.repro import report

    for name in names:
        module = importlib.import_module(repro.ASSIGNMENTS[name][0])
        real = module.run

        def run(*, out_dir, _name=name, **kwargs):
            ran.append(_name)
            return report.write_summary(os.path.join(out_dir, _name), {"source": "fake", "files": []})

        run.__signature__ = inspect.signature(real)
        monkeypatch.setattr(module, "run", run)


@pytest.mark.parametrize("names, args, said", [
    (["a3", "a4"], ["all", "--backend", "foo"], "unknown backend 'foo'"),
    (["a1", "a6"], ["a1", "a6", "--data", "bogus"], "data must be 'faces', 'fashion'"),
    (["a4", "a5"], ["a4", "a5", "--models", "nosuch"], "unknown model(s) 'nosuch'"),
    (["a1", "a6"], ["a1", "a6", "--images", "1"], "images (--images) must be at least 2"),
], ids=["backend", "a6-data", "a5-models", "a6-images"])
def test_a_bad_value_for_a_later_assignment_stops_the_run_before_the_first(
        names, args, said, tmp_path, monkeypatch, capsys):
    """Only which assignments take an option was checked up front, not its value: a1 to a3 ran for an
    hour, then a4 refused --backend foo."""
    monkeypatch.setattr(repro, "ASSIGNMENTS", {name: repro.ASSIGNMENTS[name] for name in names})
    ran = []
    _recording(monkeypatch, names, ran)
    out = tmp_path / "out"
    assert main(["reproduce", *args, "--quick", "--out", str(out)]) == 2
    assert said in capsys.readouterr().err
    assert ran == [] and not out.exists()


def test_checks_load_no_data(tmp_path, monkeypatch):
    """The values are checked cheaply: the data is looked for, not loaded (a5's only when a5 runs);
    where it is not found the check says so, before any assignment runs."""
    from fastdl import data
    from fastdl.data import DatasetNotFoundError
    from fastdl.repro import a5

    monkeypatch.delenv("FASTDL_DATA", raising=False)
    monkeypatch.setenv("FASTDL_CACHE_DIR", str(tmp_path / "cache"))  # a cache without CIFAR-10
    monkeypatch.setattr(a5, "_load", lambda *args: pytest.fail("loaded while checking"))
    for loader in ("load_cifar10", "load_fashion_mnist", "load_digits_dataset", "load_clocks"):
        monkeypatch.setattr(data, loader, lambda *args, **kwargs: pytest.fail("loaded while checking"))
    repro.check_options("a5", models=["hands"], epochs=2, backend="numpy")
    repro.check_options("a6", data="faces", images=4, epochs=1, backend="numpy")
    repro.check_options("a1", quick=True)  # no --data-dir, no $FASTDL_DATA: the embedded digits
    for name, options in (("a4", dict(dataset="cifar10", backend="numpy")), ("a1", {}), ("a2", {}),
                          ("a5", dict(models=["hands"]))):
        with pytest.raises(DatasetNotFoundError):
            repro.check_options(name, data_dir=str(tmp_path), **options)


def test_all_still_skips_an_assignment_whose_data_is_missing(tmp_path, monkeypatch, capsys):
    """A missing dataset found by a check is not an error of `reproduce all`: its run says it is
    skipped, in its turn, and the others run."""
    from fastdl.data import DatasetNotFoundError, fashion_mnist

    names = ["a3", "a6"]
    monkeypatch.setattr(repro, "ASSIGNMENTS", {name: repro.ASSIGNMENTS[name] for name in names})
    ran = []
    _recording(monkeypatch, ["a3"], ran)
    empty = tmp_path / "empty"
    empty.mkdir()

    def missing(path=None):
        raise DatasetNotFoundError(f"fashion-mnist not found in {path}")

    monkeypatch.setattr(fashion_mnist, "locate", missing)
    assert main(["reproduce", "all", "--data", "fashion", "--data-dir", str(empty), "--quick",
                 "--out", str(tmp_path / "out")]) == 0
    assert ran == ["a3"] and "a6: skipped" in capsys.readouterr().out
    assert main(["reproduce", "a3", "a6", "--data", "fashion", "--data-dir", str(empty), "--quick",
                 "--out", str(tmp_path / "out")]) == 2
    assert ran == ["a3"]  # named, a missing dataset is an error before anything runs


def test_out_expands_a_tilde(tmp_path, monkeypatch, capsys):
    """`--out=~/res`: bash leaves the ~ after "=", and a literal ./~/res was made."""
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    ran = []
    _recording(monkeypatch, ["a3"], ran)
    assert main(["reproduce", "a3", "--out=~/res"]) == 0
    assert (home / "res" / "a3" / "summary.json").is_file() and os.listdir(cwd) == []
    assert f"files written under {home / 'res' / 'a3'}/" in capsys.readouterr().out


def test_ctrl_c_leaves_the_output_folder_as_it_was(tmp_path, monkeypatch, capsys):
    from fastdl.repro import a3, report

    ran = []
    _recording(monkeypatch, ["a3"], ran)
    assert main(["reproduce", "a3", "--out", str(tmp_path)]) == 0
    before = (tmp_path / "a3" / "summary.json").read_text()

    def interrupted(data_dir=None, out_dir="results", quick=False):
        report.write_json(os.path.join(out_dir, "a3", "summary.json"), {"files": []})
        raise KeyboardInterrupt

    monkeypatch.setattr(a3, "run", interrupted)
    capsys.readouterr()
    assert main(["reproduce", "a3", "--out", str(tmp_path)]) == 130
    assert capsys.readouterr().err == "fastdl: interrupted\n"
    assert (tmp_path / "a3" / "summary.json").read_text() == before and os.listdir(tmp_path) == ["a3"]


def test_summary_lists_what_the_folder_holds_after_a_second_run(tmp_path, monkeypatch):
    """a6 --epochs 3 then --epochs 1: the first run's epoch-3 figures stayed, listed nowhere."""
    from fastdl.repro import a3, report

    def run_writing(*names):
        def run(data_dir=None, out_dir="results", quick=False):
            out = os.path.join(out_dir, "a3")
            files = [report.write_json(os.path.join(out, name), {}) for name in names]
            return report.write_summary(out, {"source": "fake", "files": files})
        return run

    monkeypatch.setattr(a3, "run", run_writing("samples_epoch_1.json", "samples_epoch_3.json"))
    assert main(["reproduce", "a3", "--out", str(tmp_path)]) == 0
    monkeypatch.setattr(a3, "run", run_writing("samples_epoch_1.json"))
    assert main(["reproduce", "a3", "--out", str(tmp_path)]) == 0
    listed = json.loads((tmp_path / "a3" / "summary.json").read_text())["files"]
    assert sorted(map(os.path.basename, listed)) == sorted(os.listdir(tmp_path / "a3"))
    assert listed[0] == str(tmp_path / "a3" / "samples_epoch_1.json")
