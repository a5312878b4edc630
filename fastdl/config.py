"""Defaults and FASTDL_* environment variables, read in this one place.

FASTDL_BACKEND       default backend: "auto" (default), "numpy", "numba", "cython" or "cuda"
FASTDL_NUM_THREADS   threads for Numba, OpenMP and BLAS (default: the CPUs this process may use)
FASTDL_CACHE         "0" disables Numba's on-disk cache of compiled kernels (default "1")
FASTDL_FASTMATH      "1" compiles Numba kernels with fastmath (default "0")
FASTDL_WINOGRAD      "0" keeps 3x3 convolutions off Winograd's transforms on the CPU (default "1")
                     (these three take 1/true/yes/on or 0/false/no/off; another value raises ValueError)
FASTDL_DATA          directory holding datasets (e.g. the course's leiden-digits CSV files)
FASTDL_CACHE_DIR     where `fastdl data download` puts datasets (default: ~/.cache/fastdl)

OMP_WAIT_POLICY      PASSIVE while fastdl loads its kernels, unless it is set: see passive_openmp
OPENBLAS_THREAD_TIMEOUT  20 while numpy loads when fastdl is imported first, unless it is set: see
                     short_blas_spin
"""

import contextlib
import os
import sys
from pathlib import Path

BACKENDS = ("numpy", "numba", "cython", "cuda")


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _flag(name, default):
    """The yes/no environment variable `name` (any case, spaces around ignored); empty or blank means
    `default`, as for FASTDL_BACKEND and FASTDL_NUM_THREADS. Any other value is a ValueError: a typo
    ("flase", "disable") must not quietly mean "on"."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value not in _TRUE + _FALSE:
        raise ValueError(f"{name} must be 1, true, yes or on (on), or 0, false, no or off (off), "
                         f"got {os.environ[name]!r}")
    return value in _TRUE


def default_num_threads():
    """The number of CPUs this process may run on (at most MAX_THREADS)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return min(cpus, MAX_THREADS)


def env_backend():
    return os.environ.get("FASTDL_BACKEND", "auto").strip().lower() or "auto"


# The most threads fastdl takes: OpenMP ends the process (no exception) when it cannot start the
# threads asked for (seen here: 40,000), and a count past C's int overflowed in the Cython kernels.
MAX_THREADS = 1024


def env_num_threads():
    value = os.environ.get("FASTDL_NUM_THREADS", "").strip()
    if not value:
        return default_num_threads()
    try:
        n = int(value)
    except ValueError:
        n = 0  # not a number: the same message as one out of range
    if not 1 <= n <= MAX_THREADS:
        raise ValueError(f"FASTDL_NUM_THREADS must be an integer from 1 to {MAX_THREADS}, got {value!r}")
    return n


def num_threads_from_env():
    return bool(os.environ.get("FASTDL_NUM_THREADS", "").strip())


def numba_cache():
    return _flag("FASTDL_CACHE", True)


def numba_fastmath():
    return _flag("FASTDL_FASTMATH", False)


def winograd():
    """Whether 3x3 convolutions on the CPU may take Winograd's transforms (F(2x2, 3x3), F(4x4, 3x3)
    and the sub-pixel transposed convolutions): faster, with rounding errors 4-7x PyTorch's direct
    sums' (README, Speed). Read at every convolution's plan, so it may change between calls."""
    return _flag("FASTDL_WINOGRAD", True)


def check_flags():
    """Raise ValueError for a FASTDL_CACHE, FASTDL_FASTMATH or FASTDL_WINOGRAD that is not a yes/no
    value (called as an op first loads its kernels, where a bad FASTDL_BACKEND or
    FASTDL_NUM_THREADS raises too)."""
    numba_cache()
    numba_fastmath()
    winograd()


def data_dir():
    value = os.environ.get("FASTDL_DATA", "").strip()
    return value or None


def cache_dir():
    """Directory for downloaded datasets: $FASTDL_CACHE_DIR, else ~/.cache/fastdl."""
    value = os.environ.get("FASTDL_CACHE_DIR", "").strip()
    return Path(value).expanduser() if value else Path.home() / ".cache" / "fastdl"


@contextlib.contextmanager
def _set_while_loading(name, value, too_late=False):
    """The environment variable `name` set to `value` inside (unless the user set it, or the library
    that reads it is loaded already: too_late), then removed; yields whether it was set."""
    if too_late or name in os.environ:
        yield False
        return
    os.environ[name] = value
    try:
        yield True
    finally:
        del os.environ[name]


@contextlib.contextmanager
def passive_openmp():
    """Load compiled kernels with OMP_WAIT_POLICY=PASSIVE (unless the user set it), then put the
    environment back.

    fastdl alternates OpenMP kernels with GEMMs on its own threads; OpenMP threads left spinning
    after a kernel take the cores those GEMMs need (measured here: 6-30 ms lost per convolution
    layer on 2 cores). The OpenMP runtime reads the variable once, when it loads with the first
    compiled kernel; restoring it afterwards keeps runtimes loaded later as they would be without
    fastdl. A library whose copy of the runtime has the same name shares the one loaded first,
    wait policy included: PyTorch's libgomp.so.1 (benchmarks/README.md measures the effect).
    """
    global openmp_policy_applied
    loaded_before = _openmp_runtime_loaded()
    with _set_while_loading("OMP_WAIT_POLICY", "PASSIVE") as applied:
        try:
            yield
        finally:
            # Recorded only where the runtime loaded inside: one loaded before (by a caller of the
            # runtime outside this window) kept the wait policy it read then.
            if applied and loaded_before is not True and _openmp_runtime_loaded() is not False:
                openmp_policy_applied = True


# Whether the OpenMP runtime loaded inside passive_openmp, under its PASSIVE default (for `fastdl info`).
openmp_policy_applied = False

# The OpenMP runtimes that fastdl's compiled kernels and Numba link on Linux (GCC's, LLVM's,
# Intel's), by the sonames a loaded copy answers to: a vendored copy under another name
# (scikit-learn's libgomp-<hash>.so.1) is another runtime, with a wait policy of its own.
OPENMP_RUNTIMES = ("libgomp.so.1", "libomp.so.5", "libomp.so", "libiomp5.so")


def _openmp_runtime_loaded():
    """Whether an OpenMP runtime of OPENMP_RUNTIMES is loaded in this process; None off Linux,
    where a runtime is not found by soname (passive_openmp then records what it set)."""
    import ctypes

    mode = getattr(os, "RTLD_NOLOAD", None)
    if mode is None or not sys.platform.startswith("linux"):
        return None
    for name in OPENMP_RUNTIMES:
        try:
            ctypes.CDLL(name, mode=mode)
        except OSError:  # not loaded (RTLD_NOLOAD never loads it)
            continue
        return True
    return False


# How long OpenBLAS' threads busy-wait after a threaded call, as log2 of CPU cycles: 2^20, about
# 0.3 ms (OpenBLAS' own default is 2^28, about 0.1 s).
BLAS_SPIN = "20"


@contextlib.contextmanager
def short_blas_spin():
    """Load numpy, and its OpenBLAS, with OPENBLAS_THREAD_TIMEOUT=BLAS_SPIN (unless the user set it,
    or numpy is loaded already), then put the environment back.

    After each call that it threads, OpenBLAS keeps its threads busy-waiting for the next one for
    some 0.1 s of CPU each, on the cores that fastdl's own threads need next: a kNN fit+predict of
    the course digits right after a NearestCentroid prediction took 6.9-7.8 ms instead of 4.5-5.0
    (2 cores; on 16, 15 threads spin). A third of a millisecond still bridges the gaps between the
    GEMMs of a training step (the course MLP's step took the same time). OpenBLAS reads the
    variable once, as it loads: where numpy was imported before fastdl, it keeps its default.
    """
    global blas_spin_applied
    with _set_while_loading("OPENBLAS_THREAD_TIMEOUT", BLAS_SPIN, too_late="numpy" in sys.modules) as applied:
        try:
            yield
        finally:
            blas_spin_applied = blas_spin_applied or applied


# Whether numpy's OpenBLAS was loaded under fastdl's BLAS_SPIN (for `fastdl info`).
blas_spin_applied = False
