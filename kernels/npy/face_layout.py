"""The face renderer's parameter layout: one row of float64 per image, read by every backend.

kernels/cpu/faces.py reads these names; kernels/cy/faces.pyx repeats them as a cdef enum (a test
checks that the two agree). fastdl/data/face_design.py draws the values.

Coordinates: an image pixel (x, y) is the point X = (x + 0.5) / size, Y = (y + 0.5) / size of the
unit square, Y downwards. A face point (u, v) has the head's centre at 0, u to the face's right
(the viewer's right) and v down its chin, in face units (the head is about 1 unit from its
centre to its crown); SCALE image widths per face unit, turned by the head's roll.

A feature (F_* at the end) is drawn only on the pixels of its box (PIXEL_BOX, filled in for a
size by fastdl.data.face_design.pixel_boxes); an empty box is a feature the face lacks.
"""

CX = 0               # pose: the face's centre in image units (x right, y down)
CY = 1
SCALE = 2            # image widths per face unit
RC = 3               # cos(roll) / SCALE: (u, v) = ((X-CX)*RC + (Y-CY)*RS, (Y-CY)*RC - (X-CX)*RS)
RS = 4               # sin(roll) / SCALE
OUTLINE_W = 5        # half width of the outlines, face units
OUTLINE = 6          # colours, 3 entries (r, g, b) each, in [0, 1]
BG = 9
BG_GRAD = 12         # background = BG + BG_GRAD * (Y - 0.5)
SKIN = 15
SKIN_DARK = 18       # neck, inner ears
HAIR = 21
BROW = 24
SHIRT = 27
NOSE_FILL = 30
MOUTH_FILL = 33
SCLERA = 36
PUPIL = 39
TEETH_FILL = 42
BLUSH_FILL = 45
GLASS_FILL = 48
SHADE = 51           # the head's skin darkens by SHADE * r^2 towards its edge (r: elliptic radius)
HEAD = 52            # ellipses: 9 entries from their base, below
JAW = 61             # u * (1 + JAW * max(v, 0)): > 0 narrows the chin
HAIR_BACK = 62       # hair behind the head (long, afro, bun): an ellipse cut below HAIR_BACK_CUT
HAIR_BACK_CUT = 71
HAIR_FRONT = 72      # 0 none, 1 a cap over the head, 2 a cap and spikes
HAIR_THICK = 73      # the cap's reach beyond the head
HAIR_OUTLINE_W = 74  # the cap's outline (0: none, over long hair and afros)
HAIRLINE = 75        # the cap ends at v = HAIRLINE + HAIRLINE_SLOPE * u + HAIRLINE_CURVE * u^2
HAIRLINE_SLOPE = 76
HAIRLINE_CURVE = 77
FRINGE = 78          # + FRINGE * tri(u * FRINGE_FREQ): a fringe of locks (tri: a triangle wave in [0, 1])
FRINGE_FREQ = 79
SPIKE_BASE = 80      # spikes: top edge SPIKE_BASE - SPIKE_H * (1 - tri(u * SPIKE_FREQ + SPIKE_PHASE))
SPIKE_H = 81
SPIKE_FREQ = 82
SPIKE_PHASE = 83
SPIKE_HALF_W = 84
SPIKE_EU = 85        # 0.5 / SPIKE_FREQ: a spike's edge runs (SPIKE_EU, SPIKE_H) from tip to foot
SPIKE_INV_E2 = 86    # 1 / (SPIKE_EU^2 + SPIKE_H^2)
NECK_W = 87          # neck: |u| < NECK_W, v > NECK_TOP
NECK_TOP = 88
SHIRT_E = 89         # shoulders
EAR_U = 98           # ears: discs at (+-EAR_U, EAR_V)
EAR_V = 99
EAR_R = 100
BLUSH = 101          # cheeks: strength, centres (+-BLUSH_U, BLUSH_V), 1 / radius^2
BLUSH_U = 102
BLUSH_V = 103
BLUSH_INV_R2 = 104
EYE = 105            # the right eye's sclera (the left one mirrored: its E_U is -EYE's)
PUPIL_R = 114
PUPIL_DU = 115       # the pupils' offset from the eyes' centres (gaze: the same for both)
PUPIL_DV = 116
LID_V = 117          # an eyelid of skin covers v < LID_V of each eye
BROW_U = 118         # brows: the right one a capsule centred (BROW_U, BROW_V), direction (BROW_DX, BROW_DY), mirrored for the left
BROW_V = 119
BROW_DX = 120
BROW_DY = 121
BROW_L = 122         # half length
BROW_T = 123         # half thickness
NOSE = 124
MUSTACHE = 133
MOUTH_V = 142        # mouth: top edge v = MOUTH_V + MOUTH_CURVE * (1 - (u / MOUTH_W)^2) for |u| < MOUTH_W,
MOUTH_W = 143        # bottom edge MOUTH_OPEN * (1 - (u / MOUTH_W)^2) below it
MOUTH_INV_W = 144
MOUTH_CURVE = 145    # > 0 a smile, < 0 a frown
MOUTH_OPEN = 146
MOUTH_T = 147        # half width of the lips' line
TEETH = 148          # height of the teeth below the top edge (0: none)
GLASS_R = 149        # glasses: rings round the eyes' centres
GLASS_T = 150
FACE_BOX = 151       # per feature (F_* below): its box in face units (u0, u1, v0, v1)
PIXEL_BOX = 211      # per feature: pixel columns [x0, x1), rows [y0, y1) (pixel_boxes)
N_PARAMS = 271

F_HAIR_BACK = 0
F_NECK = 1
F_SHIRT = 2
F_EAR_LEFT = 3
F_EAR_RIGHT = 4
F_HEAD = 5
F_HAIR_FRONT = 6
F_EYE_LEFT = 7
F_EYE_RIGHT = 8
F_BROW_LEFT = 9
F_BROW_RIGHT = 10
F_NOSE = 11
F_MUSTACHE = 12
F_MOUTH = 13
F_GLASSES = 14
N_FEATURES = 15

# An ellipse's entries, from its base index.
E_U = 0             # centre
E_V = 1
E_A = 2             # half width, half height
E_B = 3
E_IA = 4            # their inverses
E_IB = 5
E_IA2 = 6           # and inverse squares
E_IB2 = 7
E_MIN = 8           # the smaller half axis
ELLIPSE_SIZE = 9
