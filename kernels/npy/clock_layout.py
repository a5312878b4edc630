"""The clock renderer's parameter layout: one row of float64 per image, read by every backend.

kernels/cpu/clock.py reads these names; kernels/cy/clock.pyx repeats them as a cdef enum (a test
checks that the two agree). fastdl/data/clock_design.py draws the values.

Coordinates: an image pixel (x, y) is the point X = (x + 0.5) / size, Y = (y + 0.5) / size of the
unit square, Y downwards. A face point (u, v) has the dial's centre at 0, u towards 3 o'clock and
v towards 12, the dial of radius 1 and the rim out to 1 + RIM_WIDTH. HINV (row-major 3x3) maps
(X, Y, 1) to homogeneous face coordinates; DET = |det HINV|, so one pixel covers about
sqrt(DET / |w|^3) image widths of face units, where w is the third homogeneous coordinate.
The boxes depend on the image size: fastdl.data.clock_design.pixel_boxes fills them in.
"""

HINV = 0            # 9 entries, 0..8
DET = 9
FACE = 10           # grey levels in [0, 1]
RIM = 11
RIM_WIDTH = 12
INK = 13            # ticks, numerals, marker, logo
HAND = 14           # hour and minute hands, centre cap
BG = 15             # background: level, gradient, triangle-wave stripes
BG_GX = 16
BG_GY = 17
STRIPE_AMP = 18
STRIPE_KX = 19
STRIPE_KY = 20
SHADOW_DX = 21      # the clock's soft shadow on the wall, offset in image units
SHADOW_DY = 22
SHADOW = 23
TICKS = 24          # 0 none, 1 hour ticks, 2 hour and minute ticks
TICK_OUTER = 25
HOUR_TICK_LEN = 26
HOUR_TICK_W = 27    # half widths
MIN_TICK_LEN = 28
MIN_TICK_W = 29
MARKER = 30         # what marks 12 besides a numeral: 0 nothing, 1 a double tick, 2 a triangle
NUMERALS = 31       # 0 none, 1 all twelve, 2 the quarters (12, 3, 6, 9)
FONT = 32           # 0 arabic, upright; 1 roman, along the radius
NUM_RADIUS = 33
NUM_HEIGHT = 34
NUM_STROKE = 35     # stroke half width in glyph heights
LOGO = 36           # 1: two bars under 12, as a maker's name
HOUR_HAND = 37      # each hand: 7 entries from its base, below
MINUTE_HAND = 44
SECOND_HAND = 51
SECONDS = 58        # 1: the second hand is drawn
CAP = 59            # radius of the disc over the hands' axle
GLARE = 60          # a highlight on the glass: strength, centre (u, v), 1 / radius^2
GLARE_U = 61
GLARE_V = 62
GLARE_INV_R2 = 63
LIGHT = 64          # lighting: gain, its gradient, vignetting
LIGHT_GX = 65
LIGHT_GY = 66
VIGNETTE = 67
CONTRAST = 68
CURVE = 69          # v + CURVE * v * (1 - v): a gamma-like tone curve
NOISE = 70          # standard deviation of the sensor noise
BLUR = 71           # 7 taps of a normalised Gaussian, 71..77
CLUTTER = 78        # 3 background shapes of 8 entries each, 78..101
CLOCK_BOX = 102     # pixels that may show the clock: columns [x0, x1), rows [y0, y1)
SHADOW_BOX = 106    # pixels that may show its shadow, likewise
N_PARAMS = 110

# A hand's entries, from its base index.
HAND_DX = 0         # direction (sin, cos) of its angle clockwise from 12
HAND_DY = 1
HAND_LEN = 2
HAND_WIDTH = 3      # half width
HAND_TAIL = 4       # length behind the axle
HAND_SHAPE = 5      # 0 straight bar, 1 tapered, 2 leaf (widest at 65% of its length)
HAND_VALUE = 6

# A background shape's entries, from its base index.
SHAPE_KIND = 0      # 0 none, 1 disc (radius A), 2 rotated box (half sides A, B)
SHAPE_X = 1
SHAPE_Y = 2
SHAPE_A = 3
SHAPE_B = 4
SHAPE_COS = 5
SHAPE_SIN = 6
SHAPE_VALUE = 7
N_SHAPES = 3
SHAPE_SIZE = 8

BLUR_RADIUS = 3     # the blur's taps run from -3 to 3 pixels

# The numerals: for each font and dial position, the distance from points of a square grid to
# the nearest stroke's centre line, in glyph heights (a glyph spans y in [-0.5, 0.5] and at most
# x in [-0.5, 0.5]). A pixel reads it by bilinear interpolation; off the grid, a numeral covers
# nothing.
GLYPH_HALF = 0.9    # the grid spans [-0.9, 0.9] in x and y
GLYPH_SCALE = 32.0  # grid steps per glyph height
GLYPH_N = 59        # grid points per side: 2 * 0.9 * 32 + 1 (rounded up)
