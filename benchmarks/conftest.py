"""Shared set-up for the benchmarks: threads, optional peers, backends, data, and the ratio report.

Threads: every contender gets the same count, FASTDL_NUM_THREADS when it is set, else every CPU
this process may use. fastdl, BLAS and OpenMP (threadpoolctl), torch and faiss are all set to it.
threadpoolctl changes only the runtimes loaded when it is called, and the bench modules load
more (scikit-learn's OpenMP, scipy's OpenBLAS) when they are collected and fastdl's fixtures when
they first run, so the limits are applied again after collection and before each benchmark.

Quick mode (`--quick` or FASTDL_BENCH_QUICK=1) skips the cases marked `big` (see pytest.ini).

After pytest-benchmark's own table, a short report gives every contender's mean time per group
and its ratio to the fastest fastdl backend of that group.
"""

import importlib
import os
from pathlib import Path

import numpy as np
import pytest

import fastdl
from fastdl import config as fastdl_config

from peers import FAISS_MISSING, TORCH_MISSING, faiss, torch
from ratios import report

QUICK_ENV = "FASTDL_BENCH_QUICK"
DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "leiden-digits"
DIGIT_FILES = ("train_in.csv", "train_out.csv", "test_in.csv", "test_out.csv")

_results = []  # (group, contender, mean_s, rounds, note), filled as benchmarks finish


def pytest_addoption(parser):
    parser.addoption(
        "--quick", action="store_true", default=False,
        help=("skip the cases marked big: the 10000x60000 distances, the big kNN, the CNN, clock, "
              "multi-head, VAE and GAN training steps, rendering 18,000 clocks and 10,000 faces "
              f"(same as {QUICK_ENV}=1)"),
    )


def quick_mode(config):
    value = os.environ.get(QUICK_ENV, "").strip().lower()
    return config.getoption("--quick") or value not in ("", "0", "false", "no", "off")


def bench_threads():
    """FASTDL_NUM_THREADS when set, else every CPU this process may use."""
    return fastdl_config.env_num_threads()


def limit_threads():
    """Cap every BLAS and OpenMP runtime loaded by now at the benchmarks' thread count."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=bench_threads())  # nothing restores it: it holds for the session


def pytest_configure(config):
    n_threads = bench_threads()
    fastdl.set_num_threads(n_threads)  # fastdl's kernels, and a cap on BLAS
    if torch is not None:
        torch.set_num_threads(n_threads)
    if faiss is not None:
        faiss.omp_set_num_threads(n_threads)
    limit_threads()  # numpy's BLAS, torch's and faiss' OpenMP: loaded by now


def pytest_collection_finish(session):
    limit_threads()  # the runtimes the bench modules loaded: scikit-learn's OpenMP, scipy's BLAS


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    yield
    limit_threads()  # and any its fixtures loaded (fastdl's compiled kernels); ~2 ms, untimed


def pytest_report_header(config):
    n_threads = bench_threads()
    source = "FASTDL_NUM_THREADS" if config_has_env_threads() else "all CPUs"
    status = fastdl.backend_status()
    backends = ", ".join(f"{name}={'yes' if ok else 'no'}" for name, (ok, _) in status.items())
    peers = [
        f"torch {torch.__version__}" if torch is not None else "torch: not installed",
        f"faiss {faiss.__version__}" if faiss is not None else "faiss: not installed",
    ]
    lines = [
        f"fastdl {fastdl.__version__} benchmarks: {n_threads} threads ({source}) for every contender",
        f"fastdl backends: {backends}; peers: {', '.join(peers)}",
        f"quick mode: {'on (the big cases skipped)' if quick_mode(config) else 'off'}",
    ]
    if torch is not None:
        lines.append("torch loaded first: fastdl's kernels share its OpenMP runtime and wait policy "
                      "(FASTDL_BENCH_PEERS=0 for fastdl's own, then benchmarks/ratios.py: see benchmarks/README.md)")
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    if coretype:
        lines.append(f"OPENBLAS_CORETYPE={coretype} (from the environment)")
    return lines


def config_has_env_threads():
    return fastdl_config.num_threads_from_env()


def pytest_collection_modifyitems(config, items):
    if not quick_mode(config):
        return
    skip = pytest.mark.skip(reason=f"quick mode (--quick or {QUICK_ENV}=1) skips the big cases")
    for item in items:
        if item.get_closest_marker("big") is not None:
            item.add_marker(skip)


# Backends and peers ----------------------------------------------------------------------------


def fastdl_backend_missing(family, name):
    """Why fastdl backend `name` cannot run operation `family` here, or None when it can."""
    ok, reason = fastdl.backend_status().get(name, (False, "unknown backend"))
    if not ok:
        return f"fastdl backend {name!r} is unavailable: {reason}"
    try:
        importlib.import_module(f"{fastdl.backend.PACKAGES[name]}.{family}")
    except ImportError as exc:
        return f"fastdl backend {name!r} has no {family!r} kernels yet ({exc})"
    return None


@pytest.fixture
def require_fastdl_backend():
    """Skip the test unless fastdl backend `name` can run `family`."""

    def require(family, name):
        missing = fastdl_backend_missing(family, name)
        if missing:
            pytest.skip(missing)

    return require


@pytest.fixture(scope="session")
def n_threads():
    return bench_threads()


@pytest.fixture(scope="session")
def warm_fastdl():
    """Compile every usable fastdl backend (both dtypes) once, before anything is timed.

    Returns a dict: operation family ("distance", "neighbors") -> backends that can run it.
    """
    from fastdl.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(0)
    usable = {"distance": [], "neighbors": []}
    for family, names in usable.items():
        for name in ("numpy", "numba", "cython"):
            if fastdl_backend_missing(family, name):
                continue
            for dtype in (np.float64, np.float32):
                A = rng.uniform(-1, 1, (40, 8)).astype(dtype)
                B = rng.uniform(-1, 1, (30, 8)).astype(dtype)
                if family == "distance":
                    fastdl.ops.pairwise_distances(A, B, backend=name)
                else:
                    fastdl.ops.knn(A, B, 3, backend=name)
                    KNeighborsClassifier(3, backend=name).fit(B, np.arange(30) % 3).predict(A)
            names.append(name)
    return usable


@pytest.fixture(scope="session")
def leiden_digits():
    """The course digits as float64 arrays and integer labels; skips when the files are absent."""
    places = []
    if fastdl_config.data_dir() is not None:
        env = Path(fastdl_config.data_dir())
        places += [env / "leiden-digits", env]
    places.append(DATA_DIR)
    for place in places:
        if all((place / name).is_file() for name in DIGIT_FILES):
            break
    else:
        pytest.skip(
            "course data leiden-digits not found (looked in "
            + ", ".join(str(p) for p in places)
            + f"; needs {', '.join(DIGIT_FILES)})"
        )

    def read(name, dtype):
        return np.loadtxt(place / name, delimiter=",", dtype=dtype, ndmin=1)

    data = {
        "X_train": np.ascontiguousarray(read("train_in.csv", np.float64)),
        "y_train": read("train_out.csv", np.float64).astype(np.int64),
        "X_test": np.ascontiguousarray(read("test_in.csv", np.float64)),
        "y_test": read("test_out.csv", np.float64).astype(np.int64),
        "place": place,
    }
    assert data["X_train"].shape[0] == data["y_train"].shape[0]
    assert data["X_test"].shape[0] == data["y_test"].shape[0]
    return data


def timing(benchmark):
    """The benchmark's timing stats (.mean, .min, .rounds), or None where nothing was timed."""
    stats = getattr(getattr(benchmark, "stats", None), "stats", None)
    return stats if stats is not None and stats.rounds else None


@pytest.fixture
def name_contender(benchmark):
    """name_contender(group, contender, note=""): file this benchmark under a comparison group.

    A note that reads the timing (a rate, a time per step) is a function of pytest-benchmark's stats
    (.mean, .min, ...): under --benchmark-disable nothing is timed and it is left out.
    """

    def name(group, contender, note=""):
        benchmark.group = group
        benchmark.extra_info["group"] = group  # for ratios.py, which reads the JSON of several runs
        benchmark.extra_info["contender"] = contender
        if callable(note):
            stats = timing(benchmark)
            note = note(stats) if stats is not None else ""
        if note:
            benchmark.extra_info["note"] = note

    return name


# Ratio report ----------------------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    yield
    benchmark = (getattr(item, "funcargs", None) or {}).get("benchmark")
    stats = timing(benchmark)
    if stats is None:
        return
    extra = benchmark.extra_info
    _results.append((
        benchmark.group or "(no group)",
        extra.get("contender", item.name),
        stats.mean,
        stats.min,
        stats.rounds,
        extra.get("note", ""),
    ))


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter):
    if not _results:
        return
    write = terminalreporter.write_line
    terminalreporter.section("fastdl ratios: each contender against fastdl's fastest backend, per group")
    write(f"threads: {bench_threads()} for every contender (set FASTDL_NUM_THREADS to change).")
    write("'vs fastdl (mean)': contender mean / best fastdl mean; 'vs fastdl (min)': the same with min times.")
    report(_results, write)
