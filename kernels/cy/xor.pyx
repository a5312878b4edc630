"""XOR network kernels (Cython): gradient-descent training and the parallel lazy search.

Mirrors kernels/cpu/xor.py and kernels/npy/xor.py (see the latter for the network, the point
order and the counter-based generator of the lazy search's weights).
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport exp, fabs, log, sqrt
from libc.stdint cimport int64_t, uint64_t

cdef uint64_t GOLDEN = 0x9E3779B97F4A7C15ULL
cdef uint64_t MIX1 = 0xBF58476D1CE4E5B9ULL
cdef uint64_t MIX2 = 0x94D049BB133111EBULL
cdef uint64_t LOW32 = 0xFFFFFFFFULL
cdef uint64_t N_PAIRS = 5
cdef uint64_t MAX_ATTEMPTS = 256
cdef double TWO_POW_M31 = 4.656612873077393e-10  # 2 ** -31


cdef inline uint64_t _mix64(uint64_t z) noexcept nogil:
    """splitmix64's finaliser (uint64 arithmetic wraps)."""
    z = (z ^ (z >> 30)) * MIX1
    z = (z ^ (z >> 27)) * MIX2
    return z ^ (z >> 31)


cdef inline uint64_t _stream_key(uint64_t seed, uint64_t search) noexcept nogil:
    return _mix64(_mix64(seed ^ GOLDEN) + search * GOLDEN)


cdef inline double _polar_point(uint64_t key, uint64_t draw, uint64_t pair, double* u, double* v) noexcept nogil:
    """The accepted point (u, v) of the unit disc for pair `pair` of draw `draw`; returns s = u^2 + v^2."""
    cdef uint64_t base = (draw * N_PAIRS + pair) * MAX_ATTEMPTS
    cdef uint64_t attempt = 0, h
    cdef double s
    while True:
        h = _mix64(key + (base + attempt) * GOLDEN)
        u[0] = (<double>(h >> 32) + 0.5) * TWO_POW_M31 - 1.0
        v[0] = (<double>(h & LOW32) + 0.5) * TWO_POW_M31 - 1.0
        s = u[0] * u[0] + v[0] * v[0]
        if s < 1.0:
            return s
        attempt += 1


cdef inline double _polar_factor(double s) noexcept nogil:
    """The polar method's scale: (u, v) * factor are two independent normal(0, 1) values."""
    return sqrt(-2.0 * log(s) / s)


cdef inline void _normal_pair(uint64_t key, uint64_t draw, uint64_t pair, double* a, double* b) noexcept nogil:
    """Polar-method pair `pair` of draw `draw` of the stream `key` into a, b."""
    cdef double u, v
    cdef double factor = _polar_factor(_polar_point(key, draw, pair, &u, &v))
    a[0] = u * factor
    b[0] = v * factor


cdef inline double _sigmoid(double a) noexcept nogil:
    return 1.0 / (1.0 + exp(-a))


cdef inline bint _point_ok(const double* w, double x1, double x2, bint target) noexcept nogil:
    cdef double h1 = _sigmoid(w[0] + w[1] * x1 + w[2] * x2)
    cdef double h2 = _sigmoid(w[3] + w[4] * x1 + w[5] * x2)
    # output > 0.5 exactly when its input > 0 (the sigmoid is monotone, sigmoid(0) = 0.5)
    return (w[6] + w[7] * h1 + w[8] * h2 > 0.0) == target


def normal_weights(uint64_t seed, uint64_t search, uint64_t first_draw, double[:, ::1] out, int n_threads):
    """Weights of draws first_draw .. first_draw + len(out) - 1 of search `search` into out (n, 9) float64."""
    cdef uint64_t key = _stream_key(seed, search)
    cdef Py_ssize_t r
    cdef uint64_t draw
    cdef double unused
    with nogil:
        for r in prange(out.shape[0], num_threads=n_threads, schedule="static"):
            draw = first_draw + <uint64_t>r
            _normal_pair(key, draw, 0, &out[r, 0], &out[r, 3])
            _normal_pair(key, draw, 1, &out[r, 6], &out[r, 7])
            _normal_pair(key, draw, 2, &out[r, 8], &out[r, 1])
            _normal_pair(key, draw, 3, &out[r, 2], &out[r, 4])
            _normal_pair(key, draw, 4, &out[r, 5], &unused)


cdef int64_t _one_search(uint64_t key) noexcept nogil:
    """Draws of the stream `key` up to and including its first XOR solution."""
    cdef uint64_t draw = 0
    cdef double w[9]
    cdef double unused, h1, h2, u1, v1, s1, u2, v2, s2, factor
    while True:
        # The point (0, 0) needs 5 weights from 3 pairs; most draws fail it. Its output input
        # w6 + w7 * h1 + w8 * h2 (h in [0, 1]) is at least w6 + min(w7, 0) + min(w8, 0), also in
        # rounded arithmetic, so a positive bound rejects the draw before its hidden units.
        s1 = _polar_point(key, draw, 1, &u1, &v1)  # w6, w7 = (u1, v1) * factor1
        s2 = _polar_point(key, draw, 2, &u2, &v2)  # w8, w1 = (u2, v2) * factor2
        if u2 >= 0.0 and u1 + (v1 if v1 < 0.0 else 0.0) > 1e-9 * (fabs(u1) + fabs(v1)):
            # Then w8 >= 0 and the bound is factor1 * (u1 + min(v1, 0)), clearly positive: the
            # test below would reject too, so skip its two logarithms.
            draw += 1
            continue
        factor = _polar_factor(s1)
        w[6] = u1 * factor
        w[7] = v1 * factor
        factor = _polar_factor(s2)
        w[8] = u2 * factor
        w[1] = v2 * factor
        if w[6] + (w[7] if w[7] < 0.0 else 0.0) + (w[8] if w[8] < 0.0 else 0.0) > 0.0:
            draw += 1
            continue
        _normal_pair(key, draw, 0, &w[0], &w[3])
        h1 = _sigmoid(w[0])
        h2 = _sigmoid(w[3])
        if w[6] + w[7] * h1 + w[8] * h2 <= 0.0:
            _normal_pair(key, draw, 3, &w[2], &w[4])
            _normal_pair(key, draw, 4, &w[5], &unused)
            if (_point_ok(w, 1.0, 1.0, False) and _point_ok(w, 0.0, 1.0, True)
                    and _point_ok(w, 1.0, 0.0, True)):
                return <int64_t>draw + 1
        draw += 1


def lazy_search(uint64_t seed, int64_t[::1] out_draws, int n_threads):
    """Search i = 0 .. len(out_draws) - 1: draws until its first XOR solution, into out_draws (int64)."""
    cdef Py_ssize_t search
    with nogil:
        # Searches differ a lot in length (geometric): hand them out one at a time.
        for search in prange(out_draws.shape[0], num_threads=n_threads, schedule="dynamic", chunksize=1):
            out_draws[search] = _one_search(_stream_key(seed, <uint64_t>search))


def train_xor(floating[::1] weights, double lr, floating[::1] out_mse, int64_t[::1] out_misclassified, int n_threads):
    """Full-batch gradient descent from `weights` (9,) in place until no point is misclassified.

    State t (t = 1 is the initial one) goes to out_mse[t - 1] and out_misclassified[t - 1]; stops
    at the first state with no misclassified point or after len(out_mse) states; returns the
    number of states. One serial loop (four points: nothing worth a thread); n_threads is unused.
    """
    cdef Py_ssize_t max_iter = out_mse.shape[0], t, p, k
    cdef double w[9]
    cdef double g[9]
    cdef double x1, x2, target, h1, h2, out, err, sq, d_out, d_h1, d_h2
    cdef int64_t wrong
    cdef Py_ssize_t n_states = max_iter
    with nogil:
        for t in range(max_iter):
            # Weights live in weights' dtype (the state); the arithmetic is double.
            for k in range(9):
                w[k] = weights[k]
                g[k] = 0.0
            sq = 0.0
            wrong = 0
            for p in range(4):
                x1 = 1.0 if p >= 2 else 0.0
                x2 = 1.0 if p % 2 == 1 else 0.0
                target = 1.0 if p == 1 or p == 2 else 0.0
                h1 = _sigmoid(w[0] + w[1] * x1 + w[2] * x2)
                h2 = _sigmoid(w[3] + w[4] * x1 + w[5] * x2)
                out = _sigmoid(w[6] + w[7] * h1 + w[8] * h2)
                err = out - target
                sq = sq + err * err
                if (out > 0.5) != (target > 0.5):
                    wrong = wrong + 1
                d_out = err * out * (1.0 - out) / 4.0
                d_h1 = d_out * w[7] * h1 * (1.0 - h1)
                d_h2 = d_out * w[8] * h2 * (1.0 - h2)
                g[0] = g[0] + d_h1
                g[1] = g[1] + d_h1 * x1
                g[2] = g[2] + d_h1 * x2
                g[3] = g[3] + d_h2
                g[4] = g[4] + d_h2 * x1
                g[5] = g[5] + d_h2 * x2
                g[6] = g[6] + d_out
                g[7] = g[7] + d_out * h1
                g[8] = g[8] + d_out * h2
            out_mse[t] = <floating>(sq / 4.0)
            out_misclassified[t] = wrong
            if wrong == 0:
                n_states = t + 1
                break
            if t + 1 == max_iter:
                break
            for k in range(9):
                weights[k] = <floating>(w[k] - lr * g[k])
    return n_states
