"""Sampling: the variational autoencoder's reparameterisation, with its KL divergence as an added loss."""

import numbers

import numpy as np

from fastdl import _device
from fastdl.nn.layers import _recording
from fastdl.nn.module import Layer, as_layer_input


class Sampling(Layer):
    """z = z_mean + exp(z_log_var / 2) * noise, noise ~ N(0, 1), called on [z_mean, z_log_var].

    The noise comes from the model's seeded generator, so a seed gives the same draws on every
    run. As Keras' VAE example, the layer samples in training and in inference alike.

    With `kl_weight` > 0 the layer adds kl_weight times the batch mean of the Kullback-Leibler
    divergence of N(z_mean, exp(z_log_var)) from N(0, 1) to the loss (`add_loss`)::

        KL = -0.5 * sum over latent dimensions of (1 + z_log_var - z_mean^2 - exp(z_log_var))

    and its gradient to the gradients it passes back. A VAE::

        h = Flatten()(encoder_convolutions(x))
        z_mean, z_log_var = Dense(32)(h), Dense(32)(h)
        z = Sampling()([z_mean, z_log_var])
        vae = Model(x, decoder(z))

    On the cuda backend the latent vectors (a batch of a few dozen numbers each) come to the
    host for the layer's arithmetic and go back; the noise is the same draws as on the CPU.

    Parameters
    ----------
    kl_weight : float >= 0, default 1.0
        0: sampling only, no added loss.
    """

    PASS_STATE = Layer.PASS_STATE + ("_noise", "_std", "_z_mean", "_z_log_var")

    runs_on_device = True

    def __init__(self, kl_weight=1.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(kl_weight, bool) or not isinstance(kl_weight, numbers.Real) or not np.isfinite(kl_weight) \
                or kl_weight < 0:
            raise ValueError(f"kl_weight must be a finite number >= 0, got {kl_weight!r}")
        self.kl_weight = float(kl_weight)
        self.rng = None

    def compute_output_shape(self, input_shape):
        shapes = list(input_shape) if input_shape and isinstance(input_shape[0], (tuple, list)) else None
        if shapes is None or len(shapes) != 2 or tuple(shapes[0]) != tuple(shapes[1]):
            raise ValueError("Sampling is called on [z_mean, z_log_var], two tensors of one shape, "
                             f"got input shape {input_shape}")
        return tuple(shapes[0])

    def forward(self, inputs, training=False):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError("Sampling takes [z_mean, z_log_var]")
        if self.rng is None:
            raise RuntimeError("Sampling draws from its model's generator: use it inside a Model or Sequential")
        on_device = _device.is_device(inputs[0])
        z_mean = as_layer_input(_device.host(inputs[0]), self.dtype)
        z_log_var = as_layer_input(_device.host(inputs[1]), self.dtype)
        if z_mean.shape != z_log_var.shape:
            raise ValueError(f"z_mean has shape {z_mean.shape}, z_log_var {z_log_var.shape}: they must agree")
        noise = self.rng.standard_normal(z_mean.shape, dtype=self.dtype)
        std = np.exp(0.5 * z_log_var)
        # The output comes from this call's arrays; those kept on the layer are backward's, which
        # another thread's inference pass on the model may have set meanwhile.
        self._noise, self._std, self._z_mean, self._z_log_var = noise, std, z_mean, z_log_var
        self._on_device, self._training = on_device, bool(training)
        if self.kl_weight:
            # Each term in float64: exp(z_log_var) overflows float32 from z_log_var = 89 on.
            mean64, log_var64 = z_mean.astype(np.float64), z_log_var.astype(np.float64)
            total = -0.5 * np.sum(1.0 + log_var64 - np.square(mean64) - np.exp(log_var64))
            self.add_loss(self.kl_weight * total / z_mean.shape[0])
        return self._back_where_from(z_mean + std * noise, "z", on_device, training)

    # The added loss: in an evaluation pass (layers.inference_pass), the model reads it from the
    # pass (the layer keeps the last pass's too, as `losses` shows after the call).
    def add_loss(self, value):
        super().add_loss(value)
        record = _recording.record
        if record is not None:
            record.added_losses.setdefault(id(self), []).append(float(value))

    @property
    def losses(self):
        """The terms this layer added in the last forward pass: within an evaluation pass, this
        thread's."""
        record = _recording.record
        if record is None:
            return super().losses
        return list(record.added_losses.get(id(self), ()))

    def clear_losses(self):
        super().clear_losses()
        record = _recording.record
        if record is not None:
            record.added_losses.pop(id(self), None)

    def _back_where_from(self, array, key, on_device=None, training=None):
        """array on the device where the layer's inputs came from there (in training, into a buffer
        reused from step to step), else as it is. on_device, training: forward's (backward's
        default to what the training step's forward kept)."""
        if not (self._on_device if on_device is None else on_device):
            return array
        if self._training if training is None else training:
            return _device.upload(self._buffers, key, array)
        return _device.to_device(array)

    def backward(self, dout):
        dz = as_layer_input(_device.host(dout), self.dtype, self._z_mean.shape[1:], "Sampling backward")
        dmean = dz.copy()
        dlog_var = 0.5 * dz * self._noise * self._std
        if self.kl_weight:
            scale = self.dtype.type(self.kl_weight / self._z_mean.shape[0])
            dmean += scale * self._z_mean
            dlog_var += scale * 0.5 * (np.square(self._std) - 1)
        return [self._back_where_from(dmean, "dmean"), self._back_where_from(dlog_var, "dlog_var")]
