# exp, expm1, log1p, tanh and the normal tail of double that vectorise, included by dense.pyx; mirrors
# kernels/cpu/vecmath.py (its docstring says how and how accurately), operation for operation, so
# that the two backends give the same bits (gcc contracts nothing: -ffp-contract=off). The
# including module cimports copysign, fabs, int64_t and uint64_t.

cdef double LOG2_E = 1.4426950408889634  # 1 / ln 2
cdef double LN2 = 0.6931471805599453
cdef double LN2_HI = 0.6931471824645996  # ln 2 rounded to 24 bits: k * LN2_HI is exact for |k| < 2^29
cdef double LN2_LO = -1.904654299957768e-09  # ln 2 - LN2_HI, rounded
cdef double SHIFTER = 6755399441055744.0  # 1.5 * 2^52: x + SHIFTER rounds x to an integer, kept in its low bits
cdef double SQRT2_M1 = 0.41421356237309503  # sqrt(2) - 1
cdef double SQRT1_2 = 0.70710678118654752440  # 1 / sqrt(2)
cdef int64_t HIGH_26_BITS = -(1 << 27)  # float64 bits that keep a value's first 26 significant bits


cdef union _Float64Bits:
    double value
    int64_t bits


cdef inline int64_t _float64_bits(double x) noexcept nogil:
    cdef _Float64Bits u
    u.value = x
    return u.bits


cdef inline double _bits_float64(int64_t bits) noexcept nogil:
    cdef _Float64Bits u
    u.bits = bits
    return u.value


cdef inline double _pow2(int64_t k) noexcept nogil:
    """2^k for k in [-1022, 1023], from its exponent bits."""
    return _bits_float64(<int64_t>(<uint64_t>(k + 1023) << 52))  # unsigned: a NaN's k may be negative


cdef inline double _expm1_reduced(double r) noexcept nogil:
    """e^r - 1 of |r| <= ln 2 / 2: Taylor to r^13, Horner's order."""
    cdef double p = 1 / 6227020800.0
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


cdef inline double _reduce(double x, int64_t* k) noexcept nogil:
    """r with x = k ln 2 + r, |r| <= ln 2 / 2, k into k[0], for x clamped to [-746, 710]."""
    x = 710.0 if x > 710.0 else x
    x = -746.0 if x < -746.0 else x
    cdef double t = x * LOG2_E + SHIFTER
    cdef double n = t - SHIFTER
    k[0] = _float64_bits(t) - _float64_bits(SHIFTER)
    return (x - n * LN2_HI) - n * LN2_LO


cdef inline double _scale(double p, int64_t k) noexcept nogil:
    """p * 2^k for k in [-1077, 1025], in two factors that are each normal."""
    cdef int64_t half = k >> 1
    return (p * _pow2(half)) * _pow2(k - half)


cdef inline double vexp(double x) noexcept nogil:
    """e^x."""
    cdef int64_t k
    cdef double r = _reduce(x, &k)
    return _scale(1.0 + _expm1_reduced(r), k)


cdef inline double vexpm1(double x) noexcept nogil:
    """e^x - 1: the reduced polynomial where k = 0, e^x - 1 outside."""
    cdef int64_t k
    cdef double r = _reduce(x, &k)
    cdef double q = _expm1_reduced(r)
    return copysign(q, x) if k == 0 else _scale(1.0 + q, k) - 1.0


cdef inline double vlog1p_unit(double e) noexcept nogil:
    """log(1 + e) of e in [0, 1]: 2 atanh(s), s = e / (2 + e), or ln 2 + 2 atanh((e - 1) / (e + 3))
    above sqrt(2) - 1."""
    cdef bint low = e <= SQRT2_M1
    cdef double s = e / (2.0 + e) if low else (e - 1.0) / (e + 3.0)
    cdef double w = s * s
    cdef double p = 2 / 23.0
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
    cdef double atanh2 = 2.0 * s + s * (w * p)
    return atanh2 if low else LN2 + atanh2


cdef inline double vtanh(double z) noexcept nogil:
    """tanh z = copysign(-m / (2 + m), z) with m = expm1(-2|z|)."""
    cdef double m = vexpm1(-2.0 * fabs(z))
    return copysign(-m / (2.0 + m), z)


cdef inline double _erfcx_scaled(double t) noexcept nogil:
    """(1 + 2u) e^(u^2) erfc(u) as a polynomial of t = (u - 3) / (u + 3) (see vecmath.py)."""
    cdef double p = 1.1409434109374257e-09
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


cdef inline double normal_tail_factors(double z, double* density) noexcept nogil:
    """r with Phi(-|z|) = r e, and e = e^(-z^2 / 2) into density (see vecmath.normal_tail_factors)."""
    cdef double a = fabs(z)
    a = 40.0 if a > 40.0 else a
    cdef double h = _bits_float64(_float64_bits(a) & HIGH_26_BITS)
    cdef double b = 0.5 * ((a - h) * (a + h))
    density[0] = vexp(-0.5 * (h * h)) * (1.0 - b * (1.0 - b * (0.5 - b / 6.0)))
    cdef double u = a * SQRT1_2
    return 0.5 * (_erfcx_scaled((u - 3.0) / (u + 3.0)) / (1.0 + 2.0 * u))
