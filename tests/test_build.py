"""The build: setup.py's extension list and the Makefile's install-or-rebuild choice."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_UTILITY = "fastdl.kernels.cy._cyutility"

# Runs setup.py with cythonize and setup replaced by recorders: what it would build, nothing built.
RECORD_SETUP = textwrap.dedent(
    """
    import json, runpy
    import Cython.Build, setuptools

    seen = {}

    def cythonize(extensions, **kwargs):
        seen["extensions"] = [(e.name, e.sources) for e in extensions]
        seen["cythonize"] = {k: v for k, v in kwargs.items() if k != "compiler_directives"}
        return extensions

    def setup(**kwargs):
        seen["options"] = kwargs.get("options")

    Cython.Build.cythonize, setuptools.setup = cythonize, setup
    runpy.run_path("setup.py", run_name="__main__")
    print(json.dumps(seen))
    """
)


def test_setup_shares_cython_utility_code_and_compiles_in_parallel(tmp_path):
    pytest.importorskip("Cython")
    shutil.copy(ROOT / "setup.py", tmp_path)
    kernels = tmp_path / "kernels" / "cy"
    kernels.mkdir(parents=True)
    for name in ("dense.pyx", "_build.pyx"):
        shutil.copy(ROOT / "kernels" / "cy" / name, kernels)
    out = subprocess.run([sys.executable, "-c", RECORD_SETUP], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.splitlines()[-1])

    # Cython's support code goes into one module of its own, built like the others.
    assert seen["cythonize"]["shared_utility_qualified_name"] == SHARED_UTILITY
    extensions = dict(seen["extensions"])
    assert extensions[SHARED_UTILITY] == [os.path.join("kernels", "cy", "_cyutility.c")]
    assert sorted(extensions) == sorted([SHARED_UTILITY, "fastdl.kernels.cy.dense", "fastdl.kernels.cy._build"])
    # One compiler job per CPU this process may use.
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert seen["options"]["build_ext"]["parallel"] == cpus


def test_build_requires_a_cython_with_the_shared_utility_module():
    tomllib = pytest.importorskip("tomllib")
    with open(ROOT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)
    cython = "Cython>=3.1,<4"
    assert cython in project["build-system"]["requires"]
    # The Makefile's in-place rebuild runs setup.py in .venv, with the dev extra.
    assert cython in project["project"]["optional-dependencies"]["dev"]
    assert "setuptools>=77" in project["project"]["optional-dependencies"]["dev"]


def test_built_extensions_use_the_shared_utility_module():
    import fastdl

    available, reason = fastdl.backend_status()["cython"]
    if not available:
        pytest.skip(f"the Cython extensions are not built: {reason}")
    code = "import sys, fastdl.kernels.cy.dense; print('fastdl.kernels.cy._cyutility' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True", "rebuild the extensions: make clean && make test"


# The Makefile's install step, run with a stand-in .venv/bin/python that logs its arguments.
FAKE_PYTHON = '#!/bin/sh\necho "$*" >> "$(dirname "$0")/../calls.log"\nexit "${FAKE_RC:-0}"\n'


# What pip makes: the C cythonize writes and the extensions it compiles.
GENERATED = ["kernels/cy/dense.c", "kernels/cy/pool.c"]
EXTENSIONS = ["kernels/cy/dense.cpython-311-x86_64-linux-gnu.so", "kernels/cy/pool.abi3.so"]


@pytest.fixture
def project(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    shutil.copy(ROOT / "Makefile", tmp_path)
    for name in ["pyproject.toml", "setup.py", "kernels/cy/dense.pyx", "kernels/cy/pool.pyx"] + GENERATED + EXTENSIONS:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    return tmp_path


class Clock:
    """File times from the past onwards, each later than the last: make orders them, none in the future."""

    def __init__(self):
        self.now = time.time() - 10_000

    def touch(self, path):
        self.now += 10
        os.utime(path, (self.now, self.now))


def _make(project, *targets, rc=0):
    """Run make; return its exit status and the stand-in python's calls during this run."""
    log = project / ".venv" / "calls.log"
    before = log.read_text().splitlines() if log.exists() else []
    # Not the flags of a make this may run under (make -i test would hide the failure below).
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["FAKE_RC"] = str(rc)
    status = subprocess.run(["make", "-C", str(project), *targets], env=env, capture_output=True, text=True).returncode
    after = log.read_text().splitlines() if log.exists() else []
    return status, after[len(before):]


def _rebuilt_in_place(calls):
    return calls == ["setup.py -q build_ext --inplace --build-lib build/ext"]


def _installed(calls):
    return calls == ['-m pip install --quiet -e .[dev]']


def test_makefile_installs_once_then_rebuilds_changed_kernels_in_place(project):
    stamp = project / ".venv" / ".installed-dev"
    clock = Clock()
    for path in sorted(project.rglob("*")):
        if path.is_file():
            clock.touch(path)

    status, calls = _make(project, ".venv/.installed-dev")
    assert status == 0 and _installed(calls) and stamp.exists()
    # pip compiled in a folder of its own: build_ext's is given its extensions, to compare with, dated
    # after the C (itself dated after the Cython pip installed), so that nothing is compiled again.
    built = sorted((project / "build" / "ext" / "fastdl" / "kernels" / "cy").iterdir())
    assert [p.name for p in built] == sorted(Path(name).name for name in EXTENSIONS)
    c_times = [(project / name).stat().st_mtime for name in GENERATED]
    assert min(c_times) > clock.now and min(p.stat().st_mtime for p in built) >= max(c_times)
    clock.touch(stamp)
    assert _make(project, ".venv/.installed-dev") == (0, [])  # up to date: nothing runs

    # A changed .pyx: only setup.py build_ext --inplace, which recompiles just what changed.
    clock.touch(project / "kernels" / "cy" / "dense.pyx")
    status, calls = _make(project, ".venv/.installed-dev")
    assert status == 0 and _rebuilt_in_place(calls)
    clock.touch(stamp)

    # A failed rebuild keeps the stamp, as old as it was, so the next run rebuilds in place again.
    clock.touch(project / "kernels" / "cy" / "pool.pyx")
    status, calls = _make(project, ".venv/.installed-dev", rc=1)
    assert status != 0 and _rebuilt_in_place(calls) and stamp.exists()
    status, calls = _make(project, ".venv/.installed-dev")
    assert status == 0 and _rebuilt_in_place(calls)
    clock.touch(stamp)

    # A changed pyproject.toml or setup.py (dependencies, compiler flags) installs again.
    for name in ("pyproject.toml", "setup.py"):
        clock.touch(project / name)
        status, calls = _make(project, ".venv/.installed-dev")
        assert status == 0 and _installed(calls), name
        clock.touch(stamp)

    # make clean removes the extensions and the stamp: the next run installs again.
    assert _make(project, "clean")[0] == 0 and not stamp.exists()
    for name in GENERATED + EXTENSIONS:  # what pip would make
        (project / name).write_text("")
    status, calls = _make(project, ".venv/.installed-dev")
    assert status == 0 and _installed(calls)
