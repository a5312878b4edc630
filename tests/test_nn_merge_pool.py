"""fastdl.nn's merge layers (Add, Concatenate) and the average and global pooling layers
(AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D): values against slow references,
backward passes against finite differences in float64, a functional model with a skip connection
and two concatenated branches that trains alike on every CPU backend and on cuda, Keras' names,
and bad input. The cuda tests run on numba's simulator where no device is present: tiny shapes."""

import importlib

import numpy as np
import pytest

import naive
from conftest import RTOL, ready_backends
from fastdl import nn
from fastdl.backend import PACKAGES
from fastdl.ops.pool import pool_geometry


def _check_gradients(layer, input_shapes, rng, backend, batch=2):
    """The backward pass against finite differences of sum(out * weights) in float64, for a layer of
    one input (input_shapes a shape) or several (a list of shapes)."""
    multi = isinstance(input_shapes, list)
    shapes = input_shapes if multi else [input_shapes]
    layer.backend = backend
    layer.build(input_shapes, rng, np.float64)
    # Values at least 0.05 apart: no near-ties for the maxima, so finite differences never cross a switch.
    xs = [(rng.permutation(batch * int(np.prod(s))).reshape(batch, *s) * 0.05 - 1.0) for s in shapes]

    def call():
        return layer.forward(xs if multi else xs[0], training=True)

    out = call()
    weights = rng.standard_normal(out.shape)
    dxs = layer.backward(weights.copy())
    dxs = dxs if multi else [dxs]
    assert len(dxs) == len(xs)
    for x, dx in zip(xs, dxs):
        assert dx.shape == x.shape
        np.testing.assert_allclose(dx, naive.numeric_grad(lambda: float((call() * weights).sum()), x),
                                   rtol=1e-6, atol=1e-8)


# Values -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("pool_size, strides, padding",
                         [(2, None, "valid"), (3, 2, "same"), ((2, 3), 1, "same"), (2, 3, "valid")])
def test_average_pooling_values(backend, dtype, rng, pool_size, strides, padding):
    x = rng.normal(size=(2, 5, 7, 3)).astype(dtype)
    layer = nn.AveragePooling2D(pool_size, strides, padding, backend=backend)
    out = layer(x)
    assert out.dtype == dtype and out.shape[1:] == layer.output_shape
    np.testing.assert_allclose(out, naive.avg_pool2d(x, pool_size, strides, padding), rtol=RTOL[dtype],
                               atol=RTOL[dtype])


@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling_values(backend, dtype, rng, keepdims):
    x = rng.normal(size=(3, 4, 5, 2)).astype(dtype)
    x64 = x.astype(np.float64)
    for layer, reference in ((nn.GlobalAveragePooling2D, np.mean), (nn.GlobalMaxPooling2D, np.max)):
        got = layer(keepdims=keepdims, backend=backend)(x)
        want = reference(x64, axis=(1, 2), keepdims=keepdims)
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=RTOL[dtype])


def test_merge_values(backend, dtype, rng):
    a, b, c = (rng.normal(size=(2, 3, 4, 2)).astype(dtype) for _ in range(3))
    total = nn.Add(backend=backend)([a, b, c])
    assert total.dtype == dtype
    np.testing.assert_array_equal(total, (a + b) + c)  # left to right, in the inputs' dtype
    np.testing.assert_array_equal(nn.Add()([a]), a)
    for axis in (-1, 3, 1, 2, -3):
        shape = list(a.shape)
        shape[axis] = 5
        other = rng.normal(size=shape).astype(dtype)
        joined = nn.Concatenate(axis, backend=backend)([a, other])
        np.testing.assert_array_equal(joined, np.concatenate([a, other], axis=axis))
    # Layers called on arrays outside a model take their dtype; the functional forms too.
    np.testing.assert_array_equal(nn.concatenate([a, b], axis=1), np.concatenate([a, b], axis=1))
    np.testing.assert_array_equal(nn.add([a, b]), a + b)


# Gradients (float64, finite differences) -------------------------------------------------------


@pytest.mark.parametrize("pool_size, strides, padding",
                         [(2, None, "valid"), (3, 2, "same"), ((2, 3), 1, "same"), (2, 3, "valid")])
def test_average_pooling_gradients(backend, rng, pool_size, strides, padding):
    _check_gradients(nn.AveragePooling2D(pool_size, strides, padding), (5, 4, 2), rng, backend)


@pytest.mark.parametrize("layer", [nn.GlobalAveragePooling2D, nn.GlobalMaxPooling2D])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling_gradients(backend, rng, layer, keepdims):
    _check_gradients(layer(keepdims=keepdims), (3, 4, 2), rng, backend)


def test_add_gradients(backend, rng):
    _check_gradients(nn.Add(), [(3, 2), (3, 2), (3, 2)], rng, backend)


@pytest.mark.parametrize("axis, shapes", [(-1, [(2, 3, 1), (2, 3, 4)]), (1, [(1, 3, 2), (3, 3, 2), (2, 3, 2)]),
                                          (2, [(2, 2, 2), (2, 1, 2)]), (-1, [(5,), (2,)])])
def test_concatenate_gradients(backend, rng, axis, shapes):
    _check_gradients(nn.Concatenate(axis), shapes, rng, backend)


# A functional model: a residual block and two concatenated branches ----------------------------


def _skip_and_branches(backend, dtype=np.float32, size=6, seed=0):
    images = nn.Input((size, size, 2))
    h = nn.Conv2D(2, 3, padding="same", activation="relu")(images)
    h = nn.Add()([images, h])  # the skip connection
    left = nn.Conv2D(3, 1, activation="relu")(h)
    right = nn.AveragePooling2D(3, 1, padding="same")(nn.Conv2D(2, 3, padding="same", activation="tanh")(h))
    h = nn.Concatenate()([left, right])  # (size, size, 5)
    h = nn.Concatenate(axis=1)([nn.GlobalAveragePooling2D(keepdims=True)(h), nn.GlobalMaxPooling2D(keepdims=True)(h)])
    h = nn.AveragePooling2D((2, 1))(h)
    outputs = nn.Dense(3, activation="softmax")(nn.Flatten()(h))
    return nn.Model(images, outputs, seed=seed, dtype=dtype, backend=backend)


def _data(n, size, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.random((n, size, size, 2))
    # Classes a small model learns: which quarter of the image is brightest, of three.
    y = np.argmax(np.stack([x[:, :size // 2, :size // 2].mean((1, 2, 3)), x[:, size // 2:, :size // 2].mean((1, 2, 3)),
                            x[:, :, size // 2:].mean((1, 2, 3)) - 0.02]), axis=0)
    return x, y


def test_keras_layer_names():
    model = _skip_and_branches("numpy")
    names = [layer.name for layer in model.layers]
    for name in ("add", "concatenate", "concatenate_1", "average_pooling2d", "average_pooling2d_1",
                 "global_average_pooling2d", "global_max_pooling2d"):
        assert name in names
    assert nn.AvgPool2D is nn.AveragePooling2D and nn.GlobalAvgPool2D is nn.GlobalAveragePooling2D
    assert nn.GlobalMaxPool2D is nn.GlobalMaxPooling2D
    assert "Add" in nn.__all__ and "GlobalMaxPooling2D" in nn.__all__
    summary = model.summary(print_fn=lambda _: None)
    assert "add (Add)" in summary and "input, conv2d" in summary


def test_model_trains_alike_on_every_cpu_backend():
    x, y = _data(24, 6)
    results = {}
    for backend in ready_backends():
        model = _skip_and_branches(backend, np.float64)
        model.compile(nn.Adam(0.01), "sparse_categorical_crossentropy")
        history = model.fit(x, y, epochs=8, batch_size=8, verbose=0)
        results[backend] = history.history["loss"], model.get_weights()
    losses, weights = results["numpy"]
    assert losses[-1] < 0.9 * losses[0]
    for backend, (other_losses, other_weights) in results.items():
        np.testing.assert_allclose(other_losses, losses, rtol=1e-9, err_msg=backend)
        for got, want in zip(other_weights, weights):
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, err_msg=backend)


def test_frozen_start_returns_no_input_gradients(rng):
    """Layers with nothing that learns before them compute no input gradient (needs_input_grad)."""
    model = _skip_and_branches("numpy")
    for layer in model.layers:
        if isinstance(layer, nn.Conv2D):
            layer.trainable = False
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = _data(4, 6)
    before = model.get_weights()
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    merges = [layer for layer in model.layers if isinstance(layer, (nn.Add, nn.Concatenate, nn.AveragePooling2D))]
    assert merges and not any(layer.needs_input_grad for layer in merges)
    assert not np.array_equal(model.get_weights()[-1], before[-1])


# Bad input --------------------------------------------------------------------------------------


def test_mismatched_merge_shapes_name_them():
    a, b = nn.Input((4, 4, 3)), nn.Input((4, 4, 2))
    with pytest.raises(ValueError, match=r"Add needs inputs of one shape, got \(batch, 4, 4, 3\), \(batch, 4, 4, 2\)"):
        nn.Add()([a, b])
    with pytest.raises(ValueError, match=r"axis 1 .* every other axis, got \(batch, 4, 4, 3\), \(batch, 4, 4, 2\)"):
        nn.Concatenate(axis=1)([a, b])
    with pytest.raises(ValueError, match=r"as many axes, got \(batch, 4, 4, 3\), \(batch, 48\)"):
        nn.Concatenate()([a, nn.Flatten()(a)])
    with pytest.raises(ValueError, match="axis 0"):
        nn.Concatenate(axis=0)([a, a])
    with pytest.raises(ValueError, match="axis -5"):
        nn.Concatenate(axis=-5)([a, a])
    with pytest.raises(TypeError, match="axis must be an integer"):
        nn.Concatenate(axis=1.0)
    with pytest.raises(ValueError, match=r"list of tensors, e.g. Add\(\)\(\[a, b\]\); got one tensor of shape "
                                         r"\(batch, 4, 4, 3\)"):
        nn.Add()(a)
    with pytest.raises(ValueError, match="list of tensors"):
        nn.Sequential([nn.Input((3,)), nn.Add()]).build()


def test_merge_arrays_checked_at_run_time(rng):
    add = nn.Add()
    a = rng.random((2, 3))
    add([a, a])
    with pytest.raises(ValueError, match=r"expects inputs of shape \(batch, 3\), got \(2, 4\)"):
        add([a, rng.random((2, 4))])
    with pytest.raises(ValueError, match="built for a list of 2 inputs, got 3 arrays"):
        add([a, a, a])
    with pytest.raises(ValueError, match=r"different batch sizes \[2, 3\]"):
        add([a, rng.random((3, 3))])
    with pytest.raises(ValueError, match=r"backward: the output gradient has 5 samples, the forward pass had 2"):
        add.backward(rng.random((5, 3)))
    concat = nn.Concatenate()
    concat([a, a])
    with pytest.raises(ValueError, match=r"Concatenate backward expects inputs of shape \(batch, 6\), got \(2, 5\)"):
        concat.backward(rng.random((2, 5)))


def test_pool_larger_than_the_image_names_the_shapes():
    images = nn.Input((2, 4, 1))
    with pytest.raises(ValueError, match=r"pool_size \(3, 3\) is larger than the input's \(2, 4\) image .*'valid'"):
        nn.AveragePooling2D(3)(images)
    assert nn.AveragePooling2D(3, padding="same")(images).shape == (1, 2, 1)  # "same" pads instead
    with pytest.raises(ValueError, match=r"GlobalAveragePooling2D expects images .* got \(batch, 8\)"):
        nn.GlobalAveragePooling2D()(nn.Input((8,)))
    with pytest.raises(ValueError, match="padding"):
        nn.AveragePooling2D(2, padding="full")


# cuda (numba's simulator where no device is present) --------------------------------------------


def _gpu_pool():
    return importlib.import_module(f"{PACKAGES['cuda']}.pool")


@pytest.mark.cuda
@pytest.mark.parametrize("case", [((4, 4), 3, 1, "valid"), ((4, 5), 3, 2, "same"), ((4, 4), 2, 3, "valid"),
                                  ((5, 3), (2, 3), (1, 2), "same")], ids=str)
def test_cuda_avg_pool_kernels_match_the_reference_to_the_bit(cuda_backend, dtype, case):
    from numba import cuda

    (h, w), pool_size, strides, padding = case
    shape = (2, h, w, 2)
    *window, out_h, out_w = pool_geometry(shape, pool_size, strides, padding)
    rng = np.random.default_rng(3)
    x = (rng.normal(size=shape) * np.exp(rng.uniform(-8, 8, shape))).astype(dtype)
    dout = rng.normal(size=(2, out_h, out_w, 2)).astype(dtype)
    reference = importlib.import_module(f"{PACKAGES['numpy']}.pool")
    want_out, want_dx = np.empty(dout.shape, dtype), np.empty(shape, dtype)
    reference.avg_pool2d_forward(x, want_out, *window, 1)
    reference.avg_pool2d_backward(dout, want_dx, *window, 1)
    d_out, d_dx = cuda.to_device(np.full(dout.shape, np.nan, dtype)), cuda.to_device(np.full(shape, np.nan, dtype))
    _gpu_pool().avg_pool2d_forward(cuda.to_device(x), d_out, *window, 1)
    _gpu_pool().avg_pool2d_backward(cuda.to_device(dout), d_dx, *window, 1)
    # The same sums and quotients in the same order and dtype as the reference: the same bits.
    np.testing.assert_array_equal(d_out.copy_to_host(), want_out)
    np.testing.assert_array_equal(d_dx.copy_to_host(), want_dx)


@pytest.mark.cuda
def test_cuda_column_copies(cuda_backend, dtype):
    from numba import cuda

    rng = np.random.default_rng(4)
    block = rng.normal(size=(3, 7)).astype(dtype)
    part = rng.normal(size=(3, 2)).astype(dtype)
    d_block = cuda.to_device(block)
    arrays = importlib.import_module(f"{PACKAGES['cuda']}._arrays")
    arrays.place_columns(cuda.to_device(part), d_block, 4)
    want = block.copy()
    want[:, 4:6] = part
    np.testing.assert_array_equal(d_block.copy_to_host(), want)
    d_part = cuda.to_device(np.full((3, 3), np.nan, dtype))
    arrays.take_columns(d_block, 1, d_part)
    np.testing.assert_array_equal(d_part.copy_to_host(), want[:, 1:4])


@pytest.mark.cuda
def test_cuda_avg_pool_op(cuda_backend, rng):
    from fastdl.ops.pool import avg_pool2d, avg_pool2d_grad

    x = rng.normal(size=(1, 4, 3, 2))
    dout = rng.normal(size=(1, 2, 2, 2))
    np.testing.assert_array_equal(avg_pool2d(x, 2, padding="same", backend="cuda"),
                                  avg_pool2d(x, 2, padding="same", backend="numpy"))
    np.testing.assert_array_equal(avg_pool2d_grad(x, dout, 2, padding="same", backend="cuda"),
                                  avg_pool2d_grad(x, dout, 2, padding="same", backend="numpy"))


@pytest.mark.cuda
def test_cuda_model_trains_as_on_the_cpu(cuda_backend):
    from fastdl._device import is_device

    x, y = _data(4, 2)
    results = {}
    for backend in ("numpy", "cuda"):
        model = _skip_and_branches(backend, size=2, seed=3)
        model.compile("adam", "sparse_categorical_crossentropy")
        history = model.fit(x, y, epochs=1, batch_size=2, verbose=0)
        results[backend] = history.history["loss"], model.get_weights(), model.predict(x)
    dense = next(layer for layer in model.layers if isinstance(layer, nn.Dense))
    assert model.on_device and is_device(dense.kernel.value)
    (cpu_losses, cpu_weights, cpu_pred), (gpu_losses, gpu_weights, gpu_pred) = results["numpy"], results["cuda"]
    np.testing.assert_allclose(gpu_losses, cpu_losses, rtol=2e-5)
    for got, want in zip(gpu_weights + [gpu_pred], cpu_weights + [cpu_pred]):
        assert not is_device(got)
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
