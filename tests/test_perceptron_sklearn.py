"""MultiClassPerceptron in scikit-learn's tools: coef_ and intercept_ in scikit-learn's layout (what
RFE and SelectFromModel read; the course's layout is weights_), random_state as scikit-learn takes
it, and weights past the float range refused."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.feature_selection import RFE, SelectFromModel
from sklearn.utils.validation import check_is_fitted
from sklearn.exceptions import NotFittedError

from fastdl import NonFiniteError
from fastdl.linear import MultiClassPerceptron


def _informative_first(n_classes, seed=0):
    """X whose first three features are the informative ones, of 30."""
    return make_classification(n_samples=300, n_features=30, n_informative=3, n_redundant=0, n_repeated=0,
                               n_classes=n_classes, n_clusters_per_class=1, shuffle=False, random_state=seed)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_coef_and_intercept_in_sklearn_layout(backend, dtype, n_classes):
    X, y = _informative_first(n_classes)
    model = MultiClassPerceptron(max_epochs=20, backend=backend).fit(X.astype(dtype), y)
    W = model.weights_
    assert W.shape == (31, n_classes)
    rows = 1 if n_classes == 2 else n_classes
    assert model.coef_.shape == (rows, 30) and model.intercept_.shape == (rows,)
    assert model.coef_.dtype == model.intercept_.dtype == dtype
    scores = model.decision_function(X.astype(dtype))
    np.testing.assert_allclose(X @ model.coef_.T.astype(np.float64) + model.intercept_,
                               scores.reshape(len(X), -1), rtol=1e-4, atol=1e-3 * np.abs(scores).max())
    if n_classes > 2:
        np.testing.assert_array_equal(model.coef_, W[:-1].T)
        np.testing.assert_array_equal(model.intercept_, W[-1])


@pytest.mark.parametrize("n_classes", [2, 3])
def test_feature_selection_finds_the_informative_features(n_classes):
    # Read coef_ as (n_features + 1, n_classes), RFE kept the last three features: noise.
    X, y = _informative_first(n_classes)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    rfe = RFE(MultiClassPerceptron(max_epochs=50, init_std=0.01), n_features_to_select=3).fit(X, y)
    assert np.flatnonzero(rfe.support_).tolist() == [0, 1, 2]
    select = SelectFromModel(MultiClassPerceptron(max_epochs=50, init_std=0.01), max_features=3,
                             threshold=-np.inf).fit(X, y)
    assert select.get_support().shape == (30,)
    assert select.transform(X).shape == (300, 3)


def test_random_state_takes_a_random_state_instance():
    X, y = _informative_first(3)
    by_int = MultiClassPerceptron(max_epochs=3, random_state=5).fit(X, y)
    by_instance = MultiClassPerceptron(max_epochs=3, random_state=np.random.RandomState(5)).fit(X, y)
    np.testing.assert_array_equal(by_int.weights_, by_instance.weights_)
    MultiClassPerceptron(max_epochs=3, random_state=None).fit(X, y)
    with pytest.raises(TypeError, match="random_state must be an int, a numpy.random.RandomState or None"):
        MultiClassPerceptron(random_state=np.random.default_rng(0)).fit(X, y)
    with pytest.raises(TypeError, match="random_state"):
        MultiClassPerceptron(random_state=2.5).fit(X, y)


@pytest.mark.parametrize("case", ["weights", "diverged", "scores"])
@pytest.mark.parametrize("method", ["batch", "online"])
def test_weights_past_the_float_range_raise_and_leave_it_unfitted(backend, case, method):
    if case == "weights":  # the updates themselves overflow, and the first epoch still scores best
        X, y = np.random.default_rng(0).normal(size=(40, 3)) * 1e300, np.arange(40) % 3
        model = MultiClassPerceptron(lr=1e10, max_epochs=5, method=method, backend=backend)
        message = "became NaN or infinite in epoch 1: the updates went past float64's range; lower lr"
    elif case == "diverged":  # NaN weights never score best: the random start was kept, silently
        X, y = _informative_first(3)
        model = MultiClassPerceptron(lr=1e308, max_epochs=50, method=method, backend=backend)
        message = "became NaN or infinite in epoch"
    else:  # finite weights, float32 scores past its range
        X, y = _informative_first(3)
        X, model = (X * 1e19).astype(np.float32), MultiClassPerceptron(max_epochs=5, method=method, backend=backend)
        message = "went past float32's range; lower lr or scale X down .or fit float64 X"  # (online: the weights)
    with warnings.catch_warnings():  # the error, not numpy's overflow warnings first
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(NonFiniteError, match=message):
            model.fit(X, y)
    with pytest.raises(NotFittedError):
        check_is_fitted(model)
