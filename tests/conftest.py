"""Shared fixtures: the backend and dtype parametrizations and a seeded generator."""

import os

# Where no NVIDIA driver is present (CI, laptops) the cuda tests run on numba's CUDA simulator,
# which must be chosen before numba is imported; on a machine with a device they run on it
# (`pytest -m cuda`), and NUMBA_ENABLE_CUDASIM=1 still forces the simulator there.
if not os.path.exists("/dev/nvidiactl"):
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import numpy as np  # noqa: E402 - after the simulator's switch
import pytest  # noqa: E402

import fastdl  # noqa: E402
from fastdl.ops import _kn2row, _winograd  # noqa: E402
from fastdl.ops import conv as conv_ops  # noqa: E402

CPU_BACKENDS = ["numpy", "numba", "cython"]
SAVES_ENOUGH = _winograd.saves_enough  # before the fixture below replaces it

# Relative tolerances of the library's answers against float64 references.
RTOL = {np.float32: 1e-4, np.float64: 1e-10}


def skip_unless_available(name):
    available, reason = fastdl.backend_status()[name]
    if not available:
        pytest.skip(f"backend {name!r} is unavailable: {reason}")


def ready_backends():
    """The CPU backends that can run here (for tests comparing backends with each other)."""
    ready = []
    for name in CPU_BACKENDS:
        available, _ = fastdl.backend_status()[name]
        if available:
            ready.append(name)
    return ready


@pytest.fixture(params=CPU_BACKENDS)
def backend(request):
    """Each CPU backend by name, skipped (with fastdl's reason) where it is unavailable."""
    skip_unless_available(request.param)
    return request.param


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _restore_fastdl_state():
    """Tests may change the process default backend and thread count; put them back afterwards."""
    backend = fastdl.get_backend()
    threads = fastdl.get_num_threads()
    yield
    fastdl.set_backend(backend)
    if fastdl.get_num_threads() != threads:
        fastdl.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _winograd_for_few_images(monkeypatch):
    """Winograd however few images a convolution has: the tests' small batches would otherwise go
    to im2col (see _winograd.saves_enough) and leave Winograd's paths untested. The tests of that
    rule ask for the_few_images_rule."""
    monkeypatch.setattr(_winograd, "saves_enough", lambda n_images, out_hw, large: True)


@pytest.fixture
def the_few_images_rule(monkeypatch):
    """_winograd.saves_enough as fastdl has it (the autouse fixture above replaces it)."""
    monkeypatch.setattr(_winograd, "saves_enough", SAVES_ENOUGH)


def cuda_simulated():
    """Whether the cuda tests run on numba's simulator (Python per thread: keep shapes tiny)."""
    import numba

    return bool(numba.config.ENABLE_CUDASIM)


@pytest.fixture
def cuda_backend():
    """The cuda backend's name, the test skipped (with fastdl's reason) where it is unavailable."""
    skip_unless_available("cuda")
    return "cuda"


@pytest.fixture
def cuda_scale():
    """1 on the simulator, larger on a device: tests multiply their shapes by it."""
    return 1 if cuda_simulated() else 64


# Convolution paths, for the tests of fastdl/ops/conv.py and what builds on it -------------------


@pytest.fixture
def banded(monkeypatch):
    """Budgets of one byte: every convolution with room for two bands runs in bands of the fewest
    rows (the kernel's height, 8 for Winograd; pooling layers raise them to whole windows)."""
    monkeypatch.setattr(conv_ops, "PATCH_BYTES", 1)
    monkeypatch.setattr(_kn2row, "BATCH_BYTES", 1)
    monkeypatch.setattr(_winograd, "BATCH_BYTES", 1)
    monkeypatch.setattr(conv_ops, "BAND_FACTOR", 0)


@pytest.fixture
def band_runs(monkeypatch):
    """The calls of _Bands.run made (one a forward pass, two a backward pass, when banded)."""
    calls = []
    run = conv_ops._Bands.run
    monkeypatch.setattr(conv_ops._Bands, "run", lambda self, *args, **kwargs: calls.append(1) or run(self, *args,
                                                                                                      **kwargs))
    return calls


def predict_and_step_unbanded_and_banded(monkeypatch, band_runs, make_model, x, y, built=None):
    """[(predicted, loss, weights, band runs)] of a new model make_model() that predicts x and
    takes one training step on (x, y): unbanded, then banded (budgets of one byte, as `banded`).
    built(model), where given, checks the model once built."""
    runs = []
    for band_factor in (np.inf, 0):
        with monkeypatch.context() as patch:
            patch.setattr(conv_ops, "PATCH_BYTES", 1)
            patch.setattr(_kn2row, "BATCH_BYTES", 1)
            patch.setattr(_winograd, "BATCH_BYTES", 1)
            patch.setattr(conv_ops, "BAND_FACTOR", band_factor)
            band_runs.clear()
            model = make_model()
            model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
            if built is not None:
                model.build()
                built(model)
            predicted = model.predict(x, batch_size=1)
            loss = model.train_on_batch(x, y)
            weights = [p.value.copy() for layer in model.layers for _, p in layer.parameters()]
            runs.append((predicted, loss, weights, len(band_runs)))
    return runs


def assert_resumes_bit_for_bit(path, make_optimizer, backend, dtype):
    """A small model with make_optimizer() trained 3 steps, saved to path (every optimizer slot in
    the file), trained 3 more; a new one loaded from path (iterations 3) and trained 3 steps: the
    two end with the same weights and optimizer state, bit for bit."""
    from fastdl import nn

    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((8, 4)).astype(dtype), rng.standard_normal((8, 2)).astype(dtype)

    def model():
        m = nn.Sequential([nn.Input((4,)), nn.Dense(6, activation="relu"), nn.Dense(2)], seed=0, dtype=dtype,
                          backend=backend)
        m.compile(make_optimizer(), "mse")
        return m

    straight = model()
    for _ in range(3):
        straight.train_on_batch(x, y)
    straight.save(path)
    with np.load(path) as saved:
        assert all(any(key.endswith(f"{slot}/0") for key in saved.files) for slot in straight.optimizer.slots)
    for _ in range(3):
        straight.train_on_batch(x, y)
    resumed = model().load(path)
    assert resumed.optimizer.iterations == 3
    for _ in range(3):
        resumed.train_on_batch(x, y)
    assert resumed.optimizer.iterations == 6
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)
    for slot in straight.optimizer.slots:
        for a, b in zip(straight.optimizer.state[slot], resumed.optimizer.state[slot]):
            np.testing.assert_array_equal(a, b)


@pytest.fixture(params=[2, 4], ids=["F2x2", "F4x4"])
def tiles(request, monkeypatch):
    """Winograd's F(2x2, 3x3) or F(4x4, 3x3) for every convolution that takes Winograd."""
    large = request.param == 4
    monkeypatch.setattr(_winograd, "LARGE_TILE_CHANNELS", 0 if large else 1 << 30)
    monkeypatch.setattr(_winograd, "LARGE_TILE_SHARE", np.inf)
    monkeypatch.setattr(_winograd, "LARGE_TILE_MIN_SIZE", 0)
    return request.param
