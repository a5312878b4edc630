"""Cartoon-face renderer (numpy reference); mirrors kernels/cpu/faces.py and kernels/cy/faces.pyx.

The same per-pixel arithmetic as the compiled kernels, vectorised over a whole image at a time:
each feature is computed everywhere and blended in only on its box (where they branch per
image, this branches too; where they branch per pixel, this selects with np.where), so all
three give the same bits (the tests check it). Slow, and the plainest statement of what a
pixel is; the features are described in kernels/cpu/faces.py, the parameters in face_layout.py.
"""

import numpy as np

from fastdl.kernels.npy import face_layout as L

NO_LID = -100.0  # LID_V at or below: an open eye, no lid


def _cover(sd, inv_foot):
    return np.minimum(np.maximum(0.5 - sd * inv_foot, 0.0), 1.0)


def _ellipse_sd(p, base, du, dv):
    x, y = du * p[base + L.E_IA], dv * p[base + L.E_IB]
    k0 = np.sqrt(x * x + y * y)
    x2, y2 = du * p[base + L.E_IA2], dv * p[base + L.E_IB2]
    k1 = np.maximum(np.sqrt(x2 * x2 + y2 * y2), 1e-300)
    sd = k0 * (k0 - 1.0) / k1
    sd = np.where(k0 < 1.0, np.minimum(sd, (k0 - 1.0) * p[base + L.E_MIN]), sd)
    return np.maximum(sd, np.maximum(np.abs(du) - p[base + L.E_A], np.abs(dv) - p[base + L.E_B]))


def _in_box(p, feature, rows, cols):
    b = L.PIXEL_BOX + 4 * feature
    return (cols >= int(p[b])) & (cols < int(p[b + 1])) & (rows >= int(p[b + 2])) & (rows < int(p[b + 3]))


def _blend(plane, inside, fill, alpha):
    """plane with fill (3,) or (size, size, 3) blended in by alpha (size, size) where inside."""
    return np.where(inside[:, :, None], plane + (fill - plane) * alpha[:, :, None], plane)


def _outlined(p, plane, inside, sd, fill, inv_foot):
    w = p[L.OUTLINE_W]
    plane = _blend(plane, inside, p[L.OUTLINE:L.OUTLINE + 3], _cover(sd - w, inv_foot))
    return _blend(plane, inside, fill, _cover(sd + w, inv_foot))


def _head_sd(p, u, v):
    """The head's signed distance, and its elliptic radius squared (for the shading)."""
    warped = u * (1.0 + p[L.JAW] * np.maximum(v, 0.0))
    x, y = warped * p[L.HEAD + L.E_IA], v * p[L.HEAD + L.E_IB]
    return _ellipse_sd(p, L.HEAD, warped, v), x * x + y * y


def _hair_front_sd(p, u, v):
    t = u * p[L.FRINGE_FREQ]
    hairline = (p[L.HAIRLINE] + u * p[L.HAIRLINE_SLOPE] + u * u * p[L.HAIRLINE_CURVE]
                + p[L.FRINGE] * (np.abs(t - np.floor(t) - 0.5) * 2.0))
    sd = np.maximum(_head_sd(p, u, v)[0] - p[L.HAIR_THICK], v - hairline)
    if p[L.HAIR_FRONT] == 2.0:
        eu, ev = p[L.SPIKE_EU], p[L.SPIKE_H]
        t = u * p[L.SPIKE_FREQ] + p[L.SPIKE_PHASE]
        lu = np.abs(t - np.floor(t) - 0.5) * eu * 2.0
        lv = v - (p[L.SPIKE_BASE] - ev)
        h = np.minimum(np.maximum((lu * eu + lv * ev) * p[L.SPIKE_INV_E2], 0.0), 1.0)
        du, dv = lu - h * eu, lv - h * ev
        dist = np.sqrt(du * du + dv * dv)
        edge = np.where(lu * ev - lv * eu < 0.0, -dist, dist)
        spikes = np.maximum(np.maximum(edge, v - hairline), np.abs(u) - p[L.SPIKE_HALF_W])
        sd = np.minimum(sd, spikes)
    return sd


def _eye(p, plane, inside, u, v, side, inv_foot, skin):
    w = p[L.OUTLINE_W]
    du, dv = u - side * p[L.EYE + L.E_U], v - p[L.EYE + L.E_V]
    sclera = _ellipse_sd(p, L.EYE, du, dv)
    plane = _outlined(p, plane, inside, sclera, p[L.SCLERA:L.SCLERA + 3], inv_foot)
    pu, pv = du - p[L.PUPIL_DU], dv - p[L.PUPIL_DV]
    r = p[L.PUPIL_R]
    pupil = np.maximum(np.sqrt(pu * pu + pv * pv) - r, sclera)
    plane = _blend(plane, inside, p[L.PUPIL:L.PUPIL + 3], _cover(pupil, inv_foot))
    hu, hv = pu + 0.35 * r, pv + 0.35 * r
    glint = np.maximum(np.sqrt(hu * hu + hv * hv) - 0.3 * r, sclera)
    plane = _blend(plane, inside, p[L.SCLERA:L.SCLERA + 3], _cover(glint, inv_foot))
    if p[L.LID_V] > NO_LID:
        lid = np.maximum(sclera + w, v - p[L.LID_V])  # inside the eye's outline, the head's shaded skin
        plane = _blend(plane, inside, skin, _cover(lid, inv_foot))
        edge = np.maximum(np.abs(v - p[L.LID_V]) - w, sclera - w)
        plane = _blend(plane, inside, p[L.OUTLINE:L.OUTLINE + 3], _cover(edge, inv_foot))
    return plane


def _brow(p, plane, inside, u, v, side, inv_foot):
    du, dv = side * u - p[L.BROW_U], v - p[L.BROW_V]
    dx, dy, half = p[L.BROW_DX], p[L.BROW_DY], p[L.BROW_L]
    t = np.minimum(np.maximum(du * dx + dv * dy, -half), half)
    ex, ey = du - t * dx, dv - t * dy
    sd = np.sqrt(ex * ex + ey * ey) - p[L.BROW_T]
    hair = _cover(_hair_front_sd(p, u, v) - p[L.HAIR_OUTLINE_W], inv_foot) if p[L.HAIR_FRONT] > 0.0 else 0.0
    return _blend(plane, inside, p[L.BROW:L.BROW + 3], _cover(sd, inv_foot) * (1.0 - hair))  # under the hair


def _mouth(p, plane, inside, u, v, inv_foot):
    width, inv_w, curve, line = p[L.MOUTH_W], p[L.MOUTH_INV_W], p[L.MOUTH_CURVE], p[L.MOUTH_T]
    uc = np.minimum(np.maximum(u, -width), width)
    q = uc * inv_w
    bend = 1.0 - q * q
    top = p[L.MOUTH_V] + curve * bend
    bottom = top + p[L.MOUTH_OPEN] * bend
    slope = 2.0 * curve * uc * inv_w * inv_w
    dv = np.maximum(top - v, v - bottom) / np.sqrt(1.0 + slope * slope)
    du = np.abs(u) - width
    mu, mv = np.maximum(du, 0.0), np.maximum(dv, 0.0)
    sd = np.sqrt(mu * mu + mv * mv) + np.minimum(np.maximum(du, dv), 0.0)
    plane = _blend(plane, inside, p[L.OUTLINE:L.OUTLINE + 3], _cover(sd - line, inv_foot))
    if p[L.MOUTH_OPEN] > 0.0:
        plane = _blend(plane, inside, p[L.MOUTH_FILL:L.MOUTH_FILL + 3], _cover(sd + line, inv_foot))
        if p[L.TEETH] > 0.0:
            teeth = np.maximum(sd + line, v - (top + p[L.TEETH] * bend))
            plane = _blend(plane, inside, p[L.TEETH_FILL:L.TEETH_FILL + 3], _cover(teeth, inv_foot))
    return plane


def _glasses_sd(p, u, v):
    eye_u, dv, radius, half = p[L.EYE + L.E_U], v - p[L.EYE + L.E_V], p[L.GLASS_R], p[L.GLASS_T]
    left, right = u + eye_u, u - eye_u
    rings = np.minimum(np.abs(np.sqrt(left * left + dv * dv) - radius),
                       np.abs(np.sqrt(right * right + dv * dv) - radius)) - half
    bu = np.maximum(np.abs(u) - (eye_u - radius), 0.0)
    return np.minimum(rings, np.sqrt(bu * bu + dv * dv) - half)


def _render_one(p, size):
    pixel = 1.0 / size
    inv_foot = p[L.SCALE] * size
    rows, cols = np.mgrid[0:size, 0:size]
    x, y = (cols + 0.5) * pixel, (rows + 0.5) * pixel
    dx, dy = x - p[L.CX], y - p[L.CY]
    u = dx * p[L.RC] + dy * p[L.RS]
    v = dy * p[L.RC] - dx * p[L.RS]
    plane = p[L.BG:L.BG + 3] + p[L.BG_GRAD:L.BG_GRAD + 3] * (y - 0.5)[:, :, None]

    def box(feature):
        return _in_box(p, feature, rows, cols)

    plane = _outlined(p, plane, box(L.F_HAIR_BACK), np.maximum(
        _ellipse_sd(p, L.HAIR_BACK, u, v - p[L.HAIR_BACK + L.E_V]), v - p[L.HAIR_BACK_CUT]),
        p[L.HAIR:L.HAIR + 3], inv_foot)
    neck = np.maximum(np.abs(u) - p[L.NECK_W], p[L.NECK_TOP] - v)
    plane = _outlined(p, plane, box(L.F_NECK), neck, p[L.SKIN_DARK:L.SKIN_DARK + 3], inv_foot)
    shirt = _ellipse_sd(p, L.SHIRT_E, u, v - p[L.SHIRT_E + L.E_V])
    plane = _outlined(p, plane, box(L.F_SHIRT), shirt, p[L.SHIRT:L.SHIRT + 3], inv_foot)
    for feature, side in ((L.F_EAR_LEFT, -1.0), (L.F_EAR_RIGHT, 1.0)):
        eu, ev, radius = side * u - p[L.EAR_U], v - p[L.EAR_V], p[L.EAR_R]
        inside = box(feature)
        plane = _outlined(p, plane, inside, np.sqrt(eu * eu + ev * ev) - radius, p[L.SKIN:L.SKIN + 3], inv_foot)
        iu = eu + 0.2 * radius
        inner = np.sqrt(iu * iu + ev * ev) - 0.5 * radius
        plane = _blend(plane, inside, p[L.SKIN_DARK:L.SKIN_DARK + 3], _cover(inner, inv_foot))

    inside = box(L.F_HEAD)
    head, radius2 = _head_sd(p, u, v)
    skin = p[L.SKIN:L.SKIN + 3] * (1.0 - p[L.SHADE] * radius2)[:, :, None]
    plane = _outlined(p, plane, inside, head, skin, inv_foot)
    if p[L.BLUSH] > 0.0:
        fill_cover = _cover(head + p[L.OUTLINE_W], inv_foot)
        for side in (-1.0, 1.0):
            bu, bv = side * u - p[L.BLUSH_U], v - p[L.BLUSH_V]
            t = np.maximum(1.0 - (bu * bu + bv * bv) * p[L.BLUSH_INV_R2], 0.0)
            plane = _blend(plane, inside, p[L.BLUSH_FILL:L.BLUSH_FILL + 3], p[L.BLUSH] * t * t * fill_cover)
    if p[L.HAIR_FRONT] > 0.0:
        inside, sd, w = box(L.F_HAIR_FRONT), _hair_front_sd(p, u, v), p[L.HAIR_OUTLINE_W]
        if w > 0.0:
            plane = _blend(plane, inside, p[L.OUTLINE:L.OUTLINE + 3], _cover(sd - w, inv_foot))
        plane = _blend(plane, inside, p[L.HAIR:L.HAIR + 3], _cover(sd + w, inv_foot))

    for feature, side in ((L.F_EYE_LEFT, -1.0), (L.F_EYE_RIGHT, 1.0)):
        plane = _eye(p, plane, box(feature), u, v, side, inv_foot, skin)
    for feature, side in ((L.F_BROW_LEFT, -1.0), (L.F_BROW_RIGHT, 1.0)):
        plane = _brow(p, plane, box(feature), u, v, side, inv_foot)
    plane = _outlined(p, plane, box(L.F_NOSE), _ellipse_sd(p, L.NOSE, u, v - p[L.NOSE + L.E_V]),
                      p[L.NOSE_FILL:L.NOSE_FILL + 3], inv_foot)
    plane = _outlined(p, plane, box(L.F_MUSTACHE), _ellipse_sd(p, L.MUSTACHE, u, v - p[L.MUSTACHE + L.E_V]),
                      p[L.HAIR:L.HAIR + 3], inv_foot)
    plane = _mouth(p, plane, box(L.F_MOUTH), u, v, inv_foot)
    plane = _blend(plane, box(L.F_GLASSES), p[L.GLASS_FILL:L.GLASS_FILL + 3],
                   _cover(_glasses_sd(p, u, v), inv_foot))
    level = np.floor(plane * 255.0 + 0.5)
    return np.minimum(np.maximum(level, 0.0), 255.0).astype(np.uint8)


def render_faces(params, out, n_threads):
    """out (n, size, size, 3) uint8: face i drawn from params[i] (n, N_PARAMS) float64."""
    for i in range(out.shape[0]):
        out[i] = _render_one(params[i], out.shape[1])
