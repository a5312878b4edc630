"""Batch-normalisation kernels (numpy reference); mirrors kernels/cpu/norm.py."""

import numpy as np


def channel_moments(x, mean, var, n_threads):
    """mean (channels,) and biased variance (channels,) of x's columns, in two float64 passes."""
    mean[...] = x.mean(axis=0, dtype=np.float64)
    var[...] = np.mean(np.square(x - mean), axis=0)


def normalize(x, mean, inv_std, gamma, beta, xhat, out, n_threads):
    """xhat = (x - mean) * inv_std and out = xhat * gamma + beta, per channel."""
    np.multiply(x - mean, inv_std, out=xhat)
    np.add(xhat * gamma, beta, out=out)


def channel_sums(dout, xhat, sum_dout, sum_dout_xhat, n_threads):
    """Per-channel float64 sums of dout and of dout * xhat (the gradients of beta and gamma)."""
    sum_dout[...] = dout.sum(axis=0, dtype=np.float64)
    sum_dout_xhat[...] = (dout.astype(np.float64) * xhat).sum(axis=0)


def normalize_backward(dout, xhat, gamma, inv_std, mean_dxhat, mean_dxhat_xhat, dx, n_threads):
    """dx = inv_std * (dout * gamma - mean_dxhat - xhat * mean_dxhat_xhat), per channel."""
    dx[...] = inv_std * (dout * gamma - mean_dxhat - xhat * mean_dxhat_xhat)
