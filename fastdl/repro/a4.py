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

import time
from pathlib import Path

import numpy as np

from fastdl import nn
from fastdl.repro import report
from fastdl.repro.models import course_cnn, course_mlp

TITLE = "Assignment 4: MLP and CNN on {name}"
VALIDATION_SIZE = 5000
QUICK_SIZES = {"train": 2000, "validation": 500, "test": 1000}
QUICK_EPOCHS = 1
AUTO_QUICK_SECONDS = 600.0  # quick=None runs the quick version when a full run would take longer
TIMED_BATCHES = 3  # training batches of each model timed for the estimate, after a warm-up batch
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


def compiled_model(kind, input_shape, seed=SEED, backend=None):
    """A course model compiled with its course optimizer, loss and accuracy metric (on `backend`:
    None for the process default, "cuda" to train on the GPU)."""
    settings = SETTINGS[kind]
    model = BUILDERS[kind](input_shape, seed=seed, backend=backend)
    optimizer = getattr(nn, settings["optimizer"])(lr=settings["lr"])
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def scale_images(images):
    """uint8 images as float32 in [0, 1] (x / 255), channels-last with a channel axis.

    The one scaling every split goes through.

    Parameters
    ----------
    images : ndarray of shape (n, height, width) or (n, height, width, channels), uint8

    Returns
    -------
    ndarray of shape (n, height, width, channels), float32
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"images must be uint8 pixels (0-255), got dtype {images.dtype}")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(f"images must be (n, height, width[, channels]), got shape {images.shape}")
    return images.astype(np.float32) / np.float32(255)


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
    counts = {"train": n_train_images - n_validation, "validation": n_validation,
              "test": n_test_images}
    for split, keep in (sizes or {}).items():
        counts[split] = min(counts[split], keep)
    return counts


def estimate_full_seconds(images, labels, counts, epochs=None, backend=None):
    """Seconds training and evaluating both models would take here on splits of these sizes.

    Each model is trained on one batch (compiling and allocating), then ``TIMED_BATCHES`` batches
    are timed, and evaluation likewise; the per-image times are scaled to the run's epochs
    (training, then validation each epoch) and the final evaluation of every split.

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
    for kind, settings in SETTINGS.items():
        batch = settings["batch_size"]
        n_epochs = (epochs or {}).get(kind, settings["epochs"])
        model = compiled_model(kind, images.shape[1:], backend=backend)
        model.fit(images[:batch], labels[:batch], epochs=1, batch_size=batch)
        timed_x, timed_y = images[:batch * TIMED_BATCHES], labels[:batch * TIMED_BATCHES]
        start = time.perf_counter()
        model.fit(timed_x, timed_y, epochs=1, batch_size=batch, shuffle=False)
        train_per_image = (time.perf_counter() - start) / len(timed_x)
        model.evaluate(images[:batch], labels[:batch], batch_size=batch)
        start = time.perf_counter()
        model.evaluate(timed_x, timed_y, batch_size=batch)
        eval_per_image = (time.perf_counter() - start) / len(timed_x)
        estimate[kind] = (n_epochs * (counts["train"] * train_per_image
                                      + counts["validation"] * eval_per_image)
                          + sum(counts.values()) * eval_per_image)
    estimate["total"] = sum(estimate.values())
    return estimate


def load_dataset(dataset, data_dir=None, verify=True):
    """The dataset's Keras-style arrays and the directory they were read from.

    Returns
    -------
    ((x_train, y_train), (x_test, y_test)), str or None
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    import importlib

    from fastdl import data

    arrays = getattr(data, DATASETS[dataset]["loader"])(data_dir, verify=verify)
    locate = getattr(importlib.import_module(DATASETS[dataset]["module"]), "locate", None)
    return arrays, (str(locate(data_dir)[0].parent) if locate else None)


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
        model. False: the course's full run. None: estimate the full run's time here and run
        the quick version when it would take over ten minutes (it says so, and how to run the
        full one).
    verify : bool, default True
        Check the files' SHA-256 against the published dataset.
    dataset : {"fashion", "cifar10"}, default "fashion"
    n_validation : int, default 5000
        The first this many training images are the validation set.
    sizes : dict, optional
        Images per split to keep (``{"train", "validation", "test"}``), replacing the quick
        run's sizes; for small data.
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
    timings = report.Timings()
    with timings("load_data"):
        ((x_train, y_train), (x_test, y_test)), source_path = load_dataset(dataset, data_dir,
                                                                             verify)
    info = DATASETS[dataset]
    out = Path(out_dir) / "a4" / dataset
    out.mkdir(parents=True, exist_ok=True)
    report.print_header(TITLE.format(name=info["name"]))

    auto_quick, estimate = quick is None, None
    if auto_quick:
        full_counts = split_counts(len(x_train), len(x_test), n_validation, sizes)
        sample_x = scale_images(x_train[n_validation:n_validation + 128 * TIMED_BATCHES])
        sample_y = np.asarray(y_train[n_validation:n_validation + len(sample_x)]).reshape(-1)
        with timings("estimate"):
            estimate = estimate_full_seconds(sample_x, sample_y, full_counts, backend=backend)
        quick = estimate["total"] > AUTO_QUICK_SECONDS
        _print_decision(estimate, quick, dataset)
    if quick and sizes is None:
        sizes = QUICK_SIZES
    splits = prepare_splits(x_train, y_train, x_test, y_test, n_validation, sizes)
    n_images = {split: len(y) for split, (_, y) in splits.items()}
    source = _describe_source(info["name"], source_path, len(x_train), len(x_test), verify,
                              n_images, quick)
    device = report.compute_device(backend)
    print(f"data: {source}\ntrained on: {device}\n")

    epochs = {kind: QUICK_EPOCHS if quick else settings["epochs"]
              for kind, settings in SETTINGS.items()}
    files, accuracies, history, seconds_per_epoch, confusion, parameters = [], {}, {}, {}, {}, {}
    input_shape = splits["train"][0].shape[1:]
    for kind, settings in SETTINGS.items():
        model = compiled_model(kind, input_shape, seed=seed, backend=backend)
        parameters[kind] = model.count_params()
        print(f"{MODEL_LABELS[kind]} ({parameters[kind]:,} parameters): {settings['optimizer']} "
              f"lr {settings['lr']:g}, batch {settings['batch_size']}, "
              f"{epochs[kind]} epoch{'s' if epochs[kind] != 1 else ''}")
        timer = nn.EpochTimer()
        with timings(f"fit_{kind}"):
            fitted = model.fit(*splits["train"], epochs=epochs[kind],
                               batch_size=settings["batch_size"],
                               validation_data=splits["validation"], verbose=1,
                               callbacks=[timer])
        history[kind] = fitted.history
        seconds_per_epoch[kind] = timer.seconds
        with timings(f"evaluate_{kind}"):
            accuracies[kind] = {split: float(model.evaluate(x, y, settings["batch_size"])[1])
                                for split, (x, y) in splits.items()}
            predicted = np.argmax(model.predict(splits["test"][0], settings["batch_size"]), axis=1)
        confusion[kind] = report.confusion_matrix(splits["test"][1], predicted, 10)
        print()

    write_up = {kind: dict(zip(SPLITS, values)) for kind, values in WRITE_UP[dataset].items()}
    files += _write_tables(out, source, info, accuracies, write_up, parameters, epochs,
                           seconds_per_epoch, n_images, estimate, device)
    with timings("figures"):
        for kind, label in MODEL_LABELS.items():
            files.append(report.plot_learning_curves(
                {label: history[kind]}, out / f"learning_curves_{kind}.png", source,
                title=f"{label} on {info['name']}: accuracy and loss per epoch"))
        files.append(report.plot_confusion_matrices(
            {"test set": {MODEL_LABELS[kind]: confusion[kind] for kind in SETTINGS}},
            out / "confusion_matrices.png", source,
            title=f"Confusion matrices on the test set, classes {_class_key(info['classes'])}"))
    files.append(report.write_json(out / "confusion_matrices.json", {
        "source": source, "classes": list(info["classes"]), "rows": "true class",
        "columns": "predicted class", "matrices": confusion}))

    result = {
        "source": source, "source_path": source_path, "dataset": dataset, "quick": bool(quick), "auto_quick": auto_quick,
        "estimate": estimate, "settings": SETTINGS, "epochs": epochs, "n_images": n_images,
        "parameters": parameters, "accuracies": accuracies, "write_up": write_up,
        "history": history, "seconds_per_epoch": seconds_per_epoch,
        "confusion_matrices": confusion, "device": device, "timings": dict(timings), "files": files,
    }
    summary_path = str(out / "summary.json")
    files.append(summary_path)
    report.write_json(summary_path, result)
    return result


def _class_key(classes):
    return ", ".join(f"{code} {name}" for code, name in enumerate(classes))


def _describe_source(name, path, n_train_images, n_test_images, verify, n_images, quick):
    checked = "SHA-256 verified" if verify else "unverified: verify=False"
    where = f" from {path}" if path else ""
    used = ", ".join(f"{n_images[split]:,} {split}" for split in SPLITS)
    kind = "quick run" if quick else "full run"
    return (f"{name}{where}, {n_train_images:,} training + {n_test_images:,} test images "
            f"({checked}); {kind} on {used}")


def _print_decision(estimate, quick, dataset):
    minutes = estimate["total"] / 60
    parts = ", ".join(f"{MODEL_LABELS[kind]} {estimate[kind] / 60:.1f}" for kind in SETTINGS)
    if not quick:
        print(f"A full run takes about {minutes:.1f} min here ({parts}); running it.\n")
        return
    option = "" if dataset == "fashion" else f" --dataset {dataset}"
    print(f"A full run would take about {minutes:.0f} min here ({parts} min), so this is the "
          f"quick run ({QUICK_SIZES['train']:,} training, {QUICK_SIZES['validation']:,} "
          f"validation and {QUICK_SIZES['test']:,} test images, {QUICK_EPOCHS} epoch per model).\n"
          f"The full run: fastdl reproduce a4{option} --full\n")


def _write_tables(out, source, info, accuracies, write_up, parameters, epochs, seconds_per_epoch,
                  n_images, estimate, device):
    rows = []
    for kind, label in MODEL_LABELS.items():
        ours = [f"{accuracies[kind][split]:.3f}" for split in SPLITS]
        theirs = " / ".join(f"{write_up[kind][split]:.2f}" for split in SPLITS)
        rows.append([info["name"], label, f"{parameters[kind]:,}", *ours, theirs])
    notes = ["Accuracies of the trained models evaluated on each split (inference mode: no "
             "dropout). Every split is scaled to [0, 1] alike; the write-up's CNN test accuracy "
             "of 0.22 came from test images that were never scaled.", f"Trained on {device}."]
    if any(epochs[kind] != SETTINGS[kind]["epochs"] for kind in SETTINGS):
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
    for kind, label in MODEL_LABELS.items():
        seconds = seconds_per_epoch[kind]
        time_rows.append([label, SETTINGS[kind]["optimizer"], SETTINGS[kind]["batch_size"],
                          len(seconds), f"{n_images['train']:,}",
                          *report.epoch_time_cells(seconds, n_images["train"]),
                          f"{sum(seconds):.1f}"])
    time_notes = ["Wall time of each epoch: its training steps and the validation pass.",
                  report.EPOCH_TIME_NOTE, f"Trained on {device}."]
    if estimate is not None:
        time_notes.append("Estimated full run here (minutes): " + ", ".join(
            f"{MODEL_LABELS[kind]} {estimate[kind] / 60:.1f}" for kind in SETTINGS)
            + f", total {estimate['total'] / 60:.1f}.")
    files += report.write_table(
        out, "epoch_times", f"Seconds per epoch on {info['name']}",
        ["Model", "Optimizer", "Batch", "Epochs", "Training images", "First epoch (s)",
         "Later epochs, mean (s)", "Images/s", "Total (s)"],
        time_rows, source, notes=time_notes,
        data={"seconds_per_epoch": seconds_per_epoch, "estimate": estimate, "device": device})
    return files
