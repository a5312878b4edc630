"""fastdl.nn on the cuda backend: models train, predict, save and load as on the CPU.

Each model is built twice from one seed, on the numpy reference backend and on cuda, and trained
on the same batches (the same shuffles and dropout draws): losses, metrics, weights and
predictions agree within float32 rounding. Under numba's CUDA simulator every GPU thread runs as
Python, so the models are tiny.
"""

import numpy as np
import pytest

from fastdl import nn
from fastdl._device import is_device

pytestmark = pytest.mark.cuda

TOL = {np.float32: 2e-5, np.float64: 1e-10}


def _assert_same(cpu, gpu, dtype):
    tol = TOL[dtype]
    for a, b in zip(cpu, gpu):
        assert not is_device(b)
        np.testing.assert_allclose(b, a, rtol=tol, atol=tol)


def _histories_match(h_cpu, h_gpu, dtype):
    assert h_cpu.history.keys() == h_gpu.history.keys()
    for key in h_cpu.history:
        np.testing.assert_allclose(h_gpu.history[key], h_cpu.history[key], rtol=TOL[dtype], atol=TOL[dtype])


def _data(shape, n_classes, n=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, *shape)), rng.integers(0, n_classes, n)


def _train_both(build, compile_args, x, y, dtype, **fit):
    results = {}
    for backend in ("numpy", "cuda"):
        model = build(backend)
        model.compile(*compile_args())
        history = model.fit(x, y, **fit)
        results[backend] = model, history
    return results["numpy"], results["cuda"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mlp_trains_as_on_the_cpu(cuda_backend, dtype):
    x, y = _data((3, 3), 3, n=10)

    def build(backend):
        return nn.Sequential([nn.Input((3, 3)), nn.Flatten(), nn.Dense(5, activation="relu"), nn.Dropout(0.3),
                              nn.Dense(3, activation="softmax")], seed=1, dtype=dtype, backend=backend)

    (cpu, h_cpu), (gpu, h_gpu) = _train_both(
        build, lambda: (nn.SGD(0.1, momentum=0.5), "sparse_categorical_crossentropy", None, ["accuracy"]), x, y, dtype,
        epochs=2, batch_size=4, validation_data=(x[:4], y[:4]))
    assert gpu.on_device and is_device(gpu.layers[1].kernel.value)
    _histories_match(h_cpu, h_gpu, dtype)
    _assert_same(cpu.get_weights(), gpu.get_weights(), dtype)
    _assert_same([cpu.predict(x, batch_size=3)], [gpu.predict(x, batch_size=3)], dtype)
    np.testing.assert_allclose(gpu.evaluate(x, y), cpu.evaluate(x, y), rtol=TOL[dtype])
    _assert_same([cpu(x)], [gpu(x)], dtype)  # NumPy in, NumPy out


@pytest.mark.parametrize("optimizer", ["rmsprop", "adam"])
def test_cnn_trains_as_on_the_cpu(cuda_backend, optimizer):
    dtype = np.float32
    x, y = _data((6, 6, 2), 3, n=6)

    def build(backend):
        return nn.Sequential([
            nn.Input((6, 6, 2)),
            nn.Conv2D(3, 3, padding="same", activation="relu"),  # runs fused with the pooling
            nn.MaxPool2D(2),
            nn.Conv2D(2, 1, activation="tanh"),  # 1x1: the input is the patch matrix
            nn.Conv2D(4, 2, strides=2, padding="same", activation="sigmoid", kernel_regularizer=nn.l2(0.01)),
            nn.MaxPool2D(2, strides=1, padding="same"),
            nn.Flatten(),
            nn.Dense(3, activation="softmax", kernel_regularizer=nn.l2(0.01)),
        ], seed=2, dtype=dtype, backend=backend)

    (cpu, h_cpu), (gpu, h_gpu) = _train_both(
        build, lambda: (optimizer, "sparse_categorical_crossentropy", None, ["accuracy"]), x, y, dtype,
        epochs=2, batch_size=4)
    _histories_match(h_cpu, h_gpu, dtype)
    _assert_same(cpu.get_weights(), gpu.get_weights(), dtype)


def test_convolution_in_slices(cuda_backend, monkeypatch):
    """Images go through im2col in slices when their patches pass PATCH_BYTES; the kernel
    gradients of the slices add up."""
    from fastdl.ops import _nn_on_device

    x, y = _data((5, 5, 2), 2, n=4)

    def build(backend):
        return nn.Sequential([nn.Input((5, 5, 2)), nn.Conv2D(2, 3, activation="relu"), nn.Conv2D(2, 3),
                              nn.Flatten(), nn.Dense(2, activation="softmax")], seed=3, backend=backend)

    monkeypatch.setattr(_nn_on_device, "PATCH_BYTES", 2 * 9 * 18 * 4)  # two images a slice
    (cpu, h_cpu), (gpu, h_gpu) = _train_both(build, lambda: ("sgd", "sparse_categorical_crossentropy"), x, y,
                                             np.float32, epochs=1, batch_size=4, shuffle=False)
    _histories_match(h_cpu, h_gpu, np.float32)
    _assert_same(cpu.get_weights(), gpu.get_weights(), np.float32)


def test_functional_heads_on_device(cuda_backend):
    """A trunk feeding three heads (their gradients summed on the device), weighted losses, a cyclic
    MSE and a probability output whose cross-entropy runs on the host."""
    rng = np.random.default_rng(4)
    x = rng.random((6, 5))
    targets = {"hour": rng.integers(0, 3, 6), "minute": rng.random(6) * 60, "flag": rng.integers(0, 2, 6)}

    def build(backend):
        inputs = nn.Input((5,))
        trunk = nn.Dense(4, activation="relu", name="trunk")(inputs)
        heads = {"hour": nn.Dense(3, activation="softmax", name="hour")(trunk),
                 "minute": nn.Dense(1, name="minute")(trunk),
                 "flag": nn.Dense(1, activation="sigmoid", name="flag")(trunk)}
        return nn.Model(inputs, heads, seed=5, backend=backend)

    def compile_args():
        return ("adam", {"hour": "sparse_categorical_crossentropy", "minute": nn.CyclicMSE(60),
                         "flag": "binary_crossentropy"}, {"hour": 1.0, "minute": 0.01, "flag": 0.5},
                {"hour": ["accuracy"]})

    (cpu, h_cpu), (gpu, h_gpu) = _train_both(build, compile_args, x, targets, np.float32, epochs=2, batch_size=3)
    _histories_match(h_cpu, h_gpu, np.float32)
    _assert_same(cpu.get_weights(), gpu.get_weights(), np.float32)
    p_cpu, p_gpu = cpu.predict(x), gpu.predict(x)
    _assert_same([p_cpu[k] for k in sorted(p_cpu)], [p_gpu[k] for k in sorted(p_gpu)], np.float32)


def test_save_load_and_resume(cuda_backend, tmp_path):
    """save brings weights and optimizer state back; load puts them on the device; training goes on
    as on the CPU, and weights set from NumPy land on the device."""
    x, y = _data((4,), 2, n=8)

    def build(backend):
        model = nn.Sequential([nn.Input((4,)), nn.Dense(3, activation="tanh"), nn.Dense(2, activation="softmax")],
                              seed=6, backend=backend)
        model.compile(nn.RMSprop(0.01), "sparse_categorical_crossentropy")
        return model

    cpu, gpu = build("numpy"), build("cuda")
    cpu.fit(x, y, epochs=1, batch_size=4)
    gpu.fit(x, y, epochs=1, batch_size=4)
    gpu.save(tmp_path / "gpu.npz")
    resumed = build("cuda").load(tmp_path / "gpu.npz")
    assert is_device(resumed.optimizer.state["ms"][0])
    cpu.fit(x, y, epochs=1, batch_size=4)
    resumed.fit(x, y, epochs=1, batch_size=4)
    _assert_same(cpu.get_weights(), resumed.get_weights(), np.float32)

    other = build("cuda")
    other.set_weights(cpu.get_weights())
    _assert_same([cpu.predict(x)], [other.predict(x)], np.float32)


def test_device_arrays_in(cuda_backend):
    """x already on the device trains and predicts without a copy, as NumPy x does."""
    from numba import cuda

    x, y = _data((4,), 2, n=6)

    def build(backend):
        model = nn.Sequential([nn.Input((4,)), nn.Dense(2, activation="softmax")], seed=7, backend=backend)
        model.compile("sgd", "sparse_categorical_crossentropy")
        return model

    host, device = build("cuda"), build("cuda")
    host.fit(x, y, epochs=1, batch_size=3)
    device.fit(cuda.to_device(x.astype(np.float32)), y, epochs=1, batch_size=3)
    _assert_same(host.get_weights(), device.get_weights(), np.float32)
    loss = device.train_on_batch(cuda.to_device(x.astype(np.float32)), y)
    assert loss == pytest.approx(host.train_on_batch(x, y), rel=1e-6)
    assert is_device(device(cuda.to_device(x.astype(np.float32))))
    with pytest.raises(TypeError, match="float32"):
        device.predict(cuda.to_device(x))
    with pytest.raises(ValueError, match="not"):
        build("numpy").predict(cuda.to_device(x.astype(np.float32)))


def test_fit_sends_each_epochs_order_once(cuda_backend, monkeypatch):
    """A shuffled fit on the device sends the batch order over once per epoch, not once per batch (a
    copy from host memory waits for the device to finish its queue), and trains as on the CPU."""
    from fastdl import _device

    x, y = _data((4,), 2, n=7)
    sent = []
    to_device = _device.to_device
    monkeypatch.setattr(_device, "to_device", lambda array: sent.append(np.asarray(array).copy()) or to_device(array))
    models = {}
    for backend in ("numpy", "cuda"):
        models[backend] = nn.Sequential([nn.Input((4,)), nn.Dense(3, activation="relu"), nn.Dense(2, activation="softmax")],
                                        seed=3, backend=backend)
        models[backend].compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
        models[backend].fit(x, y, epochs=2, batch_size=3)  # 3 batches an epoch, the last of 1
    orders = [array for array in sent if array.dtype == np.int64]
    assert len(orders) == 2 and all(sorted(order) == list(range(7)) for order in orders)
    _assert_same(models["numpy"].get_weights(), models["cuda"].get_weights(), np.float32)


class _Doubling(nn.Layer):
    """A user's layer written with NumPy: it has no cuda path."""

    def forward(self, x, training=False):
        return 2 * x

    def backward(self, dout):
        return 2 * dout


def test_layers_without_a_device_path_raise(cuda_backend):
    model = nn.Sequential([nn.Input((4,)), _Doubling(), nn.Dense(2)], backend="cuda")
    with pytest.raises(ValueError, match="_Doubling.*cuda"):
        model.build()


def test_upsampling_trains_as_on_the_cpu(cuda_backend):
    x, y = _data((2, 3, 2), 2, n=4)

    def build(backend):
        return nn.Sequential([nn.Input((2, 3, 2)), nn.UpSampling2D((2, 3)), nn.Conv2D(2, 3, activation="relu"),
                              nn.UpSampling2D(1), nn.Flatten(), nn.Dense(2, activation="softmax")], seed=16,
                             backend=backend)

    (cpu, h_cpu), (gpu, h_gpu) = _train_both(build, lambda: ("sgd", "sparse_categorical_crossentropy"), x, y,
                                             np.float32, epochs=2, batch_size=2)
    _histories_match(h_cpu, h_gpu, np.float32)
    _assert_same(cpu.get_weights(), gpu.get_weights(), np.float32)


def test_frozen_layer_keeps_its_weights(cuda_backend):
    """A frozen layer's parameters are left out of the optimizer's runs; the others still train."""
    x, y = _data((4,), 2, n=6)
    model = nn.Sequential([nn.Input((4,)), nn.Dense(3, activation="relu", trainable=False),
                           nn.Dense(2, activation="softmax")], seed=8, backend="cuda")
    model.compile("sgd", "sparse_categorical_crossentropy")
    before = model.get_weights()
    model.fit(x, y, epochs=1, batch_size=3)
    after = model.get_weights()
    np.testing.assert_array_equal(after[0], before[0])
    assert not np.array_equal(after[2], before[2])


def test_frozen_layers_above_a_trained_one_train_as_on_the_cpu(cuda_backend):
    """Frozen dense, strided, pooled and transposed convolutions pass the input gradients the
    trained first layer needs, without their weights' gradients (None to each op)."""
    x, y = _data((6, 6, 1), 2, n=6)

    def build(backend):
        frozen = [nn.Conv2D(3, 3, strides=2, padding="same", activation="relu"),
                  nn.Conv2DTranspose(2, 3, strides=2, padding="same"),
                  nn.Conv2D(2, 3, padding="same", activation="relu"), nn.MaxPool2D(2), nn.Flatten(),
                  nn.Dense(2, activation="softmax")]
        for layer in frozen:
            layer.trainable = False
        return nn.Sequential([nn.Input((6, 6, 1)), nn.Conv2D(2, 3, padding="same", activation="tanh"), *frozen],
                             seed=18, backend=backend)

    (cpu, h_cpu), (gpu, h_gpu) = _train_both(build, lambda: (nn.SGD(0.5), "sparse_categorical_crossentropy"), x, y,
                                             np.float32, epochs=2, batch_size=3)
    assert not gpu.layers[-1].needs_weight_grads
    _histories_match(h_cpu, h_gpu, np.float32)
    _assert_same(cpu.get_weights(), gpu.get_weights(), np.float32)


def test_generative_layers_train_as_on_the_cpu(cuda_backend):
    """A small VAE: strided convolution, sampling with its KL loss, transposed convolutions at
    strides 2 and 1, batch normalisation, a sigmoid output's binary cross-entropy (its values
    split over the device's threads, not one thread per image)."""
    rng = np.random.default_rng(9)
    x = rng.random((4, 4, 4, 1))

    def build(backend):
        images = nn.Input((4, 4, 1))
        h = nn.Flatten()(nn.Conv2D(2, 3, strides=2, padding="same", activation="relu")(images))
        z = nn.Sampling(kl_weight=0.5)([nn.Dense(3)(h), nn.Dense(3)(h)])
        h = nn.Reshape((2, 2, 2))(nn.Dense(8, activation="relu")(z))
        h = nn.BatchNormalization()(nn.Conv2DTranspose(2, 3, strides=2, padding="same", activation="relu")(h))
        return nn.Model(images, nn.Conv2DTranspose(1, 3, padding="same", activation="sigmoid")(h), seed=10,
                        backend=backend)

    (cpu, h_cpu), (gpu, h_gpu) = _train_both(
        build, lambda: ("adam", "binary_crossentropy"), x, x, np.float32, epochs=2, batch_size=2)
    _histories_match(h_cpu, h_gpu, np.float32)
    _assert_same(cpu.get_weights(), gpu.get_weights(), np.float32)


def test_models_inside_a_model_go_to_the_device(cuda_backend):
    """A GAN's generator and discriminator built without a backend move to the device with the
    model that holds them; the discriminator, frozen there, keeps learning on its own."""
    rng = np.random.default_rng(11)
    results = {}
    for backend in ("numpy", "cuda"):
        generator = nn.Sequential([nn.Input((2,)), nn.Dense(3, activation="tanh")], seed=12, name="g")
        discriminator = nn.Sequential([nn.Input((3,)), nn.Dense(1)], seed=13, name="d")
        discriminator.compile("adam", nn.BinaryCrossentropy(from_logits=True))
        discriminator.trainable = False
        z = nn.Input((2,))
        gan = nn.Model(z, discriminator(generator(z)), seed=14, backend=backend)
        gan.compile("adam", nn.BinaryCrossentropy(from_logits=True))
        losses = []
        draws = np.random.default_rng(15)
        for _ in range(2):
            fake = generator.predict(draws.standard_normal((4, 2)))
            losses.append(discriminator.train_on_batch(np.concatenate([rng.random((4, 3)), fake]),
                                                       np.repeat([[1.0], [0.0]], 4, axis=0)))
            losses.append(gan.train_on_batch(draws.standard_normal((4, 2)), np.ones((4, 1))))
        results[backend] = losses, generator.get_weights() + discriminator.get_weights()
        rng = np.random.default_rng(11)
    assert generator.on_device and discriminator.on_device
    np.testing.assert_allclose(results["cuda"][0], results["numpy"][0], rtol=2e-5)
    _assert_same(results["numpy"][1], results["cuda"][1], np.float32)


def test_callbacks_and_bad_data_on_device(cuda_backend, tmp_path):
    """Checkpoints and early stopping read the weights back from the device and put the best ones
    there again; images with NaN stop fit before any step, as on the CPU."""
    x, y = _data((4,), 2, n=8)

    def build(backend):
        model = nn.Sequential([nn.Input((4,)), nn.Dense(2, activation="softmax")], seed=17, backend=backend)
        model.compile(nn.SGD(0.5), "sparse_categorical_crossentropy")
        return model

    results = {}
    for backend in ("numpy", "cuda"):
        model = build(backend)
        checkpoint = nn.ModelCheckpoint(str(tmp_path / f"{backend}.npz"), monitor="loss")
        stopper = nn.EarlyStopping(monitor="loss", patience=1, restore_best_weights=True)
        model.fit(x, y, epochs=3, batch_size=4, callbacks=[checkpoint, stopper])
        results[backend] = model.get_weights(), build(backend).load(tmp_path / f"{backend}.npz").get_weights()
    for cpu, gpu in zip(results["numpy"], results["cuda"]):
        _assert_same(cpu, gpu, np.float32)

    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        build("cuda").fit(bad, y, epochs=1, batch_size=4)


def test_per_position_cross_entropy_and_training_calls_on_device(cuda_backend):
    # Classes at each pixel (the loss's rows are the last axis of a 4-D device output), and a
    # training call's outputs are the caller's copies, not the buffers the next call reuses.
    dtype = np.float64
    rng = np.random.default_rng(3)
    x, codes = rng.random((4, 3, 3, 2)), rng.integers(0, 3, (4, 3, 3))

    def build(backend):
        return nn.Sequential([nn.Input((3, 3, 2)), nn.Conv2D(3, 1, activation="softmax")], seed=2, dtype=dtype,
                             backend=backend)

    (cpu, h_cpu), (gpu, h_gpu) = _train_both(
        build, lambda: (nn.SGD(0.5), "sparse_categorical_crossentropy", None, ["accuracy"]), x, codes, dtype,
        epochs=2, batch_size=2)
    _histories_match(h_cpu, h_gpu, dtype)
    _assert_same(cpu.get_weights(), gpu.get_weights(), dtype)
    first = gpu(x[:2], training=True)
    kept = first.copy()
    gpu(x[2:], training=True)
    np.testing.assert_array_equal(first, kept)
    # Device in, device out: an inference call's softmax is the caller's too (it was the layer's
    # reused buffer, which the next call overwrote), for the model and the layer alike.
    from numba import cuda

    for call in (gpu, gpu.layers[0]):
        first = call(cuda.to_device(x[:2]))
        kept = first.copy_to_host()
        second = call(cuda.to_device(x[2:]))
        assert second is not first
        np.testing.assert_array_equal(first.copy_to_host(), kept)


def test_device_batches_of_many_shapes_keep_few_buffers(cuda_backend):
    # Predictions over inputs of many lengths: the buffers of the last few batch shapes only.
    model = nn.Sequential([nn.Input((3,)), nn.Dense(2)], seed=0, backend="cuda")
    x = np.random.default_rng(0).random((12, 3)).astype(np.float32)
    for n in range(1, 13):
        np.testing.assert_allclose(model.predict(x[:n], batch_size=8), model.predict(x, batch_size=8)[:n], rtol=1e-6)
    assert len(model._device_batches) <= 4


@pytest.mark.parametrize("kind", ["dense", "activation", "conv2d", "vae_decoder"])
def test_sigmoid_output_fused_with_binary_cross_entropy_as_on_the_cpu(cuda_backend, kind):
    """A sigmoid output's binary cross-entropy starts from its logits on the device too: the loss
    softplus(z) - y z, its gradient at z (a saturated output learns), accuracy of p > 0.5, and
    predictions sigmoid(z), as on the numpy backend."""
    dtype = np.float64
    rng = np.random.default_rng(5)
    if kind in ("dense", "activation"):
        x, y = rng.random((6, 3)), rng.choice([0.0, 1.0], (6, 2))
    elif kind == "conv2d":
        x, y = rng.random((4, 3, 3, 2)), rng.choice([0.0, 1.0, 0.3], (4, 3, 3, 2))
    else:
        x, y = rng.random((4, 2)), rng.choice([0.0, 1.0], (4, 2, 2, 1))

    def build(backend):
        if kind == "dense":
            return nn.Sequential([nn.Input((3,)), nn.Dense(2, activation="sigmoid")], seed=1, dtype=dtype,
                                 backend=backend)
        if kind == "activation":
            return nn.Sequential([nn.Input((3,)), nn.Dense(2), nn.Activation("sigmoid")], seed=1, dtype=dtype,
                                 backend=backend)
        if kind == "conv2d":
            return nn.Sequential([nn.Input((3, 3, 2)), nn.Conv2D(2, 3, padding="same", activation="sigmoid")],
                                 seed=1, dtype=dtype, backend=backend)
        decoder = nn.Sequential([nn.Input((2,)), nn.Dense(4, activation="relu"), nn.Reshape((2, 2, 1)),
                                 nn.Conv2D(1, 3, padding="same", activation="sigmoid")], seed=2, dtype=dtype)
        inputs = nn.Input((2,))
        return nn.Model(inputs, decoder(nn.Dense(2)(inputs)), seed=1, dtype=dtype, backend=backend)

    results = {}
    for backend in ("numpy", "cuda"):
        model = build(backend)
        model.compile(nn.SGD(0.5), "binary_crossentropy", metrics=["accuracy"])
        model.predict(x[:1])
        weights = model.get_weights()
        weights[-1] = weights[-1] - 18.0  # the output's bias: saturated (p ~ 1e-8) on the wrong side of 1s
        model.set_weights(weights)
        logs = [model.evaluate(x, y)] + [model.train_on_batch(x, y) for _ in range(3)]
        results[backend] = logs, model.get_weights(), model.predict(x), weights[-1]
    (cpu_logs, cpu_weights, cpu_out, start), (gpu_logs, gpu_weights, gpu_out, _) = results["numpy"], results["cuda"]
    np.testing.assert_allclose(gpu_logs, cpu_logs, rtol=TOL[dtype], atol=TOL[dtype])
    _assert_same(cpu_weights, gpu_weights, dtype)
    np.testing.assert_allclose(gpu_out, cpu_out, rtol=TOL[dtype], atol=TOL[dtype])
    assert (gpu_weights[-1] - start > 0.1).all()  # the saturated output's bias moved
