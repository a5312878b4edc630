"""Assignment 5's tables and figures: errors in minutes, seconds per epoch, the classification
sweep, learning curves, the clocks read worst, a histogram of the errors and a sample of clocks.

Every file names the data source (``source``), as all reproductions do.
"""

import numpy as np

from fastdl.repro import report
from fastdl.repro.a5_models import CLASS_COUNTS, DIAL_MINUTES, MODELS, SETTINGS, mirrored_epochs

GRID_ROWS, GRID_COLUMNS = 4, 6  # the clocks read worst
SAMPLE_SIDE = 6  # samples.png: 6x6 clocks


def format_hm(hm):
    """An [hour, minute] row as "h:mm", the minute rounded (hours 0-11, as the labels)."""
    total = int(round(float(hm[0]) * 60 + float(hm[1]))) % DIAL_MINUTES
    return f"{total // 60}:{total % 60:02d}"


def _label(key):
    approach, detail = MODELS[key]
    return f"{approach}, {detail}"


def write_tables(out, source, errors, left_edge, write_up, parameters, n_epochs,
                 seconds_per_epoch, n_images, estimate, quick, fit_sizes=None, n_train_split=None):
    """errors.md/.json (every model beside the write-up) and epoch_times.md/.json.

    ``fit_sizes``: the clocks each model trains on per epoch, by key (default: the training
    split's count). ``n_train_split``: the clocks of the whole training split, of which the run
    may have kept fewer (default: as many as it kept). The errors table's note calls the run a
    "Quick run" only when ``quick`` is true; any other run shorter than the course's says how.
    """
    fit_sizes = fit_sizes or {}
    rows = []
    for key in errors:
        approach, detail = MODELS[key]
        edge = left_edge.get(key)
        theirs = write_up.get(key)
        rows.append([approach, detail, f"{parameters[key]:,}", f"{errors[key]['train']:.2f}",
                     f"{errors[key]['test']:.2f}",
                     f"{edge['train']:.2f} / {edge['test']:.2f}" if edge else "-",
                     f"{theirs['train']:.2f} / {theirs['test']:.2f}" if theirs else "-"])
    notes = [
        "Common-sense error: mean minutes between the true and the predicted time, the short "
        "way round the 12-hour dial (11:50 against 0:10 is 20 minutes). Models are scored in "
        "inference mode (no dropout); regression outputs are read modulo 12 hours.",
        "A predicted class is read here as the centre of its bin (the middle of the whole "
        "minutes it holds). The course read it as the bin's first minute, which is early by "
        "half a bin on average even when the class is right (14.5 minutes for 24 classes, "
        "none for 720): the left-edge column reads our models that way, to set beside the "
        "write-up's numbers.",
        "fastdl: hand angles is fastdl's own model, not the course's: four linear outputs, the "
        "(cos, sin) of the hour hand's and of the minute hand's angle (MSE), on the multi-head's "
        "convolutions and a fourth one (Conv 64, pooled); the minute is read from the minute "
        "hand and the hour from the hour hand's angle less the minute, so the two cannot "
        "disagree near the hour. It also "
        "learns from the training clocks' mirror images (12:00 less their time), for half the "
        f"epochs, rounded up ({mirrored_steps(n_epochs)}).",
    ]
    shorter = ", ".join(_shorter_than_the_course(
        n_epochs, n_images["train"], n_images["train"] if n_train_split is None else n_train_split))
    if quick:
        notes.append("Quick run" + (f": {shorter}" if shorter else "")
                     + "; not comparable with the write-up.")
    elif shorter:
        notes.append(f"{shorter}; not comparable with the write-up.")
    if "synthetic" in source:
        notes.append("Synthetic clocks (fastdl's renderer), not the course's images: the "
                     "write-up's numbers are beside ours for orientation only.")
    files = report.write_table(
        out, "errors", "Common-sense error in minutes, train / test, on the clocks",
        ["Approach", "Loss / classes", "Parameters", "Train error (min)", "Test error (min)",
         "Course's left-edge reading (train / test)", "Write-up (train / test)"],
        rows, source, notes=notes,
        data={"errors": errors, "left_edge": left_edge, "write_up": write_up,
              "parameters": parameters, "epochs": n_epochs, "n_images": n_images})

    time_rows = []
    for key in seconds_per_epoch:
        seconds = seconds_per_epoch[key]
        n_fit = fit_sizes.get(key, n_images["train"])
        time_rows.append([_label(key), SETTINGS["batch_size"], len(seconds), f"{n_fit:,}",
                          *report.epoch_time_cells(seconds, n_fit), f"{sum(seconds):.1f}"])
    time_notes = [f"Wall time of each epoch: its training steps ({SETTINGS['optimizer']}, batch "
                  f"{SETTINGS['batch_size']}) and the prediction of the test split for the "
                  "learning curve, as the console's epoch lines.", report.EPOCH_TIME_NOTE]
    if estimate is not None:
        time_notes.append(f"Estimated full run here: {estimate['total'] / 60:.0f} minutes "
                          f"({estimate['total'] / 3600:.1f} h; " + ", ".join(
                              f"{key} {estimate[key] / 60:.0f}" for key in seconds_per_epoch) + " min).")
    files += report.write_table(
        out, "epoch_times", "Seconds per epoch on the clocks",
        ["Model", "Batch", "Epochs", "Training images", "First epoch (s)",
         "Later epochs, mean (s)", "Images/s", "Total (s)"],
        time_rows, source, notes=time_notes,
        data={"seconds_per_epoch": seconds_per_epoch, "estimate": estimate})
    return files


def _shorter_than_the_course(n_epochs, n_train, n_train_split):
    """How a run is shorter than the course's, in words (an empty list when it is not)."""
    shorter = []
    if n_train < n_train_split:
        shorter.append(f"{n_train:,} of the {n_train_split:,} training images")
    if n_epochs != SETTINGS["epochs"]:
        shorter.append(f"{n_epochs} epoch{'s' if n_epochs != 1 else ''} instead of {SETTINGS['epochs']}")
    return shorter


def mirrored_steps(n_epochs):
    """The epochs and steps of a model trained on the clocks and their mirror images, in words."""
    fit_epochs = mirrored_epochs(n_epochs)
    steps = ("as many steps as the other models" if 2 * fit_epochs == n_epochs else
             f"the steps of {2 * fit_epochs} epochs of the other models, one epoch's steps more than theirs")
    return f"{fit_epochs} of {n_epochs} on twice the clocks: {steps}"


def write_figures(out, source, splits, errors, left_edge, history, test_errors,
                  test_predictions, best, fit_sizes=None):
    """Every figure of the run; returns the paths written (``fit_sizes``: see write_tables)."""
    raw_train, labels_train = splits["train"][2], splits["train"][1]
    raw_test, labels_test = splits["test"][2], splits["test"][1]
    worst = np.argsort(-test_errors[best], kind="stable")
    sweep = ([plot_class_sweep(errors, left_edge, out / "classification_sweep.png", source)]
             if any(key.startswith("classes_") for key in errors) else [])
    return sweep + [
        plot_loss_and_test_error(history, out / "learning_curves.png", source,
                             {key: size / len(labels_train)
                              for key, size in (fit_sizes or {}).items()}),
        plot_clock_grid(raw_test[worst], labels_test[worst], test_predictions[best][worst],
                        out / "worst_clocks.png", source,
                        title=f"Test clocks read worst by the best model ({_label(best)}): "
                              "true / read (error)"),
        plot_error_histogram(test_errors, errors, out / "error_histogram.png", source),
        plot_clock_grid(raw_train, labels_train, None, out / "samples.png", source,
                        rows=SAMPLE_SIDE, columns=SAMPLE_SIDE,
                        title="Training clocks and their times (h:mm)"),
    ]


def plot_class_sweep(errors, left_edge, path, source):
    """Train and test error against the number of classes (log x): both readings, the write-up's."""
    from fastdl.repro.a5_models import WRITE_UP

    plt = report.get_pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    counts = [n for n in CLASS_COUNTS if f"classes_{n}" in errors]
    keys = [f"classes_{n}" for n in counts]
    for split, color in (("train", "C0"), ("test", "C1")):
        ax.plot(counts, [errors[key][split] for key in keys], "-o", color=color,
                label=f"{split}, bin centre (fastdl)")
        ax.plot(counts, [left_edge[key][split] for key in keys], "--s", color=color, alpha=0.6,
                markersize=4, label=f"{split}, bin's first minute (course)")
        ax.plot(counts, [WRITE_UP[key][0 if split == "train" else 1] for key in keys], ":x",
                color=color, alpha=0.5, label=f"{split}, write-up")
    ax.set_xscale("log")
    ax.set_xticks(counts)
    ax.set_xticklabels([str(n) for n in counts])
    ax.minorticks_off()
    ax.set_xlabel("number of classes")
    ax.set_ylabel("common-sense error (minutes)")
    ax.set_title("Classification: error against the number of classes", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return report.save_figure(fig, path, source)


def plot_loss_and_test_error(history, path, source, passes=None):
    """Training loss (log scale) and test error in minutes per epoch, one line per model.

    ``passes``: training splits' worth of clocks in one epoch of a model, by key (default 1): a
    model that trains on the split and its mirror images is plotted at 2, 4, 6... so that
    models are compared at the same number of steps.
    """
    from matplotlib.ticker import MaxNLocator

    passes = passes or {}

    plt = report.get_pyplot()
    fig, (ax_loss, ax_error) = plt.subplots(1, 2, figsize=(13, 4.8))
    colors = plt.get_cmap("tab10").colors
    for i, (key, curves) in enumerate(history.items()):
        epochs = passes.get(key, 1) * np.arange(1, len(curves["loss"]) + 1)
        style = dict(color=colors[i % len(colors)], marker="o", markersize=3, label=_label(key))
        ax_loss.plot(epochs, curves["loss"], **style)
        ax_error.plot(epochs, curves["test_error"], **style)
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("training loss (each model's own)")
    ax_error.set_ylabel("test common-sense error (minutes)")
    for ax in (ax_loss, ax_error):
        ax.set_xlabel("epoch (passes over the training split; mirrored clocks count too)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.grid(alpha=0.3)
    fig.suptitle("Learning curves", fontsize=10)
    fig.tight_layout()
    # One legend for both panels (a model has one colour in each), below them: inside a panel
    # ten long labels cover the curves.
    handles, labels = ax_error.get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0), ncol=2, fontsize=7,
               frameon=False)
    return report.save_figure(fig, path, source)


def plot_clock_grid(images, true_hm, pred_hm, path, source, rows=GRID_ROWS,
                    columns=GRID_COLUMNS, title="Clocks"):
    """The first rows x columns clocks with their true time (and the predicted one, if given)."""
    plt = report.get_pyplot()
    rows = max(1, min(rows, -(-len(images) // columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(1.9 * columns, 2.3 * rows), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i >= len(images):
            continue
        ax.imshow(images[i], cmap="gray", vmin=0, vmax=255)
        text = format_hm(true_hm[i])
        if pred_hm is not None:
            from fastdl.metrics import common_sense_errors

            error = common_sense_errors(true_hm[i:i + 1], pred_hm[i:i + 1])[0]
            text += f" / {format_hm(pred_hm[i])} ({error:.0f} min)"
        ax.set_title(text, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return report.save_figure(fig, path, source)


def plot_error_histogram(test_errors, errors, path, source):
    """Test errors of the regression with the cyclic loss, the best classification, the
    multi-head and fastdl's own model (those trained; every model trained where none of them
    is), in 5- or 15-minute bins (counts on a linear axis, or on a symlog one where a bin holds
    over 50)."""
    from matplotlib.ticker import FixedLocator, MaxNLocator, StrMethodFormatter

    plt = report.get_pyplot()
    classes = [key for key in test_errors if key.startswith("classes_")]
    shown = ["regression_cyclic", min(classes, key=lambda key: errors[key]["test"]) if classes
             else None, "multihead", "hands"]
    shown = [key for key in shown if key in test_errors] or list(test_errors)  # --models may train none
    fig, ax = plt.subplots(figsize=(8, 4.5))
    # 5-minute bins on the full test split (3,600 clocks), wider ones on a quick run's few.
    n_test = len(next(iter(test_errors.values())))
    width = 5 if n_test >= 2000 else 15
    # No two times on the dial are more than half of it, six hours, apart.
    bins = np.arange(0, DIAL_MINUTES // 2 + width, width)
    for key in shown:
        ax.hist(test_errors[key], bins=bins, histtype="step", linewidth=1.5,
                label=f"{_label(key)}: mean {errors[key]['test']:.1f}")
    tallest = max(np.histogram(test_errors[key], bins)[0].max() for key in shown)
    if tallest <= 50:  # a quick run's few clocks a bin: whole counts on a linear axis read best
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(0, None)
        ax.set_ylabel("test clocks")
    else:
        # symlog: linear (so an empty bin is drawn at 0) up to 10 clocks, logarithmic above,
        # where a good model's first bins hold thousands and its tail a few; plain counts.
        ax.set_yscale("symlog", linthresh=10, linscale=1)
        top = max(ax.get_ylim()[1], 10)
        ticks = [0, 2, 5, 10] + [10 ** k * m for k in range(1, 6) for m in (2, 5, 10)
                                 if 10 < 10 ** k * m <= top]
        ax.yaxis.set_major_locator(FixedLocator(ticks))
        ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
        ax.yaxis.set_minor_locator(FixedLocator([]))
        ax.set_ylim(0, top)
        ax.set_ylabel("test clocks (linear up to 10, log above)")
    ax.set_xlim(0, bins[-1])
    ax.set_xlabel("common-sense error on a test clock (minutes)")
    ax.set_title("Errors on the test clocks", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    # Below the figure's axes, where no bar can be.
    fig.legend(*ax.get_legend_handles_labels(), loc="upper center", bbox_to_anchor=(0.5, 0),
               fontsize=7, frameon=False)
    return report.save_figure(fig, path, source)
