"""The renderers' parameter drawing: counter-based uniforms per image (image_keys, uniforms) and
Draws, which hands out their columns, one per random choice."""

import numpy as np

from fastdl.kernels.npy._hash import GOLDEN, MIX2, mix64


def image_keys(seed, first, n, stream):
    """(n,) uint64: the stream key of images first .. first + n - 1 of `seed` on `stream` (a uint64
    that keeps one generator's images apart from another's: GOLDEN for the clocks)."""
    with np.errstate(over="ignore"):
        index = np.arange(first, first + n, dtype=np.uint64) + np.uint64(1)
        return mix64(mix64(np.uint64(seed) ^ stream) + index * GOLDEN)


def uniforms(keys, n_draws):
    """(len(keys), n_draws) float64 uniforms in [0, 1): 53 bits of hash of (key, draw)."""
    with np.errstate(over="ignore"):
        draws = np.arange(1, n_draws + 1, dtype=np.uint64) * MIX2
        hashed = mix64(keys[:, None] + draws[None, :])
    return (hashed >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


class Draws:
    """Hands out the columns of a uniforms table (n_images, n_draws) in order, one per random choice.

    Every image draws the same sequence of choices, so a choice's column is fixed by the code's
    order and image i's values depend only on its own row.
    """

    def __init__(self, table):
        self.table, self.column = table, 0

    def __call__(self, low=0.0, high=1.0):
        column = self.table[:, self.column]
        self.column += 1
        return low + (high - low) * column

    def chance(self, p):
        return self() < p

    def choice(self, weights):
        """Index of a weighted choice, per image."""
        return np.searchsorted(np.cumsum(weights)[:-1], self(), side="right")

    def colour(self, low, high):
        """An RGB triple per image, each channel uniform in [low, high)."""
        return np.stack([self(low, high) for _ in range(3)], axis=1)
