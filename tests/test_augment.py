"""The affine resampling kernels of the augmentation layers (kernels/*/augment) and the layers
(fastdl/nn/layers_augment.py): every CPU backend and both float dtypes against the numpy
reference, the reference against a slow loop below and against scipy.ndimage, the backward
against the explicit transpose and finite differences, Keras 3's conventions, the layers in a
model (training only, seeds, saving), and the errors bad arguments raise."""

import math

import numpy as np
import pytest
from scipy import ndimage

from fastdl import backend as fastdl_backend
from fastdl import nn
from fastdl.nn.layers_augment import RandomFlip, RandomRotation, RandomTranslation, RandomZoom
from fastdl.ops.augment import (FILL_MODES, INTERPOLATIONS, affine_transform, affine_transform_grad)

# Against the numpy reference: the forward sums in float64 on every backend and rounds once; the
# compiled backwards add in the arrays' dtype (float32: a few roundings of the largest sums).
FORWARD_TOL = {np.float32: 1e-6, np.float64: 1e-13}
BACKWARD_TOL = {np.float32: 1e-5, np.float64: 1e-12}
MODES = [(fill, interp) for fill in FILL_MODES for interp in INTERPOLATIONS]


# A slow loop: Python floats, one tap at a time ---------------------------------------------------


def _source(k, size, fill_mode):
    """Integer coordinate k of an axis of `size` pixels as the fill mode finds it (None: fill)."""
    if 0 <= k < size:
        return k
    if fill_mode == "reflect":  # ... c b a | a b c ... : walk back and forth over the edge
        while not 0 <= k < size:
            k = -k - 1 if k < 0 else 2 * size - 1 - k
        return k
    if fill_mode == "wrap":
        return k % size
    if fill_mode == "nearest":
        return min(max(k, 0), size - 1)
    return None


def _taps(matrix, i, j, h, w, fill_mode, interpolation):
    """[(weight, row or None, column or None)] that output pixel (i, j) reads."""
    a0, a1, a2, b0, b1, b2 = (float(v) for v in matrix)
    x, y = a0 * j + a1 * i + a2, b0 * j + b1 * i + b2
    if interpolation == "nearest":
        return [(1.0, _source(math.floor(y + 0.5), h, fill_mode), _source(math.floor(x + 0.5), w, fill_mode))]
    x0, y0 = math.floor(x), math.floor(y)
    fx, fy = x - x0, y - y0
    return [(weight, _source(y0 + dy, h, fill_mode), _source(x0 + dx, w, fill_mode))
            for weight, dy, dx in [((1 - fy) * (1 - fx), 0, 0), ((1 - fy) * fx, 0, 1), (fy * (1 - fx), 1, 0),
                                   (fy * fx, 1, 1)]]


def naive_affine(images, matrices, fill_mode, fill_value, interpolation):
    n, h, w, c = images.shape
    out = np.zeros(images.shape)
    for s, i, j, ch in np.ndindex(n, h, w, c):
        total = 0.0
        for weight, row, col in _taps(matrices[s], i, j, h, w, fill_mode, interpolation):
            value = fill_value if row is None or col is None else float(images[s, row, col, ch])
            total += weight * value
        out[s, i, j, ch] = total
    return out


def naive_affine_grad(dout, matrices, fill_mode, interpolation):
    """The transpose, written out: each output pixel's gradient to the pixels it read."""
    n, h, w, c = dout.shape
    dx = np.zeros(dout.shape)
    for s, i, j, ch in np.ndindex(n, h, w, c):
        for weight, row, col in _taps(matrices[s], i, j, h, w, fill_mode, interpolation):
            if row is not None and col is not None:
                dx[s, row, col, ch] += weight * float(dout[s, i, j, ch])
    return dx


def random_matrices(rng, n, h, w, spread=1.0):
    """Rotations, zooms and shifts about the centre, reaching past the edges (and past twice the
    image, where reflect and wrap repeat)."""
    angle = rng.uniform(-math.pi, math.pi, n)
    zoom = rng.uniform(0.6, 2.5, n)
    shift = rng.uniform(-1.5, 1.5, (n, 2)) * spread * np.array([w, h])
    cos, sin = np.cos(angle) * zoom, np.sin(angle) * zoom
    cx, cy = (w - 1) / 2, (h - 1) / 2
    return np.stack([cos, -sin, cx - cos * cx + sin * cy + shift[:, 0],
                     sin, cos, cy - sin * cx - cos * cy + shift[:, 1]], axis=1)


@pytest.fixture
def case(rng):
    images = rng.normal(size=(3, 5, 6, 2))
    return images, random_matrices(rng, 3, 5, 6), rng.normal(size=images.shape)


# The reference against the slow loop and scipy ---------------------------------------------------


@pytest.mark.parametrize("fill_mode, interpolation", MODES)
def test_reference_matches_the_slow_loop(case, fill_mode, interpolation):
    images, matrices, dout = case
    got = affine_transform(images, matrices, fill_mode=fill_mode, fill_value=0.75,
                           interpolation=interpolation, backend="numpy")
    np.testing.assert_allclose(got, naive_affine(images, matrices, fill_mode, 0.75, interpolation),
                               rtol=1e-13, atol=1e-13)
    got = affine_transform_grad(dout, matrices, fill_mode=fill_mode, interpolation=interpolation, backend="numpy")
    np.testing.assert_allclose(got, naive_affine_grad(dout, matrices, fill_mode, interpolation),
                               rtol=1e-13, atol=1e-13)


# scipy's names for the same extensions ("grid-" ones: of the image, not of its sample points).
SCIPY_MODES = {"reflect": "reflect", "wrap": "grid-wrap", "constant": "grid-constant", "nearest": "nearest"}


@pytest.mark.parametrize("fill_mode", FILL_MODES)
def test_bilinear_matches_scipy_map_coordinates(case, fill_mode):
    images, matrices, _ = case
    n, h, w, c = images.shape
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    expected = np.empty_like(images)
    for s in range(n):
        a0, a1, a2, b0, b1, b2 = matrices[s]
        where = [b0 * cols + b1 * rows + b2, a0 * cols + a1 * rows + a2]
        for ch in range(c):
            expected[s, ..., ch] = ndimage.map_coordinates(images[s, ..., ch], where, order=1,
                                                           mode=SCIPY_MODES[fill_mode], cval=-2.0)
    got = affine_transform(images, matrices, fill_mode=fill_mode, fill_value=-2.0,
                           interpolation="bilinear", backend="numpy")
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


# Every backend against the reference --------------------------------------------------------------


@pytest.mark.parametrize("fill_mode, interpolation", MODES)
def test_kernels_match_the_reference(backend, dtype, case, fill_mode, interpolation):
    images, matrices, dout = (a.astype(dtype) if a.shape[-1] != 6 else a for a in case)
    want = affine_transform(images, matrices, fill_mode=fill_mode, fill_value=0.5,
                            interpolation=interpolation, backend="numpy")
    got = affine_transform(images, matrices, fill_mode=fill_mode, fill_value=0.5,
                           interpolation=interpolation, backend=backend)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, want, rtol=FORWARD_TOL[dtype], atol=FORWARD_TOL[dtype])
    want = affine_transform_grad(dout, matrices, fill_mode=fill_mode, interpolation=interpolation, backend="numpy")
    got = affine_transform_grad(dout, matrices, fill_mode=fill_mode, interpolation=interpolation, backend=backend)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, want, rtol=BACKWARD_TOL[dtype], atol=BACKWARD_TOL[dtype] * 4)


@pytest.mark.parametrize("fill_mode, interpolation", MODES)
def test_backward_is_the_transpose(backend, case, fill_mode, interpolation):
    """<A x, d> = <x, A^T d> (constant fill with 0: the map is linear), and central differences
    along random directions."""
    images, matrices, dout = case
    rng = np.random.default_rng(5)
    dx = affine_transform_grad(dout, matrices, fill_mode=fill_mode, interpolation=interpolation, backend=backend)
    out = affine_transform(images, matrices, fill_mode=fill_mode, fill_value=0.0,
                           interpolation=interpolation, backend=backend)
    assert np.vdot(out, dout) == pytest.approx(np.vdot(images, dx), rel=1e-12, abs=1e-12)
    for _ in range(2):
        direction, eps = rng.normal(size=images.shape), 1e-3
        up = affine_transform(images + eps * direction, matrices, fill_mode=fill_mode, fill_value=0.0,
                              interpolation=interpolation, backend=backend)
        down = affine_transform(images - eps * direction, matrices, fill_mode=fill_mode, fill_value=0.0,
                                interpolation=interpolation, backend=backend)
        assert np.vdot(up - down, dout) / (2 * eps) == pytest.approx(np.vdot(direction, dx), rel=1e-8, abs=1e-9)


def test_edge_shapes_and_inputs(backend, rng):
    """One-pixel axes, coordinates far outside (reflect and wrap repeat), integer images (no
    wrap-around), Fortran-order and read-only inputs, the identity."""
    for shape in [(2, 1, 4, 1), (2, 4, 1, 3), (1, 1, 1, 2)]:
        images = rng.normal(size=shape)
        matrices = random_matrices(rng, shape[0], *shape[1:3], spread=40.0)
        for fill_mode in FILL_MODES:
            np.testing.assert_allclose(affine_transform(images, matrices, fill_mode=fill_mode, fill_value=1.0, backend=backend),
                                       naive_affine(images, matrices, fill_mode, 1.0, "bilinear"), atol=1e-12)
    images = rng.integers(0, 256, (2, 4, 5, 3)).astype(np.uint8)
    matrices = random_matrices(rng, 2, 4, 5)
    got = affine_transform(images, matrices, fill_mode="reflect", backend=backend)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, naive_affine(images.astype(float), matrices, "reflect", 0.0, "bilinear"),
                               atol=1e-10)
    fortran, frozen = np.asfortranarray(images.astype(np.float32)), images.astype(np.float32)
    frozen.flags.writeable = False
    np.testing.assert_array_equal(affine_transform(fortran, matrices, backend=backend),
                                  affine_transform(frozen, matrices, backend=backend))
    identity = np.tile([1.0, 0, 0, 0, 1.0, 0], (2, 1))
    np.testing.assert_array_equal(affine_transform(frozen, identity, backend=backend), frozen)


def test_kernel_family_is_registered():
    assert "augment" in fastdl_backend.AUTO_ORDER
    from fastdl.kernels.gpu import FAMILIES

    assert "augment" in FAMILIES


# Keras 3's conventions ------------------------------------------------------------------------


def _build(layer, shape, dtype=np.float64):
    layer.build(shape, None, dtype)
    return layer


def test_rotation_is_keras_counter_clockwise_turn(backend, rng):
    """A quarter turn (factor (0.25, 0.25)) of a square image is np.rot90: counter-clockwise."""
    images = rng.normal(size=(2, 5, 5, 3))
    layer = _build(RandomRotation((0.25, 0.25), seed=0, backend=backend), (5, 5, 3))
    np.testing.assert_allclose(layer.forward(images, training=True), np.rot90(images, 1, axes=(1, 2)),
                               atol=1e-12)


def test_translation_moves_by_the_factor_times_the_size(backend, rng):
    """height_factor 0.5 of 4 rows moves the image 2 rows down, width_factor -0.25 of 4 columns one
    left; what comes in is filled by the fill mode."""
    images = rng.normal(size=(1, 4, 4, 1))
    layer = _build(RandomTranslation((0.5, 0.5), (-0.25, -0.25), fill_mode="constant", fill_value=9.0,
                                     backend=backend), (4, 4, 1))
    expected = np.full_like(images, 9.0)
    expected[:, 2:, :3] = images[:, :2, 1:]
    np.testing.assert_allclose(layer.forward(images, training=True), expected, atol=1e-12)
    layer = _build(RandomTranslation((0.5, 0.5), 0.0, backend=backend), (4, 4, 1))  # reflect: rows 1, 0
    np.testing.assert_allclose(layer.forward(images, training=True), images[:, [1, 0, 0, 1]], atol=1e-12)


def test_zoom_scales_about_the_centre(backend, rng):
    """height_factor -0.5 (zoom 0.5, zooming in): pixel i samples row 0.5 * i + (h - 1) / 4;
    width_factor None zooms across alike, as Keras."""
    images = rng.normal(size=(1, 5, 5, 2))
    layer = _build(RandomZoom((-0.5, -0.5), backend=backend), (5, 5, 2))
    matrices = np.tile([0.5, 0.0, 1.0, 0.0, 0.5, 1.0], (1, 1))
    np.testing.assert_allclose(layer.forward(images, training=True), naive_affine(images, matrices, "reflect", 0.0,
                                                                                  "bilinear"), atol=1e-12)


@pytest.mark.parametrize("mode, axes", [("horizontal", [2]), ("vertical", [1]), ("horizontal_and_vertical", [1, 2])])
def test_flip_reverses_about_half_the_images(backend, dtype, rng, mode, axes):
    images = rng.normal(size=(16, 3, 4, 2)).astype(dtype)
    layer = _build(RandomFlip(mode, seed=3, backend=backend), (3, 4, 2), dtype)
    out = layer.forward(images, training=True)
    flipped = np.flip(images, axis=axes)
    is_flipped = [np.array_equal(o, f) for o, f in zip(out, flipped)]
    assert all(f or np.array_equal(o, x) for f, o, x in zip(is_flipped, out, images))
    assert 0 < sum(is_flipped) < 16  # seed 3 flips some, not all
    dout = rng.normal(size=images.shape).astype(dtype)  # the backward flips the same images back
    dx = layer.backward(dout)
    np.testing.assert_array_equal(dx, np.where(np.array(is_flipped)[:, None, None, None], np.flip(dout, axes), dout))


# The layers in training and inference ---------------------------------------------------------


def _layers():
    return [RandomFlip(seed=4), RandomRotation(0.2, seed=4), RandomTranslation(0.3, (-0.1, 0.2), seed=4),
            RandomZoom((-0.3, 0.2), (0.1, 0.4), seed=4, fill_mode="nearest", interpolation="nearest")]


@pytest.mark.parametrize("index", range(4), ids=["flip", "rotation", "translation", "zoom"])
def test_layers_same_seed_same_batches_on_every_backend(index, dtype, rng):
    images = rng.normal(size=(4, 5, 6, 2)).astype(dtype)
    results = {}
    for name in ("numpy", "numba", "cython"):
        if not fastdl_backend.backend_status()[name][0]:
            continue
        layer = _build(_layers()[index], (5, 6, 2), dtype)
        layer.backend = name
        results[name] = [layer.forward(images, training=True).copy() for _ in range(2)]
        assert not np.array_equal(*results[name]) or index == 0  # a new draw each batch
    for outs in results.values():
        for got, want in zip(outs, results["numpy"]):
            np.testing.assert_allclose(got, want, rtol=FORWARD_TOL[dtype], atol=FORWARD_TOL[dtype])


@pytest.mark.parametrize("index", range(4), ids=["flip", "rotation", "translation", "zoom"])
def test_inference_passes_the_input_through(index, rng):
    layer = _build(_layers()[index], (5, 6, 2), np.float32)
    images = rng.normal(size=(3, 5, 6, 2)).astype(np.float32)
    assert layer.forward(images, training=False) is images
    assert layer.backward(images) is images  # the identity's gradient


def test_layer_backward_is_the_ops_gradient(backend, rng):
    layer = _build(RandomRotation(0.3, fill_mode="wrap", seed=1, backend=backend), (4, 5, 3))
    images, dout = rng.normal(size=(2, 4, 5, 3)), rng.normal(size=(2, 4, 5, 3))
    out = layer.forward(images, training=True)
    matrices = layer._matrices.copy()
    np.testing.assert_allclose(out, affine_transform(images, matrices, fill_mode="wrap", backend="numpy"), atol=1e-13)
    np.testing.assert_allclose(layer.backward(dout), affine_transform_grad(dout, matrices, fill_mode="wrap", backend="numpy"),
                               atol=1e-12)


def _model(seed):
    return nn.Sequential([
        nn.Input((6, 6, 2)), RandomFlip("horizontal"), RandomRotation(0.1, seed=seed), RandomZoom(0.1),
        nn.Conv2D(3, 3, activation="relu"), RandomTranslation(0.1, 0.1), nn.Flatten(),
        nn.Dense(2, activation="softmax")], seed=0)


def test_model_trains_through_them_and_saves_their_generators(tmp_path, rng):
    """Placed after a trainable layer, a layer's backward runs; fit draws new transforms, predict
    none; a saved model restores the layers' generators (its own and the model's)."""
    x, y = rng.normal(size=(8, 6, 6, 2)).astype(np.float32), rng.integers(0, 2, 8)
    model = _model(7)
    model.compile("adam", "sparse_categorical_crossentropy")
    before = model.predict(x)
    np.testing.assert_array_equal(before, model.predict(x))  # inference: no augmentation
    weights = [w.copy() for w in model.get_weights()]
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert not np.array_equal(weights[0], model.get_weights()[0])  # the conv kernel trained through them
    assert sorted(model._generators()) == ["random_rotation/rng", "rng"]
    model.save(tmp_path / "model.npz")
    again = _model(99)
    again.compile("adam", "sparse_categorical_crossentropy")
    again.load(tmp_path / "model.npz")
    for layer, twin in zip(model.layers[:3], again.layers[:3]):
        np.testing.assert_array_equal(layer(x, training=True), twin(x, training=True))
    np.testing.assert_array_equal(model.predict(x), again.predict(x))


# Bad arguments --------------------------------------------------------------------------------


@pytest.mark.parametrize("make, error, match", [
    (lambda: RandomRotation(1.5), ValueError, r"factor must lie in \[-1, 1\], got 1.5"),
    (lambda: RandomRotation((0.3, -0.2)), ValueError, r"lower bound must not exceed .*\(0.3, -0.2\)"),
    (lambda: RandomRotation((0.1, 0.2, 0.3)), TypeError, r"pair of numbers, got \(0.1, 0.2, 0.3\)"),
    (lambda: RandomRotation("0.2"), TypeError, r"got '0.2'"),
    (lambda: RandomRotation(True), TypeError, r"got True"),
    (lambda: RandomRotation(float("nan")), ValueError, r"got nan"),
    (lambda: RandomTranslation(0.1, (-2, 0.1)), ValueError, r"width_factor must lie in .*\(-2, 0.1\)"),
    (lambda: RandomZoom(0.1, 1.01), ValueError, r"width_factor must lie in .*1.01"),
    (lambda: RandomRotation(0.1, fill_mode="mirror"), ValueError, r"fill_mode must be one of .*'mirror'"),
    (lambda: RandomZoom(0.1, interpolation="bicubic"), ValueError, r"interpolation must be one of .*'bicubic'"),
    (lambda: RandomZoom(0.1, fill_value="black"), TypeError, r"fill_value must be a real number, got 'black'"),
    (lambda: RandomZoom(0.1, fill_value=float("inf")), ValueError, r"fill_value must be finite"),
    (lambda: RandomZoom(0.1, fill_value=10 ** 400), ValueError, r"fill_value must be finite, got 1000"),
    (lambda: RandomRotation(10 ** 400), ValueError, r"factor must lie in \[-1, 1\], got 1000"),
    (lambda: RandomZoom((0, 10 ** 400)), ValueError, r"height_factor must lie in"),
    (lambda: RandomFlip("diagonal"), ValueError, r"mode must be one of .*'diagonal'"),
    (lambda: RandomFlip(data_format="channels_first"), ValueError, r"channels_last"),
], ids=lambda v: "" if callable(v) or isinstance(v, type) else None)
def test_layer_arguments_are_checked(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_layer_inputs_are_checked(rng):
    with pytest.raises(ValueError, match=r"RandomRotation expects images of shape .*got \(batch, 4, 5\)"):
        nn.Sequential([nn.Input((4, 5)), RandomRotation(0.1)]).build()
    layer = _build(RandomZoom(0.1), (4, 5, 3))
    for training in (False, True):
        with pytest.raises(TypeError, match="real numbers, got dtype complex128"):
            layer.forward(np.ones((2, 4, 5, 3), complex), training=training)
        with pytest.raises(TypeError, match="real numbers, got dtype <U1"):
            layer(np.full((2, 4, 5, 3), "a"), training=training)
        with pytest.raises(ValueError, match=r"expects inputs of shape \(batch, 4, 5, 3\), got \(2, 4, 5, 2\)"):
            layer.forward(np.ones((2, 4, 5, 2)), training=training)


def test_a_fill_value_past_the_images_dtype_is_refused(rng):
    images = np.ones((1, 2, 2, 1), np.float32)
    with pytest.raises(ValueError, match=r"fill_value 1e\+300 is beyond float32's range"):
        affine_transform(images, [[1, 0, 5, 0, 1, 0]], fill_value=1e300)
    assert affine_transform(images.astype(np.float64), [[1, 0, 5, 0, 1, 0]], fill_value=1e300).max() == 1e300
    model = nn.Sequential([nn.Input((2, 2, 1)), RandomZoom(0.5, fill_mode="constant", fill_value=1e300)])
    with pytest.raises(ValueError, match="beyond float32's range"):
        model(images, training=True)
    # Only "constant" reads it (as in Keras): another mode takes any finite value.
    affine_transform(images, [[1, 0, 5, 0, 1, 0]], fill_mode="reflect", fill_value=1e300)
    nn.Sequential([nn.Input((2, 2, 1)), RandomZoom(0.5, fill_value=1e300)])(images, training=True)


def test_op_arguments_are_checked(backend, rng):
    images, matrices = rng.normal(size=(2, 3, 4, 1)), np.tile([1.0, 0, 0, 0, 1, 0], (2, 1))
    bad = [
        (lambda: affine_transform(images[0], matrices, backend=backend), ValueError, r"images must be 4-D"),
        (lambda: affine_transform(images.astype(complex), matrices, backend=backend), TypeError, "real numbers"),
        (lambda: affine_transform(np.array([["a"]]), matrices, backend=backend), TypeError, "real numbers"),
        (lambda: affine_transform(images, matrices[:1], backend=backend), ValueError, r"shape \(2, 6\).*\(1, 6\)"),
        (lambda: affine_transform(images, matrices * np.nan, backend=backend), ValueError, "NaN"),
        (lambda: affine_transform(images, matrices * 1e12, backend=backend), ValueError, "coordinates as far as"),
        (lambda: affine_transform(images, matrices, fill_mode="mirror", backend=backend), ValueError, "'mirror'"),
        (lambda: affine_transform(images, matrices, interpolation="cubic", backend=backend), ValueError, "'cubic'"),
        (lambda: affine_transform(images, matrices, fill_value=np.nan, backend=backend), ValueError, "finite"),
        (lambda: affine_transform_grad(images, matrices.T, backend=backend), ValueError, r"matrices must have shape"),
    ]
    for call, error, match in bad:
        with pytest.raises(error, match=match):
            call()


def test_the_op_takes_keras_3s_argument_order_and_defaults():
    """keras.ops.image.affine_transform(images, transform, interpolation, fill_mode, fill_value):
    a third argument given by place is the interpolation; the default fill is constant 0."""
    images = np.arange(16, dtype=np.float64).reshape(1, 4, 4, 1)
    shift = np.array([[1.0, 0, 1.5, 0, 1.0, 0]])  # sample one and a half columns to the right
    nearest = affine_transform(images, shift, "nearest")
    np.testing.assert_array_equal(nearest[0, :, :, 0], [[2, 3, 0, 0], [6, 7, 0, 0], [10, 11, 0, 0], [14, 15, 0, 0]])
    with pytest.raises(TypeError):
        affine_transform(images, shift, "nearest", "constant", 0.0, "numpy")  # backend is keyword-only


def test_a_layer_in_inference_returns_its_dtype_as_in_training():
    images = np.zeros((2, 4, 4, 1), np.uint8)
    layer = RandomRotation(0.2, seed=0)
    assert layer(images, training=False).dtype == layer(images, training=True).dtype == np.float32
