"""The affine resampling kernels of the cuda backend (kernels/gpu/augment.py, called directly with
device arrays and through fastdl.ops.augment) against the numpy reference, float32 and float64,
and the augmentation layers in a model on the cuda backend against the same model on the CPU.

Under numba's CUDA simulator every device thread runs as Python: the shapes are tiny there and
cuda_scale enlarges them on a device.
"""

import importlib

import numpy as np
import pytest

from fastdl import backend, nn
from fastdl.nn.layers_augment import RandomFlip, RandomRotation, RandomTranslation, RandomZoom
from fastdl.ops.augment import FILL_MODES, INTERPOLATIONS, affine_transform, affine_transform_grad

pytestmark = pytest.mark.cuda

# The device may fuse a multiply and an add: float32 agrees to an ulp or so, not to the bit.
TIGHT = {np.float32: 1e-5, np.float64: 1e-12}


def _matrices(rng, n, h, w):
    angle, zoom = rng.uniform(-np.pi, np.pi, n), rng.uniform(0.6, 2.0, n)
    cos, sin = np.cos(angle) * zoom, np.sin(angle) * zoom
    shift = rng.uniform(-1.5, 1.5, (n, 2)) * [w, h]
    return np.stack([cos, -sin, shift[:, 0], sin, cos, shift[:, 1]], axis=1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize("fill_mode", FILL_MODES)
def test_kernels_match_the_reference(cuda_backend, cuda_scale, dtype, fill_mode, interpolation):
    from numba import cuda

    gpu = importlib.import_module("fastdl.kernels.gpu.augment")
    rng = np.random.default_rng(0)
    shape = (2 * cuda_scale, 3, 4, 2)
    images, dout = rng.normal(size=shape).astype(dtype), rng.normal(size=shape).astype(dtype)
    matrices = _matrices(rng, shape[0], 3, 4)
    fill, interp = FILL_MODES.index(fill_mode), INTERPOLATIONS.index(interpolation)
    out, dx = cuda.device_array(shape, dtype), cuda.device_array(shape, dtype)
    d_matrices = cuda.to_device(matrices)
    gpu.affine_transform(cuda.to_device(images), d_matrices, fill, 0.25, interp, out, 1)
    gpu.affine_transform_backward(cuda.to_device(dout), d_matrices, fill, interp, dx, 1)
    want = affine_transform(images, matrices, fill_mode=fill_mode, fill_value=0.25,
                            interpolation=interpolation, backend="numpy")
    np.testing.assert_allclose(out.copy_to_host(), want, rtol=TIGHT[dtype], atol=TIGHT[dtype])
    want = affine_transform_grad(dout, matrices, fill_mode=fill_mode, interpolation=interpolation, backend="numpy")
    np.testing.assert_allclose(dx.copy_to_host(), want, rtol=TIGHT[dtype], atol=4 * TIGHT[dtype])


def test_public_ops_take_numpy_on_the_cuda_backend(cuda_backend):
    """NumPy in, NumPy out, as the other ops on the cuda backend."""
    rng = np.random.default_rng(1)
    images, matrices = rng.normal(size=(2, 3, 3, 1)).astype(np.float32), _matrices(rng, 2, 3, 3)
    got = affine_transform(images, matrices, fill_mode="wrap", backend=cuda_backend)
    assert isinstance(got, np.ndarray) and got.dtype == np.float32
    np.testing.assert_allclose(got, affine_transform(images, matrices, fill_mode="wrap", backend="numpy"), atol=1e-6)
    grad = affine_transform_grad(images, matrices, fill_mode="wrap", backend=cuda_backend)
    np.testing.assert_allclose(grad, affine_transform_grad(images, matrices, fill_mode="wrap", backend="numpy"), atol=1e-5)
    assert backend.resolve("augment", "auto") != "cuda"


def test_model_with_augmentation_trains_as_on_the_cpu(cuda_backend):
    """A seed gives the same draws on the host whatever the backend: the cuda model trains as the
    numpy one does, through the layers' forward and (after the convolution) backward passes."""
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(4, 4, 4, 1)).astype(np.float32), rng.integers(0, 2, 4)

    def build(name):
        model = nn.Sequential([nn.Input((4, 4, 1)), RandomFlip(), RandomRotation(0.2, fill_mode="constant"),
                               nn.Conv2D(2, 3, padding="same"), RandomZoom(0.2, interpolation="nearest"),
                               RandomTranslation(0.2, 0.2, fill_mode="wrap"), nn.Flatten(),
                               nn.Dense(2, activation="softmax")], seed=3, backend=name)
        model.compile(nn.SGD(0.1), "sparse_categorical_crossentropy")
        history = model.fit(x, y, epochs=1, batch_size=2, verbose=0)
        return model, history.history["loss"]

    cpu, cpu_loss = build("numpy")
    gpu, gpu_loss = build(cuda_backend)
    assert gpu.on_device
    np.testing.assert_allclose(gpu_loss, cpu_loss, rtol=1e-5)
    for got, want in zip(gpu.get_weights(), cpu.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(gpu.predict(x), cpu.predict(x), rtol=1e-5, atol=1e-6)
