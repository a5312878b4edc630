"""sample_weight and class_weight as Keras 3 takes them: each sample's loss times its weight, summed,
over the batch's sample count; gradients weighed alike; class weights as sample weights from the
targets; metrics unweighted; every backend and dtype, and the cuda backend under the simulator."""

import numpy as np
import pytest

from fastdl import nn

RTOL = {np.float32: 2e-5, np.float64: 1e-12}
LR = 0.5


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


# loss name, last activation, units, targets(rng, n, units), reference (z, y, w) -> (loss, d loss / d z)
def _xent(z, codes, w):
    p, onehot = _softmax(z), np.eye(z.shape[1])[codes]
    n = len(w)
    return float((w * -np.log((p * onehot).sum(1))).sum() / n), w[:, None] * (p - onehot) / n


def _cat_logits(z, t, w):
    p, n = _softmax(z), len(w)
    return float((w * -(t * np.log(p)).sum(1)).sum() / n), w[:, None] * (p - t) / n


def _mse(z, y, w):
    n, m = z.shape
    return float((w * ((z - y) ** 2).mean(1)).sum() / n), w[:, None] * 2 * (z - y) / (n * m)


def _mae(z, y, w):
    n, m = z.shape
    return float((w * np.abs(z - y).mean(1)).sum() / n), w[:, None] * np.sign(z - y) / (n * m)


def _bce(z, y, w):
    n, m = z.shape
    p = _sigmoid(z)
    per = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    return float((w * per.mean(1)).sum() / n), w[:, None] * (p - y) / (n * m)


CASES = {
    "sparse_xent": ("sparse_categorical_crossentropy", "softmax", 3, lambda r, n: r.integers(0, 3, n), _xent),
    "categorical_logits": (nn.CategoricalCrossentropy(from_logits=True), None, 3,
                           lambda r, n: np.eye(3)[r.integers(0, 3, n)], _cat_logits),
    "mse": ("mse", None, 2, lambda r, n: r.normal(size=(n, 2)), _mse),
    "mae": ("mae", None, 2, lambda r, n: r.normal(size=(n, 2)), _mae),
    "bce": ("binary_crossentropy", "sigmoid", 2, lambda r, n: r.integers(0, 2, (n, 2)).astype(float), _bce),
}


def _model(backend, dtype, loss, activation, units, d=4, seed=3, metrics=None):
    model = nn.Sequential([nn.Input((d,)), nn.Dense(units, activation=activation)], seed=seed, dtype=dtype,
                          backend=backend)
    model.compile(nn.SGD(LR), loss, metrics=metrics)
    return model


def _data(n=7, d=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng, rng.normal(size=(n, d)), rng.uniform(0, 3, n)


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_step_matches_the_weighted_reference(backend, dtype, case):
    loss, activation, units, targets, reference = CASES[case]
    rng, x, w = _data()
    w[1] = 0.0
    y = targets(rng, len(x))
    model = _model(backend, dtype, loss, activation, units)
    kernel, bias = (a.astype(np.float64) for a in model.get_weights())
    z = x.astype(dtype).astype(np.float64) @ kernel + bias
    expected_loss, dz = reference(z, y, w)
    value = model.train_on_batch(x, y, sample_weight=w)
    new_kernel, new_bias = model.get_weights()
    np.testing.assert_allclose(value, expected_loss, rtol=RTOL[dtype])
    tol = dict(rtol=RTOL[dtype], atol=RTOL[dtype])
    np.testing.assert_allclose(new_kernel, kernel - LR * x.astype(dtype).T @ dz, **tol)
    np.testing.assert_allclose(new_bias, bias - LR * dz.sum(0), **tol)


@pytest.mark.parametrize("case", ["sparse_xent", "bce"])
def test_class_weight_is_the_sample_weight_of_each_class(backend, case):
    loss, activation, units, _, _ = CASES[case]
    rng, x, _ = _data()
    y = rng.integers(0, 2, len(x)) if case == "sparse_xent" else rng.integers(0, 2, (len(x), 1)).astype(float)
    class_weight = {0: 0.25, 1: 3.0}  # class 2 missing: weighs 1, as Keras
    y_codes = y.reshape(-1).astype(int)
    a = _model(backend, np.float64, loss, activation, units if case == "sparse_xent" else 1)
    b = _model(backend, np.float64, loss, activation, units if case == "sparse_xent" else 1)
    la = a.train_on_batch(x, y, class_weight=class_weight)
    lb = b.train_on_batch(x, y, sample_weight=np.array([class_weight[c] for c in y_codes]))
    assert la == lb
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_class_weight_of_one_hot_rows_and_of_a_missing_class(backend):
    rng, x, _ = _data()
    codes = np.array([0, 1, 2, 2, 1, 0, 2])
    a = _model(backend, np.float64, "categorical_crossentropy", "softmax", 3)
    b = _model(backend, np.float64, "categorical_crossentropy", "softmax", 3)
    a.train_on_batch(x, np.eye(3)[codes], class_weight={0: 2.0, 1: 0.5})
    b.train_on_batch(x, np.eye(3)[codes], sample_weight=np.array([2.0, 0.5, 1, 1, 0.5, 2.0, 1]))
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_class_weight_of_a_class_the_output_cannot_give_is_refused(backend):
    _, x, _ = _data()
    codes = np.array([0, 1, 2, 2, 1, 0, 2])
    model = _model(backend, np.float64, "sparse_categorical_crossentropy", "softmax", 3)
    with pytest.raises(ValueError, match=r"class_weight names classes \[-1, 5\], .* its classes are 0 to 2"):
        model.fit(x, codes, class_weight={5: 2.0, 0: 1.0, -1: 3.0})
    binary = _model(backend, np.float64, "binary_crossentropy", "sigmoid", 1)
    binary.train_on_batch(x, codes[:, None] > 0, class_weight={0: 1.0, 1: 2.0})
    with pytest.raises(ValueError, match=r"class_weight names classes \[2\], .* its classes are 0 to 1"):
        binary.train_on_batch(x, codes[:, None] > 0, class_weight={2: 1.0})


@pytest.mark.parametrize("loss,activation", [("categorical_crossentropy", "relu"),  # host-side cross-entropy
                                             ("sparse_categorical_crossentropy", "softmax"),
                                             ("mse", None), ("binary_crossentropy", "sigmoid")])
def test_integer_weights_are_repeated_samples(backend, dtype, loss, activation):
    rng, x, _ = _data(n=5)
    counts = np.array([1, 3, 0, 2, 1])
    codes = rng.integers(0, 3, len(x))
    y = {"categorical_crossentropy": np.eye(3)[codes] * 0.9 + 0.05, "sparse_categorical_crossentropy": codes,
         "mse": rng.normal(size=(len(x), 3)), "binary_crossentropy": np.eye(3)[codes]}[loss]
    weighted = _model(backend, dtype, loss, activation, 3)
    repeated = _model(backend, dtype, loss, activation, 3)
    # The weighted loss is divided by n = 5, the repeated one by sum(counts) = 7: the step sizes
    # are set so that both take the same step.
    repeated.optimizer.learning_rate = LR * counts.sum() / len(x)
    weighted.train_on_batch(x, y, sample_weight=counts)
    repeated.train_on_batch(np.repeat(x, counts, axis=0), np.repeat(y, counts, axis=0))
    for a, b in zip(weighted.get_weights(), repeated.get_weights()):
        np.testing.assert_allclose(a, b, rtol=10 * RTOL[dtype], atol=10 * RTOL[dtype])


def test_a_samples_weight_scales_all_its_positions(backend):
    rng = np.random.default_rng(1)
    x, codes, counts = rng.normal(size=(3, 2, 2, 2)), rng.integers(0, 3, (3, 2, 2)), np.array([2, 0, 1])

    def model():
        m = nn.Sequential([nn.Input((2, 2, 2)), nn.Conv2D(3, 1, activation="softmax")], seed=0, dtype="float64",
                          backend=backend)
        m.compile(nn.SGD(LR), "sparse_categorical_crossentropy")
        return m

    weighted, repeated = model(), model()
    repeated.optimizer.learning_rate = LR * counts.sum() / len(x)
    weighted.train_on_batch(x, codes, sample_weight=counts)
    repeated.train_on_batch(np.repeat(x, counts, axis=0), np.repeat(codes, counts, axis=0))
    for a, b in zip(weighted.get_weights(), repeated.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_ones_train_as_no_weights_bit_for_bit(backend, dtype):
    rng, x, _ = _data(n=10)
    y = rng.integers(0, 3, len(x))
    a, b = (_model(backend, dtype, "sparse_categorical_crossentropy", "softmax", 3, metrics=["accuracy"])
            for _ in range(2))
    ha = a.fit(x, y, batch_size=4, epochs=2, seed=0)
    hb = b.fit(x, y, batch_size=4, epochs=2, seed=0, sample_weight=np.ones(len(x)))
    assert ha.history == hb.history
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_fit_shuffles_the_weights_with_their_samples(backend):
    rng, x, w = _data(n=10)
    y = rng.integers(0, 3, len(x))
    fitted = _model(backend, np.float64, "sparse_categorical_crossentropy", "softmax", 3)
    stepped = _model(backend, np.float64, "sparse_categorical_crossentropy", "softmax", 3)
    history = fitted.fit(x, y, batch_size=4, epochs=1, seed=5, sample_weight=w)
    order = np.random.default_rng(5).permutation(len(x))  # fit's shuffle, from its reseeded generator
    losses = [stepped.train_on_batch(x[idx], y[idx], sample_weight=w[idx]) for idx in np.split(order, [4, 8])]
    for a, b in zip(fitted.get_weights(), stepped.get_weights()):
        np.testing.assert_array_equal(a, b)
    # The logged loss: the batches' losses counted by samples, as Keras' loss tracker.
    np.testing.assert_allclose(history.history["loss"][0], np.dot(losses, [4, 4, 2]) / 10, rtol=1e-12)


def test_metrics_are_not_weighted_as_keras_3s(backend):
    rng, x, w = _data(n=10)
    y = rng.integers(0, 3, len(x))
    model = _model(backend, np.float64, "sparse_categorical_crossentropy", "softmax", 3, metrics=["accuracy"])
    loss, accuracy = model.evaluate(x, y, sample_weight=w)
    plain_loss, plain_accuracy = model.evaluate(x, y)
    assert accuracy == plain_accuracy and loss != plain_loss


def test_evaluate_weighs_the_loss_in_any_batch_size(backend, dtype):
    rng, x, w = _data(n=9)
    y = rng.normal(size=(len(x), 2))
    model = _model(backend, dtype, "mse", None, 2)
    kernel, bias = model.get_weights()
    expected, _ = _mse(x.astype(dtype).astype(np.float64) @ kernel + bias, y, w)
    for batch_size in (9, 4):
        np.testing.assert_allclose(model.evaluate(x, y, batch_size, 0, w), expected, rtol=RTOL[dtype])
    np.testing.assert_allclose(model.test_on_batch(x, y, sample_weight=w), expected, rtol=RTOL[dtype])
    np.testing.assert_allclose(model.loss(y, model.predict(x), sample_weight=w), expected, rtol=RTOL[dtype])


def test_validation_takes_its_weights_and_not_the_class_weights(backend):
    rng, x, w = _data(n=12)
    y = rng.integers(0, 3, len(x))
    model = _model(backend, np.float64, "sparse_categorical_crossentropy", "softmax", 3)
    history = model.fit(x[:8], y[:8], epochs=1, validation_data=(x[8:], y[8:], w[8:]))
    np.testing.assert_allclose(history.history["val_loss"][0], model.evaluate(x[8:], y[8:], sample_weight=w[8:]),
                               rtol=1e-12)
    model = _model(backend, np.float64, "sparse_categorical_crossentropy", "softmax", 3)
    history = model.fit(x, y, epochs=1, sample_weight=w, validation_split=0.25)  # the last 3 validate
    np.testing.assert_allclose(history.history["val_loss"][0], model.evaluate(x[9:], y[9:], sample_weight=w[9:]),
                               rtol=1e-12)
    model = _model(backend, np.float64, "sparse_categorical_crossentropy", "softmax", 3)
    history = model.fit(x, y, epochs=1, class_weight={0: 5.0}, validation_split=0.25)
    np.testing.assert_allclose(history.history["val_loss"][0], model.evaluate(x[9:], y[9:]), rtol=1e-12)


def test_an_iterator_may_give_sample_weights(backend):
    rng, x, w = _data(n=8)
    y = rng.integers(0, 3, len(x))
    batches = [(x[:5], y[:5], w[:5]), (x[5:], y[5:])]  # a batch without weights weighs 1 a sample
    fitted = _model(backend, np.float64, "sparse_categorical_crossentropy", "softmax", 3)
    stepped = _model(backend, np.float64, "sparse_categorical_crossentropy", "softmax", 3)
    fitted.fit(iter(batches), epochs=1)
    for batch in batches:
        stepped.train_on_batch(*batch)
    for a, b in zip(fitted.get_weights(), stepped.get_weights()):
        np.testing.assert_array_equal(a, b)
    fitted.fit(iter([(x, y)]), epochs=1, class_weight={1: 2.0})
    stepped.train_on_batch(x, y, class_weight={1: 2.0})
    for a, b in zip(fitted.get_weights(), stepped.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="not both"):
        fitted.fit(iter([(x, y, w)]), class_weight={1: 2.0})


def _two_outputs(backend, dtype):
    inputs = nn.Input((4,))
    trunk = nn.Dense(5, activation="tanh")(inputs)
    model = nn.Model(inputs, {"a": nn.Dense(3, activation="softmax", name="a")(trunk), "b": nn.Dense(2, name="b")(trunk)},
                     seed=2, dtype=dtype, backend=backend)
    model.compile(nn.SGD(LR), {"a": "sparse_categorical_crossentropy", "b": "mse"}, loss_weights={"a": 1.0, "b": 0.5})
    return model


def test_a_model_of_several_outputs_weighs_each(backend, dtype):
    rng, x, w = _data(n=6)
    y = {"a": rng.integers(0, 3, len(x)), "b": rng.normal(size=(len(x), 2))}
    model = _two_outputs(backend, dtype)
    out = model.predict(x)
    la, _ = _xent(np.log(out["a"].astype(np.float64)), y["a"], w)
    lb, _ = _mse(out["b"].astype(np.float64), y["b"], 2 * w)
    logs = model.evaluate(x, y, sample_weight=w, return_dict=True)
    np.testing.assert_allclose([logs["a_loss"], logs["loss"]], [la, la + 0.5 * lb / 2], rtol=10 * RTOL[dtype])
    logs = model.evaluate(x, y, sample_weight={"a": w, "b": 2 * w}, return_dict=True)
    np.testing.assert_allclose([logs["a_loss"], logs["b_loss"]], [la, lb], rtol=10 * RTOL[dtype])
    one, per_output = _two_outputs(backend, dtype), _two_outputs(backend, dtype)
    one.train_on_batch(x, y, sample_weight=w)
    per_output.train_on_batch(x, y, sample_weight=[w, w])
    for a, b in zip(one.get_weights(), per_output.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="single output"):
        model.fit(x, y, class_weight={0: 2.0})


class _LogCosh(nn.Loss):
    def forward(self, y_pred, y_true):
        self._d = y_pred - y_true
        return float(np.log(np.cosh(self._d)).mean())

    def backward(self):
        return np.tanh(self._d) / self._d.size


class _WeighedLogCosh(_LogCosh):
    def forward(self, y_pred, y_true, sample_weight=None):
        self._w = np.ones(len(y_pred)) if sample_weight is None else sample_weight
        self._d = y_pred - y_true
        return float((np.log(np.cosh(self._d)).mean(1) * self._w).sum() / len(y_pred))

    def backward(self):
        return self._w[:, None] * np.tanh(self._d) / self._d.size


def test_a_loss_of_ones_own_weighs_samples_only_where_its_forward_takes_them():
    rng, x, w = _data()
    y = rng.normal(size=(len(x), 2))
    model = _model("numpy", np.float64, _LogCosh(), None, 2)
    with pytest.raises(TypeError, match="_LogCosh"):
        model.fit(x, y, sample_weight=w)
    model = _model("numpy", np.float64, _WeighedLogCosh(), None, 2)
    before = model.get_weights()[0].copy()
    model.train_on_batch(x, y, sample_weight=w)
    assert not np.array_equal(before, model.get_weights()[0])


@pytest.mark.parametrize("kwargs,error,match", [
    ({"sample_weight": np.ones(6)}, ValueError, r"shape \(7,\)"),
    ({"sample_weight": np.ones((7, 2))}, ValueError, r"shape \(7,\)"),
    ({"sample_weight": -np.ones(7)}, ValueError, ">= 0"),
    ({"sample_weight": np.full(7, np.nan)}, ValueError, "finite"),
    ({"sample_weight": np.array(["1"] * 7)}, TypeError, "real numbers"),
    ({"class_weight": [1.0, 2.0]}, TypeError, "dict"),
    ({"class_weight": {"0": 1.0}}, TypeError, "int class"),
    ({"class_weight": {0: -1.0}}, ValueError, ">= 0"),
    ({"class_weight": {0: 1.0}, "sample_weight": np.ones(7)}, ValueError, "not both"),
])
def test_bad_weights_are_refused_before_anything_runs(kwargs, error, match):
    rng, x, _ = _data()
    y = rng.integers(0, 3, len(x))
    model = _model("numpy", np.float64, "sparse_categorical_crossentropy", "softmax", 3)
    weights, state = model.get_weights(), model.rng.bit_generator.state
    with pytest.raises(error, match=match):
        model.fit(x, y, epochs=1, **kwargs)
    assert model.rng.bit_generator.state == state and model.epochs_trained == 0
    for a, b in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(error, match=match):
        model.train_on_batch(x, y, **kwargs)
    if "class_weight" not in kwargs:
        with pytest.raises(error, match=match):
            model.evaluate(x, y, sample_weight=kwargs["sample_weight"])
    iterator = iter([(x, y)])
    with pytest.raises(ValueError, match="iterator"):
        model.fit(iterator, sample_weight=np.ones(7))
    assert next(iterator)[0] is x  # nothing drawn


def test_n_by_one_weights_are_taken_as_keras_takes_them():
    rng, x, w = _data()
    y = rng.integers(0, 3, len(x))
    model = _model("numpy", np.float64, "sparse_categorical_crossentropy", "softmax", 3)
    assert model.evaluate(x, y, sample_weight=w[:, None]) == model.evaluate(x, y, sample_weight=w)


@pytest.mark.cuda
@pytest.mark.parametrize("loss,activation,targets", [
    ("sparse_categorical_crossentropy", "softmax", lambda r, n: r.integers(0, 3, n)),
    ("binary_crossentropy", "sigmoid", lambda r, n: r.integers(0, 2, (n, 3)).astype(float)),
    ("mse", None, lambda r, n: r.normal(size=(n, 3)))])
def test_the_cuda_backend_weighs_as_the_cpu(cuda_backend, loss, activation, targets):
    rng, x, w = _data(n=6)
    y = targets(rng, len(x))
    cpu = _model("numpy", np.float64, loss, activation, 3)
    gpu = _model("cuda", np.float64, loss, activation, 3)
    h_cpu = cpu.fit(x, y, batch_size=4, epochs=2, seed=0, sample_weight=w)
    h_gpu = gpu.fit(x, y, batch_size=4, epochs=2, seed=0, sample_weight=w)
    np.testing.assert_allclose(h_gpu.history["loss"], h_cpu.history["loss"], rtol=1e-10)
    for a, b in zip(cpu.get_weights(), gpu.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)
