"""Draws: hands out the columns of a table of uniforms, one column per random choice (the renderers' parameter drawing)."""

import numpy as np


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
