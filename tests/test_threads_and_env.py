"""What fastdl sets up for the thread pools it shares (the OpenMP runtime's wait policy, as
`fastdl info` reports it) and the FASTDL_* flags read from the environment."""

import os
import subprocess
import sys
import textwrap

import pytest

from fastdl import config

# Where the cython backend was built with GCC's OpenMP, libgomp says which wait policy it read as it
# loaded: GOMP_SPINCOUNT is 0 under PASSIVE, 300000 when the variable was unset.
_POLICY_CODE = """
    import contextlib, ctypes, io, os
    {first}
    import fastdl
    from fastdl import cli

    fastdl.available_backends()  # the README's quick start's first call
    info = io.StringIO()
    with contextlib.redirect_stdout(info):
        cli.main(["info"])
    print([line.split(None, 1)[1] for line in info.getvalue().splitlines() if "OMP_WAIT_POLICY" in line][0])
    ctypes.CDLL("libgomp.so.1").omp_display_env(1)  # to stderr
"""


def _run_python(code):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FASTDL_", "OMP_", "GOMP_"))}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True,
                          text=True, timeout=120)


def _spin_count(stderr):
    for line in stderr.splitlines():
        if "GOMP_SPINCOUNT" in line:
            return line.split("=")[1].strip().strip("'")
    raise AssertionError(f"libgomp printed no GOMP_SPINCOUNT:\n{stderr}")


@pytest.fixture
def libgomp_kernels():
    """Skip unless the cython kernels are built with GCC's OpenMP runtime, on Linux."""
    from fastdl.backend import backend_status

    if not sys.platform.startswith("linux") or not backend_status()["cython"][0]:
        pytest.skip("needs the cython backend on Linux")
    import ctypes

    try:
        ctypes.CDLL("libgomp.so.1", mode=os.RTLD_NOLOAD)  # loaded by the probe just made
    except OSError:
        pytest.skip("the cython kernels were built without GCC's OpenMP")


def test_available_backends_loads_openmp_passive_and_info_says_so(libgomp_kernels):
    """available_backends() probes the cython backend, which loads the OpenMP runtime: it must do so
    under fastdl's PASSIVE default, as loading the kernels does, or the runtime's threads spin after
    every kernel while `fastdl info` says PASSIVE."""
    result = _run_python(_POLICY_CODE.format(first=""))
    assert result.returncode == 0, result.stderr
    assert _spin_count(result.stderr) == "0"
    assert result.stdout.strip() == "PASSIVE while fastdl's kernels loaded"


def test_info_does_not_claim_passive_for_a_runtime_loaded_before_fastdl(libgomp_kernels):
    """A runtime loaded before fastdl's kernels read the wait policy then: `fastdl info` must not
    say PASSIVE."""
    result = _run_python(_POLICY_CODE.format(first='ctypes.CDLL("libgomp.so.1")'))
    assert result.returncode == 0, result.stderr
    assert _spin_count(result.stderr) != "0"
    assert result.stdout.strip() == "unset"


@pytest.mark.parametrize("variable, read", [("FASTDL_FASTMATH", "numba_fastmath"), ("FASTDL_CACHE", "numba_cache")])
@pytest.mark.parametrize("value", ["maybe", "disable", "none", "O", "nein", "2"])
def test_a_flag_that_is_not_yes_or_no_is_an_error(monkeypatch, variable, read, value):
    """An unrecognised FASTDL_FASTMATH or FASTDL_CACHE (a typo, "disable") used to mean "on"."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=f"^{variable} must be .*got '{value}'"):
        getattr(config, read)()


@pytest.mark.parametrize("value, expected", [(" TRUE ", True), ("Yes", True), ("on", True), ("1", True),
                                             ("0", False), ("OFF", False), (" no", False), ("False", False)])
def test_flags_take_yes_and_no_in_any_case(monkeypatch, value, expected):
    for variable, read in (("FASTDL_FASTMATH", config.numba_fastmath), ("FASTDL_CACHE", config.numba_cache)):
        monkeypatch.setenv(variable, value)
        assert read() is expected
    monkeypatch.setenv("FASTDL_FASTMATH", " ")  # blank: the default
    monkeypatch.setenv("FASTDL_CACHE", "")
    assert config.numba_fastmath() is False and config.numba_cache() is True


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_bad_flag_raises_as_an_op_first_loads_its_kernels(monkeypatch, backend):
    """Where a bad FASTDL_NUM_THREADS or FASTDL_BACKEND raises: the first op, with a ValueError (not
    the numba backend reported unavailable, its kernels failed to load)."""
    import numpy as np

    from fastdl import backend as backend_module
    from fastdl.ops import pairwise_distances

    monkeypatch.setattr(backend_module, "_module_cache", {})  # as in a process that loaded none yet
    monkeypatch.setenv("FASTDL_FASTMATH", "nein")
    with pytest.raises(ValueError, match="FASTDL_FASTMATH"):
        pairwise_distances(np.ones((2, 2)), backend=backend)


@pytest.mark.parametrize("backend", ["numpy", "numba", "cython"])
def test_a_bad_thread_count_raises_at_an_op_on_one_thread(backend):
    """A small pairwise_distances runs on one thread without reading the thread count: a bad
    FASTDL_NUM_THREADS passed it, and the next op raised."""
    result = _run_python(f"""
        import os
        import numpy as np
        from fastdl.ops import pairwise_distances

        os.environ["FASTDL_NUM_THREADS"] = "abc"
        try:
            pairwise_distances(np.ones((2, 2)), backend="{backend}")
        except ValueError as exc:
            print(exc)
        """)
    assert result.returncode == 0, result.stderr
    assert "FASTDL_NUM_THREADS must be an integer from 1 to 1024, got 'abc'" in result.stdout


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("backend_name", ["cython", "numba"])
def test_a_forked_worker_renders_after_its_parent_did(backend_name):
    """Rendering loads only kernel modules (no fastdl region), so the at-fork hook that puts a
    forked child on one thread was never registered: a multiprocessing "fork" worker (a PyTorch
    DataLoader's) hung in its first OpenMP kernel (cython) or was killed by Numba."""
    from conftest import skip_unless_available

    skip_unless_available(backend_name)
    result = _run_python(f"""
        import multiprocessing, sys
        import numpy as np
        from fastdl.data import render_clocks

        assert "fastdl._parallel" not in sys.modules  # a script that never called set_num_threads
        first, _ = render_clocks(4, seed=0, size=32, backend="{backend_name}")

        def render(seed):
            return render_clocks(2, seed=seed, size=32, backend="{backend_name}")[0]

        with multiprocessing.get_context("fork").Pool(2) as pool:
            result = pool.map_async(render, [0, 1])
            images = result.get(timeout=60)
        assert np.array_equal(images[0], first[:2])
        print("ok")
        """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
