"""The device suites' peers (CuPy, PyTorch CUDA) and why the suites cannot run here, if they cannot.

DEVICE_MISSING is None where all three are present: a real CUDA device for fastdl's cuda backend
(numba.cuda, never its simulator: these suites time the device), CuPy seeing it, and a CUDA build of
PyTorch seeing it. Otherwise it says what is missing, and every bench module's tests are skipped
with it (`pytestmark = needs_device`): the modules import and collect anywhere, and touch CuPy or
the device only inside their tests.

Timed calls end with a device-wide synchronisation (`cupy_sync` / `torch_sync`: both wait for every
stream of the device, numba's included), so a time is the whole of the work, not its launch.
"""

import importlib.metadata

import numpy as np
import pytest

import fastdl

from peers import TORCH_MISSING, torch

cupy = None


def _why_missing():
    global cupy
    import numba

    if numba.config.ENABLE_CUDASIM:
        return ("numba's CUDA simulator is on (NUMBA_ENABLE_CUDASIM=1): the device suites time a real GPU "
                "only; set NUMBA_ENABLE_CUDASIM=0 on a machine with one")
    reasons = []
    ok, reason = fastdl.backend_status()["cuda"]
    if not ok:
        reasons.append(f"fastdl's cuda backend is unavailable ({reason})")
    try:
        import cupy as module

        if module.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("no CUDA device")
        cupy = module
    except Exception as exc:  # ImportError, or CuPy without a driver, its libraries or a device
        reasons.append(f"CuPy is unusable ({type(exc).__name__}: {exc}); "
                       "pip install cupy-cuda12x or cupy-cuda13x")
    if torch is None:
        reasons.append(TORCH_MISSING)
    elif not torch.cuda.is_available():
        reasons.append(f"torch {torch.__version__} sees no CUDA device (a CPU build, or no driver)")
    return "; ".join(reasons) or None


DEVICE_MISSING = _why_missing()
needs_device = pytest.mark.skipif(DEVICE_MISSING is not None, reason=f"device suite: {DEVICE_MISSING}")


def describe():
    """Header lines for the pytest report: the GPU and the peers' versions, or why all is skipped."""
    if DEVICE_MISSING:
        return [f"device suites (benchmarks/gpu): skipped: {DEVICE_MISSING}"]
    try:
        numba_cuda = importlib.metadata.version("numba-cuda")
    except importlib.metadata.PackageNotFoundError:
        numba_cuda = "(built into numba)"
    return [
        f"device: {torch.cuda.get_device_name()}; CUDA {torch.version.cuda} (torch), "
        f"CuPy runtime {cupy.cuda.runtime.runtimeGetVersion()}",
        f"torch {torch.__version__}, CuPy {cupy.__version__}, numba-cuda {numba_cuda}, numpy {np.__version__}",
    ]


def cupy_sync():
    cupy.cuda.Device().synchronize()


def torch_sync():
    torch.cuda.synchronize()


def synced(function, sync):
    """function followed by a device synchronisation: what each timed call runs."""

    def run(*args):
        out = function(*args)
        sync()
        return out

    return run


def to_torch(array):
    """A torch CUDA tensor over a CuPy array's memory (DLPack, no copy)."""
    return torch.from_dlpack(array)


def to_host(array):
    """A NumPy copy of a CuPy array, a torch tensor, a numba device array or a NumPy array."""
    if cupy is not None and isinstance(array, cupy.ndarray):
        return cupy.asnumpy(array)
    if torch is not None and isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    if hasattr(array, "copy_to_host"):
        return array.copy_to_host()
    return np.asarray(array)


def release_memory():
    """Give the CuPy pool's and torch's cached blocks back (between suites: the big cases hold GBs)."""
    if cupy is not None:
        cupy.get_default_memory_pool().free_all_blocks()
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def cupy_squared_norms(X):
    return (X * X).sum(axis=1)


_gram_kernels = {}


def cupy_gram_to_distances(gram, sq_a, sq_b, squared=False):
    """In place: gram (n, m) of a.b becomes sqrt(max(|a|^2 + |b|^2 - 2 a.b, 0)), or its square, in
    one fused pass."""
    if squared not in _gram_kernels:
        finish = "d = d2" if squared else "d = sqrt(d2)"
        _gram_kernels[squared] = cupy.ElementwiseKernel(
            "T g, T sa, T sb", "T d", f"T d2 = sa + sb - 2 * g; d2 = d2 > 0 ? d2 : (T)0; {finish}",
            f"fastdl_bench_gram_to_{'squared' if squared else 'distances'}")
    return _gram_kernels[squared](gram, sq_a[:, None], sq_b[None, :], gram)
