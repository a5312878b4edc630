"""XOR network kernels (Numba): gradient-descent training and the parallel lazy search.

Mirrors kernels/cy/xor.pyx and kernels/npy/xor.py (see the latter for the network, the point
order and the counter-based generator of the lazy search's weights).
"""

import numba
import numpy as np
from numba import prange

from ._hash import GOLDEN, mix64 as _mix64
from ._jit import compile_kernel, helper, launch

_helper = helper()

LOW32 = np.uint64(0xFFFFFFFF)
N_PAIRS = np.uint64(5)
SHIFT32 = np.uint64(32)
TWO_POW_M31 = 2.0 ** -31
MAX_ATTEMPTS = np.uint64(256)


@_helper
def _stream_key(seed, search):
    return _mix64(_mix64(np.uint64(seed) ^ GOLDEN) + np.uint64(search) * GOLDEN)


@_helper
def _polar_point(key, draw, pair):
    """The accepted point (u, v, s = u^2 + v^2) of the unit disc for pair `pair` of draw `draw`."""
    base = (draw * N_PAIRS + np.uint64(pair)) * MAX_ATTEMPTS
    attempt = np.uint64(0)
    while True:
        h = _mix64(key + (base + attempt) * GOLDEN)
        u = (np.float64(h >> SHIFT32) + 0.5) * TWO_POW_M31 - 1.0
        v = (np.float64(h & LOW32) + 0.5) * TWO_POW_M31 - 1.0
        s = u * u + v * v
        if s < 1.0:
            return u, v, s
        attempt += np.uint64(1)


@_helper
def _polar_factor(s):
    """The polar method's scale: (u, v) * factor are two independent normal(0, 1) values."""
    return np.sqrt(-2.0 * np.log(s) / s)


@_helper
def _normal_pair(key, draw, pair):
    """Polar-method pair `pair` of draw `draw` of the stream `key`."""
    u, v, s = _polar_point(key, draw, pair)
    factor = _polar_factor(s)
    return u * factor, v * factor


@_helper
def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


@_helper
def _point_ok(w0, w1, w2, w3, w4, w5, w6, w7, w8, x1, x2, target):
    h1 = _sigmoid(w0 + w1 * x1 + w2 * x2)
    h2 = _sigmoid(w3 + w4 * x1 + w5 * x2)
    # output > 0.5 exactly when its input > 0 (the sigmoid is monotone, sigmoid(0) = 0.5)
    return (w6 + w7 * h1 + w8 * h2 > 0.0) == target


def _normal_weights(seed, search, first_draw, out):
    key = _stream_key(seed, search)
    for r in prange(out.shape[0]):
        draw = np.uint64(first_draw + r)
        out[r, 0], out[r, 3] = _normal_pair(key, draw, 0)
        out[r, 6], out[r, 7] = _normal_pair(key, draw, 1)
        out[r, 8], out[r, 1] = _normal_pair(key, draw, 2)
        out[r, 2], out[r, 4] = _normal_pair(key, draw, 3)
        out[r, 5], _ = _normal_pair(key, draw, 4)


_weights_serial = compile_kernel(_normal_weights)
_weights_parallel = compile_kernel(_normal_weights, parallel=True)


def normal_weights(seed, search, first_draw, out, n_threads):
    """Weights of draws first_draw .. first_draw + len(out) - 1 of search `search` into out (n, 9) float64."""
    launch(_weights_serial, _weights_parallel, n_threads, seed, search, first_draw, out)


@_helper
def _one_search(key):
    """Draws of the stream `key` up to and including its first XOR solution."""
    draw = np.uint64(0)
    while True:
        # The point (0, 0) needs 5 weights from 3 pairs; most draws fail it. Its output input
        # w6 + w7 * h1 + w8 * h2 (h in [0, 1]) is at least w6 + min(w7, 0) + min(w8, 0), also in
        # rounded arithmetic, so a positive bound rejects the draw before its hidden units.
        u1, v1, s1 = _polar_point(key, draw, 1)  # w6, w7 = (u1, v1) * factor1
        u2, v2, s2 = _polar_point(key, draw, 2)  # w8, w1 = (u2, v2) * factor2
        if u2 >= 0.0 and u1 + min(v1, 0.0) > 1e-9 * (abs(u1) + abs(v1)):
            # Then w8 >= 0 and the bound is factor1 * (u1 + min(v1, 0)), clearly positive: the
            # test below would reject too, so skip its two logarithms.
            draw += np.uint64(1)
            continue
        factor = _polar_factor(s1)
        w6, w7 = u1 * factor, v1 * factor
        factor = _polar_factor(s2)
        w8, w1 = u2 * factor, v2 * factor
        if w6 + min(w7, 0.0) + min(w8, 0.0) > 0.0:
            draw += np.uint64(1)
            continue
        w0, w3 = _normal_pair(key, draw, 0)
        h1 = _sigmoid(w0)
        h2 = _sigmoid(w3)
        if w6 + w7 * h1 + w8 * h2 <= 0.0:
            w2, w4 = _normal_pair(key, draw, 3)
            w5, _ = _normal_pair(key, draw, 4)
            if (_point_ok(w0, w1, w2, w3, w4, w5, w6, w7, w8, 1.0, 1.0, False)
                    and _point_ok(w0, w1, w2, w3, w4, w5, w6, w7, w8, 0.0, 1.0, True)
                    and _point_ok(w0, w1, w2, w3, w4, w5, w6, w7, w8, 1.0, 0.0, True)):
                return np.int64(draw) + 1
        draw += np.uint64(1)


def _lazy_search(seed, out_draws):
    for search in prange(out_draws.shape[0]):
        out_draws[search] = _one_search(_stream_key(seed, search))


_search_serial = compile_kernel(_lazy_search)
_search_parallel = compile_kernel(_lazy_search, parallel=True)


def lazy_search(seed, out_draws, n_threads):
    """Search i = 0 .. len(out_draws) - 1: draws until its first XOR solution, into out_draws (int64)."""
    if n_threads > 1:
        # Searches differ a lot in length (geometric): hand them out one at a time.
        with numba.parallel_chunksize(1):
            launch(_search_serial, _search_parallel, n_threads, seed, out_draws)
    else:
        launch(_search_serial, _search_parallel, n_threads, seed, out_draws)


def _train_xor(weights, lr, out_mse, out_misclassified):
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
            out = _sigmoid(w6 + w7 * h1 + w8 * h2)
            err = out - target
            sq += err * err
            if (out > 0.5) != (target > 0.5):
                wrong += 1
            d_out = err * out * (1.0 - out) / 4.0
            d_h1 = d_out * w7 * h1 * (1.0 - h1)
            d_h2 = d_out * w8 * h2 * (1.0 - h2)
            g0 += d_h1
            g1 += d_h1 * x1
            g2 += d_h1 * x2
            g3 += d_h2
            g4 += d_h2 * x1
            g5 += d_h2 * x2
            g6 += d_out
            g7 += d_out * h1
            g8 += d_out * h2
        out_mse[t] = sq / 4.0
        out_misclassified[t] = wrong
        if wrong == 0 or t + 1 == max_iter:
            return t + 1
        weights[0] = w0 - lr * g0
        weights[1] = w1 - lr * g1
        weights[2] = w2 - lr * g2
        weights[3] = w3 - lr * g3
        weights[4] = w4 - lr * g4
        weights[5] = w5 - lr * g5
        weights[6] = w6 - lr * g6
        weights[7] = w7 - lr * g7
        weights[8] = w8 - lr * g8
    return max_iter


_train_serial = compile_kernel(_train_xor)


def train_xor(weights, lr, out_mse, out_misclassified, n_threads):
    """Full-batch gradient descent from `weights` (9,) in place until no point is misclassified.

    State t (t = 1 is the initial one) goes to out_mse[t - 1] and out_misclassified[t - 1]; stops
    at the first state with no misclassified point or after len(out_mse) states; returns the
    number of states. One serial loop (four points: nothing worth a thread); n_threads is unused.
    """
    return _train_serial(weights, lr, out_mse, out_misclassified)
