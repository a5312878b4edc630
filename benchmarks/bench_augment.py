"""Image augmentation, float32: RandomRotation(0.1) then RandomZoom(0.1) over a CIFAR-sized batch
(128 x 32 x 32 x 3), forward in training, as fit runs the layers (bilinear, "reflect" fill):
fastdl's backends against PyTorch's twin, affine_grid + grid_sample (bilinear, "reflection"
padding, align_corners=False: the same extension of the image, about its edges).

Each contender draws its own angles and zooms every step (fastdl on the host in float64, torch
with torch.rand) and builds one matrix per image, as the layers do. Before torch is timed, fastdl
(each backend) and torch's twin resample the first images through the same matrices, untimed,
and must agree to float32 accuracy.
"""

import math

import numpy as np
import pytest

from fastdl import backend as fastdl_backend
from fastdl.nn.layers_augment import RandomRotation, RandomZoom
from fastdl.ops.augment import affine_transform
from peers import TORCH_MISSING, torch

pytestmark = pytest.mark.benchmark(min_rounds=5)

BACKENDS = ["numba", "cython"]
GROUP = "RandomRotation(0.1) + RandomZoom(0.1) forward, 128x32x32x3 float32"
SHAPE = (128, 32, 32, 3)
FACTOR = 0.1
CHECKED_IMAGES = 4


def _images():
    return np.random.default_rng(7).random(SHAPE, dtype=np.float32)


def _layers(backend):
    rotation, zoom = RandomRotation(FACTOR, seed=1, backend=backend), RandomZoom(FACTOR, seed=2, backend=backend)
    for layer in (rotation, zoom):
        layer.build(SHAPE[1:], None, np.float32)
    return rotation, zoom


@pytest.mark.parametrize("backend", BACKENDS)
def bench_rotation_zoom_fastdl(benchmark, backend, require_fastdl_backend, name_contender):
    require_fastdl_backend("augment", backend)
    x = _images()
    rotation, zoom = _layers(backend)

    def step():
        return zoom.forward(rotation.forward(x, training=True), training=True)

    step()
    name_contender(GROUP, f"fastdl[{backend}]")
    benchmark.pedantic(step, rounds=20, iterations=1, warmup_rounds=2)


def _theta(matrices, h, w):
    """torch's affine_grid theta (n, 2, 3), align_corners=False, of fastdl's pixel matrices (n, 6):
    N A N^-1, where N takes pixel coordinates to torch's [-1, 1] ones (pixel edges at -1 and 1)."""
    n = matrices.shape[0]
    a = torch.zeros((n, 3, 3), dtype=torch.float64)
    a[:, :2, :] = matrices.reshape(n, 2, 3)
    a[:, 2, 2] = 1
    norm = torch.tensor([[2 / w, 0, 1 / w - 1], [0, 2 / h, 1 / h - 1], [0, 0, 1]], dtype=torch.float64)
    return (norm @ a @ torch.linalg.inv(norm))[:, :2].to(torch.float32)


def _rotation_matrices(angle, h, w):
    """Keras 3's rotation about the centre, as fastdl's RandomRotation builds it."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    x_offset = ((w - 1) - (cos * (w - 1) - sin * (h - 1))) / 2
    y_offset = ((h - 1) - (sin * (w - 1) + cos * (h - 1))) / 2
    return torch.stack([cos, -sin, x_offset, sin, cos, y_offset], dim=1)


def _zoom_matrices(zoom, h, w):
    zeros = torch.zeros_like(zoom)
    return torch.stack([zoom, zeros, (w - 1) / 2 * (1 - zoom), zeros, zoom, (h - 1) / 2 * (1 - zoom)], dim=1)


def _resample(x, matrices):
    """x (n, c, h, w) resampled through pixel matrices, bilinear with reflection about the edges."""
    grid = torch.nn.functional.affine_grid(_theta(matrices, *x.shape[2:]), list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _check_agreement(x_np):
    """fastdl and torch resample the same images through the same rotations, then zooms, alike."""
    x_np = x_np[:CHECKED_IMAGES]
    rng = np.random.default_rng(3)
    n, h, w, _ = x_np.shape
    angle = torch.from_numpy(rng.uniform(-FACTOR, FACTOR, n) * 2 * math.pi)
    zoom = torch.from_numpy(1 + rng.uniform(-FACTOR, FACTOR, n))
    matrices = [_rotation_matrices(angle, h, w), _zoom_matrices(zoom, h, w)]
    theirs = torch.from_numpy(x_np).permute(0, 3, 1, 2)
    for m in matrices:
        theirs = _resample(theirs, m)
    theirs = theirs.permute(0, 2, 3, 1).numpy()
    for backend in BACKENDS:
        try:
            fastdl_backend.kernels("augment", backend)
        except Exception:  # not built here: nothing of it is timed either
            continue
        ours = x_np
        for m in matrices:
            ours = affine_transform(ours, m.numpy(), fill_mode="reflect", fill_value=0.0,
                                    interpolation="bilinear", backend=backend)
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4,
                                   err_msg=f"fastdl[{backend}] disagrees with torch")


def bench_rotation_zoom_torch(benchmark, name_contender, n_threads):
    if torch is None:
        pytest.skip(TORCH_MISSING)
    x_np = _images()
    _check_agreement(x_np)
    # After fastdl's kernels ran: Numba's OpenMP threading layer, which torch shares, sets its own
    # thread count when it starts.
    torch.set_num_threads(n_threads)
    # Channels-last memory, the layout fastdl works in (torch's own NCHW layout measured alike here).
    x = torch.from_numpy(x_np).permute(0, 3, 1, 2)
    n, _, h, w = x.shape

    def step():
        angle = (torch.rand(n, dtype=torch.float64) * 2 - 1) * FACTOR * 2 * math.pi
        zoom = 1 + (torch.rand(n, dtype=torch.float64) * 2 - 1) * FACTOR
        return _resample(_resample(x, _rotation_matrices(angle, h, w)), _zoom_matrices(zoom, h, w))

    step()
    name_contender(GROUP, "torch affine_grid + grid_sample (channels_last)")
    benchmark.pedantic(step, rounds=20, iterations=1, warmup_rounds=2)
