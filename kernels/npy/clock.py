"""Analog-clock renderer (numpy reference); mirrors kernels/cpu/clock.py and kernels/cy/clock.pyx.

The same per-pixel arithmetic as the compiled kernels, vectorised over a whole image at a time:
where they branch per pixel or per row, this computes both sides and selects with a mask, so all
three give the same bits (the tests check it). Slow, and the plainest statement of what a pixel
is; the passes are described in kernels/cpu/clock.py, the parameters in clock_layout.py.
"""

import numpy as np

from fastdl.kernels.npy import clock_layout as L
from fastdl.kernels.npy._hash import GOLDEN, mix64 as _mix64

TWO_POW_M32 = 2.0 ** -32
SQRT6 = 2.449489742783178
HALF_PI = 1.5707963267948966
PI = 3.141592653589793
PER_RADIAN_60 = 9.549296585513721
PER_RADIAN_12 = 1.909859317102744
LEAF_TIP = 2.857142857142857
SHADOW_REACH = 0.15


def _cover(sd, inv_footprint):
    return np.minimum(np.maximum(0.5 - sd * inv_footprint, 0.0), 1.0)


def _dial_angle(u, v):
    au, av = np.abs(u), np.abs(v)
    a = np.minimum(au, av) / np.maximum(np.maximum(au, av), 1e-300)
    s = a * a
    r = a * (0.99997726 + s * (-0.33262347 + s * (0.19354346 + s * (-0.11643287 + s * (0.05265332
                                                                                     + s * -0.0117212)))))
    r = np.where(au > av, HALF_PI - r, r)
    r = np.where(v < 0.0, PI - r, r)
    return np.where(u < 0.0, -r, r)


def _nearest(angle, per_radian, n):
    k = np.floor(angle * per_radian + 0.5).astype(np.int64)
    k = np.where(k < 0, k + n, k)
    return np.where(k >= n, k - n, k)


def _in_box(p, base, rows, cols):
    return (cols >= int(p[base])) & (cols < int(p[base + 1])) & (rows >= int(p[base + 2])) & (rows < int(p[base + 3]))


def _background(p, x, y, cols, size, pixel, inv_pixel):
    value = (p[L.BG] + p[L.BG_GY] * (y - 0.5)) + p[L.BG_GX] * (x - 0.5)
    if p[L.STRIPE_AMP] > 0.0:
        t = p[L.STRIPE_KX] * x + p[L.STRIPE_KY] * y
        value = value + p[L.STRIPE_AMP] * (np.abs(t - np.floor(t) - 0.5) * 2.0 - 0.5)
    for j in range(L.N_SHAPES):
        b = L.CLUTTER + j * L.SHAPE_SIZE
        kind = p[b]
        reach = p[b + 3] + p[b + 4] + pixel
        dy = y - p[b + 2]
        if kind == 0.0:
            continue
        first = max(int(np.floor((p[b + 1] - reach) * size)) - 1, 0)
        stop = min(int(np.ceil((p[b + 1] + reach) * size)) + 1, size)
        dx = x - p[b + 1]
        if kind == 1.0:
            sd = np.sqrt(dx * dx + dy * dy) - p[b + 3]
        else:
            sd = np.maximum(np.abs(dx * p[b + 5] + dy * p[b + 6]) - p[b + 3],
                            np.abs(dy * p[b + 5] - dx * p[b + 6]) - p[b + 4])
        inside = ~(np.abs(dy) > reach) & (cols >= first) & (cols < stop)
        value = np.where(inside, value + (p[b + 7] - value) * _cover(sd, inv_pixel), value)
    return value


def _shadow(p, x, y, value):
    outer = 1.0 + p[L.RIM_WIDTH]
    reach2 = (outer + SHADOW_REACH) * (outer + SHADOW_REACH)
    inv_band = 1.0 / (4.0 * SHADOW_REACH * outer)
    xs, ys = x - p[L.SHADOW_DX], y - p[L.SHADOW_DY]
    h = p[L.HINV:L.HINV + 9]
    w = h[6] * xs + h[7] * ys + h[8]
    wx = h[0] * xs + h[1] * ys + h[2]
    wy = h[3] * xs + h[4] * ys + h[5]
    c = np.minimum(np.maximum((reach2 * (w * w) - (wx * wx + wy * wy)) * inv_band, 0.0), 1.0)
    return value * (1.0 - p[L.SHADOW] * c)


def _marker_sd(p, along, across):
    outer, hour_len, hour_w = p[L.TICK_OUTER], p[L.HOUR_TICK_LEN], p[L.HOUR_TICK_W]
    length, half = 1.5 * hour_len, 2.5 * hour_w
    if p[L.MARKER] == 2.0:
        return np.maximum(along - outer, (across * length - half * (along - (outer - length)))
                          / np.sqrt(length * length + half * half))
    return np.maximum(np.maximum(outer - hour_len - along, along - outer),
                      np.abs(across - 1.3 * hour_w) - 0.7 * hour_w)


def _tick_sd(p, ticks, k, u, v):
    along = u * ticks[k, 0] + v * ticks[k, 1]
    across = np.abs(u * ticks[k, 1] - v * ticks[k, 0])
    outer = p[L.TICK_OUTER]
    hour = np.maximum(np.maximum(outer - p[L.HOUR_TICK_LEN] - along, along - outer), across - p[L.HOUR_TICK_W])
    minute = np.maximum(np.maximum(outer - p[L.MIN_TICK_LEN] - along, along - outer), across - p[L.MIN_TICK_W])
    return np.select([(k == 0) & (p[L.MARKER] > 0.0), (k % 5 == 0) & (p[L.TICKS] > 0.0),
                      np.full(k.shape, p[L.TICKS] == 2.0)],
                     [_marker_sd(p, along, across), hour, minute], 1.0)


def _numeral_cover(p, glyphs, ticks, k, u, v, inv_footprint):
    font = int(p[L.FONT])
    inv_height = 1.0 / p[L.NUM_HEIGHT]
    sx, cy = ticks[5 * k, 0], ticks[5 * k, 1]
    du = u - p[L.NUM_RADIUS] * sx
    dv = v - p[L.NUM_RADIUS] * cy
    if font == 0:
        gx, gy = du * inv_height, dv * inv_height
    else:
        gx, gy = (du * cy - dv * sx) * inv_height, (du * sx + dv * cy) * inv_height
    fx = (gx + L.GLYPH_HALF) * L.GLYPH_SCALE
    fy = (gy + L.GLYPH_HALF) * L.GLYPH_SCALE
    on_grid = (fx >= 0.0) & (fy >= 0.0) & (fx < L.GLYPH_N - 1) & (fy < L.GLYPH_N - 1)
    ix = np.where(on_grid, fx, 0.0).astype(np.int64)
    iy = np.where(on_grid, fy, 0.0).astype(np.int64)
    ax, ay = fx - ix, fy - iy
    grid = glyphs[font].astype(np.float64)
    top = grid[k, iy, ix] + (grid[k, iy, ix + 1] - grid[k, iy, ix]) * ax
    bottom = grid[k, iy + 1, ix] + (grid[k, iy + 1, ix + 1] - grid[k, iy + 1, ix]) * ax
    distance = top + (bottom - top) * ay
    cover = _cover((distance - p[L.NUM_STROKE]) * p[L.NUM_HEIGHT], inv_footprint)
    shown = on_grid & ~((p[L.NUMERALS] == 2.0) & (k % 3 != 0))
    return np.where(shown, cover, 0.0)


def _ink(p, glyphs, ticks, pixel, u, v, r, inv_foot):
    margin = 2.0 * np.sqrt(p[L.DET]) * pixel
    tick_in = p[L.TICK_OUTER] - 1.5 * p[L.HOUR_TICK_LEN] - margin
    tick_out = p[L.TICK_OUTER] + margin
    numeral_reach = 0.8 * p[L.NUM_HEIGHT] + margin
    on_ticks = (p[L.TICKS] > 0.0 or p[L.MARKER] > 0.0) & (r > tick_in) & (r < tick_out)
    on_numerals = (p[L.NUMERALS] > 0.0) & (np.abs(r - p[L.NUM_RADIUS]) < numeral_reach)
    angle = _dial_angle(u, v)
    k = _nearest(angle, PER_RADIAN_60, 60)
    sd = _tick_sd(p, ticks, k, u, v)
    # The marker is wider than the 6 degrees of dial its tick owns: near 12, pixels of ticks 59
    # and 1 draw it too (the union of the two shapes).
    near_marker = (p[L.MARKER] > 0.0) & (k != 0) & (v > 0.0) & (np.abs(u) < 2.5 * p[L.HOUR_TICK_W] + margin)
    sd = np.where(near_marker, np.minimum(sd, _tick_sd(p, ticks, np.zeros_like(k), u, v)), sd)
    ink = np.zeros_like(u)
    ink = np.where(on_ticks, np.maximum(ink, _cover(sd, inv_foot)), ink)
    numerals = _numeral_cover(p, glyphs, ticks, _nearest(angle, PER_RADIAN_12, 12), u, v, inv_foot)
    ink = np.where(on_numerals, np.maximum(ink, numerals), ink)
    on_logo = (p[L.LOGO] > 0.0) & (np.abs(u) < 0.1 + margin) & (v > 0.33 - margin) & (v < 0.45 + margin)
    bars = np.minimum(np.maximum(np.abs(u) - 0.09, np.abs(v - 0.42) - 0.018),
                      np.maximum(np.abs(u) - 0.06, np.abs(v - 0.365) - 0.01))
    return np.where(on_logo, np.maximum(ink, _cover(bars, inv_foot)), ink)


def _hand(p, base, u, v, inv_foot, body):
    dx, dy = p[base + L.HAND_DX], p[base + L.HAND_DY]
    length, width, tail = p[base + L.HAND_LEN], p[base + L.HAND_WIDTH], p[base + L.HAND_TAIL]
    inv_length = 1.0 / length
    t = u * dx + v * dy
    if p[base + L.HAND_SHAPE] == 0.0:
        half = width
    elif p[base + L.HAND_SHAPE] == 1.0:
        half = width * (1.0 - 0.6 * np.minimum(np.maximum(t * inv_length, 0.0), 1.0))
    else:
        along = t * inv_length
        half = width * np.maximum(np.minimum(0.35 + np.maximum(along, 0.0), (1.0 - along) * LEAF_TIP), 0.0)
    sd = np.maximum(np.abs(u * dy - v * dx) - half, np.maximum(t - length, -tail - t))
    return body + (p[base + L.HAND_VALUE] - body) * _cover(sd, inv_foot)


def _clock(p, glyphs, ticks, x, y, pixel, value):
    h = p[L.HINV:L.HINV + 9]
    inv_foot0 = 1.0 / (np.sqrt(p[L.DET]) * pixel)
    w = h[6] * x + h[7] * y + h[8]
    inv_w = 1.0 / w
    u = (h[0] * x + h[1] * y + h[2]) * inv_w
    v = (h[3] * x + h[4] * y + h[5]) * inv_w
    aw = np.abs(w)
    inv_foot = aw * np.sqrt(aw) * inv_foot0
    r = np.sqrt(u * u + v * v)
    ink = _ink(p, glyphs, ticks, pixel, u, v, r, inv_foot)
    face = _cover(r - 1.0, inv_foot)
    level = p[L.RIM] + (p[L.FACE] - p[L.RIM]) * face
    body = level + (p[L.INK] - level) * ink
    body = _hand(p, L.HOUR_HAND, u, v, inv_foot, body)
    body = _hand(p, L.MINUTE_HAND, u, v, inv_foot, body)
    if p[L.SECONDS] > 0.0:
        body = _hand(p, L.SECOND_HAND, u, v, inv_foot, body)
    level = body + (p[L.HAND] - body) * _cover(r - p[L.CAP], inv_foot)
    if p[L.GLARE] > 0.0:
        du, dv = u - p[L.GLARE_U], v - p[L.GLARE_V]
        q = np.maximum(1.0 - (du * du + dv * dv) * p[L.GLARE_INV_R2], 0.0)
        level = level + (1.0 - level) * (p[L.GLARE] * q * q * face)
    return value + (level - value) * _cover(r - (1.0 + p[L.RIM_WIDTH]), inv_foot)


def _shade(p, x, y, value):
    cx, cy = x - 0.5, y - 0.5
    light = (p[L.LIGHT] + p[L.LIGHT_GX] * cx + p[L.LIGHT_GY] * cy) * (1.0 - p[L.VIGNETTE] * (cx * cx + cy * cy))
    level = np.minimum(np.maximum(0.5 + (value * light - 0.5) * p[L.CONTRAST], 0.0), 1.0)
    return level + p[L.CURVE] * level * (1.0 - level)


def _blur(p, plane):
    taps = p[L.BLUR:L.BLUR + 2 * L.BLUR_RADIUS + 1]
    if taps[L.BLUR_RADIUS] == 1.0:
        return plane
    size = plane.shape[0]
    for axis in (1, 0):
        padded = np.pad(plane, [(0, 0), (L.BLUR_RADIUS, L.BLUR_RADIUS)][::1 if axis else -1], mode="edge")
        out = np.zeros_like(plane)
        for k, tap in enumerate(taps):
            out = out + tap * (padded[:, k:k + size] if axis else padded[k:k + size, :])
        plane = out
    return plane


def _render_one(p, key, glyphs, ticks, size):
    pixel = 1.0 / size
    rows, cols = np.mgrid[0:size, 0:size]
    x, y = (cols + 0.5) * pixel, (rows + 0.5) * pixel
    with np.errstate(all="ignore"):  # masked-out pixels may divide by zero; none is used
        value = _background(p, x, y, cols, size, pixel, np.float64(size))
        if p[L.SHADOW] > 0.0:
            value = np.where(_in_box(p, L.SHADOW_BOX, rows, cols), _shadow(p, x, y, value), value)
        value = np.where(_in_box(p, L.CLOCK_BOX, rows, cols), _clock(p, glyphs, ticks, x, y, pixel, value), value)
        plane = _blur(p, _shade(p, x, y, value))
        index = np.arange(1, size * size + 1, dtype=np.uint64).reshape(size, size)
        h = _mix64(np.uint64(key) + index * GOLDEN)
    noise = ((h >> np.uint64(32)).astype(np.float64) + (h & np.uint64(0xFFFFFFFF)).astype(np.float64)) \
        * TWO_POW_M32 - 1.0
    level = np.floor((plane + p[L.NOISE] * noise * SQRT6) * 255.0 + 0.5)
    return np.minimum(np.maximum(level, 0.0), 255.0).astype(np.uint8)


def render_clocks(params, keys, glyphs, ticks, out, n_threads):
    """out (n, size, size) uint8: image i drawn from params[i] (n, N_PARAMS) float64 and keys[i] uint64."""
    for i in range(out.shape[0]):
        out[i] = _render_one(params[i], keys[i], glyphs, ticks, out.shape[1])
