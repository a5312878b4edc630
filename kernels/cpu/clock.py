"""Analog-clock renderer (Numba); mirrors kernels/cy/clock.pyx and kernels/npy/clock.py.

Each image is one task. Its rows are drawn in passes over arrays of one row (background, the
background shapes, the clock's shadow, then inside the clock's box: face coordinates, face and
rim, ticks and numerals, hands, cap, glare), each pass a simple loop the compiler vectorises;
then the image is blurred (separable, 7 taps, edges repeated), given sensor noise hashed from
(image key, pixel index) and rounded to uint8. Every pixel sees the same +, -, *, /, sqrt and
floor in the same order in every backend, so Numba, Cython and the numpy reference give the
same bits. Angles round the dial come from a polynomial arctangent (good to 1e-5 radians), used
only to pick the nearest tick or numeral. Parameters: kernels/npy/clock_layout.py.
"""

import math

import numpy as np
from numba import prange

from fastdl.kernels.npy.clock_layout import (BG, BG_GX, BG_GY, BLUR, BLUR_RADIUS, CAP, CLOCK_BOX, CLUTTER,
                                             CONTRAST, CURVE, DET, FACE, FONT, GLARE, GLYPH_HALF, GLYPH_N,
                                             GLYPH_SCALE, GLARE_INV_R2, GLARE_U,
                                             GLARE_V, HAND, HAND_DX, HAND_DY, HAND_LEN, HAND_SHAPE, HAND_TAIL,
                                             HAND_VALUE, HAND_WIDTH, HINV, HOUR_HAND, HOUR_TICK_LEN,
                                             HOUR_TICK_W, INK, LIGHT, LIGHT_GX, LIGHT_GY, LOGO, MARKER,
                                             MIN_TICK_LEN, MIN_TICK_W, MINUTE_HAND, N_SHAPES, NOISE,
                                             NUM_HEIGHT, NUM_RADIUS, NUM_STROKE, NUMERALS, RIM, RIM_WIDTH,
                                             SECOND_HAND, SECONDS, SHADOW, SHADOW_BOX, SHADOW_DX, SHADOW_DY,
                                             SHAPE_SIZE, STRIPE_AMP, STRIPE_KX, STRIPE_KY, TICK_OUTER, TICKS,
                                             VIGNETTE)

from ._hash import GOLDEN, mix64 as _mix64
from ._jit import compile_kernel, helper, launch

# error_model="numpy": a float division by zero gives inf instead of raising, so that loops with
# a division vectorise (no division here can meet a zero).
_helper = helper(error_model="numpy")

LOW32 = np.uint64(0xFFFFFFFF)
SHIFT32 = np.uint64(32)
TWO_POW_M32 = 2.0 ** -32
SQRT6 = 2.449489742783178       # scales a sum of two uniforms minus 1 to unit variance
HALF_PI = 1.5707963267948966
PI = 3.141592653589793
PER_RADIAN_60 = 9.549296585513721   # 60 / (2 pi): minute ticks per radian
PER_RADIAN_12 = 1.909859317102744   # 12 / (2 pi)
LEAF_TIP = 2.857142857142857        # 1 / 0.35: a leaf hand narrows over the last 35% of its length
SHADOW_REACH = 0.15                 # the shadow's soft edge spans the clock's radius +- this
# Row arrays of the scratch buffer.
U, V, R, INV_FOOT, ANGLE, FACE_COVER, BODY, INK_COVER, VALUE = range(9)
N_ROWS = 9


@_helper
def _cover(sd, inv_footprint):
    """How much of a pixel 1 / inv_footprint wide a shape covers at signed distance sd (a linear
    ramp): nothing from sd >= footprint / 2 on."""
    return min(max(0.5 - sd * inv_footprint, 0.0), 1.0)


@_helper
def _dial_angle(u, v):
    """Angle of (u, v) clockwise from 12 o'clock, in (-pi, pi]; 0 at the centre. Selects, not
    branches, so that loops calling it vectorise."""
    au = abs(u)
    av = abs(v)
    a = min(au, av) / max(max(au, av), 1e-300)
    s = a * a
    r = a * (0.99997726 + s * (-0.33262347 + s * (0.19354346 + s * (-0.11643287 + s * (0.05265332
                                                                                     + s * -0.0117212)))))
    r = HALF_PI - r if au > av else r
    r = PI - r if v < 0.0 else r
    return -r if u < 0.0 else r


@_helper
def _nearest(angle, per_radian, n):
    """Index 0..n-1 of the mark nearest `angle` among n marks round the dial."""
    k = int(math.floor(angle * per_radian + 0.5))
    if k < 0:
        k += n
    if k >= n:
        k -= n
    return k


@_helper
def _span(p, base):
    """Columns [first, stop) and rows [top, bottom) of the box at p[base]."""
    return int(p[base]), int(p[base + 1]), int(p[base + 2]), int(p[base + 3])


@_helper
def _background(p, y, pixel, inv_pixel, value):
    """value (size,) = one row of the background: gradient, stripes and shapes."""
    size = value.shape[0]
    base = p[BG] + p[BG_GY] * (y - 0.5)
    gx, amp, kx, ky = p[BG_GX], p[STRIPE_AMP], p[STRIPE_KX], p[STRIPE_KY]
    for col in range(size):
        value[col] = base + gx * ((col + 0.5) * pixel - 0.5)
    if amp > 0.0:
        for col in range(size):
            t = kx * ((col + 0.5) * pixel) + ky * y
            value[col] = value[col] + amp * (abs(t - math.floor(t) - 0.5) * 2.0 - 0.5)
    for j in range(N_SHAPES):
        b = CLUTTER + j * SHAPE_SIZE
        kind = p[b]
        reach = p[b + 3] + p[b + 4] + pixel  # beyond it the shape covers nothing
        dy = y - p[b + 2]
        if kind == 0.0 or abs(dy) > reach:
            continue
        first = max(int(math.floor((p[b + 1] - reach) * size)) - 1, 0)
        stop = min(int(math.ceil((p[b + 1] + reach) * size)) + 1, size)
        cx, a, b_half, c, s, level = p[b + 1], p[b + 3], p[b + 4], p[b + 5], p[b + 6], p[b + 7]
        row = value[first:stop]
        if kind == 1.0:  # a disc
            for col in range(stop - first):
                dx = (first + col + 0.5) * pixel - cx
                sd = math.sqrt(dx * dx + dy * dy) - a
                row[col] = row[col] + (level - row[col]) * _cover(sd, inv_pixel)
        else:  # a box
            for col in range(stop - first):
                dx = (first + col + 0.5) * pixel - cx
                sd = max(abs(dx * c + dy * s) - a, abs(dy * c - dx * s) - b_half)
                row[col] = row[col] + (level - row[col]) * _cover(sd, inv_pixel)


@_helper
def _shadow(p, y, pixel, first, stop, value):
    """value[first:stop] darkened by the clock's soft shadow (a conic: no division per pixel)."""
    outer = 1.0 + p[RIM_WIDTH]
    reach2 = (outer + SHADOW_REACH) * (outer + SHADOW_REACH)
    inv_band = 1.0 / (4.0 * SHADOW_REACH * outer)  # (outer + reach)^2 - (outer - reach)^2
    ys = y - p[SHADOW_DY]
    h0, h1, h2, h3, h4, h5, h6, h7, h8 = (p[HINV], p[HINV + 1], p[HINV + 2], p[HINV + 3], p[HINV + 4],
                                          p[HINV + 5], p[HINV + 6], p[HINV + 7], p[HINV + 8])
    dx0, strength = p[SHADOW_DX], p[SHADOW]
    row = value[first:stop]
    for col in range(stop - first):
        xs = (first + col + 0.5) * pixel - dx0
        w = h6 * xs + h7 * ys + h8
        wx = h0 * xs + h1 * ys + h2
        wy = h3 * xs + h4 * ys + h5
        c = min(max((reach2 * (w * w) - (wx * wx + wy * wy)) * inv_band, 0.0), 1.0)
        row[col] = row[col] * (1.0 - strength * c)


@_helper
def _face_coordinates(p, y, pixel, first, stop, rows):
    """Face point (u, v), its radius and the pixel's footprint in face units, for rows[:, first:stop]."""
    inv_foot0 = 1.0 / (math.sqrt(p[DET]) * pixel)
    # Parameters read once into locals: the loop's stores could otherwise alias them.
    h0, h1, h2, h3, h4, h5, h6, h7, h8 = (p[HINV], p[HINV + 1], p[HINV + 2], p[HINV + 3], p[HINV + 4],
                                          p[HINV + 5], p[HINV + 6], p[HINV + 7], p[HINV + 8])
    # Views from `first`, so the loops count from 0 and Numba needs no negative-index check.
    u_row, v_row, r_row = rows[U, first:stop], rows[V, first:stop], rows[R, first:stop]
    inv_foot_row = rows[INV_FOOT, first:stop]
    for col in range(stop - first):
        x = (first + col + 0.5) * pixel
        w = h6 * x + h7 * y + h8
        inv_w = 1.0 / w
        u = (h0 * x + h1 * y + h2) * inv_w
        v = (h3 * x + h4 * y + h5) * inv_w
        aw = abs(w)
        inv_foot = aw * math.sqrt(aw) * inv_foot0
        u_row[col] = u
        v_row[col] = v
        r_row[col] = math.sqrt(u * u + v * v)
        inv_foot_row[col] = inv_foot


@_helper
def _marker_sd(p, along, across):
    """Signed distance to the 12 o'clock marker (p[MARKER] 2: a triangle pointing inwards, 1: a
    double tick) from the point `along` the 12 o'clock radius, `across` it (>= 0)."""
    outer = p[TICK_OUTER]
    hour_len, hour_w = p[HOUR_TICK_LEN], p[HOUR_TICK_W]
    length, half = 1.5 * hour_len, 2.5 * hour_w
    if p[MARKER] == 2.0:
        return max(along - outer, (across * length - half * (along - (outer - length)))
                   / math.sqrt(length * length + half * half))
    return max(max(outer - hour_len - along, along - outer), abs(across - 1.3 * hour_w) - 0.7 * hour_w)


@_helper
def _ticks(p, ticks, pixel, first, stop, rows):
    """rows[INK_COVER, first:stop] = how much of each pixel the ticks and the 12 o'clock marker
    cover (pixels off their ring: none). Each pixel tests the minute tick nearest its angle, and
    near 12 the marker as well, which is wider than that tick's slice of the dial."""
    u, v, r, angle = rows[U, first:stop], rows[V, first:stop], rows[R, first:stop], rows[ANGLE, first:stop]
    inv_foot, ink = rows[INV_FOOT, first:stop], rows[INK_COVER, first:stop]
    margin = 2.0 * math.sqrt(p[DET]) * pixel  # see _ink
    outer = p[TICK_OUTER]
    hour_len, hour_w, min_len, min_w = p[HOUR_TICK_LEN], p[HOUR_TICK_W], p[MIN_TICK_LEN], p[MIN_TICK_W]
    ring_in = outer - 1.5 * hour_len - margin
    ring_out = outer + margin
    marker_reach = 2.5 * hour_w + margin  # no marker's ink beyond this |u|
    style = p[TICKS]
    marker = p[MARKER]
    sx0 = ticks[0, 0]
    cy0 = ticks[0, 1]
    for col in range(stop - first):
        if not (r[col] > ring_in and r[col] < ring_out):
            ink[col] = 0.0
            continue
        k = _nearest(angle[col], PER_RADIAN_60, 60)
        sx = ticks[k, 0]
        cy = ticks[k, 1]
        along = u[col] * sx + v[col] * cy
        across = abs(u[col] * cy - v[col] * sx)
        hour = max(max(outer - hour_len - along, along - outer), across - hour_w)
        minute = max(max(outer - min_len - along, along - outer), across - min_w)
        sd = minute if style == 2.0 else 1.0
        sd = hour if k % 5 == 0 and style > 0.0 else sd
        if marker > 0.0 and k == 0:  # the marker replaces the hour tick at 12
            sd = _marker_sd(p, along, across)
        elif marker > 0.0 and v[col] > 0.0 and abs(u[col]) < marker_reach:
            # The marker is wider than the 6 degrees of dial its tick owns: near 12, pixels of
            # ticks 59 and 1 draw it too (the union of the two shapes).
            sd = min(sd, _marker_sd(p, u[col] * sx0 + v[col] * cy0, abs(u[col] * cy0 - v[col] * sx0)))
        ink[col] = _cover(sd, inv_foot[col])


@_helper
def _numerals(p, glyphs, ticks, pixel, first, stop, rows):
    """rows[INK_COVER, first:stop] with the numerals' cover added (the larger of the two): each
    pixel on their ring reads the distance grid of the numeral nearest its angle, bilinearly."""
    u, v, r, angle = rows[U, first:stop], rows[V, first:stop], rows[R, first:stop], rows[ANGLE, first:stop]
    inv_foot, ink = rows[INV_FOOT, first:stop], rows[INK_COVER, first:stop]
    margin = 2.0 * math.sqrt(p[DET]) * pixel
    height = p[NUM_HEIGHT]
    inv_height = 1.0 / height
    radius = p[NUM_RADIUS]
    reach = 0.8 * height + margin
    stroke = p[NUM_STROKE]
    quarters = p[NUMERALS] == 2.0
    upright = p[FONT] == 0.0
    last = GLYPH_N - 2
    flat = glyphs[int(p[FONT])].ravel()  # [slot, row y, column x] as one array: one index per read
    for col in range(stop - first):
        if not abs(r[col] - radius) < reach:
            continue
        k = _nearest(angle[col], PER_RADIAN_12, 12)
        sx = ticks[5 * k, 0]
        cy = ticks[5 * k, 1]
        du = u[col] - radius * sx
        dv = v[col] - radius * cy
        # Arabic numerals stand upright, roman ones along the radius.
        gx = du * inv_height if upright else (du * cy - dv * sx) * inv_height
        gy = dv * inv_height if upright else (du * sx + dv * cy) * inv_height
        fx = (gx + GLYPH_HALF) * GLYPH_SCALE
        fy = (gy + GLYPH_HALF) * GLYPH_SCALE
        on_grid = fx >= 0.0 and fy >= 0.0 and fx < GLYPH_N - 1 and fy < GLYPH_N - 1
        ix = min(int(fx), last) if fx >= 0.0 else 0
        iy = min(int(fy), last) if fy >= 0.0 else 0
        ax = fx - ix
        ay = fy - iy
        at = (k * GLYPH_N + iy) * GLYPH_N + ix
        d00 = np.float64(flat[at])
        d10 = np.float64(flat[at + GLYPH_N])
        top = d00 + (np.float64(flat[at + 1]) - d00) * ax
        bottom = d10 + (np.float64(flat[at + GLYPH_N + 1]) - d10) * ax
        distance = top + (bottom - top) * ay
        cover = _cover((distance - stroke) * height, inv_foot[col])
        if on_grid and not (quarters and k % 3 != 0):
            ink[col] = max(ink[col], cover)


@_helper
def _logo(p, pixel, first, stop, rows):
    """rows[INK_COVER, first:stop] with the maker's logo under 12 (two bars) added."""
    u, v = rows[U, first:stop], rows[V, first:stop]
    inv_foot, ink = rows[INV_FOOT, first:stop], rows[INK_COVER, first:stop]
    margin = 2.0 * math.sqrt(p[DET]) * pixel
    for col in range(stop - first):
        au = abs(u[col])
        bars = min(max(au - 0.09, abs(v[col] - 0.42) - 0.018), max(au - 0.06, abs(v[col] - 0.365) - 0.01))
        near = au < 0.1 + margin and v[col] > 0.33 - margin and v[col] < 0.45 + margin
        ink[col] = max(ink[col], _cover(bars, inv_foot[col])) if near else ink[col]


@_helper
def _ink(p, glyphs, ticks, pixel, first, stop, rows):
    """rows[INK_COVER, first:stop]: how much of each pixel the ticks, numerals and logo cover.

    A pixel is tested against a ring's marks when it lies within the ring widened by twice the
    footprint at w = 1, which holds every footprint on the clock (w stays within 0.72-1.28: tilt
    at most 40 degrees, camera at least 3 radii away).
    """
    if p[TICKS] > 0.0 or p[MARKER] > 0.0 or p[NUMERALS] > 0.0:
        u, v, angle = rows[U, first:stop], rows[V, first:stop], rows[ANGLE, first:stop]
        for col in range(stop - first):  # a loop of its own, which vectorises
            angle[col] = _dial_angle(u[col], v[col])
    if p[TICKS] > 0.0 or p[MARKER] > 0.0:
        _ticks(p, ticks, pixel, first, stop, rows)
    else:
        rows[INK_COVER, first:stop] = 0.0
    if p[NUMERALS] > 0.0:
        _numerals(p, glyphs, ticks, pixel, first, stop, rows)
    if p[LOGO] > 0.0:
        _logo(p, pixel, first, stop, rows)


@_helper
def _hand(p, base, first, stop, rows):
    """rows[BODY, first:stop] with the hand at p[base] drawn over it."""
    dx = p[base + HAND_DX]
    dy = p[base + HAND_DY]
    length = p[base + HAND_LEN]
    inv_length = 1.0 / length
    width = p[base + HAND_WIDTH]
    tail = p[base + HAND_TAIL]
    shape = p[base + HAND_SHAPE]
    value = p[base + HAND_VALUE]
    u, v = rows[U, first:stop], rows[V, first:stop]
    body, inv_foot = rows[BODY, first:stop], rows[INV_FOOT, first:stop]
    # One loop per shape, so that each is a straight loop the compiler vectorises.
    if shape == 0.0:  # a bar
        for col in range(stop - first):
            t = u[col] * dx + v[col] * dy
            sd = max(abs(u[col] * dy - v[col] * dx) - width, max(t - length, -tail - t))
            body[col] = body[col] + (value - body[col]) * _cover(sd, inv_foot[col])
    elif shape == 1.0:  # tapered to 40% at the tip
        for col in range(stop - first):
            t = u[col] * dx + v[col] * dy
            half = width * (1.0 - 0.6 * min(max(t * inv_length, 0.0), 1.0))
            sd = max(abs(u[col] * dy - v[col] * dx) - half, max(t - length, -tail - t))
            body[col] = body[col] + (value - body[col]) * _cover(sd, inv_foot[col])
    else:  # a leaf: 35% at the axle, widest at 65% of the length, a point at the tip
        for col in range(stop - first):
            t = u[col] * dx + v[col] * dy
            along = t * inv_length
            half = width * max(min(0.35 + max(along, 0.0), (1.0 - along) * LEAF_TIP), 0.0)
            sd = max(abs(u[col] * dy - v[col] * dx) - half, max(t - length, -tail - t))
            body[col] = body[col] + (value - body[col]) * _cover(sd, inv_foot[col])


@_helper
def _clock(p, glyphs, ticks, y, pixel, first, stop, rows):
    """rows[VALUE, first:stop] with the clock drawn over it."""
    outer = 1.0 + p[RIM_WIDTH]
    rim, face_level, ink_level, hand_level, cap = p[RIM], p[FACE], p[INK], p[HAND], p[CAP]
    glare, glare_u, glare_v, glare_inv_r2 = p[GLARE], p[GLARE_U], p[GLARE_V], p[GLARE_INV_R2]
    u, v, r, inv_foot = rows[U, first:stop], rows[V, first:stop], rows[R, first:stop], rows[INV_FOOT, first:stop]
    face, body = rows[FACE_COVER, first:stop], rows[BODY, first:stop]
    ink, value = rows[INK_COVER, first:stop], rows[VALUE, first:stop]
    _face_coordinates(p, y, pixel, first, stop, rows)
    _ink(p, glyphs, ticks, pixel, first, stop, rows)
    for col in range(stop - first):
        face[col] = _cover(r[col] - 1.0, inv_foot[col])
        level = rim + (face_level - rim) * face[col]
        body[col] = level + (ink_level - level) * ink[col]
    _hand(p, HOUR_HAND, first, stop, rows)
    _hand(p, MINUTE_HAND, first, stop, rows)
    if p[SECONDS] > 0.0:
        _hand(p, SECOND_HAND, first, stop, rows)
    for col in range(stop - first):
        level = body[col] + (hand_level - body[col]) * _cover(r[col] - cap, inv_foot[col])
        if glare > 0.0:
            du = u[col] - glare_u
            dv = v[col] - glare_v
            q = max(1.0 - (du * du + dv * dv) * glare_inv_r2, 0.0)
            level = level + (1.0 - level) * (glare * q * q * face[col])
        value[col] = value[col] + (level - value[col]) * _cover(r[col] - outer, inv_foot[col])


@_helper
def _shade(p, y, pixel, value, out):
    """out (size,) = one row's value under the lighting, contrast and tone curve."""
    light0, light_gx, light_gy, vignette = p[LIGHT], p[LIGHT_GX], p[LIGHT_GY], p[VIGNETTE]
    contrast, curve = p[CONTRAST], p[CURVE]
    cy = y - 0.5
    for col in range(value.shape[0]):
        cx = (col + 0.5) * pixel - 0.5
        light = (light0 + light_gx * cx + light_gy * cy) * (1.0 - vignette * (cx * cx + cy * cy))
        level = min(max(0.5 + (value[col] * light - 0.5) * contrast, 0.0), 1.0)
        out[col] = level + curve * level * (1.0 - level)


@_helper
def _blur(p, plane, padded):
    """plane blurred in place by the 7 taps at p[BLUR], rows then columns, edges repeated; each
    pixel's sum runs over the taps in order. padded: (size + 6, size + 6) scratch."""
    size = plane.shape[0]
    if p[BLUR + BLUR_RADIUS] == 1.0:
        return  # no blur
    for row in range(size):
        src = padded[row]
        for col in range(size):
            src[col + BLUR_RADIUS] = plane[row, col]
        for col in range(BLUR_RADIUS):
            src[col] = plane[row, 0]
            src[size + BLUR_RADIUS + col] = plane[row, size - 1]
        out = plane[row]
        for col in range(size):
            out[col] = 0.0
        for k in range(2 * BLUR_RADIUS + 1):
            tap = p[BLUR + k]
            for col in range(size):
                out[col] += tap * src[col + k]
    for row in range(size):
        padded[row + BLUR_RADIUS, :size] = plane[row]
    for row in range(BLUR_RADIUS):
        padded[row, :size] = plane[0]
        padded[size + BLUR_RADIUS + row, :size] = plane[size - 1]
    for row in range(size):
        out = plane[row]
        for col in range(size):
            out[col] = 0.0
        for k in range(2 * BLUR_RADIUS + 1):
            tap = p[BLUR + k]
            src = padded[row + k]
            for col in range(size):
                out[col] += tap * src[col]


@_helper
def _noise_and_round(p, key, plane, image):
    size = plane.shape[0]
    for row in range(size):
        for col in range(size):
            h = _mix64(key + np.uint64(row * size + col + 1) * GOLDEN)
            noise = (np.float64(h >> SHIFT32) + np.float64(h & LOW32)) * TWO_POW_M32 - 1.0
            level = math.floor((plane[row, col] + p[NOISE] * noise * SQRT6) * 255.0 + 0.5)
            image[row, col] = np.uint8(min(max(level, 0.0), 255.0))


@_helper
def _render_one(p, key, glyphs, ticks, image, plane, padded, rows):
    size = image.shape[0]
    pixel = 1.0 / size
    inv_pixel = np.float64(size)
    shadow_first, shadow_stop, shadow_top, shadow_bottom = _span(p, SHADOW_BOX)
    clock_first, clock_stop, clock_top, clock_bottom = _span(p, CLOCK_BOX)
    value = rows[VALUE]
    for row in range(size):
        y = (row + 0.5) * pixel
        _background(p, y, pixel, inv_pixel, value)
        if p[SHADOW] > 0.0 and shadow_top <= row < shadow_bottom:
            _shadow(p, y, pixel, shadow_first, shadow_stop, value)
        if clock_top <= row < clock_bottom:
            _clock(p, glyphs, ticks, y, pixel, clock_first, clock_stop, rows)
        _shade(p, y, pixel, value, plane[row])
    _blur(p, plane, padded)
    _noise_and_round(p, key, plane, image)


def _render(params, keys, glyphs, ticks, out):
    n, size = out.shape[0], out.shape[1]
    for i in prange(n):
        plane = np.empty((size, size))
        padded = np.empty((size + 2 * BLUR_RADIUS, size + 2 * BLUR_RADIUS))
        rows = np.empty((N_ROWS, size))
        _render_one(params[i], keys[i], glyphs, ticks, out[i], plane, padded, rows)


_render_serial = compile_kernel(_render, exact=True)
_render_parallel = compile_kernel(_render, parallel=True, exact=True)


def render_clocks(params, keys, glyphs, ticks, out, n_threads):
    """out (n, size, size) uint8: image i drawn from params[i] (n, N_PARAMS) float64 and keys[i] uint64.

    glyphs (2, 12, GLYPH_N, GLYPH_N) float32: the numerals' distance grids
    (fastdl.data.clock_design.glyph_distances); ticks (60, 2): (sin, cos) of each minute's angle.
    """
    if out.shape[0] == 0:
        return
    launch(_render_serial, _render_parallel, n_threads, params, keys, glyphs, ticks, out)
