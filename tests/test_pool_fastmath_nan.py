"""Max pooling keeps NaN under FASTDL_FASTMATH=1 (max_pool2d_forward / _backward and conv's
bias_act_pool), and Adam takes a gradient whose square overflows without going NaN, on every CPU
backend, in float32 and float64.

fastmath lets LLVM assume there is no NaN, and it dropped the Numba kernels' `v != v` tests: a
window [1, nan, 3, 2] pooled to 3 and sent its gradient to the 3, unlike the Cython and numpy
kernels (nan, gradient to the NaN). The flag is read when a kernel module is imported, so the
kernels run in a child interpreter with FASTDL_FASTMATH=1 and a fresh Numba cache: this file run as
a script, writing what each backend got wrong to a JSON report.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# Four 2x2 windows side by side (an image of 2 x 8 pixels), cells in row-major window order, per
# channel: channel 0 a NaN in each cell in turn, channel 1 two NaNs (the first wins), no NaN,
# a tie (the first maximum wins) and -inf.
WINDOWS = [
    [[np.nan, 1, 3, 2], [1, np.nan, 3, 2], [1, 3, np.nan, 2], [3, 1, 2, np.nan]],
    [[1, np.nan, 4, np.nan], [4, 1, 2, 3], [1, 2, 4, 4], [-np.inf, -2, -1, -3]],
]
BIAS = [0.5, -1.25]  # exact in both dtypes


def _image(dtype):
    """x (1, 2, 8, 2) holding WINDOWS."""
    x = np.empty((1, 2, 8, len(WINDOWS)), dtype)
    for c, windows in enumerate(WINDOWS):
        for j, cells in enumerate(windows):
            x[0, :, 2 * j : 2 * j + 2, c] = np.reshape(cells, (2, 2))
    return x


def _winner(cells):
    """The first NaN of a window, or else its first maximum (np.argmax's rule)."""
    nans = [k for k, v in enumerate(cells) if v != v]
    return nans[0] if nans else int(np.argmax(cells))


def _check(backend, dtype, n_threads):
    """What `backend`'s kernels get wrong on WINDOWS: a list of messages."""
    from fastdl import backend as _backend

    pool, _ = _backend.kernels("pool", backend)
    conv, _ = _backend.kernels("conv", backend)
    x = _image(dtype)
    n_channels, n_windows = len(WINDOWS), len(WINDOWS[0])
    winners = np.array([[_winner(cells) for cells in windows] for windows in WINDOWS]).T  # (window, channel)
    maxima = np.array([[cells[k] for cells, k in zip(windows, winners[:, c])]
                       for c, windows in enumerate(WINDOWS)], dtype).T
    failures = []

    def expect(what, got, want):
        if not np.array_equal(got, want, equal_nan=True):
            failures.append(f"{what} (n_threads={n_threads}): got {got.tolist()}, want {want.tolist()}")

    out = np.full((1, 1, n_windows, n_channels), 7, dtype)
    pool.max_pool2d_forward(x, out, 2, 2, 2, 2, 0, 0, n_threads)
    expect("max_pool2d_forward", out[0, 0], maxima)

    dout = np.arange(1, out.size + 1, dtype=dtype).reshape(out.shape)
    dx = np.full(x.shape, 7, dtype)
    pool.max_pool2d_backward(x, dout, dx, 2, 2, 2, 2, 0, 0, n_threads)
    want_dx = np.zeros_like(x)
    for j in range(n_windows):
        for c in range(n_channels):
            k = winners[j, c]
            want_dx[0, k // 2, 2 * j + k % 2, c] = dout[0, 0, j, c]
    expect("max_pool2d_backward", dx, want_dx)

    block = np.ascontiguousarray(x.reshape(-1, n_channels))
    for bias in (np.empty(0, dtype), np.array(BIAS, dtype)):
        shifted = maxima + bias if bias.size else maxima
        for activation in (0, 1):
            pooled = np.full(out.shape, 7, dtype)
            code = np.full(out.shape, 7, np.int32)
            conv.bias_act_pool(block, bias, activation, 2, 8, 2, 2, pooled, code, n_threads)
            want, want_code = shifted.copy(), winners.astype(np.int32)
            if activation == 1:  # ReLU: NaN stays NaN; no gradient where it is 0 or NaN
                want_code[~(shifted > 0)] = -1
                want[shifted <= 0] = 0
            what = f"bias_act_pool(bias={bias.tolist()}, activation={activation})"
            expect(what, pooled[0, 0], want)
            expect(what + " code", code[0, 0], want_code)
    optim, _ = _backend.kernels("optim", backend)
    value, m, v = np.ones(4, dtype), np.zeros(4, dtype), np.zeros(4, dtype)
    grad = np.full(4, 3e19 if dtype == np.float32 else 1e155, dtype)  # its square overflows the dtype
    for _ in range(2):  # the second step would give inf - inf where the overflow branch were dropped
        optim.adam_step(value, grad, m, v, dtype(1e-3), dtype(0.1), dtype(0.001), dtype(1e-7), n_threads)
    if not (np.isfinite(value).all() and not np.isnan(v).any()):
        failures.append(f"adam_step of a gradient {grad[0]:g}: value {value.tolist()}, v {v.tolist()}")
    return failures


def _child(report_path):
    from fastdl import config

    assert config.numba_fastmath(), "the child must run with FASTDL_FASTMATH=1"
    report = {}
    for backend in ("numpy", "numba", "cython"):
        for dtype in (np.float32, np.float64):
            key = f"{backend}-{np.dtype(dtype).name}"
            try:
                # One thread: the serial variants (the parallel ones, built by the same call with
                # the same options, would triple the child's compile time).
                report[key] = _check(backend, dtype, 1)
            except Exception as error:  # an unavailable backend: the parent's fixture skips it
                report[key] = [f"{type(error).__name__}: {error}"]
    Path(report_path).write_text(json.dumps(report))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    path = tmp_path_factory.mktemp("pool_fastmath") / "report.json"
    env = dict(os.environ, FASTDL_FASTMATH="1", NUMBA_CACHE_DIR=str(path.parent / "numba-cache"))
    done = subprocess.run([sys.executable, __file__, str(path)], env=env, capture_output=True, text=True,
                          timeout=600, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0 and path.exists(), f"the child failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(path.read_text())


def test_max_pooling_keeps_nan_under_fastmath(report, backend, dtype):
    """The maximum of a window holding a NaN is NaN, its gradient and its bias_act_pool code go to
    the first NaN (code -1 after a ReLU), with FASTDL_FASTMATH=1 as without it."""
    failures = report[f"{backend}-{np.dtype(dtype).name}"]
    assert not failures, "\n".join(failures)


if __name__ == "__main__":
    _child(sys.argv[1])
