"""Output-layer kernels (Cython): softmax, losses with their gradients, dropout.

Mirrors kernels/cpu/loss.py and kernels/npy/loss.py (see there for the layout). Each row is one
task; every loss is worked out in float64 and each row's written to row_loss, which the caller sums.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport copysign, exp, fabs, fmod, log, log1p
from libc.stdint cimport int64_t


cdef inline double _shift_and_sum(const floating* row, Py_ssize_t c, double* total) noexcept nogil:
    """The row's maximum, which softmax subtracts so that exp never overflows; the sum of
    exp(row - maximum) into total."""
    cdef double shift = row[0], acc = 0.0
    cdef Py_ssize_t j
    for j in range(1, c):
        if row[j] > shift:
            shift = row[j]
    for j in range(c):
        acc += exp(row[j] - shift)
    total[0] = acc
    return shift


def softmax(const floating[:, ::1] z, floating[:, ::1] out, int n_threads):
    """out (n, c) = softmax of each row of z (out may be z)."""
    cdef Py_ssize_t n = z.shape[0], c = z.shape[1], i, j
    cdef double shift, total
    if n == 0 or c == 0:
        return
    with nogil:
        for i in prange(n, num_threads=n_threads, schedule="static"):
            total = 0.0  # assigned here, so that prange makes it private to each thread
            shift = _shift_and_sum(&z[i, 0], c, &total)
            for j in range(c):
                out[i, j] = <floating>(exp(z[i, j] - shift) / total)


def softmax_backward(const floating[:, ::1] out, const floating[:, ::1] dout, floating[:, ::1] dpre, int n_threads):
    """dpre (n, c) = out * (dout - sum(dout * out)) row by row, from softmax's output `out`."""
    cdef Py_ssize_t n = out.shape[0], c = out.shape[1], i, j
    cdef double inner
    with nogil:
        for i in prange(n, num_threads=n_threads, schedule="static"):
            inner = 0.0
            for j in range(c):
                inner = inner + <double>dout[i, j] * <double>out[i, j]
            for j in range(c):
                dpre[i, j] = <floating>(<double>out[i, j] * (<double>dout[i, j] - inner))


def softmax_xent_codes(const floating[:, ::1] logits, const int64_t[::1] codes, double scale,
                       floating[:, ::1] grad, double[::1] row_loss, int n_threads):
    """Cross-entropy of softmax(logits) against class codes (n,) int64 (see kernels/npy/loss.py)."""
    cdef Py_ssize_t n = logits.shape[0], c = logits.shape[1], i, j, y
    cdef double shift, total, p
    if n == 0 or c == 0:
        return
    with nogil:
        for i in prange(n, num_threads=n_threads, schedule="static"):
            total = 0.0  # assigned here, so that prange makes it private to each thread
            shift = _shift_and_sum(&logits[i, 0], c, &total)
            y = codes[i]
            row_loss[i] = shift + log(total) - <double>logits[i, y]
            for j in range(c):
                p = exp(logits[i, j] - shift) / total
                grad[i, j] = <floating>(((p - 1.0) if j == y else p) * scale)


def softmax_xent_targets(const floating[:, ::1] logits, const double[:, ::1] targets, double scale,
                         floating[:, ::1] grad, double[::1] row_loss, int n_threads):
    """Cross-entropy of softmax(logits) against target distributions (n, c) float64."""
    cdef Py_ssize_t n = logits.shape[0], c = logits.shape[1], i, j
    cdef double shift, total, p, mass, dot
    if n == 0 or c == 0:
        return
    with nogil:
        for i in prange(n, num_threads=n_threads, schedule="static"):
            total = 0.0  # assigned here, so that prange makes it private to each thread
            shift = _shift_and_sum(&logits[i, 0], c, &total)
            mass = 0.0
            dot = 0.0
            for j in range(c):
                mass = mass + targets[i, j]
                dot = dot + targets[i, j] * <double>logits[i, j]
            row_loss[i] = mass * (shift + log(total)) - dot
            for j in range(c):
                p = exp(logits[i, j] - shift) / total
                grad[i, j] = <floating>((p * mass - targets[i, j]) * scale)


cdef inline double _mod(double a, double b) noexcept nogil:
    """a mod b with the sign of b > 0, as numpy's np.mod for floats."""
    cdef double r = fmod(a, b)
    if r < 0:
        r += b
    return r


def squared_error(const floating[:, ::1] y_pred, const double[:, ::1] y_true, double period, double scale,
                  floating[:, ::1] grad, double[::1] row_loss, int n_threads):
    """Squared error against y_true (n, m) float64, the short way round a circle when period > 0."""
    cdef Py_ssize_t n = y_pred.shape[0], m = y_pred.shape[1], i, j
    cdef double half = period / 2, error, total
    with nogil:
        for i in prange(n, num_threads=n_threads, schedule="static"):
            total = 0.0
            for j in range(m):
                error = <double>y_pred[i, j] - y_true[i, j]
                if period > 0:
                    # fmod first (exact), so error + half cannot round for huge errors (1e20 + 6 == 1e20)
                    error = _mod(fmod(error, period) + half, period) - half
                total = total + error * error
                grad[i, j] = <floating>(2.0 * error * scale)
            row_loss[i] = total


cdef extern from *:
    """
    /* a > b ? x : y as a select: GCC makes a branch of any conditional in absolute_error, which
       mispredicts between Huber's two parts (3-6x slower). NaN in a or b gives y. */
    #if defined(__SSE2__)
    #include <emmintrin.h>
    static inline double fastdl_select_gt(double a, double b, double x, double y) {
        __m128d take_x = _mm_cmpgt_sd(_mm_set_sd(a), _mm_set_sd(b));
        return _mm_cvtsd_f64(_mm_or_pd(_mm_and_pd(take_x, _mm_set_sd(x)), _mm_andnot_pd(take_x, _mm_set_sd(y))));
    }
    #else
    static inline double fastdl_select_gt(double a, double b, double x, double y) { return a > b ? x : y; }
    #endif
    """
    double fastdl_select_gt(double a, double b, double x, double y) noexcept nogil


def absolute_error(const floating[:, ::1] y_pred, const double[:, ::1] y_true, double period, double delta,
                   double scale, floating[:, ::1] grad, double[::1] row_loss, int n_threads):
    """Huber loss (delta > 0) or absolute error (delta == 0) against y_true (n, m) float64, the short
    way round a circle when period > 0 (see kernels/npy/loss.py)."""
    cdef Py_ssize_t n = y_pred.shape[0], m = y_pred.shape[1], i, j
    cdef bint huber = delta > 0
    cdef double half = period / 2, slope = delta if huber else 1.0
    cdef double error, size, part, weight, total
    with nogil:
        for i in prange(n, num_threads=n_threads, schedule="static"):
            total = 0.0
            for j in range(m):
                error = <double>y_pred[i, j] - y_true[i, j]
                if period > 0:
                    error = _mod(fmod(error, period) + half, period) - half
                size = fabs(error)
                # Huber's part (|e| - part / 2), part = min(|e|, delta); the absolute error's |e|
                # (part 0, weight 1).
                part = fastdl_select_gt(size, delta, delta, size)  # NaN stays NaN
                weight = part if huber else 1.0
                total = total + weight * (size - 0.5 * part)
                grad[i, j] = <floating>(copysign(fastdl_select_gt(size, delta, slope, part), error) * scale)
            row_loss[i] = total


def binary_xent_logits(const floating[:, ::1] logits, const double[:, ::1] y_true, double scale,
                       floating[:, ::1] grad, double[::1] row_loss, int n_threads):
    """Binary cross-entropy of sigmoid(logits) against y_true (n, m) float64 in [0, 1]."""
    cdef Py_ssize_t n = logits.shape[0], m = logits.shape[1], i, j
    cdef double z, y, e, total, sigmoid
    with nogil:
        for i in prange(n, num_threads=n_threads, schedule="static"):
            total = 0.0
            for j in range(m):
                z = logits[i, j]
                y = y_true[i, j]
                e = exp(-fabs(z))
                total = total + ((z if z > 0 else 0.0) - z * y + log1p(e))
                sigmoid = 1.0 / (1.0 + e) if z >= 0 else e / (1.0 + e)
                grad[i, j] = <floating>((sigmoid - y) * scale)
            row_loss[i] = total


def binary_xent(const floating[:, ::1] probs, const double[:, ::1] y_true, double low, double high,
                double scale, floating[:, ::1] grad, double[::1] row_loss, int n_threads):
    """Binary cross-entropy of probabilities, clipped to [low, high], against y_true (n, m) float64
    in [0, 1]; no gradient where the clip is active (see kernels/npy/loss.py)."""
    cdef Py_ssize_t n = probs.shape[0], m = probs.shape[1], i, j
    cdef double p, y, total, slope
    with nogil:
        for i in prange(n, num_threads=n_threads, schedule="static"):
            total = 0.0
            for j in range(m):
                p = probs[i, j]
                y = y_true[i, j]
                slope = 0.0  # where the clip is active the clipped loss is flat
                if p < low:  # not fmin/fmax: NaN stays NaN, as np.clip
                    p = low
                elif p > high:
                    p = high
                else:
                    slope = (p - y) / (p * (1.0 - p))
                total = total - (y * log(p) + (1.0 - y) * log1p(-p))
                grad[i, j] = <floating>(slope * scale)
            row_loss[i] = total


def dropout(const floating[:, ::1] x, const double[:, ::1] draws, double rate, floating kept_scale,
            floating[:, ::1] out, floating[:, ::1] mask, int n_threads):
    """mask = kept_scale where draws (n, m) float64 >= rate, else 0; out = x * mask (out may be x)."""
    cdef Py_ssize_t n = x.shape[0], m = x.shape[1], i, j
    cdef floating keep
    with nogil:
        for i in prange(n, num_threads=n_threads, schedule="static"):
            for j in range(m):
                keep = kept_scale if draws[i, j] >= rate else 0
                mask[i, j] = keep
                out[i, j] = x[i, j] * keep
