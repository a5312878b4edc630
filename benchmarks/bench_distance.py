"""Pairwise Euclidean distances: fastdl's backends against numpy, scipy, scikit-learn, faiss, torch.

Each case is one pytest-benchmark group, so the table shows the contenders side by side. Every
contender returns the full (n, m) matrix of Euclidean (not squared) distances, checked against
float64 distances before anything is timed: on the small cases the whole result of one untimed
call, on the big case a call on A's first CHECKED_BIG_ROWS rows (and the same rows of the timed
result, after timing).
"""

from dataclasses import dataclass

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.metrics.pairwise import euclidean_distances

import fastdl.ops

from peers import FAISS_MISSING, TORCH_MISSING, faiss, torch

# At least 10 rounds (pytest-benchmark's default is 5): these cases take tens of ms and are noisy.
pytestmark = pytest.mark.benchmark(min_rounds=10)

SEED = 20240611
BIG_ROUNDS = 3  # the big case runs ~6 s per call on two cores: few rounds, one warm-up round
CHECKED_BIG_ROWS = 4  # rows of the big case's A checked (a whole check would cost minutes)


@dataclass(frozen=True)
class Case:
    n_a: int
    n_b: int
    n_features: int
    dtype: type
    big: bool = False

    @property
    def id(self):
        return f"{self.n_a}x{self.n_b}x{self.n_features}-{np.dtype(self.dtype).name}"

    @property
    def group(self):
        return (f"distance {self.n_a}x{self.n_features} vs {self.n_b}x{self.n_features} "
                f"{np.dtype(self.dtype).name}")


CASES = [
    # Small inputs, where fixed costs (checks, thread and BLAS set-up) are most of the time.
    Case(10, 10, 8, np.float64),
    Case(10, 10, 8, np.float32),
    Case(100, 100, 16, np.float64),
    Case(1000, 1707, 256, np.float64),
    Case(1000, 1707, 256, np.float32),
    Case(10000, 60000, 784, np.float32, big=True),
]


# Contenders: (A, B) -> (n_a, n_b) Euclidean distances ------------------------------------------


def numpy_broadcast(A, B):
    """Direct differences by broadcasting, in row chunks so the 3-D temporary stays ~16M entries."""
    out = np.empty((A.shape[0], B.shape[0]), dtype=np.result_type(A, B))
    step = max(1, (1 << 24) // max(B.size, 1))
    for start in range(0, A.shape[0], step):
        diff = A[start : start + step, None, :] - B[None, :, :]
        np.sqrt(np.einsum("ijk,ijk->ij", diff, diff), out=out[start : start + step])
    return out


def numpy_gemm(A, B):
    """|a|^2 + |b|^2 - 2 a.b with one BLAS GEMM, clipped at 0, all in place after the GEMM."""
    sq_a = np.einsum("ij,ij->i", A, A)
    sq_b = np.einsum("ij,ij->i", B, B)
    d2 = A @ B.T
    d2 *= -2
    d2 += sq_a[:, None]
    d2 += sq_b[None, :]
    np.maximum(d2, 0, out=d2)
    return np.sqrt(d2, out=d2)


def scipy_cdist(A, B):
    return cdist(A, B, "euclidean")


def sklearn_euclidean(A, B):
    return euclidean_distances(A, B)


def faiss_pairwise(A, B):
    """faiss.pairwise_distances (pairwise_L2sqr: BLAS sgemm + norms) gives squared L2; sqrt in place."""
    d2 = faiss.pairwise_distances(A, B)
    np.maximum(d2, 0, out=d2)
    return np.sqrt(d2, out=d2)


def torch_cdist(A, B):
    """torch.cdist on zero-copy tensors (its default mode uses a matmul for these sizes)."""
    return torch.cdist(torch.from_numpy(A), torch.from_numpy(B)).numpy()


def fastdl_distances(name):
    def run(A, B):
        return fastdl.ops.pairwise_distances(A, B, backend=name)

    return run


@dataclass(frozen=True)
class Contender:
    id: str
    label: str
    make: object  # () -> function (A, B) -> distances
    missing: str = None  # why it cannot run here (a peer not installed)
    small_only: bool = False
    float32_only: bool = False
    note: str = ""
    fastdl_backend: str = None


CONTENDERS = [
    Contender("fastdl-numba", "fastdl[numba]", lambda: fastdl_distances("numba"), fastdl_backend="numba"),
    Contender("fastdl-cython", "fastdl[cython]", lambda: fastdl_distances("cython"), fastdl_backend="cython"),
    Contender("fastdl-numpy", "fastdl[numpy]", lambda: fastdl_distances("numpy"), small_only=True,
              fastdl_backend="numpy"),
    Contender("numpy-broadcast", "numpy broadcasting (chunked)", lambda: numpy_broadcast, small_only=True),
    Contender("numpy-gemm", "numpy GEMM formula", lambda: numpy_gemm),
    Contender("scipy-cdist", "scipy cdist", lambda: scipy_cdist, small_only=True,
              note="float32 input -> float64 output"),
    Contender("sklearn", "sklearn euclidean_distances", lambda: sklearn_euclidean),
    Contender("faiss", "faiss pairwise_distances+sqrt", lambda: faiss_pairwise, missing=FAISS_MISSING,
              float32_only=True),
    Contender("torch", "torch.cdist", lambda: torch_cdist, missing=TORCH_MISSING),
]


def applies(case, contender):
    if case.big and contender.small_only:
        return False
    return not (contender.float32_only and case.dtype != np.float32)


PARAMS = [
    pytest.param(case, contender, id=f"{case.id}-{contender.id}",
                 marks=[pytest.mark.big] if case.big else [])
    for case in CASES
    for contender in CONTENDERS
    if applies(case, contender)
]

_data = {}
_big_reference = {}  # case -> float64 distances of its A's first CHECKED_BIG_ROWS rows


def case_data(case):
    """Random rows in [-1, 1] for `case` (one case cached at a time: the big one is ~220 MB)."""
    if case not in _data:
        _data.clear()
        rng = np.random.default_rng(SEED)
        A = rng.uniform(-1.0, 1.0, (case.n_a, case.n_features)).astype(case.dtype)
        B = rng.uniform(-1.0, 1.0, (case.n_b, case.n_features)).astype(case.dtype)
        _data[case] = (A, B)
    return _data[case]


def reference(A, B):
    """float64 distances computed directly."""
    return cdist(A.astype(np.float64), B.astype(np.float64))


def check(out, expected, dtype):
    assert out.shape == expected.shape
    if dtype == np.float32:
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-3)
    else:
        np.testing.assert_allclose(out, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("case", "contender"), PARAMS)
def bench_pairwise_distances(benchmark, case, contender, require_fastdl_backend, warm_fastdl, name_contender):
    if contender.missing:
        pytest.skip(contender.missing)
    if contender.fastdl_backend:
        require_fastdl_backend("distance", contender.fastdl_backend)
    name_contender(case.group, contender.label, contender.note)
    A, B = case_data(case)
    run = contender.make()
    if case.big:
        top = A[:CHECKED_BIG_ROWS]
        if case not in _big_reference:
            _big_reference.clear()
            _big_reference[case] = reference(top, B)
        expected = _big_reference[case]
        check(run(top, B), expected, case.dtype)  # a cheap call, before the ~6 s ones are timed
        out = benchmark.pedantic(run, args=(A, B), rounds=BIG_ROUNDS, iterations=1, warmup_rounds=1)
        assert out.shape == (A.shape[0], B.shape[0])
        check(out[:CHECKED_BIG_ROWS], expected, case.dtype)  # and the timed call's own rows
    else:
        # One untimed call: warms caches and lazy initialisation for every contender alike.
        check(run(A, B), reference(A, B), case.dtype)
        benchmark(run, A, B)
