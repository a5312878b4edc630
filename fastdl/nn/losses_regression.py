"""Regression losses: the squared error, the absolute error and Huber's loss, each measured
straight or the short way round a circle (the course's clocks). Re-exported by fastdl.nn.losses."""

import numbers

import numpy as np

from fastdl.nn.losses import Loss


def _finite_positive(value, name):
    """value as a float; ValueError, before any kernel, unless it is a finite real number > 0 (a
    bool is refused: True would pass as 1)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


class MeanSquaredError(Loss):
    """Mean over samples and outputs of (y_pred - y_true)^2, as Keras' "mse"."""

    name = "mse"
    period = 0.0  # the error is measured straight, not round a circle
    elementwise = True

    def forward(self, y_pred, y_true, sample_weight=None):
        size = max(y_pred.size, 1)
        total, self._grad = self._run("squared_error", y_pred, y_true, self.period, scale=1.0 / size,
                                      sample_weight=sample_weight)
        return total / size

    def backward(self):
        return self._grad


class CyclicMSE(MeanSquaredError):
    """Mean squared error measured the short way round a circle of circumference `period`.

    The error of each output is the signed distance from target to prediction along the circle,
    ((y_pred - y_true + period / 2) mod period) - period / 2, in [-period / 2, period / 2): a clock
    reading 11:55 for 0:05 is 10 minutes off, not 11 hours 50. Its gradient is that of the MSE on
    the wrapped error (the wrap is a constant shift almost everywhere).

    Parameters
    ----------
    period : float > 0
        12 for hours, 60 for minutes, 2 * pi for angles.
    """

    name = "cyclic_mse"

    def __init__(self, period):
        self.period = _finite_positive(period, "period")


class _AbsoluteError(Loss):
    """The absolute error (delta 0) or Huber's loss (delta > 0) on the kernel absolute_error: the mean
    over samples and outputs, the error measured straight (period 0) or round a circle."""

    period = 0.0
    delta = 0.0
    elementwise = True

    def forward(self, y_pred, y_true, sample_weight=None):
        size = max(y_pred.size, 1)
        total, self._grad = self._run("absolute_error", y_pred, y_true, self.period, self.delta, scale=1.0 / size,
                                      sample_weight=sample_weight)
        return total / size

    def backward(self):
        return self._grad


class MeanAbsoluteError(_AbsoluteError):
    """Mean over samples and outputs of |y_pred - y_true|, as Keras' "mae". Its gradient is
    sign(y_pred - y_true) / size, 0 where the two are equal (as TensorFlow's gradient of abs)."""

    name = "mae"


class CyclicMAE(MeanAbsoluteError):
    """Mean absolute error measured the short way round a circle of circumference `period`: the
    course's "common sense" error of a clock reading, as a loss a model can be trained on.

    Each error is wrapped as CyclicMSE's, into [-period / 2, period / 2): a clock reading 11:55 for
    0:05 is 10 minutes off, not 11 hours 50. Its gradient is sign(wrapped error) / size.

    Parameters
    ----------
    period : float > 0
        12 for hours, 60 for minutes, 2 * pi for angles.
    """

    name = "cyclic_mae"

    def __init__(self, period):
        self.period = _finite_positive(period, "period")


class Huber(_AbsoluteError):
    """Huber's loss, as Keras' Huber: the mean over samples and outputs of 0.5 e^2 where |e| <= delta,
    else delta (|e| - 0.5 delta), with e = y_pred - y_true. Square near the target, straight beyond
    delta (an outlier pulls no harder than delta); its gradient is e / size, capped at +-delta / size.

    Parameters
    ----------
    delta : float > 0, default 1.0
        Where the square turns straight, in the outputs' units.
    period : float > 0, optional
        Measure e the short way round a circle of this circumference, as CyclicMSE does (12 for
        hours); None (the default) measures it straight.
    """

    name = "huber"

    def __init__(self, delta=1.0, period=None):
        self.delta = _finite_positive(delta, "delta")
        self.period = 0.0 if period is None else _finite_positive(period, "period")
