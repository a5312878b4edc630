"""Numba's on-disk cache must never break a run: no cache location, caching switched off."""

import subprocess
import sys
import textwrap
import warnings

import pytest

numba = pytest.importorskip("numba")

from fastdl.kernels.cpu import _jit  # noqa: E402


def _double(x):
    return 2 * x


@pytest.mark.parametrize("compile_", [_jit.compile_kernel, _jit.helper(), _jit.helper(inline="always")],
                         ids=["kernel", "helper", "inlined helper"])
def test_compile_falls_back_when_no_cache_location(monkeypatch, compile_):
    """Kernels and their helpers compile in memory where Numba has nowhere to cache them."""
    real_njit = numba.njit

    def njit_without_cache_dir(*args, **options):
        if options.get("cache"):
            # What Numba raises for a read-only install without a writable user cache directory.
            raise RuntimeError("cannot cache function '_double': no locator available")
        return real_njit(*args, **options)

    monkeypatch.setattr(_jit.numba, "njit", njit_without_cache_dir)
    monkeypatch.setattr(_jit, "_uncached_warned", False)
    with pytest.warns(RuntimeWarning, match="set NUMBA_CACHE_DIR to a writable directory"):
        assert compile_(_double)(21) == 42
    with warnings.catch_warnings():  # once a process: every other kernel compiles without a word
        warnings.simplefilter("error")
        assert compile_(_double)(21) == 42


def test_caching_off_gives_the_same_answers(tmp_path):
    code = textwrap.dedent("""
        import numpy as np
        from fastdl.ops import pairwise_distances  # the direct path: a kernel with cached helpers
        rng = np.random.default_rng(0)
        print(repr(pairwise_distances(rng.normal(size=(5, 4)), rng.normal(size=(6, 4)), backend="numba").sum()))
    """)
    sums = []
    for cache in ("0", "1"):
        result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                                env={**_clean_env(), "FASTDL_CACHE": cache, "NUMBA_CACHE_DIR": str(tmp_path)},
                                timeout=300)
        assert result.returncode == 0, result.stderr
        sums.append(result.stdout.strip())
        if cache == "0":  # the kernels' helpers too (kernels/cpu/_jit.helper) write nothing
            assert not list(tmp_path.rglob("*.nb[ic]"))
    assert sums[0] == sums[1]


def _clean_env():
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("FASTDL_")}


PROBE = """
import numpy as np
from numba import prange
from fastdl.kernels.cpu._jit import compile_kernel, launch

def twice(out):
    for i in prange(out.shape[0]):
        out[i] = 2 * i

serial = compile_kernel(twice)
parallel = compile_kernel(twice, parallel=True)
out = np.zeros(1000, np.int64)
launch(serial, parallel, 1, out)
launch(serial, parallel, 2, out)
print(int(out.sum()))
"""


def test_serial_and_parallel_variants_are_cached_apart(tmp_path):
    # Numba's cache keys entries by name, source and signature, not by compile options: were both
    # variants one name, the parallel one would load the serial machine code from the cache and
    # silently run on one thread.
    module = tmp_path / "probe.py"
    module.write_text(PROBE)
    env = {**_clean_env(), "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    for _ in range(2):  # compile and cache, then load from the cache
        result = subprocess.run([sys.executable, str(module)], cwd=tmp_path, capture_output=True, text=True,
                                env=env, timeout=300)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == str(2 * sum(range(1000)))
    indexes = sorted(path.name.split("-")[0] for path in (tmp_path / "cache").rglob("*.nbi"))
    assert indexes == ["probe.twice_parallel_numpy_errors", "probe.twice_serial_numpy_errors"]


READ_ONLY = """
import numba.core.caching as caching

def deny(self):  # what Numba meets where the install and the home directory are read-only
    raise PermissionError(13, "Permission denied")

caching._CacheLocator.ensure_cache_path = deny
import numpy as np
from fastdl.xor import lazy_search
print(lazy_search(n_successes=2, seed=0, backend="numba"))
"""


def test_numba_kernels_with_helpers_run_without_a_cache_location(tmp_path):
    result = subprocess.run([sys.executable, "-c", READ_ONLY], cwd=tmp_path, capture_output=True, text=True,
                            env=_clean_env(), timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("[")
    # One warning (fastdl's, saying every process compiles again), and no other.
    assert result.stderr.count("RuntimeWarning") == 1 and "set NUMBA_CACHE_DIR" in result.stderr


@pytest.mark.parametrize("value, expected", [("", True), ("  ", True), ("0", False), (" off ", False), ("1", True)])
def test_blank_fastdl_cache_means_the_default(monkeypatch, value, expected):
    """Only an explicit 0 (false, no, off) turns the cache off, as the docs say; empty means default,
    as for FASTDL_BACKEND and FASTDL_NUM_THREADS."""
    from fastdl import config

    monkeypatch.setenv("FASTDL_CACHE", value)
    assert config.numba_cache() is expected
    monkeypatch.setenv("FASTDL_FASTMATH", value)  # the same rule, default off
    assert config.numba_fastmath() is (value.strip() not in ("", "0", "off"))
