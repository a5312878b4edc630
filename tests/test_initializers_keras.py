"""Keras 3's initializers (fastdl.nn.initializers): their distributions, seeds, fans, names,
arguments and reprs, through the layers in both dtypes, and the two old functions' values kept."""

import math

import numpy as np
import pytest

from fastdl import nn
from fastdl.nn import initializers as init

TRUNCATED_STD = 0.87962566103423978  # std of a unit normal truncated at +-2


def _old_glorot_uniform(shape, rng, dtype):
    """fastdl's glorot_uniform before the Keras classes (its values must not change)."""
    receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
    fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


def _old_he_normal(shape, rng, dtype):
    """fastdl's he_normal before the Keras classes."""
    receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
    std = np.sqrt(2.0 / (shape[-2] * receptive)) / TRUNCATED_STD
    values = rng.standard_normal(shape)
    outside = np.abs(values) > 2
    while outside.any():
        values[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(values) > 2
    return (values * std).astype(dtype)


OLD_SHAPES = [(3, 4), (784, 32), (1, 1), (3, 3, 1, 8), (5, 5, 3, 7), (2, 3, 4, 5, 6), (17, 300)]


@pytest.mark.parametrize("name, old", [("glorot_uniform", _old_glorot_uniform), ("he_normal", _old_he_normal)])
@pytest.mark.parametrize("shape", OLD_SHAPES)
def test_the_old_two_functions_and_their_classes_give_the_old_values(name, old, shape, dtype):
    for seed in range(3):
        expected = old(shape, np.random.default_rng(seed), dtype)
        camel = name.title().replace("_", "")
        for initializer in (getattr(init, name), init.get_initializer(name), init.get_initializer(camel),
                            getattr(init, camel)()):
            values = initializer(shape, np.random.default_rng(seed), dtype)
            assert values.dtype == dtype
            np.testing.assert_array_equal(values, expected)


def test_a_seeded_model_keeps_its_weights():
    model = nn.Sequential([nn.Input((6, 6, 2)), nn.Conv2D(4, 3, kernel_initializer="he_normal"), nn.Flatten(),
                           nn.Dense(3)], seed=5)
    model.build()
    rng = np.random.default_rng(5)
    kernel = _old_he_normal((3, 3, 2, 4), rng, np.float32)
    np.testing.assert_array_equal(model.get_weights()[0], kernel)
    weights = model.get_weights()
    np.testing.assert_array_equal(weights[2], _old_glorot_uniform((64, 3), rng, np.float32))


def test_fans_as_keras_computes_them():
    assert init.compute_fans(()) == (1, 1)
    assert init.compute_fans((7,)) == (7, 7)  # a bias
    assert init.compute_fans((3, 4)) == (3, 4)
    assert init.compute_fans((3, 5, 2, 8)) == (30, 120)
    # Conv2DTranspose's kernel (kh, kw, filters, in_channels): Keras applies the same rule to it.
    layer = nn.Conv2DTranspose(8, (3, 5))
    assert init.compute_fans(layer._kernel_shape(2)) == (3 * 5 * 8, 3 * 5 * 2)
    assert init._fans is init.compute_fans


# (initializer, expected std, bound or None, uniform?) for a (60, 40) kernel: fan_in 60, fan_out 40.
FAN_IN, FAN_OUT, FAN_AVG = 60, 40, 50
DISTRIBUTIONS = [
    (init.GlorotUniform(), math.sqrt(1 / FAN_AVG), math.sqrt(3 / FAN_AVG), True),
    (init.GlorotNormal(), math.sqrt(1 / FAN_AVG), 2 * math.sqrt(1 / FAN_AVG) / TRUNCATED_STD, False),
    (init.HeUniform(), math.sqrt(2 / FAN_IN), math.sqrt(6 / FAN_IN), True),
    (init.HeNormal(), math.sqrt(2 / FAN_IN), 2 * math.sqrt(2 / FAN_IN) / TRUNCATED_STD, False),
    (init.LecunUniform(), math.sqrt(1 / FAN_IN), math.sqrt(3 / FAN_IN), True),
    (init.LecunNormal(), math.sqrt(1 / FAN_IN), 2 * math.sqrt(1 / FAN_IN) / TRUNCATED_STD, False),
    (init.VarianceScaling(), math.sqrt(1 / FAN_IN), 2 * math.sqrt(1 / FAN_IN) / TRUNCATED_STD, False),
    (init.VarianceScaling(3.0, "fan_out", "untruncated_normal"), math.sqrt(3 / FAN_OUT), None, False),
    (init.VarianceScaling(0.5, "fan_avg", "uniform"), math.sqrt(0.5 / FAN_AVG), math.sqrt(1.5 / FAN_AVG), True),
    (init.VarianceScaling(2.0, "fan_out", "normal"), math.sqrt(2 / FAN_OUT),
     2 * math.sqrt(2 / FAN_OUT) / TRUNCATED_STD, False),
    (init.RandomNormal(), 0.05, None, False),
    (init.TruncatedNormal(), 0.05 * TRUNCATED_STD, 0.1, False),
    (init.RandomUniform(), 0.05 / math.sqrt(3), 0.05, True),
]


@pytest.mark.parametrize("initializer, std, bound, uniform", DISTRIBUTIONS, ids=repr)
def test_distributions_have_keras_moments_and_bounds(initializer, std, bound, uniform):
    values = np.concatenate([initializer((FAN_IN, FAN_OUT), np.random.default_rng(seed), np.float64).ravel()
                             for seed in range(4)])  # 9600 draws
    assert abs(values.mean()) < 4 * std / math.sqrt(values.size)
    assert values.std() == pytest.approx(std, rel=0.04)
    if bound is not None:
        assert np.abs(values).max() <= bound
        # A uniform reaches its limit; a truncated normal comes near its bound.
        assert np.abs(values).max() > bound * (0.99 if uniform else 0.95)
    else:
        assert np.abs(values).max() > 3 * std  # not truncated


def test_bias_shapes_take_the_bias_fans():
    values = init.HeUniform()((500,), np.random.default_rng(0), np.float64)
    assert np.abs(values).max() <= math.sqrt(6 / 500) and np.abs(values).max() > 0.99 * math.sqrt(6 / 500)
    for name in set(init.INITIALIZERS) - {"orthogonal", "identity"}:
        assert init.get_initializer(name)((4,), np.random.default_rng(0), np.float32).shape == (4,)
    # As in Keras, orthogonal and identity need a matrix.
    with pytest.raises(ValueError, match=r"2 or more dimensions, got shape \(4,\)"):
        init.Orthogonal()((4,), np.random.default_rng(0), np.float32)
    with pytest.raises(ValueError, match=r"2-D kernels .* only, got shape \(4,\)"):
        init.Identity()((4,), np.random.default_rng(0), np.float32)


def test_mean_shifted_normal_and_uniform_ranges():
    rng = np.random.default_rng(1)
    values = init.TruncatedNormal(mean=2.0, stddev=0.1)((50, 50), rng, np.float64)
    assert values.min() >= 1.8 and values.max() <= 2.2 and values.mean() == pytest.approx(2.0, abs=0.01)
    values = init.RandomUniform(-1.0, 3.0)((50, 50), rng, np.float64)
    assert values.min() >= -1.0 and values.max() < 3.0 and values.mean() == pytest.approx(1.0, abs=0.1)
    values = init.RandomNormal(mean=-1.0, stddev=0.5)((50, 50), rng, np.float64)
    assert values.mean() == pytest.approx(-1.0, abs=0.05) and values.std() == pytest.approx(0.5, rel=0.05)


def test_constants_and_identity():
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(init.Zeros()((2, 3), rng, np.float32), np.zeros((2, 3), np.float32))
    np.testing.assert_array_equal(init.Ones()((3,), rng, np.float64), np.ones(3))
    np.testing.assert_array_equal(init.Constant(2.5)((2, 2), rng, np.float64), np.full((2, 2), 2.5))
    np.testing.assert_array_equal(init.Identity(3.0)((2, 3), rng, np.float64), 3 * np.eye(2, 3))
    with pytest.raises(ValueError, match="2-D kernels"):
        init.Identity()((3, 3, 2, 2), rng, np.float32)


@pytest.mark.parametrize("shape", [(6, 3), (3, 6), (5, 5), (3, 3, 4, 8), (2, 2, 2, 16)])
@pytest.mark.parametrize("gain", [1.0, 2.5])
def test_orthogonal_has_orthonormal_columns_or_rows(shape, gain):
    values = init.Orthogonal(gain)(shape, np.random.default_rng(0), np.float64)
    assert values.shape == shape
    matrix = values.reshape(-1, shape[-1])  # Keras' (prod(shape[:-1]), shape[-1])
    gram = matrix.T @ matrix if matrix.shape[0] >= matrix.shape[1] else matrix @ matrix.T
    np.testing.assert_allclose(gram, gain ** 2 * np.eye(len(gram)), atol=1e-12)


def test_orthogonal_fixes_the_qr_signs():
    # Q's columns signed by R's diagonal: the same draws through numpy's QR, signs fixed by hand.
    a = np.random.default_rng(4).standard_normal((5, 3))
    q, r = np.linalg.qr(a)
    expected = q * np.sign(np.diag(r))
    np.testing.assert_allclose(init.Orthogonal()((5, 3), np.random.default_rng(4), np.float64), expected)
    np.testing.assert_allclose(init.Orthogonal()((3, 5), np.random.default_rng(4), np.float64), expected.T)


@pytest.mark.parametrize("cls", [init.RandomNormal, init.RandomUniform, init.TruncatedNormal, init.Orthogonal,
                                 init.VarianceScaling, init.GlorotUniform, init.HeNormal, init.LecunUniform])
def test_an_int_seed_gives_the_same_values_every_call(cls):
    seeded = cls(seed=7)
    first = seeded((4, 3), np.random.default_rng(0), np.float64)
    np.testing.assert_array_equal(seeded((4, 3), np.random.default_rng(1), np.float64), first)
    np.testing.assert_array_equal(seeded((4, 3), None, np.float64), first)
    # ... the values of np.random.default_rng(seed) given as the layer's generator.
    np.testing.assert_array_equal(cls()((4, 3), np.random.default_rng(7), np.float64), first)
    unseeded = cls()
    rng = np.random.default_rng(0)
    assert not np.array_equal(unseeded((4, 3), rng, np.float64), unseeded((4, 3), rng, np.float64))


def test_seeded_draws_are_numpys():
    expected = np.random.default_rng(3).normal(0.5, 0.2, (2, 3))
    np.testing.assert_array_equal(init.RandomNormal(0.5, 0.2, seed=3)((2, 3), None, np.float64), expected)
    expected = np.random.default_rng(3).uniform(-2.0, 1.0, (4,))
    np.testing.assert_array_equal(init.RandomUniform(-2.0, 1.0, seed=3)(4, None, np.float64), expected)


def test_reprs_are_keras_configs():
    assert repr(init.RandomNormal()) == "RandomNormal(mean=0.0, stddev=0.05, seed=None)"
    assert repr(init.RandomUniform(seed=np.int64(2))) == "RandomUniform(minval=-0.05, maxval=0.05, seed=2)"
    assert repr(init.TruncatedNormal(1, 2)) == "TruncatedNormal(mean=1.0, stddev=2.0, seed=None)"
    assert repr(init.VarianceScaling()) == \
        "VarianceScaling(scale=1.0, mode='fan_in', distribution='truncated_normal', seed=None)"
    assert repr(init.HeUniform(3)) == "HeUniform(seed=3)"
    assert repr(init.Orthogonal()) == "Orthogonal(gain=1.0, seed=None)"
    assert (repr(init.Zeros()), repr(init.Ones()), repr(init.Constant(3))) == ("Zeros()", "Ones()",
                                                                             "Constant(value=3.0)")
    assert init.VarianceScaling.from_config(init.VarianceScaling(2.0, "fan_avg").get_config()).mode == "fan_avg"


NAMES = ["glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform", "lecun_normal",
         "random_normal", "random_uniform", "truncated_normal", "zeros", "ones", "orthogonal", "variance_scaling",
         "constant", "identity"]


@pytest.mark.parametrize("name", NAMES)
def test_every_name_serves_dense_and_conv_in_both_dtypes(name, dtype):
    camel = "".join(part.title() for part in name.split("_"))
    for given in (name, name.upper(), camel, getattr(init, camel), init.get_initializer(name)):
        layers = [nn.Input((5, 5, 2)), nn.Conv2D(3, 2, kernel_initializer=given), nn.Flatten(),
                  nn.Dense(4, kernel_initializer=given)]
        if name == "identity":  # a 2-D kernel only, as in Keras
            layers[1] = nn.Conv2D(3, 2)
        model = nn.Sequential(layers, seed=0, dtype=dtype)
        model.build()
        kernels = model.get_weights()[::2]
        assert [k.shape for k in kernels] == [(2, 2, 2, 3), (48, 4)]
        assert all(k.dtype == dtype and np.isfinite(k).all() for k in kernels)
    if name == "identity":
        with pytest.raises(ValueError, match="2-D kernels"):
            nn.Sequential([nn.Input((5, 5, 2)), nn.Conv2D(3, 2, kernel_initializer=name)]).build()


def test_initializer_objects_run_in_a_model(backend, dtype):
    model = nn.Sequential([nn.Input((6, 6, 2)), nn.Conv2D(3, 3, kernel_initializer=init.Orthogonal(seed=1)),
                           nn.Flatten(), nn.Dense(2, kernel_initializer=init.RandomNormal(stddev=0.1, seed=2))],
                          seed=0, backend=backend, dtype=dtype)
    out = model.predict(np.ones((2, 6, 6, 2), dtype))
    assert out.dtype == dtype and out.shape == (2, 2)
    np.testing.assert_array_equal(model.get_weights()[2],
                                  np.random.default_rng(2).normal(0, 0.1, (48, 2)).astype(dtype))


def test_get_initializer_names_and_errors():
    assert init.get_initializer("He_Normal") is init.he_normal
    assert init.get_initializer("GlorotUniform") is init.glorot_uniform
    assert isinstance(init.get_initializer("OrthogonalInitializer"), init.Orthogonal)
    assert isinstance(init.get_initializer(init.LecunNormal), init.LecunNormal)  # a class: its defaults
    with pytest.raises(ValueError, match=r"unknown kernel_initializer 'he_norm'; choose one of .*'glorot_normal'.*"
                                         r"'variance_scaling'.*VarianceScaling"):
        nn.Dense(2, kernel_initializer="he_norm")
    with pytest.raises(ValueError, match="unknown bias_initializer 3"):
        init.get_initializer(3, "bias_initializer")
    with pytest.raises(TypeError, match=r"rng=.float64.*f\(shape, dtype\) order"):
        init.HeNormal()((2, 2), "float64")


@pytest.mark.parametrize("make, error, words", [
    (lambda: init.RandomNormal(stddev=0.0), ValueError, "RandomNormal's stddev must be a finite number > 0, got 0.0"),
    (lambda: init.RandomNormal(stddev=-1), ValueError, "got -1"),
    (lambda: init.TruncatedNormal(stddev=float("inf")), ValueError, "stddev must be a finite number > 0, got inf"),
    (lambda: init.RandomNormal(mean=float("nan")), ValueError, "mean must be a finite number, got nan"),
    (lambda: init.RandomNormal(stddev="0.1"), TypeError, "stddev must be a real number, got '0.1'"),
    (lambda: init.RandomUniform(0.1, 0.1), ValueError, "minval < maxval, got minval=0.1, maxval=0.1"),
    (lambda: init.RandomUniform(1, -1), ValueError, "minval < maxval"),
    (lambda: init.VarianceScaling(0), ValueError, "scale must be a finite number > 0, got 0"),
    (lambda: init.VarianceScaling(mode="fan_mean"), ValueError, r"mode must be one of \['fan_avg', .*'fan_mean'"),
    (lambda: init.VarianceScaling(distribution="gauss"), ValueError, "distribution must be one of .*'gauss'"),
    (lambda: init.Orthogonal(gain=float("nan")), ValueError, "gain must be a finite number, got nan"),
    (lambda: init.Orthogonal(seed=1.5), TypeError, "seed must be None or an int >= 0, got 1.5"),
    (lambda: init.HeNormal(seed=-2), ValueError, "seed must be None or an int >= 0, got -2"),
    (lambda: init.GlorotUniform(seed=True), TypeError, "got True"),
    (lambda: init.Constant(None), TypeError, "Constant's value must be a real number, got None"),
    (lambda: init.HeUniform()((2, -1)), ValueError, r"shape of ints >= 0, got \(2, -1\)"),
])
def test_bad_arguments_are_refused_by_name(make, error, words):
    with pytest.raises(error, match=words):
        make()


def test_parameters_match_torch_init():
    torch = pytest.importorskip("torch")
    generator = torch.Generator().manual_seed(0)
    # torch's conv weight (out, in, kh, kw) is fastdl's (kh, kw, in, out): the same fans.
    weight = torch.empty(16, 8, 3, 3)
    ours = (3, 3, 8, 16)
    assert torch.nn.init._calculate_fan_in_and_fan_out(weight) == init.compute_fans(ours)
    checks = [(torch.nn.init.xavier_uniform_, init.GlorotUniform()),
              (lambda w, generator: torch.nn.init.kaiming_uniform_(w, nonlinearity="relu", generator=generator),
               init.HeUniform())]
    for torch_init, initializer in checks:
        theirs = torch_init(weight, generator=generator).numpy()
        values = initializer(ours, np.random.default_rng(0), np.float64)
        assert np.abs(values).max() == pytest.approx(np.abs(theirs).max(), rel=0.01)  # the same limit
        assert values.std() == pytest.approx(theirs.std(), rel=0.1)
    # torch's xavier_normal_ is untruncated: std sqrt(2 / (fan_in + fan_out)), ours before truncation.
    theirs = torch.nn.init.xavier_normal_(torch.empty(64, 64), generator=generator).numpy()
    values = init.VarianceScaling(1.0, "fan_avg", "untruncated_normal")((64, 64), np.random.default_rng(0), np.float64)
    assert values.std() == pytest.approx(theirs.std(), rel=0.05)
    theirs = torch.nn.init.orthogonal_(torch.empty(4, 9), gain=2.0, generator=generator).numpy()
    np.testing.assert_allclose(theirs @ theirs.T, 4 * np.eye(4), atol=1e-5)
    values = init.Orthogonal(2.0)((4, 9), np.random.default_rng(0), np.float64)
    np.testing.assert_allclose(values @ values.T, 4 * np.eye(4), atol=1e-12)


@pytest.mark.parametrize("alias, name", [("uniform", "random_uniform"), ("normal", "random_normal"),
                                         ("one", "ones"), ("zero", "zeros")])
def test_keras_short_aliases(alias, name):
    """Keras 3 keeps Keras 2's short names (kernel_initializer="uniform" in older course code)."""
    assert type(init.get_initializer(alias)) is type(init.get_initializer(name))
