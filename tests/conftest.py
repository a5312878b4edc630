"""Shared fixtures: the backend and dtype parametrizations and a seeded generator."""

import numpy as np
import pytest

import fastdl

CPU_BACKENDS = ["numpy", "numba", "cython"]

# Relative tolerances of the library's answers against float64 references.
RTOL = {np.float32: 1e-4, np.float64: 1e-10}


def skip_unless_available(name):
    available, reason = fastdl.backend_status()[name]
    if not available:
        pytest.skip(f"backend {name!r} is unavailable: {reason}")


def ready_backends():
    """The CPU backends that can run here (for tests comparing backends with each other)."""
    ready = []
    for name in CPU_BACKENDS:
        available, _ = fastdl.backend_status()[name]
        if available:
            ready.append(name)
    return ready


@pytest.fixture(params=CPU_BACKENDS)
def backend(request):
    """Each CPU backend by name, skipped (with fastdl's reason) where it is unavailable."""
    skip_unless_available(request.param)
    return request.param


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _restore_fastdl_state():
    """Tests may change the process default backend and thread count; put them back afterwards."""
    backend = fastdl.get_backend()
    threads = fastdl.get_num_threads()
    yield
    fastdl.set_backend(backend)
    if fastdl.get_num_threads() != threads:
        fastdl.set_num_threads(threads)
