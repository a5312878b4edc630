"""Vectorised numpy kernels: the reference backend, with the same names as cpu/ and cy/."""
