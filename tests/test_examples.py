"""Smoke tests: every examples/NN_name.py runs with --quick and prints a table.

The convention each example follows (see examples/README.md): `--quick` anywhere in its
arguments runs it on a small slice in a few seconds; it prints at least one small table (rows
of numbers with the same columns); where a dataset it needs is missing, it prints the loader's
message (which says "not found" and how to get the data) to stderr and exits with status 2,
which skips its test here instead of failing it. New examples are picked up by their file name.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("[0-9][0-9]_*.py"))
TIMEOUT_S = 300
MISSING_DATA_STATUS = 2
# A number standing on its own: 12, 1,413,834, 0.875, 93.37%, 8.85e-06 (not the 3 of "3-nearest").
NUMBER = re.compile(r"(?<![\w.-])[-+]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?%?(?![\w.-])")


def has_table(text):
    """Whether two consecutive lines each hold the same number (>= 2) of numbers: table rows."""
    counts = [len(NUMBER.findall(line)) for line in text.splitlines() if line.strip()]
    return any(a == b >= 2 for a, b in zip(counts, counts[1:]))


def test_examples_are_found():
    assert len(EXAMPLES) >= 4, f"expected examples/NN_name.py files in {EXAMPLES_DIR}"


@pytest.mark.parametrize("script", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_example_runs_quick(script, tmp_path):
    # Run in a temporary directory, so nothing is written into the repository. The examples
    # only read datasets, so $FASTDL_DATA and the download cache ($FASTDL_CACHE_DIR) are kept:
    # a Fashion-MNIST fetched with `fastdl data download` is found as a student would find it.
    env = dict(os.environ, MPLBACKEND="Agg", MPLCONFIGDIR=str(tmp_path / "matplotlib"))
    try:
        done = subprocess.run([sys.executable, str(script), "--quick"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{script.name} --quick did not finish in {TIMEOUT_S} s; output so far:\n"
                    f"{exc.stdout or ''}")
    if done.returncode == MISSING_DATA_STATUS and "not found" in done.stderr:
        # The loader's first line names the dataset, its last says how to get it.
        lines = done.stderr.strip().splitlines()
        pytest.skip(f"{script.name}: {lines[0].split(':')[0]}. {lines[-1]}")
    assert done.returncode == 0, (f"{script.name} --quick exited {done.returncode}\n"
                                  f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}")
    assert has_table(done.stdout), f"{script.name} --quick printed no table:\n{done.stdout}"


# The examples that read a dataset (they call one of fastdl.data's load_ functions).
READERS = [path for path in EXAMPLES if re.search(r"\bload_\w+\(", path.read_text())]


@pytest.mark.parametrize("script", READERS, ids=[path.stem for path in READERS])
def test_example_without_its_data_says_so(script, tmp_path):
    # A data directory that does not exist: the loader's message and status 2, not a traceback.
    done = subprocess.run([sys.executable, str(script), "--quick", str(tmp_path / "no-such-dir")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == MISSING_DATA_STATUS, done.stderr
    assert "not found" in done.stderr and "no-such-dir" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("text, expected", [
    ("model  train  test\nMLP  0.57  0.58\nCNN  0.39  0.40\n", True),
    ("a 1 2\n\nb 3 4\n", True),  # blank lines between rows do not matter
    ("done in 3.2 s\nepochs 1 and 2\n", False),  # one number, then two: not the same columns
    ("3-nearest neighbours: 99%\n3-nearest: 98%\n", False),  # the 3 of "3-nearest" is a word
    ("", False),
])
def test_has_table(text, expected):
    assert has_table(text) is expected
