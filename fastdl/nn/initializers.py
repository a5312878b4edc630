"""Kernel initializers: Keras 3's, by name or as objects, and get_initializer to pick one.

An initializer is a function f(shape, rng, dtype) -> array, rng the layer's numpy Generator.
The classes (RandomNormal(stddev=0.01), VarianceScaling(...), ...) live in initializers_keras
and are re-exported here, as keras.initializers holds them.
"""

import inspect

import numpy as np

from fastdl.nn.initializers_keras import (  # noqa: F401 (re-exported: nn.initializers.RandomNormal, ...)
    CLASSES, Constant, GlorotNormal, GlorotUniform, HeNormal, HeUniform, Identity, Initializer, LecunNormal,
    LecunUniform, Ones, Orthogonal, RandomNormal, RandomUniform, TruncatedNormal, VarianceScaling, Zeros,
    compute_fans,
)

_fans = compute_fans  # its old name here


def glorot_uniform(shape, rng, dtype):
    """Keras' default: U(-limit, limit) with limit = sqrt(6 / (fan_in + fan_out))."""
    return GlorotUniform()(shape, rng, dtype)


def he_normal(shape, rng, dtype):
    """Keras' he_normal: normal truncated at 2 standard deviations, variance 2 / fan_in."""
    return HeNormal()(shape, rng, dtype)


# Keras' snake_case names -> f(shape, rng, dtype): the two functions fastdl always had, and an
# object of Keras' default arguments for every other name.
INITIALIZERS = {name: cls() for name, cls in CLASSES.items()}
INITIALIZERS.update(glorot_uniform=glorot_uniform, he_normal=he_normal)

# Lowercased, underscores dropped -> snake_case name: "HeNormal", "he_normal" and "HE_NORMAL" all
# find he_normal; Keras' other two class names as well.
_LOOKUP = {name.replace("_", ""): name for name in INITIALIZERS}
_LOOKUP.update(orthogonalinitializer="orthogonal", identityinitializer="identity",
               # Keras 3's short aliases (Keras 2 code writes kernel_initializer="uniform")
               uniform="random_uniform", normal="random_normal", one="ones", zero="zeros")


def _choices():
    return (f"{', '.join(repr(name) for name in sorted(INITIALIZERS))} (or Keras' class names: "
            f"{', '.join(sorted(cls.__name__ for cls in CLASSES.values()))})")


def get_initializer(initializer, argument="kernel_initializer"):
    """The initializer f(shape, rng, dtype) -> array, from a name, an initializer object or class
    (RandomNormal(stddev=0.01), HeNormal) or a function; rng is the layer's numpy Generator.

    Names are Keras' snake_case ones ("he_uniform") or class names ("HeUniform"), in any case. A
    callable that cannot take those three arguments (a Keras initializer object, called as
    f(shape, dtype)) is a TypeError here, at construction, not a puzzle at build; one whose
    signature Python cannot read is taken on trust. `argument` names the option in errors.
    """
    if isinstance(initializer, type) and issubclass(initializer, Initializer):
        return initializer()  # as Keras: a class means its default arguments
    if callable(initializer):
        try:
            signature = inspect.signature(initializer)
        except (TypeError, ValueError):  # no signature to read (some builtins)
            return initializer
        try:
            signature.bind(None, None, None)
        except TypeError:
            raise TypeError(
                f"{argument} {initializer!r} takes {signature}, not (shape, rng, dtype): fastdl takes a name "
                f"({_choices()}), an object of fastdl.nn.initializers (RandomNormal(stddev=0.01), ...) or a "
                "function f(shape, rng, dtype) returning an array of that shape and dtype, rng a numpy Generator "
                "(a Keras initializer object is no such function)") from None
        return initializer
    if isinstance(initializer, str):
        name = _LOOKUP.get(initializer.lower().replace("_", ""))
        if name is not None:  # a fresh object: a layer's is its own to change
            value = INITIALIZERS[name]
            return CLASSES[name]() if isinstance(value, Initializer) else value
    raise ValueError(f"unknown {argument} {initializer!r}; choose one of {_choices()}, an object of "
                     "fastdl.nn.initializers or a callable f(shape, rng, dtype)")


def initial_kernel(initializer, shape, rng, dtype, layer, argument="kernel_initializer"):
    """The kernel initializer's values for a kernel of `shape`, checked and in the layer's dtype: a
    function of the user's returning float64 (rng.normal(0, 0.05, shape), say) for a float32 model
    is cast, one returning another shape or NaN is a ValueError naming the layer and the shapes,
    before any kernel reads it. `argument` names the option in errors (a bias_initializer's too)."""
    shape = tuple(shape)
    try:
        values = initializer(shape, rng, dtype)
    except Exception as exc:
        if hasattr(exc, "add_note"):  # Python 3.11
            exc.add_note(f"(raised by layer {layer}'s {argument} {initializer!r}, called as f(shape={shape}, "
                         f"rng=<numpy Generator>, dtype={np.dtype(dtype).name}))")
        raise
    values = np.asarray(values)
    if values.dtype.kind not in "biuf":
        raise TypeError(f"layer {layer}'s {argument} returned {values.dtype} values; it must return real "
                        f"numbers of shape {shape}")
    if values.shape != shape:
        raise ValueError(f"layer {layer}'s {argument} returned an array of shape {values.shape} for a "
                         f"{argument.split('_')[0]} of shape {shape}")
    with np.errstate(over="ignore"):  # a value beyond the dtype's range becomes inf, refused next
        values = np.ascontiguousarray(values, dtype=dtype)
    if not np.isfinite(values).all():
        raise ValueError(f"layer {layer}'s {argument} returned NaN or infinite values (in {np.dtype(dtype).name})")
    return values
