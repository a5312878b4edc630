"""fastdl.nn training: it learns, seeds reproduce, save/load resumes identically, bad input is refused."""

import contextlib

import numpy as np
import pytest

import fastdl
from fastdl import nn


def blobs(n=600, seed=0):
    """Three well-separated Gaussian clusters in 8 dimensions."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = rng.standard_normal((3, 8)) * 4
    return (centers[y] + rng.standard_normal((n, 8))).astype(np.float32), y


def bar_images(n=400, seed=0):
    """8x8 one-channel images holding a horizontal (class 0) or vertical (class 1) bar, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(0, 0.3, (n, 8, 8, 1)).astype(np.float32)
    where = rng.integers(1, 7, n)
    for i in range(n):
        if y[i]:
            x[i, :, where[i], 0] += 1
        else:
            x[i, where[i], :, 0] += 1
    return x, y


def small_mlp(seed=0, **kwargs):
    return nn.Sequential([nn.Dense(16, activation="relu", input_shape=(8,)), nn.Dropout(0.2),
                          nn.Dense(3, activation="softmax")], seed=seed, **kwargs)


def small_cnn(seed=0):
    return nn.Sequential([
        nn.Conv2D(4, 3, padding="same", activation="relu", input_shape=(8, 8, 1)),
        nn.MaxPool2D(2),
        nn.Flatten(),
        nn.Dense(2, activation="softmax"),
    ], seed=seed)


def test_mlp_learns():
    x, y = blobs()
    model = small_mlp()
    model.compile(nn.Adam(lr=0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x[:500], y[:500], epochs=10, validation_data=(x[500:], y[500:]))
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(history.history["loss"]) == 10
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["val_accuracy"][-1] > 0.95
    loss, accuracy = model.evaluate(x[500:], y[500:])
    assert accuracy == pytest.approx(history.history["val_accuracy"][-1])
    probs = model.predict(x[500:], batch_size=7)
    assert probs.shape == (100, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    assert (probs.argmax(axis=1) == y[500:]).mean() == pytest.approx(accuracy)


@pytest.mark.parametrize("optimizer", [nn.SGD(lr=0.1, momentum=0.9), nn.RMSprop(lr=0.01)], ids=["sgd", "rmsprop"])
def test_cnn_learns(optimizer):
    x, y = bar_images()
    model = small_cnn()
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=8, batch_size=16, validation_split=0.25)
    assert history.history["val_accuracy"][-1] > 0.95


@pytest.mark.parametrize("loss", ["categorical_crossentropy", "mse"])
def test_one_hot_losses_learn(loss):
    x, y = blobs()
    model = small_mlp()
    model.compile("adam", loss, metrics=["accuracy"])
    history = model.fit(x, np.eye(3)[y], epochs=15, batch_size=32)
    assert history.history["accuracy"][-1] > 0.95


def test_mse_regression():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((256, 3)).astype(np.float32)
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.3
    model = nn.Sequential([nn.Dense(1, input_shape=(3,))], seed=0)
    model.compile(nn.SGD(lr=0.05), "mse")
    history = model.fit(x, y, epochs=30)
    assert history.history["loss"][-1] < 1e-3
    assert isinstance(model.evaluate(x, y), float)


def _weights(model):
    return [p.value.copy() for _, p in model.parameters()]


def test_seed_reproduces_training():
    x, y = blobs(200)
    runs = []
    for _ in range(2):
        model = small_mlp(seed=5)
        model.compile(nn.SGD(lr=0.05, momentum=0.5), "sparse_categorical_crossentropy", ["accuracy"])
        runs.append((model.fit(x, y, epochs=3).history, _weights(model)))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(a, b)
    other = small_mlp(seed=5)
    other.compile(nn.SGD(lr=0.05, momentum=0.5), "sparse_categorical_crossentropy")
    other.fit(x, y, epochs=3, seed=99)  # another shuffle and dropout stream
    assert not np.array_equal(_weights(other)[0], runs[0][1][0])


@pytest.mark.parametrize("make_optimizer", [lambda: nn.Adam(lr=0.01), lambda: nn.SGD(0.05, momentum=0.9),
                                            lambda: nn.RMSprop()], ids=["adam", "sgd", "rmsprop"])
def test_save_load_resumes_identically(tmp_path, make_optimizer):
    x, y = blobs(200)
    straight = small_mlp(seed=1)
    straight.compile(make_optimizer(), "sparse_categorical_crossentropy", ["accuracy"])
    straight.fit(x, y, epochs=2)

    first = small_mlp(seed=1)
    first.compile(make_optimizer(), "sparse_categorical_crossentropy", ["accuracy"])
    first.fit(x, y, epochs=1)
    path = tmp_path / "model.npz"
    first.save(path)

    resumed = small_mlp(seed=123)  # other initial weights and generator: load must replace both
    resumed.compile(make_optimizer(), "sparse_categorical_crossentropy", ["accuracy"])
    resumed.load(path)
    assert resumed.epochs_trained == 1
    history = resumed.fit(x, y, epochs=1)
    assert history.epoch == [1]
    for a, b in zip(_weights(straight), _weights(resumed)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(straight.predict(x), resumed.predict(x))


def test_load_refuses_another_architecture(tmp_path):
    model = small_mlp()
    model.save(tmp_path / "m.npz")
    other = nn.Sequential([nn.Dense(5, input_shape=(8,)), nn.Dense(3)])
    with pytest.raises(ValueError, match="shape"):
        other.load(tmp_path / "m.npz")


def _dropout_elsewhere(kind, seed):
    """A model whose Dropout draws from a generator other than the model's own: a model inside it,
    or the layer's own seed."""
    if kind == "nested":
        inner = nn.Sequential([nn.Dense(8, activation="relu", input_shape=(8,)), nn.Dropout(0.5)], seed=seed + 1)
        return nn.Sequential([inner, nn.Dense(3, activation="softmax")], seed=seed)
    return nn.Sequential([nn.Dense(8, activation="relu", input_shape=(8,)), nn.Dropout(0.5, seed=seed + 1),
                          nn.Dense(3, activation="softmax")], seed=seed)


@pytest.mark.parametrize("kind", ["nested", "dropout_seed"])
def test_every_generator_is_saved_and_reseeded(tmp_path, kind):
    x, y = blobs(64)

    def compiled(seed):
        model = _dropout_elsewhere(kind, seed)
        model.compile(nn.SGD(0.1), "sparse_categorical_crossentropy")
        return model

    straight, first = compiled(1), compiled(1)
    straight.fit(x, y, epochs=2, batch_size=8)
    first.fit(x, y, epochs=1, batch_size=8)
    first.save(tmp_path / "model.npz")
    resumed = compiled(50).load(tmp_path / "model.npz")  # other generators: load sets them all
    resumed.fit(x, y, epochs=1, batch_size=8)
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)
    # fit(seed=) restarts every generator: twice from the same weights, the same training.
    start = straight.get_weights()
    runs = []
    for _ in range(2):
        straight.set_weights(start)
        straight.fit(x, y, epochs=1, batch_size=8, seed=5)
        runs.append(straight.get_weights())
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_a_refused_load_leaves_an_unbuilt_model_unbuilt(tmp_path):
    saved = nn.Sequential([nn.Dense(7, input_shape=(5,)), nn.Dense(2)], seed=0)
    saved.compile("adam", "mse")
    saved.save(tmp_path / "m.npz")
    model = nn.Sequential([nn.Dense(4), nn.Dense(2)], seed=0)
    model.compile("adam", "mse")
    with pytest.raises(ValueError, match=r"dense/kernel has shape \(5, 7\), the model's has \(5, 4\)"):
        model.load(tmp_path / "m.npz")
    assert model.input_shape is None
    model.fit(np.ones((4, 6)), np.ones((4, 2)))  # builds for its own data
    # Refused for its optimizer's state (SGD's with momentum, not Adam's): still unbuilt.
    saved.compile(nn.SGD(0.1, momentum=0.9), "mse")
    saved.fit(np.ones((4, 5)), np.ones((4, 2)))
    saved.save(tmp_path / "sgd.npz")
    model = nn.Sequential([nn.Dense(7), nn.Dense(2)], seed=0)
    model.compile("adam", "mse")
    with pytest.raises(ValueError, match="SGD's, not Adam's"):
        model.load(tmp_path / "sgd.npz")
    assert model.input_shape is None and not model.built


def test_loading_a_file_that_is_no_save_is_a_clear_error(tmp_path):
    model = small_mlp()
    model.save(tmp_path / "m.npz")
    whole = (tmp_path / "m.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "empty.npz").write_bytes(b"")
    np.savez(tmp_path / "foreign.npz", weights=np.ones(3))
    np.save(tmp_path / "array.npy", np.ones(3))
    for name in ["truncated.npz", "empty.npz", "foreign.npz", "array.npy"]:
        with pytest.raises(ValueError, match=f"{name} is not a model saved by fastdl.nn"):
            small_mlp().load(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        small_mlp().load(tmp_path / "missing.npz")


def _compiled():
    model = small_mlp()
    model.compile("sgd", "sparse_categorical_crossentropy", ["accuracy"])
    return model


def test_wrong_input_shape():
    x, y = blobs(50)
    with pytest.raises(ValueError, match=r"expects \(8,\)"):
        _compiled().fit(x[:, :5], y)
    with pytest.raises(ValueError, match="first layer expects"):
        _compiled().predict(x.reshape(50, 2, 4))


def test_labels_out_of_range():
    x, y = blobs(50)
    with pytest.raises(ValueError, match="class code 3"):
        _compiled().fit(x, np.where(y == 0, 3, y))
    with pytest.raises(ValueError, match=">= 0"):
        _compiled().fit(x, -y)
    with pytest.raises(ValueError, match="integer"):
        _compiled().fit(x, y + 0.5)


def test_mismatched_lengths():
    x, y = blobs(50)
    with pytest.raises(ValueError, match="50 samples but y has 49"):
        _compiled().fit(x, y[:49])
    model = small_mlp()
    model.compile("adam", "categorical_crossentropy")
    with pytest.raises(ValueError, match="shape"):
        model.fit(x, np.eye(4)[y])


def test_nan_in_a_batch_names_epoch_and_batch():
    x, y = blobs(100)
    x[70, 2] = np.nan
    model = _compiled()
    with pytest.raises(ValueError, match="epoch 1, batch 3"):
        model.fit(x, y, batch_size=32, shuffle=False)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_diverging_loss_stops():
    x, y = blobs(100)
    model = nn.Sequential([nn.Dense(16, input_shape=(8,)), nn.Dense(3)], seed=0)
    model.compile(nn.SGD(lr=1e10), "mse")
    with pytest.raises(ValueError, match=r"epoch \d+, batch \d+: .*(NaN|infinity|loss is).*lower the learning rate"):
        model.fit(x * 1e3, np.eye(3)[y], epochs=3)


def test_fit_before_compile():
    x, y = blobs(20)
    with pytest.raises(RuntimeError, match="compile"):
        small_mlp().fit(x, y)


def test_verbose_prints_one_line_per_epoch(capsys):
    x, y = blobs(64)
    _compiled().fit(x, y, epochs=2, verbose=1)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith("Epoch 2/2") and "accuracy" in lines[1]


def test_input_shape_from_first_fit():
    x, y = blobs(64)
    model = nn.Sequential([nn.Dense(3, activation="softmax")], seed=0)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1)
    assert model.input_shape == (8,)
    assert model.count_params() == 27


@pytest.mark.parametrize("from_logits", [True, False])
def test_binary_crossentropy_learns(from_logits):
    x, y = blobs(300)
    y = (y == 0).astype(np.float32)
    activation = None if from_logits else "sigmoid"
    model = nn.Sequential([nn.Dense(8, activation="leaky_relu", input_shape=(8,), kernel_regularizer=nn.l2(1e-4)),
                           nn.Dense(1, activation=activation)], seed=0)
    loss = nn.BinaryCrossentropy(from_logits=True) if from_logits else "binary_crossentropy"
    model.compile(nn.Adam(lr=0.02), loss, metrics=["accuracy"])
    history = model.fit(x, y, epochs=10)
    assert history.history["accuracy"][-1] > 0.95


def test_cyclic_mse_learns_across_the_wrap():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 0.2, (256, 1)).astype(np.float32)
    y = (x[:, 0] * 12 + 11) % 12  # targets from 11 wrap past 11.99 to 0 .. 1.4
    model = nn.Sequential([nn.Dense(1, input_shape=(1,))], seed=0)
    model.compile(nn.Adam(lr=0.1), nn.CyclicMSE(12))
    history = model.fit(x, y, epochs=40)
    assert history.history["loss"][-1] < 0.05


def _one_step_grads(model, x, y):
    """Every parameter's gradient after one forward and backward pass of (x, y)."""
    out = model._forward(model._as_batch(x), training=True)
    model._batch_loss(out, y)
    fused = model._fused()
    model._backward(model.loss.backward_logits() if fused else model.loss.backward(), fused)
    return {name: p.grad.copy() for name, p in model.parameters()}


def _mlp_without_dropout():
    return nn.Sequential([nn.Dense(16, activation="relu", input_shape=(8,)), nn.Dense(3, activation="softmax")],
                         seed=0)


@pytest.mark.parametrize("make_model", [_mlp_without_dropout, small_cnn], ids=["mlp", "cnn"])
def test_first_layers_skip_the_input_gradient(make_model):
    """The first parametrised layer computes no input gradient, and every weight gradient stays the same."""
    x, y = (blobs(32) if make_model is _mlp_without_dropout else bar_images(32))
    model = make_model()
    model.compile(nn.SGD(0.1), "sparse_categorical_crossentropy")
    model.build()
    assert [layer.needs_input_grad for layer in model.layers][:1] == [False]
    assert all(layer.needs_input_grad for layer in model.layers[1:])
    skipped = _one_step_grads(model, x, y)
    for layer in model.layers:
        layer.needs_input_grad = True
    full = _one_step_grads(model, x, y)
    for name in full:
        np.testing.assert_array_equal(skipped[name], full[name], err_msg=name)


def test_inference_outputs_stay_the_callers():
    """Training steps reuse their buffers; what model(x) and predict returned is never overwritten."""
    x, y = blobs(64)
    model = small_mlp()
    model.compile(nn.SGD(0.1), "sparse_categorical_crossentropy")
    first = model(x[:16])
    kept = first.copy()
    predicted = model.predict(x[:16])
    model.fit(x, y, epochs=1, batch_size=16)
    model(x[16:32])
    np.testing.assert_array_equal(first, kept)
    np.testing.assert_array_equal(predicted, kept)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_step_leaves_the_gradients(momentum):
    x, y = blobs(32)
    model = small_mlp()
    model.compile(nn.SGD(0.1, momentum=momentum), "sparse_categorical_crossentropy")
    grads = _one_step_grads(model, x, y)
    before = {name: p.value.copy() for name, p in model.parameters()}
    model.optimizer.step()
    for name, p in model.parameters():
        np.testing.assert_array_equal(p.grad, grads[name], err_msg=name)
        np.testing.assert_allclose(p.value, before[name] - np.float32(0.1) * grads[name], rtol=1e-6, err_msg=name)


class _ThreadsSeen(nn.Callback):
    """Records fastdl's kernel threads and BLAS' threads during training."""

    def on_batch_end(self, batch, logs=None):
        from threadpoolctl import threadpool_info

        blas = {info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}
        self.seen = (fastdl.get_num_threads(), blas)


@pytest.mark.parametrize("make_model, gemm_only", [(small_mlp, True), (small_cnn, False)])
def test_threads_go_to_blas_or_to_fastdl(make_model, gemm_only):
    """A model of Dense layers leaves BLAS its threads and runs fastdl's kernels on one; any other
    model runs BLAS on one thread and fastdl's kernels on all of them. Afterwards, all is as before."""
    fastdl.set_num_threads(2)
    x, y = (blobs(64) if gemm_only else bar_images(64))
    model = make_model()
    model.compile(nn.SGD(0.01), "sparse_categorical_crossentropy")
    seen = _ThreadsSeen()
    model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[seen])
    assert seen.seen == ((1, {2}) if gemm_only else (2, {1}))
    assert fastdl.get_num_threads() == 2


@pytest.mark.parametrize("backend", ["numpy", "cython"])
def test_fused_training_stops_at_the_logits(backend, monkeypatch):
    """With a fused softmax-cross-entropy loss, fit's forward pass skips the last layer's softmax
    (the loss starts from the logits, accuracy reads their argmax): the same losses, accuracies and
    weights as a training that computes it; predictions still go through the softmax."""
    from fastdl.nn import activations
    from fastdl.nn.model import Sequential

    rng = np.random.default_rng(4)
    x, y = rng.random((20, 6)), rng.integers(0, 3, 20)

    def train():
        model = nn.Sequential([nn.Input((6,)), nn.Dense(5, activation="relu"), nn.Dense(3, activation="softmax")],
                              seed=2, backend=backend)
        model.compile("sgd", "sparse_categorical_crossentropy", ["accuracy"])
        return model, model.fit(x, y, epochs=2, batch_size=7).history

    calls = []
    softmax = activations.softmax
    monkeypatch.setattr(activations, "softmax", lambda *args, **kwargs: calls.append(1) or softmax(*args, **kwargs))
    skipping, history = train()
    assert not calls and not skipping.layers[-1].logits_suffice
    np.testing.assert_allclose(skipping.predict(x).sum(axis=1), 1, rtol=1e-5)  # probabilities
    monkeypatch.setattr(Sequential, "_training_to_logits", lambda self: contextlib.nullcontext())
    computing, reference = train()
    assert calls
    assert history == reference
    for a, b in zip(skipping.get_weights(), computing.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's, on the overflowing products
@pytest.mark.parametrize("optimizer, scale", [("sgd", 1e20), (nn.Adam(lr=0.0), 1e12)], ids=["sgd", "adam-lr0"])
def test_fit_never_leaves_non_finite_weights(optimizer, scale):
    # A float32 gradient or update overflows while the float64 loss stays finite: the epoch's
    # weights and optimizer state go back to those from before it, with an error.
    x, y = np.full((8, 2), scale, np.float32), np.zeros((8, 1), np.float32)
    model = nn.Sequential([nn.Input((2,)), nn.Dense(1)], seed=0)
    model.compile(optimizer, "mse")
    before = model.get_weights()
    with pytest.raises(ValueError, match="before (this )?epoch"):
        model.fit(x, y, epochs=3, batch_size=4)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    _, slots = model.optimizer.state_dict()
    assert all(np.isfinite(s).all() for s in slots.values())
    model.fit(x / scale, y, epochs=1)  # and it trains on from there
    assert all(np.isfinite(w).all() for w in model.get_weights())
