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

- predict of one image by the course CNN (not a training step): fastdl's `model.predict(x,
  verbose=0)` against PyTorch's `eval()` model under `no_grad()`, with a softmax on its logits.

- VAE and GAN of assignment 6 on 64x64x3 images, batch 64 (`fastdl.repro.a6_models`): conv net
  (Conv2D 128 3x3 stride 2 same relu, five times, Flatten), deconv net (Dense 4x4x64, Reshape,
  Conv2DTranspose 128 3x3 stride 2 same relu four times, Conv2D 3 3x3 same). VAE step: encoder,
  z_mean and z_log_var, sampling, decoder (sigmoid), binary cross-entropy summed over pixels plus
  KL, Adam; `vae.train_on_batch`. GAN step (`a6_models.gan_step`): 32 generated images, the
  discriminator's `train_on_batch` on them and 32 real ones, then the generator's step through the
  frozen discriminator on 64 latent vectors; Adam(2e-4, beta_1 0.5). PyTorch's GAN step freezes
  the discriminator with requires_grad_(False) for the generator's step. Marked `big`.
  "same" is Keras' on both sides: a stride-2 Conv2D on an even size pads one pixel after, none
  before (torch: ZeroPad2d((0, 1, 0, 1)) and padding=0, not padding=1, which pads both sides and
  shifts every output by a pixel), and a stride-2 Conv2DTranspose keeps the top-left of its full
  output (torch: padding=0 cropped to 2n, not padding=1 with output_padding=1, which crops the
  top-left pixel instead; see bench_nn_ops.torch_conv2d_transpose_same).

fastdl's step goes through the public API: `model.fit(x, y, epochs=1, batch_size=len(x),
shuffle=False, verbose=0)`, i.e. exactly one batch per call (the same step as
`train_on_batch`; fit's per-call checks are part of the time). PyTorch's step is
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
    name_contender(GROUPS[kind], f"fastdl[{backend}]", _rate_note(kind))


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


def _torch_step(kind):
    """(one training step of kind's PyTorch twin on _data's batch in NCHW, its parameter count)."""
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

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        optimizer.step()

    return step, _n_params(net)


def _run_torch(benchmark, kind, name_contender, n_threads, big):
    if torch is None:
        pytest.skip(TORCH_MISSING)
    torch.set_num_threads(n_threads)
    step, n_params = _torch_step(kind)
    assert n_params == _fastdl_model(kind, None).count_params(), kind
    step()  # untimed warm-up
    if big:
        benchmark.pedantic(step, rounds=ROUNDS, iterations=STEPS, warmup_rounds=0)
    else:
        benchmark(step)
    name_contender(GROUPS[kind], "torch (NCHW)", _rate_note(kind))


def _rate_note(kind):
    return lambda stats: f"{BATCH[kind] / stats.mean:,.0f} images/s (best step {BATCH[kind] / stats.min:,.0f})"


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


# Inference of one image ------------------------------------------------------------------------

PREDICT_GROUP = "predict: course CNN 28x28x1, one image, float32"


def _per_image_note(stats):
    return f"{1e3 * stats.mean:.2f} ms an image (best {1e3 * stats.min:.2f})"


@pytest.mark.parametrize("backend", BACKENDS)
def bench_cnn_predict_one_fastdl(benchmark, backend, require_fastdl_backend, name_contender):
    for family in FAMILIES["cnn"]:
        require_fastdl_backend(family, backend)
    x = _data("cnn")[0][:1]
    model = _fastdl_model("cnn", backend)
    model.predict(x, verbose=0)  # untimed: compiles the kernels
    benchmark(model.predict, x, verbose=0)
    name_contender(PREDICT_GROUP, f"fastdl[{backend}]", _per_image_note)


def bench_cnn_predict_one_torch(benchmark, name_contender, n_threads):
    """PyTorch's model.eval() under no_grad, softmax on the logits (as fastdl's last layer)."""
    if torch is None:
        pytest.skip(TORCH_MISSING)
    torch.set_num_threads(n_threads)
    net = _torch_model("cnn").eval()
    x = torch.from_numpy(_data("cnn")[0][:1]).permute(0, 3, 1, 2).contiguous()  # NCHW

    def predict():
        with torch.no_grad():
            return torch.softmax(net(x), dim=1)

    predict()  # untimed warm-up
    benchmark(predict)
    name_contender(PREDICT_GROUP, "torch (NCHW)", _per_image_note)


# Assignment 6: VAE and GAN ---------------------------------------------------------------------

GENERATIVE_GROUPS = {"vae": "train step: VAE 64x64x3, batch 64, Adam, float32",
                     "gan": "train step: GAN 64x64x3, discriminator + generator, batch 64, Adam, float32"}
GENERATIVE_BATCH = 64


def _fastdl_generative(kind, backend):
    from fastdl.repro import a6_models

    x = np.random.default_rng(SEED).random((GENERATIVE_BATCH, 64, 64, 3), dtype=np.float32)
    if kind == "vae":
        vae, _, _ = a6_models.build_vae(x.shape[1:], seed=SEED, backend=backend)
        return vae.count_params(), lambda: vae.train_on_batch(x, x)
    gan, generator, discriminator = a6_models.build_gan(x.shape[1:], seed=SEED, backend=backend)
    rng = np.random.default_rng(SEED)
    real = x[:GENERATIVE_BATCH // 2] * 2 - 1
    return (generator.count_params() + discriminator.count_params(),
            lambda: a6_models.gan_step(gan, generator, discriminator, real, rng))


def _torch_generative(kind):
    nn = torch.nn
    torch.manual_seed(SEED)

    class SameConvTranspose2d(nn.ConvTranspose2d):
        """Keras' Conv2DTranspose 3x3 stride 2 "same": the full (2n + 1)^2 output's top-left (2n)^2."""

        def forward(self, x):
            return super().forward(x)[:, :, :2 * x.shape[2], :2 * x.shape[3]]

    def conv_net(out):
        layers, channels = [], 3
        for _ in range(5):  # Keras' "same" at stride 2 on an even size: one pixel of padding, after
            layers += [nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(channels, 128, 3, stride=2), nn.ReLU()]
            channels = 128
        return nn.Sequential(*layers, nn.Flatten(), nn.Linear(128 * 2 * 2, out))

    def deconv_net(last):
        layers, channels = [nn.Linear(32, 4 * 4 * 64), nn.Unflatten(1, (64, 4, 4))], 64
        for _ in range(4):
            layers += [SameConvTranspose2d(channels, 128, 3, stride=2), nn.ReLU()]
            channels = 128
        return nn.Sequential(*layers, nn.Conv2d(128, 3, 3, padding=1), last)

    return conv_net, deconv_net


def _torch_generative_step(kind):
    functional = torch.nn.functional
    conv_net, deconv_net = _torch_generative(kind)
    x = torch.from_numpy(np.random.default_rng(SEED).random((GENERATIVE_BATCH, 64, 64, 3), dtype=np.float32))
    x = x.permute(0, 3, 1, 2).contiguous()
    if kind == "vae":
        encoder, decoder = conv_net(2 * 32), deconv_net(torch.nn.Sigmoid())
        modules = torch.nn.ModuleList([encoder, decoder])
        optimizer = torch.optim.Adam(modules.parameters(), lr=1e-3, eps=1e-7)

        def step():
            optimizer.zero_grad(set_to_none=True)
            z_mean, z_log_var = encoder(x).chunk(2, dim=1)
            z = z_mean + torch.exp(0.5 * z_log_var) * torch.randn_like(z_mean)
            out = decoder(z)
            reconstruction = functional.binary_cross_entropy(out, x, reduction="sum") / len(x)
            kl = -0.5 * torch.sum(1 + z_log_var - z_mean ** 2 - torch.exp(z_log_var)) / len(x)
            (reconstruction + kl).backward()
            optimizer.step()

        # One Linear(512, 64) has as many weights as Dense z_mean and Dense z_log_var together.
        return sum(p.numel() for p in modules.parameters()), step
    generator, discriminator = deconv_net(torch.nn.Tanh()), conv_net(1)
    g_optimizer = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999), eps=1e-7)
    d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999), eps=1e-7)
    real = x[:GENERATIVE_BATCH // 2] * 2 - 1
    half = GENERATIVE_BATCH // 2
    labels = torch.cat([torch.ones(half, 1), torch.zeros(half, 1)])

    def step():
        with torch.no_grad():
            fake = generator(torch.randn(half, 32))
        d_optimizer.zero_grad(set_to_none=True)
        functional.binary_cross_entropy_with_logits(discriminator(torch.cat([real, fake])), labels).backward()
        d_optimizer.step()
        discriminator.requires_grad_(False)
        g_optimizer.zero_grad(set_to_none=True)
        out = discriminator(generator(torch.randn(GENERATIVE_BATCH, 32)))
        functional.binary_cross_entropy_with_logits(out, torch.ones(GENERATIVE_BATCH, 1)).backward()
        g_optimizer.step()
        discriminator.requires_grad_(True)

    n_params = sum(p.numel() for p in generator.parameters()) + sum(p.numel() for p in discriminator.parameters())
    return n_params, step


def _generative_note(stats):
    return f"{GENERATIVE_BATCH / stats.mean:,.0f} images/s (best step {GENERATIVE_BATCH / stats.min:,.0f})"


@pytest.mark.big
@pytest.mark.parametrize("kind", ["vae", "gan"])
@pytest.mark.parametrize("backend", BACKENDS)
def bench_generative_fastdl(benchmark, kind, backend, require_fastdl_backend, name_contender):
    for family in ("conv", "dense"):
        require_fastdl_backend(family, backend)
    n_params, step = _fastdl_generative(kind, backend)
    step()  # untimed: compiles the kernels and allocates the optimizer state
    if torch is not None:
        assert n_params == _torch_generative_step(kind)[0], kind
    benchmark.pedantic(step, rounds=ROUNDS, iterations=STEPS, warmup_rounds=0)
    name_contender(GENERATIVE_GROUPS[kind], f"fastdl[{backend}]", _generative_note)


@pytest.mark.big
@pytest.mark.parametrize("kind", ["vae", "gan"])
def bench_generative_torch(benchmark, kind, name_contender, n_threads):
    if torch is None:
        pytest.skip(TORCH_MISSING)
    torch.set_num_threads(n_threads)
    n_params, step = _torch_generative_step(kind)
    # The same check as bench_generative_fastdl's, which `make bench` runs without torch in its process.
    assert n_params == _fastdl_generative(kind, None)[0], kind
    step()  # untimed warm-up
    benchmark.pedantic(step, rounds=ROUNDS, iterations=STEPS, warmup_rounds=0)
    name_contender(GENERATIVE_GROUPS[kind], "torch (NCHW)", _generative_note)
