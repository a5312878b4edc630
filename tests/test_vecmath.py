"""kernels/cpu/vecmath, the vectorising exp, expm1, log1p, tanh and erfc the activations use: within
a few float64 ulps of libm over their whole domains, NaN and the infinities where libm takes them;
its Cython mirror (kernels/cy/vecmath.pxi, reachable only through the activations) the same bits;
erfc's polynomial fitted again from its recipe."""

import math

import numpy as np
import pytest
from numba import njit

from conftest import skip_unless_available
from fastdl.kernels.cpu import vecmath
from fastdl.ops.dense import ACTIVATIONS, activation_grad_into, activation_into, needs_input

SPECIAL = [0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324, 1e-310, -1e-310, 2.0 ** -30, 1e-20, -1e-20]


def _inputs(*ranges):
    """Seeded uniform draws over each (low, high), standard normals, tiny values and SPECIAL."""
    rng = np.random.default_rng(7)
    draws = [rng.uniform(low, high, 20_000) for low, high in ranges]
    return np.concatenate(draws + [rng.standard_normal(20_000), rng.standard_normal(2_000) * 1e-9, SPECIAL])


def _libm(func, x):
    """func (Python's math, libm) of each x; inf where it overflows."""

    def one(v):
        try:
            return func(v)
        except OverflowError:
            return math.inf
        except ValueError:  # math's domain errors (never for these functions' inputs but NaN)
            return math.nan

    return np.array([one(v) for v in x])


def _ulps(got, expected):
    """Largest |got - expected| in units of expected's last place (subnormals': the smallest
    subnormal); 0 where both are NaN or both the same infinity, inf where only one is."""
    same = (got == expected) | (np.isnan(got) & np.isnan(expected))
    with np.errstate(invalid="ignore"):
        error = np.abs(got - expected) / np.spacing(np.abs(expected))
    error = np.where(np.isfinite(expected) & np.isfinite(got), error, np.inf)
    return float(np.max(np.where(same, 0.0, error)))


def _vectorised(func):
    """func over a float64 array, as a kernel's loop calls it."""

    @njit(error_model="numpy")
    def apply(x):
        out = np.empty_like(x)
        for i in range(x.shape[0]):
            out[i] = func(x[i])
        return out

    return apply


@pytest.mark.parametrize("name, reference, inputs, max_ulps", [
    ("exp", math.exp, _inputs((-750, 712), (-1, 1), (708, 710), (-746, -700)), 2),
    ("expm1", math.expm1, _inputs((-750, 712), (-1, 1), (-0.4, 0.4)), 5),
    ("tanh", math.tanh, _inputs((-30, 30), (-1, 1), (-1e-4, 1e-4)), 4),
    ("erfc", math.erfc, _inputs((-30, 30), (-6, 6), (20, 27.5)), 10),
])
def test_within_a_few_ulps_of_libm(name, reference, inputs, max_ulps):
    got = _vectorised(getattr(vecmath, name))(inputs)
    assert _ulps(got, _libm(reference, inputs)) <= max_ulps


def test_log1p_unit_within_a_few_ulps_on_its_domain():
    rng = np.random.default_rng(3)
    e = np.concatenate([rng.uniform(0, 1, 50_000), np.geomspace(1e-300, 1, 2_000),
                        [0.0, 1.0, vecmath.SQRT2_M1, np.nextafter(vecmath.SQRT2_M1, 1), 5e-324, np.nan]])
    assert _ulps(_vectorised(vecmath.log1p_unit)(e), _libm(math.log1p, e)) <= 3


def test_edges_and_signed_zeros():
    exp, tanh, erfc = (_vectorised(f) for f in (vecmath.exp, vecmath.tanh, vecmath.erfc))
    assert exp(np.array([709.78, 709.79, -745.13, -745.14]))[[0, 2]].tolist() == [math.exp(709.78), 5e-324]
    assert exp(np.array([709.79, -745.14])).tolist() == [np.inf, 0.0]
    assert np.signbit(tanh(np.array([0.0, -0.0]))).tolist() == [False, True]
    assert erfc(np.array([-np.inf, np.inf, 30.0, 1e300])).tolist() == [2.0, 0.0, 0.0, 0.0]
    assert abs(erfc(np.array([0.0]))[0] - 1) <= 2.0 ** -52  # the fit's one ulp at u = 0


def test_erfc_polynomial_fits_again_from_its_recipe():
    """The recipe in _erfcx_scaled's docstring gives its coefficients back (mpmath at 40 digits)."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    nodes = np.cos(np.pi * (np.arange(400) + 0.5) / 400)
    u = 3.0 * (1 + nodes) / (1 - nodes)
    scaled = [float((1 + 2 * mpmath.mpf(v)) * mpmath.exp(mpmath.mpf(v) ** 2) * mpmath.erfc(mpmath.mpf(v))) for v in u]
    refit = np.polynomial.chebyshev.cheb2poly(np.polynomial.chebyshev.chebfit(nodes, scaled, 24))
    t = np.linspace(-1, 1, 501)
    np.testing.assert_allclose(_vectorised(vecmath._erfcx_scaled)(t),
                               np.polynomial.polynomial.polyval(t, refit), rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cython_mirror_gives_numbas_bits(dtype):
    """Every activation, both passes, over values that reach every branch of vecmath: the Cython
    kernels (vecmath.pxi) give the Numba kernels' bits (NaN's payload aside)."""
    for name in ("numba", "cython"):
        skip_unless_available(name)
    z = _inputs((-800, 800), (-40, 40), (-6, 6)).astype(dtype).reshape(4, -1)
    dout = np.random.default_rng(1).standard_normal(z.shape).astype(dtype)
    for code in sorted(set(ACTIVATIONS.values())):
        results = []
        for backend in ("numba", "cython"):
            out = z.copy()
            with np.errstate(all="ignore"):
                activation_into(out, code, backend)
                dpre = activation_grad_into(out, dout, code, np.empty_like(z), backend,
                                            pre=z if needs_input(code) else None)
            results.append((out, dpre))
        for ours, theirs in zip(*results):
            np.testing.assert_array_equal(np.where(np.isnan(ours), 0, ours).view(np.uint8),
                                          np.where(np.isnan(theirs), 0, theirs).view(np.uint8), err_msg=f"code {code}")
            np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
