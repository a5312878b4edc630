"""Assignment 6, "Generative Models": a VAE and a GAN that generate faces, reproduced with fastdl.nn.

The networks are the course starter notebook's (fastdl.repro.a6_models). Data, by ``data``:

- "faces" (default): synthetic cartoon faces, 64x64x3, from ``fastdl.data.render_faces``;
- "folder:PATH": every PNG/JPEG under PATH (the Simpsons faces as Kaggle ships them), 64x64x3;
- "npy:PATH": a ``.npy`` array of faces as the course ships them, 64x64x3;
- "fashion": Fashion-MNIST (installed by ``make run``), padded to 32x32x1, as real data.

For each model the outputs under ``<out_dir>/a6/<data>/`` are grids of generated images after the
first and the last epoch, the interpolation between two random latent vectors in 10 steps (a few
pairs), the loss curves, and the Fréchet distance of generated from held-out real images after the
first and the last epoch (fastdl.repro.a6_score), beside the real data's floor; the VAE's
reconstructions of held-out images too.

A full run trains 10,000 images for 20 epochs per model (hours on two cores: the decoder's last
Conv2DTranspose alone is about a GFLOP per image). ``quick=None`` (the default) times a few
batches and runs the quick version (256 images, 2 epochs, scored on 256 in the quick feature
network) when the full one would take over ten minutes. ``images``, ``epochs`` and ``scored``
size a run between the two: the sizes given always run and the estimate is made for them; it
decides only the settings left unset, and which feature network scores.
"""

import time
from pathlib import Path

import numpy as np

from fastdl import nn
from fastdl.data import scale_images
from fastdl.repro import a6_models, a6_report, a6_score, report

TITLE = "Assignment 6: a VAE and a GAN generating {name}"
FULL = {"images": 10000, "epochs": 20, "scored": 2000}
QUICK = {"images": 256, "epochs": 2, "scored": 256}
FACE_SHAPE = (64, 64, 3)  # faces of every source are brought to this shape
FASHION_SHAPE = (32, 32, 1)  # Fashion-MNIST's 28x28, padded
FASHION_PAD = ((0, 0), (2, 2), (2, 2), (0, 0))  # 28x28 -> 32x32: a power of two, as the faces' 64
BATCH_SIZE = 64  # both models; the GAN's discriminator batch is half real, half generated
GRID = 32  # generated images per grid
PAIRS, STEPS = 4, 10  # interpolation strips
RECONSTRUCTED = 16
SEED = 0
MIN_SCORED = 2  # images on each side of a Fréchet distance: its Gaussians need a covariance


def check_options(data_dir=None, data="faces", epochs=None, images=None, scored=None, backend=None, **_):
    """Raise before anything is loaded, timed or trained if a run with these options cannot go.

    :func:`parse_data`, :func:`check_source` (the data's files are there), :func:`check_sizes` (the
    sizes can be scored) and the backend (ValueError for an unknown name, BackendUnavailableError
    for one that cannot run here). ``run``'s other parameters are accepted, not checked;
    ``fastdl reproduce`` calls this for every assignment it runs before the first starts.
    """
    check_source(data, data_dir)
    check_sizes(data, {"epochs": epochs, "images": images, "scored": scored})
    report.check_backend(backend)


def parse_data(data):
    """(data kind, path or None) from "faces", "fashion", "folder:PATH" or "npy:PATH"."""
    if data in ("faces", "fashion"):
        return data, None
    if isinstance(data, str) and ":" in data:
        kind, path = data.split(":", 1)
        if kind in ("folder", "npy") and path:
            return kind, path
    raise ValueError(f"data must be 'faces', 'fashion', 'folder:PATH' or 'npy:PATH', got {data!r}")


def check_source(data, data_dir=None):
    """Raise now, before anything is timed or trained, if ``data``'s files cannot be found.

    Raises
    ------
    FileNotFoundError, NotADirectoryError, IsADirectoryError
        A folder:/npy: path that does not exist or is of the wrong kind.
    DatasetNotFoundError
        Fashion-MNIST is not where it is looked for.
    """
    data_kind, path = parse_data(data)
    if data_kind == "fashion":
        from fastdl.data import fashion_mnist

        fashion_mnist.locate(data_dir)
    elif data_kind in ("folder", "npy"):
        where = Path(path).expanduser()
        if not where.exists():
            raise FileNotFoundError(f"{'image folder' if data_kind == 'folder' else 'face array'} {str(where)!r} "
                                    "does not exist")
        if data_kind == "folder" and not where.is_dir():
            raise NotADirectoryError(f"{str(where)!r} is a file, not a folder of images (npy:PATH reads a .npy)")
        if data_kind == "npy" and where.is_dir():
            raise IsADirectoryError(f"{str(where)!r} is a folder, not a .npy file (folder:PATH reads folders)")


def check_sizes(data, given):
    """Raise now, before anything is loaded or trained, if a run with these sizes cannot be scored.

    ``given`` holds the run's "epochs", "images" and "scored" as passed (None: the default). Each
    score compares at least 2 images with at least 2 held-out ones (a covariance needs two); a
    folder's images are counted (not read) to hold out 2 and train on 2, and a .npy's header is
    read for its faces' count, type and shape.
    """
    for key, value in given.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
            raise ValueError(f"{key} must be an integer >= 1, got {value!r}")
    if given["scored"] is not None and given["scored"] < MIN_SCORED:
        raise ValueError(f"scored must be at least {MIN_SCORED}: a Fréchet distance fits a covariance to the "
                         f"features of the images scored, got scored={given['scored']}")
    if given["images"] is not None and given["images"] < MIN_SCORED:
        raise ValueError(f"images (--images) must be at least {MIN_SCORED}: the real-data floor compares the "
                         f"held-out images with training images, and a covariance needs {MIN_SCORED}; got "
                         f"{given['images']}")
    data_kind, path = parse_data(data)
    if data_kind == "folder":
        from fastdl.data.image_folder import _image_files

        _check_image_count(len(_image_files(Path(path).expanduser().resolve())), path)
    elif data_kind == "npy":  # its header: the faces' type, shape and count, before anything is read
        from fastdl.data._files import read_npy_header
        from fastdl.data.image_folder import check_face_array_form

        where = Path(path).expanduser()
        shape, dtype = read_npy_header(where)
        check_face_array_form(shape, dtype, where)
        _check_image_count(shape[0], path)


def _check_image_count(n_images, path):
    """A folder or face array of n_images must give 2 held-out images and 2 training images."""
    if n_images < 2 * MIN_SCORED:
        raise ValueError(f"{path} holds {n_images} image(s); a6 needs at least {2 * MIN_SCORED}: "
                         f"{MIN_SCORED} held out to score against and {MIN_SCORED} to train on")


def load_images(data, n_images, n_scored, data_dir=None, seed=SEED, verify=True):
    """(training images, held-out images, description): uint8 (n, size, size, channels).

    The held-out images are never trained on; the Fréchet score compares generated images with them.
    ``verify`` checks Fashion-MNIST's published SHA-256, and a face array generate_faces wrote
    against the SHA-256 its faces.json records.
    """
    data_kind, path = parse_data(data)
    size = FACE_SHAPE[0]
    if data_kind == "faces":
        from fastdl.data import render_faces

        images, _ = render_faces(n_images + n_scored, seed=seed, size=size)
        return images[:n_images], images[n_images:], f"synthetic cartoon faces (fastdl.data.render_faces, seed {seed})"
    if data_kind == "fashion":
        from fastdl.data import fashion_mnist, load_fashion_mnist

        (x_train, _), (x_test, _) = load_fashion_mnist(data_dir, verify=verify)
        where = fashion_mnist.locate(data_dir)[0].parent
        return (_padded(x_train[:n_images]), _padded(x_test[:n_scored]),
                f"Fashion-MNIST from {where} (training images; held-out: test images), padded to 32x32")
    from fastdl.data.image_folder import load_face_array, load_image_folder

    if data_kind == "folder":
        images = load_image_folder(path, size=size)
    else:
        images = load_face_array(path, size=size, verify=verify)
    _check_image_count(len(images), path)  # again: unreadable images are skipped, a .npy is counted here
    order = np.random.default_rng(seed).permutation(len(images))
    n_held = max(MIN_SCORED, min(n_scored, len(images) // 5))
    held, train = images[order[:n_held]], images[order[n_held:]][:n_images]
    return train, held, f"{len(images):,} faces from {Path(path).expanduser().resolve()}"


def estimate_full_seconds(image_shape, settings=FULL, seed=SEED, backend=None, data_kind="faces", cache_dir=None):
    """Seconds a run of these settings ("images", "epochs") takes here, from a timed VAE step and
    GAN step (:func:`fastdl.repro.report.fastest_call`): a short step (a GPU's) is timed a few times,
    the fastest counting; a step of seconds (two cores') once, as a second would double the
    estimate's time for a full run hours long either way. "features": the full run's feature
    network's training, where the cache (``cache_dir``) does not hold it yet."""
    rng = np.random.default_rng(seed)
    batch = rng.random((BATCH_SIZE, *image_shape), dtype=np.float32)
    vae, _, _ = a6_models.build_vae(image_shape, seed=seed, backend=backend)
    gan, generator, discriminator = a6_models.build_gan(image_shape, seed=seed, backend=backend)
    seconds = {}
    for model_kind, step in (("vae", lambda: vae.train_on_batch(batch, batch)),
                             ("gan", lambda: a6_models.gan_step(gan, generator, discriminator,
                                                                batch[:BATCH_SIZE // 2], rng))):
        step()  # allocation and first-call costs
        fastest = report.fastest_call(lambda i: step(), calls=1)
        steps = -(-settings["images"] // (BATCH_SIZE if model_kind == "vae" else BATCH_SIZE // 2))
        seconds[model_kind] = fastest * steps * settings["epochs"]
    seconds["features"] = a6_score.training_seconds("fashion" if data_kind == "fashion" else "faces", image_shape,
                                                    False, cache_dir, seed)
    seconds["total"] = seconds["vae"] + seconds["gan"] + seconds["features"]
    return seconds


def run(data_dir=None, out_dir="results", quick=None, data="faces", epochs=None, images=None, seed=SEED,
        scored=None, cache_dir=None, backend=None, verify=True):
    """Train the VAE and the GAN; write grids, reconstructions, interpolations, losses and scores.

    Parameters
    ----------
    data_dir : str, optional
        Fashion-MNIST's directory for data="fashion" (else the loader's usual places).
    out_dir : str or Path, default "results"
        Files go to ``out_dir/a6/<data kind>/``.
    quick : bool or None
        True: 256 training images, 2 epochs per model, scores on 256 images in the quick
        feature network. False: 10,000 images, 20 epochs, scores on 2,000 in the full one.
        None: estimate here the full run with the sizes given (``epochs``, ``images``), run
        it when it takes at most ten minutes, else take the quick run's values for the
        settings not given (it says so, with the settings that run, and how to run the full one).
    data : str, default "faces"
        "faces", "fashion", "folder:PATH" or "npy:PATH".
    epochs, images, scored : int, optional
        The run's epochs per model, training images, and images scored, replacing the quick or
        the full run's, whichever ``quick`` chooses.
    seed : int, default 0
    cache_dir : Path, optional
        Where the feature network of the score is cached (default ``$FASTDL_CACHE_DIR/a6``).
    backend : str, optional
        The VAE's and the GAN's backend ("cuda": train on the GPU); None: the process default.
    verify : bool, default True
        Check Fashion-MNIST's files against their published SHA-256 (data="fashion"), and a face
        array fastdl generated against the SHA-256 its faces.json records (data="npy:...").

    Returns
    -------
    dict
        "source", "device", "data", "quick" (whether the settings not given, the images scored
        and the feature network are the quick run's), "auto_quick", "settings", "estimate",
        "parameters", "history", "scores", "floor", "interpolation", "feature_source", "timings",
        "files".
    """
    # A wrong path, sizes too small to score or a backend that cannot run are said at once, not
    # after the time estimate or the feature network's training.
    check_options(data_dir=data_dir, data=data, epochs=epochs, images=images, scored=scored, backend=backend)
    data_kind, _ = parse_data(data)
    given = {key: int(value) for key, value in (("epochs", epochs), ("images", images), ("scored", scored))
             if value is not None}
    timings = report.Timings()
    auto_quick, estimate = quick is None, None
    image_shape = FASHION_SHAPE if data_kind == "fashion" else FACE_SHAPE
    # The header first: what follows (the estimate, the feature network) takes seconds to minutes.
    report.print_header(TITLE.format(name="Fashion-MNIST items" if data_kind == "fashion" else "faces"))
    if auto_quick:
        report.announce_estimate()
        with timings("estimate"):
            estimate = estimate_full_seconds(image_shape, {**FULL, **given}, seed=seed, backend=backend,
                                             data_kind=data_kind, cache_dir=cache_dir)
        quick = estimate["total"] > report.AUTO_QUICK_SECONDS
    settings = {**(QUICK if quick else FULL), **given}
    # "quick run" names only a run of the quick run's images and epochs, not one of the sizes given.
    quick_run = bool(quick) and all(settings[key] == QUICK[key] for key in ("images", "epochs"))
    with timings("load_data"):
        train, held, described = load_images(data, settings["images"], settings["scored"], data_dir, seed,
                                             verify)
    n_scored = min(settings["scored"], len(held))
    n_floor = min(n_scored, len(train))  # training images the floor compares with the held-out ones
    device = report.compute_device(backend)
    source = (f"{described}; {len(train):,} training and {n_scored:,} held-out images, "
              f"{report.epochs(settings['epochs'])} per model"
              + (" (quick run)" if quick_run else "") + f"; trained on {device}")
    out = Path(out_dir) / "a6" / data_kind
    if auto_quick:
        _print_decision(estimate, quick, data, given, settings, quick_run,
                        report.rerun_options(data_dir, backend, verify))
    print(f"data: {source}\n")

    feature = a6_score.SETTINGS[bool(quick)]
    print(f"Feature network for the Fréchet score: read from the cache, or trained here and cached "
          f"({feature['images']:,} images, {report.epochs(feature['epochs'])})...", flush=True)
    with timings("feature_network"):
        network, feature_source = _feature_network(data_kind, image_shape, quick, data_dir, cache_dir, seed,
                                                   verify)
        held_unit = scale_images(held[:n_scored])
        reference = a6_score.features_of(network, held_unit)
        floor = float(a6_score.frechet_distance(a6_score.features_of(network, scale_images(train[:n_floor])),
                                                reference))
    rng = np.random.default_rng(seed)
    grid_z, score_z, line_z = _latent_vectors(rng, n_scored)

    files, scores, history, parameters, strips = [], {}, {}, {}, {}
    train_unit = scale_images(train)
    for model_kind in ("vae", "gan"):
        label = a6_report.MODEL_LABELS[model_kind]
        trainer = (_VaeTrainer if model_kind == "vae" else _GanTrainer)(image_shape, seed, backend)
        parameters[model_kind] = trainer.count_params()
        print(f"{label} ({parameters[model_kind]:,} parameters), {report.epochs(settings['epochs'])} on "
              f"{len(train):,} images")
        scores[model_kind] = {}
        with timings(f"fit_{model_kind}"):
            for epoch in range(1, settings["epochs"] + 1):
                start = time.perf_counter()
                logs = trainer.epoch(train_unit, rng)
                for key, value in logs.items():
                    history.setdefault(model_kind, {}).setdefault(key, []).append(value)
                print(f"  epoch {epoch}/{settings['epochs']}: " + ", ".join(f"{k} {v:.4g}" for k, v in logs.items())
                      + f" ({time.perf_counter() - start:.1f} s)")
                if epoch in (1, settings["epochs"]):  # a one-epoch run is scored and drawn once
                    value = a6_score.score(network, trainer.generate(score_z), reference)
                    if epoch == 1:
                        scores[model_kind]["first"] = value
                    if epoch == settings["epochs"]:
                        scores[model_kind]["last"] = value
                    files.append(a6_report.plot_grid(
                        trainer.generate(grid_z), out / f"{model_kind}_samples_epoch_{epoch}.png", source,
                        f"{label}: images from {GRID} random latent vectors after epoch {epoch}"))
        print(f"  Fréchet distance after the first epoch {scores[model_kind]['first']:.2f}, after the last "
              f"{scores[model_kind]['last']:.2f} (real-data floor {floor:.2f})\n")
        strips[model_kind] = trainer.generate(line_z).reshape(PAIRS, STEPS, *image_shape)
        files.append(a6_report.plot_interpolations(
            strips[model_kind], out / f"{model_kind}_interpolation.png", source,
            f"{label}: {STEPS} steps on straight lines between random latent vectors"))
        if model_kind == "vae":
            originals = held_unit[:RECONSTRUCTED]
            files.append(a6_report.plot_reconstructions(
                originals, trainer.reconstruct(originals), out / "vae_reconstructions.png", source,
                "VAE reconstructions (decoded z_mean) of held-out images"))
    files.append(a6_report.plot_losses(
        {"VAE: loss per image": {"total": history["vae"]["loss"],
                                 "reconstruction": history["vae"]["reconstruction"],
                                 "KL (right axis)": history["vae"]["kl"]},
         "GAN": {"discriminator": history["gan"]["discriminator"], "generator": history["gan"]["generator"]}},
        out / "losses.png", source, "Training losses per epoch"))
    files += a6_report.write_score_table(out, source, scores, floor, settings["epochs"], n_scored, feature_source,
                                         quick=bool(quick), n_floor=n_floor, quick_run=quick_run)
    interpolation = {model_kind: dict(zip(("mean_step", "largest_step"), a6_report.interpolation_steps(strip)))
                     for model_kind, strip in strips.items()}
    return report.write_summary(out, {
        "source": source, "device": device, "data": data, "quick": bool(quick), "auto_quick": auto_quick,
        "settings": settings, "estimate": estimate, "parameters": parameters, "history": history,
        "scores": scores, "floor": floor, "interpolation": interpolation, "feature_source": feature_source,
        "timings": dict(timings), "files": files})


def _latent_vectors(rng, n_scored):
    """(grid_z, score_z, line_z): the latent vectors of the sample grids, of the scored images, and
    along the interpolation lines (PAIRS lines of STEPS points each), in that order from ``rng``."""
    grid_z = rng.standard_normal((GRID, a6_models.LATENT_DIM), dtype=np.float32)
    score_z = rng.standard_normal((n_scored, a6_models.LATENT_DIM), dtype=np.float32)
    ends = rng.standard_normal((PAIRS, 2, a6_models.LATENT_DIM))
    lines = np.linspace(0.0, 1.0, STEPS)[None, :, None]
    line_z = ((1 - lines) * ends[:, :1] + lines * ends[:, 1:]).reshape(-1, a6_models.LATENT_DIM).astype(np.float32)
    return grid_z, score_z, line_z


def _padded(images):
    """Fashion-MNIST's uint8 (n, 28, 28) images as (n, 32, 32, 1), with a border of zeros."""
    return np.pad(np.asarray(images)[..., None], FASHION_PAD)


def _feature_network(data_kind, image_shape, quick, data_dir, cache_dir, seed, verify=True):
    if data_kind != "fashion":
        return a6_score.feature_network("faces", image_shape, quick, None, cache_dir, seed)

    def fashion():  # read only when the feature network is not cached
        from fastdl.data import load_fashion_mnist

        (x_train, y_train), _ = load_fashion_mnist(data_dir, verify=verify)
        return _padded(x_train), y_train

    return a6_score.feature_network("fashion", image_shape, quick, fashion, cache_dir, seed)


class _KlMeter(nn.Callback):
    """The epoch's mean KL term, the loss the VAE's Sampling layer adds, weighted by batch as fit
    weighs the loss (the rest of the loss is the reconstruction's)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.total, self.seen = 0.0, 0

    def on_train_batch_end(self, batch, logs=None):
        self.total += sum(self.model.losses) * (logs["seen"] - self.seen)
        self.seen = logs["seen"]

    @property
    def mean(self):
        return self.total / self.seen


class _VaeTrainer:
    """The VAE, trained an epoch at a time on images in [0, 1]."""

    def __init__(self, image_shape, seed, backend=None):
        self.vae, self.encoder, self.decoder = a6_models.build_vae(image_shape, seed=seed, backend=backend)
        self.pixels = float(np.prod(image_shape))

    def count_params(self):
        return self.vae.count_params()

    def epoch(self, images, rng):
        kl = _KlMeter()
        logs = self.vae.fit(images, images, epochs=1, batch_size=BATCH_SIZE, callbacks=[kl],
                            seed=int(rng.integers(2 ** 31))).history
        total = logs["loss"][0]
        return {"loss": total, "reconstruction": total - kl.mean, "kl": kl.mean}

    def generate(self, z):
        return self.decoder.predict(z, batch_size=BATCH_SIZE)

    def reconstruct(self, images):
        return self.decoder.predict(self.encoder.predict(images, batch_size=BATCH_SIZE),
                                    batch_size=BATCH_SIZE)


class _GanTrainer:
    """The GAN, trained an epoch at a time; images are scaled to [-1, 1] and back."""

    def __init__(self, image_shape, seed, backend=None):
        self.gan, self.generator, self.discriminator = a6_models.build_gan(image_shape, seed=seed, backend=backend)

    def count_params(self):
        return self.generator.count_params() + self.discriminator.count_params()

    def epoch(self, images, rng):
        half = BATCH_SIZE // 2
        order = rng.permutation(len(images))
        d_losses, g_losses = [], []
        for first in range(0, len(images), half):
            real = images[order[first:first + half]] * np.float32(2) - np.float32(1)
            d_loss, g_loss = a6_models.gan_step(self.gan, self.generator, self.discriminator, real, rng)
            d_losses.append(d_loss)
            g_losses.append(g_loss)
        return {"discriminator": float(np.mean(d_losses)), "generator": float(np.mean(g_losses))}

    def generate(self, z):
        return (self.generator.predict(z, batch_size=BATCH_SIZE) + np.float32(1)) / np.float32(2)


def _print_decision(estimate, quick, data, given, settings, quick_run, same):
    """What the estimate (of the full run with the sizes ``given``) decided, and the settings that
    run; same: the full run's options for the same data and backend (report.rerun_options)."""
    sized = {**FULL, **given}
    parts = (f"{sized['images']:,} images, {report.epochs(sized['epochs'])} per model: "
             f"VAE {report.minutes(estimate['vae'])}, GAN {report.minutes(estimate['gan'])} min")
    if estimate.get("features"):  # (0: the full feature network is cached)
        parts += f", training the feature network {report.minutes(estimate['features'])} min"
    network = "the quick run's feature network" if quick else "the full run's feature network"
    run = (f"{settings['images']:,} images, {report.epochs(settings['epochs'])} per model, scored on "
           f"{settings['scored']:,} images in {network}")
    options = ("" if data == "faces" else f" --data {data}") + "".join(
        f" --{key} {given[key]}" for key in ("images", "epochs") if key in given)
    size_it = "" if {"images", "epochs"} <= set(given) else " (or size it: --images N --epochs E)"
    report.announce_decision(estimate, parts, quick, run, f"fastdl reproduce a6{options}{same} --full{size_it}",
                             quick_run=quick_run)
