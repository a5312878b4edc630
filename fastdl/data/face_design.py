"""What a synthetic cartoon face looks like: every image's parameters, from a counter-based stream.

Image i of seed s depends only on (s, i): its uniforms are splitmix64 hashes of (s, i, draw) (the
clocks' generator, fastdl.data._draws.uniforms, on a stream of the faces' own), so
rendering 200 faces gives the first 200 of rendering 10,000, on any backend and thread count.
The kernels (kernels/{npy,cpu,cy}/faces*) turn each row of parameters into pixels; the layout of
a row is in kernels/npy/face_layout.py.

The faces: a head (an ellipse, its chin narrowed or widened) with ears, neck and shoulders; skin
of natural tones or Simpsons yellow (30%); eyes with a white sclera and a dark pupil looking
anywhere, sometimes big and round as in the Simpsons, sometimes half closed by a lid; brows of
any tilt (angry to worried); a nose; a mouth from smile to frown, closed (a line) or open (teeth
sometimes); hair bald, short, spiky, long, in a bun or an afro, of natural or odd colours; now
and then blushing cheeks, glasses or a moustache; on a background of any colour with a vertical
gradient; the whole head moved, scaled and tilted a little. Every shape has a dark outline and
anti-aliased edges (coverage from a signed distance).

:data:`FACTOR_NAMES` names the columns of the factors :func:`draw_parameters` returns: the
generative factors a small network can read off the image (sizes in face units, colours in
[0, 1]); :data:`FACTOR_RANGES` their bounds.
"""

import numpy as np

from fastdl.data._draws import Draws, image_keys, uniforms
from fastdl.kernels.npy import face_layout as L

N_DRAWS = 128           # uniforms per image; the draws below use fewer, the rest are spare
STREAM = np.uint64(0x66616365735F7631)   # "faces_v1": keeps the faces' stream apart from the clocks'
HAIR_STYLES = ("bald", "short", "spiky", "long", "bun", "afro")
HAIR_STYLE_WEIGHTS = (0.10, 0.28, 0.15, 0.25, 0.10, 0.12)
# Hair colours: black, dark brown, brown, blonde, red, grey, blue (and Bart's: the skin's).
HAIR_COLOURS = np.array([[0.09, 0.07, 0.06], [0.28, 0.17, 0.10], [0.50, 0.31, 0.15],
                         [0.93, 0.80, 0.45], [0.75, 0.30, 0.12], [0.72, 0.72, 0.74],
                         [0.22, 0.32, 0.85]])
HAIR_COLOUR_WEIGHTS = (0.24, 0.20, 0.15, 0.16, 0.10, 0.08, 0.07)
# Natural skin: light, medium and dark tones, blended.
SKIN_TONES = np.array([[0.99, 0.87, 0.76], [0.86, 0.64, 0.47], [0.42, 0.27, 0.18]])

FACTOR_RANGES = {
    "center_x": (0.44, 0.56), "center_y": (0.54, 0.62), "scale": (0.26, 0.33),
    "roll": (-12.0, 12.0),                                # degrees, clockwise
    "face_width": (0.78, 0.98), "face_height": (0.98, 1.22), "jaw": (-0.15, 0.35),
    "skin_r": (0.0, 1.0), "skin_g": (0.0, 1.0), "skin_b": (0.0, 1.0), "is_yellow_skin": (0.0, 1.0),
    "hair_style": (0.0, 5.0),                             # an index into HAIR_STYLES
    "hair_r": (0.0, 1.0), "hair_g": (0.0, 1.0), "hair_b": (0.0, 1.0),
    "hairline": (-0.75, -0.4),            # the hair's lower edge at the middle, in head half heights
    "ear_size": (0.13, 0.25),
    "eye_size": (0.11, 0.28), "eye_aspect": (0.7, 1.2), "big_eyes": (0.0, 1.0),
    "eye_spacing": (0.19, 0.42), "eye_height": (-0.2, 0.0), "eye_open": (0.45, 1.0),
    "gaze_x": (-1.0, 1.0), "gaze_y": (-1.0, 1.0),
    "brow_tilt": (-20.0, 20.0),                           # degrees, > 0: inner ends down (angry)
    "brow_raise": (0.06, 0.2),
    "nose_size": (0.06, 0.13), "nose_length": (0.054, 0.26),
    "mouth_width": (0.2, 0.38), "mouth_curve": (-0.12, 0.16), "mouth_open": (0.0, 0.2),
    "teeth": (0.0, 1.0), "blush": (0.0, 0.5), "glasses": (0.0, 1.0), "mustache": (0.0, 1.0),
    "shirt_r": (0.0, 1.0), "shirt_g": (0.0, 1.0), "shirt_b": (0.0, 1.0),
    "background_r": (0.0, 1.0), "background_g": (0.0, 1.0), "background_b": (0.0, 1.0),
    "background_gradient": (-0.35, 0.35),
}
FACTOR_NAMES = tuple(FACTOR_RANGES)
N_FACTORS = len(FACTOR_NAMES)
NO_CUT = 1e3            # a cut below every pixel: hair behind the head that is not cut


def _ellipse(params, base, u, v, a, b):
    params[:, base + L.E_U], params[:, base + L.E_V] = u, v
    params[:, base + L.E_A], params[:, base + L.E_B] = a, b
    params[:, base + L.E_IA], params[:, base + L.E_IB] = 1.0 / a, 1.0 / b
    params[:, base + L.E_IA2], params[:, base + L.E_IB2] = 1.0 / (a * a), 1.0 / (b * b)
    params[:, base + L.E_MIN] = np.minimum(a, b)


def _box(params, feature, u0, u1, v0, v1, present=True):
    """A feature's box in face units (empty where it is not present)."""
    box = np.stack(np.broadcast_arrays(u0, u1, v0, v1), axis=1).astype(np.float64)
    box[~np.broadcast_to(present, box.shape[:1])] = 0.0
    params[:, L.FACE_BOX + 4 * feature:L.FACE_BOX + 4 * feature + 4] = box


def draw_parameters(seed, first, n):
    """Factors and renderer parameters of faces first .. first + n - 1 of `seed`.

    Returns
    -------
    factors : ndarray of shape (n, N_FACTORS), float64
        The columns FACTOR_NAMES names.
    params : ndarray of shape (n, N_PARAMS), float64
        One row per image, laid out as kernels/npy/face_layout.py says (pixel boxes unset:
        :func:`pixel_boxes` fills them in for an image size).
    """
    d = Draws(uniforms(image_keys(seed, first, n, STREAM), N_DRAWS))
    p = np.zeros((n, L.N_PARAMS))
    f = {}

    # Pose.
    f["center_x"], f["center_y"] = d(0.44, 0.56), d(0.54, 0.62)
    f["scale"] = d(0.26, 0.33)
    f["roll"] = d(-12.0, 12.0)
    roll = np.radians(f["roll"])
    p[:, L.CX], p[:, L.CY], p[:, L.SCALE] = f["center_x"], f["center_y"], f["scale"]
    p[:, L.RC], p[:, L.RS] = np.cos(roll) / f["scale"], np.sin(roll) / f["scale"]

    # Skin: natural tones, or Simpsons yellow.
    yellow = d.chance(0.3)
    tone = d() * 2.0
    low = np.minimum(tone, 1.0)[:, None]
    natural = np.where(tone[:, None] < 1.0,
                       SKIN_TONES[0] + (SKIN_TONES[1] - SKIN_TONES[0]) * low,
                       SKIN_TONES[1] + (SKIN_TONES[2] - SKIN_TONES[1]) * (tone[:, None] - 1.0))
    natural = np.clip(natural + d.colour(-0.03, 0.03), 0.0, 1.0)
    simpsons = np.stack([d(0.96, 1.0), d(0.78, 0.88), d(0.04, 0.22)], axis=1)
    skin = np.where(yellow[:, None], simpsons, natural)
    p[:, L.SKIN:L.SKIN + 3] = skin
    p[:, L.SKIN_DARK:L.SKIN_DARK + 3] = skin * 0.86
    p[:, L.SHADE] = d(0.0, 0.22)
    p[:, L.OUTLINE:L.OUTLINE + 3] = np.where(yellow[:, None], 0.08, skin * d(0.12, 0.35)[:, None])
    w = d(0.028, 0.045)
    p[:, L.OUTLINE_W] = w

    # Head, ears, neck, shoulders.
    a, b = d(0.78, 0.98), d(0.98, 1.18) + 0.04 * yellow   # Simpsons heads: a little taller
    jaw = d(-0.15, 0.35)
    f["face_width"], f["face_height"], f["jaw"] = a, b, jaw
    _ellipse(p, L.HEAD, 0.0, 0.0, a, b)
    p[:, L.JAW] = jaw / b
    reach = 1.03 * a + 1.2 * w        # a wider chin bulges by up to 1.2%, its outline by 18%
    _box(p, L.F_HEAD, -reach, reach, -b - w, b + w)
    ear_v, ear_r = b * d(0.0, 0.15), d(0.13, 0.25)
    ear_u = a * np.sqrt(1.0 - (ear_v / b) ** 2) / (1.0 + jaw * ear_v / b) - 0.25 * ear_r  # on the edge
    p[:, L.EAR_U], p[:, L.EAR_V], p[:, L.EAR_R] = ear_u, ear_v, ear_r
    f["ear_size"] = ear_r
    _box(p, L.F_EAR_LEFT, -ear_u - ear_r - w, -ear_u + ear_r + w, ear_v - ear_r - w, ear_v + ear_r + w)
    _box(p, L.F_EAR_RIGHT, ear_u - ear_r - w, ear_u + ear_r + w, ear_v - ear_r - w, ear_v + ear_r + w)
    neck_w = a * d(0.3, 0.42) / (1.0 + np.maximum(jaw, 0.0))
    p[:, L.NECK_W], p[:, L.NECK_TOP] = neck_w, 0.5 * b
    shirt_v, shirt_a, shirt_b = b + d(0.85, 1.05), a * d(1.4, 1.9), d(0.65, 0.85)
    _ellipse(p, L.SHIRT_E, 0.0, shirt_v, shirt_a, shirt_b)
    _box(p, L.F_NECK, -neck_w - w, neck_w + w, 0.5 * b - w, shirt_v)
    _box(p, L.F_SHIRT, -shirt_a - w, shirt_a + w, shirt_v - shirt_b - w, shirt_v + shirt_b + w)
    shirt = d.colour(0.08, 0.92)
    p[:, L.SHIRT:L.SHIRT + 3] = shirt

    # Hair.
    style = d.choice(HAIR_STYLE_WEIGHTS)
    hair = np.clip(HAIR_COLOURS[d.choice(HAIR_COLOUR_WEIGHTS)] + d.colour(-0.05, 0.05), 0.0, 1.0)
    hair = np.where((yellow & (style == 2) & d.chance(0.5))[:, None], skin, hair)  # Bart
    p[:, L.HAIR:L.HAIR + 3] = hair
    hairline = d(-0.75, -0.4)
    p[:, L.HAIRLINE] = hairline * b
    p[:, L.HAIRLINE_SLOPE] = d(-0.15, 0.15)
    p[:, L.HAIRLINE_CURVE] = d(0.3, 1.0)
    p[:, L.FRINGE] = np.where(d.chance(0.5), d(0.04, 0.12), 0.0)
    p[:, L.FRINGE_FREQ] = np.floor(d(4.0, 10.0)) / (2.0 * a)
    p[:, L.HAIR_THICK] = np.where(style == 2, d(0.02, 0.05), d(0.05, 0.14))
    p[:, L.HAIR_FRONT] = np.where(style == 0, 0.0, np.where(style == 2, 2.0, 1.0))
    p[:, L.HAIR_OUTLINE_W] = np.where((style == 3) | (style == 5), 0.0, w)  # no seam on long hair
    spike_h, spike_half_w = d(0.25, 0.45), a * d(0.6, 0.8)
    n_spikes = np.floor(d(4.0, 8.0))
    p[:, L.SPIKE_BASE], p[:, L.SPIKE_H] = -0.82 * b, spike_h
    p[:, L.SPIKE_FREQ] = n_spikes / (2.0 * spike_half_w)
    p[:, L.SPIKE_PHASE] = np.where(n_spikes % 2 == 0, 0.0, 0.5)   # symmetric about u = 0
    p[:, L.SPIKE_HALF_W] = spike_half_w
    p[:, L.SPIKE_EU] = 0.5 / p[:, L.SPIKE_FREQ]
    p[:, L.SPIKE_INV_E2] = 1.0 / (p[:, L.SPIKE_EU] ** 2 + spike_h ** 2)
    grow = p[:, L.HAIR_THICK] + w
    top = np.where(style == 2, np.minimum(-0.82 * b - spike_h - w, -b - grow), -b - grow)
    reach = 1.03 * a + 1.2 * grow                         # as the head's, grown
    lowest = hairline * b + 0.15 * reach + p[:, L.HAIRLINE_CURVE] * reach ** 2 + p[:, L.FRINGE]
    _box(p, L.F_HAIR_FRONT, -reach, reach, top, np.minimum(lowest, b) + grow, style != 0)
    # Behind the head: long hair (cut above the shoulders), an afro, a bun.
    long_a, long_b, long_cut = a * d(1.12, 1.3), b * d(1.02, 1.15), b * d(0.3, 0.9)
    afro_a, afro_b = a * d(1.3, 1.5), b * d(1.05, 1.2)
    bun_r = d(0.28, 0.4)
    back_v = np.select([style == 3, style == 4, style == 5], [-0.1 * b, -b - 0.6 * bun_r, -0.25 * b], 0.0)
    back_a = np.select([style == 3, style == 4, style == 5], [long_a, bun_r, afro_a], 1.0)
    back_b = np.select([style == 3, style == 4, style == 5], [long_b, bun_r, afro_b], 1.0)
    p[:, L.HAIR_BACK_CUT] = np.where(style == 3, long_cut, NO_CUT)
    _ellipse(p, L.HAIR_BACK, 0.0, back_v, back_a, back_b)
    _box(p, L.F_HAIR_BACK, -back_a - w, back_a + w, back_v - back_b - w,
         np.minimum(back_v + back_b, p[:, L.HAIR_BACK_CUT]) + w, style >= 3)
    f["hair_style"] = style.astype(np.float64)
    f["hair_r"], f["hair_g"], f["hair_b"] = hair.T
    f["hairline"] = hairline                              # meaningless for bald heads

    # Eyes: normal, or big and round.
    big = d.chance(np.where(yellow, 0.6, 0.08))
    big_r = d(0.2, 0.28)
    rx = np.where(big, big_r, d(0.11, 0.18))
    aspect = np.where(big, 1.0, d(0.7, 1.2))
    ry = rx * aspect
    pupil_r = np.where(big, d(0.05, 0.08), np.minimum(rx, ry) * d(0.45, 0.7))
    eye_u = np.where(big, rx * d(0.95, 1.12), d(0.28, 0.42))
    eye_v = d(-0.2, 0.0)
    _ellipse(p, L.EYE, eye_u, eye_v, rx, ry)
    p[:, L.SCLERA:L.SCLERA + 3] = d(0.94, 1.0)[:, None]
    p[:, L.PUPIL:L.PUPIL + 3] = np.stack([d(0.03, 0.2)] * 3, axis=1) * np.array([1.0, 0.85, 0.75])
    gaze_x, gaze_y = d(-1.0, 1.0), d(-1.0, 1.0)
    p[:, L.PUPIL_R] = pupil_r
    p[:, L.PUPIL_DU] = gaze_x * np.maximum(rx - pupil_r - 0.3 * w, 0.0)
    p[:, L.PUPIL_DV] = gaze_y * np.maximum(ry - pupil_r - 0.3 * w, 0.0)
    eye_open = np.where(d.chance(0.3), d(0.45, 0.85), 1.0)
    p[:, L.LID_V] = np.where(eye_open < 1.0, eye_v - ry + 2.0 * ry * (1.0 - eye_open), -NO_CUT)
    for feature, sign in ((L.F_EYE_LEFT, -1.0), (L.F_EYE_RIGHT, 1.0)):
        _box(p, feature, sign * eye_u - rx - w, sign * eye_u + rx + w, eye_v - ry - w, eye_v + ry + w)
    f["eye_size"], f["eye_aspect"], f["big_eyes"] = rx, aspect, big.astype(np.float64)
    f["eye_spacing"], f["eye_height"], f["eye_open"] = eye_u, eye_v, eye_open
    f["gaze_x"], f["gaze_y"] = gaze_x, gaze_y

    # Brows.
    tilt, lift = d(-20.0, 20.0), d(0.06, 0.2)
    brow_l, brow_t = rx * d(0.8, 1.2), d(0.022, 0.045)
    brow_u, brow_v = eye_u + d(-0.03, 0.03), eye_v - ry - lift
    p[:, L.BROW_U], p[:, L.BROW_V] = brow_u, brow_v
    p[:, L.BROW_DX], p[:, L.BROW_DY] = np.cos(np.radians(tilt)), -np.sin(np.radians(tilt))
    p[:, L.BROW_L], p[:, L.BROW_T] = brow_l, brow_t
    p[:, L.BROW:L.BROW + 3] = np.where(style[:, None] == 0, p[:, L.OUTLINE:L.OUTLINE + 3], hair * 0.75)
    reach = brow_l + brow_t
    for feature, sign in ((L.F_BROW_LEFT, -1.0), (L.F_BROW_RIGHT, 1.0)):
        _box(p, feature, sign * brow_u - reach, sign * brow_u + reach, brow_v - reach, brow_v + reach)
    f["brow_tilt"], f["brow_raise"] = tilt, lift

    # Nose, cheeks, moustache, mouth, glasses.
    nose_v, nose_a = d(0.1, 0.25), d(0.06, 0.13)
    nose_b = np.where(big, nose_a * d(1.3, 2.0), nose_a * d(0.9, 1.4))
    nose_v = np.where(big, np.maximum(nose_v, eye_v + 0.1), nose_v)
    _ellipse(p, L.NOSE, 0.0, nose_v, nose_a, nose_b)
    p[:, L.NOSE_FILL:L.NOSE_FILL + 3] = skin * d(0.82, 0.95)[:, None]
    _box(p, L.F_NOSE, -nose_a - w, nose_a + w, nose_v - nose_b - w, nose_v + nose_b + w)
    f["nose_size"], f["nose_length"] = nose_a, nose_b

    mouth_v, mouth_w, curve = d(0.42, 0.58), d(0.2, 0.38), d(-0.12, 0.16)
    mouth_v = np.maximum(mouth_v, nose_v + nose_b + 0.08 - np.minimum(curve, 0.0))
    opened = d.chance(0.45)
    mouth_open = np.where(opened, d(0.06, 0.2), 0.0)
    teeth = opened & d.chance(0.5)
    line = d(0.02, 0.032)
    p[:, L.MOUTH_V], p[:, L.MOUTH_W], p[:, L.MOUTH_INV_W] = mouth_v, mouth_w, 1.0 / mouth_w
    p[:, L.MOUTH_CURVE], p[:, L.MOUTH_OPEN], p[:, L.MOUTH_T] = curve, mouth_open, line
    p[:, L.TEETH] = np.where(teeth, mouth_open * d(0.3, 0.5), 0.0)
    p[:, L.MOUTH_FILL:L.MOUTH_FILL + 3] = np.array([0.36, 0.06, 0.09])
    p[:, L.TEETH_FILL:L.TEETH_FILL + 3] = np.array([0.97, 0.97, 0.93])
    reach = line * np.sqrt(1.0 + (2.0 * curve / mouth_w) ** 2)  # the lips' line where it is steepest
    _box(p, L.F_MOUTH, -mouth_w - line, mouth_w + line, mouth_v + np.minimum(curve, 0.0) - reach,
         mouth_v + np.maximum(curve, 0.0) + mouth_open + reach)
    f["mouth_width"], f["mouth_curve"], f["mouth_open"] = mouth_w, curve, mouth_open
    f["teeth"] = teeth.astype(np.float64)

    blush = np.where(d.chance(0.3), d(0.25, 0.5), 0.0)
    p[:, L.BLUSH], p[:, L.BLUSH_U] = blush, eye_u + d(0.0, 0.1)
    p[:, L.BLUSH_V] = 0.5 * (nose_v + mouth_v)
    p[:, L.BLUSH_INV_R2] = 1.0 / d(0.12, 0.2) ** 2
    p[:, L.BLUSH_FILL:L.BLUSH_FILL + 3] = np.array([0.95, 0.42, 0.45])
    f["blush"] = blush

    mustache = d.chance(0.12) & ~big
    must_a, must_b = mouth_w * d(0.8, 1.05), d(0.045, 0.075)
    must_v = mouth_v + np.minimum(curve, 0.0) - must_b - 0.01
    _ellipse(p, L.MUSTACHE, 0.0, must_v, must_a, must_b)
    _box(p, L.F_MUSTACHE, -must_a - w, must_a + w, must_v - must_b - w, must_v + must_b + w, mustache)
    f["mustache"] = mustache.astype(np.float64)

    glasses = d.chance(0.15) & ~big
    glass_r = np.minimum(np.maximum(rx, ry) * d(1.25, 1.5) + 0.03, 0.92 * eye_u)
    glass_t = d(0.015, 0.03)
    p[:, L.GLASS_R], p[:, L.GLASS_T] = glass_r, glass_t
    p[:, L.GLASS_FILL:L.GLASS_FILL + 3] = np.where(d.chance(0.6)[:, None], d(0.02, 0.15)[:, None],
                                                   d.colour(0.1, 0.8))
    reach = glass_r + glass_t
    _box(p, L.F_GLASSES, -eye_u - reach, eye_u + reach, eye_v - reach, eye_v + reach, glasses)
    f["glasses"] = glasses.astype(np.float64)

    # Background, and the colours left as factors.
    background = d.colour(0.1, 0.95)
    gradient = d(-0.35, 0.35)
    p[:, L.BG:L.BG + 3] = background
    # The gradient runs from -0.5 (top) to 0.5 (bottom) times this: scaled by the room the
    # background has on its nearer side, it brightens and darkens it without leaving [0, 1].
    p[:, L.BG_GRAD:L.BG_GRAD + 3] = gradient[:, None] * np.minimum(background, 1.0 - background)
    f["skin_r"], f["skin_g"], f["skin_b"] = skin.T
    f["is_yellow_skin"] = yellow.astype(np.float64)
    f["shirt_r"], f["shirt_g"], f["shirt_b"] = shirt.T
    f["background_r"], f["background_g"], f["background_b"] = background.T
    f["background_gradient"] = gradient
    factors = np.stack([np.broadcast_to(np.asarray(f[name], dtype=np.float64), (n,))
                        for name in FACTOR_NAMES], axis=1)
    return factors, p


def pixel_boxes(params, size):
    """Fill in, for images of size x size pixels, every feature's box of pixels (PIXEL_BOX of
    params (n, N_PARAMS), in place): its face-unit box turned, scaled and moved into the image,
    widened by two pixels (the anti-aliasing ramp is one pixel wide). An empty face box gives an
    empty pixel box."""
    n = params.shape[0]
    if n == 0:
        return
    boxes = params[:, L.FACE_BOX:L.FACE_BOX + 4 * L.N_FEATURES].reshape(n, L.N_FEATURES, 4)
    u = boxes[:, :, [0, 1, 0, 1]]
    v = boxes[:, :, [2, 2, 3, 3]]
    scale = params[:, L.SCALE, None, None]
    cos, sin = params[:, L.RC, None, None] * scale, params[:, L.RS, None, None] * scale
    x = (params[:, L.CX, None, None] + scale * (u * cos - v * sin)) * size - 0.5
    y = (params[:, L.CY, None, None] + scale * (u * sin + v * cos)) * size - 0.5
    pixel_box = np.stack([np.floor(x.min(axis=2)) - 1, np.ceil(x.max(axis=2)) + 2,
                          np.floor(y.min(axis=2)) - 1, np.ceil(y.max(axis=2)) + 2], axis=2)
    pixel_box = np.clip(pixel_box, 0, size)
    empty = (boxes[:, :, 1] <= boxes[:, :, 0])[:, :, None]
    params[:, L.PIXEL_BOX:L.PIXEL_BOX + 4 * L.N_FEATURES] = np.where(empty, 0.0, pixel_box).reshape(n, -1)
