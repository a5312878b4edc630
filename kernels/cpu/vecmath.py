"""exp, expm1, log1p, tanh and the normal tail of float64 that vectorise (Numba); mirrors
kernels/cy/vecmath.pxi.

libm's functions are calls LLVM cannot vectorise: an activation over a batch ran one value at a
time (a sigmoid pass cost 4.4 ns a value, tanh 15, gelu 18). These are polynomials after a range
reduction, with selects where libm branches, so that a loop calling them runs 4 or 8 values an
instruction (sigmoid 1.4 ns, tanh 1.7, gelu 5.2).
Each is within a few float64 ulps of the exact value over its whole domain (tests/test_vecmath.py
measures it against libm), so a float32 result rounded from one is libm's but for about one value
in 10^8; NaN stays NaN, +-inf go where libm takes them.

exp(x) = 2^k e^r with k = round(x / ln 2) and r = x - k ln 2 in [-ln 2 / 2, ln 2 / 2], e^r by its
Taylor polynomial to r^13 (the first term left out is below 2^-53 e^r). k ln 2 is taken in two
parts, ln 2's first 24 bits (exact times any k here) and the rest, so that r is exact to an ulp.

LLVM inlines a helper only below a cost; a loop with a call in it is not vectorised. normal_tail_factors
and what it calls are inlined by Numba itself (inline="always"), which LLVM found too costly (330 >
250), as are the activation helpers that call it (kernels/cpu/activation64.py, activation32.py); the
others stay below LLVM's threshold. Numba's inlining of every helper multiplied the dense kernels'
compile time by four to six (10 -> 43 s for these alone, 65 s with dense's), so it is kept to
those. A kernel that inlines these names this module in compile_kernel's `uses` (Numba's cache
would keep the old inlined code after an edit here), and is compiled exact (fastmath would fold
the range reduction: exp(1) came out 2).
"""

import platform

import numba
import numpy as np
from llvmlite import ir
from numba.core import codegen as numba_codegen, types
from numba.extending import intrinsic

from ._jit import helper

LOG2_E = 1.4426950408889634  # 1 / ln 2
LN2 = 0.6931471805599453
LN2_HI = 0.6931471824645996  # ln 2 rounded to 24 bits: k * LN2_HI is exact for |k| < 2^29
LN2_LO = -1.904654299957768e-09  # ln 2 - LN2_HI, rounded
SHIFTER = 6755399441055744.0  # 1.5 * 2^52: x + SHIFTER rounds x to an integer, kept in its low bits
SQRT2_M1 = 0.41421356237309503  # sqrt(2) - 1
SQRT1_2 = 0.70710678118654752440  # 1 / sqrt(2)
HIGH_26_BITS = -(1 << 27)  # float64 bits that keep a value's first 26 significant bits


_FLOATS = {types.float32: (types.int32, ir.FloatType()), types.float64: (types.int64, ir.DoubleType())}


@intrinsic
def float_bits(typingctx, x):
    """The bits of float32 or float64 x as an int32 or int64 (a bitcast, which vectorises: no
    memory round trip)."""
    if x not in _FLOATS:
        return None
    integer = _FLOATS[x][0]

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(integer.bitwidth))

    return integer(x), codegen


@intrinsic
def bits_float(typingctx, bits, like):
    """The float of like's type (float32 or float64) whose bits are the low ones of the integer
    `bits` (like's value is not read)."""
    if not isinstance(bits, types.Integer) or like not in _FLOATS:
        return None
    integer, llvm_float = _FLOATS[like]

    def codegen(context, builder, signature, args):
        value = args[0]
        if bits.bitwidth > integer.bitwidth:
            value = builder.trunc(value, ir.IntType(integer.bitwidth))
        elif bits.bitwidth < integer.bitwidth:
            value = builder.sext(value, ir.IntType(integer.bitwidth)) if bits.signed else builder.zext(
                value, ir.IntType(integer.bitwidth))
        return builder.bitcast(value, llvm_float)

    return like(bits, like), codegen


def _target_fuses():
    """Whether the CPU Numba compiles for has fused multiply-add instructions: on x86 its features
    (NUMBA_CPU_FEATURES, else the host's) name FMA (Intel since Haswell, AMD since Piledriver);
    other 64-bit CPUs (ARM, POWER) all have them."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return True
    features = numba.config.CPU_FEATURES
    if features is None:
        features = numba_codegen.get_host_cpu_features()
    return "+fma" in features.split(",")


# Whether fma fuses. Where the CPU has no FMA, llvm.fma is a call to libm's fma, value by value:
# float32 activations 7-14x slower than a multiply and an add (measured), so fma is those there.
FUSED = _target_fuses()


@intrinsic
def fma(typingctx, x, y, z):
    """x * y + z of three float32s or float64s: rounded once (llvm.fma, one vector instruction)
    where the CPU has FMA (FUSED), else twice (a multiply and an add), as C's fmaf in the Cython
    twin (kernels/cy/vecmath32.pxi: fused where the compiler targets FMA). Explicit, not a
    contraction left to the compiler (fastmath, -ffp-contract), which would pick its own places,
    and so its own bits."""
    if x not in _FLOATS or not x == y == z:
        return None

    def codegen(context, builder, signature, args):
        if FUSED:
            return builder.fma(*args)
        return builder.fadd(builder.fmul(args[0], args[1]), args[2])

    return x(x, y, z), codegen


@helper(error_model="numpy")
def _pow2(k):
    """2^k of int64 k in [-1022, 1023], from its exponent bits."""
    return bits_float((k + 1023) << 52, 1.0)


@helper(error_model="numpy")
def _expm1_reduced(r):
    """e^r - 1 of |r| <= ln 2 / 2: Taylor to r^13, Horner's order."""
    p = 1 / 6227020800.0
    p = 1 / 479001600.0 + r * p
    p = 1 / 39916800.0 + r * p
    p = 1 / 3628800.0 + r * p
    p = 1 / 362880.0 + r * p
    p = 1 / 40320.0 + r * p
    p = 1 / 5040.0 + r * p
    p = 1 / 720.0 + r * p
    p = 1 / 120.0 + r * p
    p = 1 / 24.0 + r * p
    p = 1 / 6.0 + r * p
    p = 0.5 + r * p
    return r + r * (r * p)


@helper(error_model="numpy")
def _reduce(x):
    """(k, r) with x = k ln 2 + r, |r| <= ln 2 / 2, for x clamped to [-746, 710] (comparisons
    false for NaN keep it: r NaN, k some integer)."""
    x = 710.0 if x > 710.0 else x
    x = -746.0 if x < -746.0 else x
    t = x * LOG2_E + SHIFTER
    n = t - SHIFTER
    r = (x - n * LN2_HI) - n * LN2_LO
    return float_bits(t) - float_bits(SHIFTER), r


@helper(error_model="numpy")
def _scale(p, k):
    """p * 2^k for k in [-1077, 1025], in two factors that are each normal: the product
    underflows gradually to 0 or overflows to inf as the one scaling would."""
    half = k >> 1
    return (p * _pow2(half)) * _pow2(k - half)


@helper(error_model="numpy")
def exp(x):
    """e^x of float64 x."""
    k, r = _reduce(x)
    return _scale(1.0 + _expm1_reduced(r), k)


@helper(error_model="numpy")
def expm1(x):
    """e^x - 1 of float64 x: the reduced polynomial itself where k = 0 (|x| <= ln 2 / 2, where
    e^x - 1 would cancel; with x's sign, which the polynomial loses at -0), e^x - 1 outside
    (cancelling by at most 2 bits)."""
    k, r = _reduce(x)
    q = _expm1_reduced(r)
    return np.copysign(q, x) if k == 0 else _scale(1.0 + q, k) - 1.0


@helper(error_model="numpy")
def log1p_unit(e):
    """log(1 + e) of float64 e in [0, 1] (what softplus needs): 2 atanh(s) with s = e / (2 + e),
    or ln 2 + 2 atanh((e - 1) / (e + 3)) above sqrt(2) - 1, |s| <= 0.172 either way; atanh's
    series to s^23, whose first term left out is below 2^-53 of the sum."""
    low = e <= SQRT2_M1
    s = e / (2.0 + e) if low else (e - 1.0) / (e + 3.0)
    w = s * s
    p = 2 / 23.0
    p = 2 / 21.0 + w * p
    p = 2 / 19.0 + w * p
    p = 2 / 17.0 + w * p
    p = 2 / 15.0 + w * p
    p = 2 / 13.0 + w * p
    p = 2 / 11.0 + w * p
    p = 2 / 9.0 + w * p
    p = 2 / 7.0 + w * p
    p = 2 / 5.0 + w * p
    p = 2 / 3.0 + w * p
    atanh2 = 2.0 * s + s * (w * p)
    return atanh2 if low else LN2 + atanh2


@helper(error_model="numpy")
def tanh(z):
    """tanh of float64 z: with m = expm1(-2|z|), tanh |z| = -m / (2 + m), no cancellation near 0.
    copysign, not a select on z's sign: it keeps 0's sign, and a select there nested in expm1's
    kept LLVM from vectorising the loop."""
    m = expm1(-2.0 * abs(z))
    return np.copysign(-m / (2.0 + m), z)


@helper(error_model="numpy", inline="always")
def _erfcx_scaled(t):
    """(1 + 2u) e^(u^2) erfc(u) as a polynomial of t = (u - 3) / (u + 3), which maps u >= 0 onto
    [-1, 1): a degree-24 least-squares fit at 400 Chebyshev nodes of t to mpmath's values (40
    digits), within 1e-15 relative everywhere (tests/test_vecmath.py fits it again)."""
    p = 1.1409434109374257e-09
    p = 1.193156089215429e-09 + t * p
    p = -9.964423139931754e-09 + t * p
    p = -1.4460125619155925e-08 + t * p
    p = 4.549327340277156e-08 + t * p
    p = 1.0460045698323988e-07 + t * p
    p = -1.4693655970449295e-07 + t * p
    p = -6.20396386547626e-07 + t * p
    p = 3.6175019247064896e-07 + t * p
    p = 3.4756416969815213e-06 + t * p
    p = -7.345108121501999e-07 + t * p
    p = -2.010237890989025e-05 + t * p
    p = 4.950717214148797e-06 + t * p
    p = 0.00012510001742252965 + t * p
    p = -0.0001051601372688986 + t * p
    p = -0.0007798324283494274 + t * p
    p = 0.0018886904189610008 + t * p
    p = 0.002529391838317294 + t * p
    p = -0.023770514925105384 + t * p
    p = 0.06830802734223582 + t * p
    p = -0.11927366341492814 + t * p
    p = 0.12964515870282448 + t * p
    p = -0.04756229435346013 + t * p
    p = -0.13562110612458195 + t * p
    p = 1.2530080582697298 + t * p  # the fit's 1.25300805826973 less an ulp: erfc(0) = 1 exactly
    return p


@helper(error_model="numpy", inline="always")
def normal_tail_factors(z):
    """(r, e) of float64 z with Phi(-|z|) = r e, the standard normal's tail beyond |z|:
    e = e^(-z^2 / 2), its density's exponential, and r = erfcx(u) / 2 with u = |z| / sqrt(2),
    in [0.0093, 0.5] (kept apart: their product leaves float64's normal range about a unit of z
    before gelu's z r e does). e from z itself, without z^2's rounding: z^2 = h^2 + d with h z's
    first 26 bits (h^2 exact) and d = (z - h)(z + h) < 2^-24 z^2, e^(-d / 2) by its Taylor
    polynomial to (d / 2)^3. (erfc of z / sqrt(2) would carry that quotient's rounding, z^2 / 2
    ulps: 400 at z = -28; erfcx varies slowly, and u's rounding costs nothing.) |z| clamped to 40,
    where e has underflowed."""
    a = abs(z)
    a = 40.0 if a > 40.0 else a
    h = bits_float(float_bits(a) & HIGH_26_BITS, a)
    b = 0.5 * ((a - h) * (a + h))
    density = exp(-0.5 * (h * h)) * (1.0 - b * (1.0 - b * (0.5 - b / 6.0)))
    u = a * SQRT1_2
    return 0.5 * (_erfcx_scaled((u - 3.0) / (u + 3.0)) / (1.0 + 2.0 * u)), density
