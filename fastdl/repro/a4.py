"""Assignment 4, "Fashion MNIST & CIFAR 10 - TensorFlow", reproduced with fastdl.nn.

The course's two networks, as in the write-up: an MLP (Flatten-300-100-10, ReLU, softmax; SGD at
Keras' default lr 0.01, batch 32, 30 epochs) and a CNN (five 'same' convolutions in three
max-pooled blocks, then Dense 128-64-10 with Dropout 0.5; RMSprop at lr 0.001, batch 128, 12
epochs), both with sparse categorical cross-entropy. The first 5,000 training images are the
validation set. Every split is scaled to [0, 1] by one function: the write-up's CNN scored 0.22
on test only because its test images were never scaled. Tables (train / validation / test
accuracy beside the write-up's, seconds per epoch), learning curves and the test set's confusion
matrices go to ``<out_dir>/a4/<dataset>/``, each naming its data source.

A full run trains 55,000 images for 30 + 12 epochs; ``quick=None`` (the default) estimates how
long that takes here and runs the quick version instead when it would take over ten minutes.
"""

from pathlib import Path

import numpy as np

from fastdl import nn
from fastdl.data import scale_images
from fastdl.repro import report
from fastdl.repro.models import course_cnn, course_mlp

TITLE = "Assignment 4: MLP and CNN on {name}"
VALIDATION_SIZE = 5000
QUICK_SIZES = {"train": 2000, "validation": 500, "test": 1000}
QUICK_EPOCHS = 1
SEED = 0
MODEL_LABELS = {"mlp": "MLP", "cnn": "CNN"}
# Keras' defaults where the course used them (SGD lr 0.01, RMSprop lr 0.001, batch 32).
SETTINGS = {
    "mlp": {"optimizer": "SGD", "lr": 0.01, "batch_size": 32, "epochs": 30},
    "cnn": {"optimizer": "RMSprop", "lr": 0.001, "batch_size": 128, "epochs": 12},
}
# The write-up's table: dataset -> model -> (train, validation, test) accuracy.
WRITE_UP = {
    "fashion": {"mlp": (0.92, 0.88, 0.85), "cnn": (0.92, 0.89, 0.22)},
    "cifar10": {"mlp": (0.63, 0.48, 0.38), "cnn": (0.75, 0.71, 0.54)},
}
DATASETS = {
    "fashion": {"name": "Fashion-MNIST", "loader": "load_fashion_mnist",
                "module": "fastdl.data.fashion_mnist", "classes": (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
        "Ankle boot")},
    "cifar10": {"name": "CIFAR-10", "loader": "load_cifar10", "module": "fastdl.data.cifar10",
                "classes": (
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")},
}
SPLITS = ("train", "validation", "test")


BUILDERS = {"mlp": course_mlp, "cnn": course_cnn}


def compiled_model(key, input_shape, seed=SEED, backend=None):
    """A course model ("mlp" or "cnn") compiled with its course optimizer, loss and accuracy
    metric (on `backend`: None for the process default, "cuda" to train on the GPU)."""
    settings = SETTINGS[key]
    model = BUILDERS[key](input_shape, seed=seed, backend=backend)
    optimizer = getattr(nn, settings["optimizer"])(lr=settings["lr"])
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def prepare_splits(x_train, y_train, x_test, y_test, n_validation=VALIDATION_SIZE, sizes=None):
    """Train / validation / test splits as the course made them, all scaled alike.

    The first ``n_validation`` training images are the validation set, the rest the training
    set; ``sizes`` keeps the first images of each split (the quick run's subsets).

    Parameters
    ----------
    x_train, x_test : ndarray of uint8, shape (n, height, width[, channels])
    y_train, y_test : ndarray of shape (n,) or (n, 1), class codes
    n_validation : int, default 5000
    sizes : dict, optional
        At most this many images per split, e.g. ``{"train": 2000, "validation": 500,
        "test": 1000}``; missing keys keep the whole split.

    Returns
    -------
    dict
        ``{"train"|"validation"|"test": (x float32 (n, h, w, c) in [0, 1], y int64 (n,))}``.
    """
    if not 0 < n_validation < len(x_train):
        raise ValueError(f"n_validation={n_validation} must leave training images: the training "
                         f"set has {len(x_train)}")
    raw = {"train": (x_train[n_validation:], y_train[n_validation:]),
           "validation": (x_train[:n_validation], y_train[:n_validation]),
           "test": (x_test, y_test)}
    sizes = sizes or {}
    splits = {}
    for split in SPLITS:
        x, y = raw[split]
        keep = sizes.get(split)
        if keep is not None:
            x, y = x[:keep], y[:keep]
        splits[split] = (scale_images(x), np.asarray(y).reshape(-1).astype(np.int64))
    return splits


def split_counts(n_train_images, n_test_images, n_validation=VALIDATION_SIZE, sizes=None):
    """How many images each split gets from data of this size (as prepare_splits cuts them)."""
    return report.cap_counts({"train": n_train_images - n_validation, "validation": n_validation,
                              "test": n_test_images}, sizes)


def estimate_full_seconds(images, labels, counts, epochs=None, backend=None):
    """Seconds training and evaluating both models would take here on splits of these sizes.

    Each model is trained on one batch (compiling and allocating), then ``report.TIMED_BATCHES``
    batches (more where a batch takes milliseconds) are timed one by one, and evaluation likewise,
    the fastest counting (:func:`fastdl.repro.report.seconds_per_image`); the per-image times are
    scaled to the run's epochs (training, then validation each epoch) and the final evaluation of
    every split.

    Parameters
    ----------
    images : ndarray of shape (n, height, width, channels), float32
        Scaled training images to time on (a few hundred are enough).
    labels : ndarray of shape (n,)
    counts : dict
        Images per split, ``{"train", "validation", "test"}`` (see split_counts).
    epochs : dict, optional
        Epochs per model; the course's by default.

    Returns
    -------
    dict
        ``{"mlp": seconds, "cnn": seconds, "total": seconds}``.
    """
    estimate = {}
    for key, settings in SETTINGS.items():
        batch = settings["batch_size"]
        n_epochs = (epochs or {}).get(key, settings["epochs"])
        model = compiled_model(key, images.shape[1:], backend=backend)
        timed = slice(0, batch * report.TIMED_BATCHES)
        train_per_image, eval_per_image = report.seconds_per_image(
            model, images[timed], labels[timed], batch, infer="evaluate")
        estimate[key] = (n_epochs * (counts["train"] * train_per_image
                                     + counts["validation"] * eval_per_image)
                         + sum(counts.values()) * eval_per_image)
    estimate["total"] = sum(estimate.values())
    return estimate


def load_dataset(dataset, data_dir=None, verify=True):
    """The dataset's Keras-style arrays and the directory they were read from.

    Returns
    -------
    ((x_train, y_train), (x_test, y_test)), str
    """
    _check_dataset(dataset)
    from fastdl import data

    arrays = getattr(data, DATASETS[dataset]["loader"])(data_dir, verify=verify)
    return arrays, str(_dataset_module(dataset).locate(data_dir)[0].parent)


def _dataset_module(dataset):
    """fastdl.data's module of the dataset (its loader and ``locate``)."""
    import importlib

    return importlib.import_module(DATASETS[dataset]["module"])


def _check_dataset(dataset):
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")


def check_options(dataset="fashion", backend=None, data_dir=None, **_):
    """Raise before anything is loaded or trained if a run with these options cannot go.

    ValueError for an unknown dataset or backend name, BackendUnavailableError for a backend that
    cannot run here (cuda without a GPU), DatasetNotFoundError where the dataset's files are not
    found (looked for, not read). ``run``'s other parameters are accepted, not checked;
    ``fastdl reproduce`` calls this for every assignment it runs before the first starts.
    """
    _check_dataset(dataset)
    report.check_backend(backend)
    _dataset_module(dataset).locate(data_dir)


def run(data_dir=None, out_dir="results", quick=None, verify=True, dataset="fashion",
        n_validation=VALIDATION_SIZE, sizes=None, seed=SEED, backend=None):
    """Reproduce assignment 4's accuracy table, learning curves, confusion matrices and timings.

    Parameters
    ----------
    data_dir : str or Path, optional
        Directory with the dataset's files; None: the loader's usual places
        (see :func:`fastdl.data.load_fashion_mnist`).
    out_dir : str or Path, default "results"
        Files go to ``out_dir/a4/<dataset>/``.
    quick : bool or None, default None
        True: the first 2,000 training, 500 validation and 1,000 test images, one epoch per
        model. False: the course's full run. None: estimate the full run's time here (on
        ``sizes`` when given) and run the quick version when it would take over ten minutes (it
        says so, with the images and epochs that run, and how to run the full one).
    verify : bool, default True
        Check the files' SHA-256 against the published dataset.
    dataset : {"fashion", "cifar10"}, default "fashion"
    n_validation : int, default 5000
        The first this many training images are the validation set.
    sizes : dict, optional
        Images per split to keep (``{"train", "validation", "test"}``), in a quick or a full
        run (replacing the quick run's sizes); for small data.
    seed : int, default 0
        Seeds both models' initialisation, shuffling and dropout.
    backend : str, optional
        The models' backend ("cuda": train on the GPU); None: the process default. The tables
        and the summary say which device trained them.

    Returns
    -------
    dict
        Keys: "source", "source_path", "dataset", "quick", "auto_quick" (whether quick was chosen by the
        estimate), "estimate" (seconds of a full run, or None), "settings", "n_images"
        (per split), "parameters" (per model), "accuracies" ({model: {split: float}}),
        "write_up" ({model: {split: float}}), "history" ({model: {"loss", "accuracy",
        "val_loss", "val_accuracy"}}), "seconds_per_epoch" ({model: [float]}),
        "confusion_matrices" ({model: 10x10 list}), "device" (what trained the models), "timings",
        "files".
    """
    check_options(dataset=dataset, backend=backend, data_dir=data_dir)
    timings = report.Timings()
    with timings("load_data"):
        ((x_train, y_train), (x_test, y_test)), source_path = load_dataset(dataset, data_dir,
                                                                             verify)
    info = DATASETS[dataset]
    out = Path(out_dir) / "a4" / dataset
    report.print_header(TITLE.format(name=info["name"]))

    auto_quick, estimate = quick is None, None
    if auto_quick:
        full_counts = split_counts(len(x_train), len(x_test), n_validation, sizes)
        largest_batch = max(settings["batch_size"] for settings in SETTINGS.values())
        sample = slice(n_validation, n_validation + largest_batch * report.TIMED_BATCHES)
        sample_x = scale_images(x_train[sample])
        sample_y = np.asarray(y_train[sample]).reshape(-1)
        report.announce_estimate()
        with timings("estimate"):
            estimate = estimate_full_seconds(sample_x, sample_y, full_counts, backend=backend)
        quick = estimate["total"] > report.AUTO_QUICK_SECONDS
    if quick and sizes is None:
        sizes = QUICK_SIZES
    splits = prepare_splits(x_train, y_train, x_test, y_test, n_validation, sizes)
    n_images = {split: len(y) for split, (_, y) in splits.items()}
    epochs = {key: QUICK_EPOCHS if quick else settings["epochs"]
              for key, settings in SETTINGS.items()}
    if auto_quick:
        _print_decision(estimate, quick, dataset, n_images, epochs, report.rerun_options(data_dir, backend, verify))
    source = _describe_source(info["name"], source_path, len(x_train), len(x_test), verify,
                              n_images, quick)
    device = report.compute_device(backend)
    print(f"data: {source}\ntrained on: {device}\n")

    files, accuracies, history, seconds_per_epoch, confusion, parameters = [], {}, {}, {}, {}, {}
    input_shape = splits["train"][0].shape[1:]
    for key, settings in SETTINGS.items():
        model = compiled_model(key, input_shape, seed=seed, backend=backend)
        parameters[key] = model.count_params()
        print(f"{MODEL_LABELS[key]} ({parameters[key]:,} parameters): {settings['optimizer']} "
              f"lr {settings['lr']:g}, batch {settings['batch_size']}, "
              f"{epochs[key]} epoch{'s' if epochs[key] != 1 else ''}")
        timer = nn.EpochTimer()
        with timings(f"fit_{key}"):
            fitted = model.fit(*splits["train"], epochs=epochs[key],
                               batch_size=settings["batch_size"],
                               validation_data=splits["validation"], verbose=1,
                               callbacks=[timer])
        history[key] = fitted.history
        seconds_per_epoch[key] = timer.seconds
        with timings(f"evaluate_{key}"):
            accuracies[key] = {split: float(model.evaluate(x, y, settings["batch_size"])[1])
                               for split, (x, y) in splits.items()}
            predicted = np.argmax(model.predict(splits["test"][0], settings["batch_size"]), axis=1)
        confusion[key] = report.confusion_matrix(splits["test"][1], predicted, len(info["classes"]))
        print()

    write_up = {key: dict(zip(SPLITS, values)) for key, values in WRITE_UP[dataset].items()}
    files += _write_tables(out, source, info, accuracies, write_up, parameters, epochs,
                           seconds_per_epoch, n_images, estimate, device)
    with timings("figures"):
        for key, label in MODEL_LABELS.items():
            files.append(report.plot_learning_curves(
                {label: history[key]}, out / f"learning_curves_{key}.png", source,
                title=f"{label} on {info['name']}: accuracy and loss per epoch"))
        files.append(report.plot_confusion_matrices(
            {"test set": {MODEL_LABELS[key]: confusion[key] for key in SETTINGS}},
            out / "confusion_matrices.png", source,
            title=f"Confusion matrices on the test set, classes {_class_key(info['classes'])}"))
    files.append(report.write_json(out / "confusion_matrices.json", {
        "source": source, "classes": list(info["classes"]), "rows": "true class",
        "columns": "predicted class", "matrices": confusion}))

    return report.write_summary(out, {
        "source": source, "source_path": source_path, "dataset": dataset, "quick": bool(quick),
        "auto_quick": auto_quick, "estimate": estimate, "settings": SETTINGS, "epochs": epochs,
        "n_images": n_images, "parameters": parameters, "accuracies": accuracies,
        "write_up": write_up, "history": history, "seconds_per_epoch": seconds_per_epoch,
        "confusion_matrices": confusion, "device": device, "timings": dict(timings), "files": files,
    })


def _class_key(classes):
    return ", ".join(f"{code} {name}" for code, name in enumerate(classes))


def _describe_source(name, path, n_train_images, n_test_images, verify, n_images, quick):
    checked = "SHA-256 verified" if verify else "unverified: verify=False"
    where = f" from {path}" if path else ""
    used = ", ".join(f"{n_images[split]:,} {split}" for split in SPLITS)
    run_kind = "quick run" if quick else "full run"
    return (f"{name}{where}, {n_train_images:,} training + {n_test_images:,} test images "
            f"({checked}); {run_kind} on {used}")


def _print_decision(estimate, quick, dataset, n_images, epochs, same):
    """What the estimate decided, naming the images and epochs that run (the caller's sizes too);
    same: the full run's options for the same data and backend (report.rerun_options)."""
    parts = ", ".join(f"{MODEL_LABELS[key]} {estimate[key] / 60:.1f}" for key in SETTINGS) + " min"
    counts = set(epochs.values())
    per_model = (f"{min(counts)} epoch{'s' if min(counts) != 1 else ''} per model" if len(counts) == 1
                 else " and ".join(f"{MODEL_LABELS[key]} {n}" for key, n in epochs.items()) + " epochs")
    run = (f"{n_images['train']:,} training, {n_images['validation']:,} validation and "
           f"{n_images['test']:,} test images, {per_model}")
    option = "" if dataset == "fashion" else f" --dataset {dataset}"
    report.announce_decision(estimate, parts, quick, run, f"fastdl reproduce a4{option} --full{same}")


def _write_tables(out, source, info, accuracies, write_up, parameters, epochs, seconds_per_epoch,
                  n_images, estimate, device):
    rows = []
    for key, label in MODEL_LABELS.items():
        ours = [f"{accuracies[key][split]:.3f}" for split in SPLITS]
        theirs = " / ".join(f"{write_up[key][split]:.2f}" for split in SPLITS)
        rows.append([info["name"], label, f"{parameters[key]:,}", *ours, theirs])
    notes = ["Accuracies of the trained models evaluated on each split (inference mode: no "
             "dropout). Every split is scaled to [0, 1] alike; the write-up's CNN test accuracy "
             "of 0.22 came from test images that were never scaled.", f"Trained on {device}."]
    if any(epochs[key] != SETTINGS[key]["epochs"] for key in SETTINGS):
        notes.append("Quick run: " + ", ".join(f"{MODEL_LABELS[k]} {epochs[k]} epoch"
                                               + ("s" if epochs[k] != 1 else "")
                                               for k in SETTINGS)
                     + f" instead of {SETTINGS['mlp']['epochs']} and "
                       f"{SETTINGS['cnn']['epochs']}; not comparable with the write-up.")
    files = report.write_table(
        out, "accuracy", f"Train / validation / test accuracy on {info['name']}",
        ["Dataset", "Model", "Parameters", "Train accuracy", "Validation accuracy",
         "Test accuracy", "Write-up (train / validation / test)"],
        rows, source, notes=notes,
        data={"accuracies": accuracies, "write_up": write_up, "parameters": parameters,
              "epochs": epochs, "n_images": n_images, "device": device})

    time_rows = []
    for key, label in MODEL_LABELS.items():
        seconds = seconds_per_epoch[key]
        time_rows.append([label, SETTINGS[key]["optimizer"], SETTINGS[key]["batch_size"],
                          len(seconds), f"{n_images['train']:,}",
                          *report.epoch_time_cells(seconds, n_images["train"]),
                          f"{sum(seconds):.1f}"])
    time_notes = ["Wall time of each epoch: its training steps and the validation pass.",
                  report.EPOCH_TIME_NOTE, f"Trained on {device}."]
    if estimate is not None:
        time_notes.append("Estimated full run here (minutes): " + ", ".join(
            f"{MODEL_LABELS[key]} {estimate[key] / 60:.1f}" for key in SETTINGS)
            + f", total {estimate['total'] / 60:.1f}.")
    files += report.write_table(
        out, "epoch_times", f"Seconds per epoch on {info['name']}",
        ["Model", "Optimizer", "Batch", "Epochs", "Training images", "First epoch (s)",
         "Later epochs, mean (s)", "Images/s", "Total (s)"],
        time_rows, source, notes=time_notes,
        data={"seconds_per_epoch": seconds_per_epoch, "estimate": estimate, "device": device})
    return files
