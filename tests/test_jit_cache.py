"""Numba's on-disk cache must never break a run: no cache location, caching switched off."""

import subprocess
import sys
import textwrap

import pytest

numba = pytest.importorskip("numba")

from fastdl.kernels.cpu import _jit  # noqa: E402


def _double(x):
    return 2 * x


def test_compile_falls_back_when_no_cache_location(monkeypatch):
    real_njit = numba.njit

    def njit_without_cache_dir(*args, **options):
        if options.get("cache"):
            # What Numba raises for a read-only install without a writable user cache directory.
            raise RuntimeError("cannot cache function '_double': no locator available")
        return real_njit(*args, **options)

    monkeypatch.setattr(_jit.numba, "njit", njit_without_cache_dir)
    kernel = _jit.compile_kernel(_double)
    assert kernel(21) == 42


def test_caching_off_gives_the_same_answers(tmp_path):
    code = textwrap.dedent("""
        import numpy as np
        from fastdl.ops import knn
        rng = np.random.default_rng(0)
        _, indices = knn(rng.normal(size=(30, 4)), rng.normal(size=(50, 4)), 3, backend="numba")
        print(indices.sum())
    """)
    sums = []
    for cache in ("0", "1"):
        result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                                env={**_clean_env(), "FASTDL_CACHE": cache, "NUMBA_CACHE_DIR": str(tmp_path)},
                                timeout=300)
        assert result.returncode == 0, result.stderr
        sums.append(result.stdout.strip())
    assert sums[0] == sums[1]


def _clean_env():
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("FASTDL_")}
