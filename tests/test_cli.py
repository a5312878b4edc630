"""The ``fastdl`` command line: info, reproduce, data, bench, and ``python -m fastdl``."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
