"""Metrics: errors on a 12-hour clock face (assignment 5), Frechet distance of feature sets (assignment 6).

A time is [hour, minute]; it is compared as total minutes ``hour * 60 + minute`` modulo 720, so
the error is the shorter way round the dial: 11:50 against 0:10 is 20 minutes, not 700.

The Frechet distance between Gaussians fitted to two sets of features is the FID of generated
images when the features come from a fixed network; it is computed in float64 with numpy alone.
"""

import numpy as np

from fastdl._validation import check_array, check_same_features
from fastdl.ops._shift import power_of_two_scale

MINUTES_PER_DIAL = 720  # 12 hours
# Hours are first reduced modulo this multiple of 12 (np.fmod is exact), so that hours * 60 never
# overflows; smaller hours pass unchanged, so whole minutes stay whole.
HOURS_REDUCED_MODULO = 12.0 * 2.0**40


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
    minutes = np.mod(np.fmod(_as_float(values, 12), HOURS_REDUCED_MODULO) * 60.0, MINUTES_PER_DIAL)
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
    hours = np.fmod(_as_float(array[:, 0], 12), HOURS_REDUCED_MODULO)
    minutes = np.fmod(_as_float(array[:, 1], MINUTES_PER_DIAL), MINUTES_PER_DIAL)
    return np.mod(hours * 60.0 + minutes, MINUTES_PER_DIAL)


def _as_float(values, modulo):
    """values as float64; 64-bit integers are first reduced modulo `modulo` (keeping their sign,
    as np.fmod) in their own dtype, exactly: float64 would round those beyond 2**53."""
    if values.dtype.kind in "iu" and values.dtype.itemsize == 8:
        values = np.fmod(values, modulo)
    return values.astype(np.float64)


def frechet_distance(features_a, features_b):
    """Frechet distance between Gaussians fitted to two feature sets (the FID's formula).

    ||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a^{1/2} S_b S_a^{1/2})^{1/2}), with mu the
    mean and S the sample covariance (ddof=1) of each set's rows, in float64.

    Parameters
    ----------
    features_a : array-like of shape (n_a, n_features)
    features_b : array-like of shape (n_b, n_features)
        At least 2 rows each (a covariance needs them), the same number of columns.

    Returns
    -------
    float
        The squared Frechet (2-Wasserstein) distance, >= 0; 0 up to rounding for two sets with
        the same mean and covariance.

    Raises
    ------
    ValueError
        Not 2-D, fewer than 2 rows, different numbers of features, NaN or infinity, values so
        large that the distance is beyond float64's range.
    TypeError
        Non-numeric input.

    See Also
    --------
    gaussian_frechet_distance : the same distance from means and covariances.

    Examples
    --------
    >>> round(frechet_distance([[0.0, 0.0], [2.0, 0.0]], [[1.0, 3.0], [3.0, 3.0]]), 6)
    10.0
    """
    a = _feature_rows(features_a, "features_a")
    b = _feature_rows(features_b, "features_b")
    check_same_features(a, b, "features_a", "features_b")
    # Both sets scaled into [-1, 1] first, so that their covariances cannot overflow nor underflow.
    max_abs = max(np.abs(a).max(), np.abs(b).max())
    scale = power_of_two_scale(max_abs)
    a, b = a * scale, b * scale
    cov_a = np.cov(a, rowvar=False, ddof=1).reshape(a.shape[1], -1)
    cov_b = np.cov(b, rowvar=False, ddof=1).reshape(b.shape[1], -1)
    return _scaled_frechet(a.mean(axis=0) - b.mean(axis=0), cov_a, cov_b, scale, max_abs,
                           "features_a and features_b")


def gaussian_frechet_distance(mu_a, cov_a, mu_b, cov_b):
    """Frechet distance between the Gaussians N(mu_a, cov_a) and N(mu_b, cov_b).

    ||mu_a - mu_b||^2 + tr(cov_a) + tr(cov_b) - 2 tr((cov_a^{1/2} cov_b cov_a^{1/2})^{1/2}) in
    float64; the symmetric square roots come from np.linalg.eigh, eigenvalues below zero (rounding
    in a singular covariance) taken as zero.

    Parameters
    ----------
    mu_a : array-like of shape (n_features,)
    cov_a : array-like of shape (n_features, n_features)
        Symmetric positive semi-definite.
    mu_b : array-like of shape (n_features,)
    cov_b : array-like of shape (n_features, n_features)
        Symmetric positive semi-definite.

    Returns
    -------
    float
        >= 0.

    Raises
    ------
    ValueError
        Mismatched shapes, NaN or infinity, a covariance that is not symmetric or has a clearly
        negative eigenvalue, values so large that the distance is beyond float64's range.
    TypeError
        Non-numeric input.
    """
    mu_a = check_array(mu_a, "mu_a", 1, "(n_features,)").astype(np.float64)
    mu_b = check_array(mu_b, "mu_b", 1, "(n_features,)").astype(np.float64)
    if mu_a.shape != mu_b.shape:
        raise ValueError(f"mu_a and mu_b must have the same shape, got {mu_a.shape} and {mu_b.shape}")
    cov_a = _covariance(cov_a, "cov_a", mu_a.shape[0])
    cov_b = _covariance(cov_b, "cov_b", mu_a.shape[0])
    with np.errstate(over="ignore"):
        diff = mu_a - mu_b  # inf where it overflows: the distance is then beyond float64's range too
    # In the units of features whose means differ by diff: a covariance is a square of those.
    max_abs = max(np.abs(diff).max(), np.sqrt(np.abs(cov_a).max()), np.sqrt(np.abs(cov_b).max()))
    scale = power_of_two_scale(max_abs)
    return _scaled_frechet(diff * scale, cov_a * scale * scale, cov_b * scale * scale, scale, max_abs,
                           "mu_a, cov_a, mu_b and cov_b")


def _scaled_frechet(diff, cov_a, cov_b, scale, max_abs, names):
    """The distance for features multiplied by the power of two `scale` (mean difference diff, covariances
    cov_a and cov_b), undone on the result: a ValueError naming `names` where it is beyond float64's range.

    Scaled so that the largest value, max_abs, is near 1, the products of the covariances can neither
    overflow nor underflow; the scale is exact to apply and to undo.
    """
    root_a = _psd_sqrt(cov_a, "cov_a", scale)
    _check_psd(np.linalg.eigvalsh(cov_b), "cov_b", scale)
    middle = root_a @ cov_b @ root_a
    # The eigenvalues of cov_a^{1/2} cov_b cov_a^{1/2} are those of cov_a cov_b; their square
    # roots sum to the trace of its square root.
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = np.sqrt(np.clip(eigenvalues, 0.0, None)).sum()
    distance = float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt) / scale / scale
    if not np.isfinite(distance):
        raise ValueError(f"{names} hold values too large: their Frechet distance (a square) is beyond "
                         f"float64's range (largest magnitude {max_abs:.3g})")
    return max(distance, 0.0)  # rounding can leave -1e-13 for identical Gaussians


def _feature_rows(features, name):
    """features as a float64 (n_samples, n_features) array with at least 2 rows, after checking them."""
    array = check_array(features, name, 2, "(n_samples, n_features)")
    if array.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 samples to estimate a covariance, got shape {array.shape}")
    return array.astype(np.float64)


def _covariance(cov, name, n_features):
    """cov as a symmetric float64 (n_features, n_features) array, after checking it."""
    cov = check_array(cov, name, 2, "(n_features, n_features)").astype(np.float64)
    if cov.shape != (n_features, n_features):
        raise ValueError(f"{name} must have shape ({n_features}, {n_features}) to match the means, got {cov.shape}")
    scale = max(np.abs(cov).max(), np.finfo(np.float64).tiny)
    if np.abs(cov - cov.T).max() > 1e-8 * scale:
        raise ValueError(f"{name} must be symmetric; it differs from its transpose by up to "
                         f"{np.abs(cov - cov.T).max():.3g}")
    return cov / 2 + cov.T / 2  # (cov + cov.T) / 2 would overflow near float64's limit


def _psd_sqrt(cov, name, scale):
    """The symmetric square root of the symmetric cov, eigenvalues below zero taken as zero."""
    eigenvalues, vectors = np.linalg.eigh(cov)
    _check_psd(eigenvalues, name, scale)
    return (vectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ vectors.T


def _check_psd(eigenvalues, name, scale):
    # Rounding leaves eigenvalues of a singular covariance slightly below zero; more than that is an error.
    # They are those of the covariance times scale**2; the message gives the covariance's own.
    if eigenvalues.min() < -1e-8 * max(eigenvalues.max(), np.finfo(np.float64).tiny):
        raise ValueError(f"{name} must be positive semi-definite, has eigenvalue "
                         f"{eigenvalues.min() / scale / scale:.3g}")
