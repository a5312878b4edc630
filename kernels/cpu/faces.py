"""Cartoon-face renderer (Numba); mirrors kernels/cy/faces.pyx and kernels/npy/faces.py.

Each image is one task. Its pixels get face coordinates (u, v) once; then the features are drawn
back to front, each only on the pixels of its box (kernels/npy/face_layout.py): the background
gradient, hair behind the head, neck, shoulders, ears, the head (shaded skin, cheeks), the hair
over it, eyes (sclera, pupil, glint, lid), brows, nose, moustache, mouth (lips, inside, teeth)
and glasses. A shape is a signed distance sd (negative inside); a pixel takes a colour in
proportion to the part of it the shape covers, a linear ramp one pixel wide, and outlined
shapes are drawn as a dark shape OUTLINE_W larger under a fill OUTLINE_W smaller. Every pixel
sees the same +, -, *, /, sqrt and floor in the same order in every backend, so Numba, Cython
and the numpy reference give the same bits.
"""

import math

import numpy as np
from numba import prange

from fastdl.kernels.npy.face_layout import (BG, BG_GRAD, BLUSH, BLUSH_FILL, BLUSH_INV_R2, BLUSH_U, BLUSH_V,
                                            BROW, BROW_DX, BROW_DY, BROW_L, BROW_T, BROW_U, BROW_V, CX, CY,
                                            EAR_R, EAR_U, EAR_V, EYE, E_A, E_B, E_IA, E_IA2, E_IB, E_IB2,
                                            E_MIN, E_U, E_V, FRINGE, FRINGE_FREQ, F_BROW_LEFT, F_BROW_RIGHT,
                                            F_EAR_LEFT, F_EAR_RIGHT, F_EYE_LEFT, F_EYE_RIGHT, F_GLASSES,
                                            F_HAIR_BACK, F_HAIR_FRONT, F_HEAD, F_MOUTH, F_MUSTACHE, F_NECK,
                                            F_NOSE, F_SHIRT, GLASS_FILL, GLASS_R, GLASS_T, HAIR, HAIRLINE,
                                            HAIRLINE_CURVE, HAIRLINE_SLOPE, HAIR_BACK, HAIR_BACK_CUT,
                                            HAIR_FRONT, HAIR_OUTLINE_W, HAIR_THICK, HEAD, JAW, LID_V,
                                            MOUTH_CURVE, MOUTH_FILL, MOUTH_INV_W, MOUTH_OPEN, MOUTH_T, MOUTH_V,
                                            MOUTH_W, MUSTACHE, NECK_TOP, NECK_W, NOSE, NOSE_FILL,
                                            OUTLINE, OUTLINE_W, PIXEL_BOX, PUPIL, PUPIL_DU, PUPIL_DV, PUPIL_R,
                                            RC, RS, SCALE, SCLERA, SHADE, SHIRT, SHIRT_E, SKIN, SKIN_DARK,
                                            SPIKE_BASE, SPIKE_EU, SPIKE_FREQ, SPIKE_H, SPIKE_HALF_W,
                                            SPIKE_INV_E2, SPIKE_PHASE, TEETH, TEETH_FILL)

from ._jit import compile_kernel, helper, launch

# error_model="numpy": a float division by zero gives inf instead of raising (none can happen).
_helper = helper(error_model="numpy")

NO_LID = -100.0  # LID_V at or below: an open eye, no lid


@_helper
def _cover(sd, inv_foot):
    """How much of a pixel 1 / inv_foot wide a shape covers at signed distance sd (a linear ramp)."""
    return min(max(0.5 - sd * inv_foot, 0.0), 1.0)


@_helper
def _blend(plane, row, col, p, colour, alpha):
    """The pixel's colour moved towards p[colour:colour + 3] by alpha."""
    for ch in range(3):
        c = plane[row, col, ch]
        plane[row, col, ch] = c + (p[colour + ch] - c) * alpha


@_helper
def _skin_shade(p, uu, vv):
    """The head's shading at (uu, vv): 1 at its centre, darker towards its edge."""
    warped = uu * (1.0 + p[JAW] * max(vv, 0.0))
    x = warped * p[HEAD + E_IA]
    y = vv * p[HEAD + E_IB]
    return 1.0 - p[SHADE] * (x * x + y * y)


@_helper
def _blend_skin(plane, row, col, p, shade, alpha):
    """The pixel's colour moved towards the skin's, shaded by shade, by alpha."""
    for ch in range(3):
        c = plane[row, col, ch]
        plane[row, col, ch] = c + (p[SKIN + ch] * shade - c) * alpha


@_helper
def _outlined(plane, row, col, p, colour, sd, inv_foot):
    """A shape of colour p[colour:] with the outline round its edge."""
    w = p[OUTLINE_W]
    _blend(plane, row, col, p, OUTLINE, _cover(sd - w, inv_foot))
    _blend(plane, row, col, p, colour, _cover(sd + w, inv_foot))


@_helper
def _ellipse_sd(p, base, du, dv):
    """Signed distance to the ellipse at p[base] of a point (du, dv) from its centre: Quilez's
    first-order estimate k0 (k0 - 1) / k1, exact on the axes; inside, never above the distance
    (k0 - 1) * its smaller half axis, so that the centre (where the estimate is 0 / 0) is deep;
    never below the distance to the ellipse's bounding box (a lower bound of the true distance,
    which the estimate undercuts off long thin ellipses), so the feature's box holds its pixels."""
    x = du * p[base + E_IA]
    y = dv * p[base + E_IB]
    k0 = math.sqrt(x * x + y * y)
    x2 = du * p[base + E_IA2]
    y2 = dv * p[base + E_IB2]
    k1 = max(math.sqrt(x2 * x2 + y2 * y2), 1e-300)
    sd = k0 * (k0 - 1.0) / k1
    if k0 < 1.0:
        sd = min(sd, (k0 - 1.0) * p[base + E_MIN])
    return max(sd, max(abs(du) - p[base + E_A], abs(dv) - p[base + E_B]))


@_helper
def _box(p, feature):
    """Columns [x0, x1) and rows [y0, y1) of a feature's pixels."""
    b = PIXEL_BOX + 4 * feature
    return int(p[b]), int(p[b + 1]), int(p[b + 2]), int(p[b + 3])


@_helper
def _head_sd(p, u, v):
    """The head's signed distance (its chin narrowed by JAW)."""
    return _ellipse_sd(p, HEAD, u * (1.0 + p[JAW] * max(v, 0.0)), v)


@_helper
def _hair_front_sd(p, u, v):
    """The hair over the head: a cap (the head, grown, above the hairline), and spikes."""
    t = u * p[FRINGE_FREQ]
    hairline = (p[HAIRLINE] + u * p[HAIRLINE_SLOPE] + u * u * p[HAIRLINE_CURVE]
                + p[FRINGE] * (abs(t - math.floor(t) - 0.5) * 2.0))
    sd = max(_head_sd(p, u, v) - p[HAIR_THICK], v - hairline)
    if p[HAIR_FRONT] == 2.0:
        sd = min(sd, max(max(_spike_edge_sd(p, u, v), v - hairline), abs(u) - p[SPIKE_HALF_W]))
    return sd


@_helper
def _spike_edge_sd(p, u, v):
    """Signed distance to the saw-tooth edge of the spikes (negative below it): the distance to the
    edge from the nearest tip, folded into one half period, at (lu, lv) from that tip."""
    eu = p[SPIKE_EU]
    ev = p[SPIKE_H]
    t = u * p[SPIKE_FREQ] + p[SPIKE_PHASE]
    lu = abs(t - math.floor(t) - 0.5) * eu * 2.0
    lv = v - (p[SPIKE_BASE] - ev)
    h = min(max((lu * eu + lv * ev) * p[SPIKE_INV_E2], 0.0), 1.0)
    du = lu - h * eu
    dv = lv - h * ev
    dist = math.sqrt(du * du + dv * dv)
    return -dist if lu * ev - lv * eu < 0.0 else dist


@_helper
def _body(p, u, v, plane, inv_foot):
    """Hair behind the head, neck, shoulders and ears."""
    x0, x1, y0, y1 = _box(p, F_HAIR_BACK)
    for row in range(y0, y1):
        for col in range(x0, x1):
            uu, vv = u[row, col], v[row, col]
            sd = max(_ellipse_sd(p, HAIR_BACK, uu, vv - p[HAIR_BACK + E_V]), vv - p[HAIR_BACK_CUT])
            _outlined(plane, row, col, p, HAIR, sd, inv_foot)
    x0, x1, y0, y1 = _box(p, F_NECK)
    for row in range(y0, y1):
        for col in range(x0, x1):
            sd = max(abs(u[row, col]) - p[NECK_W], p[NECK_TOP] - v[row, col])
            _outlined(plane, row, col, p, SKIN_DARK, sd, inv_foot)
    x0, x1, y0, y1 = _box(p, F_SHIRT)
    for row in range(y0, y1):
        for col in range(x0, x1):
            sd = _ellipse_sd(p, SHIRT_E, u[row, col], v[row, col] - p[SHIRT_E + E_V])
            _outlined(plane, row, col, p, SHIRT, sd, inv_foot)
    for feature, side in ((F_EAR_LEFT, -1.0), (F_EAR_RIGHT, 1.0)):
        radius = p[EAR_R]
        x0, x1, y0, y1 = _box(p, feature)
        for row in range(y0, y1):
            for col in range(x0, x1):
                eu = side * u[row, col] - p[EAR_U]
                ev = v[row, col] - p[EAR_V]
                _outlined(plane, row, col, p, SKIN, math.sqrt(eu * eu + ev * ev) - radius, inv_foot)
                iu = eu + 0.2 * radius
                _blend(plane, row, col, p, SKIN_DARK, _cover(math.sqrt(iu * iu + ev * ev) - 0.5 * radius, inv_foot))


@_helper
def _head(p, u, v, plane, inv_foot):
    """The head (its skin darker towards the edge), blushing cheeks, the hair over it."""
    w = p[OUTLINE_W]
    x0, x1, y0, y1 = _box(p, F_HEAD)
    for row in range(y0, y1):
        for col in range(x0, x1):
            uu, vv = u[row, col], v[row, col]
            warped = uu * (1.0 + p[JAW] * max(vv, 0.0))
            sd = _ellipse_sd(p, HEAD, warped, vv)
            _blend(plane, row, col, p, OUTLINE, _cover(sd - w, inv_foot))
            alpha = _cover(sd + w, inv_foot)
            _blend_skin(plane, row, col, p, _skin_shade(p, uu, vv), alpha)
            if p[BLUSH] > 0.0:
                for side in (-1.0, 1.0):
                    bu = side * uu - p[BLUSH_U]
                    bv = vv - p[BLUSH_V]
                    t = max(1.0 - (bu * bu + bv * bv) * p[BLUSH_INV_R2], 0.0)
                    _blend(plane, row, col, p, BLUSH_FILL, p[BLUSH] * t * t * alpha)
    if p[HAIR_FRONT] > 0.0:
        w = p[HAIR_OUTLINE_W]  # 0: no outline, where the cap meets long hair behind the head
        x0, x1, y0, y1 = _box(p, F_HAIR_FRONT)
        for row in range(y0, y1):
            for col in range(x0, x1):
                sd = _hair_front_sd(p, u[row, col], v[row, col])
                if w > 0.0:
                    _blend(plane, row, col, p, OUTLINE, _cover(sd - w, inv_foot))
                _blend(plane, row, col, p, HAIR, _cover(sd + w, inv_foot))


@_helper
def _under_hair(p, uu, vv, inv_foot):
    """How much of a pixel the hair over the head (and its outline) covers: 0 without it."""
    if p[HAIR_FRONT] > 0.0:
        return _cover(_hair_front_sd(p, uu, vv) - p[HAIR_OUTLINE_W], inv_foot)
    return 0.0


@_helper
def _eyes(p, u, v, plane, inv_foot):
    """Sclera, pupil looking at the gaze, its glint, and the lid (the head's shaded skin inside the
    eye's outline); then the brows, under the hair."""
    w = p[OUTLINE_W]
    r = p[PUPIL_R]
    for feature, side in ((F_EYE_LEFT, -1.0), (F_EYE_RIGHT, 1.0)):
        x0, x1, y0, y1 = _box(p, feature)
        for row in range(y0, y1):
            for col in range(x0, x1):
                vv = v[row, col]
                du = u[row, col] - side * p[EYE + E_U]
                dv = vv - p[EYE + E_V]
                sclera = _ellipse_sd(p, EYE, du, dv)
                _outlined(plane, row, col, p, SCLERA, sclera, inv_foot)
                pu = du - p[PUPIL_DU]
                pv = dv - p[PUPIL_DV]
                _blend(plane, row, col, p, PUPIL, _cover(max(math.sqrt(pu * pu + pv * pv) - r, sclera), inv_foot))
                hu = pu + 0.35 * r
                hv = pv + 0.35 * r
                glint = max(math.sqrt(hu * hu + hv * hv) - 0.3 * r, sclera)
                _blend(plane, row, col, p, SCLERA, _cover(glint, inv_foot))
                if p[LID_V] > NO_LID:
                    alpha = _cover(max(sclera + w, vv - p[LID_V]), inv_foot)
                    _blend_skin(plane, row, col, p, _skin_shade(p, u[row, col], vv), alpha)
                    edge = max(abs(vv - p[LID_V]) - w, sclera - w)
                    _blend(plane, row, col, p, OUTLINE, _cover(edge, inv_foot))
    dx, dy, half = p[BROW_DX], p[BROW_DY], p[BROW_L]
    for feature, side in ((F_BROW_LEFT, -1.0), (F_BROW_RIGHT, 1.0)):
        x0, x1, y0, y1 = _box(p, feature)
        for row in range(y0, y1):
            for col in range(x0, x1):
                du = side * u[row, col] - p[BROW_U]
                dv = v[row, col] - p[BROW_V]
                t = min(max(du * dx + dv * dy, -half), half)
                ex = du - t * dx
                ey = dv - t * dy
                alpha = _cover(math.sqrt(ex * ex + ey * ey) - p[BROW_T], inv_foot)
                _blend(plane, row, col, p, BROW, alpha * (1.0 - _under_hair(p, u[row, col], v[row, col], inv_foot)))


@_helper
def _mouth_sd(p, u, v):
    """The mouth: the region between its top edge and its bottom edge MOUTH_OPEN lower, both
    parabolas through its corners (a line when closed), with rounded ends."""
    width = p[MOUTH_W]
    inv_w = p[MOUTH_INV_W]
    curve = p[MOUTH_CURVE]
    uc = min(max(u, -width), width)
    q = uc * inv_w
    bend = 1.0 - q * q
    top = p[MOUTH_V] + curve * bend
    bottom = top + p[MOUTH_OPEN] * bend
    slope = 2.0 * curve * uc * inv_w * inv_w
    dv = max(top - v, v - bottom) / math.sqrt(1.0 + slope * slope)
    du = abs(u) - width
    mu = max(du, 0.0)
    mv = max(dv, 0.0)
    return math.sqrt(mu * mu + mv * mv) + min(max(du, dv), 0.0), top + p[TEETH] * bend


@_helper
def _front(p, u, v, plane, inv_foot):
    """Nose, moustache, mouth and glasses."""
    x0, x1, y0, y1 = _box(p, F_NOSE)
    for row in range(y0, y1):
        for col in range(x0, x1):
            _outlined(plane, row, col, p, NOSE_FILL,
                      _ellipse_sd(p, NOSE, u[row, col], v[row, col] - p[NOSE + E_V]), inv_foot)
    x0, x1, y0, y1 = _box(p, F_MUSTACHE)
    for row in range(y0, y1):
        for col in range(x0, x1):
            _outlined(plane, row, col, p, HAIR,
                      _ellipse_sd(p, MUSTACHE, u[row, col], v[row, col] - p[MUSTACHE + E_V]), inv_foot)
    line = p[MOUTH_T]
    x0, x1, y0, y1 = _box(p, F_MOUTH)
    for row in range(y0, y1):
        for col in range(x0, x1):
            sd, teeth_edge = _mouth_sd(p, u[row, col], v[row, col])
            _blend(plane, row, col, p, OUTLINE, _cover(sd - line, inv_foot))
            if p[MOUTH_OPEN] > 0.0:
                _blend(plane, row, col, p, MOUTH_FILL, _cover(sd + line, inv_foot))
                if p[TEETH] > 0.0:
                    _blend(plane, row, col, p, TEETH_FILL, _cover(max(sd + line, v[row, col] - teeth_edge), inv_foot))
    eye_u, radius, half = p[EYE + E_U], p[GLASS_R], p[GLASS_T]
    x0, x1, y0, y1 = _box(p, F_GLASSES)
    for row in range(y0, y1):
        for col in range(x0, x1):
            uu = u[row, col]
            dv = v[row, col] - p[EYE + E_V]
            left = uu + eye_u
            right = uu - eye_u
            rings = min(abs(math.sqrt(left * left + dv * dv) - radius),
                        abs(math.sqrt(right * right + dv * dv) - radius)) - half
            bu = max(abs(uu) - (eye_u - radius), 0.0)
            sd = min(rings, math.sqrt(bu * bu + dv * dv) - half)
            _blend(plane, row, col, p, GLASS_FILL, _cover(sd, inv_foot))


@_helper
def _render_one(p, image, plane, u, v):
    size = image.shape[0]
    pixel = 1.0 / size
    inv_foot = p[SCALE] * size
    cx, cy, rc, rs = p[CX], p[CY], p[RC], p[RS]
    for row in range(size):
        y = (row + 0.5) * pixel
        dy = y - cy
        for col in range(size):
            dx = (col + 0.5) * pixel - cx
            u[row, col] = dx * rc + dy * rs
            v[row, col] = dy * rc - dx * rs
            for ch in range(3):
                plane[row, col, ch] = p[BG + ch] + p[BG_GRAD + ch] * (y - 0.5)
    _body(p, u, v, plane, inv_foot)
    _head(p, u, v, plane, inv_foot)
    _eyes(p, u, v, plane, inv_foot)
    _front(p, u, v, plane, inv_foot)
    for row in range(size):
        for col in range(size):
            for ch in range(3):
                level = math.floor(plane[row, col, ch] * 255.0 + 0.5)
                image[row, col, ch] = np.uint8(min(max(level, 0.0), 255.0))


def _render(params, out):
    n, size = out.shape[0], out.shape[1]
    for i in prange(n):
        plane = np.empty((size, size, 3))
        u = np.empty((size, size))
        v = np.empty((size, size))
        _render_one(params[i], out[i], plane, u, v)


_render_serial = compile_kernel(_render, exact=True)
_render_parallel = compile_kernel(_render, parallel=True, exact=True)


def render_faces(params, out, n_threads):
    """out (n, size, size, 3) uint8: face i drawn from params[i] (n, N_PARAMS) float64."""
    if out.shape[0] == 0:
        return
    launch(_render_serial, _render_parallel, n_threads, params, out)
