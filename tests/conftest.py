"""Shared fixtures: the backend and dtype parametrizations and a seeded generator."""

import os

# Where no NVIDIA driver is present (CI, laptops) the cuda tests run on numba's CUDA simulator,
# which must be chosen before numba is imported; on a machine with a device they run on it
# (`pytest -m cuda`), and NUMBA_ENABLE_CUDASIM=1 still forces the simulator there.
if not os.path.exists("/dev/nvidiactl"):
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import numpy as np  # noqa: E402 - after the simulator's switch
import pytest  # noqa: E402

import fastdl  # noqa: E402

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


def cuda_simulated():
    """Whether the cuda tests run on numba's simulator (Python per thread: keep shapes tiny)."""
    import numba

    return bool(numba.config.ENABLE_CUDASIM)


@pytest.fixture
def cuda_backend():
    """The cuda backend's name, the test skipped (with fastdl's reason) where it is unavailable."""
    skip_unless_available("cuda")
    return "cuda"


@pytest.fixture
def cuda_scale():
    """1 on the simulator, larger on a device: tests multiply their shapes by it."""
    return 1 if cuda_simulated() else 64
