"""Assignment 6 in a few lines: a variational autoencoder that learns to draw synthetic faces.

Run:  python examples/06_vae_gan.py [--quick]

Renders cartoon faces with fastdl.data.render_faces, trains the course's VAE on them (five
stride-2 convolutions, z_mean and z_log_var, Sampling, four transposed convolutions back to
64x64x3) and saves vae_faces.png: faces decoded from random latent vectors. Then it trains the
GAN a few steps, to show the discriminator / frozen-discriminator recipe. `--quick` uses 128
faces and one epoch (about half a minute on 2 cores); without it, 2,000 faces and 5 epochs take
about ten minutes. `fastdl reproduce a6` runs the whole assignment (grids, interpolations, scores).
"""

import sys

import numpy as np

from fastdl import nn
from fastdl.data import render_faces
from fastdl.repro.a6_models import build_gan, gan_step
from fastdl.repro.report import get_pyplot

quick = "--quick" in sys.argv[1:]
n_faces, epochs = (128, 1) if quick else (2000, 5)
latent_dim = 32
faces, _ = render_faces(n_faces, seed=0)            # uint8 (n, 64, 64, 3)
x = faces.astype(np.float32) / 255                  # the VAE's pixels are in [0, 1]

# Encoder: five stride-2 convolutions take 64x64 down to 2x2; two Dense heads give the latent
# Gaussian's mean and log-variance, and Sampling draws z (adding the KL divergence to the loss).
images = nn.Input((64, 64, 3))
h = images
for _ in range(5):
    h = nn.Conv2D(128, 3, strides=2, padding="same", activation="relu")(h)
h = nn.Flatten()(h)
z_mean = nn.Dense(latent_dim, name="z_mean")(h)
z_log_var = nn.Dense(latent_dim, name="z_log_var")(h)
z = nn.Sampling()([z_mean, z_log_var])

# Decoder: a model of its own, used as a layer of the VAE (it shares its weights).
decoder = nn.Sequential([nn.Input((latent_dim,)), nn.Dense(4 * 4 * 64), nn.Reshape((4, 4, 64))]
                        + [nn.Conv2DTranspose(128, 3, strides=2, padding="same", activation="relu")
                           for _ in range(4)]
                        + [nn.Conv2D(3, 3, padding="same", activation="sigmoid")], seed=1, name="decoder")
vae = nn.Model(images, decoder(z), seed=0, name="vae")
# Binary cross-entropy summed over the 64*64*3 pixel values (the loss is their mean) plus KL.
vae.compile(nn.Adam(1e-3), "binary_crossentropy", loss_weights=64 * 64 * 3)
vae.summary()

print(f"\n{'epoch':>5} {'loss':>10} {'KL, last batch':>15}")
for epoch in range(1, epochs + 1):
    loss = vae.fit(x, x, epochs=1, batch_size=64).history["loss"][0]
    # vae.losses: the terms layers added in the last pass (Sampling's KL divergence).
    print(f"{epoch:>5} {loss:>10.1f} {sum(vae.losses):>15.2f}")

# New faces: decode random latent vectors.
samples = decoder.predict(np.random.default_rng(1).standard_normal((16, latent_dim)).astype(np.float32))
plt = get_pyplot()
fig, axes = plt.subplots(2, 8, figsize=(8, 2.2))
for ax, image in zip(axes.ravel(), samples):
    ax.imshow(np.clip(image, 0, 1))
    ax.axis("off")
fig.suptitle(f"VAE: faces from random latent vectors after {epochs} epoch(s)")
fig.savefig("vae_faces.png", dpi=100, bbox_inches="tight")
print("\nsaved vae_faces.png")

# The GAN recipe: the discriminator learns from real and generated images (train_on_batch);
# frozen inside gan = Model(z, D(G(z))), it teaches the generator to have its images called real.
gan, generator, discriminator = build_gan((64, 64, 3), seed=0)
rng = np.random.default_rng(2)
print(f"\n{'GAN step':>8} {'discriminator':>14} {'generator':>10}")
for step in range(1, (2 if quick else 20) + 1):
    real = x[rng.integers(0, len(x), 32)] * 2 - 1      # the GAN's pixels are in [-1, 1]
    d_loss, g_loss = gan_step(gan, generator, discriminator, real, rng)
    print(f"{step:>8} {d_loss:>14.4f} {g_loss:>10.4f}")
