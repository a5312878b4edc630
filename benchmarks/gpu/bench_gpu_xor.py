"""The XOR network on the GPU: lazy search, weight draws and gradient descent, fastdl's cuda backend
against PyTorch CUDA, CuPy and fastdl's CPU backends.

Lazy search (`xor.lazy_search(n, seed=0)`, one device thread per search): networks/s = the draws
of all searches / the time of a call, in each contender's extra_info["networks_per_s"] and note.
Its peers are the simple vectorised version: draw as many normal(0, 1) float64 networks as fastdl's
searches drew (torch.randn / CuPy's generator, 2**24 at a time, on the device) and test all four
XOR points on all of them, so every contender of a group handles the same number of networks. The
CPU backends (same draws as the device for the same seed, checked) run the 4096-search group only.
Target (issue 15): at least 3 G networks/s.

Weight draws (`xor.draw_weights`, answered in NumPy): 2**20 draws of 9 float64 weights copied to
the host, against torch.randn and CuPy's standard_normal on the device followed by the copy.

Gradient descent (`xor.train_xor`, lr=0.8, the course's weights, 2963 states): one sequential
device thread against the CPU backends and torch's autograd loop on CUDA (a few dozen kernel
launches and a host read per step: 1 round). CuPy has no autograd, so no CuPy contender here.
"""

import numpy as np
import pytest

import fastdl
from fastdl import xor

from bench_xor import EXPECTED_ITERATIONS, LR, course_weights, torch_train
from device_peers import cupy, cupy_sync, needs_device, synced, torch, torch_sync

pytestmark = needs_device

SEED = 0
CHECKED_SEARCHES = 64  # searches whose draw counts must equal a CPU backend's
CHUNK = 1 << 24  # networks per vectorised batch (9 x 2**24 float64 = 1.2 GB)
XOR_POINTS = ((0.0, 0.0, False), (1.0, 1.0, False), (0.0, 1.0, True), (1.0, 0.0, True))
CPU_BACKENDS = ["numba", "cython"]
N_DRAWS = 1 << 20


def search_group(n_searches):
    return f"cuda xor lazy search ({n_searches} searches, seed {SEED}; networks/s in the notes)"


SEARCH_SIZES = [pytest.param(4096, id="4096"), pytest.param(32768, id="32768", marks=pytest.mark.big)]
DRAW_GROUP = f"cuda xor draw_weights ({N_DRAWS} x 9 float64, answered on the host)"
TRAIN_GROUP = f"cuda xor train lr={LR} to convergence ({EXPECTED_ITERATIONS} states)"

_draws = {}


def search_draws(n_searches):
    """fastdl[cuda]'s draw counts for n_searches, its first searches checked against a CPU backend."""
    if n_searches not in _draws:
        draws = xor.lazy_search(n_searches, seed=SEED, backend="cuda")
        cpu = next((name for name in CPU_BACKENDS if fastdl.backend_status()[name][0]), "numpy")
        np.testing.assert_array_equal(draws[:CHECKED_SEARCHES],
                                      xor.lazy_search(CHECKED_SEARCHES, seed=SEED, backend=cpu),
                                      err_msg=f"cuda's draw counts differ from fastdl[{cpu}]'s")
        _draws[n_searches] = draws
    return _draws[n_searches]


def count_solutions(w, exp):
    """How many networks (columns of w, shape (9, n)) classify all four XOR points (a device scalar)."""
    solved = None
    for x1, x2, target in XOR_POINTS:
        a1, a2 = w[0], w[3]
        if x1:
            a1, a2 = a1 + w[1], a2 + w[4]
        if x2:
            a1, a2 = a1 + w[2], a2 + w[5]
        h1, h2 = 1.0 / (1.0 + exp(-a1)), 1.0 / (1.0 + exp(-a2))
        positive = w[6] + w[7] * h1 + w[8] * h2 > 0.0
        ok = positive if target else ~positive
        solved = ok if solved is None else solved & ok
    return solved.sum()


def vectorised_search(draw, exp):
    """(n_networks) -> solutions among n_networks drawn by draw(n) -> (9, n) on the device."""

    def run(n_networks):
        found = 0
        for start in range(0, n_networks, CHUNK):
            found = found + count_solutions(draw(min(CHUNK, n_networks - start)), exp)
        return int(found)

    return run


def torch_search():
    generator = torch.Generator(device="cuda")
    generator.manual_seed(SEED)
    draw = lambda n: torch.randn((9, n), dtype=torch.float64, device="cuda", generator=generator)  # noqa: E731
    return synced(vectorised_search(draw, torch.exp), torch_sync)


def cupy_search():
    generator = cupy.random.RandomState(SEED)
    draw = lambda n: generator.standard_normal((9, n), dtype=cupy.float64)  # noqa: E731
    return synced(vectorised_search(draw, cupy.exp), cupy_sync)


def report_rate(benchmark, name_contender, group, label, n_networks, note=""):
    """networks/s from the mean time into extra_info and the note (none under --benchmark-disable)."""
    stats = getattr(benchmark.stats, "stats", None)
    rate = n_networks / stats.mean if stats is not None else None
    benchmark.extra_info["networks_per_s"] = rate
    benchmark.extra_info["networks"] = int(n_networks)
    rate_text = f"{rate / 1e9:.3g} G networks/s" if rate is not None else "networks/s not timed"
    name_contender(group, label, f"{rate_text} ({n_networks:,} networks)" + (f", {note}" if note else ""))


@pytest.mark.parametrize("n_searches", SEARCH_SIZES)
@pytest.mark.parametrize("name", ["cuda", *CPU_BACKENDS])
def bench_lazy_search_fastdl(benchmark, name, n_searches, require_fastdl_backend, name_contender):
    require_fastdl_backend("xor", name)
    if name != "cuda" and n_searches > 4096:
        pytest.skip("the CPU backends run the 4096-search group only (this one takes them minutes)")
    total = int(search_draws(n_searches).sum())
    run = synced(lambda n: xor.lazy_search(n, seed=SEED, backend=name), cupy_sync)
    run(16)  # untimed: compiles and warms up
    rounds = 5 if name == "cuda" else 1
    benchmark.pedantic(run, args=(n_searches,), rounds=rounds, iterations=1)
    report_rate(benchmark, name_contender, search_group(n_searches), f"fastdl[{name}]", total)


@pytest.mark.parametrize("n_searches", SEARCH_SIZES)
@pytest.mark.parametrize("module", ["torch", "cupy"])
def bench_lazy_search_vectorised(benchmark, module, n_searches, name_contender):
    total = int(search_draws(n_searches).sum())
    run = torch_search() if module == "torch" else cupy_search()
    found = run(CHUNK)  # untimed: warms up; about 140 solutions per 2**24 networks
    assert 0 < found < CHUNK // 1000, found
    rounds = 3 if n_searches <= 4096 else 1
    benchmark.pedantic(run, args=(total,), rounds=rounds, iterations=1)
    report_rate(benchmark, name_contender, search_group(n_searches), f"{module} vectorised (same count)",
                total, "float64 draws, all four points tested")


@pytest.mark.parametrize("name", ["cuda", *CPU_BACKENDS])
def bench_draw_weights_fastdl(benchmark, name, require_fastdl_backend, name_contender):
    require_fastdl_backend("xor", name)
    run = synced(lambda: xor.draw_weights(N_DRAWS, seed=SEED, backend=name), cupy_sync)
    weights = run()
    assert weights.shape == (N_DRAWS, 9)
    if name == "cuda":  # the same draws as the CPU's (libdevice's exp and log: within an ulp or so)
        cpu = next((n for n in CPU_BACKENDS if fastdl.backend_status()[n][0]), "numpy")
        np.testing.assert_allclose(weights[:4096], xor.draw_weights(4096, seed=SEED, backend=cpu), rtol=1e-12)
    name_contender(DRAW_GROUP, f"fastdl[{name}]")
    benchmark(run)


def bench_draw_weights_torch(benchmark, name_contender):
    generator = torch.Generator(device="cuda")
    generator.manual_seed(SEED)
    run = synced(lambda: torch.randn((N_DRAWS, 9), dtype=torch.float64, device="cuda",
                                     generator=generator).cpu().numpy(), torch_sync)
    assert run().shape == (N_DRAWS, 9)
    name_contender(DRAW_GROUP, "torch.randn + copy to host")
    benchmark(run)


def bench_draw_weights_cupy(benchmark, name_contender):
    generator = cupy.random.RandomState(SEED)
    run = synced(lambda: cupy.asnumpy(generator.standard_normal((N_DRAWS, 9), dtype=cupy.float64)), cupy_sync)
    assert run().shape == (N_DRAWS, 9)
    name_contender(DRAW_GROUP, "cupy standard_normal + copy to host")
    benchmark(run)


@pytest.mark.parametrize("name", ["cuda", *CPU_BACKENDS])
def bench_train_xor_fastdl(benchmark, name, require_fastdl_backend, name_contender):
    require_fastdl_backend("xor", name)
    w0 = course_weights()
    run = synced(lambda: xor.train_xor(w0, LR, backend=name), cupy_sync)
    assert run().n_iterations == EXPECTED_ITERATIONS  # untimed: compiles and checks
    benchmark.pedantic(run, rounds=10, iterations=1)
    name_contender(TRAIN_GROUP, f"fastdl[{name}]", lambda stats: f"{stats.mean / EXPECTED_ITERATIONS * 1e6:.3f} us/step")


def bench_train_xor_torch(benchmark, name_contender):
    w0 = course_weights()
    run = synced(lambda: torch_train(w0, LR, "cuda"), torch_sync)
    n = run()
    assert abs(n - EXPECTED_ITERATIONS) <= 2, n
    benchmark.pedantic(run, rounds=1, iterations=1)
    name_contender(TRAIN_GROUP, "torch CUDA (autograd loop)", lambda stats: f"{stats.mean / n * 1e6:.1f} us/step")
