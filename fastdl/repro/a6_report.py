"""Assignment 6's figures and tables: image grids, reconstructions, interpolations, losses, scores."""

import numpy as np

from fastdl.repro import report
from fastdl.repro.a6_score import SETTINGS as FEATURE_SETTINGS
from fastdl.repro.report import get_pyplot, save_figure

MODEL_LABELS = {"vae": "VAE", "gan": "GAN"}


def _show(ax, image):
    """One image in [0, 1], (h, w, 1 or 3), without axes."""
    image = np.clip(image, 0, 1)
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _rows_of_images(rows, path, source, title, row_labels=None, scale=0.9):
    """A figure of image rows (list of lists of images in [0, 1]) written to path."""
    plt = get_pyplot()
    n_rows, n_cols = len(rows), max(len(row) for row in rows)
    height = n_rows * scale + 0.8
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(n_cols * scale, height), squeeze=False)
    for r, row in enumerate(rows):
        for c in range(n_cols):
            if c < len(row):
                _show(axes[r, c], row[c])
            else:
                axes[r, c].axis("off")
        if row_labels:
            axes[r, 0].set_ylabel(row_labels[r], fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(pad=0.3)  # save_figure puts the data-source lines below
    return save_figure(fig, path, source)


def plot_grid(images, path, source, title, cols=8):
    """Generated images in [0, 1] as a grid of `cols` columns."""
    rows = [list(images[i:i + cols]) for i in range(0, len(images), cols)]
    return _rows_of_images(rows, path, source, title)


def plot_reconstructions(originals, reconstructions, path, source, title):
    """Held-out images (top row of each pair) above the VAE's reconstructions of them."""
    cols = 8
    rows, labels = [], []
    for i in range(0, len(originals), cols):
        rows += [list(originals[i:i + cols]), list(reconstructions[i:i + cols])]
        labels += ["original", "VAE"]
    return _rows_of_images(rows, path, source, title, labels)


def plot_interpolations(strips, path, source, title):
    """Each row: decoded images along a straight line from one random latent vector to another."""
    return _rows_of_images([list(strip) for strip in strips], path, source, title)


def plot_losses(histories, path, source, title):
    """Per-epoch losses: {panel title: {curve label: values}}, one panel each; a curve whose label
    ends in "(right axis)" gets its own scale (the VAE's KL term is a hundredth of its total)."""
    from matplotlib.ticker import MaxNLocator

    plt = get_pyplot()
    fig, axes = plt.subplots(1, len(histories), figsize=(5.5 * len(histories), 3.8), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (panel, curves) in zip(axes[0], histories.items()):
        lines = []
        for i, (label, values) in enumerate(curves.items()):
            target = ax.twinx() if label.endswith("(right axis)") else ax
            lines += target.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=label,
                                 color=colors[i % len(colors)])
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.grid(alpha=0.3)
        ax.legend(lines, [line.get_label() for line in lines], fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, source)


def interpolation_steps(strips):
    """How continuous interpolation strips are: (mean, largest) pixel change of one step, as a share
    of the change between a strip's two ends (1/9 each for 10 evenly changing steps)."""
    strips = np.asarray(strips, dtype=np.float64)
    steps = np.abs(np.diff(strips, axis=1)).mean(axis=(2, 3, 4))
    ends = np.abs(strips[:, -1] - strips[:, 0]).mean(axis=(1, 2, 3))[:, None]
    shares = steps / np.maximum(ends, 1e-12)
    return float(shares.mean()), float(shares.max())


def write_score_table(out, source, scores, floor, epochs, n_scored, feature_source, quick=False, n_floor=None,
                      quick_run=None):
    """The Fréchet distances after the first and last epoch, beside the real-data floor: the distance
    of the n_scored held-out images from n_floor training images (None: as many).

    ``quick``: scored in the quick run's feature network, whose distances are on a scale of their
    own (the note says so). ``quick_run`` (default: ``quick``): the models trained the quick run's
    few images for its few epochs, too short to draw recognisable images (the note says that too).
    """
    n_floor = n_scored if n_floor is None else n_floor
    rows = []
    for kind, label in MODEL_LABELS.items():
        first, last = scores[kind]["first"], scores[kind]["last"]
        rows.append([label, f"{first:.2f}", f"{last:.2f}", f"{last / first:.2f}" if first > 0 else "-",
                     f"{floor:.2f}"])
    trained = "as many" if n_floor == n_scored else f"{n_floor:,}"
    notes = [f"Fréchet distance between Gaussians fitted to the features of {n_scored:,} generated and "
             f"{n_scored:,} held-out real images, in the {feature_source}. Lower is better; the floor is "
             f"the distance of the held-out real images from {trained} training images.",
             f"First epoch: after epoch 1; last epoch: after epoch {epochs}."]
    quick_run = quick if quick_run is None else quick_run
    if quick:
        # Quick and full runs score in different feature networks: their distances are on
        # different scales and must not be set side by side.
        quick_net, full_net = FEATURE_SETTINGS[True], FEATURE_SETTINGS[False]
        short = ("Quick run: a few steps on a few images, too short for either model to draw recognisable images. Its "
                 if quick_run else "This run's ")
        notes.append(f"{short}distances come from the quick run's feature network ({quick_net['images']:,} "
                     f"images, {quick_net['epochs']} epochs) and compare only with other runs scored in it: a "
                     f"full run scores in another one ({full_net['images']:,} images, {full_net['epochs']} "
                     f"epochs), so the README's full-run distances are on a different scale.")
    return report.write_table(
        out, "frechet", "Fréchet distance of generated images from held-out real ones",
        ["Model", "After the first epoch", "After the last epoch", "Last / first", "Real-data floor"],
        rows, source, notes=notes,
        data={"scores": scores, "floor": floor, "epochs": epochs, "n_scored": n_scored, "n_floor": n_floor,
              "features": feature_source})
