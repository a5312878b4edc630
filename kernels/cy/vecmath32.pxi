# exp, expm1, log1p, tanh and the normal tail of float, in float arithmetic, that vectorise,
# included by dense.pyx; mirrors kernels/cpu/vecmath32.py (its docstring says how and how
# accurately), operation for operation: the same bits. Every constant is a float (a double one
# would promote the arithmetic). The including module cimports copysignf, fabsf, int32_t and
# uint32_t.
#
# fmaf_: x * y + z rounded once (C's fmaf) where the compiler targets FMA (-march=native on a CPU
# that has it, as every AVX2 one; ARM), else rounded twice, as kernels/cpu/vecmath.fma on a CPU
# without FMA: a call to libm's fmaf per value left the loops scalar, 7-14x slower (a
# FASTDL_PORTABLE build, MSVC). FASTDL_FUSED says which (dense.FUSED_MULTIPLY_ADD).

cdef extern from *:
    """
    #if defined(__FMA__) || defined(__ARM_FEATURE_FMA)
    #define FASTDL_FUSED 1
    #define fmaf_(x, y, z) fmaf((x), (y), (z))
    #else
    #define FASTDL_FUSED 0
    #define fmaf_(x, y, z) ((x) * (y) + (z))
    #endif
    """
    const int FASTDL_FUSED
    float fmaf_(float x, float y, float z) noexcept nogil

cdef float ZERO_F = 0.0
cdef float HALF_F = 0.5
cdef float ONE_F = 1.0
cdef float TWO_F = 2.0
cdef float THREE_F = 3.0
cdef float LOG2_E_F = <float>1.4426950408889634
cdef float LN2_F = <float>0.6931471805599453
cdef float LN2_HI_F = <float>0.693359375  # ln 2's first 10 bits
cdef float LN2_LO_F = <float>-2.1219444170128554e-04  # ln 2 - LN2_HI_F, rounded
cdef float SHIFTER_F = 12582912.0  # 1.5 * 2^23
cdef float EXP_HIGH_F = 89.0
cdef float EXP_LOW_F = -104.0
cdef float SQRT2_M1_F = <float>0.41421356237309503
cdef float SQRT1_2_F = <float>0.7071067811865476
cdef int32_t HIGH_12_BITS = -(1 << 12)
cdef float TAIL_Z_MAX_F = 16.0
cdef float ERFCX_U_MAX_F = 11.0
cdef float INV_FACTORIAL_2 = <float>(1.0 / 2.0)
cdef float INV_FACTORIAL_3 = <float>(1.0 / 6.0)
cdef float INV_FACTORIAL_4 = <float>(1.0 / 24.0)
cdef float INV_FACTORIAL_5 = <float>(1.0 / 120.0)
cdef float INV_FACTORIAL_6 = <float>(1.0 / 720.0)
cdef float INV_FACTORIAL_7 = <float>(1.0 / 5040.0)
cdef float TWO_OVER_3 = <float>(2.0 / 3.0)
cdef float TWO_OVER_5 = <float>(2.0 / 5.0)
cdef float TWO_OVER_7 = <float>(2.0 / 7.0)
cdef float TWO_OVER_9 = <float>(2.0 / 9.0)
cdef float TANH_SMALL_F = 0.875
cdef float TANH_P_0 = <float>-0.333332359790802
cdef float TANH_P_1 = <float>0.1333085596561432
cdef float TANH_P_2 = <float>-0.05375492572784424
cdef float TANH_P_3 = <float>0.021000338718295097
cdef float TANH_P_4 = <float>-0.0069839125499129295
cdef float TANH_P_5 = <float>0.001362630515359342
cdef float ERFCX_0 = <float>-0.00026397418696433306
cdef float ERFCX_1 = <float>-0.0007652317290194333
cdef float ERFCX_2 = <float>0.0020121680572628975
cdef float ERFCX_3 = <float>0.002565470291301608
cdef float ERFCX_4 = <float>-0.0238034725189209
cdef float ERFCX_5 = <float>0.06829450279474258
cdef float ERFCX_6 = <float>-0.11927004903554916
cdef float ERFCX_7 = <float>0.1296466886997223
cdef float ERFCX_8 = <float>-0.04756244271993637
cdef float ERFCX_9 = <float>-0.13562114536762238
cdef float ERFCX_10 = <float>1.2530081272125244  # an ulp above the fit: Phi(0) = 0.5 exactly


cdef union _Float32Bits:
    float value
    int32_t bits


cdef inline int32_t _float32_bits(float x) noexcept nogil:
    cdef _Float32Bits u
    u.value = x
    return u.bits


cdef inline float _bits_float32(int32_t bits) noexcept nogil:
    cdef _Float32Bits u
    u.bits = bits
    return u.value


cdef inline float _pow2f(int32_t k) noexcept nogil:
    """2^k for k in [-126, 127]."""
    return _bits_float32(<int32_t>(<uint32_t>(k + 127) << 23))  # unsigned: a NaN's k may be negative


cdef inline float _expm1_reducedf(float r) noexcept nogil:
    """e^r - 1 of |r| <= ln 2 / 2: Taylor to r^7."""
    cdef float p = fmaf_(r, INV_FACTORIAL_7, INV_FACTORIAL_6)
    p = fmaf_(r, p, INV_FACTORIAL_5)
    p = fmaf_(r, p, INV_FACTORIAL_4)
    p = fmaf_(r, p, INV_FACTORIAL_3)
    p = fmaf_(r, p, INV_FACTORIAL_2)
    return fmaf_(r, r * p, r)


cdef inline float _reducef(float x, int32_t* k) noexcept nogil:
    """r with x = k ln 2 + r, k into k[0], for x clamped to [-104, 89]."""
    x = EXP_HIGH_F if x > EXP_HIGH_F else x
    x = EXP_LOW_F if x < EXP_LOW_F else x
    cdef float t = fmaf_(x, LOG2_E_F, SHIFTER_F)
    cdef float n = t - SHIFTER_F
    k[0] = _float32_bits(t) - _float32_bits(SHIFTER_F)
    return fmaf_(n, -LN2_LO_F, fmaf_(n, -LN2_HI_F, x))


cdef inline float _scalef(float p, int32_t k) noexcept nogil:
    """p * 2^k for k in [-150, 128], in two normal factors."""
    cdef int32_t half = k >> 1
    return (p * _pow2f(half)) * _pow2f(k - half)


cdef inline float vexpf(float x) noexcept nogil:
    cdef int32_t k
    cdef float r = _reducef(x, &k)
    return _scalef(ONE_F + _expm1_reducedf(r), k)


cdef inline float vexpm1f(float x) noexcept nogil:
    cdef int32_t k
    cdef float r = _reducef(x, &k)
    cdef float q = _expm1_reducedf(r)
    cdef int32_t top = 127 if k > 127 else k
    cdef float s = _scalef(ONE_F, top)
    cdef float outside = fmaf_(s, q, s - ONE_F) * _pow2f(k - top)  # both arms, then a select: gcc vectorises it
    return copysignf(q, x) if k == 0 else outside


cdef inline float vlog1p_unitf(float e) noexcept nogil:
    cdef bint low = e <= SQRT2_M1_F
    cdef float s = e / (TWO_F + e) if low else (e - ONE_F) / (e + THREE_F)
    cdef float w = s * s
    cdef float p = fmaf_(w, TWO_OVER_9, TWO_OVER_7)
    p = fmaf_(w, p, TWO_OVER_5)
    p = fmaf_(w, p, TWO_OVER_3)
    cdef float atanh2 = fmaf_(s, w * p, TWO_F * s)
    return atanh2 if low else LN2_F + atanh2


cdef inline float vtanhf(float z) noexcept nogil:
    cdef float a = fabsf(z)
    cdef float w = a * a
    cdef float p = fmaf_(w, TANH_P_5, TANH_P_4)
    p = fmaf_(w, p, TANH_P_3)
    p = fmaf_(w, p, TANH_P_2)
    p = fmaf_(w, p, TANH_P_1)
    p = fmaf_(w, p, TANH_P_0)
    cdef float e = vexpf(-TWO_F * a)
    return copysignf(fmaf_(a, w * p, a) if a < TANH_SMALL_F else ONE_F - TWO_F * e / (ONE_F + e), z)


cdef inline float normal_tailf(float z, float* density) noexcept nogil:
    """Phi(-|z|), and e^(-z^2 / 2) into density (see vecmath32.normal_tail)."""
    cdef float a = fabsf(z)
    a = TAIL_Z_MAX_F if a > TAIL_Z_MAX_F else a
    cdef float s, h, b, p
    if FASTDL_FUSED:  # z^2's rounding error exact by one fused multiply-add (see vecmath32.normal_tail)
        s = a * a
        density[0] = vexpf(-HALF_F * s) * fmaf_(-HALF_F, fmaf_(a, a, -s), ONE_F)
    else:
        h = _bits_float32(_float32_bits(a) & HIGH_12_BITS)
        b = HALF_F * ((a - h) * (a + h))
        p = fmaf_(-b, INV_FACTORIAL_6, INV_FACTORIAL_5)
        p = fmaf_(-b, p, INV_FACTORIAL_4)
        p = fmaf_(-b, p, INV_FACTORIAL_3)
        p = fmaf_(-b, p, INV_FACTORIAL_2)
        p = fmaf_(-b, p, ONE_F)
        density[0] = vexpf(-(HALF_F * (h * h))) * fmaf_(-b, p, ONE_F)
    cdef float u = a * SQRT1_2_F
    u = ERFCX_U_MAX_F if u > ERFCX_U_MAX_F else u
    cdef float t = (u - THREE_F) / (u + THREE_F)
    p = fmaf_(t, ERFCX_0, ERFCX_1)
    p = fmaf_(t, p, ERFCX_2)
    p = fmaf_(t, p, ERFCX_3)
    p = fmaf_(t, p, ERFCX_4)
    p = fmaf_(t, p, ERFCX_5)
    p = fmaf_(t, p, ERFCX_6)
    p = fmaf_(t, p, ERFCX_7)
    p = fmaf_(t, p, ERFCX_8)
    p = fmaf_(t, p, ERFCX_9)
    p = fmaf_(t, p, ERFCX_10)
    return HALF_F * density[0] * (p / fmaf_(TWO_F, u, ONE_F))
