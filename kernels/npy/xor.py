"""XOR network kernels (numpy reference); mirrors kernels/cpu/xor.py and kernels/cy/xor.pyx.

The 2-2-1 sigmoid network of the course, 9 weights laid out as
[b_h1, w(x1->h1), w(x2->h1), b_h2, w(x1->h2), w(x2->h2), b_out, w(h1->out), w(h2->out)],
the four XOR points in the order (0,0), (0,1), (1,0), (1,1) with targets 0, 1, 1, 0.

Random weights for the lazy search come from a counter-based generator, the same in every backend:
draw j of search i is a pure function of (seed, i, j), so no search depends on another or on the
thread that runs it. Its 9 normal(0, 1) weights come in 5 pairs from Marsaglia's polar method: attempt
a of pair p hashes the counter ((j * 5 + p) * 256 + a) with splitmix64 into two 32-bit uniforms
u, v in (-1, 1), rejected while u^2 + v^2 >= 1 (21% of attempts); see `_normal_weights` and
WEIGHT_OF_NORMAL.
"""

import math

import numpy as np

from fastdl.kernels.npy._hash import GOLDEN, mix64 as _mix64

TWO_POW_M31 = 2.0 ** -31
MAX_ATTEMPTS = 256  # attempts per pair in the counter: 0.215 ** 256 -- never reached
N_PAIRS = 5  # Box-Muller pairs per draw: 10 normals, the last one unused
# Normal n (2 * pair + {0: cos, 1: sin}) becomes weight WEIGHT_OF_NORMAL[n]: the weights the
# point (0, 0) needs (b_h1, b_h2, b_out, w(h1->out), w(h2->out)) come from the first 3 pairs,
# so the compiled kernels can reject most draws after hashing 3 of the 5 pairs.
WEIGHT_OF_NORMAL = (0, 3, 6, 7, 8, 1, 2, 4, 5)


def _stream_key(seed, search):
    with np.errstate(over="ignore"):
        return _mix64(_mix64(np.uint64(seed) ^ GOLDEN) + np.uint64(search) * GOLDEN)


def _normal_weights(key, draws):
    """(len(draws), 9) float64 weights of the given draw numbers of the stream `key`."""
    draws = np.asarray(draws, dtype=np.uint64)
    out = np.empty((draws.shape[0], 9))
    with np.errstate(over="ignore"):
        for pair in range(N_PAIRS):
            base = (draws * np.uint64(N_PAIRS) + np.uint64(pair)) * np.uint64(MAX_ATTEMPTS)
            factor = np.empty(draws.shape[0])
            u = np.empty(draws.shape[0])
            v = np.empty(draws.shape[0])
            todo = np.arange(draws.shape[0])
            for attempt in range(MAX_ATTEMPTS):
                h = _mix64(key + (base[todo] + np.uint64(attempt)) * GOLDEN)
                uu = ((h >> np.uint64(32)).astype(np.float64) + 0.5) * TWO_POW_M31 - 1.0
                vv = ((h & np.uint64(0xFFFFFFFF)).astype(np.float64) + 0.5) * TWO_POW_M31 - 1.0
                s = uu * uu + vv * vv
                accept = s < 1.0
                done = todo[accept]
                u[done] = uu[accept]
                v[done] = vv[accept]
                # libm's log, as the compiled kernels call it: numpy's SIMD log is not correctly
                # rounded (1 ulp off for 0.2-21% of values, by numpy version and CPU).
                logs = np.fromiter(map(math.log, s[accept].tolist()), np.float64, count=done.size)
                factor[done] = np.sqrt(-2.0 * logs / s[accept])
                todo = todo[~accept]
                if todo.size == 0:
                    break
            out[:, WEIGHT_OF_NORMAL[2 * pair]] = u * factor
            if 2 * pair + 1 < 9:
                out[:, WEIGHT_OF_NORMAL[2 * pair + 1]] = v * factor
    return out


def _solves(weights):
    """Boolean per row of (n, 9) weights: every XOR point on the right side of 0.5."""
    ok = np.ones(weights.shape[0], dtype=bool)
    for x1, x2, target in ((0.0, 0.0, 0), (0.0, 1.0, 1), (1.0, 0.0, 1), (1.0, 1.0, 0)):
        h1 = 1.0 / (1.0 + np.exp(-(weights[:, 0] + weights[:, 1] * x1 + weights[:, 2] * x2)))
        h2 = 1.0 / (1.0 + np.exp(-(weights[:, 3] + weights[:, 4] * x1 + weights[:, 5] * x2)))
        z = weights[:, 6] + weights[:, 7] * h1 + weights[:, 8] * h2
        # output > 0.5 exactly when its input z > 0 (the sigmoid is monotone, sigmoid(0) = 0.5)
        ok &= (z > 0.0) == bool(target)
    return ok


def normal_weights(seed, search, first_draw, out, n_threads):
    """Weights of draws first_draw .. first_draw + len(out) - 1 of search `search` into out (n, 9) float64."""
    draws = np.arange(first_draw, first_draw + out.shape[0], dtype=np.uint64)
    out[...] = _normal_weights(_stream_key(seed, search), draws)


def lazy_search(seed, out_draws, n_threads):
    """Search i = 0 .. len(out_draws) - 1: draws until its first XOR solution, into out_draws (int64)."""
    batch = 1 << 16
    for search in range(out_draws.shape[0]):
        key = _stream_key(seed, search)
        start = 0
        while True:
            hits = np.flatnonzero(_solves(_normal_weights(key, np.arange(start, start + batch, dtype=np.uint64))))
            if hits.size:
                out_draws[search] = start + hits[0] + 1
                break
            start += batch


def _forward(w):
    """Hidden activations and outputs at the four points, float64."""
    x1 = np.array([0.0, 0.0, 1.0, 1.0])
    x2 = np.array([0.0, 1.0, 0.0, 1.0])
    h1 = 1.0 / (1.0 + np.exp(-(w[0] + w[1] * x1 + w[2] * x2)))
    h2 = 1.0 / (1.0 + np.exp(-(w[3] + w[4] * x1 + w[5] * x2)))
    out = 1.0 / (1.0 + np.exp(-(w[6] + w[7] * h1 + w[8] * h2)))
    return x1, x2, h1, h2, out


def train_xor(weights, lr, out_mse, out_misclassified, n_threads):
    """Full-batch gradient descent from `weights` (9,) in place until no point is misclassified.

    State t (t = 1 is the initial one) is recorded in out_mse[t - 1] (mean squared error) and
    out_misclassified[t - 1]; training stops at the first state with no misclassified point or
    after len(out_mse) states. The step is lr times the gradient of half the mean squared error.
    Returns the number of states recorded. weights is float32 or float64 (the stored state);
    the arithmetic is float64.
    """
    target = np.array([0.0, 1.0, 1.0, 0.0])
    max_iter = out_mse.shape[0]
    w = weights.astype(np.float64)
    for t in range(max_iter):
        x1, x2, h1, h2, out = _forward(w)
        err = out - target
        out_mse[t] = np.dot(err, err) / 4.0
        wrong = int(np.count_nonzero((out > 0.5) != (target > 0.5)))
        out_misclassified[t] = wrong
        if wrong == 0 or t + 1 == max_iter:
            return t + 1
        d_out = err * out * (1.0 - out) / 4.0
        d_h1 = d_out * w[7] * h1 * (1.0 - h1)
        d_h2 = d_out * w[8] * h2 * (1.0 - h2)
        grad = np.array([
            d_h1.sum(), (d_h1 * x1).sum(), (d_h1 * x2).sum(),
            d_h2.sum(), (d_h2 * x1).sum(), (d_h2 * x2).sum(),
            d_out.sum(), (d_out * h1).sum(), (d_out * h2).sum(),
        ])
        weights[...] = w - lr * grad
        w = weights.astype(np.float64)  # the state lives in weights' dtype
    return max_iter
