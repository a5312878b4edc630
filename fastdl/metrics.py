"""Metrics of assignment 5 ("tell the time"): errors on a 12-hour clock face.

A time is [hour, minute]; it is compared as total minutes ``hour * 60 + minute`` modulo 720, so
the error is the shorter way round the dial: 11:50 against 0:10 is 20 minutes, not 700.
"""

import numpy as np

from fastdl._validation import check_array

MINUTES_PER_DIAL = 720  # 12 hours


def common_sense_errors(true_hm, pred_hm):
    """Per-sample "common sense" error in minutes: the shorter way round a 12-hour dial.

    Parameters
    ----------
    true_hm : array-like of shape (n_samples, 2)
        [hour, minute] of each true time. Hours are taken modulo 12; minutes may be fractional
        or above 59: each row is read as ``(hour * 60 + minute) mod 720``.
    pred_hm : array-like of shape (n_samples, 2)
        [hour, minute] of each predicted time, read the same way (floats allowed).

    Returns
    -------
    ndarray of shape (n_samples,), float64
        Errors in minutes, each in [0, 360].

    Raises
    ------
    ValueError
        A shape other than (n_samples, 2), different numbers of rows, no rows, NaN or infinity.
    TypeError
        Non-numeric input.

    Examples
    --------
    >>> common_sense_errors([[11, 50], [6, 0]], [[0, 10], [0, 0]])
    array([ 20., 360.])
    """
    true_minutes = _dial_minutes(true_hm, "true_hm")
    pred_minutes = _dial_minutes(pred_hm, "pred_hm")
    if true_minutes.shape != pred_minutes.shape:
        raise ValueError(f"true_hm has {len(true_minutes)} rows but pred_hm has "
                         f"{len(pred_minutes)}")
    difference = np.abs(true_minutes - pred_minutes) % MINUTES_PER_DIAL
    return np.minimum(difference, MINUTES_PER_DIAL - difference)


def common_sense_minutes(true_hm, pred_hm):
    """Mean "common sense" error in minutes: the shorter way round a 12-hour dial.

    Parameters
    ----------
    true_hm : array-like of shape (n_samples, 2)
        [hour, minute] of each true time (see :func:`common_sense_errors`).
    pred_hm : array-like of shape (n_samples, 2)
        [hour, minute] of each predicted time (floats allowed).

    Returns
    -------
    float
        Mean absolute error in minutes, in [0, 360].

    Raises
    ------
    ValueError
        A shape other than (n_samples, 2), different numbers of rows, no rows, NaN or infinity.
    TypeError
        Non-numeric input.

    Examples
    --------
    >>> common_sense_minutes([[11, 50]], [[0, 10]])
    20.0
    """
    return float(common_sense_errors(true_hm, pred_hm).mean())


def hours_to_hm(hours):
    """Fractional hours (e.g. a regression output) as [hour, minute] rows.

    Parameters
    ----------
    hours : array-like of shape (n_samples,) or (n_samples, 1)
        Times in hours, any real number, taken modulo 12 (-0.5 is 11:30, 12.25 is 0:15).

    Returns
    -------
    ndarray of shape (n_samples, 2), float64
        [whole hour 0-11, minutes in [0, 60)] of each time.

    Raises
    ------
    ValueError
        Another shape, no values, NaN or infinity.
    TypeError
        Non-numeric input.

    Examples
    --------
    >>> hours_to_hm([1.5, -0.5])
    array([[ 1., 30.],
           [11., 30.]])
    """
    values = np.asarray(hours) if not isinstance(hours, np.ndarray) else hours
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    values = check_array(values, "hours", 1, "(n_samples,) or (n_samples, 1)")
    # In minutes, so a whole number of minutes stays whole (2.25 h is 2:15, never 2:14.999...).
    minutes = np.mod(values.astype(np.float64) * 60.0, MINUTES_PER_DIAL)
    # mod of a tiny negative number can round up to exactly 720.
    minutes = np.where(minutes >= MINUTES_PER_DIAL, 0.0, minutes)
    whole_hours = np.floor(minutes / 60.0)
    return np.stack([whole_hours, minutes - whole_hours * 60.0], axis=1)


def _dial_minutes(hm, name):
    """Rows [hour, minute] as float64 minutes on the dial, 0 <= m < 720, after checking them."""
    array = check_array(hm, name, 2, "(n_samples, 2) [hour, minute]")
    if array.shape[1] != 2:
        raise ValueError(f"{name} must have shape (n_samples, 2) [hour, minute], got shape "
                         f"{array.shape}")
    array = array.astype(np.float64)
    return np.mod(array[:, 0] * 60.0 + array[:, 1], MINUTES_PER_DIAL)
