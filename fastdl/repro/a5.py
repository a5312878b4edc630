"""Assignment 5, "Tell the Time", reproduced with fastdl.nn: reading analog clocks.

The course's recipe, as in the write-up: the 18,000 clocks (150x150 grey pixels, labels [hour,
minute]) are shuffled by ``np.random.RandomState(42).permutation``, the first 80% train and the
rest test, scaled to [0, 1]. Every model trains with RMSprop (lr 0.001), batch 100, 60 epochs:

- regression CNN (Conv 16, 32, 32, each max-pooled; Dense 128, 128 with Dropout 0.1; Dense 1)
  on hour + minute / 60, once with the MSE and once with the cyclic "common sense" MSE
  (``nn.CyclicMSE(12)``); its output is read modulo 12;
- classification CNN (Conv 32, 32, 32; same dense part) over 24, 48, 120, 240, 480 and 720
  equal bins of the dial;
- the multi-head network (the 16-32-32 trunk; a minute head regressing minute / 60, an hour head
  of 12 classes).

Every model is scored by the "common sense" error: minutes between true and predicted time the
short way round the dial (11:50 against 0:10 is 20). The course read a predicted class as the
first minute of its bin, which adds half a bin on average; fastdl reads it as the bin's centre
and reports both.

Beyond the course, fastdl's own model (``hands``) reads where each hand points rather than the
time. Its targets are the (cos, sin) of the hour hand's and of the minute hand's angle (four
linear outputs, MSE, on the multi-head's trunk with a fourth convolution, Conv 64 and its
pooling, then Dense 256 and 128): both are continuous
round the dial, so 11:59 and 0:00 are neighbours as they are on the clock, and there is no bin
to round to. It is decoded as a person reads a clock: the minute from the minute hand, the hour
from the hour hand's angle less the minute, ``h = round((hour_hand_minutes - minute) / 60) mod
12``, so the two can never disagree near the hour (the multi-head can say 3:59 for 2:59).
It also learns from the training clocks' mirror images (a mirrored clock shows 12:00 less its
time), for half the epochs, rounded up: twice the clocks in as many steps as the course's models
for an even number of epochs (the full run's 60: 30), one epoch's steps more for an odd one (the
quick run's 3: 2, the steps of 4). The fourth
convolution leaves 7x7x64 features for the dense layers where the course's trunk leaves
17x17x32, and the mirror images double the clocks: the course's networks learn their 14,400
training clocks by heart, and both changes cut that (measured: see the README).

Tables (errors in minutes beside the write-up's, seconds per epoch), the classification sweep,
learning curves, the test clocks read worst, a histogram of the errors and a sample of the data
go to ``<out_dir>/a5/``, each naming its data source. A full run trains ten models for 60 epochs
on 14,400 images, hours on two cores: ``quick=None`` (the default) estimates it here and runs
the quick version when it would take over ten minutes.
"""

from pathlib import Path

import numpy as np

from fastdl import nn
from fastdl.data import scale_images
from fastdl.repro import a5_report, report
from fastdl.repro.a5_models import (CLASS_COUNTS, MODELS, SETTINGS, WRITE_UP, architecture,
                                    compiled_model, decode, n_classes_of, targets, training_data)

__all__ = ["run", "check_options", "split_indices", "prepare_splits", "estimate_full_seconds",
           "check_models", "CLASS_COUNTS", "MODELS"]

TITLE = "Assignment 5: telling the time from analog clocks"
SPLIT_SEED = 42
TRAIN_SHARE = 0.8
QUICK_SIZES = {"train": 800, "test": 200}
QUICK_EPOCHS = 3
SEED = 0
SPLITS = ("train", "test")


def split_indices(n_samples, seed=SPLIT_SEED, train_share=TRAIN_SHARE):
    """The course's split: ``RandomState(seed).permutation(n)``, the first 80% for training.

    Returns
    -------
    train, test : ndarray of int64
    """
    order = np.random.RandomState(seed).permutation(n_samples)
    cut = int(train_share * n_samples)
    return order[:cut], order[cut:]


def prepare_splits(images, labels, sizes=None):
    """Train and test splits as the course made them, scaled to [0, 1] with a channel axis.

    Parameters
    ----------
    images : ndarray of shape (n_samples, height, width), uint8
    labels : ndarray of shape (n_samples, 2), [hour, minute]
    sizes : dict, optional
        At most this many images per split (``{"train": 1000, "test": 250}``): the first ones of
        each split, so a quick run's test images are test images of the full run too.

    Returns
    -------
    dict
        ``{"train"|"test": (x float32 (n, h, w, 1), labels int64 (n, 2), raw uint8 (n, h, w))}``.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if len(images) < 2:
        raise ValueError(f"need at least 2 images to split, got {len(images)}")
    sizes = sizes or {}
    splits = {}
    for split, index in zip(SPLITS, split_indices(len(images))):
        index = index[:sizes.get(split, len(index))]
        raw = np.asarray(images)[index]
        splits[split] = (scale_images(raw), labels[index], raw)
    return splits


def estimate_full_seconds(images, labels, counts, epochs=None, keys=tuple(MODELS), backend=None):
    """Seconds training and scoring every model would take here on splits of these sizes.

    Models that differ only in their loss or their last layer (the two regressions, the six
    classifications) train at the same speed, so each architecture is timed once: one batch
    (compiling and allocating), then ``report.TIMED_BATCHES`` batches of training and of
    prediction, one by one, the fastest counting (:func:`fastdl.repro.report.seconds_per_image`).
    The per-image times are scaled to the run: each epoch trains on the training split and
    predicts the test split (the learning curve), and at the end both splits are predicted.

    Parameters
    ----------
    images : ndarray of shape (n, height, width, 1), float32
        Scaled images to time on (a few hundred are enough).
    labels : ndarray of shape (n, 2)
    counts : dict
        Images per split, ``{"train", "test"}``.
    epochs : int, optional
        Epochs per model (60, the course's, by default).

    Returns
    -------
    dict
        ``{key: seconds for each model, "total": seconds}``.
    """
    batch = SETTINGS["batch_size"]
    n_epochs = SETTINGS["epochs"] if epochs is None else epochs
    timed = slice(0, batch * report.TIMED_BATCHES)
    per_image = {}
    for key in keys:
        arch = architecture(key)
        if arch not in per_image:
            model = compiled_model(key, images.shape[1:], backend=backend)
            per_image[arch] = report.seconds_per_image(model, images[timed], targets(key, labels[timed]),
                                                       batch)
    estimate = {}
    for key in keys:
        train, predict = per_image[architecture(key)]
        estimate[key] = (n_epochs * (counts["train"] * train + counts["test"] * predict)
                         + (counts["train"] + counts["test"]) * predict)
    estimate["total"] = sum(estimate.values())
    return estimate


class EpochTestError(nn.Callback):
    """Records the mean common-sense error on the test split after every epoch, and keeps the
    last epoch's outputs (the trained model's test predictions: not predicted twice)."""

    def __init__(self, key, x_test, labels_test, batch_size):
        self.key, self.x, self.labels, self.batch_size = key, x_test, labels_test, batch_size
        self.errors, self.outputs = [], None

    def on_train_begin(self, logs=None):
        self.errors, self.outputs = [], None

    def on_epoch_end(self, epoch, logs=None):
        from fastdl.metrics import common_sense_minutes

        self.outputs = self.model.predict(self.x, self.batch_size)
        self.errors.append(common_sense_minutes(self.labels, decode(self.key, self.outputs)))


def _load(data_dir, verify):
    """(images, labels, source) from :func:`fastdl.data.load_clocks` (``run``'s check_options has
    checked an explicit ``data_dir``: _check_data_dir)."""
    from fastdl import data

    return data.load_clocks(data_dir, verify=verify, with_source=True)


def _check_data_dir(data_dir):
    """DatasetNotFoundError unless an explicit data_dir (None passes) holds the clocks' files: the
    loader would otherwise fall back to synthetic clocks without anyone noticing the typo."""
    from fastdl.data import DatasetNotFoundError

    if data_dir is None:
        return
    directory = Path(data_dir).expanduser()
    names = ("images.npy", "labels.npy")
    if not any(all((place / name).is_file() for name in names) for place in (directory, directory / "clocks")):
        raise DatasetNotFoundError(
            f"clocks not found in {directory}: it needs images.npy and labels.npy (or a "
            f"clocks/ subfolder with them); without --data-dir fastdl uses $FASTDL_DATA, "
            f"the cache, or renders synthetic clocks (see `fastdl data list`)")


def run(data_dir=None, out_dir="results", quick=None, verify=True, sizes=None, epochs=None,
        seed=SEED, models=None, backend=None):
    """Reproduce assignment 5's table of errors, its classification sweep and its figures.

    Parameters
    ----------
    data_dir : str or Path, optional
        Directory with the course's ``images.npy`` and ``labels.npy``; None: where
        :func:`fastdl.data.load_clocks` looks ($FASTDL_DATA, the cache), else synthetic clocks.
    out_dir : str or Path, default "results"
        Files go to ``out_dir/a5/``.
    quick : bool or None, default None
        True: the first 800 training and 200 test images, 3 epochs per model. False: the
        course's full run. None: estimate the full run's time here (for ``sizes`` and
        ``epochs`` when given) and run the quick version when it would take over ten minutes
        (it says so, with the images and epochs that run, and how to run the full one).
    verify : bool, default True
        Check a synthetic set's recorded SHA-256 (see load_clocks).
    sizes : dict, optional
        Images per split to keep (``{"train", "test"}``), in a quick or a full run (replacing
        the quick run's sizes).
    epochs : int, optional
        Epochs per model (``fastdl reproduce a5 --epochs E``), replacing the quick (3) or full
        (60) count.
    seed : int, default 0
        Seeds every model's initialisation, shuffling and dropout.
    models : sequence of str, optional
        Keys of ``MODELS`` to train ("multihead", "hands", "classes_48", ...), in the table's
        order whatever the order given; None: all ten. The course's figures of models left out
        are left out too (the classification sweep needs a classification).
    backend : str, optional
        The models' backend ("cuda": train on the GPU); None: the process default.

    Returns
    -------
    dict
        Keys: "source", "quick", "auto_quick", "estimate" (seconds, or None), "settings",
        "epochs", "n_images", "parameters", "errors" ({model: {"train", "test"}} mean minutes),
        "left_edge" (the same for the classifications, read as the course did), "write_up",
        "history" ({model: {"loss": [...], "test_error": [...]}}), "seconds_per_epoch",
        "best", "device", "timings", "files".
    """
    from fastdl.metrics import common_sense_errors

    check_options(models=models, epochs=epochs, backend=backend, data_dir=data_dir)
    keys = check_models(models)
    timings = report.Timings()
    with timings("load_data"):
        images, labels, data_source = _load(data_dir, verify)
    out = Path(out_dir) / "a5"
    report.print_header(TITLE)

    auto_quick, estimate = quick is None, None
    n_train_split = len(split_indices(len(images))[0])
    full_counts = report.cap_counts({"train": n_train_split, "test": len(images) - n_train_split},
                                    sizes)
    if auto_quick:
        timed = {"train": SETTINGS["batch_size"] * report.TIMED_BATCHES, "test": 0}
        sample = prepare_splits(images, labels, timed)["train"]
        report.announce_estimate()
        with timings("estimate"):
            estimate = estimate_full_seconds(sample[0], sample[1], full_counts, epochs, keys, backend=backend)
        quick = estimate["total"] > report.AUTO_QUICK_SECONDS
    n_epochs = epochs if epochs is not None else QUICK_EPOCHS if quick else SETTINGS["epochs"]
    splits = prepare_splits(images, labels, QUICK_SIZES if quick and sizes is None else sizes)
    n_images = {split: len(splits[split][1]) for split in SPLITS}
    if auto_quick:
        _print_decision(estimate, quick, keys, full_counts, epochs, n_images, n_epochs,
                        quick_run=sizes is None and epochs is None,
                        same=report.rerun_options(data_dir, backend, verify))
    device = report.compute_device(backend)
    run_kind = "quick run" if quick else "full run"
    source = (f"{data_source}; {run_kind} on {n_images['train']:,} train + {n_images['test']:,} "
              f"test images (RandomState({SPLIT_SEED}) split 80/20), {report.epochs(n_epochs)} per model; "
              f"trained on {device}")
    print(f"data: {source}\n")

    batch = SETTINGS["batch_size"]
    (x_train, y_train, _), (x_test, y_test, _) = splits["train"], splits["test"]
    parameters, errors, left_edge, history, seconds_per_epoch = {}, {}, {}, {}, {}
    test_errors, test_predictions, fit_sizes = {}, {}, {}
    for key in keys:
        approach, detail = MODELS[key]
        model = compiled_model(key, x_train.shape[1:], seed=seed, backend=backend)
        parameters[key] = model.count_params()
        x_fit, y_fit, fit_epochs = training_data(key, x_train, y_train, n_epochs)
        print(f"{approach}, {detail} ({parameters[key]:,} parameters): {report.epochs(fit_epochs)} on "
              f"{len(x_fit):,} clocks")
        # The timer after the tracker: an epoch's time includes the tracker's test prediction,
        # as the console's epoch line (printed after every callback) does.
        timer, tracker = nn.EpochTimer(), EpochTestError(key, x_test, y_test, batch)
        with timings(f"fit_{key}"):
            fitted = model.fit(x_fit, y_fit, epochs=fit_epochs, batch_size=batch,
                               verbose=1, callbacks=[tracker, timer])
        fit_sizes[key] = len(x_fit)
        # Frees a mirrored model's copy of the clocks and their mirror images (2.6 GB on the
        # full run) before it predicts; for the other models x_fit is x_train, which stays.
        del x_fit
        history[key] = {"loss": fitted.history["loss"], "test_error": tracker.errors}
        seconds_per_epoch[key] = timer.seconds
        with timings(f"evaluate_{key}"):
            # The test split's outputs are the tracker's after the last epoch (epochs >= 1).
            outputs = {"train": model.predict(x_train, batch), "test": tracker.outputs}
        errors[key], per_sample = {}, {}
        for split, (_, y, _) in splits.items():
            per_sample[split] = common_sense_errors(y, decode(key, outputs[split]))
            errors[key][split] = float(per_sample[split].mean())
        if n_classes_of(key):
            left_edge[key] = {split: float(common_sense_errors(
                y, decode(key, outputs[split], edge="left")).mean())
                for split, (_, y, _) in splits.items()}
        test_errors[key] = per_sample["test"]
        test_predictions[key] = decode(key, outputs["test"])
        print(f"common-sense error: train {errors[key]['train']:.2f}, test "
              f"{errors[key]['test']:.2f} minutes\n")

    best = min(errors, key=lambda key: errors[key]["test"])
    write_up = {key: dict(zip(SPLITS, values)) for key, values in WRITE_UP.items()}
    files = a5_report.write_tables(out, source, errors, left_edge, write_up, parameters,
                                   n_epochs, seconds_per_epoch, n_images, estimate, quick,
                                   fit_sizes, n_train_split=n_train_split)
    with timings("figures"):
        files += a5_report.write_figures(out, source, splits, errors, left_edge, history,
                                         test_errors, test_predictions, best, fit_sizes)

    return report.write_summary(out, {
        "source": source, "data_source": data_source, "device": device, "quick": bool(quick),
        "auto_quick": auto_quick, "estimate": estimate, "settings": SETTINGS,
        "epochs": n_epochs, "n_images": n_images, "parameters": parameters, "errors": errors,
        "left_edge": left_edge, "write_up": write_up, "history": history,
        "seconds_per_epoch": seconds_per_epoch, "best": best, "timings": dict(timings),
        "files": files,
    })


def check_options(models=None, epochs=None, backend=None, data_dir=None, **_):
    """Raise before anything is loaded or trained if a run with these options cannot go.

    ValueError for unknown model keys (:func:`check_models`), epochs that are not an integer >= 1,
    or an unknown backend name; BackendUnavailableError for a backend that cannot run here (cuda
    without a GPU); DatasetNotFoundError for a data_dir without the clocks' files. ``run``'s other
    parameters are accepted, not checked; ``fastdl reproduce`` calls this for every assignment it
    runs before the first starts.
    """
    _check_data_dir(data_dir)
    check_models(models)
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer))
                               or epochs < 1):
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    report.check_backend(backend)


def check_models(models):
    """The keys of ``models`` (None: all) in ``MODELS``' order; ValueError naming unknown ones."""
    if models is None:
        return list(MODELS)
    if isinstance(models, str):
        models = [models]
    models = list(models)
    unknown = [key for key in models if key not in MODELS]
    if unknown or not models:
        raise ValueError(f"unknown model(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
                         f"choose from {', '.join(MODELS)}")
    return [key for key in MODELS if key in models]


def _print_decision(estimate, quick, keys, full_counts, epochs, n_images, n_epochs, quick_run, same):
    """What the estimate (of ``full_counts`` images, ``epochs`` or 60 a model) decided, and the
    images and epochs that run; same: the full run's options for the same data and backend."""
    count = f"{len(keys)} model{'s' if len(keys) != 1 else ''}"
    full_epochs = SETTINGS["epochs"] if epochs is None else epochs
    parts = (f"{estimate['total'] / 3600:.1f} h: {count}, {full_epochs} epoch"
             f"{'s' if full_epochs != 1 else ''} each on {full_counts['train']:,} training clocks")
    run = (f"{n_images['train']:,} training and {n_images['test']:,} test images, {n_epochs} "
           f"epoch{'s' if n_epochs != 1 else ''} per model")
    options = ("" if len(keys) == len(MODELS) else f" --models {','.join(keys)}") + (
        "" if epochs is None else f" --epochs {epochs}")
    report.announce_decision(estimate, parts, quick, run, f"fastdl reproduce a5 --full{options}{same}",
                             quick_run=quick_run)
