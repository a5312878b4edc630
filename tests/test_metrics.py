"""fastdl.metrics: common-sense time errors on a 12-hour dial, fractional hours to [h, m], Frechet distance."""

import numpy as np
import pytest

from fastdl.metrics import (
    common_sense_errors, common_sense_minutes, frechet_distance, gaussian_frechet_distance, hours_to_hm,
)


@pytest.mark.parametrize("true_hm, pred_hm, minutes", [
    ([11, 50], [0, 10], 20.0),     # across 12 o'clock
    ([0, 10], [11, 50], 20.0),     # symmetric
    ([6, 0], [0, 0], 360.0),       # the largest error
    ([3, 25], [3, 25], 0.0),
    ([3, 0], [2, 59.5], 0.5),      # fractional minutes
    ([2.5, 0], [2, 30], 0.0),      # fractional hours
    ([12, 0], [0, 0], 0.0),        # hours taken mod 12
    ([23, 59], [0, 1], 2.0),
    ([1, 70], [2, 10], 0.0),       # minutes above 59: total minutes
    ([0, 0], [-1, 0], 60.0),       # a negative prediction wraps round
    ([9, 0], [3, 0], 360.0),
    ([9, 1], [3, 0], 359.0),
])
def test_wrap_around_cases(true_hm, pred_hm, minutes):
    assert common_sense_minutes([true_hm], [pred_hm]) == pytest.approx(minutes)
    assert isinstance(common_sense_minutes([true_hm], [pred_hm]), float)


def test_errors_per_sample_and_their_mean():
    true_hm = np.array([[11, 50], [6, 0], [4, 4]])
    pred_hm = np.array([[0, 10], [0, 0], [4, 4]], dtype=np.float32)
    errors = common_sense_errors(true_hm, pred_hm)
    assert errors.shape == (3,) and errors.dtype == np.float64
    np.testing.assert_allclose(errors, [20, 360, 0])
    assert common_sense_minutes(true_hm, pred_hm) == pytest.approx(380 / 3)


def test_properties_on_random_times():
    rng = np.random.default_rng(0)
    true_hm = np.stack([rng.integers(0, 12, 500), rng.integers(0, 60, 500)], axis=1)
    pred_hm = np.stack([rng.uniform(-30, 30, 500), rng.uniform(0, 60, 500)], axis=1)
    errors = common_sense_errors(true_hm, pred_hm)
    assert ((errors >= 0) & (errors <= 360)).all()
    np.testing.assert_allclose(errors, common_sense_errors(pred_hm, true_hm))
    np.testing.assert_allclose(errors, common_sense_errors(true_hm, pred_hm + [12, 0]),
                               atol=1e-9)
    true_minutes = true_hm[:, 0] * 60 + true_hm[:, 1]
    pred_minutes = pred_hm[:, 0] * 60 + pred_hm[:, 1]
    brute = np.min([np.abs(true_minutes - pred_minutes + 720 * k) for k in range(-5, 6)], axis=0)
    np.testing.assert_allclose(errors, brute, atol=1e-9)


@pytest.mark.parametrize("hours, expected", [
    (1.5, [1, 30]), (-0.5, [11, 30]), (12.25, [0, 15]), (0, [0, 0]), (11.75, [11, 45]),
    (-1e-17, [0, 0]), (2.25, [2, 15]), (-12, [0, 0]), (35.0, [11, 0])])
def test_hours_to_hm(hours, expected):
    hm = hours_to_hm([hours])
    assert hm.shape == (1, 2) and hm.dtype == np.float64
    np.testing.assert_allclose(hm[0], expected, atol=1e-9)
    assert 0 <= hm[0, 0] <= 11 and 0 <= hm[0, 1] < 60


def test_huge_hours_do_not_overflow():
    """hours * 60 overflows float64 beyond about 3e306 hours: hours are reduced modulo 12 first."""
    assert hours_to_hm([1e307]).tolist() == [[4.0, 0.0]]  # 10**307 = 4 (mod 12), and is whole
    assert hours_to_hm([-1e307]).tolist() == [[8.0, 0.0]]
    np.testing.assert_array_equal(common_sense_errors([[1e307, 0]], [[0, 0]]), [240.0])
    np.testing.assert_array_equal(common_sense_errors([[-1.7e308, -1.7e308]], [[0, 0]]), [272.0])
    # A huge minute count must not swallow the hour: 1:00 + 1e20 min is an hour after 0:00 + 1e20 min.
    np.testing.assert_array_equal(common_sense_errors([[1, 1e20]], [[0, 1e20]]), [60.0])
    hm = hours_to_hm([2.0**60 + 3 * 2.0**8, 12.1])  # big but whole, and 12.1 h is 0:06
    np.testing.assert_allclose(hm, [[(2**60 + 3 * 2**8) % 12, 0.0], [0.0, 6.0]], atol=1e-9)


def test_hours_to_hm_column_and_round_trip():
    rng = np.random.default_rng(1)
    labels = np.stack([rng.integers(0, 12, 50), rng.integers(0, 60, 50)], axis=1)
    hours = (labels[:, 0] + labels[:, 1] / 60.0)[:, None]  # a regression model's (n, 1) output
    hm = hours_to_hm(hours)
    assert hm.shape == (50, 2)
    np.testing.assert_allclose(hm, labels, atol=1e-9)
    assert common_sense_minutes(labels, hm) == pytest.approx(0, abs=1e-9)


@pytest.mark.parametrize("true_hm, pred_hm, error, message", [
    ([[1, 2, 3]], [[1, 2, 3]], ValueError, r"\(n_samples, 2\)"),
    ([1, 2], [1, 2], ValueError, "2-D"),
    ([[1, 2], [3, 4]], [[1, 2]], ValueError, "2 rows but pred_hm has 1"),
    ([[1, 2]], [[np.nan, 2]], ValueError, "NaN"),
    ([[1, 2]], [[np.inf, 2]], ValueError, "NaN or infinity"),
    (np.zeros((0, 2)), np.zeros((0, 2)), ValueError, "empty"),
    ([["a", "b"]], [[1, 2]], TypeError, "real numbers"),
])
def test_bad_input(true_hm, pred_hm, error, message):
    with pytest.raises(error, match=message):
        common_sense_minutes(true_hm, pred_hm)
    with pytest.raises(error, match=message):
        common_sense_errors(true_hm, pred_hm)


@pytest.mark.parametrize("hours, error, message", [
    (np.zeros((3, 2)), ValueError, "n_samples"), ([np.nan], ValueError, "NaN"),
    ([], ValueError, "empty"), (["x"], TypeError, "real numbers")])
def test_hours_to_hm_bad_input(hours, error, message):
    with pytest.raises(error, match=message):
        hours_to_hm(hours)


# -- Frechet distance ----------------------------------------------------------------------------

def _random_spd(rng, d, rank=None):
    factor = rng.normal(size=(d, rank or d))
    return factor @ factor.T + (0 if rank else 0.1 * np.eye(d))


def _scipy_frechet(mu_a, cov_a, mu_b, cov_b):
    """The usual FID formula, with scipy's general matrix square root of cov_a @ cov_b."""
    linalg = pytest.importorskip("scipy.linalg")
    diff = mu_a - mu_b
    return diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(linalg.sqrtm(cov_a @ cov_b)).real


def test_frechet_identical_covariances_leave_the_mean_term(rng):
    cov = _random_spd(rng, 4)
    mu_a, mu_b = rng.normal(size=4), rng.normal(size=4)
    assert gaussian_frechet_distance(mu_a, cov, mu_b, cov) == pytest.approx(((mu_a - mu_b) ** 2).sum(), rel=1e-9)


def test_frechet_diagonal_covariances(rng):
    var_a, var_b = rng.uniform(0.1, 3, 5), rng.uniform(0.1, 3, 5)
    mu_a, mu_b = rng.normal(size=5), rng.normal(size=5)
    expected = ((np.sqrt(var_a) - np.sqrt(var_b)) ** 2).sum() + ((mu_a - mu_b) ** 2).sum()
    got = gaussian_frechet_distance(mu_a, np.diag(var_a), mu_b, np.diag(var_b))
    assert got == pytest.approx(expected, rel=1e-10)
    assert gaussian_frechet_distance(np.zeros(1), [[4.0]], np.zeros(1), [[1.0]]) == pytest.approx(1.0)


@pytest.mark.parametrize("d", [1, 3, 16])
def test_frechet_matches_scipy_sqrtm(rng, d):
    mu_a, mu_b = rng.normal(size=d), rng.normal(size=d)
    cov_a, cov_b = _random_spd(rng, d), _random_spd(rng, d)
    expected = _scipy_frechet(mu_a, cov_a, mu_b, cov_b)
    assert gaussian_frechet_distance(mu_a, cov_a, mu_b, cov_b) == pytest.approx(expected, rel=1e-8)
    assert gaussian_frechet_distance(mu_b, cov_b, mu_a, cov_a) == pytest.approx(expected, rel=1e-8)


def test_frechet_of_feature_sets_uses_the_sample_mean_and_covariance(rng):
    a = rng.normal(size=(50, 6)) * [1, 2, 3, 1, 1, 0.5]
    b = rng.normal(size=(70, 6)) + 0.3
    expected = _scipy_frechet(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    got = frechet_distance(a, b)
    assert isinstance(got, float)
    assert got == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(b, a) == pytest.approx(got, rel=1e-10)  # symmetric
    assert frechet_distance(a + 5.0, b + 5.0) == pytest.approx(got, rel=1e-9)  # a shift of both
    assert frechet_distance(a.astype(np.float32), b.astype(np.float32)) == pytest.approx(got, rel=1e-5)


def test_frechet_is_zero_for_identical_sets(rng):
    a = rng.normal(size=(40, 8)) * 3 + 100
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(a, a[::-1]) == pytest.approx(0.0, abs=1e-8)  # order does not matter


def test_frechet_of_singular_covariances(rng):
    """Fewer samples than features (as FID on a small batch): singular covariances, still finite and >= 0."""
    a, b = rng.normal(size=(5, 12)), rng.normal(size=(7, 12)) + 1
    got = frechet_distance(a, b)
    assert np.isfinite(got) and got > 0
    cov = _random_spd(rng, 6, rank=2)
    assert gaussian_frechet_distance(np.zeros(6), cov, np.zeros(6), cov) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(np.ones((3, 2)), np.ones((4, 2))) == 0.0  # both covariances zero


def test_frechet_of_large_samples_approaches_the_closed_form():
    rng = np.random.default_rng(5)
    mu_a, mu_b = np.array([0.0, 1.0, -1.0]), np.array([0.5, 1.0, 0.0])
    cov_a = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 0.5]])
    cov_b = np.diag([1.0, 2.0, 1.5])
    expected = _scipy_frechet(mu_a, cov_a, mu_b, cov_b)
    a = rng.multivariate_normal(mu_a, cov_a, size=200_000)
    b = rng.multivariate_normal(mu_b, cov_b, size=200_000)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=0.02)


def test_frechet_of_huge_and_tiny_features_scales(rng):
    """The distance scales with the square of the features: the covariances' products must not
    overflow near 1e150 nor underflow near 1e-150, and only a distance beyond float64's range
    (features near 1e200) is an error, about the features."""
    a, b = rng.normal(size=(20, 3)), rng.normal(size=(30, 3)) + 0.5
    plain = frechet_distance(a, b)
    assert frechet_distance(a * 2.0**500, b * 2.0**500) == pytest.approx(plain * 2.0**1000, rel=1e-12)
    assert frechet_distance(a * 2.0**-500, b * 2.0**-500) == pytest.approx(plain * 2.0**-1000, rel=1e-12)
    with pytest.raises(ValueError, match="features_a and features_b hold values too large"):
        frechet_distance(a * 1e200, b * 1e200)


@pytest.mark.parametrize("scale", [1e160, 1e300, 1e-200, 1e-170, 5e-324])
def test_gaussian_frechet_of_huge_and_tiny_covariances_scales(scale):
    """As for feature sets: cov_a^{1/2} cov_b cov_a^{1/2} must not overflow (NaN) nor underflow."""
    eye = np.eye(2)
    assert gaussian_frechet_distance([0, 0], eye * scale, [0, 0], eye * scale) == pytest.approx(0.0, abs=1e-12 * scale)
    assert gaussian_frechet_distance([0, 0], eye * scale, [0, 0], eye * 4 * scale) == pytest.approx(2 * scale)
    # Equal huge means leave the covariance term, however small.
    assert gaussian_frechet_distance([1e300, 0], eye, [1e300, 0], eye * 4) == pytest.approx(2.0)


@pytest.mark.parametrize("mu_a, mu_b", [([1e200, 0.0], [0.0, 0.0]), ([1e308, 0.0], [-1e308, 0.0])])
def test_gaussian_frechet_beyond_float64_is_an_error(mu_a, mu_b):
    with pytest.raises(ValueError, match=r"mu_a, cov_a, mu_b and cov_b hold values too large: .* beyond "
                                         r"float64's range"):
        gaussian_frechet_distance(mu_a, np.eye(2), mu_b, np.eye(2))


@pytest.mark.parametrize("a, b, error, message", [
    (np.zeros(5), np.zeros((3, 5)), ValueError, r"features_a must be 2-D \(n_samples, n_features\), got shape \(5,\)"),
    (np.zeros((3, 5)), np.zeros((3, 5, 1)), ValueError, r"features_b must be 2-D"),
    (np.zeros((3, 5)), np.zeros((4, 6)), ValueError,
     r"features_a and features_b must have the same number of features, "
     r"got features_a \(3, 5\) and features_b \(4, 6\)"),
    (np.zeros((1, 5)), np.zeros((4, 5)), ValueError, r"features_a needs at least 2 samples .* \(1, 5\)"),
    (np.zeros((3, 5)), np.zeros((0, 5)), ValueError, r"features_b must not be empty"),
    ([[0.0, np.nan], [1.0, 1.0]], np.zeros((3, 2)), ValueError, r"features_a contains NaN"),
    (np.zeros((3, 2)), [[0.0, np.inf], [1.0, 1.0]], ValueError, r"features_b contains NaN or infinity"),
    (np.zeros((3, 2), complex), np.zeros((3, 2)), TypeError, r"features_a must hold real numbers"),
    ([["a", "b"], ["c", "d"]], np.zeros((3, 2)), TypeError, r"real numbers"),
    (np.zeros((3, 2), object), np.zeros((3, 2)), TypeError, r"real numbers, got dtype object"),
])
def test_frechet_bad_input(a, b, error, message):
    with pytest.raises(error, match=message):
        frechet_distance(a, b)


@pytest.mark.parametrize("mu_a, cov_a, mu_b, cov_b, message", [
    (np.zeros(2), np.eye(2), np.zeros(3), np.eye(3), r"mu_a and mu_b must have the same shape, got \(2,\) and \(3,\)"),
    (np.zeros(2), np.eye(3), np.zeros(2), np.eye(2),
     r"cov_a must have shape \(2, 2\) to match the means, got \(3, 3\)"),
    (np.zeros((2, 1)), np.eye(2), np.zeros(2), np.eye(2), r"mu_a must be 1-D"),
    (np.zeros(2), np.eye(2), np.zeros(2), [[1.0, 0.5], [0.0, 1.0]], r"cov_b must be symmetric"),
    (np.zeros(2), [[1.0, 0.0], [0.0, -1.0]], np.zeros(2), np.eye(2), r"cov_a must be positive semi-definite"),
    (np.zeros(2), np.eye(2), np.zeros(2), [[1e200, 0.0], [0.0, -3e200]], r"cov_b .* has eigenvalue -3e\+200"),
    (np.zeros(2), np.eye(2), np.zeros(2), [[np.nan, 0], [0, 1]], r"cov_b contains NaN"),
])
def test_gaussian_frechet_bad_input(mu_a, cov_a, mu_b, cov_b, message):
    with pytest.raises(ValueError, match=message):
        gaussian_frechet_distance(mu_a, cov_a, mu_b, cov_b)
