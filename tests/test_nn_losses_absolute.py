"""The absolute-error losses (MeanAbsoluteError, CyclicMAE, Huber) and their kernel absolute_error:
against a float64 loop, on every backend and both dtypes; the compiled backends give the same bits;
the gradient against finite differences; the kinks (e == 0, |e| == delta), the wrap round a circle,
bad arguments, and a model trained on them."""

import importlib
import math

import numpy as np
import pytest

from conftest import RTOL, ready_backends
from fastdl import nn
from fastdl.backend import PACKAGES
from fastdl.nn.losses import LOSSES, CyclicMAE, CyclicMSE, Huber, MeanAbsoluteError, get_loss


def _kernels(backend):
    return importlib.import_module(f"{PACKAGES[backend]}.loss")


def naive_absolute_error(y_pred, y_true, period, delta, scale):
    """(row losses, gradient), one value at a time in float64, from Keras' definitions: |e| and
    sign(e) (sign(0) = 0) for delta 0; Huber's 0.5 e^2 where |e| <= delta, else delta (|e| - delta / 2),
    and its slope, for delta > 0."""
    losses, grad = np.zeros(y_pred.shape[0]), np.zeros(y_pred.shape)
    for i in range(y_pred.shape[0]):
        for j in range(y_pred.shape[1]):
            e = float(y_pred[i, j]) - float(y_true[i, j])
            if period > 0:
                e = (e + period / 2) % period - period / 2
            sign = (e > 0) - (e < 0)
            if delta == 0:
                losses[i] += abs(e)
                grad[i, j] = sign * scale
            elif abs(e) <= delta:
                losses[i] += 0.5 * e * e
                grad[i, j] = e * scale
            else:
                losses[i] += delta * (abs(e) - 0.5 * delta)
                grad[i, j] = delta * sign * scale
    return losses, grad


def _run(kernel, values, *args, threads=2):
    """(row losses, gradient) from a loss kernel; args end with the scale."""
    grad = np.empty_like(values)
    row_loss = np.empty(values.shape[0])
    kernel(values, *args, grad, row_loss, threads)
    return row_loss, grad


# -- the kernel -------------------------------------------------------------------------------------


@pytest.mark.parametrize("period", [0.0, 12.0, 2 * math.pi])
@pytest.mark.parametrize("delta", [0.0, 1.0, 7.5])
def test_absolute_error_kernel(backend, dtype, period, delta, rng):
    y_pred = (rng.standard_normal((7, 3)) * 20).astype(dtype)
    y_true = rng.uniform(-5, 15, (7, 3))
    y_pred[0, 0] = y_true[0, 0] = 2.0  # e == 0
    got = _run(_kernels(backend).absolute_error, y_pred, y_true, period, delta, 1 / 21)
    want = naive_absolute_error(y_pred, y_true, period, delta, 1 / 21)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12, atol=1e-12)  # the losses are float64
    np.testing.assert_allclose(got[1], want[1], rtol=RTOL[dtype], atol=RTOL[dtype])
    assert got[1][0, 0] == 0
    if delta == 0:  # the absolute error's gradient is sign(e) * scale, exactly
        np.testing.assert_array_equal(np.abs(got[1][1:]), dtype(1 / 21))


def test_compiled_backends_give_the_same_bits(dtype):
    """As squared_error: each backend the same bits on 1 and 2 threads; Numba and Cython alike."""
    results = {}
    for backend in ready_backends():
        rng = np.random.default_rng(3)
        y_pred = (rng.standard_normal((33, 10)) * 10).astype(dtype)
        y_true = rng.standard_normal((33, 10)) * 10
        for threads in (1, 2):
            arrays = []
            for period, delta in [(0.0, 0.0), (0.0, 1.5), (12.0, 0.0), (2 * math.pi, 0.7)]:
                arrays += _run(_kernels(backend).absolute_error, y_pred, y_true, period, delta, 0.1, threads=threads)
            if backend in results:
                for got, want in zip(arrays, results[backend]):
                    np.testing.assert_array_equal(got, want, err_msg=f"{backend}, {threads} threads")
            results[backend] = arrays
    if "numba" in results and "cython" in results:
        for got, want in zip(results["numba"], results["cython"]):
            np.testing.assert_array_equal(got, want)


def test_nan_stays_nan_and_empty_batches(backend, dtype):
    kernels = _kernels(backend)
    for delta in (0.0, 1.0):
        row_loss, grad = _run(kernels.absolute_error, np.array([[np.nan, 3.0]], dtype), np.zeros((1, 2)), 0.0,
                              delta, 1.0)
        assert np.isnan(row_loss[0]) and np.isnan(grad[0, 0]) and grad[0, 1] == (delta or 1.0)
    for shape in [(0, 4), (3, 0)]:
        row_loss, _ = _run(kernels.absolute_error, np.empty(shape, dtype), np.empty(shape), 0.0, 1.0, 1.0)
        np.testing.assert_array_equal(row_loss, np.zeros(shape[0]))


# -- the losses -----------------------------------------------------------------------------------

LOSS_MAKERS = {
    "mae": lambda: MeanAbsoluteError(),
    "huber": lambda: Huber(),
    "huber_0.3": lambda: Huber(0.3),
    "cyclic_mae": lambda: CyclicMAE(12),
    "cyclic_huber": lambda: Huber(2.0, period=12),
}


def _loss(key, backend):
    loss = LOSS_MAKERS[key]()
    loss.backend = backend
    return loss


def _reference_mean(loss, y_pred, y_true):
    losses, grad = naive_absolute_error(y_pred, y_true, loss.period, loss.delta, 1 / y_pred.size)
    return losses.sum() / y_pred.size, grad


@pytest.mark.parametrize("key", LOSS_MAKERS)
def test_loss_value_and_gradient(key, backend, dtype, rng):
    loss = _loss(key, backend)
    y_true = rng.uniform(0, 12, (6, 2))
    y_pred = (y_true + rng.uniform(-8, 8, (6, 2))).astype(dtype)
    value = loss(y_true, y_pred)
    want_value, want_grad = _reference_mean(loss, y_pred, y_true)
    assert value == pytest.approx(want_value, rel=1e-12)
    grad = loss.backward()
    assert grad.shape == y_pred.shape and grad.dtype == dtype
    np.testing.assert_allclose(grad, want_grad, rtol=RTOL[dtype], atol=RTOL[dtype])


@pytest.mark.parametrize("key", LOSS_MAKERS)
def test_gradient_matches_finite_differences(key, backend, rng):
    """float64, errors kept 0.05 or more from the kinks (0, +-delta, the antipode period / 2)."""
    loss = _loss(key, backend)
    y_true = rng.uniform(0, 12, (4, 3))
    offsets = rng.choice([-1, 1], (4, 3)) * rng.uniform(0.1, 5.0, (4, 3))
    offsets[np.abs(np.abs(offsets) - loss.delta) < 0.05] += 0.1
    y_pred = y_true + offsets
    loss(y_true, y_pred)
    grad = loss.backward().copy()
    step = 1e-6
    numeric = np.zeros_like(y_pred)
    for index in np.ndindex(y_pred.shape):
        up, down = y_pred.copy(), y_pred.copy()
        up[index] += step
        down[index] -= step
        numeric[index] = (loss(y_true, up) - loss(y_true, down)) / (2 * step)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


def test_ties_at_zero_and_at_delta(backend, dtype):
    """e == 0: loss 0, gradient 0 (TF's sign(0) = 0); |e| == delta: Keras' square, 0.5 delta^2,
    whose slope e meets the straight part's +-delta."""
    y_true = np.array([[1.0, 1.0, 1.0, 1.0]])
    y_pred = np.array([[1.0, 2.5, -0.5, 1.0]], dtype)  # e = 0, 1.5, -1.5, 0
    mae, huber = _loss("mae", backend), Huber(1.5)
    huber.backend = backend
    assert mae(y_true, y_pred) == 3.0 / 4
    np.testing.assert_array_equal(mae.backward(), np.array([[0, 0.25, -0.25, 0]], dtype))
    assert huber(y_true, y_pred) == 2 * 0.5 * 1.5 ** 2 / 4
    np.testing.assert_array_equal(huber.backward(), np.array([[0, 1.5 / 4, -1.5 / 4, 0]], dtype))


def test_cyclic_wrap(backend, dtype):
    """11:30 for 0:30 is an hour off: the course's "common sense" error; and the huge errors
    CyclicMSE wraps exactly (fmod first)."""
    mae = _loss("cyclic_mae", backend)
    assert mae([[0.5], [3.0]], np.array([[11.5], [2.0]], dtype)) == 1.0
    np.testing.assert_array_equal(mae.backward(), np.array([[-0.5], [-0.5]], dtype))
    huber = Huber(0.5, period=12)
    huber.backend = backend
    assert huber([[0.5]], np.array([[11.5]], dtype)) == 0.5 * (1.0 - 0.25)
    assert huber.backward()[0, 0] == -0.5
    for error in (1e20, -3e38):
        y_pred = np.array([[error]], dtype)
        wrapped = math.remainder(float(y_pred[0, 0]), 12)  # exact, in [-6, 6]
        assert mae(np.zeros((1, 1)), y_pred) == abs(wrapped)
        assert mae.backward()[0, 0] == math.copysign(1, wrapped)


def test_cyclic_mae_is_the_common_sense_error_and_huber_halves_mse_inside_delta(backend, rng):
    y_true = rng.uniform(0, 12, (9, 1))
    y_pred = rng.uniform(0, 12, (9, 1))
    common_sense = np.minimum(np.abs(y_pred - y_true), 12 - np.abs(y_pred - y_true)).mean()
    assert _loss("cyclic_mae", backend)(y_true, y_pred) == pytest.approx(common_sense, rel=1e-12)
    wide = Huber(6.0, period=12)  # every wrapped error is within delta: half the cyclic MSE
    wide.backend = backend
    mse = CyclicMSE(12)
    mse.backend = backend
    assert wide(y_true, y_pred) == pytest.approx(mse(y_true, y_pred) / 2, rel=1e-12)
    np.testing.assert_allclose(wide.backward(), mse.backward() / 2, rtol=1e-12)


def test_against_torch(backend):
    """PyTorch's l1_loss and huber_loss have Keras' definitions (and sign(0) = 0 as gradient)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    y_true = rng.standard_normal((5, 3)) * 3
    y_pred = y_true + rng.standard_normal((5, 3)) * 3
    y_pred[0, 0] = y_true[0, 0]
    for loss, function in [(MeanAbsoluteError(), torch.nn.functional.l1_loss),
                           (Huber(1.3), lambda a, b: torch.nn.functional.huber_loss(a, b, delta=1.3))]:
        loss.backend = backend
        value = loss(y_true, y_pred)
        pred = torch.tensor(y_pred, requires_grad=True)
        expected = function(pred, torch.tensor(y_true))
        expected.backward()
        assert value == pytest.approx(expected.item(), rel=1e-12)
        np.testing.assert_allclose(loss.backward(), pred.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_one_dimensional_outputs_and_targets_that_do_not_fit(backend, dtype):
    y_true = np.array([0.0, 1, 2, 3, 4])
    y_pred = np.array([0.2, 0.9, 3.6, 3.4, 0.7], dtype)
    for key in LOSS_MAKERS:
        flat, column = _loss(key, backend), _loss(key, backend)
        assert flat(y_true, y_pred) == column(y_true[:, None], y_pred[:, None])
        np.testing.assert_array_equal(flat.backward(), column.backward()[:, 0])
        with pytest.raises(ValueError, match=r"targets of shape \(4,\) do not fit outputs of shape \(5, 2\)"):
            flat.forward(np.zeros((5, 2), dtype), np.zeros(4))


@pytest.mark.parametrize("bad", [0, 0.0, -1.0, math.nan, math.inf, -math.inf, True, False, "1", None, [1.0]])
def test_bad_delta_and_period_are_value_errors(bad):
    if bad is not None:  # None is Huber's default period: measured straight
        with pytest.raises(ValueError, match=r"delta must be a finite number > 0, got"):
            Huber(bad)
        with pytest.raises(ValueError, match=r"period must be a finite number > 0, got"):
            Huber(1.0, period=bad)
    with pytest.raises(ValueError, match=r"period must be a finite number > 0, got"):
        CyclicMAE(bad)


def test_arguments_kept_as_floats():
    huber = Huber(np.float32(0.5), period=np.int64(12))
    assert (huber.delta, huber.period) == (0.5, 12.0) and type(huber.delta) is float
    assert (Huber().delta, Huber().period) == (1.0, 0.0)
    assert (MeanAbsoluteError().delta, MeanAbsoluteError().period) == (0.0, 0.0)


def test_names():
    assert LOSSES["mae"] is LOSSES["mean_absolute_error"] is MeanAbsoluteError and LOSSES["huber"] is Huber
    assert isinstance(get_loss("MAE"), MeanAbsoluteError) and get_loss("huber").delta == 1.0
    assert not isinstance(Huber(), MeanAbsoluteError)
    assert (MeanAbsoluteError.name, CyclicMAE.name, Huber.name) == ("mae", "cyclic_mae", "huber")
    with pytest.raises(TypeError, match=r"CyclicMAE\(period\) is the course's cyclic 'common sense' error"):
        get_loss(lambda y_true, y_pred: 0.0)


# -- in a model ---------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["mae", "mean_absolute_error", "huber", "cyclic_mae"])
def test_a_model_trains_on_it(loss, backend, dtype):
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (32, 2))
    y = 3 * x[:, :1] - 2 * x[:, 1:] + 4  # hours on a 12-hour dial for cyclic_mae, all in (0, 12)
    model = nn.Sequential([nn.Input((2,)), nn.Dense(1)], seed=0, dtype=dtype, backend=backend)
    model.compile(nn.SGD(0.1), CyclicMAE(12) if loss == "cyclic_mae" else loss)
    history = model.fit(x, y, epochs=8, batch_size=8, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.5 * losses[0]
    expected = type(model.loss)(*([12] if loss == "cyclic_mae" else []))(y, model.predict(x, verbose=0))
    assert model.evaluate(x, y, batch_size=32, verbose=0) == pytest.approx(expected, rel=RTOL[dtype])
