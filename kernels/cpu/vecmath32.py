"""exp, expm1, log1p, tanh and the normal tail of float32, in float32 arithmetic, that vectorise
(Numba); mirrors kernels/cy/vecmath32.pxi. The float32 activations' twin of kernels/cpu/vecmath.py.

The float64 functions run 8 values an AVX-512 instruction (4 on AVX2) and need polynomials twice
as long as float32's; these run 16 (8), each within 3 float32 ulps of the exact value (the normal
tail 6; tests/test_vecmath.py bounds each), so that an activation built of two or three of them is
within a few ulps (tests/test_activations_float32.py bounds each against a float64 reference).
Every constant is a float32: a float64 one, or a Python int, would make Numba promote the
arithmetic to float64.

exp(x) = 2^k e^r as in vecmath.py: k ln 2 in two parts (ln 2's first 10 bits, exact times any
k here), e^r by its Taylor polynomial to r^7 (the first term left out is below 2^-27 e^r).

The polynomials' steps are fused multiply-adds (vecmath.fma; fmaf_ in the Cython twin), each
rounded once where the CPU has FMA, and k's arithmetic is narrowed to int32 (np.int32 casts):
with a multiply and an add per step, and k widened to int64, exp cost 0.37 ns a value on one
thread of an AVX-512 CPU; now 0.22 (sigmoid 0.43 -> 0.26, gelu's forward pass 1.4-1.6x faster).
Where the CPU has no FMA, or Cython's build does not target it (FASTDL_PORTABLE, MSVC), a step is
a multiply and an add, as before: libm's fma, value by value, was 7-14x slower.
"""

import numpy as np
from ._jit import helper
from .vecmath import FUSED, bits_float, float_bits, fma

F = np.float32
ZERO, HALF, ONE, TWO, THREE = F(0.0), F(0.5), F(1.0), F(2.0), F(3.0)
LOG2_E = F(1.4426950408889634)
LN2 = F(0.6931471805599453)
LN2_HI = F(0.693359375)  # ln 2's first 10 bits: k * LN2_HI is exact for |k| < 2^14
LN2_LO = F(-2.1219444170128554e-04)  # ln 2 - LN2_HI, rounded
SHIFTER = F(12582912.0)  # 1.5 * 2^23: x + SHIFTER rounds x to an integer, kept in its low bits
EXP_HIGH, EXP_LOW = F(89.0), F(-104.0)  # e^89 overflows float32, e^-104 rounds to 0
SQRT2_M1 = F(0.41421356237309503)
SQRT1_2 = F(0.7071067811865476)
HIGH_12_BITS = -(1 << 12)  # float32 bits that keep a value's first 12 significant bits
TAIL_Z_MAX = F(16.0)  # the normal tail of |z| >= 16 is 0 in float32 (e^-128)
ERFCX_U_MAX = F(11.0)  # the erfcx fit's range of u (16 / sqrt(2) = 11.3 rounds to it)
# tanh z = z + z^3 P(z^2) for |z| < TANH_SMALL: P of degree 5, a least-squares fit of (tanh z - z)
# / z^3 to mpmath's values at 400 Chebyshev nodes of z^2 in [0, TANH_SMALL^2], weighted by z^3 /
# tanh z (tanh's relative error), rounded to float32 (within 1.3e-8 of tanh, relative, before the
# rounding; tests/test_vecmath.py fits it again).
TANH_SMALL = F(0.875)
TANH_P = tuple(F(c) for c in (-0.333332359790802, 0.1333085596561432, -0.05375492572784424,
                              0.021000338718295097, -0.0069839125499129295, 0.001362630515359342))
INV_FACTORIAL = tuple(F(1.0 / f) for f in (1, 1, 2, 6, 24, 120, 720, 5040))
TWO_OVER_ODD = tuple(F(2.0 / n) for n in (1, 3, 5, 7, 9))
# (1 + 2u) e^(u^2) erfc(u), u in [0, 11], as a polynomial of t = (u - 3) / (u + 3): a degree-10
# least-squares fit at 300 Chebyshev nodes of t in [-1, 4 / 7] to mpmath's values, rounded to
# float32 (within 3e-9 before the rounding; tests/test_vecmath.py fits it again).
ERFCX_0 = F(-0.00026397418696433306)
ERFCX_1 = F(-0.0007652317290194333)
ERFCX_2 = F(0.0020121680572628975)
ERFCX_3 = F(0.002565470291301608)
ERFCX_4 = F(-0.0238034725189209)
ERFCX_5 = F(0.06829450279474258)
ERFCX_6 = F(-0.11927004903554916)
ERFCX_7 = F(0.1296466886997223)
ERFCX_8 = F(-0.04756244271993637)
ERFCX_9 = F(-0.13562114536762238)
ERFCX_10 = F(1.2530081272125244)  # the fit's 1.2530080080032349 and an ulp: Phi(0) = 0.5 exactly


I1, I23, I127 = np.int32(1), np.int32(23), np.int32(127)


@helper(cache=False, error_model="numpy")
def _pow2(k):
    """2^k for int32 k in [-126, 127], from its exponent bits."""
    return bits_float((k + I127) << I23, ONE)


@helper(cache=False, error_model="numpy")
def _expm1_reduced(r):
    """e^r - 1 of |r| <= ln 2 / 2: Taylor to r^7, Horner's order."""
    p = fma(r, INV_FACTORIAL[7], INV_FACTORIAL[6])
    p = fma(r, p, INV_FACTORIAL[5])
    p = fma(r, p, INV_FACTORIAL[4])
    p = fma(r, p, INV_FACTORIAL[3])
    p = fma(r, p, INV_FACTORIAL[2])
    return fma(r, r * p, r)


@helper(cache=False, error_model="numpy")
def _reduce(x):
    """(k, r) with x = k ln 2 + r, |r| <= ln 2 / 2, k an int32, for x clamped to [-104, 89]."""
    x = EXP_HIGH if x > EXP_HIGH else x
    x = EXP_LOW if x < EXP_LOW else x
    t = fma(x, LOG2_E, SHIFTER)
    n = t - SHIFTER
    r = fma(n, -LN2_LO, fma(n, -LN2_HI, x))
    return np.int32(float_bits(t) - float_bits(SHIFTER)), r


@helper(cache=False, error_model="numpy")
def _scale(p, k):
    """p * 2^k for int32 k in [-150, 128], in two factors that are each normal."""
    half = np.int32(k >> I1)
    return (p * _pow2(half)) * _pow2(np.int32(k - half))


@helper(cache=False, error_model="numpy")
def exp(x):
    """e^x of float32 x."""
    k, r = _reduce(x)
    return _scale(ONE + _expm1_reduced(r), k)


@helper(cache=False, error_model="numpy")
def expm1(x):
    """e^x - 1 of float32 x: the reduced polynomial where k = 0 (with x's sign), else (2^k - 1) +
    2^k q, 2^k - 1 exact for the k where it matters (2^k (1 + q) - 1 cancelled at k = 1: 3.6 ulps);
    k clamped to 127 in 2^k and the last factor 2 put back after, where e^x nears float32's top."""
    k, r = _reduce(x)
    q = _expm1_reduced(r)
    top = I127 if k > I127 else k
    s = _scale(ONE, top)
    return np.copysign(q, x) if k == 0 else fma(s, q, s - ONE) * _pow2(np.int32(k - top))


@helper(cache=False, error_model="numpy")
def log1p_unit(e):
    """log(1 + e) of float32 e in [0, 1], as vecmath.log1p_unit: atanh's series to s^9."""
    low = e <= SQRT2_M1
    s = e / (TWO + e) if low else (e - ONE) / (e + THREE)
    w = s * s
    p = fma(w, TWO_OVER_ODD[4], TWO_OVER_ODD[3])
    p = fma(w, p, TWO_OVER_ODD[2])
    p = fma(w, p, TWO_OVER_ODD[1])
    atanh2 = fma(s, w * p, TWO * s)
    return atanh2 if low else LN2 + atanh2


@helper(cache=False, error_model="numpy")
def tanh(z):
    """tanh of float32 z within 1.3 ulps (vecmath.tanh's -m / (2 + m) was 2.5 off, expm1's error
    carried whole): |z| + |z|^3 P(z^2) below TANH_SMALL, 1 - 2e / (1 + e) with e = exp(-2|z|)
    above, where 2e / (1 + e) < 0.3 and its error shrinks by as much; z's sign put back by
    copysign (-0 stays -0, NaN stays NaN)."""
    a = abs(z)
    w = a * a
    p = fma(w, TANH_P[5], TANH_P[4])
    p = fma(w, p, TANH_P[3])
    p = fma(w, p, TANH_P[2])
    p = fma(w, p, TANH_P[1])
    p = fma(w, p, TANH_P[0])
    e = exp(-TWO * a)
    return np.copysign(fma(a, w * p, a) if a < TANH_SMALL else ONE - TWO * e / (ONE + e), z)


@helper(cache=False, error_model="numpy", inline="always")
def normal_tail(z):
    """(Phi(-|z|), e^(-z^2 / 2)) of float32 z: the standard normal's tail beyond |z| and its
    density's exponential. e^(-z^2 / 2) without z^2's rounding (which costs z^2 / 2 ulps): where
    multiply-adds fuse, z^2's rounding error is exact by one; elsewhere z^2 = h^2 + d with h z's
    first 12 bits (h^2 exact), e^(-d / 2) by its Taylor polynomial to d^6;
    Phi(-|z|) = erfc(u) / 2 = e^(-z^2 / 2) erfcx(u) / 2 with u = |z| / sqrt(2), erfcx slowly
    varying (u's rounding costs nothing). |z| clamped to 16, where both have underflowed."""
    a = abs(z)
    a = TAIL_Z_MAX if a > TAIL_Z_MAX else a
    if FUSED:
        # z^2 = s + e exactly, e = fma(a, a, -s) with |e| <= 2^-16 here: e^(-e / 2) is 1 - e / 2
        # within 2^-35 (10 of gelu's 72 vector instructions fewer, and 12% of its time).
        s = a * a
        density = exp(-HALF * s) * fma(-HALF, fma(a, a, -s), ONE)
    else:
        h = bits_float(float_bits(a) & HIGH_12_BITS, a)
        b = HALF * ((a - h) * (a + h))
        p = fma(-b, INV_FACTORIAL[6], INV_FACTORIAL[5])
        p = fma(-b, p, INV_FACTORIAL[4])
        p = fma(-b, p, INV_FACTORIAL[3])
        p = fma(-b, p, INV_FACTORIAL[2])
        p = fma(-b, p, ONE)
        density = exp(-(HALF * (h * h))) * fma(-b, p, ONE)
    u = a * SQRT1_2
    u = ERFCX_U_MAX if u > ERFCX_U_MAX else u
    t = (u - THREE) / (u + THREE)
    p = fma(t, ERFCX_0, ERFCX_1)
    p = fma(t, p, ERFCX_2)
    p = fma(t, p, ERFCX_3)
    p = fma(t, p, ERFCX_4)
    p = fma(t, p, ERFCX_5)
    p = fma(t, p, ERFCX_6)
    p = fma(t, p, ERFCX_7)
    p = fma(t, p, ERFCX_8)
    p = fma(t, p, ERFCX_9)
    p = fma(t, p, ERFCX_10)
    return HALF * density * (p / fma(TWO, u, ONE)), density
