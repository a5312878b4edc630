"""Per-image affine resampling of channels-last images, and its adjoint (numpy reference); mirrors
kernels/cpu/augment.py and kernels/cy/augment.pyx.

Output pixel (row i, column j) of image s samples its input at column x = a0 * j + a1 * i + a2 and
row y = b0 * j + b1 * i + b2, where (a0, a1, a2, b0, b1, b2) = matrices[s] (Keras' transform
convention, pixel centres at integer coordinates). Bilinear interpolation mixes the four pixels
around (y, x) with the weights (1 - fy)(1 - fx), (1 - fy) fx, fy (1 - fx), fy fx, summed in that
order in float64 and rounded once; nearest takes the pixel at (floor(y + 0.5), floor(x + 0.5)).
A neighbour outside the image is found by the fill mode, per axis: 0 reflect (d c b a | a b c d |
d c b a), 1 wrap (a b c d | a b c d), 2 constant (fill_value), 3 nearest (a a | a b c d | d d).
interpolation: 0 bilinear, 1 nearest.
"""

import numpy as np

REFLECT, WRAP, CONSTANT, NEAREST = 0, 1, 2, 3
BILINEAR, NEAREST_INTERPOLATION = 0, 1


def _source(k, size, fill_mode):
    """Integer coordinates k mapped into [0, size) by the fill mode; -1 where constant fills."""
    if fill_mode == REFLECT:
        k = np.mod(k, 2 * size)  # the symmetric extension repeats every 2 * size pixels
        return np.where(k < size, k, 2 * size - 1 - k)
    if fill_mode == WRAP:
        return np.mod(k, size)
    if fill_mode == NEAREST:
        return np.clip(k, 0, size - 1)
    return np.where((k >= 0) & (k < size), k, -1)


def _coordinates(matrices, h, w):
    """(x, y): the (n, h, w) float64 source columns and rows, in the kernels' order of operations."""
    i = np.arange(h, dtype=np.float64)[None, :, None]
    j = np.arange(w, dtype=np.float64)[None, None, :]
    a0, a1, a2, b0, b1, b2 = (matrices[:, k, None, None] for k in range(6))
    return a0 * j + a1 * i + a2, b0 * j + b1 * i + b2


def _taps(matrices, shape, fill_mode, interpolation):
    """[(weight (n, h, w) float64, row (n, h, w), column (n, h, w))] of each output pixel's
    neighbours in the kernels' order; a row or column of -1 is outside (constant mode)."""
    _, h, w, _ = shape
    x, y = _coordinates(matrices, h, w)
    if interpolation == NEAREST_INTERPOLATION:
        rows = _source(np.floor(y + 0.5).astype(np.int64), h, fill_mode)
        cols = _source(np.floor(x + 0.5).astype(np.int64), w, fill_mode)
        return [(np.ones_like(x), rows, cols)]
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    col0, col1 = _source(x0, w, fill_mode), _source(x0 + 1, w, fill_mode)
    row0, row1 = _source(y0, h, fill_mode), _source(y0 + 1, h, fill_mode)
    return [((1 - fy) * (1 - fx), row0, col0), ((1 - fy) * fx, row0, col1),
            (fy * (1 - fx), row1, col0), (fy * fx, row1, col1)]


def affine_transform(images, matrices, fill_mode, fill_value, interpolation, out, n_threads):
    """out (n, h, w, c) = images (n, h, w, c) resampled through matrices (n, 6) float64."""
    n = images.shape[0]
    total = None
    for weight, rows, cols in _taps(matrices, images.shape, fill_mode, interpolation):
        inside = (rows >= 0) & (cols >= 0)
        values = images[np.arange(n)[:, None, None], np.maximum(rows, 0), np.maximum(cols, 0)].astype(np.float64)
        values[~inside] = fill_value
        term = values if interpolation == NEAREST_INTERPOLATION else weight[..., None] * values
        total = term if total is None else total + term
    out[...] = total


def affine_transform_backward(dout, matrices, fill_mode, interpolation, dx, n_threads):
    """dx (n, h, w, c), overwritten: the adjoint of affine_transform applied to dout (each output
    pixel's gradient times its weights, added to the pixels it sampled; constant fill takes none).

    The sums run in float64 in output-pixel order (neighbours in the forward's order) and are
    rounded once; the compiled kernels add in dx's dtype, so float32 agrees to a few roundings.
    """
    n, h, w, c = dout.shape
    flat, contributions = [], []
    for weight, rows, cols in _taps(matrices, dout.shape, fill_mode, interpolation):
        pixel = (np.arange(n)[:, None, None] * h + rows) * w + cols
        pixel = np.where((rows >= 0) & (cols >= 0), pixel, -1)
        flat.append(pixel)
        contributions.append(weight[..., None] * dout)
    # (n, h, w, taps, c): for each dx element, its contributions in output-pixel, then tap order.
    pixels = np.stack(flat, axis=3)[..., None]
    index = np.where(pixels >= 0, pixels * c + np.arange(c), -1)
    values = np.stack(contributions, axis=3)
    kept = index >= 0
    sums = np.bincount(index[kept], weights=values[kept], minlength=dx.size)
    dx[...] = sums.reshape(dx.shape)
