"""What a cuda training step asks of the host, measured without a GPU.

Runs the course MLP (batch 32, SGD) and the course CNN (batch 128, RMSprop) on numba's CUDA
simulator with every kernel launch and GEMM replaced by a counter, so the time left is fastdl's own
Python per step (its layers, losses, optimizer and bookkeeping), and prints the launches per step
by kind and the copies between host and device. On a device, each launch adds numba's argument
handling and each GEMM a cuBLAS call on top of this; each copy from or to host memory waits for
the device to finish what it was given (the host then stops queueing work ahead of the device).
Steps are `train_on_batch` on a batch already on the device, and for the MLP also a batch of
`fit` on NumPy data (shuffled, moved to the device once per fit), as a training epoch runs them.
Run: `python benchmarks/gpu/step_anatomy.py` (from the repository root).
"""

import collections
import importlib
import os
import time

os.environ["NUMBA_ENABLE_CUDASIM"] = "1"  # before numba is imported

import numpy as np  # noqa: E402
from numba import cuda  # noqa: E402

from fastdl import nn  # noqa: E402
from fastdl.repro.models import course_cnn, course_mlp  # noqa: E402

FAMILIES = ("dense", "conv", "pool", "loss", "optim", "norm")
STEPS = 200


def count_launches():
    """Replace the cuda launchers and GEMM with counters; returns the counter. While
    counts["tally arguments"] is set, each launch also counts the device arrays it is passed (which
    costs more host time than fastdl's own work in a launch: the timed steps leave it unset)."""
    from fastdl.kernels.gpu import _arrays, _gemm

    from fastdl import _device
    from fastdl._device import is_device

    # No kernel writes now, so a buffer holds what it was made with: zeros, not garbage that can
    # read as a NaN loss and stop training.
    _device.empty = lambda shape, dtype: cuda.to_device(np.zeros(shape, dtype))
    counts = collections.Counter()

    def counter(name):
        def launch(*args, **kwargs):
            counts[name] += 1
            if counts["tally arguments"]:  # what numba marshals per launch grows with the device arrays
                counts["device array arguments"] += sum(is_device(arg) for arg in (*args, *kwargs.values()))
        return launch

    _gemm.gemm = counter("gemm")
    for family in FAMILIES:
        module = importlib.import_module(f"fastdl.kernels.gpu.{family}")
        for name, value in vars(module).copy().items():
            if callable(value) and not name.startswith("_") and getattr(value, "__module__", "") == module.__name__:
                setattr(module, name, counter(f"{family}.{name}"))
    for name in ("take_rows", "add", "scale", "add_scaled"):
        setattr(_arrays, name, counter(f"arrays.{name}"))
    _count_copies(counts, _device)
    return counts


def _count_copies(counts, device):
    """Count copies between host and device memory: those that wait for the device to finish its
    queue (to the host; to the device without a stream) and those queued on a stream (the stubbed
    kernels' zeroed buffers are allocations, not counted)."""
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

    to_host, to_device, upload = FakeCUDAArray.copy_to_host, FakeCUDAArray.copy_to_device, device.to_device

    def copy_to_host(self, *args, **kwargs):
        counts["waiting copies to the host"] += 1
        return to_host(self, *args, **kwargs)

    def copy_to_device(self, array, stream=0):
        if not device.is_device(array):
            counts["queued copies to the device" if stream else "waiting copies to the device"] += 1
        return to_device(self, array, stream=stream)

    def fresh_upload(array):
        counts["waiting copies to the device"] += 1
        return upload(array)

    FakeCUDAArray.copy_to_host, FakeCUDAArray.copy_to_device, device.to_device = copy_to_host, copy_to_device, fresh_upload


COPIES = ("waiting copies to the host", "waiting copies to the device", "queued copies to the device")


def _report(label, seconds, counts, steps, arguments):
    per_step = {name: count / steps for name, count in sorted(counts.items()) if name not in COPIES}
    copies = ", ".join(f"{counts[name] / steps:.3g} {name}" for name in COPIES)  # per step
    print(f"{label}: {seconds * 1e6:,.0f} us of fastdl's host work a step, "
          f"{sum(per_step.values()):.3g} launches ({per_step.get('gemm', 0):.3g} GEMMs) taking {arguments} device "
          f"arrays, {copies}: { {name: round(count, 3) for name, count in per_step.items()} }")


def main():
    counts = count_launches()
    cases = [("course MLP, batch 32, SGD", course_mlp, nn.SGD(0.01), 32),
             ("course CNN, batch 128, RMSprop", course_cnn, nn.RMSprop(), 128)]
    for label, builder, optimizer, batch in cases:
        model = builder((28, 28, 1), seed=0, backend="cuda")
        model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
        x = cuda.to_device(np.random.default_rng(0).random((batch, 28, 28, 1), dtype=np.float32))
        y = np.random.default_rng(1).integers(0, 10, batch)
        for _ in range(3):
            model.train_on_batch(x, y)
        counts.clear()
        start = time.perf_counter()
        for _ in range(STEPS):
            model.train_on_batch(x, y)
        seconds = (time.perf_counter() - start) / STEPS
        timed = collections.Counter(counts)
        counts.clear()
        counts["tally arguments"] = 1
        model.train_on_batch(x, y)
        arguments = counts["device array arguments"]
        counts.clear()
        _report(label + ", train_on_batch (x on the device)", seconds, timed, STEPS, arguments)
        if builder is course_mlp:  # a training epoch's batches: fit on NumPy data, shuffled
            x, y = np.random.default_rng(2).random((batch * STEPS, 28, 28, 1), dtype=np.float32), \
                np.random.default_rng(3).integers(0, 10, batch * STEPS)
            model.fit(x[:batch * 3], y[:batch * 3], batch_size=batch)
            counts.clear()
            start = time.perf_counter()
            model.fit(x, y, batch_size=batch)
            seconds = (time.perf_counter() - start) / STEPS
            timed = collections.Counter(counts)
            counts.clear()
            _report(label + ", a batch of fit", seconds, timed, STEPS, "as many")


if __name__ == "__main__":
    main()
