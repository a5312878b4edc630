"""Whole-model training throughput, float32: fastdl.nn against PyTorch on the CPU, in images/second.

One timed call is one training step on a fixed random batch: forward, loss, backward and the
optimizer's update. The models are the course's:

- MLP: Flatten, Dense 300 relu, Dense 100 relu, Dense 10 softmax on 28x28x1; batch 32, SGD(0.01),
  sparse categorical cross-entropy.
- CNN: Conv2D 64 7x7 same relu, MaxPool2D, (Conv2D 128 3x3 same relu) x2, MaxPool2D,
  (Conv2D 256 3x3 same relu) x2, MaxPool2D, Flatten, Dense 128 relu, Dropout .5, Dense 64 relu,
  Dropout .5, Dense 10 softmax on 28x28x1; batch 128, RMSprop (Keras defaults), sparse
  categorical cross-entropy. Marked `big` (about half a second a step).
- clock CNN: (Conv2D 32 3x3 valid relu, MaxPool2D) x3, Flatten, Dense 128 relu, Dense 128 relu,
  Dense 1 on 150x150x1; batch 100, Adam (Keras defaults), MSE. Marked `big` (about a second a step).
- multi-head clock network (assignment 5): (Conv2D 16, 32, 32 3x3 valid relu, each MaxPool2D),
  Flatten, then a minute head Dense 128 relu, Dense 128 relu, Dense 1 (MSE) and an hour head
  Dense 256 relu with an L2(0.01) kernel penalty, Dropout .1, Dense 128 relu, Dropout .1, Dense 12
  softmax (sparse categorical cross-entropy), the two losses summed; batch 100, RMSprop. Marked
  `big`. fastdl's is the functional `nn.Model` of `fastdl.repro.models.clock_multihead`;
  PyTorch's adds `0.01 * sum(W ** 2)` of the hour head's first kernel to its loss, as Keras does.

fastdl's step goes through the public API: `model.fit(x, y, epochs=1, batch_size=len(x),
shuffle=False, verbose=0)`, i.e. exactly one batch per call (Sequential has no public per-batch
train step; fit's per-call checks are part of the time). PyTorch's step is
`zero_grad(set_to_none=True)`, forward, loss, `backward()`, `step()` on an identical architecture
in NCHW, same optimizer settings (RMSprop alpha=0.9, eps=1e-7; Adam eps=1e-7), softmax +
cross-entropy as `cross_entropy` on the logits (what fastdl fuses too). Both models are checked,
untimed, to have the same number of parameters. Each contender's note gives its images/s (mean
step, and best step).
"""

import numpy as np
import pytest

from fastdl.nn import SGD, Adam, Conv2D, Dense, Flatten, Input, MaxPool2D, RMSprop, Sequential
from fastdl.repro.models import clock_multihead, course_cnn, course_mlp
from peers import TORCH_MISSING, torch

BACKENDS = ["numba", "cython"]
SEED = 11
# fastdl kernel families each model needs (the backend is skipped when one is missing).
FAMILIES = {"mlp": ("dense",), "cnn": ("conv", "pool", "dense"), "clock": ("conv", "pool", "dense"),
            "multihead": ("conv", "pool", "dense")}

MLP_GROUP = "train step: course MLP 784-300-100-10, batch 32, SGD, float32"
CNN_GROUP = "train step: course CNN 28x28x1, batch 128, RMSprop, float32"
CLOCK_GROUP = "train step: clock CNN 150x150x1, batch 100, Adam, MSE, float32"
MULTIHEAD_GROUP = "train step: multi-head clock network 150x150x1, batch 100, RMSprop, float32"
GROUPS = {"mlp": MLP_GROUP, "cnn": CNN_GROUP, "clock": CLOCK_GROUP, "multihead": MULTIHEAD_GROUP}
BATCH = {"mlp": 32, "cnn": 128, "clock": 100, "multihead": 100}
SHAPE = {"mlp": (28, 28, 1), "cnn": (28, 28, 1), "clock": (150, 150, 1), "multihead": (150, 150, 1)}
# Big cases: rounds of `STEPS` steps each (pytest-benchmark reports the time per step).
ROUNDS, STEPS = 3, 2


def _data(kind):
    """A fixed random batch (NHWC float32) and its targets."""
    rng = np.random.default_rng(SEED)
    x = rng.random((BATCH[kind], *SHAPE[kind]), dtype=np.float32)
    if kind == "clock":
        y = rng.random((BATCH[kind], 1), dtype=np.float32)
    elif kind == "multihead":
        y = {"hour": rng.integers(0, 12, BATCH[kind]).astype(np.int64),
             "minute": rng.random((BATCH[kind], 1), dtype=np.float32)}
    else:
        y = rng.integers(0, 10, BATCH[kind]).astype(np.int64)
    return x, y


# fastdl ----------------------------------------------------------------------------------------


def _fastdl_model(kind, backend):
    if kind in ("mlp", "cnn"):
        # The course models, as assignment 4's reproduction builds them.
        builder = course_mlp if kind == "mlp" else course_cnn
        model = builder(SHAPE[kind], seed=SEED, dtype="float32", backend=backend)
        optimizer = SGD(0.01) if kind == "mlp" else RMSprop()
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
        return model
    if kind == "multihead":
        # Assignment 5's multi-head network, as its reproduction builds it.
        model = clock_multihead(SHAPE[kind], seed=SEED, dtype="float32", backend=backend)
        model.compile(optimizer=RMSprop(), loss={"hour": "sparse_categorical_crossentropy", "minute": "mse"})
        return model
    layers = [Input((150, 150, 1))]
    for _ in range(3):
        layers += [Conv2D(32, 3, padding="valid", activation="relu"), MaxPool2D()]
    layers += [Flatten(), Dense(128, activation="relu"), Dense(128, activation="relu"), Dense(1)]
    model = Sequential(layers, seed=SEED, dtype="float32", backend=backend)
    model.compile(optimizer=Adam(), loss="mse")
    return model


def _run_fastdl(benchmark, kind, backend, require_fastdl_backend, name_contender, big):
    for family in FAMILIES[kind]:
        require_fastdl_backend(family, backend)
    x, y = _data(kind)
    model = _fastdl_model(kind, backend)

    def step():
        model.fit(x, y, epochs=1, batch_size=len(x), shuffle=False, verbose=0)

    step()  # untimed: compiles the kernels and allocates the optimizer state
    if torch is not None:
        assert model.count_params() == _n_params(_torch_model(kind)), kind
    if big:
        benchmark.pedantic(step, rounds=ROUNDS, iterations=STEPS, warmup_rounds=0)
    else:
        benchmark(step)
    name_contender(GROUPS[kind], f"fastdl[{backend}]", _rate_note(benchmark, kind))


# PyTorch ---------------------------------------------------------------------------------------


def _torch_model(kind):
    nn = torch.nn
    torch.manual_seed(SEED)
    if kind == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
                             nn.Linear(100, 10))
    if kind == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, 64, 7, padding="same"), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding="same"), nn.ReLU(),
            nn.Conv2d(128, 128, 3, padding="same"), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(128, 256, 3, padding="same"), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding="same"), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(256 * 3 * 3, 128), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(128, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 10),
        )
    if kind == "multihead":
        return _torch_multihead()
    layers, channels = [], 1
    for _ in range(3):
        layers += [nn.Conv2d(channels, 32, 3), nn.ReLU(), nn.MaxPool2d(2)]
        channels = 32
    # 150 -> 148 -> 74 -> 72 -> 36 -> 34 -> 17
    layers += [nn.Flatten(), nn.Linear(32 * 17 * 17, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
               nn.Linear(128, 1)]
    return nn.Sequential(*layers)


def _torch_multihead():
    nn = torch.nn

    class TorchMultiHead(nn.Module):
        """The multi-head clock network in NCHW: a shared trunk, a minute head and an hour head."""

        def __init__(self):
            super().__init__()
            self.trunk = nn.Sequential(
                nn.Conv2d(1, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(16, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(32, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
            flat = 32 * 17 * 17
            self.minute = nn.Sequential(nn.Linear(flat, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                                        nn.Linear(128, 1))
            self.hour_in = nn.Linear(flat, 256)  # its kernel carries the L2(0.01) penalty
            self.hour = nn.Sequential(nn.ReLU(), nn.Dropout(0.1), nn.Linear(256, 128), nn.ReLU(),
                                      nn.Dropout(0.1), nn.Linear(128, 12))

        def forward(self, x):
            features = self.trunk(x)
            return self.hour(self.hour_in(features)), self.minute(features)

    return TorchMultiHead()


def _n_params(net):
    return sum(p.numel() for p in net.parameters())


def _torch_optimizer(kind, net):
    if kind == "mlp":
        return torch.optim.SGD(net.parameters(), lr=0.01)
    if kind == "cnn":
        return torch.optim.RMSprop(net.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
    if kind == "multihead":
        return torch.optim.RMSprop(net.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
    return torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)


def _multihead_loss(net, outputs, y):
    """Keras' total: cross-entropy on the hour + MSE on the minute + 0.01 * sum(kernel ** 2)."""
    functional = torch.nn.functional
    hour_logits, minute = outputs
    return (functional.cross_entropy(hour_logits, y["hour"]) + functional.mse_loss(minute, y["minute"])
            + 0.01 * net.hour_in.weight.square().sum())


def _run_torch(benchmark, kind, name_contender, n_threads, big):
    if torch is None:
        pytest.skip(TORCH_MISSING)
    torch.set_num_threads(n_threads)
    x_np, y_np = _data(kind)
    x = torch.from_numpy(x_np).permute(0, 3, 1, 2).contiguous()  # NCHW
    y = {key: torch.from_numpy(value) for key, value in y_np.items()} if isinstance(y_np, dict) \
        else torch.from_numpy(y_np)
    net = _torch_model(kind).train()
    optimizer = _torch_optimizer(kind, net)
    if kind == "multihead":
        def loss_fn(outputs, targets):
            return _multihead_loss(net, outputs, targets)
    else:
        loss_fn = torch.nn.functional.mse_loss if kind == "clock" else torch.nn.functional.cross_entropy
    assert _n_params(net) == _fastdl_model(kind, None).count_params(), kind

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        optimizer.step()

    step()  # untimed warm-up
    if big:
        benchmark.pedantic(step, rounds=ROUNDS, iterations=STEPS, warmup_rounds=0)
    else:
        benchmark(step)
    name_contender(GROUPS[kind], "torch (NCHW)", _rate_note(benchmark, kind))


def _rate_note(benchmark, kind):
    stats = benchmark.stats.stats
    return f"{BATCH[kind] / stats.mean:,.0f} images/s (best step {BATCH[kind] / stats.min:,.0f})"


# The benchmarks --------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def bench_mlp_fastdl(benchmark, backend, require_fastdl_backend, name_contender):
    _run_fastdl(benchmark, "mlp", backend, require_fastdl_backend, name_contender, big=False)


def bench_mlp_torch(benchmark, name_contender, n_threads):
    _run_torch(benchmark, "mlp", name_contender, n_threads, big=False)


@pytest.mark.big
@pytest.mark.parametrize("backend", BACKENDS)
def bench_cnn_fastdl(benchmark, backend, require_fastdl_backend, name_contender):
    _run_fastdl(benchmark, "cnn", backend, require_fastdl_backend, name_contender, big=True)


@pytest.mark.big
def bench_cnn_torch(benchmark, name_contender, n_threads):
    _run_torch(benchmark, "cnn", name_contender, n_threads, big=True)


@pytest.mark.big
@pytest.mark.parametrize("backend", BACKENDS)
def bench_clock_fastdl(benchmark, backend, require_fastdl_backend, name_contender):
    _run_fastdl(benchmark, "clock", backend, require_fastdl_backend, name_contender, big=True)


@pytest.mark.big
def bench_clock_torch(benchmark, name_contender, n_threads):
    _run_torch(benchmark, "clock", name_contender, n_threads, big=True)


@pytest.mark.big
@pytest.mark.parametrize("backend", BACKENDS)
def bench_multihead_fastdl(benchmark, backend, require_fastdl_backend, name_contender):
    _run_fastdl(benchmark, "multihead", backend, require_fastdl_backend, name_contender, big=True)


@pytest.mark.big
def bench_multihead_torch(benchmark, name_contender, n_threads):
    _run_torch(benchmark, "multihead", name_contender, n_threads, big=True)
