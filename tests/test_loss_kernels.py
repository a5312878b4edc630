"""The loss kernel family (softmax, the losses with their gradients, dropout) against float64 loops,
on every backend and both dtypes; the compiled backends give the same bits."""

import importlib
import math

import numpy as np
import pytest

from conftest import RTOL, ready_backends
from fastdl.backend import PACKAGES


def _kernels(backend):
    return importlib.import_module(f"{PACKAGES[backend]}.loss")


# Slow references: one value at a time, in float64 ----------------------------------------------


def _softmax_row(row):
    shift = max(row)
    exps = [math.exp(v - shift) for v in row]
    return [e / sum(exps) for e in exps], shift + math.log(sum(exps))


def naive_softmax(z):
    return np.array([_softmax_row(row)[0] for row in z.astype(float).tolist()]).reshape(z.shape)


def naive_softmax_backward(out, dout):
    result = np.zeros(out.shape)
    for i in range(out.shape[0]):
        inner = sum(float(dout[i, j]) * float(out[i, j]) for j in range(out.shape[1]))
        for j in range(out.shape[1]):
            result[i, j] = float(out[i, j]) * (float(dout[i, j]) - inner)
    return result


def naive_xent(logits, targets, scale):
    """targets: (n, c) distributions; returns (row losses, gradient)."""
    losses, grad = np.zeros(logits.shape[0]), np.zeros(logits.shape)
    for i, row in enumerate(logits.astype(float).tolist()):
        probs, lse = _softmax_row(row)
        mass = float(sum(targets[i]))
        losses[i] = sum(-t * (v - lse) for t, v in zip(targets[i], row))
        grad[i] = [(p * mass - t) * scale for p, t in zip(probs, targets[i])]
    return losses, grad


def naive_squared_error(y_pred, y_true, period, scale):
    losses, grad = np.zeros(y_pred.shape[0]), np.zeros(y_pred.shape)
    for i in range(y_pred.shape[0]):
        for j in range(y_pred.shape[1]):
            error = float(y_pred[i, j]) - y_true[i, j]
            if period > 0:
                error = (error + period / 2) % period - period / 2
            losses[i] += error * error
            grad[i, j] = 2 * error * scale
    return losses, grad


def naive_binary_xent_logits(logits, y_true, scale):
    losses, grad = np.zeros(logits.shape[0]), np.zeros(logits.shape)
    for i in range(logits.shape[0]):
        for j in range(logits.shape[1]):
            z, y = float(logits[i, j]), y_true[i, j]
            losses[i] += max(z, 0.0) - z * y + math.log1p(math.exp(-abs(z)))
            grad[i, j] = (1 / (1 + math.exp(-z)) - y) * scale
    return losses, grad


def naive_binary_xent(probs, y_true, low, high, scale):
    """Probabilities clipped to [low, high]; no gradient where the clip is active."""
    losses, grad = np.zeros(probs.shape[0]), np.zeros(probs.shape)
    for i in range(probs.shape[0]):
        for j in range(probs.shape[1]):
            p, y = min(max(float(probs[i, j]), low), high), y_true[i, j]
            losses[i] -= y * math.log(p) + (1 - y) * math.log(1 - p)
            inside = low <= float(probs[i, j]) <= high
            grad[i, j] = (p - y) / (p * (1 - p)) * scale if inside else 0.0
    return losses, grad


BOUNDS = (1e-7, 1 - 1e-7)  # Keras' clip of float64 probabilities


# Problems ------------------------------------------------------------------------------------------


def _logits(rng, dtype, n=9, c=6, spread=30.0):
    return (rng.standard_normal((n, c)) * spread).astype(dtype)


def _run(kernel, values, *args):
    """(row losses, gradient) from a loss kernel; args end with the scale."""
    grad = np.empty_like(values)
    row_loss = np.empty(values.shape[0])
    kernel(values, *args, grad, row_loss, 2)
    return row_loss, grad


def _check(got, want, dtype):
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12, atol=1e-12)  # the losses are float64
    np.testing.assert_allclose(got[1], want[1], rtol=RTOL[dtype], atol=RTOL[dtype])


def test_softmax_and_its_gradient(backend, dtype, rng):
    z = _logits(rng, dtype)
    out = np.empty_like(z)
    _kernels(backend).softmax(z, out, 2)
    np.testing.assert_allclose(out, naive_softmax(z), rtol=RTOL[dtype], atol=RTOL[dtype])
    np.testing.assert_allclose(out.sum(axis=1), 1, rtol=RTOL[dtype])
    dout = rng.standard_normal(z.shape).astype(dtype)
    dpre = np.empty_like(z)
    _kernels(backend).softmax_backward(out, dout, dpre, 2)
    np.testing.assert_allclose(dpre, naive_softmax_backward(out, dout), rtol=RTOL[dtype], atol=RTOL[dtype])
    # In place, as the activation layers may call it.
    _kernels(backend).softmax(z, z, 2)
    np.testing.assert_array_equal(z, out)


def test_softmax_xent_against_codes_and_targets(backend, dtype, rng):
    logits = _logits(rng, dtype)
    codes = rng.integers(0, logits.shape[1], logits.shape[0])
    onehot = np.eye(logits.shape[1])[codes]
    kernels = _kernels(backend)
    got = _run(kernels.softmax_xent_codes, logits, codes, 1 / 9)
    _check(got, naive_xent(logits, onehot, 1 / 9), dtype)
    soft = rng.random(logits.shape)  # not one-hot: sum(y) != 1
    _check(_run(kernels.softmax_xent_targets, logits, soft, 1 / 9), naive_xent(logits, soft, 1 / 9), dtype)
    _check(_run(kernels.softmax_xent_targets, logits, onehot, 1 / 9), got, dtype)


@pytest.mark.parametrize("period", [0.0, 12.0, 2 * math.pi])
def test_squared_error(backend, dtype, period, rng):
    y_pred = (rng.standard_normal((7, 3)) * 20).astype(dtype)
    y_true = rng.uniform(-5, 15, (7, 3))
    got = _run(_kernels(backend).squared_error, y_pred, y_true, period, 1 / 21)
    _check(got, naive_squared_error(y_pred, y_true, period, 1 / 21), dtype)
    if period:
        assert (np.abs(got[1] * 21 / 2) <= period / 2 * (1 + 1e-6)).all()  # the errors are wrapped


def test_binary_xent_logits(backend, dtype, rng):
    logits = _logits(rng, dtype, spread=10.0)
    y_true = rng.random(logits.shape)
    got = _run(_kernels(backend).binary_xent_logits, logits, y_true, 1 / logits.size)
    _check(got, naive_binary_xent_logits(logits, y_true, 1 / logits.size), dtype)


def test_binary_xent(backend, dtype, rng):
    """Probabilities, some at 0 and 1 exactly: clipped to [1e-7, 1 - 1e-7] as Keras."""
    probs = rng.random((9, 6)).astype(dtype)
    probs[0, :2], probs[1, :2] = 0, 1
    y_true = rng.random(probs.shape)
    got = _run(_kernels(backend).binary_xent, probs, y_true, *BOUNDS, 1 / probs.size)
    _check(got, naive_binary_xent(probs, y_true, *BOUNDS, 1 / probs.size), dtype)
    assert np.isfinite(got[1]).all()


def _check_float32_bounds(row_loss, grad):
    """The loss and gradient of _FLOAT32_CASE (see test_binary_xent_clips_at_the_bounds_it_is_given)."""
    low, high = _FLOAT32_BOUNDS
    np.testing.assert_allclose(row_loss, [2 * 23 * math.log(2) - 2 * math.log(low) + math.log(2)], rtol=1e-12)
    np.testing.assert_array_equal(grad[0, [0, 2]], 0)
    np.testing.assert_allclose(grad[0, [1, 3]], [1 / (1 - high), -1 / low], rtol=1e-6)


_FLOAT32_BOUNDS = (float(np.float32(1e-7)), 1 - 2.0**-23)  # Keras' clip of float32 probabilities
_FLOAT32_CASE = ([[1.0, 1 - 2.0**-23, 0.0, float(np.float32(1e-7)), 0.5]], [[0.0, 0.0, 1.0, 1.0, 1.0]])


def test_binary_xent_clips_at_the_bounds_it_is_given(backend, dtype):
    """The caller passes Keras' bounds as worked out in the outputs' dtype (float32: float32(1e-7)
    and 1 - 2**-23): at 1 the loss against 0 is -log(2**-23) = 15.94, not -log(1e-7) = 16.12, and
    the bound itself still has its gradient (the clip passes it where low <= p <= high)."""
    probs, y_true = np.array(_FLOAT32_CASE[0], dtype), np.array(_FLOAT32_CASE[1])
    _check_float32_bounds(*_run(_kernels(backend).binary_xent, probs, y_true, *_FLOAT32_BOUNDS, 1.0))


def test_binary_xent_on_cuda_clips_at_the_bounds_it_is_given(cuda_backend, dtype):
    from numba import cuda

    probs, y_true = np.array(_FLOAT32_CASE[0], dtype), np.array(_FLOAT32_CASE[1])
    grad_d, row_loss_d = cuda.device_array(probs.shape, dtype), cuda.device_array(1, np.float64)
    _kernels("cuda").binary_xent(cuda.to_device(probs), cuda.to_device(y_true), *_FLOAT32_BOUNDS, 1.0,
                                 grad_d, row_loss_d, 1)
    _check_float32_bounds(row_loss_d.copy_to_host(), grad_d.copy_to_host())


def test_binary_xent_has_no_gradient_where_clipped(backend, dtype):
    """Outputs of a last layer that is no sigmoid (below 0, above 1, or within 1e-7 of either): the
    clipped loss is flat there, so the gradient is 0 (as TensorFlow's clip_by_value), not ~1e7.
    Elsewhere the gradient is the slope of the kernel's own loss; NaN stays NaN."""
    probs = np.array([[-0.3, 1.7, 0.0, 1.0, 5e-8, 0.4], [2.0, -1e-3, 0.999, 0.02, 0.5, 0.9],
                      [np.nan, 0.5, 0.5, 0.5, 0.5, 0.5]], dtype)
    y_true = np.array([[1.0, 0.0, 1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.3, 0.0, 0.7, 1.0], [1.0] * 6])
    kernel = _kernels(backend).binary_xent
    row_loss, grad = _run(kernel, probs, y_true, *BOUNDS, 0.5)
    _check((row_loss[:2], grad[:2]), [a[:2] for a in naive_binary_xent(probs[:2], y_true[:2], *BOUNDS, 0.5)], dtype)
    np.testing.assert_array_equal(grad[:2] == 0, [[True] * 5 + [False], [True] * 2 + [False] * 4])
    assert np.isnan(grad[2, 0]) and np.isnan(row_loss[2])
    if dtype is np.float64:
        for i, j in [(0, 5), (1, 2), (1, 3), (1, 4)]:
            values = []
            for sign in (1, -1):
                shifted = probs.copy()
                shifted[i, j] += sign * 1e-7
                values.append(_run(kernel, shifted, y_true, *BOUNDS, 0.5)[0][i])
            np.testing.assert_allclose(grad[i, j], (values[0] - values[1]) / 2e-7 * 0.5, rtol=1e-6)


def test_binary_xent_on_cuda_has_no_gradient_where_clipped(cuda_backend, dtype):
    """The cuda kernel (on the simulator where no device is present) as the numpy reference."""
    from numba import cuda

    probs = np.array([[-0.3, 1.7, 0.0, 1.0, 5e-8, 0.4], [2.0, -1e-3, 0.999, 0.02, 0.5, 0.9]], dtype)
    y_true = np.array([[1.0, 0.0, 1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.3, 0.0, 0.7, 1.0]])
    grad_d, row_loss_d = cuda.device_array(probs.shape, dtype), cuda.device_array(2, np.float64)
    _kernels("cuda").binary_xent(cuda.to_device(probs), cuda.to_device(y_true), *BOUNDS, 0.5, grad_d, row_loss_d, 1)
    want = _run(_kernels("numpy").binary_xent, probs, y_true, *BOUNDS, 0.5)
    _check((row_loss_d.copy_to_host(), grad_d.copy_to_host()), want, dtype)
    np.testing.assert_array_equal(grad_d.copy_to_host()[:, :5] == 0, [[True] * 5, [True, True, False, False, False]])


def test_extreme_logits_stay_finite(backend, dtype):
    """exp only ever sees numbers <= 0: no overflow, no NaN, at +-1e4 in either dtype."""
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]], dtype=dtype)
    kernels = _kernels(backend)
    row_loss, grad = _run(kernels.softmax_xent_codes, logits, np.array([0, 0]), 0.5)
    np.testing.assert_allclose(row_loss, [0.0, 2e4])
    np.testing.assert_allclose(grad, [[0, 0, 0], [-0.5, 0.5, 0]], atol=1e-12)
    row_loss, grad = _run(kernels.binary_xent_logits, logits, np.ones((2, 3)), 1.0)
    np.testing.assert_allclose(row_loss, [1e4 + math.log(2), 1e4 + math.log(2)])
    assert np.isfinite(grad).all()


# Rows whose maximum (1e4: exp of it overflows even float64) is in the last column, in column 0,
# everywhere at once, or tied between the last two; a row of huge negatives (exp underflows).
EXTREME_LOGITS = [[0.0, -5.0, 1e4], [1e4, 3.0, -2.0], [1e4, 1e4, 1e4], [2.0, 1e4, 1e4], [-1e4, -1e4, 5.0 - 1e4]]


def _check_extreme_logits(run, dtype, rng):
    """run(name, values, *args): softmax's output, or a loss kernel's (row losses, gradient)."""
    logits = np.array(EXTREME_LOGITS, dtype=dtype)
    out = run("softmax", logits)
    assert out.dtype == dtype and np.isfinite(out).all()
    np.testing.assert_allclose(out, naive_softmax(logits), rtol=RTOL[dtype], atol=RTOL[dtype])
    codes = np.array([2, 1, 0, 0, 2])  # the maximum's column, and away from it
    soft = rng.random(logits.shape)
    for got, want in [
        (run("softmax_xent_codes", logits, codes, 0.2), naive_xent(logits, np.eye(3)[codes], 0.2)),
        (run("softmax_xent_targets", logits, soft, 0.2), naive_xent(logits, soft, 0.2)),
    ]:
        assert np.isfinite(got[0]).all() and np.isfinite(got[1]).all()
        # Losses of order 1 from terms of order 1e4: a float64 rounding of 1e4 is 2e-12.
        np.testing.assert_allclose(got[0], want[0], rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(got[1], want[1], rtol=RTOL[dtype], atol=RTOL[dtype])


def test_extreme_logits_in_any_column_match_the_reference(backend, dtype, rng):
    """The shift by the row maximum looks at every column, the first and the last included:
    softmax and both cross-entropies stay finite and equal the float64 references."""
    kernels = _kernels(backend)

    def run(name, values, *args):
        if name == "softmax":
            out = np.empty_like(values)
            kernels.softmax(values, out, 2)
            return out
        return _run(getattr(kernels, name), values, *args)

    _check_extreme_logits(run, dtype, rng)


def test_extreme_logits_on_cuda_match_the_reference(cuda_backend, dtype, rng):
    from numba import cuda

    kernels = _kernels("cuda")

    def run(name, values, *args):
        values_d = cuda.to_device(values)
        if name == "softmax":
            out_d = cuda.device_array(values.shape, values.dtype)
            kernels.softmax(values_d, out_d, 1)
            return out_d.copy_to_host()
        grad_d, row_loss_d = cuda.device_array(values.shape, values.dtype), cuda.device_array(values.shape[0])
        kernels_args = [cuda.to_device(a) if isinstance(a, np.ndarray) else a for a in args]
        getattr(kernels, name)(values_d, *kernels_args, grad_d, row_loss_d, 1)
        return row_loss_d.copy_to_host(), grad_d.copy_to_host()

    _check_extreme_logits(run, dtype, rng)


def test_dropout_mask(backend, dtype, rng):
    x = rng.standard_normal((6, 7)).astype(dtype)
    draws = rng.random(x.shape)
    kept = dtype(1) / dtype(1 - 0.3)
    out, mask = np.empty_like(x), np.empty_like(x)
    _kernels(backend).dropout(x, draws, 0.3, kept, out, mask, 2)
    expected_mask = np.where(draws >= 0.3, kept, dtype(0))
    np.testing.assert_array_equal(mask, expected_mask)
    np.testing.assert_array_equal(out, x * expected_mask)
    _kernels(backend).dropout(x, draws, 0.3, kept, x, mask, 2)  # in place
    np.testing.assert_array_equal(x, out)


def test_empty_batches(backend, dtype):
    kernels = _kernels(backend)
    for shape in [(0, 4), (3, 0)]:
        z = np.empty(shape, dtype)
        kernels.softmax(z, np.empty_like(z), 2)
        kernels.softmax_xent_codes(z, np.zeros(shape[0], np.int64), 1.0, np.empty_like(z), np.empty(shape[0]), 2)


def test_compiled_backends_give_the_same_bits(dtype):
    results = {}
    for backend in ready_backends():
        rng = np.random.default_rng(3)
        kernels = _kernels(backend)
        logits = _logits(rng, dtype, n=33, c=10)
        codes = rng.integers(0, 10, 33)
        soft = rng.random(logits.shape)
        for threads in (1, 2):
            out = np.empty_like(logits)
            kernels.softmax(logits, out, threads)
            arrays = [out]
            for name, args in [("softmax_xent_codes", (codes, 0.1)), ("softmax_xent_targets", (soft, 0.1)),
                               ("squared_error", (soft, 1.5, 0.1)), ("binary_xent_logits", (soft, 0.1)),
                               ("binary_xent", (soft, *BOUNDS, 0.1))]:
                grad = np.empty_like(logits)
                row_loss = np.empty(33)
                getattr(kernels, name)(logits, *args, grad, row_loss, threads)
                arrays += [grad, row_loss]
            if backend in results:
                for got, want in zip(arrays, results[backend]):
                    np.testing.assert_array_equal(got, want, err_msg=f"{backend}, {threads} threads")
            results[backend] = arrays
    if "numba" in results and "cython" in results:
        for got, want in zip(results["numba"], results["cython"]):
            np.testing.assert_array_equal(got, want)
