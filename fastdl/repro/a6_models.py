"""Assignment 6's networks, after the course's starter-notebook recipe, in fastdl.nn.

One conv-net builder serves as the VAE's encoder and the GAN's discriminator, one deconv-net
builder as the VAE's decoder and the GAN's generator:

- conv net: Conv2D 128 filters, 3x3, stride 2, 'same', ReLU, until the image is 2x2 (five times
  for 64x64), Flatten, Dense to the output size;
- deconv net: Dense 4x4x64, Reshape, Conv2DTranspose 128, 3x3, stride 2, 'same', ReLU, until the
  image has its full size (four times for 64x64), Conv2D to the image's channels, 3x3 'same',
  sigmoid (VAE, pixels in [0, 1]) or tanh (GAN, pixels in [-1, 1]).

The VAE (latent dimension 32) samples z from the encoder's z_mean and z_log_var with
``nn.Sampling``, whose KL divergence is added to the binary cross-entropy of the reconstruction
summed over pixels (a loss weight of height x width x channels on the per-pixel mean). The GAN's
discriminator learns from half-real, half-generated batches with ``train_on_batch``; then the
frozen discriminator inside ``gan = Model(z, D(G(z)))`` trains the generator on "real" labels.
Both use Adam; the GAN's with lr 2e-4 and beta_1 0.5.
"""

import numpy as np

from fastdl import nn

LATENT_DIM = 32
FILTERS = 128
SEED_LAYER_SHAPE = (4, 4, 64)  # the deconv net's first image, from its Dense layer
VAE_LR = 1e-3
GAN_LR, GAN_BETA_1 = 2e-4, 0.5


def _halvings(size, smallest):
    """How many stride-2 steps take `size` down to `smallest` (size must be smallest * 2^k, k >= 1)."""
    ratio, rest = divmod(size, smallest)
    if rest or ratio < 2 or ratio & (ratio - 1):  # ratio a power of two: one bit set
        raise ValueError(f"image size {size} must be at least {2 * smallest} and {smallest} times a power of two: "
                         f"{2 * smallest}, {4 * smallest}, {8 * smallest}, ...")
    return ratio.bit_length() - 1


def check_image_shape(image_shape):
    """(size, size, channels) as the two builders take it; ValueError naming the shape otherwise."""
    image_shape = tuple(int(d) for d in image_shape)
    if len(image_shape) != 3 or image_shape[0] != image_shape[1] or image_shape[2] not in (1, 3):
        raise ValueError(f"images must be square, (size, size, 1 or 3), got {image_shape}")
    _halvings(image_shape[0], 2 * SEED_LAYER_SHAPE[0])
    return image_shape


def conv_layers(image_shape):
    """The conv net's layers up to its flattened features (five convolutions for 64x64 images)."""
    steps = _halvings(check_image_shape(image_shape)[0], 2)
    layers = [nn.Conv2D(FILTERS, 3, strides=2, padding="same", activation="relu", name=f"conv_{i + 1}")
              for i in range(steps)]
    return layers + [nn.Flatten(name="flatten")]


def conv_net(image_shape, output_size, name, seed=None, backend=None):
    """Encoder-shaped classifier: conv_layers, then Dense(output_size) (the discriminator's logit)."""
    return nn.Sequential([nn.Input(image_shape), *conv_layers(image_shape), nn.Dense(output_size, name="output")],
                         seed=seed, backend=backend, name=name)


def deconv_net(latent_dim, image_shape, activation, name, seed=None, backend=None):
    """Dense 4x4x64, Reshape, Conv2DTranspose 128 up to the image size, Conv2D to its channels."""
    size, _, channels = check_image_shape(image_shape)
    steps = _halvings(size, SEED_LAYER_SHAPE[0])
    layers = [nn.Input((latent_dim,)), nn.Dense(int(np.prod(SEED_LAYER_SHAPE)), name="seed_dense"),
              nn.Reshape(SEED_LAYER_SHAPE, name="reshape")]
    layers += [nn.Conv2DTranspose(FILTERS, 3, strides=2, padding="same", activation="relu", name=f"deconv_{i + 1}")
               for i in range(steps)]
    layers.append(nn.Conv2D(channels, 3, padding="same", activation=activation, name="to_image"))
    return nn.Sequential(layers, seed=seed, backend=backend, name=name)


def build_vae(image_shape, latent_dim=LATENT_DIM, seed=0, backend=None):
    """(vae, encoder, decoder), the vae compiled: its loss is the reconstruction's summed binary
    cross-entropy plus the KL divergence.

    encoder maps images in [0, 1] to z_mean (sharing the VAE's layers); decoder maps latent
    vectors to images in [0, 1]. Neither is compiled: they only predict, and train as parts of vae.
    """
    image_shape = check_image_shape(image_shape)
    images = nn.Input(image_shape, name="image")
    hidden = images
    for layer in conv_layers(image_shape):
        hidden = layer(hidden)
    z_mean = nn.Dense(latent_dim, name="z_mean")(hidden)
    z_log_var = nn.Dense(latent_dim, name="z_log_var")(hidden)
    z = nn.Sampling(name="sampling")([z_mean, z_log_var])
    decoder = deconv_net(latent_dim, image_shape, "sigmoid", "decoder", seed=seed + 1, backend=backend)
    vae = nn.Model(images, decoder(z), seed=seed, backend=backend, name="vae")
    encoder = nn.Model(images, z_mean, seed=seed, backend=backend, name="encoder")
    vae.compile(nn.Adam(VAE_LR), "binary_crossentropy", loss_weights=float(np.prod(image_shape)))
    return vae, encoder, decoder


def build_gan(image_shape, latent_dim=LATENT_DIM, seed=0, backend=None):
    """(gan, generator, discriminator): the discriminator compiled on its own, then frozen inside gan.

    The discriminator gives a logit (binary cross-entropy from logits, label 1 for real images);
    the generator makes images in [-1, 1].
    """
    generator = deconv_net(latent_dim, image_shape, "tanh", "generator", seed=seed + 1, backend=backend)
    discriminator = conv_net(image_shape, 1, "discriminator", seed=seed + 2, backend=backend)
    discriminator.compile(nn.Adam(GAN_LR, beta_1=GAN_BETA_1), nn.BinaryCrossentropy(from_logits=True))
    # As in Keras: the flag is read when gan is compiled, so the discriminator keeps learning in
    # its own train_on_batch and stays fixed in gan's.
    discriminator.trainable = False
    z = nn.Input((latent_dim,), name="z")
    gan = nn.Model(z, discriminator(generator(z)), seed=seed, backend=backend, name="gan")
    gan.compile(nn.Adam(GAN_LR, beta_1=GAN_BETA_1), nn.BinaryCrossentropy(from_logits=True))
    return gan, generator, discriminator


def gan_step(gan, generator, discriminator, real, rng, latent_dim=LATENT_DIM):
    """One GAN step on a batch of real images in [-1, 1]: (discriminator loss, generator loss).

    The discriminator sees the real images and as many generated ones (labels 1 and 0); then the
    generator learns, through the frozen discriminator, to have its images labelled real.
    """
    n = len(real)
    fake = generator.predict_on_batch(rng.standard_normal((n, latent_dim), dtype=np.float32))
    images = np.concatenate([real, fake])
    labels = np.concatenate([np.ones((n, 1), np.float32), np.zeros((n, 1), np.float32)])
    d_loss = discriminator.train_on_batch(images, labels)
    z = rng.standard_normal((2 * n, latent_dim), dtype=np.float32)
    g_loss = gan.train_on_batch(z, np.ones((2 * n, 1), np.float32))
    return float(d_loss), float(g_loss)
