"""Assignment 2, "MultiClass Perceptron", reproduced with fastdl.

Steps, as in the write-up: the course's sigmoid perceptron trained on the whole training set at
once (batch) and one sample at a time (online), from ``RandomState(21).normal(0, 5)`` weights at
learning rate 0.2, until 100% training accuracy or 15 epochs without a better one
(``FULL_MAX_EPOCHS``, 1000, is only a safety cap: on the course data the rule stops both methods
within about a hundred epochs; a quick run stops at 30); then the Correct / Incorrect /
Accuracy table on the train and test sets, the accuracy per epoch of both methods (train and
test) and the training times. Everything goes to ``<out_dir>/a2/`` and each
table and figure names its data source.

The counts can differ by a few samples from the write-up's: the weights start saturated (std 5
over 257 inputs), so the training path is chaotic and a different summation order (BLAS, the
compiled loops) leads to a slightly different best epoch. fastdl's own backends differ among
themselves as much (course data, float64: batch train 1682 correct on numpy, 1681 on Numba and
Cython; online 1707 and 1706), and a plain-numpy loop of the same recipe differs too; the
write-up states no initialisation, learning rate or stopping rule, so its exact counts cannot
be recovered. The table sets them beside fastdl's.
"""

from pathlib import Path

from fastdl.data import load_digits_dataset
from fastdl.linear import MultiClassPerceptron
from fastdl.repro import report

TITLE = "Assignment 2: multi-class perceptron"
METHOD_LABELS = {"batch": "Batch", "online": "Online"}
# The write-up's table, for comparison: method -> split -> correct count.
WRITE_UP_CORRECT = {"batch": {"train": 1683, "test": 881}, "online": {"train": 1707, "test": 872}}
WRITE_UP_SIZES = {"train": 1707, "test": 1000}  # the course data's splits
SETTINGS = dict(lr=0.2, rule="sigmoid", patience=15, init_std=5.0, random_state=21)
QUICK_MAX_EPOCHS = 30
FULL_MAX_EPOCHS = 1000  # a safety cap: the patience rule stops training long before it


check_options = report.check_digits  # the digits found before any assignment runs


def run(data_dir=None, out_dir="results", quick=False, verify=True):
    """Reproduce assignment 2's table, figure and timings.

    Parameters
    ----------
    data_dir : str or Path, optional
        Directory with the course CSV files; None: $FASTDL_DATA, else the embedded 8x8 digits.
    out_dir : str or Path, default "results"
        Files go to ``out_dir/a2/``.
    quick : bool, default False
        Stop each method after 30 epochs (the output says so).
    verify : bool, default True
        Check the course files' SHA-256 (see :func:`fastdl.data.load_digits_dataset`).

    Returns
    -------
    dict
        Keys: "source", "source_path", "n_train", "n_test", "quick", "settings",
        "classifiers" ({"batch"|"online": {"train"|"test": {"correct", "incorrect",
        "accuracy"}}}), "write_up_correct", "epochs" ({method: {"n_epochs", "best_epoch"}}),
        "history" ({method: {"train_accuracy", "test_accuracy"}}), "timings" (seconds per step;
        "fit_batch" and "fit_online" are the training times), "files".
    """
    timings = report.Timings()
    with timings("load_data"):
        data = load_digits_dataset(data_dir, verify=verify)
    out = Path(out_dir) / "a2"
    source = data.name
    files = []
    report.print_header(f"{TITLE}\ndata: {data.describe()}")
    if quick:
        print(f"Quick run: at most {QUICK_MAX_EPOCHS} epochs per method.\n")

    classifiers, history, epochs = {}, {}, {}
    splits = {"train": (data.X_train, data.y_train), "test": (data.X_test, data.y_test)}
    for method in METHOD_LABELS:
        model = MultiClassPerceptron(method=method, max_epochs=QUICK_MAX_EPOCHS if quick else FULL_MAX_EPOCHS,
                                     **SETTINGS)
        # A first tiny fit compiles the kernels, so the timing below is training alone.
        MultiClassPerceptron(method=method, max_epochs=1).fit(data.X_train[:20], data.y_train[:20])
        with timings(f"fit_{method}"):
            model.fit(data.X_train, data.y_train, validation_data=(data.X_test, data.y_test))
        classifiers[method] = {split: report.accuracy_counts(y, model.predict(X))
                               for split, (X, y) in splits.items()}
        history[method] = {"train_accuracy": model.history_["train_accuracy"],
                           "test_accuracy": model.history_["val_accuracy"]}
        epochs[method] = {"n_epochs": model.n_epochs_, "best_epoch": model.best_epoch_}

    headers, rows = report.accuracy_rows(classifiers, METHOD_LABELS)
    headers[0] = "Method"
    headers.append("Write-up (correct / incorrect / accuracy)")
    # The write-up's counts beside fastdl's, on data of the course's size only (not the 8x8 digits).
    course_sized = (len(data.y_train), len(data.y_test)) == tuple(WRITE_UP_SIZES.values())
    for row, (method, split) in zip(rows, [(m, split) for m in classifiers for split in splits]):
        correct, total = WRITE_UP_CORRECT[method][split], WRITE_UP_SIZES[split]
        row.append(f"{correct} / {total - correct} / {100 * correct / total:.2f}%"
                   if course_sized else "-")
    notes = [_write_up_note(course_sized)]
    if quick:
        notes.append(f"Quick run: at most {QUICK_MAX_EPOCHS} epochs per method; not comparable with "
                     "the write-up.")
    files += report.write_table(out, "accuracy", "Multi-class perceptron accuracy (batch and online)",
                                headers, rows, data.describe(), notes=notes,
                                data={"classifiers": classifiers, "epochs": epochs,
                                      "write_up_correct": WRITE_UP_CORRECT})
    with timings("figure_accuracy"):
        files.append(_plot_accuracy(history, epochs, out / "accuracy.png", source))
    time_rows = [[METHOD_LABELS[m], epochs[m]["n_epochs"], epochs[m]["best_epoch"],
                  f"{timings[f'fit_{m}']:.3f}",
                  f"{1e3 * timings[f'fit_{m}'] / max(epochs[m]['n_epochs'], 1):.2f}"]
                 for m in METHOD_LABELS]
    files += report.write_table(out, "training_times", "Training time per method",
                                ["Method", "Epochs", "Best epoch", "Seconds", "ms per epoch"],
                                time_rows, data.describe(), data={"timings": dict(timings)})

    return report.write_summary(out, {
        "source": source,
        "source_path": data.source,
        "n_train": int(len(data.y_train)),
        "n_test": int(len(data.y_test)),
        "quick": bool(quick),
        "settings": SETTINGS,
        "classifiers": classifiers,
        "write_up_correct": WRITE_UP_CORRECT,
        "epochs": epochs,
        "history": history,
        "timings": dict(timings),
        "files": files,
    })


def _write_up_note(course_sized):
    """The accuracy table's note on the write-up's counts."""
    if not course_sized:
        return ("The write-up's counts are on the course data (1707 train / 1000 test), not on "
                "this data: not shown.")
    return ("The counts can differ from the write-up's by a few samples, as fastdl's numpy, "
            "Numba and Cython backends differ among themselves: the weights start saturated "
            "(normal(0, 5) over 257 inputs), so training is chaotic, and a different summation "
            "order changes which epoch's weights are kept.")


def _plot_accuracy(history, epochs, path, source):
    """Accuracy per epoch, both methods, train (solid) and test (dashed)."""
    plt = report.get_pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = {"batch": "tab:blue", "online": "tab:orange"}
    for method, label in METHOD_LABELS.items():
        for split, style in (("train", "-"), ("test", "--")):
            values = history[method][f"{split}_accuracy"]
            ax.plot(range(1, len(values) + 1), values, style, color=colors[method],
                    label=f"{label}, {split}")
        best = epochs[method]["best_epoch"]
        if best:
            ax.axvline(best, color=colors[method], linewidth=0.6, alpha=0.5)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_title("Multi-class perceptron accuracy per epoch\n"
                 "thin lines: epoch whose weights were kept", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return report.save_figure(fig, path, source)
