"""Cartoon-face renderer (Cython); mirrors kernels/cpu/faces.py and kernels/npy/faces.py.

See kernels/cpu/faces.py for the features. Every pixel sees the same operations in the same order
as there (gcc builds with -ffp-contract=off, so a * b + c stays two roundings), so both give the
same bits. Parameters: kernels/npy/face_layout.py, repeated in the enum below (a test checks
that the two agree). Images are rendered in parallel (OpenMP), each thread with its own scratch.
"""

from cython.parallel cimport parallel, prange
from libc.math cimport fabs, floor, sqrt
from libc.stdint cimport uint8_t
from libc.stdlib cimport free, malloc

cdef enum:
    CX = 0, CY = 1, SCALE = 2, RC = 3, RS = 4, OUTLINE_W = 5, OUTLINE = 6, BG = 9, BG_GRAD = 12, SKIN = 15
    SKIN_DARK = 18, HAIR = 21, BROW = 24, SHIRT = 27, NOSE_FILL = 30, MOUTH_FILL = 33, SCLERA = 36
    PUPIL = 39, TEETH_FILL = 42, BLUSH_FILL = 45, GLASS_FILL = 48, SHADE = 51, HEAD = 52, JAW = 61
    HAIR_BACK = 62, HAIR_BACK_CUT = 71, HAIR_FRONT = 72, HAIR_THICK = 73, HAIR_OUTLINE_W = 74, HAIRLINE = 75
    HAIRLINE_SLOPE = 76, HAIRLINE_CURVE = 77, FRINGE = 78, FRINGE_FREQ = 79, SPIKE_BASE = 80, SPIKE_H = 81
    SPIKE_FREQ = 82, SPIKE_PHASE = 83, SPIKE_HALF_W = 84, SPIKE_EU = 85, SPIKE_INV_E2 = 86, NECK_W = 87
    NECK_TOP = 88, SHIRT_E = 89, EAR_U = 98, EAR_V = 99, EAR_R = 100, BLUSH = 101, BLUSH_U = 102
    BLUSH_V = 103, BLUSH_INV_R2 = 104, EYE = 105, PUPIL_R = 114, PUPIL_DU = 115, PUPIL_DV = 116, LID_V = 117
    BROW_U = 118, BROW_V = 119, BROW_DX = 120, BROW_DY = 121, BROW_L = 122, BROW_T = 123, NOSE = 124
    MUSTACHE = 133, MOUTH_V = 142, MOUTH_W = 143, MOUTH_INV_W = 144, MOUTH_CURVE = 145, MOUTH_OPEN = 146
    MOUTH_T = 147, TEETH = 148, GLASS_R = 149, GLASS_T = 150, FACE_BOX = 151, PIXEL_BOX = 211, N_PARAMS = 271
    F_HAIR_BACK = 0, F_NECK = 1, F_SHIRT = 2, F_EAR_LEFT = 3, F_EAR_RIGHT = 4, F_HEAD = 5, F_HAIR_FRONT = 6
    F_EYE_LEFT = 7, F_EYE_RIGHT = 8, F_BROW_LEFT = 9, F_BROW_RIGHT = 10, F_NOSE = 11, F_MUSTACHE = 12
    F_MOUTH = 13, F_GLASSES = 14, N_FEATURES = 15, E_U = 0, E_V = 1, E_A = 2, E_B = 3, E_IA = 4, E_IB = 5
    E_IA2 = 6, E_IB2 = 7, E_MIN = 8, ELLIPSE_SIZE = 9

cdef double NO_LID = -100.0  # LID_V at or below: an open eye, no lid


def layout():
    """The parameter indices this module was built with (a test compares them with face_layout)."""
    return {"CX": CX, "CY": CY, "SCALE": SCALE, "RC": RC, "RS": RS, "OUTLINE_W": OUTLINE_W,
            "OUTLINE": OUTLINE, "BG": BG, "BG_GRAD": BG_GRAD, "SKIN": SKIN, "SKIN_DARK": SKIN_DARK,
            "HAIR": HAIR, "BROW": BROW, "SHIRT": SHIRT, "NOSE_FILL": NOSE_FILL, "MOUTH_FILL": MOUTH_FILL,
            "SCLERA": SCLERA, "PUPIL": PUPIL, "TEETH_FILL": TEETH_FILL, "BLUSH_FILL": BLUSH_FILL,
            "GLASS_FILL": GLASS_FILL, "SHADE": SHADE, "HEAD": HEAD, "JAW": JAW, "HAIR_BACK": HAIR_BACK,
            "HAIR_BACK_CUT": HAIR_BACK_CUT, "HAIR_FRONT": HAIR_FRONT, "HAIR_THICK": HAIR_THICK,
            "HAIR_OUTLINE_W": HAIR_OUTLINE_W, "HAIRLINE": HAIRLINE, "HAIRLINE_SLOPE": HAIRLINE_SLOPE,
            "HAIRLINE_CURVE": HAIRLINE_CURVE, "FRINGE": FRINGE, "FRINGE_FREQ": FRINGE_FREQ,
            "SPIKE_BASE": SPIKE_BASE, "SPIKE_H": SPIKE_H, "SPIKE_FREQ": SPIKE_FREQ,
            "SPIKE_PHASE": SPIKE_PHASE, "SPIKE_HALF_W": SPIKE_HALF_W, "SPIKE_EU": SPIKE_EU,
            "SPIKE_INV_E2": SPIKE_INV_E2, "NECK_W": NECK_W, "NECK_TOP": NECK_TOP, "SHIRT_E": SHIRT_E,
            "EAR_U": EAR_U, "EAR_V": EAR_V, "EAR_R": EAR_R, "BLUSH": BLUSH, "BLUSH_U": BLUSH_U,
            "BLUSH_V": BLUSH_V, "BLUSH_INV_R2": BLUSH_INV_R2, "EYE": EYE, "PUPIL_R": PUPIL_R,
            "PUPIL_DU": PUPIL_DU, "PUPIL_DV": PUPIL_DV, "LID_V": LID_V, "BROW_U": BROW_U, "BROW_V": BROW_V,
            "BROW_DX": BROW_DX, "BROW_DY": BROW_DY, "BROW_L": BROW_L, "BROW_T": BROW_T, "NOSE": NOSE,
            "MUSTACHE": MUSTACHE, "MOUTH_V": MOUTH_V, "MOUTH_W": MOUTH_W, "MOUTH_INV_W": MOUTH_INV_W,
            "MOUTH_CURVE": MOUTH_CURVE, "MOUTH_OPEN": MOUTH_OPEN, "MOUTH_T": MOUTH_T, "TEETH": TEETH,
            "GLASS_R": GLASS_R, "GLASS_T": GLASS_T, "FACE_BOX": FACE_BOX, "PIXEL_BOX": PIXEL_BOX,
            "N_PARAMS": N_PARAMS, "F_HAIR_BACK": F_HAIR_BACK, "F_NECK": F_NECK, "F_SHIRT": F_SHIRT,
            "F_EAR_LEFT": F_EAR_LEFT, "F_EAR_RIGHT": F_EAR_RIGHT, "F_HEAD": F_HEAD,
            "F_HAIR_FRONT": F_HAIR_FRONT, "F_EYE_LEFT": F_EYE_LEFT, "F_EYE_RIGHT": F_EYE_RIGHT,
            "F_BROW_LEFT": F_BROW_LEFT, "F_BROW_RIGHT": F_BROW_RIGHT, "F_NOSE": F_NOSE,
            "F_MUSTACHE": F_MUSTACHE, "F_MOUTH": F_MOUTH, "F_GLASSES": F_GLASSES, "N_FEATURES": N_FEATURES,
            "E_U": E_U, "E_V": E_V, "E_A": E_A, "E_B": E_B, "E_IA": E_IA, "E_IB": E_IB, "E_IA2": E_IA2,
            "E_IB2": E_IB2, "E_MIN": E_MIN, "ELLIPSE_SIZE": ELLIPSE_SIZE}


cdef inline double _min(double a, double b) noexcept nogil:
    return a if a < b else b


cdef inline double _max(double a, double b) noexcept nogil:
    return a if a > b else b


cdef inline double _cover(double sd, double inv_foot) noexcept nogil:
    """How much of a pixel 1 / inv_foot wide a shape covers at signed distance sd (a linear ramp)."""
    return _min(_max(0.5 - sd * inv_foot, 0.0), 1.0)


cdef inline void _blend(double* pixel, const double* p, Py_ssize_t colour, double alpha) noexcept nogil:
    """The pixel's colour moved towards p[colour:colour + 3] by alpha."""
    cdef int ch
    for ch in range(3):
        pixel[ch] = pixel[ch] + (p[colour + ch] - pixel[ch]) * alpha


cdef inline double _skin_shade(const double* p, double uu, double vv) noexcept nogil:
    """The head's shading at (uu, vv) (see kernels/cpu/faces.py)."""
    cdef double warped = uu * (1.0 + p[JAW] * _max(vv, 0.0))
    cdef double x = warped * p[HEAD + E_IA]
    cdef double y = vv * p[HEAD + E_IB]
    return 1.0 - p[SHADE] * (x * x + y * y)


cdef inline void _blend_skin(double* pixel, const double* p, double shade, double alpha) noexcept nogil:
    """The pixel's colour moved towards the skin's, shaded by shade, by alpha."""
    cdef int ch
    for ch in range(3):
        pixel[ch] = pixel[ch] + (p[SKIN + ch] * shade - pixel[ch]) * alpha


cdef inline void _outlined(double* pixel, const double* p, Py_ssize_t colour, double sd,
                           double inv_foot) noexcept nogil:
    """A shape of colour p[colour:] with the outline round its edge."""
    cdef double w = p[OUTLINE_W]
    _blend(pixel, p, OUTLINE, _cover(sd - w, inv_foot))
    _blend(pixel, p, colour, _cover(sd + w, inv_foot))


cdef inline double _ellipse_sd(const double* p, Py_ssize_t base, double du, double dv) noexcept nogil:
    """Signed distance to the ellipse at p[base] (see kernels/cpu/faces.py)."""
    cdef double x = du * p[base + E_IA]
    cdef double y = dv * p[base + E_IB]
    cdef double k0 = sqrt(x * x + y * y)
    cdef double x2 = du * p[base + E_IA2]
    cdef double y2 = dv * p[base + E_IB2]
    cdef double k1 = _max(sqrt(x2 * x2 + y2 * y2), 1e-300)
    cdef double sd = k0 * (k0 - 1.0) / k1
    if k0 < 1.0:
        sd = _min(sd, (k0 - 1.0) * p[base + E_MIN])
    return _max(sd, _max(fabs(du) - p[base + E_A], fabs(dv) - p[base + E_B]))


cdef inline void _box(const double* p, Py_ssize_t feature, Py_ssize_t* box) noexcept nogil:
    """Columns [box[0], box[1]) and rows [box[2], box[3]) of a feature's pixels."""
    cdef Py_ssize_t b = PIXEL_BOX + 4 * feature, k
    for k in range(4):
        box[k] = <Py_ssize_t>p[b + k]


cdef inline double _spike_edge_sd(const double* p, double u, double v) noexcept nogil:
    """Signed distance to the saw-tooth edge of the spikes (see kernels/cpu/faces.py)."""
    cdef double eu = p[SPIKE_EU], ev = p[SPIKE_H]
    cdef double t = u * p[SPIKE_FREQ] + p[SPIKE_PHASE]
    cdef double lu = fabs(t - floor(t) - 0.5) * eu * 2.0
    cdef double lv = v - (p[SPIKE_BASE] - ev)
    cdef double h = _min(_max((lu * eu + lv * ev) * p[SPIKE_INV_E2], 0.0), 1.0)
    cdef double du = lu - h * eu, dv = lv - h * ev
    cdef double dist = sqrt(du * du + dv * dv)
    return -dist if lu * ev - lv * eu < 0.0 else dist


cdef inline double _head_sd(const double* p, double u, double v) noexcept nogil:
    return _ellipse_sd(p, HEAD, u * (1.0 + p[JAW] * _max(v, 0.0)), v)


cdef inline double _hair_front_sd(const double* p, double u, double v) noexcept nogil:
    cdef double t = u * p[FRINGE_FREQ]
    cdef double hairline = (p[HAIRLINE] + u * p[HAIRLINE_SLOPE] + u * u * p[HAIRLINE_CURVE]
                            + p[FRINGE] * (fabs(t - floor(t) - 0.5) * 2.0))
    cdef double sd = _max(_head_sd(p, u, v) - p[HAIR_THICK], v - hairline)
    if p[HAIR_FRONT] == 2.0:
        sd = _min(sd, _max(_max(_spike_edge_sd(p, u, v), v - hairline), fabs(u) - p[SPIKE_HALF_W]))
    return sd


cdef void _body(const double* p, const double* u, const double* v, double* plane, Py_ssize_t size,
                double inv_foot) noexcept nogil:
    """Hair behind the head, neck, shoulders and ears."""
    cdef Py_ssize_t box[4]
    cdef Py_ssize_t row, col, at, feature
    cdef double sd, side, radius, eu, ev, iu
    _box(p, F_HAIR_BACK, box)
    for row in range(box[2], box[3]):
        for col in range(box[0], box[1]):
            at = row * size + col
            sd = _max(_ellipse_sd(p, HAIR_BACK, u[at], v[at] - p[HAIR_BACK + E_V]), v[at] - p[HAIR_BACK_CUT])
            _outlined(plane + 3 * at, p, HAIR, sd, inv_foot)
    _box(p, F_NECK, box)
    for row in range(box[2], box[3]):
        for col in range(box[0], box[1]):
            at = row * size + col
            sd = _max(fabs(u[at]) - p[NECK_W], p[NECK_TOP] - v[at])
            _outlined(plane + 3 * at, p, SKIN_DARK, sd, inv_foot)
    _box(p, F_SHIRT, box)
    for row in range(box[2], box[3]):
        for col in range(box[0], box[1]):
            at = row * size + col
            sd = _ellipse_sd(p, SHIRT_E, u[at], v[at] - p[SHIRT_E + E_V])
            _outlined(plane + 3 * at, p, SHIRT, sd, inv_foot)
    radius = p[EAR_R]
    for feature in range(F_EAR_LEFT, F_EAR_RIGHT + 1):
        side = -1.0 if feature == F_EAR_LEFT else 1.0
        _box(p, feature, box)
        for row in range(box[2], box[3]):
            for col in range(box[0], box[1]):
                at = row * size + col
                eu = side * u[at] - p[EAR_U]
                ev = v[at] - p[EAR_V]
                _outlined(plane + 3 * at, p, SKIN, sqrt(eu * eu + ev * ev) - radius, inv_foot)
                iu = eu + 0.2 * radius
                _blend(plane + 3 * at, p, SKIN_DARK, _cover(sqrt(iu * iu + ev * ev) - 0.5 * radius, inv_foot))


cdef void _head(const double* p, const double* u, const double* v, double* plane, Py_ssize_t size,
                double inv_foot) noexcept nogil:
    """The head (its skin darker towards the edge), blushing cheeks, the hair over it."""
    cdef Py_ssize_t box[4]
    cdef Py_ssize_t row, col, at
    cdef int k
    cdef double w = p[OUTLINE_W]
    cdef double uu, vv, warped, sd, alpha, side, bu, bv, t
    cdef double* pixel
    _box(p, F_HEAD, box)
    for row in range(box[2], box[3]):
        for col in range(box[0], box[1]):
            at = row * size + col
            pixel = plane + 3 * at
            uu = u[at]
            vv = v[at]
            warped = uu * (1.0 + p[JAW] * _max(vv, 0.0))
            sd = _ellipse_sd(p, HEAD, warped, vv)
            _blend(pixel, p, OUTLINE, _cover(sd - w, inv_foot))
            alpha = _cover(sd + w, inv_foot)
            _blend_skin(pixel, p, _skin_shade(p, uu, vv), alpha)
            if p[BLUSH] > 0.0:
                for k in range(2):
                    side = -1.0 if k == 0 else 1.0
                    bu = side * uu - p[BLUSH_U]
                    bv = vv - p[BLUSH_V]
                    t = _max(1.0 - (bu * bu + bv * bv) * p[BLUSH_INV_R2], 0.0)
                    _blend(pixel, p, BLUSH_FILL, p[BLUSH] * t * t * alpha)
    if p[HAIR_FRONT] > 0.0:
        w = p[HAIR_OUTLINE_W]
        _box(p, F_HAIR_FRONT, box)
        for row in range(box[2], box[3]):
            for col in range(box[0], box[1]):
                at = row * size + col
                sd = _hair_front_sd(p, u[at], v[at])
                if w > 0.0:
                    _blend(plane + 3 * at, p, OUTLINE, _cover(sd - w, inv_foot))
                _blend(plane + 3 * at, p, HAIR, _cover(sd + w, inv_foot))


cdef inline double _under_hair(const double* p, double uu, double vv, double inv_foot) noexcept nogil:
    """How much of a pixel the hair over the head (and its outline) covers: 0 without it."""
    if p[HAIR_FRONT] > 0.0:
        return _cover(_hair_front_sd(p, uu, vv) - p[HAIR_OUTLINE_W], inv_foot)
    return 0.0


cdef void _eyes(const double* p, const double* u, const double* v, double* plane, Py_ssize_t size,
                double inv_foot) noexcept nogil:
    """Sclera, pupil looking at the gaze, its glint, and the lid (the head's shaded skin inside the
    eye's outline); then the brows, under the hair."""
    cdef Py_ssize_t box[4]
    cdef Py_ssize_t row, col, at, feature
    cdef double w = p[OUTLINE_W], r = p[PUPIL_R]
    cdef double dx = p[BROW_DX], dy = p[BROW_DY], half = p[BROW_L]
    cdef double side, vv, du, dv, sclera, pu, pv, hu, hv, glint, edge, t, ex, ey, alpha
    cdef double* pixel
    for feature in range(F_EYE_LEFT, F_EYE_RIGHT + 1):
        side = -1.0 if feature == F_EYE_LEFT else 1.0
        _box(p, feature, box)
        for row in range(box[2], box[3]):
            for col in range(box[0], box[1]):
                at = row * size + col
                pixel = plane + 3 * at
                vv = v[at]
                du = u[at] - side * p[EYE + E_U]
                dv = vv - p[EYE + E_V]
                sclera = _ellipse_sd(p, EYE, du, dv)
                _outlined(pixel, p, SCLERA, sclera, inv_foot)
                pu = du - p[PUPIL_DU]
                pv = dv - p[PUPIL_DV]
                _blend(pixel, p, PUPIL, _cover(_max(sqrt(pu * pu + pv * pv) - r, sclera), inv_foot))
                hu = pu + 0.35 * r
                hv = pv + 0.35 * r
                glint = _max(sqrt(hu * hu + hv * hv) - 0.3 * r, sclera)
                _blend(pixel, p, SCLERA, _cover(glint, inv_foot))
                if p[LID_V] > NO_LID:
                    alpha = _cover(_max(sclera + w, vv - p[LID_V]), inv_foot)
                    _blend_skin(pixel, p, _skin_shade(p, u[at], vv), alpha)
                    edge = _max(fabs(vv - p[LID_V]) - w, sclera - w)
                    _blend(pixel, p, OUTLINE, _cover(edge, inv_foot))
    for feature in range(F_BROW_LEFT, F_BROW_RIGHT + 1):
        side = -1.0 if feature == F_BROW_LEFT else 1.0
        _box(p, feature, box)
        for row in range(box[2], box[3]):
            for col in range(box[0], box[1]):
                at = row * size + col
                du = side * u[at] - p[BROW_U]
                dv = v[at] - p[BROW_V]
                t = _min(_max(du * dx + dv * dy, -half), half)
                ex = du - t * dx
                ey = dv - t * dy
                alpha = _cover(sqrt(ex * ex + ey * ey) - p[BROW_T], inv_foot)
                _blend(plane + 3 * at, p, BROW, alpha * (1.0 - _under_hair(p, u[at], v[at], inv_foot)))


cdef inline double _mouth_sd(const double* p, double u, double v, double* teeth_edge) noexcept nogil:
    """The mouth's signed distance (see kernels/cpu/faces.py); teeth_edge: the teeth's lower edge."""
    cdef double width = p[MOUTH_W], inv_w = p[MOUTH_INV_W], curve = p[MOUTH_CURVE]
    cdef double uc = _min(_max(u, -width), width)
    cdef double q = uc * inv_w
    cdef double bend = 1.0 - q * q
    cdef double top = p[MOUTH_V] + curve * bend
    cdef double bottom = top + p[MOUTH_OPEN] * bend
    cdef double slope = 2.0 * curve * uc * inv_w * inv_w
    cdef double dv = _max(top - v, v - bottom) / sqrt(1.0 + slope * slope)
    cdef double du = fabs(u) - width
    cdef double mu = _max(du, 0.0), mv = _max(dv, 0.0)
    teeth_edge[0] = top + p[TEETH] * bend
    return sqrt(mu * mu + mv * mv) + _min(_max(du, dv), 0.0)


cdef void _front(const double* p, const double* u, const double* v, double* plane, Py_ssize_t size,
                 double inv_foot) noexcept nogil:
    """Nose, moustache, mouth and glasses."""
    cdef Py_ssize_t box[4]
    cdef Py_ssize_t row, col, at
    cdef double line = p[MOUTH_T]
    cdef double eye_u = p[EYE + E_U], radius = p[GLASS_R], half = p[GLASS_T]
    cdef double sd, teeth_edge, uu, dv, left, right, rings, bu
    cdef double* pixel
    _box(p, F_NOSE, box)
    for row in range(box[2], box[3]):
        for col in range(box[0], box[1]):
            at = row * size + col
            _outlined(plane + 3 * at, p, NOSE_FILL, _ellipse_sd(p, NOSE, u[at], v[at] - p[NOSE + E_V]), inv_foot)
    _box(p, F_MUSTACHE, box)
    for row in range(box[2], box[3]):
        for col in range(box[0], box[1]):
            at = row * size + col
            _outlined(plane + 3 * at, p, HAIR, _ellipse_sd(p, MUSTACHE, u[at], v[at] - p[MUSTACHE + E_V]), inv_foot)
    _box(p, F_MOUTH, box)
    for row in range(box[2], box[3]):
        for col in range(box[0], box[1]):
            at = row * size + col
            pixel = plane + 3 * at
            sd = _mouth_sd(p, u[at], v[at], &teeth_edge)
            _blend(pixel, p, OUTLINE, _cover(sd - line, inv_foot))
            if p[MOUTH_OPEN] > 0.0:
                _blend(pixel, p, MOUTH_FILL, _cover(sd + line, inv_foot))
                if p[TEETH] > 0.0:
                    _blend(pixel, p, TEETH_FILL, _cover(_max(sd + line, v[at] - teeth_edge), inv_foot))
    _box(p, F_GLASSES, box)
    for row in range(box[2], box[3]):
        for col in range(box[0], box[1]):
            at = row * size + col
            uu = u[at]
            dv = v[at] - p[EYE + E_V]
            left = uu + eye_u
            right = uu - eye_u
            rings = _min(fabs(sqrt(left * left + dv * dv) - radius),
                         fabs(sqrt(right * right + dv * dv) - radius)) - half
            bu = _max(fabs(uu) - (eye_u - radius), 0.0)
            sd = _min(rings, sqrt(bu * bu + dv * dv) - half)
            _blend(plane + 3 * at, p, GLASS_FILL, _cover(sd, inv_foot))


cdef void _render_one(const double* p, uint8_t* image, Py_ssize_t size, double* plane, double* u,
                      double* v) noexcept nogil:
    cdef double pixel = 1.0 / size
    cdef double inv_foot = p[SCALE] * size
    cdef double cx = p[CX], cy = p[CY], rc = p[RC], rs = p[RS]
    cdef double y, dx, dy, level
    cdef Py_ssize_t row, col, at, i
    cdef int ch
    for row in range(size):
        y = (row + 0.5) * pixel
        dy = y - cy
        for col in range(size):
            at = row * size + col
            dx = (col + 0.5) * pixel - cx
            u[at] = dx * rc + dy * rs
            v[at] = dy * rc - dx * rs
            for ch in range(3):
                plane[3 * at + ch] = p[BG + ch] + p[BG_GRAD + ch] * (y - 0.5)
    _body(p, u, v, plane, size, inv_foot)
    _head(p, u, v, plane, size, inv_foot)
    _eyes(p, u, v, plane, size, inv_foot)
    _front(p, u, v, plane, size, inv_foot)
    for i in range(3 * size * size):
        level = floor(plane[i] * 255.0 + 0.5)
        image[i] = <uint8_t>_min(_max(level, 0.0), 255.0)


def render_faces(const double[:, ::1] params, uint8_t[:, :, :, ::1] out, int n_threads):
    """out (n, size, size, 3) uint8: face i drawn from params[i] (n, N_PARAMS) float64."""
    cdef Py_ssize_t n = out.shape[0], size = out.shape[1], i
    cdef double* scratch = NULL
    cdef int failed = 0
    cdef int* failed_ptr = &failed
    if n == 0:
        return
    with nogil, parallel(num_threads=n_threads):
        # One scratch buffer per thread: the colour plane, then u and v.
        scratch = <double*>malloc(5 * size * size * sizeof(double))
        if scratch == NULL:
            failed_ptr[0] = 1
        for i in prange(n, schedule="dynamic"):
            if scratch == NULL:
                continue
            _render_one(&params[i, 0], &out[i, 0, 0, 0], size, scratch, scratch + 3 * size * size,
                        scratch + 4 * size * size)
        free(scratch)
    if failed:
        raise MemoryError("no memory for the face renderer's scratch buffers")
