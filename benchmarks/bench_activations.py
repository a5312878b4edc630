"""Activations, float32, forward and backward over a layer's output of 128 x 4096 (a batch of a
wide dense layer, or 128 images of 8 x 8 x 64 channels): fastdl's in-place activation pass and
its gradient pass (from the output, or from the kept input for swish and gelu) against PyTorch's
functional activation and autograd backward.

Before torch is timed, fastdl (its numpy reference, which the tests hold every backend to) and
torch activate and differentiate the same array, untimed, and must agree to float32 accuracy.
"""

import numpy as np
import pytest

from fastdl.ops.dense import ACTIVATIONS, activation_grad_into, activation_into, needs_input
from peers import TORCH_MISSING, torch

pytestmark = pytest.mark.benchmark(min_rounds=5)

BACKENDS = ["numba", "cython"]
SHAPE = (128, 4096)
# fastdl's name -> torch.nn.functional's activation (Keras 3's definitions: gelu without the tanh
# approximation, hard_sigmoid as relu6(x + 3) / 6).
TORCH_NAMES = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "elu": "elu", "selu": "selu",
               "softplus": "softplus", "gelu": "gelu", "swish": "silu", "mish": "mish", "hard_swish": "hardswish"}


def _group(name):
    return f"activation {name} forward + backward, {SHAPE[0]}x{SHAPE[1]} float32"


def _data():
    rng = np.random.default_rng(11)
    return (rng.standard_normal(SHAPE, dtype=np.float32) * 3, rng.standard_normal(SHAPE, dtype=np.float32))


def _fastdl_step(name, backend):
    """fastdl's forward (into out, z kept where the gradient needs it) and backward, as a layer's."""
    z, dout = _data()
    code = ACTIVATIONS[name]
    out, dpre = np.empty_like(z), np.empty_like(z)
    pre = z if needs_input(code) else None

    def step():
        np.copyto(out, z)
        activation_into(out, code, backend)
        activation_grad_into(out, dout, code, dpre, backend, pre=pre)
        return out, dpre

    return step


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(TORCH_NAMES))
def bench_activation_fastdl(benchmark, name, backend, require_fastdl_backend, name_contender):
    require_fastdl_backend("dense", backend)
    step = _fastdl_step(name, backend)
    step()
    name_contender(_group(name), f"fastdl[{backend}]")
    benchmark.pedantic(step, rounds=30, iterations=1, warmup_rounds=2)


@pytest.mark.parametrize("name", list(TORCH_NAMES))
def bench_activation_torch(benchmark, name, name_contender, n_threads):
    if torch is None:
        pytest.skip(TORCH_MISSING)
    z_np, dout_np = _data()
    function = getattr(torch.nn.functional, TORCH_NAMES[name], None) or getattr(torch, TORCH_NAMES[name])
    z = torch.from_numpy(z_np).requires_grad_()
    dout = torch.from_numpy(dout_np)

    def step():
        z.grad = None
        out = function(z)
        out.backward(dout)
        return out, z.grad

    theirs_out, theirs_grad = (t.detach().numpy() for t in step())
    ours_out, ours_grad = _fastdl_step(name, "numpy")()
    np.testing.assert_allclose(ours_out, theirs_out, rtol=2e-6, atol=2e-6, err_msg=f"{name}: outputs disagree")
    np.testing.assert_allclose(ours_grad, theirs_grad, rtol=1e-4, atol=1e-5, err_msg=f"{name}: gradients disagree")
    # After fastdl's kernels ran: Numba's OpenMP threading layer, which torch shares, sets its own
    # thread count when it starts.
    torch.set_num_threads(n_threads)
    name_contender(_group(name), "torch functional + autograd")
    benchmark.pedantic(step, rounds=30, iterations=1, warmup_rounds=2)
