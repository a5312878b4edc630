"""Keras 3's initializer classes (keras/src/initializers), each a callable f(shape, rng, dtype).

The draws follow Keras 3's definitions: the same fans, scales and distributions (normal draws
beyond 2 standard deviations drawn again, the He/LeCun/Glorot truncated normals divided by
0.87962566103423978, the standard deviation of a unit normal truncated at +-2). The numbers come
from NumPy's generators, so they are Keras' distributions, not Keras' values. seed=None draws
from `rng`, the layer's generator (each layer its own values); an int seed draws from
np.random.default_rng(seed) on every call, so every call gives the same values, as a Keras 3
initializer seeded with an int does.
"""

import math
import numbers

import numpy as np

# Standard deviation of a unit normal truncated at +-2; Keras divides by it so the truncated
# draws keep the variance asked for.
TRUNCATED_STD = 0.87962566103423978


def compute_fans(shape):
    """(fan_in, fan_out) as Keras 3's compute_fans: (1, 1) for a scalar, (n, n) for a bias (n,),
    (in, out) for a dense kernel, times the receptive field for a conv kernel (..., in, out)."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


def truncated_standard_normal(rng, shape):
    """Unit normal draws, those beyond +-2 drawn again (Keras 3's truncation)."""
    values = rng.standard_normal(shape)
    outside = np.abs(values) > 2
    while outside.any():
        values[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(values) > 2
    return values


def _real(value, name, owner, positive=False):
    """value as a float: a real number (not a bool), finite, and > 0 where positive."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}'s {name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or (positive and value <= 0):
        raise ValueError(f"{owner}'s {name} must be a finite number{' > 0' if positive else ''}, got {value!r}")
    return value


def _seed(seed, owner):
    """seed as None or an int >= 0 (np.random.default_rng's seeds)."""
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{owner}'s seed must be None or an int >= 0, got {seed!r}")
    if seed < 0:
        raise ValueError(f"{owner}'s seed must be None or an int >= 0, got {seed!r}")
    return int(seed)


def _choice(value, name, owner, allowed):
    """value, one of the strings allowed (in any case), lowercased."""
    if not isinstance(value, str) or value.lower() not in allowed:
        raise ValueError(f"{owner}'s {name} must be one of {sorted(allowed)}, got {value!r}")
    return value.lower()


def _check_shape(shape, owner):
    """shape as a tuple of ints >= 0 (an int n is (n,))."""
    if isinstance(shape, numbers.Integral) and not isinstance(shape, (bool, np.bool_)):
        shape = (shape,)
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"{owner} takes a shape (a tuple of ints), got {shape!r}") from None
    if not all(isinstance(n, numbers.Integral) and not isinstance(n, (bool, np.bool_)) and n >= 0 for n in shape):
        raise ValueError(f"{owner} takes a shape of ints >= 0, got {shape!r}")
    return tuple(int(n) for n in shape)


class Initializer:
    """Base class: `__call__(shape, rng=None, dtype=None)` -> ndarray of `shape` in `dtype`
    (float32 by default, Keras' floatx). A subclass gives `_draw(shape, rng)` -> float64 values
    and `get_config()`, whose items the repr shows."""

    def __call__(self, shape, rng=None, dtype=None):
        shape = _check_shape(shape, type(self).__name__)
        dtype = np.float32 if dtype is None else np.dtype(dtype)
        if rng is not None and not isinstance(rng, np.random.Generator):
            raise TypeError(f"{type(self).__name__} is called as f(shape, rng, dtype), rng a numpy Generator or "
                            f"None; got rng={rng!r} (Keras' f(shape, dtype) order?)")
        seed = getattr(self, "seed", None)
        if seed is not None:  # the same values on every call
            rng = np.random.default_rng(seed)
        elif rng is None:  # called on its own, as keras.initializers.X()(shape)
            rng = np.random.default_rng()
        return np.asarray(self._draw(shape, rng)).astype(dtype)

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({arguments})"


class RandomNormal(Initializer):
    """Normal draws of mean `mean` and standard deviation `stddev` (> 0)."""

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        self.mean = _real(mean, "mean", "RandomNormal")
        self.stddev = _real(stddev, "stddev", "RandomNormal", positive=True)
        self.seed = _seed(seed, "RandomNormal")

    def _draw(self, shape, rng):
        return rng.normal(self.mean, self.stddev, shape)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class TruncatedNormal(Initializer):
    """Normal draws of mean `mean` and standard deviation `stddev` (before truncation), those more
    than 2 standard deviations from the mean drawn again."""

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        self.mean = _real(mean, "mean", "TruncatedNormal")
        self.stddev = _real(stddev, "stddev", "TruncatedNormal", positive=True)
        self.seed = _seed(seed, "TruncatedNormal")

    def _draw(self, shape, rng):
        return truncated_standard_normal(rng, shape) * self.stddev + self.mean

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class RandomUniform(Initializer):
    """Uniform draws in [minval, maxval), minval < maxval."""

    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        self.minval = _real(minval, "minval", "RandomUniform")
        self.maxval = _real(maxval, "maxval", "RandomUniform")
        if not self.minval < self.maxval:
            raise ValueError(f"RandomUniform needs minval < maxval, got minval={minval!r}, maxval={maxval!r}")
        self.seed = _seed(seed, "RandomUniform")

    def _draw(self, shape, rng):
        return rng.uniform(self.minval, self.maxval, shape)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


class Constant(Initializer):
    """Every value `value` (a real number)."""

    def __init__(self, value=0.0):
        self.value = _real(value, "value", type(self).__name__)

    def _draw(self, shape, rng):
        return np.full(shape, self.value)

    def get_config(self):
        return {"value": self.value}


class Zeros(Constant):
    """Every value 0."""

    def __init__(self):
        super().__init__(0.0)

    def get_config(self):
        return {}


class Ones(Constant):
    """Every value 1."""

    def __init__(self):
        super().__init__(1.0)

    def get_config(self):
        return {}


class Identity(Initializer):
    """gain * the identity matrix (rectangular ones too); 2-D shapes only, as in Keras."""

    def __init__(self, gain=1.0):
        self.gain = _real(gain, "gain", "Identity")

    def _draw(self, shape, rng):
        if len(shape) != 2:
            raise ValueError(f"Identity initializes 2-D kernels (a Dense layer's) only, got shape {shape}")
        return self.gain * np.eye(*shape)

    def get_config(self):
        return {"gain": self.gain}


class Orthogonal(Initializer):
    """gain * an orthogonal matrix: orthonormal columns (rows, if there are fewer rows than
    columns), from the QR decomposition of normal draws with Q's columns signed by R's diagonal
    (so Q is uniform over the orthogonal matrices). A kernel of more than 2 dimensions is made
    as the matrix (prod(shape[:-1]), shape[-1]), then reshaped; a 1-D shape (a bias) is a
    ValueError, as in Keras."""

    def __init__(self, gain=1.0, seed=None):
        self.gain = _real(gain, "gain", "Orthogonal")
        self.seed = _seed(seed, "Orthogonal")

    def _draw(self, shape, rng):
        if len(shape) < 2:
            raise ValueError(f"Orthogonal initializes kernels of 2 or more dimensions, got shape {shape} "
                             "(as in Keras; a bias takes another initializer)")
        rows, cols = math.prod(shape[:-1]), shape[-1]
        q, r = np.linalg.qr(rng.standard_normal((max(rows, cols), min(rows, cols))))
        q *= np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return self.gain * q.reshape(shape)

    def get_config(self):
        return {"gain": self.gain, "seed": self.seed}


class VarianceScaling(Initializer):
    """Draws of variance scale / n, n = max(1, fan_in), max(1, fan_out) or max(1, their mean)
    (mode "fan_in", "fan_out", "fan_avg"; fans as compute_fans): a normal truncated at 2 standard
    deviations, its standard deviation divided by 0.87962566103423978 so the variance holds
    ("truncated_normal", or "normal"), a plain normal ("untruncated_normal") or uniform in
    [-sqrt(3 * scale / n), sqrt(3 * scale / n)] ("uniform")."""

    MODES = ("fan_in", "fan_out", "fan_avg")
    DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None):
        owner = type(self).__name__
        self.scale = _real(scale, "scale", owner, positive=True)
        self.mode = _choice(mode, "mode", owner, self.MODES)
        if isinstance(distribution, str) and distribution.lower() == "normal":  # Keras' alias
            distribution = "truncated_normal"
        self.distribution = _choice(distribution, "distribution", owner, self.DISTRIBUTIONS)
        self.seed = _seed(seed, owner)

    def _draw(self, shape, rng):
        fan_in, fan_out = compute_fans(shape)
        n = max(1.0, {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode])
        # The uniform limit is sqrt((3 * scale) / n), not Keras' sqrt(3 * (scale / n)), an ulp
        # away at times: so glorot_uniform keeps the values it gave before these classes.
        if self.distribution == "truncated_normal":
            return truncated_standard_normal(rng, shape) * (math.sqrt(self.scale / n) / TRUNCATED_STD)
        if self.distribution == "untruncated_normal":
            return rng.normal(0.0, math.sqrt(self.scale / n), shape)
        limit = math.sqrt(3.0 * self.scale / n)
        return rng.uniform(-limit, limit, shape)

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution, "seed": self.seed}


class _Preset(VarianceScaling):
    """VarianceScaling of fixed ARGS (scale, mode, distribution), taking only a seed, as Keras' GlorotUniform, ..."""

    ARGS = ()

    def __init__(self, seed=None):
        super().__init__(*self.ARGS, seed=seed)

    def get_config(self):
        return {"seed": self.seed}


class GlorotUniform(_Preset):
    """Uniform in [-limit, limit], limit = sqrt(6 / (fan_in + fan_out)) (Keras' default)."""
    ARGS = (1.0, "fan_avg", "uniform")


class GlorotNormal(_Preset):
    """Truncated normal of standard deviation sqrt(2 / (fan_in + fan_out))."""
    ARGS = (1.0, "fan_avg", "truncated_normal")


class HeUniform(_Preset):
    """Uniform in [-limit, limit], limit = sqrt(6 / fan_in)."""
    ARGS = (2.0, "fan_in", "uniform")


class HeNormal(_Preset):
    """Truncated normal of standard deviation sqrt(2 / fan_in)."""
    ARGS = (2.0, "fan_in", "truncated_normal")


class LecunUniform(_Preset):
    """Uniform in [-limit, limit], limit = sqrt(3 / fan_in)."""
    ARGS = (1.0, "fan_in", "uniform")


class LecunNormal(_Preset):
    """Truncated normal of standard deviation sqrt(1 / fan_in)."""
    ARGS = (1.0, "fan_in", "truncated_normal")


# Keras' snake_case names, each with its class (Keras' registry; "constant" is Constant(0.0)).
CLASSES = {
    "glorot_uniform": GlorotUniform, "glorot_normal": GlorotNormal, "he_uniform": HeUniform,
    "he_normal": HeNormal, "lecun_uniform": LecunUniform, "lecun_normal": LecunNormal,
    "random_normal": RandomNormal, "random_uniform": RandomUniform, "truncated_normal": TruncatedNormal,
    "variance_scaling": VarianceScaling, "orthogonal": Orthogonal, "identity": Identity,
    "zeros": Zeros, "ones": Ones, "constant": Constant,
}
