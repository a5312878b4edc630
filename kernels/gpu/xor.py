"""XOR network kernels (numba.cuda); mirrors kernels/cpu/xor.py, name for name and argument for argument.

See kernels/npy/xor.py for the network, the point order and the counter-based generator of the
lazy search's weights. Draw j of search i is a pure function of (seed, i, j), so one thread per
search (lazy_search) or per draw (normal_weights) hashes exactly the counters the CPU backends
hash and makes the same draws, with the same early rejections.

Float64 arithmetic runs in the CPU kernels' order. NVVM fuses a product and a sum it feeds into
one multiply-add, rounded once where the CPU kernels round twice, so every product whose value
reaches a sum goes through `_mul`, rounded on its own; exact products (by an input, 0 or 1, or by a
power of two) are left alone. What can still differ from the CPU is the last bit of an exp or a
log: libdevice's are within 1 ulp, not always the correctly rounded value of the C library.
"""

import math

import numba
import numpy as np
from numba import cuda

from ._hash import GOLDEN, counter_hash, mix64
from ._launch import grid_1d, kernel

LOW32 = np.uint64(0xFFFFFFFF)
N_PAIRS = np.uint64(5)
SHIFT32 = np.uint64(32)
TWO_POW_M31 = 2.0 ** -31
MAX_ATTEMPTS = np.uint64(256)

if numba.config.ENABLE_CUDASIM:  # the simulator's products are Python's: rounded on their own
    @cuda.jit(device=True)
    def _mul(a, b):
        return a * b
else:
    from numba.cuda.libdevice import dmul_rn as _mul


@cuda.jit(device=True)
def _stream_key(seed, search):
    return counter_hash(mix64(np.uint64(seed) ^ GOLDEN), np.uint64(search))


@cuda.jit(device=True)
def _polar_point(key, draw, pair):
    """The accepted point (u, v, s = u^2 + v^2) of the unit disc for pair `pair` of draw `draw`."""
    base = (draw * N_PAIRS + np.uint64(pair)) * MAX_ATTEMPTS
    attempt = np.uint64(0)
    while True:
        h = counter_hash(key, base + attempt)
        u = (np.float64(h >> SHIFT32) + 0.5) * TWO_POW_M31 - 1.0
        v = (np.float64(h & LOW32) + 0.5) * TWO_POW_M31 - 1.0
        s = _mul(u, u) + _mul(v, v)
        if s < 1.0:
            return u, v, s
        attempt += np.uint64(1)


@cuda.jit(device=True)
def _polar_factor(s):
    """The polar method's scale: (u, v) * factor are two independent normal(0, 1) values."""
    return math.sqrt(-2.0 * math.log(s) / s)


@cuda.jit(device=True)
def _normal_pair(key, draw, pair):
    """Polar-method pair `pair` of draw `draw` of the stream `key`."""
    u, v, s = _polar_point(key, draw, pair)
    factor = _polar_factor(s)
    return _mul(u, factor), _mul(v, factor)


@cuda.jit(device=True)
def _min_zero(x):
    """min(x, 0.0), written out: numba.cuda's min of two floats fails to compile in some versions."""
    return x if x < 0.0 else 0.0


@cuda.jit(device=True)
def _sigmoid(a):
    return 1.0 / (1.0 + math.exp(-a))


@cuda.jit(device=True)
def _point_ok(w0, w1, w2, w3, w4, w5, w6, w7, w8, x1, x2, target):
    h1 = _sigmoid(w0 + w1 * x1 + w2 * x2)
    h2 = _sigmoid(w3 + w4 * x1 + w5 * x2)
    # output > 0.5 exactly when its input > 0 (the sigmoid is monotone, sigmoid(0) = 0.5)
    return (w6 + _mul(w7, h1) + _mul(w8, h2) > 0.0) == target


@kernel
def _normal_weights(seed, search, first_draw, out):
    r = cuda.grid(1)
    if r < out.shape[0]:
        key = _stream_key(seed, search)
        draw = np.uint64(first_draw + r)
        out[r, 0], out[r, 3] = _normal_pair(key, draw, 0)
        out[r, 6], out[r, 7] = _normal_pair(key, draw, 1)
        out[r, 8], out[r, 1] = _normal_pair(key, draw, 2)
        out[r, 2], out[r, 4] = _normal_pair(key, draw, 3)
        out[r, 5], _ = _normal_pair(key, draw, 4)


def normal_weights(seed, search, first_draw, out, n_threads):
    """Weights of draws first_draw .. first_draw + len(out) - 1 of search `search` into out (n, 9) float64.

    One thread per draw; out is a device array; n_threads is unused.
    """
    if out.shape[0] > 0:
        # NumPy scalars: one compiled kernel for every seed (a Python int is typed int64 or uint64
        # by its size, and a kernel compiled for int64 could be picked for a seed of 2**63).
        _normal_weights[grid_1d(out.shape[0])](np.uint64(seed), np.uint64(search), np.int64(first_draw), out)


@cuda.jit(device=True)
def _one_search(key):
    """Draws of the stream `key` up to and including its first XOR solution."""
    draw = np.uint64(0)
    while True:
        # The point (0, 0) needs 5 weights from 3 pairs; most draws fail it. Its output input
        # w6 + w7 * h1 + w8 * h2 (h in [0, 1]) is at least w6 + min(w7, 0) + min(w8, 0), also in
        # rounded arithmetic, so a positive bound rejects the draw before its hidden units.
        u1, v1, s1 = _polar_point(key, draw, 1)  # w6, w7 = (u1, v1) * factor1
        u2, v2, s2 = _polar_point(key, draw, 2)  # w8, w1 = (u2, v2) * factor2
        if u2 >= 0.0 and u1 + _min_zero(v1) > 1e-9 * (abs(u1) + abs(v1)):
            # Then w8 >= 0 and the bound is factor1 * (u1 + min(v1, 0)), clearly positive: the
            # test below would reject too, so skip its two logarithms.
            draw += np.uint64(1)
            continue
        factor = _polar_factor(s1)
        w6, w7 = _mul(u1, factor), _mul(v1, factor)
        factor = _polar_factor(s2)
        w8, w1 = _mul(u2, factor), _mul(v2, factor)
        if w6 + _min_zero(w7) + _min_zero(w8) > 0.0:
            draw += np.uint64(1)
            continue
        w0, w3 = _normal_pair(key, draw, 0)
        h1 = _sigmoid(w0)
        h2 = _sigmoid(w3)
        if w6 + _mul(w7, h1) + _mul(w8, h2) <= 0.0:
            w2, w4 = _normal_pair(key, draw, 3)
            w5, _ = _normal_pair(key, draw, 4)
            if (_point_ok(w0, w1, w2, w3, w4, w5, w6, w7, w8, 1.0, 1.0, False)
                    and _point_ok(w0, w1, w2, w3, w4, w5, w6, w7, w8, 0.0, 1.0, True)
                    and _point_ok(w0, w1, w2, w3, w4, w5, w6, w7, w8, 1.0, 0.0, True)):
                return np.int64(draw) + 1
        draw += np.uint64(1)


@kernel
def _lazy_search(seed, out_draws):
    search = cuda.grid(1)
    if search < out_draws.shape[0]:
        out_draws[search] = _one_search(_stream_key(seed, search))


def lazy_search(seed, out_draws, n_threads):
    """Search i = 0 .. len(out_draws) - 1: draws until its first XOR solution, into out_draws (int64).

    One thread per search; out_draws is a device array; n_threads is unused.
    """
    _lazy_search[grid_1d(out_draws.shape[0])](np.uint64(seed), out_draws)


@kernel
def _train_xor(weights, lr, out_mse, out_misclassified, out_n_states):
    max_iter = out_mse.shape[0]
    # Weights live in weights' dtype (the state); the arithmetic is float64.
    for t in range(max_iter):
        w0 = np.float64(weights[0])
        w1 = np.float64(weights[1])
        w2 = np.float64(weights[2])
        w3 = np.float64(weights[3])
        w4 = np.float64(weights[4])
        w5 = np.float64(weights[5])
        w6 = np.float64(weights[6])
        w7 = np.float64(weights[7])
        w8 = np.float64(weights[8])
        sq = 0.0
        wrong = 0
        g0 = g1 = g2 = g3 = g4 = g5 = g6 = g7 = g8 = 0.0
        for p in range(4):
            x1 = 1.0 if p >= 2 else 0.0
            x2 = 1.0 if p % 2 == 1 else 0.0
            target = 1.0 if p == 1 or p == 2 else 0.0
            h1 = _sigmoid(w0 + w1 * x1 + w2 * x2)
            h2 = _sigmoid(w3 + w4 * x1 + w5 * x2)
            out = _sigmoid(w6 + _mul(w7, h1) + _mul(w8, h2))
            err = out - target
            sq += _mul(err, err)
            if (out > 0.5) != (target > 0.5):
                wrong += 1
            d_out = err * out * (1.0 - out) / 4.0
            d_h1 = _mul(d_out * w7 * h1, 1.0 - h1)
            d_h2 = _mul(d_out * w8 * h2, 1.0 - h2)
            g0 += d_h1
            g1 += d_h1 * x1
            g2 += d_h1 * x2
            g3 += d_h2
            g4 += d_h2 * x1
            g5 += d_h2 * x2
            g6 += d_out
            g7 += _mul(d_out, h1)
            g8 += _mul(d_out, h2)
        out_mse[t] = sq / 4.0
        out_misclassified[t] = wrong
        if wrong == 0 or t + 1 == max_iter:
            out_n_states[0] = t + 1
            return
        weights[0] = w0 - _mul(lr, g0)
        weights[1] = w1 - _mul(lr, g1)
        weights[2] = w2 - _mul(lr, g2)
        weights[3] = w3 - _mul(lr, g3)
        weights[4] = w4 - _mul(lr, g4)
        weights[5] = w5 - _mul(lr, g5)
        weights[6] = w6 - _mul(lr, g6)
        weights[7] = w7 - _mul(lr, g7)
        weights[8] = w8 - _mul(lr, g8)


def train_xor(weights, lr, out_mse, out_misclassified, n_threads):
    """Full-batch gradient descent from `weights` (9,) in place until no point is misclassified.

    State t (t = 1 is the initial one) goes to out_mse[t - 1] and out_misclassified[t - 1]; stops
    at the first state with no misclassified point or after len(out_mse) states; returns the
    number of states. The arrays are device arrays; n_threads is unused.

    One thread: step t + 1 starts from step t's weights, and a step is four points of a 9-weight
    network, far too little to share out, so the whole descent is one sequential loop on the
    device (as on the CPU), which keeps the state there and the arithmetic in the CPU's order. A
    kernel returns nothing, so the count comes back through a one-element device array.
    """
    n_states = cuda.device_array(1, dtype=np.int64)
    _train_xor[1, 1](weights, np.float64(lr), out_mse, out_misclassified, n_states)
    return int(n_states.copy_to_host()[0])
