"""fastdl.ops.dense, dense_grad and activation_grad against the naive loops, finite differences
and PyTorch."""

import contextlib
import importlib
import threading
import warnings

import numpy as np
import pytest

import fastdl
import fastdl._parallel
import naive
from conftest import RTOL, ready_backends
from fastdl.ops.dense import activation_grad, dense, dense_grad

ACTIVATIONS = [None, "linear", "relu", "sigmoid", "tanh", "leaky_relu"]
SHAPES = [(1, 1, 1), (1, 5, 3), (7, 4, 6), (13, 9, 2)]  # (n_samples, in_features, units)


def _tol(dtype, in_features):
    return dict(rtol=RTOL[dtype] * max(1, in_features), atol=RTOL[dtype] * max(1, in_features))


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_matches_naive(backend, dtype, rng, activation, use_bias, shape):
    n, d, m = shape
    x = rng.normal(size=(n, d)).astype(dtype)
    kernel = rng.normal(size=(d, m)).astype(dtype)
    bias = rng.normal(size=m).astype(dtype) if use_bias else None
    out = dense(x, kernel, bias, activation, backend=backend)
    assert out.dtype == dtype and out.shape == (n, m)
    np.testing.assert_allclose(out, naive.dense(x, kernel, bias, activation), **_tol(dtype, d))


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_grad_matches_naive(backend, dtype, rng, shape):
    n, d, m = shape
    x = rng.normal(size=(n, d)).astype(dtype)
    kernel = rng.normal(size=(d, m)).astype(dtype)
    dout = rng.normal(size=(n, m)).astype(dtype)
    dx, dkernel, dbias = dense_grad(x, kernel, dout, backend=backend)
    ex, ek, eb = naive.dense_grad(x, kernel, dout)
    for got, expected in ((dx, ex), (dkernel, ek), (dbias, eb)):
        assert got.dtype == dtype and got.shape == expected.shape
        np.testing.assert_allclose(got, expected, **_tol(dtype, max(n, m)))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_grad_matches_formula(backend, dtype, rng, activation):
    pre = rng.normal(size=(6, 5))
    out = naive.dense(pre, np.eye(5), None, activation).astype(dtype)
    dout = rng.normal(size=(6, 5)).astype(dtype)
    derivative = {
        None: np.ones_like(pre), "linear": np.ones_like(pre), "relu": (pre > 0).astype(float),
        "sigmoid": out * (1.0 - out), "tanh": 1.0 - out.astype(float) ** 2,
        "leaky_relu": np.where(pre > 0, 1.0, 0.2),
    }[activation]
    dpre = activation_grad(out, dout, activation, backend=backend)
    assert dpre.dtype == dtype
    np.testing.assert_allclose(dpre, dout * derivative, rtol=RTOL[dtype], atol=RTOL[dtype])


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradients_match_finite_differences(backend, rng, activation):
    x = rng.normal(size=(4, 5))
    kernel = rng.normal(size=(5, 3))
    bias = rng.normal(size=3)
    weights = rng.normal(size=(4, 3))

    def loss(x, kernel, bias):
        return np.sum(weights * dense(x, kernel, bias, activation, backend=backend))

    out = dense(x, kernel, bias, activation, backend=backend)
    dpre = activation_grad(out, weights, activation, backend=backend)
    grads = dense_grad(x, kernel, dpre, backend=backend)
    params = [x, kernel, bias]
    eps = 1e-6
    for which, analytic in enumerate(grads):
        numeric = np.empty_like(params[which])
        for index in np.ndindex(params[which].shape):
            bumped = [p.copy() for p in params]
            bumped[which][index] += eps
            up = loss(*bumped)
            bumped[which][index] -= 2 * eps
            numeric[index] = (up - loss(*bumped)) / (2 * eps)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_sigmoid_and_tanh_never_overflow(backend, dtype):
    x = np.array([[-1e4], [-100.0], [0.0], [100.0], [1e4]], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = dense(x, np.ones((1, 1), dtype=dtype), activation="sigmoid", backend=backend)
        tanh = dense(x, np.ones((1, 1), dtype=dtype), activation="tanh", backend=backend)
    np.testing.assert_allclose(out[:, 0], [0.0, 3.720076e-44, 0.5, 1.0, 1.0], rtol=1e-6, atol=1e-40)
    np.testing.assert_array_equal(tanh[:, 0], [-1.0, -1.0, 0.0, 1.0, 1.0])


@pytest.mark.parametrize("split", ["whole", "rows", "depth"])
def test_backends_agree_and_threads_do_not_matter(dtype, rng, monkeypatch, split):
    # Small inputs run on one thread; lower the threshold so the row ranges run in parallel here.
    # Rows are split over fastdl's threads only while a fastdl region holds BLAS to one thread
    # (training a convolutional model); otherwise BLAS threads the whole op. "depth": blocks of 16
    # rows by 3 blocks of 3 or 4 inputs (the forward pass of a Flatten's many inputs).
    monkeypatch.setattr(fastdl._parallel, "MIN_WORK_PER_THREAD", 1)
    dense_module = importlib.import_module("fastdl.ops.dense")
    if split == "depth":
        monkeypatch.setattr(dense_module, "ROW_BLOCK", 16)
        monkeypatch.setattr(dense_module, "DEPTH_BLOCK", 3)
        monkeypatch.setattr(dense_module, "DEPTH_MIN_WORK", 0)
    x = rng.normal(size=(37, 11)).astype(dtype)
    kernel = rng.normal(size=(11, 9)).astype(dtype)
    bias = rng.normal(size=9).astype(dtype)
    dout = rng.normal(size=(37, 9)).astype(dtype)
    results = {}
    for name in ready_backends():
        for threads in (1, 2, 3):
            fastdl.set_num_threads(threads)
            with fastdl._parallel.single_threaded_blas() if split != "whole" else contextlib.nullcontext():
                out = dense(x, kernel, bias, "sigmoid", backend=name)
                dpre = activation_grad(out, dout, "sigmoid", backend=name)
                grads = dense_grad(x, kernel, dpre, backend=name)
            if name in results:
                np.testing.assert_array_equal(out, results[name][0])
                np.testing.assert_array_equal(dpre, results[name][1])
            results[name] = (out, dpre, grads)
    first_out, first_dpre, first_grads = next(iter(results.values()))
    for out, dpre, grads in results.values():
        np.testing.assert_allclose(out, first_out, rtol=RTOL[dtype], atol=RTOL[dtype])
        np.testing.assert_allclose(dpre, first_dpre, rtol=RTOL[dtype], atol=RTOL[dtype])
        for grad, first in zip(grads, first_grads):
            np.testing.assert_allclose(grad, first, rtol=RTOL[dtype], atol=RTOL[dtype])
    np.testing.assert_allclose(first_grads[1], x.T @ first_dpre, rtol=RTOL[dtype], atol=RTOL[dtype])
    np.testing.assert_allclose(first_out, naive.dense(x, kernel, bias, "sigmoid"), rtol=RTOL[dtype], atol=RTOL[dtype])
    assert dense_module._depth_blocks(*x.shape, kernel.shape[1], dtype) == (3 if split == "depth" else 1)


def test_another_threads_blas_hold_does_not_change_the_answer(backend, dtype, rng, monkeypatch):
    """A hold of BLAS to one thread (a CNN training or predicting) splits the Dense GEMMs of its own
    thread only: a Dense-only model beside it gives its answers to the bit."""
    dense_module = importlib.import_module("fastdl.ops.dense")
    monkeypatch.setattr(fastdl._parallel, "MIN_WORK_PER_THREAD", 1)
    monkeypatch.setattr(dense_module, "ROW_BLOCK", 16)
    monkeypatch.setattr(dense_module, "DEPTH_BLOCK", 3)  # a split of this thread's would cut 11 inputs
    monkeypatch.setattr(dense_module, "DEPTH_MIN_WORK", 0)
    x, kernel, bias = (rng.normal(size=shape).astype(dtype) for shape in ((37, 11), (11, 9), (9,)))
    fastdl.set_num_threads(2)
    alone = dense(x, kernel, bias, "sigmoid", backend=backend)
    held, release = threading.Event(), threading.Event()

    def holder():
        with fastdl._parallel.single_threaded_blas():
            held.set()
            release.wait(30)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(30) and fastdl._parallel.blas_held() and not fastdl._parallel.in_blas_hold()
        beside = dense(x, kernel, bias, "sigmoid", backend=backend)
    finally:
        release.set()
        thread.join()
    np.testing.assert_array_equal(beside, alone)
    with fastdl._parallel.single_threaded_blas():
        assert fastdl._parallel.in_blas_hold()
    assert not fastdl._parallel.in_blas_hold()


def test_input_types(backend, rng):
    x = rng.integers(0, 256, size=(3, 4)).astype(np.uint8)
    kernel = rng.normal(size=(4, 2))
    out = dense(x, kernel, backend=backend)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, naive.dense(x, kernel), rtol=1e-12)
    # float32 x with a float64 kernel computes in float64.
    assert dense(x.astype(np.float32), kernel, backend=backend).dtype == np.float64
    base = rng.normal(size=(6, 8))
    expected = naive.dense(base[::2, ::2], kernel, np.ones(2), "tanh")
    for variant in (base[::2, ::2], np.asfortranarray(base[::2, ::2]), base[::2, ::2].astype(">f8")):
        np.testing.assert_allclose(dense(variant, kernel, np.ones(2), "tanh", backend=backend), expected, rtol=1e-12)


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        ((np.zeros(3), np.zeros((3, 2))), {}, ValueError, r"x must be 2-D .* got shape \(3,\)"),
        ((np.zeros((2, 3)), np.zeros((4, 2))), {}, ValueError, r"x \(2, 3\) and kernel \(4, 2\)"),
        ((np.zeros((2, 3)), np.zeros((3, 2)), np.zeros(3)), {}, ValueError, r"kernel \(3, 2\) and bias \(3,\)"),
        ((np.zeros((2, 3)), np.zeros((3, 2)), np.zeros((1, 2))), {}, ValueError, "bias must be 1-D"),
        ((np.zeros((2, 3)), np.zeros((3, 2))), dict(activation="swishy"), ValueError, "unknown activation"),
        ((np.zeros((2, 3)), np.zeros((3, 2))), dict(activation=1), TypeError, "activation"),
        ((np.full((2, 3), np.nan), np.zeros((3, 2))), {}, ValueError, "x contains NaN"),
        ((np.zeros((2, 3)), np.full((3, 2), np.inf)), {}, ValueError, "kernel contains NaN or infinity"),
        ((np.zeros((2, 3)), np.zeros((3, 2)), np.array([0.0, np.nan])), {}, ValueError, "bias contains NaN"),
        ((np.zeros((0, 3)), np.zeros((3, 2))), {}, ValueError, "empty"),
        ((np.zeros((2, 3), dtype=complex), np.zeros((3, 2))), {}, TypeError, "real"),
        ((np.zeros((2, 3)), np.zeros((3, 2))), dict(backend="fortran"), ValueError, "unknown backend"),
    ],
)
def test_bad_input(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        dense(*args, **kwargs)


def test_bad_grad_input():
    with pytest.raises(ValueError, match=r"dout must have shape \(2, 2\) .* got \(2, 3\)"):
        dense_grad(np.zeros((2, 3)), np.zeros((3, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"x \(2, 3\) and kernel \(4, 2\)"):
        dense_grad(np.zeros((2, 3)), np.zeros((4, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="dout contains NaN"):
        dense_grad(np.zeros((2, 3)), np.zeros((3, 2)), np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match=r"out \(2, 2\) and dout \(2, 3\)"):
        activation_grad(np.zeros((2, 2)), np.zeros((2, 3)), "relu")
    with pytest.raises(ValueError, match="unknown activation"):
        activation_grad(np.zeros((2, 2)), np.zeros((2, 2)), "geluu")


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_matches_pytorch(backend, rng, activation):
    torch = pytest.importorskip("torch")
    x = rng.normal(size=(6, 7))
    kernel = rng.normal(size=(7, 4))
    bias = rng.normal(size=4)
    dout = rng.normal(size=(6, 4))
    xt = torch.tensor(x, requires_grad=True)
    kt = torch.tensor(kernel.T.copy(), requires_grad=True)  # torch stores (out, in)
    bt = torch.tensor(bias, requires_grad=True)
    outt = torch.nn.functional.linear(xt, kt, bt)
    if activation == "leaky_relu":
        outt = torch.nn.functional.leaky_relu(outt, 0.2)
    elif activation not in (None, "linear"):
        outt = getattr(torch, activation)(outt)
    outt.backward(torch.tensor(dout))
    out = dense(x, kernel, bias, activation, backend=backend)
    np.testing.assert_allclose(out, outt.detach().numpy(), rtol=1e-12, atol=1e-12)
    dx, dkernel, dbias = dense_grad(x, kernel, activation_grad(out, dout, activation, backend=backend),
                                    backend=backend)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dkernel, kt.grad.numpy().T, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dbias, bt.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("alpha", [0.0, 0.01, 0.3, 1.0])
def test_leaky_relu_slope(backend, dtype, rng, alpha):
    """alpha scales the negative side in both passes (0 is ReLU); a negative slope is refused."""
    z = rng.normal(size=(5, 4)).astype(dtype)
    out = dense(z, np.eye(4, dtype=dtype), activation="leaky_relu", alpha=alpha, backend=backend)
    np.testing.assert_allclose(out, np.where(z >= 0, z, dtype(alpha) * z), rtol=RTOL[dtype])
    dout = rng.normal(size=(5, 4)).astype(dtype)
    dpre = activation_grad(out, dout, "leaky_relu", backend=backend, alpha=alpha)
    np.testing.assert_allclose(dpre, np.where(out > 0, dout, dtype(alpha) * dout), rtol=RTOL[dtype])
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0"):
        dense(z, np.eye(4, dtype=dtype), activation="leaky_relu", alpha=-0.1, backend=backend)
