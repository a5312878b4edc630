"""fastdl.ops.max_pool2d, avg_pool2d and their gradients against the naive loops, finite differences
and PyTorch."""

import numpy as np
import pytest

import fastdl
import fastdl._parallel
import naive
from conftest import RTOL, ready_backends
from fastdl.ops.pool import avg_pool2d, avg_pool2d_grad, max_pool2d, max_pool2d_grad, pool_geometry

# (input shape, pool_size, strides, padding): odd sizes, batch 1, overlapping and gapped windows.
CONFIGS = [
    ((1, 1, 1, 1), 1, None, "valid"),
    ((2, 4, 4, 3), 2, None, "valid"),
    ((1, 7, 5, 2), 3, 1, "valid"),
    ((3, 7, 9, 1), 2, 3, "valid"),
    ((2, 6, 5, 4), (3, 2), (1, 2), "valid"),
    ((1, 5, 7, 3), 2, None, "same"),
    ((2, 7, 6, 2), 3, 2, "same"),
    ((1, 8, 5, 3), 3, 1, "same"),
    ((2, 5, 5, 2), 1, 3, "same"),
    ((1, 9, 4, 1), (2, 3), (3, 1), "same"),
]


def _random_configs(n_configs, seed):
    """Random configurations: pool sizes 1-3, strides 1-3, both paddings, small odd shapes."""
    gen = np.random.default_rng(seed)
    configs = []
    while len(configs) < n_configs:
        shape = (int(gen.integers(1, 3)), int(gen.integers(1, 9)), int(gen.integers(1, 9)), int(gen.integers(1, 4)))
        pool = (int(gen.integers(1, 4)), int(gen.integers(1, 4)))
        strides = (int(gen.integers(1, 4)), int(gen.integers(1, 4)))
        padding = ["valid", "same"][int(gen.integers(2))]
        if padding == "valid" and (pool[0] > shape[1] or pool[1] > shape[2]):
            continue
        configs.append((shape, pool, strides, padding))
    return configs


ALL_CONFIGS = CONFIGS + _random_configs(14, seed=4)


def _ids(config):
    shape, pool, strides, padding = config
    return f"{'x'.join(map(str, shape))}-p{pool}-s{strides}-{padding}".replace(" ", "")


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=_ids)
def test_matches_naive(backend, dtype, rng, config):
    shape, pool, strides, padding = config
    x = rng.normal(size=shape).astype(dtype)
    out = max_pool2d(x, pool, strides, padding, backend=backend)
    expected = naive.max_pool2d(x, pool, strides, padding)
    assert out.dtype == dtype
    assert out.shape == expected.shape
    # A maximum is one of the inputs: exact.
    np.testing.assert_array_equal(out, expected)
    dout = rng.normal(size=out.shape).astype(dtype)
    dx = max_pool2d_grad(x, dout, pool, strides, padding, backend=backend)
    assert dx.dtype == dtype and dx.shape == x.shape
    np.testing.assert_allclose(dx, naive.max_pool2d_grad(x, dout, pool, strides, padding),
                               rtol=RTOL[dtype], atol=RTOL[dtype])


@pytest.mark.parametrize("config", CONFIGS[1:], ids=_ids)
def test_ties_send_gradient_to_first_maximum_only(backend, dtype, rng, config):
    shape, pool, strides, padding = config
    # Few distinct values: most windows hold several maxima.
    x = rng.integers(0, 2, size=shape).astype(dtype)
    dout = rng.uniform(1, 2, size=naive.max_pool2d(x, pool, strides, padding).shape).astype(dtype)
    dx = max_pool2d_grad(x, dout, pool, strides, padding, backend=backend)
    np.testing.assert_allclose(dx, naive.max_pool2d_grad(x, dout, pool, strides, padding),
                               rtol=RTOL[dtype], atol=RTOL[dtype])
    # Nothing is lost or duplicated: every window's gradient lands once.
    np.testing.assert_allclose(dx.sum(), dout.astype(np.float64).sum(), rtol=RTOL[dtype])


def test_constant_input_gradient_goes_to_each_windows_top_left(backend):
    x = np.zeros((1, 4, 6, 2))
    dout = np.ones((1, 2, 3, 2))
    dx = max_pool2d_grad(x, dout, 2, backend=backend)
    expected = np.zeros_like(x)
    expected[:, ::2, ::2] = 1.0
    np.testing.assert_array_equal(dx, expected)


def _distinct_values(rng, shape):
    """Values at least 0.1 apart: no near-ties, so finite differences never cross a switch."""
    return (rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1 - 1.0).astype(np.float64)


@pytest.mark.parametrize("config", [CONFIGS[2], CONFIGS[4], CONFIGS[6], CONFIGS[7]], ids=_ids)
def test_gradient_matches_finite_differences(backend, rng, config):
    shape, pool, strides, padding = config
    x = _distinct_values(rng, shape)
    weights = rng.normal(size=max_pool2d(x, pool, strides, padding, backend="numpy").shape)
    dx = max_pool2d_grad(x, weights, pool, strides, padding, backend=backend)
    eps = 1e-6
    numeric = np.empty_like(x)
    for index in np.ndindex(x.shape):
        bumped = x.copy()
        bumped[index] += eps
        up = np.sum(weights * max_pool2d(bumped, pool, strides, padding, backend=backend))
        bumped[index] -= 2 * eps
        down = np.sum(weights * max_pool2d(bumped, pool, strides, padding, backend=backend))
        numeric[index] = (up - down) / (2 * eps)
    np.testing.assert_allclose(dx, numeric, rtol=1e-6, atol=1e-8)


def test_backends_agree_and_threads_do_not_matter(dtype, rng, monkeypatch):
    # Small inputs run on one thread; lower the threshold so the parallel loops run here.
    monkeypatch.setattr(fastdl._parallel, "MIN_WORK_PER_THREAD", 1)
    x = rng.normal(size=(5, 13, 11, 6)).astype(dtype)
    dout = rng.normal(size=(5, 6, 5, 6)).astype(dtype)
    results = {}
    for name in ready_backends():
        for threads in (1, 2, 3):
            fastdl.set_num_threads(threads)
            out = max_pool2d(x, 3, 2, "valid", backend=name)
            dx = max_pool2d_grad(x, dout, 3, 2, "valid", backend=name)
            if name in results:
                # One backend gives the same bits on any number of threads.
                np.testing.assert_array_equal(out, results[name][0])
                np.testing.assert_array_equal(dx, results[name][1])
            results[name] = (out, dx)
    first_out, first_dx = next(iter(results.values()))
    for out, dx in results.values():
        np.testing.assert_array_equal(out, first_out)
        # Overlapping windows may add into a cell in another order on another backend.
        np.testing.assert_allclose(dx, first_dx, rtol=RTOL[dtype], atol=RTOL[dtype])


def test_input_types(backend, rng):
    x = rng.integers(0, 256, size=(2, 4, 4, 3)).astype(np.uint8)
    out = max_pool2d(x, backend=backend)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, naive.max_pool2d(x))
    # Non-contiguous, Fortran-order, big-endian and read-only inputs give the same answer.
    base = rng.normal(size=(2, 8, 6, 3))
    expected = naive.max_pool2d(base[:, ::2], 2, 1, "same")
    readonly = base[:, ::2].copy()
    readonly.flags.writeable = False
    for variant in (base[:, ::2], np.asfortranarray(base[:, ::2]), base[:, ::2].astype(">f8"), readonly):
        np.testing.assert_array_equal(max_pool2d(variant, 2, 1, "same", backend=backend), expected)


def test_strides_default_to_pool_size_and_same_shapes(rng):
    x = rng.normal(size=(1, 7, 8, 1))
    assert max_pool2d(x, 3).shape == (1, 2, 2, 1)
    assert max_pool2d(x, 3, padding="same").shape == (1, 3, 3, 1)
    assert max_pool2d(x, 2, 3, padding="same").shape == (1, 3, 3, 1)
    assert max_pool2d(x, (2, 3), padding="SAME").shape == (1, 4, 3, 1)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(x=np.zeros((4, 4, 3))), ValueError, r"4-D .* got shape \(4, 4, 3\)"),
        (dict(x=np.zeros((0, 4, 4, 3))), ValueError, "empty"),
        (dict(x=np.zeros((1, 2, 4, 1)), pool_size=3), ValueError, r"larger than .*\(2, 4\)"),
        (dict(x=np.zeros((1, 4, 4, 1)), strides=0), ValueError, "strides must be >= 1"),
        (dict(x=np.zeros((1, 4, 4, 1)), strides=1.5), TypeError, "strides"),
        (dict(x=np.zeros((1, 4, 4, 1)), strides=2**64), ValueError, "strides must be <= 2147483647"),
        (dict(x=np.zeros((1, 4, 4, 1)), pool_size=(2, 2, 2)), ValueError, "pool_size"),
        (dict(x=np.zeros((1, 4, 4, 1)), padding="full"), ValueError, "padding"),
        (dict(x=np.full((1, 2, 2, 1), np.nan)), ValueError, "NaN"),
        (dict(x=np.full((1, 2, 2, 1), np.inf)), ValueError, "infinity"),
        (dict(x=np.zeros((1, 2, 2, 1), dtype=complex)), TypeError, "real"),
        (dict(x=np.array([[[["a"]]]])), TypeError, "real"),
    ],
)
def test_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        max_pool2d(**kwargs)
    dout = np.zeros((1, 1, 1, 1))
    with pytest.raises(error, match=match):
        max_pool2d_grad(dout=dout, **kwargs)


def test_bad_dout():
    x = np.zeros((2, 4, 4, 3))
    with pytest.raises(ValueError, match=r"output shape \(2, 2, 2, 3\) .* got \(2, 2, 2, 1\)"):
        max_pool2d_grad(x, np.zeros((2, 2, 2, 1)))
    with pytest.raises(ValueError, match="dout contains NaN"):
        max_pool2d_grad(x, np.full((2, 2, 2, 3), np.nan))



@pytest.mark.parametrize("config", [c for c in ALL_CONFIGS if c[3] == "valid"], ids=_ids)
def test_matches_pytorch(backend, rng, config):
    torch = pytest.importorskip("torch")
    shape, pool, strides, padding = config
    x = _distinct_values(rng, shape)
    pool = pool if isinstance(pool, tuple) else (pool, pool)
    stride = pool if strides is None else (strides if isinstance(strides, tuple) else (strides, strides))
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    outt = torch.nn.functional.max_pool2d(xt, pool, stride)
    dout = rng.normal(size=tuple(outt.shape))
    outt.backward(torch.tensor(dout))
    out = max_pool2d(x, pool, strides, padding, backend=backend)
    np.testing.assert_array_equal(out, outt.detach().numpy().transpose(0, 2, 3, 1))
    dx = max_pool2d_grad(x, dout.transpose(0, 2, 3, 1), pool, strides, padding, backend=backend)
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-12, atol=1e-12)


# Average pooling --------------------------------------------------------------------------------


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=_ids)
def test_avg_pool_matches_naive(backend, dtype, rng, config):
    shape, pool, strides, padding = config
    x = rng.normal(size=shape).astype(dtype)
    out = avg_pool2d(x, pool, strides, padding, backend=backend)
    expected = naive.avg_pool2d(x, pool, strides, padding)
    assert out.dtype == dtype and out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=RTOL[dtype], atol=RTOL[dtype])
    dout = rng.normal(size=out.shape).astype(dtype)
    dx = avg_pool2d_grad(x, dout, pool, strides, padding, backend=backend)
    assert dx.dtype == dtype and dx.shape == x.shape
    np.testing.assert_allclose(dx, naive.avg_pool2d_grad(x, dout, pool, strides, padding),
                               rtol=RTOL[dtype], atol=RTOL[dtype])


def test_avg_pool_same_averages_image_cells_only(backend):
    """TensorFlow's "same": a window hanging over the edge averages the cells it holds (4x4 image,
    3x3 windows at stride 2: one padded row and column, at the bottom and right)."""
    x = np.arange(16.0).reshape(1, 4, 4, 1)
    out = avg_pool2d(x, 3, 2, "same", backend=backend)
    np.testing.assert_array_equal(out[0, :, :, 0], [[5.0, 6.5], [11.0, 12.5]])
    # The gradient of each window goes to its cells only, 1/count each.
    dx = avg_pool2d_grad(x, np.ones((1, 2, 2, 1)), 3, 2, "same", backend=backend)
    np.testing.assert_allclose(dx.sum(), 4.0, rtol=1e-12)
    np.testing.assert_allclose(dx[0, 3, 3, 0], 1 / 4)  # in the corner window only, of 2 x 2 cells


@pytest.mark.parametrize("config", [CONFIGS[2], CONFIGS[3], CONFIGS[6], CONFIGS[9]], ids=_ids)
def test_avg_pool_gradient_matches_finite_differences(backend, rng, config):
    shape, pool, strides, padding = config
    x = rng.normal(size=shape)
    weights = rng.normal(size=avg_pool2d(x, pool, strides, padding, backend="numpy").shape)
    dx = avg_pool2d_grad(x, weights, pool, strides, padding, backend=backend)
    eps = 1e-6
    numeric = np.empty_like(x)
    for index in np.ndindex(x.shape):
        bumped = x.copy()
        bumped[index] += eps
        up = np.sum(weights * avg_pool2d(bumped, pool, strides, padding, backend=backend))
        bumped[index] -= 2 * eps
        down = np.sum(weights * avg_pool2d(bumped, pool, strides, padding, backend=backend))
        numeric[index] = (up - down) / (2 * eps)
    np.testing.assert_allclose(dx, numeric, rtol=1e-6, atol=1e-8)


def test_avg_pool_backends_agree_to_the_bit_and_threads_do_not_matter(dtype, rng, monkeypatch):
    """Every backend sums each window (and each cell's shares) in one order in the arrays' dtype."""
    monkeypatch.setattr(fastdl._parallel, "MIN_WORK_PER_THREAD", 1)
    # A wide spread of magnitudes, so a different summation order would change bits.
    x = (rng.normal(size=(3, 9, 8, 5)) * np.exp(rng.uniform(-8, 8, (3, 9, 8, 5)))).astype(dtype)
    dout = (rng.normal(size=(3, 5, 4, 5)) * np.exp(rng.uniform(-8, 8, (3, 5, 4, 5)))).astype(dtype)
    results = {}
    for name in ready_backends():
        for threads in (1, 2, 3):
            fastdl.set_num_threads(threads)
            results[name, threads] = (avg_pool2d(x, 3, 2, "same", backend=name),
                                      avg_pool2d_grad(x, dout, 3, 2, "same", backend=name))
    first_out, first_dx = next(iter(results.values()))
    for key, (out, dx) in results.items():
        np.testing.assert_array_equal(out, first_out, err_msg=str(key))
        np.testing.assert_array_equal(dx, first_dx, err_msg=str(key))


@pytest.mark.parametrize("kwargs, error, match",
                         [(dict(x=np.zeros((1, 2, 4, 1)), pool_size=3), ValueError, r"larger than .*\(2, 4\)"),
                          (dict(x=np.zeros((4, 4, 3))), ValueError, r"4-D .* got shape \(4, 4, 3\)"),
                          (dict(x=np.zeros((1, 4, 4, 1)), padding="full"), ValueError, "padding"),
                          (dict(x=np.full((1, 2, 2, 1), np.nan)), ValueError, "NaN")])
def test_avg_pool_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        avg_pool2d(**kwargs)
    with pytest.raises(error, match=match):
        avg_pool2d_grad(dout=np.zeros((1, 1, 1, 1)), **kwargs)
    with pytest.raises(ValueError, match=r"avg_pool2d's output shape \(2, 2, 2, 3\) .* got \(2, 2, 2, 1\)"):
        avg_pool2d_grad(np.zeros((2, 4, 4, 3)), np.zeros((2, 2, 2, 1)))


@pytest.mark.parametrize("config", [c for c in ALL_CONFIGS if c[3] == "valid"] + [CONFIGS[7]], ids=_ids)
def test_avg_pool_matches_pytorch(backend, rng, config):
    """"valid", and "same" where its padding is even (PyTorch pads symmetrically; count_include_pad=False
    is TensorFlow's rule)."""
    torch = pytest.importorskip("torch")
    shape, pool, strides, padding = config
    x = rng.normal(size=shape)
    *window, _, _ = pool_geometry(shape, pool, strides, padding)
    pool_hw, stride, pad = window[:2], window[2:4], window[4:]
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    outt = torch.nn.functional.avg_pool2d(xt, pool_hw, stride, pad, count_include_pad=False)
    dout = rng.normal(size=tuple(outt.shape))
    outt.backward(torch.tensor(dout))
    out = avg_pool2d(x, pool, strides, padding, backend=backend)
    np.testing.assert_allclose(out, outt.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-12, atol=1e-12)
    dx = avg_pool2d_grad(x, dout.transpose(0, 2, 3, 1), pool, strides, padding, backend=backend)
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-12, atol=1e-12)
