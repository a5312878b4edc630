"""Analog-clock renderer (Cython); mirrors kernels/cpu/clock.py and kernels/npy/clock.py.

See kernels/cpu/clock.py for the passes. Every pixel sees the same operations in the same order
as there (gcc builds with -ffp-contract=off, so a * b + c stays two roundings), so both give the
same bits. Parameters: kernels/npy/clock_layout.py, repeated in the enum below (a test checks
that the two agree).
"""

from cython.parallel cimport parallel, prange
from libc.math cimport fabs, floor, ceil, sqrt
from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.stdlib cimport free, malloc

cdef enum:
    HINV = 0
    DET = 9
    FACE = 10
    RIM = 11
    RIM_WIDTH = 12
    INK = 13
    HAND = 14
    BG = 15
    BG_GX = 16
    BG_GY = 17
    STRIPE_AMP = 18
    STRIPE_KX = 19
    STRIPE_KY = 20
    SHADOW_DX = 21
    SHADOW_DY = 22
    SHADOW = 23
    TICKS = 24
    TICK_OUTER = 25
    HOUR_TICK_LEN = 26
    HOUR_TICK_W = 27
    MIN_TICK_LEN = 28
    MIN_TICK_W = 29
    MARKER = 30
    NUMERALS = 31
    FONT = 32
    NUM_RADIUS = 33
    NUM_HEIGHT = 34
    NUM_STROKE = 35
    LOGO = 36
    HOUR_HAND = 37
    MINUTE_HAND = 44
    SECOND_HAND = 51
    SECONDS = 58
    CAP = 59
    GLARE = 60
    GLARE_U = 61
    GLARE_V = 62
    GLARE_INV_R2 = 63
    LIGHT = 64
    LIGHT_GX = 65
    LIGHT_GY = 66
    VIGNETTE = 67
    CONTRAST = 68
    CURVE = 69
    NOISE = 70
    BLUR = 71
    CLUTTER = 78
    CLOCK_BOX = 102
    SHADOW_BOX = 106
    N_PARAMS = 110
    HAND_DX = 0
    HAND_DY = 1
    HAND_LEN = 2
    HAND_WIDTH = 3
    HAND_TAIL = 4
    HAND_SHAPE = 5
    HAND_VALUE = 6
    N_SHAPES = 3
    SHAPE_SIZE = 8
    BLUR_RADIUS = 3
    GLYPH_N = 59
    # rows of the per-image scratch buffer, as in kernels/cpu/clock.py
    U = 0
    V = 1
    R = 2
    INV_FOOT = 3
    ANGLE = 4
    FACE_COVER = 5
    BODY = 6
    INK_COVER = 7
    VALUE = 8
    N_ROWS = 9

cdef double GLYPH_HALF = 0.9
cdef double GLYPH_SCALE = 32.0
cdef uint64_t GOLDEN = 0x9E3779B97F4A7C15ULL
cdef uint64_t MIX1 = 0xBF58476D1CE4E5B9ULL
cdef uint64_t MIX2 = 0x94D049BB133111EBULL
cdef uint64_t LOW32 = 0xFFFFFFFFULL
cdef double TWO_POW_M32 = 2.3283064365386963e-10
cdef double SQRT6 = 2.449489742783178
cdef double HALF_PI = 1.5707963267948966
cdef double PI = 3.141592653589793
cdef double PER_RADIAN_60 = 9.549296585513721
cdef double PER_RADIAN_12 = 1.909859317102744
cdef double LEAF_TIP = 2.857142857142857
cdef double SHADOW_REACH = 0.15


def layout():
    """The parameter indices this module was built with (a test compares them with clock_layout)."""
    return {"HINV": HINV, "DET": DET, "FACE": FACE, "RIM": RIM, "RIM_WIDTH": RIM_WIDTH, "INK": INK,
            "HAND": HAND, "BG": BG, "BG_GX": BG_GX, "BG_GY": BG_GY, "STRIPE_AMP": STRIPE_AMP,
            "STRIPE_KX": STRIPE_KX, "STRIPE_KY": STRIPE_KY, "SHADOW_DX": SHADOW_DX, "SHADOW_DY": SHADOW_DY,
            "SHADOW": SHADOW, "TICKS": TICKS, "TICK_OUTER": TICK_OUTER, "HOUR_TICK_LEN": HOUR_TICK_LEN,
            "HOUR_TICK_W": HOUR_TICK_W, "MIN_TICK_LEN": MIN_TICK_LEN, "MIN_TICK_W": MIN_TICK_W,
            "MARKER": MARKER, "NUMERALS": NUMERALS, "FONT": FONT, "NUM_RADIUS": NUM_RADIUS,
            "NUM_HEIGHT": NUM_HEIGHT, "NUM_STROKE": NUM_STROKE, "LOGO": LOGO, "HOUR_HAND": HOUR_HAND,
            "MINUTE_HAND": MINUTE_HAND, "SECOND_HAND": SECOND_HAND, "SECONDS": SECONDS, "CAP": CAP,
            "GLARE": GLARE, "GLARE_U": GLARE_U, "GLARE_V": GLARE_V, "GLARE_INV_R2": GLARE_INV_R2,
            "LIGHT": LIGHT, "LIGHT_GX": LIGHT_GX, "LIGHT_GY": LIGHT_GY, "VIGNETTE": VIGNETTE,
            "CONTRAST": CONTRAST, "CURVE": CURVE, "NOISE": NOISE, "BLUR": BLUR, "CLUTTER": CLUTTER,
            "CLOCK_BOX": CLOCK_BOX, "SHADOW_BOX": SHADOW_BOX, "N_PARAMS": N_PARAMS, "HAND_DX": HAND_DX,
            "HAND_DY": HAND_DY, "HAND_LEN": HAND_LEN, "HAND_WIDTH": HAND_WIDTH, "HAND_TAIL": HAND_TAIL,
            "HAND_SHAPE": HAND_SHAPE, "HAND_VALUE": HAND_VALUE, "N_SHAPES": N_SHAPES,
            "SHAPE_SIZE": SHAPE_SIZE, "BLUR_RADIUS": BLUR_RADIUS, "GLYPH_N": GLYPH_N,
            "GLYPH_HALF": GLYPH_HALF, "GLYPH_SCALE": GLYPH_SCALE}


cdef inline uint64_t _mix64(uint64_t z) noexcept nogil:
    """splitmix64's finaliser (uint64 arithmetic wraps)."""
    z = (z ^ (z >> 30)) * MIX1
    z = (z ^ (z >> 27)) * MIX2
    return z ^ (z >> 31)


cdef inline double _min(double a, double b) noexcept nogil:
    return a if a < b else b


cdef inline double _max(double a, double b) noexcept nogil:
    return a if a > b else b


cdef inline double _cover(double sd, double inv_footprint) noexcept nogil:
    """How much of a pixel 1 / inv_footprint wide a shape covers at signed distance sd."""
    return _min(_max(0.5 - sd * inv_footprint, 0.0), 1.0)


cdef inline double _dial_angle(double u, double v) noexcept nogil:
    """Angle of (u, v) clockwise from 12 o'clock, in (-pi, pi]; 0 at the centre."""
    cdef double au = fabs(u), av = fabs(v)
    cdef double a = _min(au, av) / _max(_max(au, av), 1e-300)
    cdef double s = a * a
    cdef double r = a * (0.99997726 + s * (-0.33262347 + s * (0.19354346 + s * (-0.11643287 + s * (0.05265332
                                                                                                + s * -0.0117212)))))
    r = HALF_PI - r if au > av else r
    r = PI - r if v < 0.0 else r
    return -r if u < 0.0 else r


cdef inline int _nearest(double angle, double per_radian, int n) noexcept nogil:
    """Index 0..n-1 of the mark nearest `angle` among n marks round the dial."""
    cdef int k = <int>floor(angle * per_radian + 0.5)
    if k < 0:
        k += n
    if k >= n:
        k -= n
    return k


cdef void _background(const double* p, double y, double pixel, double inv_pixel, Py_ssize_t size,
                      double* value) noexcept nogil:
    cdef Py_ssize_t col, j, b, first, stop
    cdef double base = p[BG] + p[BG_GY] * (y - 0.5)
    cdef double gx = p[BG_GX], amp = p[STRIPE_AMP], kx = p[STRIPE_KX], ky = p[STRIPE_KY]
    cdef double t, kind, reach, dx, dy, sd, cx, a, b_half, c, s, level
    for col in range(size):
        value[col] = base + gx * ((col + 0.5) * pixel - 0.5)
    if amp > 0.0:
        for col in range(size):
            t = kx * ((col + 0.5) * pixel) + ky * y
            value[col] = value[col] + amp * (fabs(t - floor(t) - 0.5) * 2.0 - 0.5)
    for j in range(N_SHAPES):
        b = CLUTTER + j * SHAPE_SIZE
        kind = p[b]
        reach = p[b + 3] + p[b + 4] + pixel
        dy = y - p[b + 2]
        if kind == 0.0 or fabs(dy) > reach:
            continue
        first = <Py_ssize_t>floor((p[b + 1] - reach) * size) - 1
        stop = <Py_ssize_t>ceil((p[b + 1] + reach) * size) + 1
        if first < 0:
            first = 0
        if stop > size:
            stop = size
        cx, a, b_half, c, s, level = p[b + 1], p[b + 3], p[b + 4], p[b + 5], p[b + 6], p[b + 7]
        if kind == 1.0:
            for col in range(first, stop):
                dx = (col + 0.5) * pixel - cx
                sd = sqrt(dx * dx + dy * dy) - a
                value[col] = value[col] + (level - value[col]) * _cover(sd, inv_pixel)
        else:
            for col in range(first, stop):
                dx = (col + 0.5) * pixel - cx
                sd = _max(fabs(dx * c + dy * s) - a, fabs(dy * c - dx * s) - b_half)
                value[col] = value[col] + (level - value[col]) * _cover(sd, inv_pixel)


cdef void _shadow(const double* p, double y, double pixel, Py_ssize_t first, Py_ssize_t stop,
                  double* value) noexcept nogil:
    cdef double outer = 1.0 + p[RIM_WIDTH]
    cdef double reach2 = (outer + SHADOW_REACH) * (outer + SHADOW_REACH)
    cdef double inv_band = 1.0 / (4.0 * SHADOW_REACH * outer)
    cdef double ys = y - p[SHADOW_DY], xs, w, wx, wy, c
    cdef double h0 = p[HINV], h1 = p[HINV + 1], h2 = p[HINV + 2], h3 = p[HINV + 3], h4 = p[HINV + 4]
    cdef double h5 = p[HINV + 5], h6 = p[HINV + 6], h7 = p[HINV + 7], h8 = p[HINV + 8]
    cdef double dx0 = p[SHADOW_DX], strength = p[SHADOW]
    cdef Py_ssize_t col
    for col in range(first, stop):
        xs = (col + 0.5) * pixel - dx0
        w = h6 * xs + h7 * ys + h8
        wx = h0 * xs + h1 * ys + h2
        wy = h3 * xs + h4 * ys + h5
        c = _min(_max((reach2 * (w * w) - (wx * wx + wy * wy)) * inv_band, 0.0), 1.0)
        value[col] = value[col] * (1.0 - strength * c)


cdef void _face_coordinates(const double* p, double y, double pixel, Py_ssize_t first, Py_ssize_t stop,
                            double* rows, Py_ssize_t size) noexcept nogil:
    cdef double inv_foot0 = 1.0 / (sqrt(p[DET]) * pixel)
    cdef double h0 = p[HINV], h1 = p[HINV + 1], h2 = p[HINV + 2], h3 = p[HINV + 3], h4 = p[HINV + 4]
    cdef double h5 = p[HINV + 5], h6 = p[HINV + 6], h7 = p[HINV + 7], h8 = p[HINV + 8]
    cdef double* u_row = rows + U * size
    cdef double* v_row = rows + V * size
    cdef double* r_row = rows + R * size
    cdef double* inv_foot_row = rows + INV_FOOT * size
    cdef double x, w, inv_w, u, v, aw
    cdef Py_ssize_t col
    for col in range(first, stop):
        x = (col + 0.5) * pixel
        w = h6 * x + h7 * y + h8
        inv_w = 1.0 / w
        u = (h0 * x + h1 * y + h2) * inv_w
        v = (h3 * x + h4 * y + h5) * inv_w
        aw = fabs(w)
        u_row[col] = u
        v_row[col] = v
        r_row[col] = sqrt(u * u + v * v)
        inv_foot_row[col] = aw * sqrt(aw) * inv_foot0


cdef inline double _marker_sd(const double* p, double along, double across) noexcept nogil:
    """Signed distance to the 12 o'clock marker (p[MARKER] 2: a triangle, 1: a double tick)."""
    cdef double outer = p[TICK_OUTER], hour_len = p[HOUR_TICK_LEN], hour_w = p[HOUR_TICK_W]
    cdef double length = 1.5 * hour_len, half = 2.5 * hour_w
    if p[MARKER] == 2.0:
        return _max(along - outer, (across * length - half * (along - (outer - length)))
                    / sqrt(length * length + half * half))
    return _max(_max(outer - hour_len - along, along - outer), fabs(across - 1.3 * hour_w) - 0.7 * hour_w)


cdef void _ticks(const double* p, const double[:, ::1] ticks, double pixel, Py_ssize_t first, Py_ssize_t stop,
                 double* rows, Py_ssize_t size) noexcept nogil:
    """rows[INK_COVER, first:stop] = how much of each pixel the ticks and the 12 o'clock marker cover
    (the nearest minute tick, and near 12 the marker, which is wider than that tick's slice)."""
    cdef const double* u = rows + U * size
    cdef const double* v = rows + V * size
    cdef const double* r = rows + R * size
    cdef const double* angle = rows + ANGLE * size
    cdef const double* inv_foot = rows + INV_FOOT * size
    cdef double* ink = rows + INK_COVER * size
    cdef double margin = 2.0 * sqrt(p[DET]) * pixel
    cdef double outer = p[TICK_OUTER]
    cdef double hour_len = p[HOUR_TICK_LEN], hour_w = p[HOUR_TICK_W], min_len = p[MIN_TICK_LEN], min_w = p[MIN_TICK_W]
    cdef double ring_in = outer - 1.5 * hour_len - margin
    cdef double ring_out = outer + margin
    cdef double marker_reach = 2.5 * hour_w + margin
    cdef double style = p[TICKS], marker = p[MARKER]
    cdef double sx0 = ticks[0, 0], cy0 = ticks[0, 1]
    cdef double sx, cy, along, across, hour, minute, sd
    cdef int k
    cdef Py_ssize_t col
    for col in range(first, stop):
        if not (r[col] > ring_in and r[col] < ring_out):
            ink[col] = 0.0
            continue
        k = _nearest(angle[col], PER_RADIAN_60, 60)
        sx = ticks[k, 0]
        cy = ticks[k, 1]
        along = u[col] * sx + v[col] * cy
        across = fabs(u[col] * cy - v[col] * sx)
        hour = _max(_max(outer - hour_len - along, along - outer), across - hour_w)
        minute = _max(_max(outer - min_len - along, along - outer), across - min_w)
        sd = minute if style == 2.0 else 1.0
        sd = hour if k % 5 == 0 and style > 0.0 else sd
        if marker > 0.0 and k == 0:
            sd = _marker_sd(p, along, across)
        elif marker > 0.0 and v[col] > 0.0 and fabs(u[col]) < marker_reach:
            # ticks 59 and 1 draw the marker too where it reaches into their slice of the dial
            sd = _min(sd, _marker_sd(p, u[col] * sx0 + v[col] * cy0, fabs(u[col] * cy0 - v[col] * sx0)))
        ink[col] = _cover(sd, inv_foot[col])


cdef void _numerals(const double* p, const float[:, :, :, ::1] glyphs, const double[:, ::1] ticks, double pixel,
                    Py_ssize_t first, Py_ssize_t stop, double* rows, Py_ssize_t size) noexcept nogil:
    """rows[INK_COVER, first:stop] with the numerals' cover added (the larger of the two)."""
    cdef const double* u = rows + U * size
    cdef const double* v = rows + V * size
    cdef const double* r = rows + R * size
    cdef const double* angle = rows + ANGLE * size
    cdef const double* inv_foot = rows + INV_FOOT * size
    cdef double* ink = rows + INK_COVER * size
    cdef double margin = 2.0 * sqrt(p[DET]) * pixel
    cdef double height = p[NUM_HEIGHT]
    cdef double inv_height = 1.0 / height
    cdef double radius = p[NUM_RADIUS]
    cdef double reach = 0.8 * height + margin
    cdef double stroke = p[NUM_STROKE]
    cdef bint quarters = p[NUMERALS] == 2.0
    cdef bint upright = p[FONT] == 0.0
    cdef const float* flat = &glyphs[<int>p[FONT], 0, 0, 0]
    cdef int last = GLYPH_N - 2
    cdef double sx, cy, du, dv, gx, gy, fx, fy, ax, ay, d00, d10, top, bottom, distance, cover
    cdef bint on_grid
    cdef int k, ix, iy
    cdef Py_ssize_t col, at
    for col in range(first, stop):
        if not fabs(r[col] - radius) < reach:
            continue
        k = _nearest(angle[col], PER_RADIAN_12, 12)
        sx = ticks[5 * k, 0]
        cy = ticks[5 * k, 1]
        du = u[col] - radius * sx
        dv = v[col] - radius * cy
        gx = du * inv_height if upright else (du * cy - dv * sx) * inv_height
        gy = dv * inv_height if upright else (du * sx + dv * cy) * inv_height
        fx = (gx + GLYPH_HALF) * GLYPH_SCALE
        fy = (gy + GLYPH_HALF) * GLYPH_SCALE
        on_grid = fx >= 0.0 and fy >= 0.0 and fx < GLYPH_N - 1 and fy < GLYPH_N - 1
        ix = (<int>fx if <int>fx < last else last) if fx >= 0.0 else 0
        iy = (<int>fy if <int>fy < last else last) if fy >= 0.0 else 0
        ax = fx - ix
        ay = fy - iy
        at = (k * GLYPH_N + iy) * GLYPH_N + ix
        d00 = <double>flat[at]
        d10 = <double>flat[at + GLYPH_N]
        top = d00 + (<double>flat[at + 1] - d00) * ax
        bottom = d10 + (<double>flat[at + GLYPH_N + 1] - d10) * ax
        distance = top + (bottom - top) * ay
        cover = _cover((distance - stroke) * height, inv_foot[col])
        if on_grid and not (quarters and k % 3 != 0):
            ink[col] = _max(ink[col], cover)


cdef void _logo(const double* p, double pixel, Py_ssize_t first, Py_ssize_t stop, double* rows,
                Py_ssize_t size) noexcept nogil:
    """rows[INK_COVER, first:stop] with the maker's logo under 12 (two bars) added."""
    cdef const double* u = rows + U * size
    cdef const double* v = rows + V * size
    cdef const double* inv_foot = rows + INV_FOOT * size
    cdef double* ink = rows + INK_COVER * size
    cdef double margin = 2.0 * sqrt(p[DET]) * pixel
    cdef double au, bars
    cdef Py_ssize_t col
    for col in range(first, stop):
        au = fabs(u[col])
        bars = _min(_max(au - 0.09, fabs(v[col] - 0.42) - 0.018), _max(au - 0.06, fabs(v[col] - 0.365) - 0.01))
        if au < 0.1 + margin and v[col] > 0.33 - margin and v[col] < 0.45 + margin:
            ink[col] = _max(ink[col], _cover(bars, inv_foot[col]))


cdef void _ink(const double* p, const float[:, :, :, ::1] glyphs, const double[:, ::1] ticks, double pixel,
               Py_ssize_t first, Py_ssize_t stop, double* rows, Py_ssize_t size) noexcept nogil:
    """rows[INK_COVER, first:stop]: how much of each pixel the ticks, numerals and logo cover."""
    cdef const double* u = rows + U * size
    cdef const double* v = rows + V * size
    cdef double* angle = rows + ANGLE * size
    cdef double* ink = rows + INK_COVER * size
    cdef Py_ssize_t col
    if p[TICKS] > 0.0 or p[MARKER] > 0.0 or p[NUMERALS] > 0.0:
        for col in range(first, stop):
            angle[col] = _dial_angle(u[col], v[col])
    if p[TICKS] > 0.0 or p[MARKER] > 0.0:
        _ticks(p, ticks, pixel, first, stop, rows, size)
    else:
        for col in range(first, stop):
            ink[col] = 0.0
    if p[NUMERALS] > 0.0:
        _numerals(p, glyphs, ticks, pixel, first, stop, rows, size)
    if p[LOGO] > 0.0:
        _logo(p, pixel, first, stop, rows, size)


cdef void _hand(const double* p, Py_ssize_t base, Py_ssize_t first, Py_ssize_t stop, double* rows,
                Py_ssize_t size) noexcept nogil:
    cdef double dx = p[base + HAND_DX], dy = p[base + HAND_DY], length = p[base + HAND_LEN]
    cdef double inv_length = 1.0 / length
    cdef double width = p[base + HAND_WIDTH], tail = p[base + HAND_TAIL], shape = p[base + HAND_SHAPE]
    cdef double value = p[base + HAND_VALUE]
    cdef const double* u = rows + U * size
    cdef const double* v = rows + V * size
    cdef const double* inv_foot = rows + INV_FOOT * size
    cdef double* body = rows + BODY * size
    cdef double t, half, along, sd
    cdef Py_ssize_t col
    if shape == 0.0:
        for col in range(first, stop):
            t = u[col] * dx + v[col] * dy
            sd = _max(fabs(u[col] * dy - v[col] * dx) - width, _max(t - length, -tail - t))
            body[col] = body[col] + (value - body[col]) * _cover(sd, inv_foot[col])
    elif shape == 1.0:
        for col in range(first, stop):
            t = u[col] * dx + v[col] * dy
            half = width * (1.0 - 0.6 * _min(_max(t * inv_length, 0.0), 1.0))
            sd = _max(fabs(u[col] * dy - v[col] * dx) - half, _max(t - length, -tail - t))
            body[col] = body[col] + (value - body[col]) * _cover(sd, inv_foot[col])
    else:
        for col in range(first, stop):
            t = u[col] * dx + v[col] * dy
            along = t * inv_length
            half = width * _max(_min(0.35 + _max(along, 0.0), (1.0 - along) * LEAF_TIP), 0.0)
            sd = _max(fabs(u[col] * dy - v[col] * dx) - half, _max(t - length, -tail - t))
            body[col] = body[col] + (value - body[col]) * _cover(sd, inv_foot[col])


cdef void _clock(const double* p, const float[:, :, :, ::1] glyphs, const double[:, ::1] ticks, double y,
                 double pixel, Py_ssize_t first, Py_ssize_t stop, double* rows, Py_ssize_t size) noexcept nogil:
    cdef double outer = 1.0 + p[RIM_WIDTH]
    cdef double rim = p[RIM], face_level = p[FACE], ink_level = p[INK], hand_level = p[HAND], cap = p[CAP]
    cdef double glare = p[GLARE], glare_u = p[GLARE_U], glare_v = p[GLARE_V], glare_inv_r2 = p[GLARE_INV_R2]
    cdef double* u = rows + U * size
    cdef double* v = rows + V * size
    cdef double* r = rows + R * size
    cdef double* inv_foot = rows + INV_FOOT * size
    cdef double* face = rows + FACE_COVER * size
    cdef double* body = rows + BODY * size
    cdef double* ink = rows + INK_COVER * size
    cdef double* value = rows + VALUE * size
    cdef double level, du, dv, q
    cdef Py_ssize_t col
    _face_coordinates(p, y, pixel, first, stop, rows, size)
    _ink(p, glyphs, ticks, pixel, first, stop, rows, size)
    for col in range(first, stop):
        face[col] = _cover(r[col] - 1.0, inv_foot[col])
        level = rim + (face_level - rim) * face[col]
        body[col] = level + (ink_level - level) * ink[col]
    _hand(p, HOUR_HAND, first, stop, rows, size)
    _hand(p, MINUTE_HAND, first, stop, rows, size)
    if p[SECONDS] > 0.0:
        _hand(p, SECOND_HAND, first, stop, rows, size)
    for col in range(first, stop):
        level = body[col] + (hand_level - body[col]) * _cover(r[col] - cap, inv_foot[col])
        if glare > 0.0:
            du = u[col] - glare_u
            dv = v[col] - glare_v
            q = _max(1.0 - (du * du + dv * dv) * glare_inv_r2, 0.0)
            level = level + (1.0 - level) * (glare * q * q * face[col])
        value[col] = value[col] + (level - value[col]) * _cover(r[col] - outer, inv_foot[col])


cdef void _shade(const double* p, double y, double pixel, const double* value, double* out,
                 Py_ssize_t size) noexcept nogil:
    cdef double light0 = p[LIGHT], light_gx = p[LIGHT_GX], light_gy = p[LIGHT_GY], vignette = p[VIGNETTE]
    cdef double contrast = p[CONTRAST], curve = p[CURVE]
    cdef double cy = y - 0.5, cx, light, level
    cdef Py_ssize_t col
    for col in range(size):
        cx = (col + 0.5) * pixel - 0.5
        light = (light0 + light_gx * cx + light_gy * cy) * (1.0 - vignette * (cx * cx + cy * cy))
        level = _min(_max(0.5 + (value[col] * light - 0.5) * contrast, 0.0), 1.0)
        out[col] = level + curve * level * (1.0 - level)


cdef void _blur(const double* p, double* plane, double* padded, Py_ssize_t size) noexcept nogil:
    """plane (size * size) blurred in place, rows then columns, edges repeated; padded holds
    (size + 6) * (size + 6)."""
    cdef Py_ssize_t width = size + 2 * BLUR_RADIUS, row, col, k
    cdef double tap
    cdef double* src
    cdef double* out
    if p[BLUR + BLUR_RADIUS] == 1.0:
        return
    for row in range(size):
        src = padded + row * width
        out = plane + row * size
        for col in range(size):
            src[col + BLUR_RADIUS] = out[col]
        for col in range(BLUR_RADIUS):
            src[col] = out[0]
            src[size + BLUR_RADIUS + col] = out[size - 1]
        for col in range(size):
            out[col] = 0.0
        for k in range(2 * BLUR_RADIUS + 1):
            tap = p[BLUR + k]
            for col in range(size):
                out[col] += tap * src[col + k]
    for row in range(size):
        for col in range(size):
            padded[(row + BLUR_RADIUS) * width + col] = plane[row * size + col]
    for row in range(BLUR_RADIUS):
        for col in range(size):
            padded[row * width + col] = plane[col]
            padded[(size + BLUR_RADIUS + row) * width + col] = plane[(size - 1) * size + col]
    for row in range(size):
        out = plane + row * size
        for col in range(size):
            out[col] = 0.0
        for k in range(2 * BLUR_RADIUS + 1):
            tap = p[BLUR + k]
            src = padded + (row + k) * width
            for col in range(size):
                out[col] += tap * src[col]


cdef void _noise_and_round(const double* p, uint64_t key, const double* plane, uint8_t* image,
                           Py_ssize_t size) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint64_t h
    cdef double noise, level
    for i in range(size * size):
        h = _mix64(key + <uint64_t>(i + 1) * GOLDEN)
        noise = (<double>(h >> 32) + <double>(h & LOW32)) * TWO_POW_M32 - 1.0
        level = floor((plane[i] + p[NOISE] * noise * SQRT6) * 255.0 + 0.5)
        image[i] = <uint8_t>_min(_max(level, 0.0), 255.0)


cdef void _render_one(const double* p, uint64_t key, const float[:, :, :, ::1] glyphs,
                      const double[:, ::1] ticks, uint8_t* image, Py_ssize_t size, double* plane,
                      double* padded, double* rows) noexcept nogil:
    cdef double pixel = 1.0 / size
    cdef double inv_pixel = <double>size
    cdef Py_ssize_t shadow_first = <Py_ssize_t>p[SHADOW_BOX], shadow_stop = <Py_ssize_t>p[SHADOW_BOX + 1]
    cdef Py_ssize_t shadow_top = <Py_ssize_t>p[SHADOW_BOX + 2], shadow_bottom = <Py_ssize_t>p[SHADOW_BOX + 3]
    cdef Py_ssize_t clock_first = <Py_ssize_t>p[CLOCK_BOX], clock_stop = <Py_ssize_t>p[CLOCK_BOX + 1]
    cdef Py_ssize_t clock_top = <Py_ssize_t>p[CLOCK_BOX + 2], clock_bottom = <Py_ssize_t>p[CLOCK_BOX + 3]
    cdef double* value = rows + VALUE * size
    cdef double y
    cdef Py_ssize_t row
    for row in range(size):
        y = (row + 0.5) * pixel
        _background(p, y, pixel, inv_pixel, size, value)
        if p[SHADOW] > 0.0 and shadow_top <= row < shadow_bottom:
            _shadow(p, y, pixel, shadow_first, shadow_stop, value)
        if clock_top <= row < clock_bottom:
            _clock(p, glyphs, ticks, y, pixel, clock_first, clock_stop, rows, size)
        _shade(p, y, pixel, value, plane + row * size, size)
    _blur(p, plane, padded, size)
    _noise_and_round(p, key, plane, image, size)


def render_clocks(const double[:, ::1] params, const uint64_t[::1] keys, const float[:, :, :, ::1] glyphs,
                  const double[:, ::1] ticks, uint8_t[:, :, ::1] out, int n_threads):
    """out (n, size, size) uint8: image i drawn from params[i] (n, N_PARAMS) float64 and keys[i] uint64.

    glyphs (2, 12, GLYPH_N, GLYPH_N) float32: the numerals' distance grids; ticks (60, 2): (sin, cos)
    of each minute's angle.
    """
    cdef Py_ssize_t n = out.shape[0], size = out.shape[1], i
    cdef Py_ssize_t width = size + 2 * BLUR_RADIUS
    cdef double* scratch = NULL
    cdef int failed = 0
    cdef int* failed_ptr = &failed
    if n == 0:
        return
    with nogil, parallel(num_threads=n_threads):
        # One scratch buffer per thread: the image plane, the padded plane, the row arrays.
        scratch = <double*>malloc((size * size + width * width + N_ROWS * size) * sizeof(double))
        if scratch == NULL:
            failed_ptr[0] = 1
        for i in prange(n, schedule="dynamic"):
            if scratch == NULL:
                continue
            _render_one(&params[i, 0], keys[i], glyphs, ticks, &out[i, 0, 0], size, scratch,
                        scratch + size * size, scratch + size * size + width * width)
        free(scratch)
    if failed:
        raise MemoryError("no memory for the clock renderer's scratch buffers")
