"""The ``fastdl`` command line: info, reproduce, data, bench, and ``python -m fastdl``."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastdl.backend import BackendUnavailableError
from fastdl.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def no_data_env(monkeypatch):
    """Runs use the embedded default unless a test says otherwise."""
    monkeypatch.delenv("FASTDL_DATA", raising=False)


def test_info_reports_versions_backends_threads_gpu(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for expected in ("fastdl", "Python", "numpy", "numba", "scikit-learn", "Backends:",
                     "numpy", "default:", "Threads:", "CUDA device visible"):
        assert expected in out
    import fastdl

    for name, (available, reason) in fastdl.backend_status().items():
        assert name in out
        if not available:
            assert reason in out


def test_reproduce_a1_quick_on_embedded_default(tmp_path, capsys):
    assert main(["reproduce", "a1", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "scikit-learn digits 8x8 (embedded default)" in out
    summary = json.loads((tmp_path / "a1" / "summary.json").read_text())
    assert summary["quick"] is True
    assert (tmp_path / "a1" / "classifiers.md").is_file()


def test_reproduce_unknown_assignment_is_an_error(tmp_path, capsys):
    assert main(["reproduce", "a42", "--out", str(tmp_path)]) == 2
    assert "unknown assignment" in capsys.readouterr().err


def test_reproduce_missing_data_dir_is_a_clear_error(tmp_path, capsys):
    missing = tmp_path / "no-such-dir"
    assert main(["reproduce", "a1", "--quick", "--data-dir", str(missing),
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and "no-such-dir" in err


def test_data_list(capsys):
    assert main(["data", "list", "--data-dir", "/some/dir"]) == 0
    out = capsys.readouterr().out
    assert "leiden-digits" in out and "/some/dir" in out and "FASTDL_DATA" in out


def test_bench_quick_prints_table(capsys):
    assert main(["bench", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "pairwise_distances" in out and "scikit-learn" in out and "speed-up" in out


def _bench_rows(out):
    """{(op, implementation): [ms, speed-up vs numpy, speed-up vs scikit-learn]} of bench's table."""
    rows = {}
    for line in out.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] not in ("Op", "") and not set(cells[0]) <= set("-: "):
            rows[cells[0], cells[1]] = cells[2:]
    return rows


def test_bench_a_failing_baseline_leaves_its_ratios_blank(monkeypatch, capsys):
    """A broken baseline made the others' ratios divide by its error message (a TypeError, no table)."""
    import sklearn.metrics.pairwise

    def broken(*args, **kwargs):
        raise MemoryError("simulated")

    monkeypatch.setattr(sklearn.metrics.pairwise, "euclidean_distances", broken)
    assert main(["bench", "--quick"]) == 1
    rows = _bench_rows(capsys.readouterr().out)
    assert rows["pairwise_distances", "scikit-learn"] == ["failed: MemoryError: simulated", "-", "-"]
    ms, vs_numpy, vs_sklearn = rows["pairwise_distances", "fastdl[numpy]"]
    assert float(ms) > 0 and vs_numpy.endswith("x") and vs_sklearn == "-"
    assert rows["knn (k=3)", "fastdl[numpy]"][2].endswith("x")  # the other op keeps its baseline


def test_bench_a_wrong_result_is_reported_not_timed(monkeypatch, capsys):
    import fastdl.ops

    distances, knn = fastdl.ops.pairwise_distances, fastdl.ops.knn

    def off_distances(*args, backend=None, **kwargs):
        out = distances(*args, backend=backend, **kwargs)
        return out * 1.001 if backend == "numpy" else out

    def off_knn(*args, backend=None, **kwargs):
        dist, ind = knn(*args, backend=backend, **kwargs)
        return (dist, ind[:, ::-1]) if backend == "numpy" else (dist, ind)

    monkeypatch.setattr(fastdl.ops, "pairwise_distances", off_distances)
    monkeypatch.setattr(fastdl.ops, "knn", off_knn)
    assert main(["bench", "--quick"]) == 1
    rows = _bench_rows(capsys.readouterr().out)
    ms, vs_numpy, vs_sklearn = rows["pairwise_distances", "fastdl[numpy]"]
    assert ms.startswith("wrong result: largest difference ") and vs_numpy == vs_sklearn == "-"
    assert rows["knn (k=3)", "fastdl[numpy]"] == ["wrong result: the neighbours of 500 of 500 "
                                                  "queries differ", "-", "-"]
    assert rows["pairwise_distances", "scikit-learn"][1].endswith("x")  # the right ones are timed


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "reproduce" in capsys.readouterr().out


def test_python_dash_m_fastdl_info():
    completed = subprocess.run([sys.executable, "-m", "fastdl", "info"], cwd=REPO,
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert "Backends:" in completed.stdout


def test_importing_cli_is_cheap():
    code = ("import sys, fastdl.cli; heavy = [m for m in ('matplotlib', 'umap', 'sklearn') "
            "if m in sys.modules]; print(','.join(heavy))")
    completed = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                               text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == ""


def test_reproduce_custom_data_needs_no_verify(tmp_path, capsys):
    import numpy as np

    rng = np.random.default_rng(0)
    data_dir = tmp_path / "digits"
    data_dir.mkdir()
    for split, n in (("train", 40), ("test", 20)):
        np.savetxt(data_dir / f"{split}_in.csv", rng.uniform(-1, 1, (n, 256)), delimiter=",",
                   fmt="%.3f")
        # Every class present, so all ten centroids exist.
        np.savetxt(data_dir / f"{split}_out.csv", np.arange(n) % 10, fmt="%d")
    args = ["reproduce", "a1", "--quick", "--data-dir", str(data_dir), "--out", str(tmp_path)]
    assert main(args) == 2
    assert "verify=False" in capsys.readouterr().err
    assert main(args + ["--no-verify"]) == 0
    assert "unverified" in capsys.readouterr().out


# --- errors the user can fix: one line and status 2; programming errors keep their traceback ------

def _failing_a1(monkeypatch, error):
    from fastdl.repro import a1

    def run(data_dir=None, out_dir="results", quick=False, verify=True):
        raise error

    monkeypatch.setattr(a1, "run", run)


@pytest.mark.parametrize("error", [
    BackendUnavailableError("backend 'cuda' is unavailable: no GPU"),
    PermissionError(13, "Permission denied", "/somewhere/out"),
    IsADirectoryError(21, "Is a directory", "/some/dir"),
    MemoryError("Unable to allocate 745. GiB"),
    MemoryError(),
], ids=["backend", "permission", "is-a-directory", "memory", "memory-without-text"])
def test_user_facing_errors_are_one_line(tmp_path, monkeypatch, capsys, error):
    _failing_a1(monkeypatch, error)
    assert main(["reproduce", "a1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastdl: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert str(error) in err and (not isinstance(error, MemoryError) or "out of memory" in err)


def test_programming_errors_are_not_swallowed(tmp_path, monkeypatch):
    _failing_a1(monkeypatch, TypeError("a bug"))
    with pytest.raises(TypeError, match="a bug"):
        main(["reproduce", "a1", "--out", str(tmp_path)])


def test_an_output_path_below_a_file_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    assert main(["reproduce", "a1", "--quick", "--out", str(tmp_path / "a-file" / "out")]) == 2
    assert capsys.readouterr().err.startswith("fastdl: error: ")


def test_a6_checks_its_data_path_before_timing_anything(tmp_path, monkeypatch, capsys):
    from fastdl.repro import a6

    monkeypatch.setattr(a6, "estimate_full_seconds", lambda *args, **kwargs: pytest.fail("timed first"))
    (tmp_path / "0.png").write_text("")
    np.save(tmp_path / "bool.npy", np.zeros((4, 8, 8, 3), bool))
    np.save(tmp_path / "one.npy", np.zeros((1, 8, 8, 3), np.uint8))
    for data, message in ((f"folder:{tmp_path / '0.png'}", "is a file, not a folder"),
                          (f"npy:{tmp_path}", "is a folder, not a .npy file"),
                          (f"npy:{tmp_path / 'typo.npy'}", "does not exist"),
                          (f"npy:{tmp_path / 'bool.npy'}", "must hold real numbers"),
                          (f"npy:{tmp_path / 'one.npy'}", "holds 1 image(s); a6 needs at least 4")):
        assert main(["reproduce", "a6", "--data", data, "--out", str(tmp_path)]) == 2
        assert message in capsys.readouterr().err


@pytest.mark.parametrize("names, extra, message", [
    (["a3", "a5"], [], "clocks not found in"),
    (["a3", "a1"], [], "digits data files not found"),
    (["a3", "a2"], [], "digits data files not found"),
    (["a3", "a4"], ["--dataset", "cifar10"], "not found"),
])
def test_missing_data_is_said_before_the_first_assignment_runs(tmp_path, monkeypatch, capsys, names, extra, message):
    """a3 (no data) first, then an assignment whose data is not in --data-dir: the error comes
    before a3 runs, not after it (a4 in full takes 20 minutes before a5's data was looked for)."""
    from fastdl.repro import a3

    monkeypatch.setattr(a3, "run", lambda **kwargs: pytest.fail("a3 ran before the data was looked for"))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["reproduce", *names, "--quick", "--data-dir", str(empty), *extra, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_the_full_run_command_keeps_the_data_and_backend(capsys):
    from fastdl.repro import a5, report

    assert report.rerun_options() == ""
    assert report.rerun_options("my clocks", "cython", verify=False) == " --data-dir 'my clocks' --backend cython --no-verify"
    a5._print_decision({"total": 7200.0}, True, ["regression_mse"], {"train": 14400}, None, {"train": 800, "test": 200},
                       3, quick_run=True, same=report.rerun_options("/data", "numba"))
    assert "The full run: fastdl reproduce a5 --full --models regression_mse --data-dir /data --backend numba" \
        in capsys.readouterr().out


def test_the_summary_line_names_the_folder_the_files_went_to(tmp_path, monkeypatch, capsys):
    import fastdl.repro as repro

    def run(name, out_dir, **kwargs):
        folder = Path(out_dir) / name / "faces"
        return {"source": "x", "files": [str(folder / "a.png"), str(folder / "b.json")]}

    monkeypatch.setattr(repro, "run", run)
    monkeypatch.setattr(repro, "check_options", lambda name, **kwargs: None)
    assert main(["reproduce", "a6", "--quick", "--out", str(tmp_path)]) == 0
    assert f"2 files written under {tmp_path / 'a6' / 'faces'}/" in capsys.readouterr().out


# --- reproduce all: one missing dataset does not hide the rest ----------------------------------

def test_all_skips_a1_when_its_digits_are_missing_and_goes_on(tmp_path, monkeypatch, capsys):
    import fastdl.repro as repro
    from fastdl.repro import a3

    data_dir = tmp_path / "fashion-only"
    data_dir.mkdir()
    (data_dir / "train-images-idx3-ubyte.gz").write_bytes(b"")
    ran = []
    monkeypatch.setattr(a3, "run", lambda **kwargs: ran.append(kwargs) or {"source": "x"})
    monkeypatch.setattr(repro, "ASSIGNMENTS", {name: repro.ASSIGNMENTS[name] for name in ("a1", "a3")})
    assert main(["reproduce", "all", "--quick", "--data-dir", str(data_dir), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "a1: skipped" in out and "digits data files not found" in out and len(ran) == 1
    assert main(["reproduce", "a1", "--quick", "--data-dir", str(data_dir), "--out", str(tmp_path)]) == 2
    assert "digits data files not found" in capsys.readouterr().err
    # A --data-dir that is not there would skip everything: said at once instead.
    assert main(["reproduce", "all", "--data-dir", str(tmp_path / "typo"), "--out", str(tmp_path)]) == 2
    assert "typo not found" in capsys.readouterr().err and len(ran) == 1


# --- flags an assignment does not take ---------------------------------------------------------

def _fake_runners(monkeypatch):
    """a3 and a4 stand-ins recording what they were given, and the registry holding only them."""
    import fastdl.repro as repro
    from fastdl.data import cifar10, fashion_mnist
    from fastdl.repro import a3, a4

    calls = {}

    def fake_a3(data_dir=None, out_dir="results", quick=False, **_):
        calls["a3"] = _
        return {"source": "x"}

    def fake_a4(data_dir=None, out_dir="results", quick=None, verify=True, dataset="fashion", backend=None):
        calls["a4"] = {"verify": verify, "dataset": dataset, "backend": backend}
        return {"source": "x"}

    monkeypatch.setattr(a3, "run", fake_a3)
    monkeypatch.setattr(a4, "run", fake_a4)
    for module in (fashion_mnist, cifar10):  # the files a4's check_options looks for: found
        monkeypatch.setattr(module, "locate", lambda path=None: [Path("data") / "file"])
    monkeypatch.setattr(repro, "ASSIGNMENTS", {name: repro.ASSIGNMENTS[name] for name in ("a3", "a4")})
    return calls


def test_a_flag_an_assignment_ignores_is_said(tmp_path, monkeypatch, capsys):
    calls = _fake_runners(monkeypatch)
    assert main(["reproduce", "a3", "--models", "hands", "--epochs", "2", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "fastdl: warning: --models applies to no assignment; a3 ignores it" in err
    assert "fastdl: warning: --epochs" in err and calls["a3"] == {}
    assert main(["reproduce", "a4", "--dataset", "cifar10", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().err == ""
    # An ignored value is still checked, before anything runs.
    calls.clear()
    for flag, value, message in (("--models", "no_such_model", "unknown model(s) 'no_such_model'"),
                                 ("--data", "bogus-source", "bogus-source")):
        assert main(["reproduce", "a3", flag, value, "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert "a3 ignores it" in err and message in err and calls == {}


def test_all_shares_its_flags_and_only_warns(tmp_path, monkeypatch, capsys):
    calls = _fake_runners(monkeypatch)
    assert main(["reproduce", "all", "--backend", "cuda", "--dataset", "cifar10", "--no-verify",
                 "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "--backend applies to the assignments that train networks; a3 trains none" in err
    assert "--dataset applies to a4; a3 ignores it" in err
    assert calls["a4"] == {"verify": False, "dataset": "cifar10", "backend": "cuda"} and calls["a3"] == {}
    # Named, an assignment that trains nothing is an error for --backend, before anything runs.
    calls.clear()
    assert main(["reproduce", "a4", "a3", "--backend", "cuda", "--out", str(tmp_path)]) == 2
    assert "a3 trains none" in capsys.readouterr().err and calls == {}


def test_no_verify_reaches_a6(tmp_path, monkeypatch):
    import inspect

    from fastdl.repro import a6

    assert inspect.signature(a6.run).parameters["verify"].default is True  # Fashion-MNIST's checksums
    calls = []
    monkeypatch.setattr(a6, "run", lambda verify=True, **kwargs: calls.append(verify) or {"source": "x"})
    assert main(["reproduce", "a6", "--no-verify", "--out", str(tmp_path)]) == 0
    assert calls == [False]


def test_info_flags_an_invalid_default_backend(monkeypatch, capsys):
    import fastdl.backend

    monkeypatch.setattr(fastdl.backend, "_process_default", "bogus")  # as FASTDL_BACKEND=bogus sets it
    assert main(["info"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if "default:" in line)
    assert "bogus (invalid FASTDL_BACKEND" in line and "auto, numpy, numba, cython, cuda" in line


def test_info_flags_a_default_backend_that_cannot_load(monkeypatch, capsys):
    import fastdl.backend

    monkeypatch.setattr(fastdl.backend, "_process_default", "cuda")  # as FASTDL_BACKEND=cuda sets it
    monkeypatch.setitem(fastdl.backend._status_cache, "cuda", (False, "no GPU here"))
    assert main(["info"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if "default:" in line)
    assert "cuda (unavailable here: every operation without backend= will fail)" in line


def test_info_describes_the_compilation_flags_and_an_invalid_one(monkeypatch, capsys):
    monkeypatch.setenv("FASTDL_CACHE", "0")
    monkeypatch.setenv("FASTDL_FASTMATH", "maybe")
    monkeypatch.setenv("FASTDL_WINOGRAD", "xyz")
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip().startswith("FASTDL_")}
    assert "off" in lines["FASTDL_CACHE"]
    assert "invalid (FASTDL_WINOGRAD must be" in lines["FASTDL_WINOGRAD"]
    assert "invalid (FASTDL_FASTMATH must be" in lines["FASTDL_FASTMATH"] and "'maybe'" in lines["FASTDL_FASTMATH"]
    assert "GPU:" in out.split(lines["FASTDL_FASTMATH"], 1)[1]  # the report goes on


def _cache_line(out):
    return next(line for line in out.splitlines() if line.strip().startswith("cache directory"))


def test_info_names_numbas_cache_directory_and_whether_it_is_writable(tmp_path, monkeypatch, capsys):
    """It said only "on": with nowhere writable, numba compiled every kernel in every process (128 s)
    without a word. Where it caches, whether it can write there, and how to fix it where it cannot."""
    pytest.importorskip("numba")
    monkeypatch.setenv("FASTDL_CACHE", "1")
    monkeypatch.setattr("numba.config.CACHE_DIR", str(tmp_path / "numba-cache"))  # as NUMBA_CACHE_DIR sets it
    assert main(["info"]) == 0
    line = _cache_line(capsys.readouterr().out)
    assert str(tmp_path / "numba-cache" / "cpu_") in line and "(writable; 0 functions cached)" in line
    assert "NUMBA_CACHE_DIR" not in line

    import numba.core.caching

    writable = numba.core.caching._CacheLocator.ensure_cache_path
    blocked = [str(tmp_path)]

    def unwritable(locator):
        if any(locator.get_cache_path().startswith(path) for path in blocked):
            raise PermissionError(13, "Permission denied", locator.get_cache_path())
        return writable(locator)

    monkeypatch.setattr(numba.core.caching._CacheLocator, "ensure_cache_path", unwritable)
    assert main(["info"]) == 0  # numba goes on to the next place: the kernels' __pycache__, say
    line = _cache_line(capsys.readouterr().out)
    assert "(writable; " in line and line.endswith(f"; NUMBA_CACHE_DIR {tmp_path / 'numba-cache'} is not writable")
    blocked.append("/")  # nowhere
    assert main(["info"]) == 0
    line = _cache_line(capsys.readouterr().out)
    kernels = Path(__import__("fastdl.kernels.cpu", fromlist=["_jit"]).__file__).parent
    assert line.split(None, 2)[2].startswith(f"none writable (tried {tmp_path / 'numba-cache'}")
    assert str(kernels / "__pycache__") in line and "every process compiles the kernels it runs again" in line
    assert "set NUMBA_CACHE_DIR to a writable directory" in line

    monkeypatch.setenv("FASTDL_CACHE", "0")
    assert main(["info"]) == 0
    assert "not used (FASTDL_CACHE=0)" in _cache_line(capsys.readouterr().out)


def test_info_describes_an_invalid_fastdl_num_threads_and_goes_on(monkeypatch, capsys):
    """As for a bad FASTDL_BACKEND: the Threads line says what is wrong, the report goes on."""
    import fastdl.backend

    monkeypatch.setenv("FASTDL_NUM_THREADS", "abc")
    monkeypatch.setattr(fastdl.backend, "_num_threads", None)  # not read yet, as in a fresh process
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "fastdl.get_num_threads()" in line)
    assert "invalid (FASTDL_NUM_THREADS must be an integer from 1 to 1024, got 'abc')" in line
    for expected in ("numba ", "OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT", "GPU:", "CUDA device visible"):
        assert expected in out.split(line, 1)[1]


def test_markdown_table_keeps_a_pipe_in_its_cell():
    """A failure message with "|" in it (fastdl bench prints them) must not add a column."""
    from fastdl.repro.report import markdown_table

    table = markdown_table(["op", "result"], [["knn", "failed: a | b"]])
    assert [line.count(" | ") for line in table.splitlines() if "knn" in line] == [1]
    assert "failed: a \\| b" in table


# --- exit statuses: Ctrl-C, a reader gone away, an unwritable path --------------------------------

def test_ctrl_c_is_one_line_and_status_130(tmp_path, monkeypatch, capsys):
    """Ctrl-C printed a 50-line traceback from inside the kernels."""
    _failing_a1(monkeypatch, KeyboardInterrupt())
    assert main(["reproduce", "a1", "--out", str(tmp_path)]) == 130
    assert capsys.readouterr().err == "fastdl: interrupted\n"


def test_a_closed_pipe_ends_quietly():
    """`fastdl info | head -1` printed "fastdl: error: [Errno 32] Broken pipe" (status 2); Python's
    documented recipe (signal module, "Note on SIGPIPE") ends quietly with status 1."""
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line
    try:
        completed = subprocess.run([sys.executable, "-m", "fastdl", "info"], cwd=REPO, stdout=write_end,
                                   stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert completed.returncode == 1 and completed.stderr == ""


@pytest.mark.parametrize("command", [["reproduce", "a3", "--quick", "--out"],
                                     ["data", "generate", "clocks", "--n", "2", "--data-dir"],
                                     ["data", "download", "fashion-mnist", "--data-dir"]],
                         ids=["reproduce", "generate", "download"])
def test_an_unwritable_output_path_is_status_2_everywhere(command, tmp_path, capsys):
    """As main's docstring says; data generate and data download returned 1."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert main([*command, str(blocker)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastdl: error: ") and err.count("\n") == 1 and "a-file" in err
