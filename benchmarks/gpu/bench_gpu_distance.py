"""Pairwise Euclidean distances on the GPU: fastdl's cuda backend against CuPy and PyTorch CUDA.

The data is on the device before anything is timed: float32 rows uniform in [-1, 1] (the CPU
suite's seed), CuPy arrays for fastdl (which then answers with a CuPy array) and for CuPy, the same
memory as torch tensors (DLPack, no copy) for torch. Every timed call returns the full (n_a, n_b)
matrix of Euclidean (not squared) distances on the device and synchronizes the device.
Target (issue 15): 10,000 x 60,000 x 784 at most 1.2x CuPy's GEMM identity.
"""

from dataclasses import dataclass

import numpy as np
import pytest
from scipy.spatial.distance import cdist

import fastdl.ops

from device_peers import (
    cupy, cupy_gram_to_distances, cupy_squared_norms, cupy_sync, needs_device, synced, to_host, to_torch, torch,
    torch_sync,
)

pytestmark = [needs_device, pytest.mark.benchmark(min_rounds=10)]

SEED = 20240611  # benchmarks/bench_distance.py's


@dataclass(frozen=True)
class Case:
    n_a: int
    n_b: int
    n_features: int
    big: bool = False

    @property
    def group(self):
        return f"cuda distance {self.n_a}x{self.n_features} vs {self.n_b}x{self.n_features} float32, on the device"


CASES = [Case(1000, 1707, 256), Case(10000, 60000, 784, big=True)]


def fastdl_cuda(A, B, A_torch, B_torch):
    return fastdl.ops.pairwise_distances(A, B, backend="cuda")


def cupy_gemm(A, B, A_torch, B_torch):
    """cuBLAS sgemm A @ B.T, then |a|^2 + |b|^2 - 2 a.b, clip at 0 and sqrt in one fused pass."""
    return cupy_gram_to_distances(A @ B.T, cupy_squared_norms(A), cupy_squared_norms(B))


def torch_cdist(A, B, A_torch, B_torch):
    """torch.cdist (its default mode takes the matmul path at these sizes)."""
    return torch.cdist(A_torch, B_torch)


CONTENDERS = {
    "fastdl-cuda": ("fastdl[cuda]", fastdl_cuda, cupy_sync, "CuPy arrays in and out"),
    "cupy-gemm": ("cupy GEMM identity (cuBLAS + fused kernel)", cupy_gemm, cupy_sync, ""),
    "torch-cdist": ("torch.cdist", torch_cdist, torch_sync, ""),
}

_data = {}


def case_data(case):
    """(A, B) as CuPy arrays and the same memory as torch tensors, and A, B on the host; one case
    cached at a time."""
    if case not in _data:
        _data.clear()
        rng = np.random.default_rng(SEED)
        A = rng.uniform(-1.0, 1.0, (case.n_a, case.n_features)).astype(np.float32)
        B = rng.uniform(-1.0, 1.0, (case.n_b, case.n_features)).astype(np.float32)
        A_dev, B_dev = cupy.asarray(A), cupy.asarray(B)
        _data[case] = ((A_dev, B_dev, to_torch(A_dev), to_torch(B_dev)), (A, B))
    return _data[case]


@pytest.mark.parametrize("contender", list(CONTENDERS))
@pytest.mark.parametrize("case", [pytest.param(c, id=f"{c.n_a}x{c.n_b}x{c.n_features}",
                                               marks=[pytest.mark.big] if c.big else []) for c in CASES])
def bench_cuda_pairwise_distances(benchmark, case, contender, name_contender):
    label, function, sync, note = CONTENDERS[contender]
    args, (A, B) = case_data(case)
    run = synced(function, sync)
    out = run(*args)  # untimed: compiles, warms the caches, checks
    assert tuple(out.shape) == (case.n_a, case.n_b)
    rows = slice(None) if not case.big else slice(0, 4)
    np.testing.assert_allclose(to_host(out[rows]), cdist(A[rows].astype(np.float64), B.astype(np.float64)),
                               rtol=1e-4, atol=1e-3)
    del out
    name_contender(case.group, label, note)
    benchmark(run, *args)
