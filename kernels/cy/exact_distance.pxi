# Exact float64 distances of two rows, included by distance.pyx and neighbors.pyx (each extension
# module compiles its own copy of these inline functions); mirrors kernels/cpu/distance.py's
# exact_distance. The including module defines LANES (8) and cimports floating, DBL_MAX and fabs.

# As the Numba kernels: a sum of squared differences in [SAFE_MIN, DBL_MAX] is accurate as it
# stands; outside it the differences are scaled by SCALE_DOWN (largest above 1) or SCALE_UP.
cdef double SAFE_MIN = 2.0**-900
cdef double SCALE_DOWN = 2.0**-600
cdef double SCALE_UP = 2.0**600


cdef inline double _lane_sum(
    const floating* a, const floating* b, Py_ssize_t n_features, double scale,
) noexcept nogil:
    """|(a - b) * scale|^2 in float64 (as the Numba kernel), scale a power of two: feature f adds
    into lane f % LANES and the lanes are summed pairwise, a fixed order that vectorises."""
    cdef double lane[LANES]
    cdef double diff
    cdef Py_ssize_t f, t
    for t in range(LANES):
        lane[t] = 0.0
    if scale < 1.0:  # scaled first: a difference beyond float64's range comes back into it
        for f in range(0, n_features - LANES + 1, 8):  # LANES
            for t in range(LANES):
                diff = <double>a[f + t] * scale - <double>b[f + t] * scale
                lane[t] += diff * diff
        for f in range(n_features - n_features % LANES, n_features):
            diff = <double>a[f] * scale - <double>b[f] * scale
            lane[f % LANES] += diff * diff
    else:  # subtracted first: exact for tiny values
        for f in range(0, n_features - LANES + 1, 8):  # LANES
            for t in range(LANES):
                diff = (<double>a[f + t] - <double>b[f + t]) * scale
                lane[t] += diff * diff
        for f in range(n_features - n_features % LANES, n_features):
            diff = (<double>a[f] - <double>b[f]) * scale
            lane[f % LANES] += diff * diff
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]))


cdef inline (double, double) _exact_distance(
    const floating* a, const floating* b, Py_ssize_t n_features,
) noexcept nogil:
    """(total, unscale) with |a - b| = sqrt(total) * unscale, as the Numba kernel's exact_distance:
    differences in float64 from the rows as given, scaled by a power
    of two first where their squares could over- or underflow."""
    cdef double total = _lane_sum(a, b, n_features, 1.0), largest = 0.0, diff, scale
    cdef Py_ssize_t f
    if SAFE_MIN <= total <= DBL_MAX:
        return total, 1.0
    for f in range(n_features):
        diff = fabs(<double>a[f] - <double>b[f])  # inf where it overflows
        largest = diff if diff > largest else largest
    scale = SCALE_DOWN if largest > 1.0 else SCALE_UP
    return _lane_sum(a, b, n_features, scale), 1.0 / scale
