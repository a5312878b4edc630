"""fastdl.metrics: common-sense time errors on a 12-hour dial, fractional hours to [h, m]."""

import numpy as np
import pytest

from fastdl.metrics import common_sense_errors, common_sense_minutes, hours_to_hm


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
