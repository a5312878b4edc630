"""The perceptron on the cuda backend: its kernels and the estimator against backend="numpy".

Under numba's CUDA simulator every GPU thread runs as Python, so the shapes are tiny (cuda_scale
makes them larger on a device) and each fit runs two or three epochs.
"""

import numpy as np
import pytest

import fastdl
from conftest import RTOL
from fastdl import backend as fastdl_backend
from fastdl.linear import MultiClassPerceptron

pytestmark = pytest.mark.cuda

RULES = {"sigmoid": 0, "classic": 1}


def _cuda():
    from numba import cuda

    return cuda


def _problem(rng, dtype, n, n_features, n_classes):
    X = rng.uniform(-1, 1, (n, n_features))
    X1 = np.hstack([X, np.ones((n, 1))]).astype(dtype)
    codes = rng.integers(0, n_classes, n).astype(np.int64)
    W = rng.normal(0, 1.5, (n_features + 1, n_classes)).astype(dtype)
    return X1, codes, W


def _blobs(rng, n, n_features, n_classes=3, noise=2.0):
    """Overlapping classes: training neither stops at 100% nor at the first epoch."""
    centres = rng.normal(0, 2, (n_classes, n_features))
    y = rng.integers(0, n_classes, n)
    X = centres[y] + rng.normal(0, noise, (n, n_features))
    return X, y


def _close(actual, expected, dtype, err_msg=""):
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=RTOL[dtype], atol=10 * RTOL[dtype] * scale,
                               err_msg=err_msg)


# Kernels -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("epoch", ["batch_epoch", "online_epoch"])
def test_epochs_match_numpy(cuda_backend, cuda_scale, dtype, rule, epoch, rng):
    X1, codes, W0 = _problem(rng, dtype, n=12 * cuda_scale, n_features=5 * cuda_scale, n_classes=3)
    reference, _ = fastdl_backend.kernels("perceptron", "numpy")
    gpu, _ = fastdl_backend.kernels("perceptron", cuda_backend)
    cuda = _cuda()
    n, n_classes = X1.shape[0], W0.shape[1]
    lr = dtype(0.2)
    W = W0.copy()
    X1_d, codes_d, W_d = cuda.to_device(X1), cuda.to_device(codes), cuda.to_device(W0)
    for _ in range(2):  # the second epoch starts from the first one's weights, on the device
        if epoch == "batch_epoch":
            expected = reference.batch_epoch(X1, codes, lr, RULES[rule], W, np.empty((n, n_classes), dtype),
                                             np.empty_like(W), 1)
            got = gpu.batch_epoch(X1_d, codes_d, lr, RULES[rule], W_d, cuda.device_array((n, n_classes), dtype),
                                  cuda.device_array(W.shape, dtype), 1)
        else:
            expected = reference.online_epoch(X1, codes, lr, RULES[rule], W, np.empty(n_classes, dtype), 1)
            got = gpu.online_epoch(X1_d, codes_d, lr, RULES[rule], W_d, cuda.device_array(n_classes, dtype), 1)
        assert got == expected
        assert isinstance(got, int)
        W_got = W_d.copy_to_host()
        assert W_got.dtype == dtype
        _close(W_got, W, dtype)


@pytest.mark.parametrize("rule", RULES)
def test_online_epoch_more_classes_than_a_chunk(cuda_backend, rule, rng):
    """18 classes: the online kernel folds its scores in two passes (CHUNK = 16 classes each)."""
    gpu, _ = fastdl_backend.kernels("perceptron", cuda_backend)
    assert gpu.CHUNK < 18
    reference, _ = fastdl_backend.kernels("perceptron", "numpy")
    X1, codes, W0 = _problem(rng, np.float64, n=6, n_features=3, n_classes=18)
    W = W0.copy()
    expected = reference.online_epoch(X1, codes, 0.2, RULES[rule], W, np.empty(18), 1)
    cuda = _cuda()
    W_d = cuda.to_device(W0)
    got = gpu.online_epoch(cuda.to_device(X1), cuda.to_device(codes), 0.2, RULES[rule], W_d,
                           cuda.device_array(18), 1)
    assert got == expected
    _close(W_d.copy_to_host(), W, np.float64)


def test_count_correct_and_with_bias(cuda_backend, cuda_scale, dtype, rng):
    gpu, _ = fastdl_backend.kernels("perceptron", cuda_backend)
    cuda = _cuda()
    X1, codes, W = _problem(rng, dtype, n=12 * cuda_scale, n_features=5, n_classes=3)
    expected = int(np.count_nonzero(np.argmax(X1 @ W, axis=1) == codes))
    scores = cuda.device_array((X1.shape[0], 3), dtype)
    assert gpu.count_correct(cuda.to_device(X1), cuda.to_device(codes), cuda.to_device(W), scores, 1) == expected
    X = X1[:, :-1].astype(np.float64)
    X[2, 1] = np.nan
    X[5, 0] = -np.inf
    X1_d = cuda.device_array(X1.shape, dtype)
    assert gpu.with_bias(cuda.to_device(X), X1_d, 1) == 2
    got = X1_d.copy_to_host()
    assert got.dtype == dtype
    np.testing.assert_array_equal(got[:, -1], 1)
    np.testing.assert_array_equal(got[:, :-1], X.astype(dtype))


# Estimator -----------------------------------------------------------------------------------------


def _same_fit(model, expected, dtype):
    assert model.n_epochs_ == expected.n_epochs_
    assert model.best_epoch_ == expected.best_epoch_
    assert model.history_.keys() == expected.history_.keys()
    for key, curve in expected.history_.items():
        np.testing.assert_allclose(model.history_[key], curve, err_msg=key)
    assert isinstance(model.weights_, np.ndarray)
    assert model.weights_.dtype == dtype
    _close(model.weights_, expected.weights_, dtype)
    np.testing.assert_array_equal(model.classes_, expected.classes_)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("method", ["batch", "online"])
def test_estimator_matches_numpy(cuda_backend, cuda_scale, dtype, method, rule, rng):
    X, y = _blobs(rng, n=12 * cuda_scale, n_features=5)
    X = X.astype(dtype)
    X_val, y_val = X[:5], y[:5]
    params = dict(method=method, rule=rule, init_std=1.0, lr=0.05, patience=5, max_epochs=2)
    expected = MultiClassPerceptron(backend="numpy", **params).fit(X, y, validation_data=(X_val, y_val))
    model = MultiClassPerceptron(backend=cuda_backend, **params).fit(X, y, validation_data=(X_val, y_val))
    assert expected.n_epochs_ == 2  # the test exercises the loop, not an early stop
    _same_fit(model, expected, dtype)
    np.testing.assert_array_equal(model.predict(X), expected.predict(X))


def test_process_default_and_context_select_cuda(cuda_backend, rng):
    X, y = _blobs(rng, n=12, n_features=5)
    params = dict(method="online", init_std=1.0, patience=1, max_epochs=1)
    expected = MultiClassPerceptron(backend=cuda_backend, **params).fit(X, y)
    with fastdl.use_backend("cuda"):
        assert fastdl_backend.resolve("perceptron") == "cuda"
        _same_fit(MultiClassPerceptron(**params).fit(X, y), expected, np.float64)
    fastdl.set_backend("cuda")  # conftest restores the process default afterwards
    _same_fit(MultiClassPerceptron(**params).fit(X, y), expected, np.float64)


def test_device_input(cuda_backend, cuda_scale, rng):
    """A device X (and X_val, y) trains without a host copy of X and gives the NumPy-input fit."""
    cuda = _cuda()
    X, y = _blobs(rng, n=12 * cuda_scale, n_features=5)
    X = X.astype(np.float32)
    labels = np.array(["a", "b", "c"])[y]
    params = dict(method="batch", init_std=1.0, lr=0.05, patience=5, max_epochs=2, backend=cuda_backend)
    expected = MultiClassPerceptron(**params).fit(X, labels, validation_data=(X[:5], labels[:5]))
    X_d = cuda.to_device(X)
    model = MultiClassPerceptron(**params).fit(X_d, labels, validation_data=(cuda.to_device(X[:5]), labels[:5]))
    _same_fit(model, expected, np.float32)
    assert model.n_features_in_ == 5
    # Device labels come to the host (classes_ lives there); a Fortran-order X is read in place.
    params["max_epochs"] = 1
    X_f = cuda.to_device(np.asfortranarray(X))
    model = MultiClassPerceptron(**params).fit(X_f, cuda.to_device(y))
    expected = MultiClassPerceptron(**params).fit(X, y)
    _same_fit(model, expected, np.float32)


def test_device_input_errors(cuda_backend, rng):
    cuda = _cuda()
    X, y = _blobs(rng, n=12, n_features=5)
    model = MultiClassPerceptron(max_epochs=1, backend=cuda_backend)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.fit(cuda.to_device(bad), y)
    with pytest.raises(TypeError, match="float32 or float64"):
        model.fit(cuda.to_device(X.astype(np.int32)), y)
    with pytest.raises(ValueError, match="2-D"):
        model.fit(cuda.to_device(X[:, 0].copy()), y)
    with pytest.raises(ValueError, match="samples"):
        model.fit(cuda.to_device(X), y[:-1])
    with pytest.raises(ValueError, match="two classes"):
        model.fit(cuda.to_device(X), np.zeros(len(y)))
    with pytest.raises(ValueError, match="X_val"):  # one host array beside a device array
        model.fit(X, y, validation_data=(cuda.to_device(X), y))
    with pytest.raises(ValueError, match="features"):
        model.fit(cuda.to_device(X), y, validation_data=(cuda.to_device(X[:, :-1].copy()), y))
    with pytest.raises(TypeError, match="backend='cuda'"):
        MultiClassPerceptron(max_epochs=1, backend="numpy").fit(cuda.to_device(X), y)
    model.fit(X, y)
    with pytest.raises(TypeError, match="host"):
        model.predict(cuda.to_device(X))
