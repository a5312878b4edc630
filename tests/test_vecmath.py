"""kernels/cpu/vecmath and vecmath32, the vectorising exp, expm1, log1p, tanh and the normal tail
the activations use: within a few ulps of libm over their whole domains, NaN and
the infinities where libm takes them; their Cython mirrors (kernels/cy/vecmath*.pxi, reachable
only through the activations) the same bits; erfc's polynomials fitted again from their recipes;
the kernels that inline them compiled again when they change."""

import math
import platform

import numba
import numpy as np
import pytest
from numba import njit
from numba.core import codegen as numba_codegen

import naive
from conftest import skip_unless_available
from fastdl.kernels.cpu import _jit, vecmath, vecmath32
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


def _ulps32(got, exact):
    """Largest |got - exact| (exact in float64) in float32 ulps of exact; 0 where both are NaN or
    got is exact's rounding, or within 64 of the smallest subnormal (results made of subnormal
    intermediates carry that absolute error)."""
    got = got.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        exact32 = exact.astype(np.float32)
        error = np.abs(got - exact) / np.spacing(np.abs(exact32)).astype(np.float64)
        fine = (got == exact32) | (np.isnan(got) & np.isnan(exact)) | (np.abs(got - exact) <= 64 * 2.0 ** -149)
    return float(np.max(np.where(fine, 0.0, np.where(np.isnan(error), np.inf, error))))


def _vectorised(func):
    """func over a float64 array, as a kernel's loop calls it."""

    @njit(error_model="numpy")
    def apply(x):
        out = np.empty_like(x)
        for i in range(x.shape[0]):
            out[i] = func(x[i])
        return out

    return apply


def _vectorised_pair(func):
    """func, which gives a pair, over an array: the two arrays of its pairs."""

    @njit(error_model="numpy")
    def apply(x):
        first, second = np.empty_like(x), np.empty_like(x)
        for i in range(x.shape[0]):
            first[i], second[i] = func(x[i])
        return first, second

    return apply


@pytest.mark.parametrize("name, reference, inputs, max_ulps", [
    ("exp", math.exp, _inputs((-750, 712), (-1, 1), (708, 710), (-746, -700)), 2),
    ("expm1", math.expm1, _inputs((-750, 712), (-1, 1), (-0.4, 0.4)), 5),
    ("tanh", math.tanh, _inputs((-30, 30), (-1, 1), (-1e-4, 1e-4)), 4),
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
    exp, tanh = (_vectorised(f) for f in (vecmath.exp, vecmath.tanh))
    assert exp(np.array([709.78, 709.79, -745.13, -745.14]))[[0, 2]].tolist() == [math.exp(709.78), 5e-324]
    assert exp(np.array([709.79, -745.14])).tolist() == [np.inf, 0.0]
    assert np.signbit(tanh(np.array([0.0, -0.0]))).tolist() == [False, True]
    assert np.signbit(_vectorised(vecmath.expm1)(np.array([0.0, -0.0]))).tolist() == [False, True]


def test_normal_tail_within_a_few_ulps():
    """Phi(-|z|) = r e and e = e^(-z^2 / 2) (vecmath.normal_tail_factors) against libm's, put right
    for the roundings of z / sqrt(2) and z^2 (naive.normal_cdf, normal_density), over the whole
    tail: to -37.5, where Phi(-|z|) nears float64's subnormals; e exactly 0 beyond the clamp,
    Phi(0) exactly 1/2, NaN kept."""
    factors = _vectorised_pair(vecmath.normal_tail_factors)
    z = _inputs((-37.5, 37.5), (-6, 6))
    z = z[np.isfinite(z)]
    r, e = factors(z)
    assert _ulps(r * e, np.array([naive.normal_cdf(-abs(v)) for v in z])) <= 8
    assert _ulps(e, np.array([naive.normal_density(v) * math.sqrt(2 * math.pi) for v in z])) <= 3
    r, e = factors(np.array([0.0, -0.0, 40.0, -np.inf, 1e300, np.nan]))
    assert (r[:2] * e[:2]).tolist() == [0.5, 0.5] and e[2:5].tolist() == [0.0] * 3 and np.isnan(r[5] * e[5])


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


def test_float32_erfc_polynomial_fits_again_from_its_recipe():
    """vecmath32's: degree 10 at 300 Chebyshev nodes of t in [-1, 4 / 7] (u in [0, 11])."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 30
    nodes = (np.cos(np.pi * (np.arange(300) + 0.5) / 300) + 1) / 2 * (4 / 7 + 1) - 1
    u = 3.0 * (1 + nodes) / (1 - nodes)
    scaled = [float((1 + 2 * mpmath.mpf(v)) * mpmath.exp(mpmath.mpf(v) ** 2) * mpmath.erfc(mpmath.mpf(v))) for v in u]
    refit = np.polynomial.polynomial.polyfit(nodes, scaled, 10)
    ours = [getattr(vecmath32, f"ERFCX_{i}") for i in range(11)][::-1]
    np.testing.assert_allclose(ours, refit, rtol=2 ** -23, atol=2 ** -24 * 1e-3)


def test_float32_tanh_polynomial_fits_again_from_its_recipe():
    """vecmath32's TANH_P: degree 5 in w = z^2 at 400 Chebyshev nodes of w in [0, TANH_SMALL^2],
    weighted by z^3 / tanh z."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 30
    top = float(vecmath32.TANH_SMALL) ** 2
    w = top / 2 * (1 - np.cos(np.pi * (np.arange(400) + 0.5) / 400))
    z = np.sqrt(w)
    exact = [mpmath.tanh(mpmath.mpf(v)) for v in z]
    target = np.array([float((t - v) / mpmath.mpf(v) ** 3) for t, v in zip(exact, z)])
    weight = z ** 3 / np.array([float(t) for t in exact])
    refit = np.linalg.lstsq(np.vander(w, 6, increasing=True) * weight[:, None], target * weight, rcond=None)[0]
    np.testing.assert_allclose(vecmath32.TANH_P, refit, rtol=2 ** -23)


@pytest.mark.parametrize("name, reference, inputs, max_ulps", [
    ("exp", math.exp, _inputs((-110, 95), (-1, 1)), 1),
    ("expm1", math.expm1, _inputs((-110, 95), (-1, 1), (-0.4, 0.4)), 4),
    ("tanh", math.tanh, _inputs((-20, 20), (-1, 1), (-1e-4, 1e-4)), 1.3),
])
def test_float32_within_a_few_ulps_of_libm(name, reference, inputs, max_ulps):
    x = inputs.astype(np.float32)
    assert _ulps32(_vectorised(getattr(vecmath32, name))(x), _libm(reference, x.astype(np.float64))) <= max_ulps


def test_float32_normal_tail_and_log1p_within_a_few_ulps():
    z = _inputs((-20, 20), (-6, 6)).astype(np.float32)
    z = z[np.isfinite(z)]
    tail_and_density = _vectorised_pair(vecmath32.normal_tail)
    tail, density = tail_and_density(z)
    a = np.abs(z.astype(np.float64))
    assert _ulps32(tail, _libm(lambda v: 0.5 * math.erfc(v / math.sqrt(2)), a)) <= 6
    assert _ulps32(density, np.exp(-0.5 * a * a)) <= 2
    assert tail_and_density(np.array([0.0], np.float32))[0][0] == 0.5  # Phi(0) exactly
    e = np.random.default_rng(2).uniform(0, 1, 100_000).astype(np.float32)
    assert _ulps32(_vectorised(vecmath32.log1p_unit)(e), np.log1p(e.astype(np.float64))) <= 2


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fma_rounds_once_where_fused(dtype, fused, monkeypatch):
    """vecmath.fma(x, y, z) is x * y + z rounded once where the CPU has FMA (vecmath.FUSED), else
    twice, in a loop (vectorised) as alone: (1 + e)^2 - (1 + 2e) is e^2, which a product rounded
    first loses."""
    monkeypatch.setattr(vecmath, "FUSED", fused)  # read as a function using fma compiles

    @njit(error_model="numpy")
    def fused_multiply_add(x, y, z):
        out = np.empty_like(x)
        for i in range(x.shape[0]):
            out[i] = vecmath.fma(x[i], y[i], z[i])
        return out

    e = dtype(2.0 ** -(np.finfo(dtype).nmant // 2 + 1))
    x = np.full(37, 1 + e, dtype)
    z = np.full(37, -(1 + 2 * e), dtype)
    assert x[0] * x[0] + z[0] == 0
    got = fused_multiply_add(x, x, z)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, np.full(37, e * e if fused else 0, dtype))


def test_fma_fuses_where_the_cpu_has_fma():
    """Numba's target CPU decides (on x86 its features name FMA); the Cython build fuses where
    its compiler targets FMA, which -march=native does on such a CPU."""
    if platform.machine().lower() in ("x86_64", "amd64"):
        features = numba.config.CPU_FEATURES or numba_codegen.get_host_cpu_features()
        assert vecmath.FUSED == ("+fma" in features.split(","))
    else:
        assert vecmath.FUSED


def _same_fusing():
    """Whether the Cython kernels fuse their multiply-adds where Numba's do: not in a
    FASTDL_PORTABLE or MSVC build on a CPU with FMA, whose Cython float32 activations then round
    twice where Numba's round once (both within test_activations_float32's bounds)."""
    from fastdl.kernels.cy import dense as cython_dense

    return cython_dense.FUSED_MULTIPLY_ADD == vecmath.FUSED


def test_kernels_inlining_vecmath_are_named_by_its_source(tmp_path, monkeypatch):
    """Numba's cache keys a kernel on its own file only: the variant name of a kernel that inlines
    another module's helpers carries that module's source digest, so that an edit of it compiles
    the kernel again instead of loading the old code."""
    module = tmp_path / "helpers.py"
    module.write_text("X = 1\n")
    fake = type("Module", (), {"__file__": str(module)})
    before = _jit._sources_digest([fake])
    module.write_text("X = 2\n")
    assert _jit._sources_digest([fake]) != before
    from fastdl.kernels.cpu import dense

    assert dense._bias_serial.py_func.__name__.endswith(_jit._sources_digest(dense._USES))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cython_mirror_gives_numbas_bits(dtype):
    """Every activation, both passes, over values that reach every branch of vecmath: the Cython
    kernels (vecmath.pxi) give the Numba kernels' bits (NaN's payload aside)."""
    for name in ("numba", "cython"):
        skip_unless_available(name)
    if dtype == np.float32 and not _same_fusing():
        pytest.skip("the Cython build fuses its float multiply-adds where Numba does not, or the other way")
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
