"""Strided transposed convolutions as sub-pixel stride-1 convolutions, each by Winograd.

At stride s, output pixel o = s i + t - pad of a transposed convolution takes input pixel i
through tap t, so the outputs of one residue q = o mod s take only the taps t = (q + pad) mod s,
+ s, ...: along each axis the output splits into s interleaved sub-images, and each sub-image
(qy, qx) is an ordinary stride-1 correlation of the input with a sub-kernel of r_y x r_x taps.
A 3x3 kernel at stride 2 gives sub-kernels of 2x2, 2x1, 1x2 and 1x1 taps: the same 9 taps per
input pixel as the GEMM + col2im of fastdl.ops.conv_transpose, and no overlapping windows to add.

Each sub-image then takes Winograd's F(m, r) along each axis, as one phase of
fastdl/ops/_toom_cook.py: an m-pixel tile of outputs from an (m + r - 1)-pixel window in
m + r - 1 multiplications instead of m r. With F(4, 2) for the two-tap axes, a 3x3 stride-2
kernel costs 25/16 + 5/4 + 5/4 + 1 = 5.06 multiplications per input pixel and channel pair
instead of 9 (44% fewer), in GEMMs, one per point of each sub-image's tiles.
"""

from fastdl import config
from fastdl.ops._toom_cook import Axis, Phase, Plan

# Output pixels per tile for sub-kernels of r taps along an axis: F(4, 2) and F(2, 3). Measured on
# a 3x3 stride-2 kernel, 128 -> 128 channels, 32x32 -> 64x64, float32: F(4, 2) gives an rms error of
# 9.5e-7 of the output's rms (im2col's GEMM 2.0e-7, F(2, 2) 3.4e-7) and the fastest forward pass
# (69 ms for 64 images on 2 threads, F(2, 2) 80 ms, F(8, 2) 81 ms with errors of 5.6e-4).
TILE = {1: 1, 2: 4, 3: 2}
# Winograd with at least this many input and output channels: with fewer its GEMMs are too thin.
MIN_CHANNELS = 16


def _residue(q, out_size, kernel, stride, pad):
    """The axis of residue q: its taps in correlation order, windows and tiles."""
    first_tap = (q + pad) % stride
    taps = list(range(first_tap, kernel, stride))[::-1]
    # Output q + s c reads input pixels c + start, ..., c + start + r - 1.
    start = (q + pad - first_tap) // stride - (len(taps) - 1)
    return Axis(taps, start, -(-(out_size - q) // stride), TILE.get(len(taps), 1), first=q, stride=stride)


def axes(out_size, kernel, stride, pad):
    """The residues of one axis of a transposed convolution with this output size, kernel size,
    stride and padding before (its col2im argument)."""
    return [_residue(q, out_size, kernel, stride, pad) for q in range(stride)]


def fits(x_shape, kernel_shape, args, out_hw):
    """Whether a transposed convolution (col2im arguments `args` from transpose_geometry) takes the
    sub-pixel Winograd path: strides above 1, every sub-kernel 1 to 3 taps along each axis
    (kernel at most three strides long, at least one stride), and channels enough for its GEMMs;
    never with FASTDL_WINOGRAD=0."""
    kh, kw, filters, in_channels = kernel_shape
    _, _, stride_h, stride_w = args[:4]
    if not config.winograd() or min(stride_h, stride_w) < 2 or min(filters, in_channels) < MIN_CHANNELS:
        return False
    return all(1 <= axis.r <= 3 for axis in axes(out_hw[0], kh, stride_h, args[4]) + axes(out_hw[1], kw, stride_w, args[5]))


def plan(kernel_shape, args, out_hw, dtype):
    """The sub-images of a transposed convolution (col2im arguments `args`), one phase each."""
    kh, kw, filters, in_channels = kernel_shape
    stride_h, stride_w, pad_top, pad_left = args[2:6]
    rows = axes(out_hw[0], kh, stride_h, pad_top)
    cols = axes(out_hw[1], kw, stride_w, pad_left)
    return Plan([Phase(axis_y, axis_x, dtype) for axis_y in rows for axis_x in cols], (in_channels, filters), dtype)
