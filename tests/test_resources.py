"""Memory that fastdl keeps or reserves: bounded by the problem, not by what a process has seen
(batch sizes on the device) or by the thread count (kNN's Gram blocks)."""

import gc
import tracemalloc

import numpy as np
import pytest

import fastdl
from conftest import skip_unless_available
from fastdl.ops import knn


# -- cuda backend: the ones vectors of the bias gradients ----------------------------------------


def _one_step(batch_size, rng_seed=0):
    """The weights of a fresh small convolutional model after one step on a batch of batch_size."""
    from fastdl import nn

    rng = np.random.default_rng(rng_seed)
    x = rng.random((batch_size, 5, 5, 1)).astype(np.float32)
    y = rng.integers(0, 2, batch_size)
    with fastdl.use_backend("cuda"):
        model = nn.Sequential([nn.Conv2D(2, 3, activation="relu", input_shape=(5, 5, 1)), nn.Flatten(),
                               nn.Dense(2, activation="softmax")], seed=0)
        model.compile(nn.SGD(0.1), "sparse_categorical_crossentropy")
        model.train_on_batch(x, y)
    return [np.array(weight) for weight in model.get_weights()]


def test_device_ones_are_one_vector_whatever_the_batch_sizes(cuda_backend, monkeypatch):
    """Bias gradients sum rows with a row of ones: one vector per dtype (the longest, sliced), not
    one kept for every batch size (batch * pixels long for a convolution), and the same weights
    as with a ones vector made for that batch alone."""
    from fastdl import _device
    from fastdl.ops import _nn_on_device

    monkeypatch.setattr(_nn_on_device, "_CONSTANTS", {})
    monkeypatch.setattr(_nn_on_device, "_ONES_ROWS", {}, raising=False)
    views = []
    for batch_size in (6, 2, 7):  # a slice of the first, then a longer one (a step: 6 s simulated)
        warm = _one_step(batch_size)
        with monkeypatch.context() as fresh:  # nothing cached: a ones vector of this batch's length
            fresh.setattr(_nn_on_device, "_CONSTANTS", {})
            fresh.setattr(_nn_on_device, "_ONES_ROWS", {}, raising=False)
            alone = _one_step(batch_size)
        for got, expected in zip(warm, alone):
            np.testing.assert_array_equal(got, expected)
        gc.collect()
        views.append(len(_device._VIEWS))
    ones = [key for key in _nn_on_device._CONSTANTS if key[0] == "ones"]
    assert len(ones) == 1, sorted(map(str, _nn_on_device._CONSTANTS))
    assert len(_nn_on_device._CONSTANTS) <= 2  # ones, and perhaps "empty"
    assert views[-1] <= views[1], views  # reshaped views do not pile up per batch size either


# -- kNN: the Gram blocks of all threads together --------------------------------------------------


def _traced_peak(function):
    """(function's result, the most memory tracemalloc saw allocated during it above its start)."""
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        result = function()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, peak - start


@pytest.mark.parametrize("backend_name", ["cython", "numba"])
def test_knn_gram_blocks_do_not_grow_with_threads(backend_name, monkeypatch):
    """With the Gram cap at 4 MiB (2**20 float32 entries), four threads share it instead of taking
    4 MiB each; the answers (exact float64 distances) are those of one thread and of the default cap."""
    skip_unless_available(backend_name)
    from fastdl.neighbors import KNeighborsClassifier
    from fastdl.ops import _knn_index

    fastdl.set_backend(backend_name)
    rng = np.random.default_rng(0)
    queries = rng.random((2000, 8)).astype(np.float32)
    refs = rng.random((4000, 8)).astype(np.float32)
    labels = np.arange(4000) % 7
    expected = knn(queries, refs, k=3)  # the default cap, one block per thread here
    monkeypatch.setattr(_knn_index, "GRAM_ENTRIES", 1 << 20)
    monkeypatch.setattr(_knn_index, "MIN_BLOCK_ROWS", 16)
    answers, peaks = {}, {}
    for threads in (1, 4):
        fastdl.set_num_threads(threads)
        knn(queries[:50], refs, k=3)  # warm: compiled kernels, a thread team
        answers[threads], peaks[threads] = _traced_peak(lambda: knn(queries, refs, k=3))
        classifier = KNeighborsClassifier(3).fit(refs, labels)
        answers[threads, "predict"] = classifier.predict(queries)
    assert peaks[1] >= 0.9 * (4 << 20)  # blocks of the cap's size: 262 query rows by 4000
    assert peaks[4] <= 1.3 * peaks[1], peaks
    for got in (answers[1], answers[4]):
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
    np.testing.assert_array_equal(answers[1, "predict"], answers[4, "predict"])
