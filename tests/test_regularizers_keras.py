"""fastdl.nn.regularizers as Keras 3's: L1, L2 and L1L2 penalties and gradients (sign(0) = 0),
their names, factor checks, L2 unchanged, and the cuda backend's device path (simulator: tiny)."""

import numpy as np
import pytest

from fastdl import _device, nn
from fastdl.nn.regularizers import L1, L1L2, L2, add_grad, get_regularizer, l1, l1_l2, l2

REGULARIZERS = {
    "L1": lambda: L1(0.3),
    "L2": lambda: L2(0.2),
    "L1L2": lambda: L1L2(l1=0.3, l2=0.2),
    "L1L2-l1-only": lambda: L1L2(l1=0.3),
    "L1L2-l2-only": lambda: L1L2(l2=0.2),
}


def _reference(name, weights):
    """(penalty, gradient) of the regulariser named `name` in float64 NumPy."""
    w = weights.astype(np.float64)
    l1_factor = 0.3 if name in ("L1", "L1L2", "L1L2-l1-only") else 0.0
    l2_factor = 0.2 if name in ("L2", "L1L2", "L1L2-l2-only") else 0.0
    return (l1_factor * np.abs(w).sum() + l2_factor * (w ** 2).sum(),
            l1_factor * np.sign(w) + 2 * l2_factor * w)


def _weights(rng, dtype, shape=(3, 4)):
    """Weights at least 0.1 from 0 (where |w| has a derivative), both signs."""
    magnitude = rng.uniform(0.1, 1.0, shape)
    return (magnitude * rng.choice([-1.0, 1.0], shape)).astype(dtype)


def _tol(dtype):
    return {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-14}


@pytest.mark.parametrize("name", REGULARIZERS)
def test_penalty_and_gradient_match_numpy(name, dtype, rng):
    regularizer, weights = REGULARIZERS[name](), _weights(rng, dtype)
    penalty, gradient = _reference(name, weights)
    assert regularizer(weights) == pytest.approx(penalty, rel=1e-12)  # summed in float64 either way
    assert regularizer.grad(weights).dtype == dtype
    np.testing.assert_allclose(regularizer.grad(weights), gradient, **_tol(dtype))
    grad = np.ones_like(weights)
    add_grad(regularizer, weights, grad)
    np.testing.assert_allclose(grad, 1 + gradient, **_tol(dtype))


@pytest.mark.parametrize("name", REGULARIZERS)
def test_gradient_matches_finite_differences(name, rng):
    regularizer, weights = REGULARIZERS[name](), _weights(rng, np.float64)
    eps, numeric = 1e-6, np.zeros_like(weights)
    for index in np.ndindex(weights.shape):
        up, down = weights.copy(), weights.copy()
        up[index] += eps
        down[index] -= eps
        numeric[index] = (regularizer(up) - regularizer(down)) / (2 * eps)
    np.testing.assert_allclose(regularizer.grad(weights), numeric, rtol=1e-6, atol=1e-8)


def test_the_sign_of_zero_is_zero(dtype):
    """abs' gradient at 0 is 0 (TF, JAX and torch's autodiff; torch.sign(0) = 0): a zero weight
    gets only its L2 term's gradient, also -0.0."""
    weights = np.array([[-2.0, 0.0], [-0.0, 3.0]], dtype)
    np.testing.assert_array_equal(L1(0.5).grad(weights), [[-0.5, 0.0], [0.0, 0.5]])
    np.testing.assert_array_equal(L1L2(0.5, 0.25).grad(weights), [[-1.5, 0.0], [0.0, 2.0]])
    assert L1(0.5)(weights) == 2.5 and L1L2(0.5, 0.25)(weights) == 2.5 + 0.25 * 13
    np.testing.assert_array_equal(L1L2().grad(weights), np.zeros((2, 2)))
    assert L1L2()(weights) == 0.0


def test_keras_defaults_aliases_and_repr():
    # Keras 3: L1() and L2() are 0.01, L1L2() is 0 and 0; the lowercase names are the classes.
    assert (L1().l1, L2().l2, L1L2().l1, L1L2().l2) == (0.01, 0.01, 0.0, 0.0)
    assert (l1, l2, l1_l2) == (L1, L2, L1L2)
    assert l1_l2(l1=0.01, l2=0.02).get_config() == {"l1": 0.01, "l2": 0.02}
    # None means the default, as in Keras.
    assert (L1(None).l1, L2(None).l2, L1L2(None, None).get_config()) == (0.01, 0.01, {"l1": 0.0, "l2": 0.0})
    assert repr(L1(0.3)) == "L1(l1=0.3)" and repr(L2(2)) == "L2(l2=2.0)"
    assert repr(L1L2(l2=0.5)) == "L1L2(l1=0.0, l2=0.5)"
    assert L1(np.float32(0.5)).l1 == 0.5 and type(L1(np.float32(0.5)).l1) is float


@pytest.mark.parametrize("name, expected", [
    ("l1", "L1(l1=0.01)"), ("L1", "L1(l1=0.01)"), ("l2", "L2(l2=0.01)"), ("L2", "L2(l2=0.01)"),
    ("l1_l2", "L1L2(l1=0.01, l2=0.01)"), ("L1L2", "L1L2(l1=0.01, l2=0.01)"), ("l1l2", "L1L2(l1=0.01, l2=0.01)"),
])
def test_names(name, expected):
    assert repr(get_regularizer(name)) == expected
    assert repr(nn.Dense(2, kernel_regularizer=name).kernel_regularizer) == expected


def test_bad_names_and_objects_are_refused():
    for bad in ("l3", "", "orthogonal_regularizer", 0.01, ["l1"]):
        with pytest.raises(ValueError, match=r"kernel_regularizer.*'l1', 'l2', 'l1_l2'.*'L1', 'L2', 'L1L2'"):
            get_regularizer(bad)
    with pytest.raises(ValueError, match="bias_regularizer 'l3'"):
        get_regularizer("l3", "bias_regularizer")
    with pytest.raises(ValueError, match="no grad"):  # a function of the weights: no gradient to add
        nn.Dense(2, kernel_regularizer=lambda w: 0.01 * np.abs(w).sum())
    regularizer = L1(0.2)
    assert get_regularizer(regularizer) is regularizer and get_regularizer(None) is None
    # A class, as Keras' get(L1): made with its defaults (nn.l1 without parentheses is L1).
    assert repr(get_regularizer(L1)) == "L1(l1=0.01)" and repr(get_regularizer(l1_l2)) == "L1L2(l1=0.0, l2=0.0)"


@pytest.mark.parametrize("make, name", [(L1, "L1"), (L2, "L2"), (lambda f: L1L2(l1=f), "L1"),
                                        (lambda f: L1L2(l2=f), "L2")])
@pytest.mark.parametrize("factor", [-1, -1e-9, float("nan"), float("inf"), -float("inf"), True, "0.1", [0.1],
                                    10 ** 400])
def test_bad_factors_are_refused(make, name, factor):
    with pytest.raises(ValueError, match=f"the {name} factor must be a finite number >= 0"):
        make(factor)


def test_l2_is_unchanged(dtype, rng):
    """L2's penalty and gradient are the formulas it had before L1 came, bit for bit; L1L2 without
    an l1 gives the same bits."""
    weights = rng.standard_normal((4, 3)).astype(dtype)
    for regularizer in (L2(0.05), L1L2(l2=0.05), l2(0.05)):
        assert regularizer(weights) == 0.05 * float(np.sum(np.square(weights, dtype=np.float64)))
        grad = regularizer.grad(weights)
        assert grad.dtype == dtype
        np.testing.assert_array_equal(grad.view(np.uint8), (weights * dtype(2 * 0.05)).view(np.uint8))
        before = rng.standard_normal((4, 3)).astype(dtype)
        added = before.copy()
        add_grad(regularizer, weights, added)
        np.testing.assert_array_equal(added.view(np.uint8), (before + weights * dtype(2 * 0.05)).view(np.uint8))
    # L2(0) of non-finite weights stays NaN, as before (and Keras' L2); L1L2 leaves a zero term out.
    assert np.isnan(L2(0.0)(np.array([np.inf])))
    assert L1L2(l1=0.0, l2=0.0)(np.array([np.inf])) == 0.0


def _dense_model(backend, dtype, regularizer):
    model = nn.Sequential([nn.Dense(2, input_shape=(3,), kernel_regularizer=regularizer)], seed=0, dtype=dtype,
                          backend=backend)
    model.compile(nn.SGD(0.1), "mse")
    return model


@pytest.mark.parametrize("regularizer", [L1(0.3), L1L2(0.3, 0.2)], ids=repr)
def test_dense_training_step_is_the_hand_computed_one(backend, dtype, regularizer):
    """One SGD step of a linear Dense with mse: the loss counts the penalty, and the kernel's
    gradient is x^T dL/dy + l1 sign(W) (+ 2 l2 W), a zero weight getting no L1 pull."""
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((4, 3)).astype(dtype), rng.standard_normal((4, 2)).astype(dtype)
    model = _dense_model(backend, dtype, regularizer)
    kernel = np.array([[0.5, -0.25], [0.0, 0.75], [-1.0, 0.125]], dtype)
    bias = np.array([0.1, -0.2], dtype)
    model.set_weights([kernel, bias])
    w, b = kernel.astype(np.float64), bias.astype(np.float64)
    l1_factor, l2_factor = regularizer.l1, regularizer.l2
    error = x.astype(np.float64) @ w + b - y
    penalty = l1_factor * np.abs(w).sum() + l2_factor * (w ** 2).sum()
    dout = 2 * error / error.size
    dkernel = x.T.astype(np.float64) @ dout + l1_factor * np.sign(w) + 2 * l2_factor * w
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert model.evaluate(x, y) == pytest.approx((error ** 2).mean() + penalty, rel=rtol)
    assert model.train_on_batch(x, y) == pytest.approx((error ** 2).mean() + penalty, rel=rtol)
    new_kernel, new_bias = model.get_weights()
    np.testing.assert_allclose(new_kernel, w - 0.1 * dkernel, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(new_bias, b - 0.1 * dout.sum(axis=0), rtol=rtol, atol=rtol)
    assert model.regularization_loss() == pytest.approx(regularizer(new_kernel), rel=1e-12)


# -- the cuda backend: the penalty's sum and the gradient's pass on the device ----------------------


@pytest.mark.cuda
def test_sign_kernels(cuda_backend, dtype):
    from numba import cuda

    from fastdl.kernels.gpu import _arrays

    a = np.array([-2.0, 0.0, -0.0, 3.0, np.nan, np.inf, -np.inf], dtype)
    out = cuda.device_array(a.shape, dtype)
    _arrays.scale_sign(cuda.to_device(a), dtype(0.5), out)
    np.testing.assert_array_equal(out.copy_to_host(), np.sign(a) * dtype(0.5))  # NaN stays NaN, as np.sign
    start = np.arange(7, dtype=dtype)
    result = cuda.to_device(start)
    _arrays.add_scaled_sign(cuda.to_device(a), dtype(0.5), result)
    np.testing.assert_array_equal(result.copy_to_host(), start + np.sign(a) * dtype(0.5))
    _arrays.add_scaled_sign(cuda.to_device(a[:0]), dtype(0.5), cuda.to_device(start[:0]))  # empty: no launch


@pytest.mark.cuda
@pytest.mark.parametrize("name", REGULARIZERS)
def test_device_penalty_and_gradient(cuda_backend, dtype, name, monkeypatch):
    from numba import cuda

    from fastdl.ops import _nn_on_device

    rng = np.random.default_rng(2)
    weights = _weights(rng, dtype, (2, 3, 2))
    weights[0, 1, 1] = 0.0  # sign(0) = 0 on the device too
    regularizer = REGULARIZERS[name]()
    penalty, gradient = _reference(name, weights)
    device_weights = cuda.to_device(weights)
    assert regularizer(device_weights) == pytest.approx(penalty, rel=1e-6 if dtype == np.float32 else 1e-12)
    assert _nn_on_device.sum_of_abs(device_weights) == pytest.approx(np.abs(weights.astype(np.float64)).sum(),
                                                                    rel=1e-6 if dtype == np.float32 else 1e-12)
    before = rng.standard_normal(weights.shape).astype(dtype)
    grad = cuda.to_device(before)
    calls = []  # the gradient is added on the device: nothing is assigned from the host
    monkeypatch.setattr(_device, "assign", lambda *args: calls.append(args))
    add_grad(regularizer, device_weights, grad)
    assert not calls
    np.testing.assert_allclose(grad.copy_to_host(), before + gradient, **_tol(dtype))


@pytest.mark.cuda
def test_models_with_l1_train_on_cuda_as_on_the_cpu(cuda_backend, dtype):
    rng = np.random.default_rng(3)
    x, y = rng.random((6, 4, 4, 1)), rng.integers(0, 3, 6)
    results = []
    for backend in ("numpy", "cuda"):
        model = nn.Sequential([
            nn.Input((4, 4, 1)),
            nn.Conv2D(2, 3, activation="relu", kernel_regularizer=L1(0.01)),
            nn.Flatten(),
            nn.Dense(3, activation="softmax", kernel_regularizer=L1L2(0.01, 0.02)),
        ], seed=4, dtype=dtype, backend=backend)
        model.compile(nn.SGD(0.1), "sparse_categorical_crossentropy")
        history = model.fit(x, y, epochs=2, batch_size=3, verbose=0)
        results.append((history.history["loss"], model.get_weights()))
    tol = 2e-5 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=tol, atol=tol)
    for cpu, gpu in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(gpu, cpu, rtol=tol, atol=tol)
