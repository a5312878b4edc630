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
        model.compile(nn.SGD(lr=0.05, momentum=0.5), "sparse_categorical_crossentropy", metrics=["accuracy"])
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
    straight.compile(make_optimizer(), "sparse_categorical_crossentropy", metrics=["accuracy"])
    straight.fit(x, y, epochs=2)

    first = small_mlp(seed=1)
    first.compile(make_optimizer(), "sparse_categorical_crossentropy", metrics=["accuracy"])
    first.fit(x, y, epochs=1)
    path = tmp_path / "model.npz"
    first.save(path)

    resumed = small_mlp(seed=123)  # other initial weights and generator: load must replace both
    resumed.compile(make_optimizer(), "sparse_categorical_crossentropy", metrics=["accuracy"])
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
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
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


def test_nan_in_x_names_the_sample():
    x, y = blobs(100)
    x[70, 2] = np.nan
    model = _compiled()
    with pytest.raises(ValueError, match=r"x\[70\] holds NaN"):
        model.fit(x, y, batch_size=32, shuffle=False)


def test_nan_in_an_iterators_batch_names_epoch_and_batch():
    x, y = blobs(100)
    x[70, 2] = np.nan
    model = _compiled()
    with pytest.raises(ValueError, match="epoch 1, batch 3"):
        model.fit(((x[i:i + 32], y[i:i + 32]) for i in range(0, 100, 32)), epochs=1)


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
        model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
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


class _Steps(nn.Callback):
    """Counts the training steps of a fit."""

    def on_train_begin(self, logs=None):
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_nan_loss_puts_back_the_weights_from_before_the_epoch():
    # Unscaled inputs: the weights grow to ~1e26 over three finite steps, then the loss is inf.
    # The state is finite when it stops, and it was kept all the same (the error said "lower the
    # learning rate" with the diverged weights left in the model).
    from fastdl._validation import NonFiniteError

    rng = np.random.default_rng(0)
    x = (rng.normal(size=(64, 3)) * 30).astype(np.float32)
    y = (x @ [[1.0], [2.0], [3.0]]).astype(np.float32)
    model = nn.Sequential([nn.Input(3), nn.Dense(16, activation="relu"), nn.Dense(1)], seed=0)
    model.compile(nn.SGD(0.05), "mse")
    model.fit(x / 30, y / 30, batch_size=8, epochs=1)
    before, steps = model.get_weights(), model.optimizer.iterations
    with pytest.raises(NonFiniteError, match=r"epoch 2, batch \d+: the loss is .* put back to those from before "
                                             r"epoch 2"):
        model.fit(x, y, batch_size=8, epochs=1)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert model.optimizer.iterations == steps and model.epochs_trained == 1


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("make_optimizer", [lambda: nn.SGD(0.01), lambda: nn.Adam(lr=0.0)], ids=["sgd", "adam-lr0"])
def test_train_on_batch_refuses_a_step_of_gradients_out_of_range(make_optimizer):
    # Gradients that overflow (SGD: weights of inf) or whose squares do (Adam's second moment)
    # while the float64 loss is finite: the step is not taken (it returned with inf weights).
    from fastdl._validation import NonFiniteError

    rng = np.random.default_rng(0)
    x = (rng.normal(size=(16, 3)) * 1e12).astype(np.float32)
    y = (rng.normal(size=(16, 1)) * 1e10).astype(np.float32)
    model = nn.Sequential([nn.Input(3), nn.Dense(4, activation="relu"), nn.Dense(1)], seed=0)
    model.compile(make_optimizer(), "mse")
    model.train_on_batch(x / 1e12, y / 1e10)  # one good step: slots that are not zero
    before, (_, slots) = model.get_weights(), model.optimizer.state_dict()
    slots = {key: value.copy() for key, value in slots.items()}
    with pytest.raises(NonFiniteError, match="a gradient is NaN, infinite or too large.*the step was not taken"):
        model.train_on_batch(x, y)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    meta, after = model.optimizer.state_dict()
    assert meta["iterations"] == 1
    for key in slots:
        np.testing.assert_array_equal(after[key], slots[key])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_train_on_batch_with_a_nan_loss_puts_back_the_moving_statistics():
    """The forward pass of a step that stops on its loss already moved BatchNormalization's statistics."""
    from fastdl._validation import NonFiniteError

    model = nn.Sequential([nn.Input(3), nn.Dense(4), nn.BatchNormalization(), nn.Dense(1)], seed=0)
    model.compile("sgd", "mse")
    weights = model.get_weights()
    weights[0] = np.full_like(weights[0], 1e38)  # activations overflow to inf
    model.set_weights(weights)
    with pytest.raises(NonFiniteError, match="the loss is"):
        model.train_on_batch(np.arange(12.0).reshape(4, 3), np.zeros((4, 1)))
    for a, b in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_fit_evaluate_take_keras_positional_order():
    # Keras 3: fit(x, y, batch_size, epochs, verbose, callbacks, validation_split, validation_data,
    # shuffle, class_weight, ...): fit(x, y, 4, 3) is 3 epochs of batches of 4 (it was 4 epochs of 3).
    x, y = blobs(12)
    model = _compiled()
    steps = _Steps()
    history = model.fit(x, y, 4, 3, 0, [steps], 0.0, None, False)
    assert history.epoch == [0, 1, 2] and steps.steps == 9
    with pytest.raises(TypeError):
        model.fit(x, y, 4, 1, 0, None, 0.0, None, True, {0: 1.0})  # Keras' class_weight: not supported
    assert model.fit(x, y, None).history["loss"]  # batch_size None is 32, as Keras
    # evaluate(x, y, batch_size, verbose, sample_weight, ...): return_dict and callbacks keyword-only.
    assert model.evaluate(x, y, 4, 0) == model.evaluate(x, y, batch_size=4)
    for call in (lambda: model.evaluate(x, y, 4, 0, True), lambda: model.train_on_batch(x, y, True),
                 lambda: model.test_on_batch(x, y, True)):
        with pytest.raises(TypeError):
            call()


@pytest.mark.parametrize("n, split, n_train", [(10, 0.25, 7), (25, 0.1, 22), (1002, 0.1, 901), (10, 0.15, 8)])
def test_validation_split_trains_on_keras_count(n, split, n_train):
    # Keras: the first floor(n * (1 - split)) samples train (round(n * split) were held out: 8, 23, 902).
    x, y = blobs(n)

    class Seen(nn.Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.seen = logs["seen"]

    seen = Seen()
    history = _compiled().fit(x, y, batch_size=2000, validation_split=split, callbacks=[seen])
    assert seen.seen == n_train and "val_loss" in history.history
    with pytest.raises(ValueError, match="leaves no training or validation samples"):
        _compiled().fit(x[:3], y[:3], validation_split=0.9)


def test_history_records_what_callbacks_add_to_the_logs():
    class AddRate(nn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["lr"] = self.model.optimizer.learning_rate

    x, y = blobs(32)
    history = _compiled().fit(x, y, epochs=2, callbacks=[AddRate()])
    assert history.history["lr"] == [0.01, 0.01] and history.epoch == [0, 1]


def test_shuffle_is_a_bool():
    x, y = blobs(32)
    with pytest.raises(ValueError, match="shuffle='batch' is not supported"):
        _compiled().fit(x, y, shuffle="batch")
    with pytest.raises(TypeError, match="shuffle must be True or False"):
        _compiled().fit(x, y, shuffle=None)
    assert _compiled().fit(x, y, shuffle=np.bool_(False)).epoch == [0]


def test_frozen_layers_add_no_weight_penalty_to_the_loss():
    """As Keras 3: the loss counts the kernel_regularizer penalty of the weights the model trains
    only; a frozen base's (or a GAN's frozen discriminator's) is a constant no step can lower."""
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((6, 4)), rng.standard_normal((6, 2))
    base = nn.Dense(3, kernel_regularizer=nn.l2(0.1), input_shape=(4,), name="base")
    head = nn.Dense(2, name="head")
    model = nn.Sequential([base, head], seed=0)
    model.compile("sgd", "mse")
    penalty = 0.1 * float((base.kernel.value ** 2).sum())
    plain = float(((model.predict(x) - y) ** 2).mean())
    assert model.evaluate(x, y) == pytest.approx(plain + penalty, rel=1e-5)
    base.trainable = False
    model.compile("sgd", "mse")
    assert model.evaluate(x, y) == pytest.approx(plain, rel=1e-5)
    # A model inside another: frozen in the outer model only.
    inner = nn.Sequential([nn.Dense(3, kernel_regularizer=nn.l2(0.1), input_shape=(4,))], name="inner", seed=0)
    inner.compile("sgd", "mse")
    kernel = inner.layers[0].kernel.value
    assert inner.evaluate(x, y[:, :1].repeat(3, 1)) > 0.1 * float((kernel ** 2).sum())
    inner.trainable = False
    outer = nn.Sequential([inner, nn.Dense(2)], seed=0)
    outer.compile("sgd", "mse")
    assert outer.evaluate(x, y) == pytest.approx(float(((outer.predict(x) - y) ** 2).mean()), rel=1e-5)


def test_a_file_with_the_names_before_keras_3s_rule_loads(tmp_path):
    """Unnamed Conv2DTranspose and LeakyReLU layers were "conv2dtranspose" and "leaky_relu" before
    they took Keras 3's names: a checkpoint saved then still loads, optimizer state included."""
    import json

    def model():
        built = nn.Sequential([nn.Input((4, 4, 2)), nn.Conv2DTranspose(3, 2, strides=2), nn.LeakyReLU(),
                               nn.Flatten(), nn.Dense(2)], seed=0)
        built.compile(nn.Adam(0.01), "mse")
        return built

    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((6, 4, 4, 2)), rng.standard_normal((6, 2))
    trained = model()
    trained.fit(x, y, batch_size=3)
    assert [layer.name for layer in trained.layers[:2]] == ["conv2d_transpose", "leaky_re_lu"]
    trained.save(tmp_path / "now.npz")
    with np.load(tmp_path / "now.npz") as data:
        arrays = {key.replace("conv2d_transpose/", "conv2dtranspose/"): value for key, value in data.items()}
    meta = json.loads(str(arrays["meta"]))
    meta["optimizer_weights"] = [name.replace("conv2d_transpose/", "conv2dtranspose/")
                                 for name in meta["optimizer_weights"]]
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "before.npz", **arrays)
    loaded = model().load(tmp_path / "before.npz")
    for a, b in zip(trained.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert loaded.optimizer.iterations == trained.optimizer.iterations
    np.testing.assert_array_equal(loaded.predict(x), trained.predict(x))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_train_on_batch_puts_back_moving_statistics_gone_infinite():
    """Inputs of 1e25 with a finite loss: the batch's variance overflows float32 and the moving
    variance with it; the step raises with the statistics put back (they stayed inf, for good)."""
    from fastdl._validation import NonFiniteError

    rng = np.random.default_rng(1)
    model = nn.Sequential([nn.Input(3), nn.Dense(3), nn.BatchNormalization(), nn.Dense(1)], seed=0)
    model.compile("sgd", "mse")
    x, y = rng.normal(size=(8, 3)).astype(np.float32), rng.normal(size=(8, 1)).astype(np.float32)
    model.train_on_batch(x, y)
    statistics = [array.copy() for _, array in model.non_trainable_state()]
    with pytest.raises(NonFiniteError):
        model.train_on_batch(x * 1e25, y)
    for (_, array), before in zip(model.non_trainable_state(), statistics):
        np.testing.assert_array_equal(array, before)


def test_gradients_whose_squares_fit_are_not_refused():
    from fastdl.nn.guard import squares_finite as _squares_finite

    assert _squares_finite(np.full(1000, 1e18, np.float32))  # each square fits; their sum does not
    assert not _squares_finite(np.array([1e20, 0], np.float32))
    assert not _squares_finite(np.array([np.nan, 0], np.float32))


def test_a_layer_added_after_compile_counts_its_penalty_at_once():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    model = nn.Sequential([nn.Dense(2, input_shape=(3,))], seed=0)
    model.compile("sgd", "mse")
    model.fit(x, y[:, :2])
    model.add(nn.Dense(2, kernel_regularizer=nn.l2(10.0)))
    model.predict(x)  # builds the new layer
    before = model.regularization_loss()
    model.fit(x, y, epochs=0)
    assert before > 0 and before == pytest.approx(model.regularization_loss())


@pytest.mark.parametrize("split, error", [("0.2", TypeError), (True, TypeError), (1.0, ValueError), (-0.1, ValueError)])
def test_validation_split_must_be_a_number_in_0_1(split, error):
    x, y = blobs(20)
    model = small_mlp()
    model.compile("sgd", "sparse_categorical_crossentropy")
    with pytest.raises(error, match="validation_split"):
        model.fit(x, y, validation_split=split)


def test_model_history_is_the_last_fits_and_keeps_the_epochs_before_a_stop():
    x, y = blobs(60)
    model = small_mlp()
    model.compile("sgd", "sparse_categorical_crossentropy")
    assert model.history is None
    history = model.fit(x, y, epochs=2)
    assert model.history is history and len(history.history["loss"]) == 2

    class StopAtSecondEpoch(nn.Callback):
        begun = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.begun += 1
            if self.begun == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=3, callbacks=[StopAtSecondEpoch()])
    assert model.history is not history and len(model.history.history["loss"]) == 1


def test_get_layer_by_name_or_index_as_keras():
    model = nn.Sequential([nn.Input((8,)), nn.Dense(4, name="hidden"), nn.Dense(3)], seed=0)
    assert model.get_layer("hidden") is model.layers[0] and model.get_layer(index=-1) is model.layers[1]
    inputs = nn.Input((8,))
    functional = nn.Model(inputs, nn.Dense(3, name="out")(nn.Dense(4, name="mid")(inputs)))
    assert functional.get_layer("mid") is functional.layers[1] and functional.get_layer(index=2).name == "out"
    with pytest.raises(ValueError, match="a layer name or a layer index, one of them"):
        model.get_layer()
    with pytest.raises(ValueError, match="a layer name or a layer index, one of them"):
        model.get_layer("hidden", 0)
    with pytest.raises(ValueError, match=r"no layer named 'nope'; the model's layers are \['hidden', 'dense'\]"):
        model.get_layer("nope")
    with pytest.raises(ValueError, match="index must be between -2 and 1, got 2"):
        model.get_layer(index=2)
    with pytest.raises(TypeError, match="index must be an integer"):
        model.get_layer(index=1.0)
    with pytest.raises(ValueError, match="the model has no layers"):
        nn.Sequential().get_layer(index=0)


@pytest.mark.parametrize("loss", ["mse", "binary_crossentropy", "categorical_crossentropy"])
def test_float32_targets_are_taken_as_they_are_with_float64s_results(loss):
    """An autoencoder's fit(x, x): its float32 targets are checked and batched as they are, with
    no float64 copy of them (2 GB for a6's VAE on 20,000 faces), and train to the same bits as
    the same targets in float64: each batch's are widened, exactly, for the loss and the metrics
    (a user's metric or loss still gets float64 targets, as the README says)."""
    rng = np.random.default_rng(3)
    x = rng.random((64, 6), dtype=np.float32)
    y = rng.dirichlet(np.ones(6), 64).astype(np.float32) if loss == "categorical_crossentropy" else x
    activation = {"mse": None, "binary_crossentropy": "sigmoid", "categorical_crossentropy": "softmax"}[loss]
    results = []
    for targets in (y, y.astype(np.float64)):
        model = nn.Sequential([nn.Input((6,)), nn.Dense(5, activation="relu"), nn.Dense(6, activation=activation)],
                              seed=0)
        seen = []

        def squared(y_true, y_pred):  # a metric of the user's gets float64 targets, as documented
            seen.append(y_true.dtype)
            return np.mean((y_true - y_pred) ** 2)

        model.compile("adam", loss, metrics=["accuracy" if loss != "mse" else "mae", squared])
        checked = model._check_xy(x, targets)[1]
        assert checked.dtype == targets.dtype and (np.shares_memory(checked, targets) or targets is not y)
        history = model.fit(x, targets, epochs=2, batch_size=16, validation_data=(x, targets))
        results.append((history.history, model.get_weights(), model.evaluate(x, targets)))
        assert set(seen) == {np.dtype(np.float64)}
    assert results[0][0] == results[1][0] and results[0][2] == results[1][2]
    for ours, theirs in zip(results[0][1], results[1][1]):
        np.testing.assert_array_equal(ours, theirs)


def test_bad_validation_targets_are_named_as_validation_ones():
    """A class code out of range or NaN in validation_data's targets: the message says so (the
    same message without it sends the user to the training targets)."""
    x, y = blobs(20)
    model = small_mlp()
    model.compile("sgd", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"^validation y: y holds class code 9"):
        model.fit(x, y, validation_data=(x, np.full_like(y, 9)), epochs=1)
    with pytest.raises(ValueError, match=r"^y holds class code 9"):
        model.fit(x, np.full_like(y, 9), validation_data=(x, y), epochs=1)
    regression = nn.Sequential([nn.Dense(1, input_shape=(x.shape[1],))], seed=0)
    regression.compile("sgd", "mse")
    with pytest.raises(ValueError, match=r"^validation y: targets contain NaN"):
        regression.fit(x, np.zeros(len(x)), validation_data=(x, np.full(len(x), np.nan)), epochs=1)
    inputs = nn.Input((x.shape[1],))
    both = nn.Model(inputs, {"code": nn.Dense(3, activation="softmax", name="code")(inputs),
                             "value": nn.Dense(1, name="value")(inputs)})
    both.compile("sgd", {"code": "sparse_categorical_crossentropy", "value": "mse"})
    with pytest.raises(ValueError, match=r"^validation y: output 'code': y holds class code 7"):
        both.fit(x, {"code": y % 3, "value": np.zeros(len(x))},
                 validation_data=(x, {"code": np.full_like(y, 7), "value": np.zeros(len(x))}))


@pytest.mark.parametrize("seed, error", [(-1, ValueError), (1.5, TypeError), ("0", TypeError)])
def test_a_models_seed_is_named_in_its_error(seed, error):
    with pytest.raises(error, match="seed must be None, an int >= 0"):
        small_mlp(seed=seed)
