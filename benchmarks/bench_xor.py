"""The XOR network: a full gradient-descent run and the lazy search.

Training: every contender runs the course's lr=0.8 setting (RandomState(42) normal weights) to
convergence, 2963 states = 2962 gradient steps; per-step time is the run's time / iterations (in
each contender's note). Contenders: fastdl's backends (numpy is the from-scratch numpy loop) and,
when installed, a PyTorch autograd loop of the same net (float64, MSE, SGD).

Lazy search: 40 independent searches (about 4.5 million candidate networks), draws per second in
the note; the target is 20 million per second on 2 cores.
"""

import numpy as np
import pytest

from fastdl import xor

from peers import TORCH_MISSING, torch

LR = 0.8
EXPECTED_ITERATIONS = 2963
TRAIN_GROUP = f"xor train lr={LR} to convergence ({EXPECTED_ITERATIONS} iterations)"
SEARCH_GROUP = "xor lazy search (40 successes, seed 0)"
N_SUCCESSES = 40
BACKENDS = ["numba", "cython", "numpy"]


def course_weights():
    return np.random.RandomState(42).normal(0, 1, 9)


@pytest.mark.parametrize("name", BACKENDS)
def test_train_xor(benchmark, name, require_fastdl_backend, name_contender):
    require_fastdl_backend("xor", name)
    w0 = course_weights()
    assert xor.train_xor(w0, LR, backend=name).n_iterations == EXPECTED_ITERATIONS  # warm up + check
    rounds = 3 if name == "numpy" else 50
    benchmark.pedantic(xor.train_xor, args=(w0, LR), kwargs={"backend": name}, rounds=rounds, iterations=1)
    name_contender(TRAIN_GROUP, f"fastdl[{name}]", lambda stats: f"{stats.mean / EXPECTED_ITERATIONS * 1e6:.3f} us/step")


def torch_train(w0, lr, device="cpu"):
    """The same 2-2-1 sigmoid net trained with autograd on `device`; returns the number of states
    (a host read per step, as the loop needs)."""
    w = torch.tensor(w0, dtype=torch.float64, device=device, requires_grad=True)
    x = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], dtype=torch.float64, device=device)
    y = torch.tensor([0.0, 1.0, 1.0, 0.0], dtype=torch.float64, device=device)
    optimizer = torch.optim.SGD([w], lr=lr)
    t = 1
    while True:
        h1 = torch.sigmoid(w[0] + w[1] * x[:, 0] + w[2] * x[:, 1])
        h2 = torch.sigmoid(w[3] + w[4] * x[:, 0] + w[5] * x[:, 1])
        out = torch.sigmoid(w[6] + w[7] * h1 + w[8] * h2)
        if int(((out > 0.5) != (y > 0.5)).sum()) == 0:
            return t
        loss = 0.5 * torch.mean((out - y) ** 2)  # half the MSE: the course's step
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        t += 1


def test_train_xor_torch(benchmark, name_contender):
    if torch is None:
        pytest.skip(TORCH_MISSING)
    w0 = course_weights()
    n = torch_train(w0, LR)
    assert abs(n - EXPECTED_ITERATIONS) <= 2, n
    benchmark.pedantic(torch_train, args=(w0, LR), rounds=3, iterations=1)
    name_contender(TRAIN_GROUP, "torch (autograd loop)", lambda stats: f"{stats.mean / n * 1e6:.1f} us/step")


@pytest.mark.parametrize("name", BACKENDS)
def test_lazy_search(benchmark, name, require_fastdl_backend, name_contender):
    require_fastdl_backend("xor", name)
    draws = xor.lazy_search(N_SUCCESSES, backend=name)  # warm up; same answer every round
    rounds = 1 if name == "numpy" else 5
    benchmark.pedantic(xor.lazy_search, args=(N_SUCCESSES,), kwargs={"backend": name}, rounds=rounds, iterations=1)
    name_contender(SEARCH_GROUP, f"fastdl[{name}]",
                   lambda stats: f"{draws.sum() / stats.mean / 1e6:.1f} M networks/s ({draws.sum():,} draws)")
