"""Keras-style Conv2DTranspose and BatchNormalization over channels-last inputs."""

import numbers

import numpy as np

from fastdl import backend as _backend
from fastdl._parallel import run_row_ranges, threads_worth_it
from fastdl._validation import as_compute, check_pair, compute_dtype
from fastdl.nn.layers import _Activated, set_conv_options
from fastdl.nn.module import Layer, Parameter, as_layer_input
from fastdl.ops.conv import _geometry, batch_size, patches_of, sum_in_order


def transpose_output_length(size, kernel, stride, padding):
    """Keras' deconv_output_length without output_padding: the transposed convolution's output size."""
    if padding == "same":
        return size * stride
    return size * stride + max(kernel - stride, 0)


def _transpose_args(x_shape, kernel_shape, strides, padding):
    """im2col/col2im arguments of the convolution whose input gradient is this transposed convolution.

    That convolution maps the (n, out_h, out_w, filters) output back to the (n, h, w, in_channels)
    input with the Keras Conv2DTranspose kernel (kh, kw, filters, in_channels) as its own kernel.
    """
    _, height, width, _ = x_shape
    kh, kw, filters, _ = kernel_shape
    (stride_h, stride_w) = check_pair(strides, "strides")
    out_h = transpose_output_length(height, kh, stride_h, padding)
    out_w = transpose_output_length(width, kw, stride_w, padding)
    strides_hw, (pad_top, pad_left), back = _geometry((1, out_h, out_w, filters), kernel_shape, strides, padding)
    # Keras' output length always maps back onto the input under the same padding rule.
    assert back == (height, width), (back, height, width)
    return (out_h, out_w), (kh, kw, *strides_hw, pad_top, pad_left, height, width)


def conv2d_transpose(x, kernel, bias=None, strides=1, padding="valid", backend=None):
    """Transposed convolution (Keras Conv2DTranspose) as the input gradient of a convolution.

    Parameters
    ----------
    x : ndarray of shape (n_images, height, width, in_channels)
    kernel : ndarray of shape (kernel_h, kernel_w, filters, in_channels)
    bias : ndarray of shape (filters,), optional
    strides : int or (int, int)
    padding : {"valid", "same"}
        Output size height * stride ("same") or height * stride + max(kernel_h - stride, 0) ("valid").

    Returns
    -------
    ndarray of shape (n_images, out_h, out_w, filters)
    """
    kernels, _ = _backend.kernels("conv", backend)
    n_threads = _backend.get_num_threads()
    dtype = compute_dtype(x, kernel) if bias is None else compute_dtype(x, kernel, bias)
    x = as_compute(x, dtype)
    kh, kw, filters, in_channels = kernel.shape
    kernel_matrix = as_compute(kernel, dtype).reshape(-1, in_channels)
    (out_h, out_w), args = _transpose_args(x.shape, kernel.shape, strides, padding)
    pixels = x.shape[1] * x.shape[2]
    patch_cols = kernel_matrix.shape[0]
    batch = batch_size(pixels, patch_cols, dtype)
    out = np.empty((x.shape[0], out_h, out_w, filters), dtype=dtype)
    x_rows = x.reshape(-1, in_channels)

    def compute(first, last):
        cols = np.empty((min(batch, last - first) * pixels, patch_cols), dtype)
        for start in range(first, last, batch):
            stop = min(last, start + batch)
            patches = cols[: (stop - start) * pixels]
            np.dot(x_rows[start * pixels: stop * pixels], kernel_matrix.T, out=patches)
            kernels.col2im(patches, out[start:stop], *args, 1)

    run_row_ranges(compute, x.shape[0], n_threads, pixels * patch_cols * in_channels)
    if bias is not None:
        kernels.add_bias(out.reshape(-1, filters), as_compute(bias, dtype), n_threads)
    return out


def conv2d_transpose_grad(x, kernel, dout, strides=1, padding="valid", backend=None):
    """(dx, dkernel, dbias) of `conv2d_transpose`: one im2col of dout feeds both GEMMs.

    dx is the convolution of dout with the kernel; dkernel = patches(dout)^T @ x.
    """
    kernels, _ = _backend.kernels("conv", backend)
    n_threads = _backend.get_num_threads()
    dtype = compute_dtype(x, kernel, dout)
    x = as_compute(x, dtype)
    dout = as_compute(dout, dtype)
    kh, kw, filters, in_channels = kernel.shape
    kernel_matrix = as_compute(kernel, dtype).reshape(-1, in_channels)
    out_hw, args = _transpose_args(x.shape, kernel.shape, strides, padding)
    if dout.shape != (x.shape[0], *out_hw, filters):
        raise ValueError(f"dout must have shape {(x.shape[0], *out_hw, filters)}, got {dout.shape}")
    pixels = x.shape[1] * x.shape[2]
    patch_cols = kernel_matrix.shape[0]
    batch = batch_size(pixels, patch_cols, dtype)
    dx = np.empty(x.shape, dtype=dtype)
    dx_rows = dx.reshape(-1, in_channels)
    x_rows = x.reshape(-1, in_channels)
    partials = {}

    def compute(first, last):
        dkernel = np.zeros(kernel_matrix.shape, dtype)
        product = np.empty(kernel_matrix.shape, dtype)
        plan = dict(pixels=pixels, patch_cols=patch_cols, direct=False, batch=batch, args=args)
        for start in range(first, last, batch):
            stop = min(last, start + batch)
            rows = slice(start * pixels, stop * pixels)
            patches = patches_of(dout, kernels, plan, start, stop)
            np.dot(patches, kernel_matrix, out=dx_rows[rows])
            np.dot(patches.T, x_rows[rows], out=product)
            dkernel += product
        partials[first] = dkernel

    run_row_ranges(compute, x.shape[0], n_threads, 2 * pixels * patch_cols * in_channels)
    dkernel = sum_in_order(partials)
    dbias = dout.reshape(-1, filters).sum(axis=0, dtype=np.float64).astype(dtype)
    return dx, dkernel.reshape(kernel.shape), dbias


class Conv2DTranspose(_Activated):
    """Transposed 2-D convolution of channels-last images, kernel of shape (kh, kw, filters, in_channels).

    The kernel layout is Keras': the transposed convolution is the input gradient of a Conv2D
    with this kernel, so weights copied from Keras give the same outputs.

    Parameters
    ----------
    filters : int
    kernel_size : int or (int, int)
    strides : int or (int, int), default 1
    padding : {"valid", "same"}, default "valid"
        Output size height * stride ("same") or height * stride + max(kernel_h - stride, 0)
        ("valid", which is (height - 1) * stride + kernel_h when kernel_h >= stride).
    activation, kernel_initializer, kernel_regularizer, use_bias
        As in Conv2D.
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", activation=None,
                 kernel_initializer="glorot_uniform", use_bias=True, kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        set_conv_options(self, filters, kernel_size, strides, padding, activation, kernel_initializer, use_bias,
                         kernel_regularizer)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError("Conv2DTranspose expects images of shape (batch, height, width, channels), "
                             f"got (batch, {', '.join(map(str, input_shape))})")
        (out_h, out_w), _ = _transpose_args((1, *input_shape), (*self.kernel_size, self.filters, input_shape[2]),
                                            self.strides, self.padding)
        return (out_h, out_w, self.filters)

    def build(self, input_shape, rng, dtype=np.float32):
        super().build(input_shape, rng, dtype)
        shape = (*self.kernel_size, self.filters, input_shape[2])
        self.kernel = Parameter(self.kernel_initializer(shape, rng, self.dtype))
        if self.use_bias:
            self.bias = Parameter(np.zeros(self.filters, self.dtype))

    def forward(self, x, training=False):
        if x.ndim != 4 or x.shape[3] != self.kernel.shape[3]:
            raise ValueError(f"{self.name or 'Conv2DTranspose'} expects inputs (batch, height, width, "
                             f"{self.kernel.shape[3]}), got {x.shape}")
        self._x = x
        bias = self.bias.value if self.use_bias else None
        z = conv2d_transpose(x, self.kernel.value, bias, self.strides, self.padding, backend=self.backend)
        return self._activate(z)

    def backward_pre(self, dpre):
        dx, self.kernel.grad, dbias = conv2d_transpose_grad(self._x, self.kernel.value, dpre, self.strides,
                                                            self.padding, backend=self.backend)
        self._regularize()
        if self.use_bias:
            self.bias.grad = dbias
        return dx


class BatchNormalization(Layer):
    """Normalises each channel (the last axis) by batch statistics in training, moving ones at inference.

    As Keras: out = gamma * (x - mean) / sqrt(var + epsilon) + beta, with the batch mean and (biased)
    variance in training, which also update moving_mean/moving_variance as
    moving = momentum * moving + (1 - momentum) * batch_stat; inference uses the moving statistics.

    gamma and beta are Parameters; moving_mean and moving_variance are non-trainable state, listed
    by `non_trainable_weights()` (the model saves and loads them with the weights).

    Parameters
    ----------
    momentum : float in [0, 1), default 0.99
    epsilon : float > 0, default 1e-3
    """

    def __init__(self, momentum=0.99, epsilon=1e-3, **kwargs):
        super().__init__(**kwargs)
        if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) or not 0 <= momentum < 1:
            raise ValueError(f"momentum must be a number in [0, 1), got {momentum!r}")
        if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real) or not epsilon > 0:
            raise ValueError(f"epsilon must be a number > 0, got {epsilon!r}")
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)

    def compute_output_shape(self, input_shape):
        if len(input_shape) < 1:
            raise ValueError("BatchNormalization needs inputs with a channel axis, (batch, ..., channels)")
        return input_shape

    def build(self, input_shape, rng, dtype=np.float32):
        super().build(input_shape, rng, dtype)
        channels = input_shape[-1]
        self.gamma = Parameter(np.ones(channels, self.dtype))
        self.beta = Parameter(np.zeros(channels, self.dtype))
        self.moving_mean = np.zeros(channels, self.dtype)
        self.moving_variance = np.ones(channels, self.dtype)

    def non_trainable_weights(self):
        """[(name, ndarray)] of the state that is saved but not trained: the moving statistics."""
        return [("moving_mean", self.moving_mean), ("moving_variance", self.moving_variance)]

    def count_params(self):
        """Trainable plus non-trainable, as Keras counts a layer (4 * channels)."""
        return super().count_params() + sum(a.size for _, a in self.non_trainable_weights())

    def count_non_trainable_params(self):
        return sum(a.size for _, a in self.non_trainable_weights())

    def forward(self, x, training=False):
        if x.shape[-1] != self.gamma.shape[0]:
            raise ValueError(f"{self.name or 'BatchNormalization'} expects {self.gamma.shape[0]} channels "
                             f"on the last axis, got shape {x.shape}")
        x = as_layer_input(x, self.dtype)
        kernels, _ = _backend.kernels("norm", self.backend)
        rows = x.reshape(-1, x.shape[-1])
        n_threads = threads_worth_it(rows.shape[0], 8 * rows.shape[1])
        dtype = self.dtype.type
        self._training = bool(training)
        if training:
            # Two passes (the mean, then the mean square of the centred values) with float64 sums:
            # no cancellation, and float32 inputs far from zero keep their precision.
            mean64, var64 = np.empty(rows.shape[1]), np.empty(rows.shape[1])
            kernels.channel_moments(rows, mean64, var64, n_threads)
            mean, var = mean64.astype(dtype), var64.astype(dtype)
            keep = self.momentum
            self.moving_mean *= keep
            self.moving_mean += (1 - keep) * mean.astype(self.moving_mean.dtype)
            self.moving_variance *= keep
            self.moving_variance += (1 - keep) * var.astype(self.moving_variance.dtype)
        else:
            mean, var = self.moving_mean.astype(dtype), self.moving_variance.astype(dtype)
        self._inv_std = (1.0 / np.sqrt(var + dtype(self.epsilon))).astype(dtype)
        # A training step's arrays are overwritten by the next step; an inference output is the caller's.
        self._xhat = self._buffer("xhat", x.shape) if training else np.empty(x.shape, self.dtype)
        out = self._buffer("out", x.shape) if training else np.empty(x.shape, self.dtype)
        kernels.normalize(rows, mean, self._inv_std, self.gamma.value, self.beta.value,
                          self._xhat.reshape(rows.shape), out.reshape(rows.shape), n_threads)
        return out

    def backward(self, dout):
        dout = as_layer_input(dout, self.dtype, self._xhat.shape[1:], "BatchNormalization backward")
        kernels, _ = _backend.kernels("norm", self.backend)
        rows = dout.reshape(-1, dout.shape[-1])
        xhat = self._xhat.reshape(rows.shape)
        n_threads = threads_worth_it(rows.shape[0], 8 * rows.shape[1])
        sum_dout, sum_dout_xhat = np.empty(rows.shape[1]), np.empty(rows.shape[1])
        kernels.channel_sums(rows, xhat, sum_dout, sum_dout_xhat, n_threads)
        self.beta.grad[...] = sum_dout
        self.gamma.grad[...] = sum_dout_xhat
        gamma = self.gamma.value.astype(np.float64)
        if self._training:
            # dx = inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dout * gamma.
            mean_dxhat = (gamma * sum_dout / rows.shape[0]).astype(self.dtype)
            mean_dxhat_xhat = (gamma * sum_dout_xhat / rows.shape[0]).astype(self.dtype)
        else:  # the moving statistics are constants of the input
            mean_dxhat = mean_dxhat_xhat = np.zeros(rows.shape[1], self.dtype)
        dx = self._buffer("dx", dout.shape)
        kernels.normalize_backward(rows, xhat, self.gamma.value, self._inv_std, mean_dxhat, mean_dxhat_xhat,
                                   dx.reshape(rows.shape), n_threads)
        return dx
