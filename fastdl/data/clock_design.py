"""What a synthetic clock looks like: every image's parameters, drawn from a counter-based stream.

Image i of seed s depends only on (s, i): its uniforms are splitmix64 hashes of (s, i, draw), so
rendering 200 images gives the first 200 of rendering 18,000, on any backend and thread count.
The kernels (kernels/{npy,cpu,cy}/clock*) turn each row of parameters into pixels; the layout
of a row is in kernels/npy/clock_layout.py.

The clocks: the whole clock turned by any angle, tilted away from the camera by up to 40 degrees
about any axis and seen in perspective; light or dark faces, rims of any width and shade, hour
and minute ticks or none, arabic, roman or no numerals (all twelve or the quarters), bar,
tapered or leaf hands of varied lengths and widths, sometimes a second hand, a maker's logo
under 12, a highlight on the glass; on a background of gradients, stripes and shapes, with the
clock's shadow, uneven lighting, a tone curve, blur and sensor noise. The hour hand sits between
the hours (at 3:30 half way from 3 to 4), and every face marks 12 (its numeral, a double tick
or a triangle), as real clocks do: otherwise the whole clock's rotation would hide the time.
With ``faces="one"`` every image shows the same clock, drawn once from the seed's own stream,
in the image's own pose, time and scene.
"""

import numpy as np

from fastdl.data._draws import Draws, image_keys, uniforms
from fastdl.kernels.npy import clock_layout as L
from fastdl.kernels.npy._hash import GOLDEN

N_DRAWS = 96  # uniforms per image; the draws below use fewer, the rest are spare
MAX_TILT = np.radians(40.0)


FACES = ("varied", "one")
# The stream of a seed's one clock (faces="one"), past every image index (those stay below 2 ** 63 + n).
DESIGN_INDEX = 2 ** 64 - 2


def draw_parameters(seed, first, n, max_turn=180.0, faces="varied", times=None):
    """Labels and renderer parameters of images first .. first + n - 1 of `seed`.

    times: None, or checked int64 (n, 2) [hour, minute] that the clocks show instead of their
    own draws (every other draw is the same).

    max_turn: the whole clock is turned in its own plane by up to this many degrees either way
    (180: any angle, the default; 0: 12 at the top). Only the turn changes with it.
    faces: "varied", every image a clock of its own design; "one", every image the same clock
    (the seed's: its face, numerals, ticks and hands), seen in its own pose, at its own time, in
    its own scene, as in a set of photographs of one clock.

    Returns
    -------
    labels : ndarray of shape (n, 2), int64
        [hour 0-11, minute 0-59].
    params : ndarray of shape (n, N_PARAMS), float64
        One row per image, laid out as kernels/npy/clock_layout.py says.
    keys : ndarray of shape (n,), uint64
        The images' stream keys; the kernels hash them with the pixel index for noise.
    """
    keys = image_keys(seed, first, n, GOLDEN)
    u = Draws(uniforms(keys, N_DRAWS))
    # The clock's design comes from `design`: the image's own stream, or the seed's one clock.
    design = u if faces == "varied" else Draws(uniforms(np.repeat(
        image_keys(seed, DESIGN_INDEX, 1, GOLDEN), n), N_DRAWS))
    p = np.zeros((n, L.N_PARAMS))
    hour = np.floor(u(0, 12)).astype(np.int64)
    minute = np.floor(u(0, 60)).astype(np.int64)
    if times is not None:
        hour, minute = times[:, 0], times[:, 1]

    # The clock's size, position and pose.
    p[:, L.RIM_WIDTH] = design(0.03, 0.16)
    outer = 1.0 + p[:, L.RIM_WIDTH]
    scale = u(0.30, 0.46) / outer                        # face radius in image widths
    room = np.maximum(0.48 - outer * scale, 0.0)
    centre_x, centre_y = 0.5 + room * u(-1, 1), 0.5 + room * u(-1, 1)
    turn = u(0, 2 * np.pi)                                # the whole clock, in its own plane
    if max_turn < 180.0:
        turn = np.radians(max_turn) * (turn / np.pi - 1.0)  # the same draw, in [-max_turn, max_turn)
    tilt = MAX_TILT * u() ** 0.75
    axis = u(0, 2 * np.pi)
    depth = u(3.0, 8.0)                                   # camera distance in face radii
    p[:, L.HINV:L.HINV + 9], p[:, L.DET] = _inverse_homography(
        scale, centre_x, centre_y, turn, tilt, axis, depth)

    # The face: light with dark ink, or dark with light ink.
    dark = design.chance(0.22)
    p[:, L.FACE] = np.where(dark, design(0.03, 0.3), design(0.72, 1.0))
    p[:, L.INK] = np.where(dark, design(0.75, 1.0), design(0.0, 0.25))
    p[:, L.HAND] = np.where(dark, design(0.8, 1.0), design(0.0, 0.2))
    p[:, L.RIM] = design()

    # Ticks, numerals and what marks 12.
    p[:, L.TICKS] = np.searchsorted([0.2, 0.5], design(), side="right")  # 0, 1, 2
    p[:, L.TICK_OUTER] = design(0.88, 0.96)
    p[:, L.HOUR_TICK_LEN] = design(0.08, 0.16)
    p[:, L.HOUR_TICK_W] = design(0.012, 0.03)
    p[:, L.MIN_TICK_LEN] = design(0.03, 0.06)
    p[:, L.MIN_TICK_W] = design(0.004, 0.01)
    numerals = np.searchsorted([0.3, 0.8], design(), side="right")  # 0, 1, 2
    roman = design.chance(0.35)
    p[:, L.NUMERALS] = numerals
    p[:, L.FONT] = roman
    p[:, L.NUM_HEIGHT] = np.where(roman, design(0.10, 0.15), design(0.13, 0.20))
    p[:, L.NUM_STROKE] = design(0.06, 0.12)
    marker = np.where(design.chance(0.5), 1.0, 2.0)
    p[:, L.MARKER] = np.where((numerals == 0) | design.chance(0.4), marker, 0.0)
    # The numerals sit inside the hour ticks and the 12 marker (a double tick an hour tick long, a
    # triangle 1.5 times that): a marker on a dial without ticks was drawn through the "12".
    inner_ticks = np.where(p[:, L.TICKS] > 0, p[:, L.HOUR_TICK_LEN], 0.0)
    marker_len = np.select([p[:, L.MARKER] == 1, p[:, L.MARKER] == 2],
                           [p[:, L.HOUR_TICK_LEN], 1.5 * p[:, L.HOUR_TICK_LEN]], 0.0)
    p[:, L.NUM_RADIUS] = p[:, L.TICK_OUTER] - np.maximum(inner_ticks, marker_len) - 0.6 * p[:, L.NUM_HEIGHT] - 0.03
    p[:, L.LOGO] = design.chance(0.35)

    # Hands: the hour hand between the hours, the minute hand on the minute.
    hour_angle = (hour + minute / 60.0) * (np.pi / 6)
    minute_angle = minute * (np.pi / 30)
    second_angle = u(0, 2 * np.pi)
    minute_len = design(0.70, 0.92)
    hour_width = design(0.03, 0.07)
    same_shape = design.chance(0.8)
    shape = np.floor(design(0, 3))
    hands = {
        L.HOUR_HAND: (hour_angle, minute_len * design(0.55, 0.75), hour_width, design(0.0, 0.2),
                      shape, p[:, L.HAND]),
        L.MINUTE_HAND: (minute_angle, minute_len, hour_width * design(0.5, 0.9), design(0.0, 0.2),
                        np.where(same_shape, shape, np.floor(design(0, 3))), p[:, L.HAND]),
        L.SECOND_HAND: (second_angle, design(0.82, 0.95), design(0.006, 0.014),
                        design(0.12, 0.25), np.zeros(n),
                        np.where(design.chance(0.5), design(0.3, 0.7), p[:, L.HAND])),
    }
    for base, (angle, length, width, tail, hand_shape, value) in hands.items():
        p[:, base + L.HAND_DX] = np.sin(angle)
        p[:, base + L.HAND_DY] = np.cos(angle)
        p[:, base + L.HAND_LEN] = length
        p[:, base + L.HAND_WIDTH] = width
        p[:, base + L.HAND_TAIL] = tail
        p[:, base + L.HAND_SHAPE] = hand_shape
        p[:, base + L.HAND_VALUE] = value
    p[:, L.SECONDS] = design.chance(0.35)
    p[:, L.CAP] = design(0.02, 0.06)

    # The scene: background, shadow, glare, lighting, tone, blur and noise.
    p[:, L.BG] = u(0.1, 0.9)
    p[:, L.BG_GX], p[:, L.BG_GY] = u(-0.3, 0.3), u(-0.3, 0.3)
    p[:, L.STRIPE_AMP] = np.where(u.chance(0.4), u(0.0, 0.12), 0.0)
    frequency, direction = u(2.0, 14.0), u(0, 2 * np.pi)
    p[:, L.STRIPE_KX], p[:, L.STRIPE_KY] = frequency * np.cos(direction), frequency * np.sin(direction)
    p[:, L.SHADOW] = np.where(u.chance(0.5), u(0.1, 0.4), 0.0)
    p[:, L.SHADOW_DX], p[:, L.SHADOW_DY] = u(-0.04, 0.04), u(-0.04, 0.04)
    for shape_index in range(L.N_SHAPES):
        base = L.CLUTTER + shape_index * L.SHAPE_SIZE
        kind = np.searchsorted([0.3, 0.6], u(), side="right")             # none, disc, box
        angle = u(0, np.pi)
        p[:, base + L.SHAPE_KIND] = kind
        p[:, base + L.SHAPE_X], p[:, base + L.SHAPE_Y] = u(), u()
        p[:, base + L.SHAPE_A], p[:, base + L.SHAPE_B] = u(0.03, 0.3), u(0.03, 0.3)
        p[:, base + L.SHAPE_COS], p[:, base + L.SHAPE_SIN] = np.cos(angle), np.sin(angle)
        p[:, base + L.SHAPE_VALUE] = u()
    p[:, L.GLARE] = np.where(u.chance(0.4), u(0.05, 0.35), 0.0)
    p[:, L.GLARE_U], p[:, L.GLARE_V] = u(-0.6, 0.6), u(-0.6, 0.6)
    p[:, L.GLARE_INV_R2] = 1.0 / u(0.3, 0.9) ** 2
    p[:, L.LIGHT] = u(0.65, 1.15)
    p[:, L.LIGHT_GX], p[:, L.LIGHT_GY] = u(-0.35, 0.35), u(-0.35, 0.35)
    p[:, L.VIGNETTE] = u(0.0, 0.8)
    p[:, L.CONTRAST] = u(0.7, 1.2)
    p[:, L.CURVE] = u(-0.35, 0.35)
    p[:, L.NOISE] = u(0.0, 0.06)
    p[:, L.BLUR:L.BLUR + 2 * L.BLUR_RADIUS + 1] = blur_taps(u(0.0, 1.3))
    return np.stack([hour, minute], axis=1), p, keys


def _inverse_homography(scale, centre_x, centre_y, turn, tilt, axis, depth):
    """Rows of the 3x3 map from image (X, Y, 1) to homogeneous face coordinates, and |det|.

    The face (u, v, 0) is turned by `turn` in its plane, then tilted by `tilt` about the
    in-plane axis at angle `axis`, and seen by a pinhole camera `depth` face radii away whose
    focal length keeps an untilted face at `scale` image widths per face radius.
    """
    n = scale.shape[0]
    cos_t, sin_t = np.cos(turn), np.sin(turn)
    in_plane = np.zeros((n, 3, 3))
    in_plane[:, 0, 0], in_plane[:, 0, 1] = cos_t, -sin_t
    in_plane[:, 1, 0], in_plane[:, 1, 1] = sin_t, cos_t
    in_plane[:, 2, 2] = 1.0
    ax, ay = np.cos(axis), np.sin(axis)
    cos_a, sin_a = np.cos(tilt), np.sin(tilt)
    # Rodrigues' rotation about (ax, ay, 0).
    tilt_matrix = np.empty((n, 3, 3))
    tilt_matrix[:, 0] = np.stack([cos_a + (1 - cos_a) * ax * ax, (1 - cos_a) * ax * ay, sin_a * ay], 1)
    tilt_matrix[:, 1] = np.stack([(1 - cos_a) * ax * ay, cos_a + (1 - cos_a) * ay * ay, -sin_a * ax], 1)
    tilt_matrix[:, 2] = np.stack([-sin_a * ay, sin_a * ax, cos_a], 1)
    pose = tilt_matrix @ in_plane
    m1, m2 = pose[:, :, 0], pose[:, :, 1]
    k = 1.0 / depth                                       # w = 1 + k * z for z in face radii
    forward = np.empty((n, 3, 3))
    forward[:, 0] = np.stack([scale * m1[:, 0] + centre_x * k * m1[:, 2],
                              scale * m2[:, 0] + centre_x * k * m2[:, 2], centre_x], 1)
    # Image Y grows downwards, face v upwards.
    forward[:, 1] = np.stack([-scale * m1[:, 1] + centre_y * k * m1[:, 2],
                              -scale * m2[:, 1] + centre_y * k * m2[:, 2], centre_y], 1)
    forward[:, 2] = np.stack([k * m1[:, 2], k * m2[:, 2], np.ones(n)], 1)
    inverse = np.linalg.inv(forward)
    return inverse.reshape(n, 9), np.abs(np.linalg.det(inverse))


def pixel_boxes(params, size):
    """Fill in, for images of size x size pixels, the boxes of pixels that may show each clock
    and its shadow (CLOCK_BOX, SHADOW_BOX of params (n, N_PARAMS), in place).

    A polygon of 32 sides drawn round the disc that holds the clock (face, rim and a margin of
    0.15 face radii, wider than the anti-aliasing ramp) maps to a convex polygon holding the
    clock's image, so the box of its corners holds every pixel the clock touches.
    """
    n = params.shape[0]
    if n == 0:
        return
    corners = np.arange(32) * (2 * np.pi / 32)
    radius = ((1.0 + params[:, L.RIM_WIDTH] + 0.15) / np.cos(np.pi / 32))[:, None]
    u, v = radius * np.sin(corners), radius * np.cos(corners)          # (n, 32)
    f = np.linalg.inv(params[:, L.HINV:L.HINV + 9].reshape(n, 3, 3))[:, :, :, None]
    w = f[:, 2, 0] * u + f[:, 2, 1] * v + f[:, 2, 2]
    x = (f[:, 0, 0] * u + f[:, 0, 1] * v + f[:, 0, 2]) / w * size - 0.5
    y = (f[:, 1, 0] * u + f[:, 1, 1] * v + f[:, 1, 2]) / w * size - 0.5
    for base, dx, dy in ((L.CLOCK_BOX, 0.0, 0.0),
                         (L.SHADOW_BOX, params[:, L.SHADOW_DX], params[:, L.SHADOW_DY])):
        left = np.floor(x.min(axis=1) + dx * size) - 1
        right = np.ceil(x.max(axis=1) + dx * size) + 2
        top = np.floor(y.min(axis=1) + dy * size) - 1
        bottom = np.ceil(y.max(axis=1) + dy * size) + 2
        params[:, base:base + 4] = np.clip(np.stack([left, right, top, bottom], axis=1), 0, size)


def blur_taps(sigma):
    """(n, 7) normalised Gaussian taps for blur widths `sigma` in pixels (0: no blur)."""
    offsets = np.arange(-L.BLUR_RADIUS, L.BLUR_RADIUS + 1, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        taps = np.exp(-0.5 * (offsets / np.maximum(sigma, 1e-12)) ** 2)
    taps = np.where(sigma > 0.05, taps, (offsets == 0).astype(np.float64))
    return taps / taps.sum(axis=1, keepdims=True)


# The numerals' glyphs ----------------------------------------------------------------------------
# Each digit or roman letter is a polyline (or several) on a box 1 high, y upwards.

_DIGITS = {
    "0": [[(0.1, 0), (0.4, 0), (0.5, 0.15), (0.5, 0.85), (0.4, 1), (0.1, 1), (0, 0.85), (0, 0.15),
           (0.1, 0)]],
    "1": [[(0.05, 0.78), (0.28, 1), (0.28, 0)]],
    "2": [[(0, 0.8), (0.12, 1), (0.38, 1), (0.5, 0.82), (0.5, 0.65), (0, 0), (0.5, 0)]],
    "3": [[(0, 1), (0.5, 1), (0.2, 0.58), (0.4, 0.55), (0.5, 0.4), (0.5, 0.13), (0.38, 0), (0.1, 0),
           (0, 0.1)]],
    "4": [[(0.36, 0), (0.36, 1), (0, 0.3), (0.5, 0.3)]],
    "5": [[(0.5, 1), (0.05, 1), (0, 0.55), (0.35, 0.6), (0.5, 0.45), (0.5, 0.13), (0.38, 0), (0.1, 0),
           (0, 0.1)]],
    "6": [[(0.45, 1), (0.15, 0.85), (0, 0.5), (0, 0.13), (0.12, 0), (0.38, 0), (0.5, 0.13), (0.5, 0.42),
           (0.38, 0.55), (0.12, 0.55), (0, 0.42)]],
    "7": [[(0, 1), (0.5, 1), (0.15, 0)]],
    "8": [[(0.25, 0.55), (0.05, 0.65), (0.05, 0.9), (0.15, 1), (0.35, 1), (0.45, 0.9), (0.45, 0.65),
           (0.25, 0.55), (0, 0.42), (0, 0.12), (0.12, 0), (0.38, 0), (0.5, 0.12), (0.5, 0.42),
           (0.25, 0.55)]],
    "9": [[(0.05, 0), (0.35, 0.15), (0.5, 0.5), (0.5, 0.87), (0.38, 1), (0.12, 1), (0, 0.87), (0, 0.58),
           (0.12, 0.45), (0.38, 0.45), (0.5, 0.58)]],
}
_DIGIT_WIDTH = {"1": 0.3}
_ROMAN = {"I": ([[(0, 0), (0, 1)]], 0.0), "V": ([[(0, 1), (0.22, 0), (0.44, 1)]], 0.44),
          "X": ([[(0, 0), (0.44, 1)], [(0, 1), (0.44, 0)]], 0.44)}
_ROMAN_NUMERALS = ("XII", "I", "II", "III", "IIII", "V", "VI", "VII", "VIII", "IX", "X", "XI")
GAP = 0.18  # between the characters of a numeral, in glyph heights


def _layout(characters):
    """A numeral's strokes [(x0, y0, x1, y1)], centred on (0, 0), and its half width."""
    strokes, x = [], 0.0
    for polylines, width in characters:
        for line in polylines:
            strokes += [(x + a[0], a[1], x + b[0], b[1]) for a, b in zip(line[:-1], line[1:])]
        x += width + GAP
    half_width = (x - GAP) / 2
    return [(x0 - half_width, y0 - 0.5, x1 - half_width, y1 - 0.5)
            for x0, y0, x1, y1 in strokes], half_width


def glyph_strokes():
    """Each font's twelve numerals as strokes: {(font, slot): [(x0, y0, x1, y1)]}, and their
    half widths {(font, slot): float}, in glyph heights, centred on (0, 0); slot 0 is 12."""
    strokes, half_widths = {}, {}
    for slot in range(12):
        arabic = str(12 if slot == 0 else slot)
        fonts = ([(_DIGITS[c], _DIGIT_WIDTH.get(c, 0.5)) for c in arabic],
                 [_ROMAN[c] for c in _ROMAN_NUMERALS[slot]])
        for font, characters in enumerate(fonts):
            strokes[font, slot], half_widths[font, slot] = _layout(characters)
    return strokes, half_widths


def glyph_distances():
    """(2, 12, GLYPH_N, GLYPH_N) float32: distance from each grid point [row y, column x] to the
    nearest stroke of numeral [font, slot], in glyph heights (layout: clock_layout.GLYPH_*)."""
    grid = np.arange(L.GLYPH_N) / L.GLYPH_SCALE - L.GLYPH_HALF
    gx, gy = np.meshgrid(grid, grid)
    table = np.empty((2, 12, L.GLYPH_N, L.GLYPH_N), dtype=np.float32)
    for (font, slot), lines in glyph_strokes()[0].items():
        best = np.full(gx.shape, np.inf)
        for x0, y0, x1, y1 in lines:
            dx, dy = x1 - x0, y1 - y0
            t = np.clip(((gx - x0) * dx + (gy - y0) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
            best = np.minimum(best, np.hypot(gx - x0 - t * dx, gy - y0 - t * dy))
        table[font, slot] = best
    return table


def tick_directions():
    """(60, 2) float64: (sin, cos) of each minute's angle clockwise from 12."""
    angles = np.arange(60) * (np.pi / 30)
    return np.stack([np.sin(angles), np.cos(angles)], axis=1)
