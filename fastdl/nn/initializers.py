"""Kernel initialisers: Keras' glorot_uniform and he_normal, and get_initializer to pick one."""

import inspect
import math

import numpy as np


def _fans(shape):
    """(fan_in, fan_out) as Keras computes them for dense (in, out) and conv (kh, kw, in, out) kernels."""
    receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


def glorot_uniform(shape, rng, dtype):
    """Keras' default: U(-limit, limit) with limit = sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(shape)
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


def he_normal(shape, rng, dtype):
    """Keras' he_normal: normal truncated at 2 standard deviations, variance 2 / fan_in."""
    fan_in, _ = _fans(shape)
    # Keras divides by the standard deviation of a unit normal truncated at +-2.
    std = np.sqrt(2.0 / fan_in) / 0.87962566103423978
    values = rng.standard_normal(shape)
    outside = np.abs(values) > 2
    while outside.any():
        values[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(values) > 2
    return (values * std).astype(dtype)


INITIALIZERS = {"glorot_uniform": glorot_uniform, "he_normal": he_normal}


def get_initializer(initializer):
    """The kernel initializer f(shape, rng, dtype) -> array, from a name in INITIALIZERS or a
    function; rng is the layer's numpy Generator. A callable that cannot take those three arguments
    (a Keras initializer object, called as f(shape, dtype)) is a TypeError here, at construction,
    not a puzzle at build; one whose signature Python cannot read is taken on trust."""
    if callable(initializer):
        try:
            signature = inspect.signature(initializer)
        except (TypeError, ValueError):  # no signature to read (some builtins)
            return initializer
        try:
            signature.bind(None, None, None)
        except TypeError:
            raise TypeError(
                f"kernel_initializer {initializer!r} takes {signature}, not (shape, rng, dtype): fastdl takes a name "
                f"({', '.join(repr(n) for n in sorted(INITIALIZERS))}) or a function f(shape, rng, dtype) returning "
                "an array of that shape and dtype, rng a numpy Generator (a Keras initializer object is no such "
                "function)") from None
        return initializer
    if isinstance(initializer, str) and initializer.lower() in INITIALIZERS:
        return INITIALIZERS[initializer.lower()]
    raise ValueError(f"unknown kernel_initializer {initializer!r}; choose one of {sorted(INITIALIZERS)} or a callable")


def initial_kernel(initializer, shape, rng, dtype, layer):
    """The kernel initializer's values for a kernel of `shape`, checked and in the layer's dtype: a
    function of the user's returning float64 (rng.normal(0, 0.05, shape), say) for a float32 model
    is cast, one returning another shape or NaN is a ValueError naming the layer and the shapes,
    before any kernel reads it."""
    shape = tuple(shape)
    try:
        values = initializer(shape, rng, dtype)
    except Exception as exc:
        if hasattr(exc, "add_note"):  # Python 3.11
            exc.add_note(f"(raised by layer {layer}'s kernel_initializer {initializer!r}, called as f(shape={shape}, "
                         f"rng=<numpy Generator>, dtype={np.dtype(dtype).name}))")
        raise
    values = np.asarray(values)
    if values.dtype.kind not in "biuf":
        raise TypeError(f"layer {layer}'s kernel_initializer returned {values.dtype} values; it must return real "
                        f"numbers of shape {shape}")
    if values.shape != shape:
        raise ValueError(f"layer {layer}'s kernel_initializer returned an array of shape {values.shape} for a kernel "
                         f"of shape {shape}")
    with np.errstate(over="ignore"):  # a value beyond the dtype's range becomes inf, refused next
        values = np.ascontiguousarray(values, dtype=dtype)
    if not np.isfinite(values).all():
        raise ValueError(f"layer {layer}'s kernel_initializer returned NaN or infinite values (in {np.dtype(dtype).name})")
    return values
