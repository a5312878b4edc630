"""Helpers every assignment's reproduction shares: tables, figures, timings, the time estimate.

A table is written twice, as Markdown (for people, like the write-up's tables) and as JSON (for
tests and scripts), and both carry the data source; so does every figure, in its footer. Figures
are drawn with matplotlib's non-interactive "Agg" backend, so reproducing never opens a window and
works without a display.

a4, a5 and a6 have full runs that take hours on two cores: with ``quick=None`` they say that they
are timing (:func:`announce_estimate`), time a few batches (:func:`seconds_per_image`), run the quick
version when the full one would take over ``AUTO_QUICK_SECONDS``, and say what they decided
(:func:`announce_decision`).
"""

import json
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

AUTO_QUICK_SECONDS = 600.0  # quick=None runs the quick version when a full run would take longer
TIMED_BATCHES = 3  # batches timed one by one for an estimate, after an untimed warm-up batch
TIMED_SECONDS = 0.5  # short steps are timed again until the timed calls add up to this
MAX_TIMED_CALLS = 30  # ... or until this many were timed


def get_pyplot():
    """matplotlib.pyplot on the "Agg" backend (imported lazily: it is slow to import)."""
    import matplotlib

    # force=True: a caller may already have imported pyplot with an interactive backend.
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path, source=None):
    """Save a figure as PNG, noting the data source in its footer, then close it.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : str or Path
        Destination; parent directories are created.
    source : str, optional
        Data source, written at the bottom of the figure.

    Returns
    -------
    str
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if source:
        # Wrapped to the figure's width (about 14 characters of 8 pt text per inch): one long
        # line would widen the saved figure, as bbox_inches="tight" keeps all of it. Placed
        # under everything drawn so far (a legend below the axes too), so it overlaps nothing.
        width = max(40, int(fig.get_figwidth() * 14))
        bottom = fig.get_tightbbox(fig.canvas.get_renderer()).y0  # inches; < 0 below the figure
        fig.text(0.5, (bottom - 0.05) / fig.get_figheight(), textwrap.fill(f"data: {source}", width),
                 ha="center", va="top", fontsize=8, color="0.3")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    get_pyplot().close(fig)
    return str(path)


def to_jsonable(value):
    """Convert numpy scalars/arrays (also nested in dicts, lists, tuples) to plain Python."""
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path, data):
    """Write ``data`` (numpy allowed) as indented JSON; return the path as str."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(data), indent=2) + "\n", encoding="utf-8")
    return str(path)


def markdown_table(headers, rows):
    """Format rows as a GitHub-flavoured Markdown table.

    Parameters
    ----------
    headers : sequence of str
    rows : sequence of sequences
        Cells are formatted with ``str``; format numbers before passing them in. A "|" in a cell
        (an error message's, say) is escaped, so it stays in its cell.

    Returns
    -------
    str
    """
    def line(cells):
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(headers), "|" + "|".join("---" for _ in headers) + "|", *map(line, rows)])


def write_table(out_dir, stem, title, headers, rows, source, data=None, echo=True, notes=None):
    """Write a table as ``stem.md`` and ``stem.json`` (and print it), naming the data source.

    Parameters
    ----------
    out_dir : str or Path
    stem : str
        File name without extension.
    title : str
    headers : sequence of str
    rows : sequence of sequences
        Display cells (already formatted).
    source : str
        Data source, stated under the title of both files.
    data : dict, optional
        Unrounded values stored in the JSON file next to the display rows.
    echo : bool, default True
        Print the Markdown to stdout.
    notes : sequence of str, optional
        Paragraphs printed under the table (and stored in the JSON file as "notes").

    Returns
    -------
    list of str
        The two paths written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    notes = list(notes or [])
    text = f"### {title}\n\nData: {source}\n\n{markdown_table(headers, rows)}\n"
    if notes:
        text += "\n" + "\n\n".join(notes) + "\n"
    md_path = out_dir / f"{stem}.md"
    md_path.write_text(text, encoding="utf-8")
    payload = {"title": title, "source": source, "headers": list(headers),
               "rows": [list(row) for row in rows]}
    if notes:
        payload["notes"] = notes
    if data is not None:
        payload["data"] = data
    json_path = write_json(out_dir / f"{stem}.json", payload)
    if echo:
        print(text)
    return [str(md_path), json_path]


def accuracy_counts(y_true, y_pred):
    """Correct / incorrect / accuracy of a prediction, as the write-up's tables report them.

    Returns
    -------
    dict
        ``{"correct": int, "incorrect": int, "accuracy": float}`` (accuracy in [0, 1]).
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in shape: {y_true.shape} vs {y_pred.shape}")
    correct = int(np.count_nonzero(y_true == y_pred))
    total = int(y_true.size)
    return {"correct": correct, "incorrect": total - correct,
            "accuracy": correct / total if total else float("nan")}


def accuracy_rows(results, labels=None):
    """Display rows ``[classifier, split, correct, incorrect, "86.35%"]`` for write_table.

    Parameters
    ----------
    results : dict
        ``{classifier_key: {split: accuracy_counts(...)}}``.
    labels : dict, optional
        Display name per classifier key; the key itself otherwise.

    Returns
    -------
    headers : list of str
    rows : list of list
    """
    labels = labels or {}
    rows = []
    for key, per_split in results.items():
        for i, (split, counts) in enumerate(per_split.items()):
            # Like the write-up, the classifier is named on its first row only.
            rows.append([labels.get(key, key) if i == 0 else "", split.capitalize(),
                         counts["correct"], counts["incorrect"],
                         f"{100 * counts['accuracy']:.2f}%"])
    return ["Classifier", "Dataset", "Correct", "Incorrect", "Accuracy"], rows


def confusion_matrix(y_true, y_pred, n_classes):
    """Counts with true classes as rows and predicted classes as columns.

    Returns
    -------
    ndarray of shape (n_classes, n_classes), int64
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    for name, codes in (("y_true", y_true), ("y_pred", y_pred)):
        if codes.ndim != 1 or codes.shape != y_true.shape or codes.dtype.kind not in "iu":
            raise ValueError(f"{name} must be 1-D integer class codes as many as y_true's {y_true.shape}, got "
                             f"{codes.dtype} of shape {codes.shape}")
        if codes.size and (codes.min() < 0 or codes.max() >= n_classes):
            raise ValueError(f"{name} holds codes {codes.min()}..{codes.max()}, outside 0..{n_classes - 1}")
    flat = np.bincount(y_true.astype(np.int64) * n_classes + y_pred.astype(np.int64), minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


def plot_confusion_matrices(matrices, path, source, title="Confusion matrices"):
    """Draw a grid of confusion matrices as PNG: one row per outer key of ``matrices``, one column
    per inner key (a1: classifiers by splits; a4: the test split by models).

    Parameters
    ----------
    matrices : dict
        ``{row_label: {column_label: ndarray (n_classes, n_classes)}}``.
    path : str or Path
    source : str
    title : str

    Returns
    -------
    str
        The path written.
    """
    plt = get_pyplot()
    row_labels = list(matrices)
    col_labels = list(next(iter(matrices.values())))
    fig, axes = plt.subplots(len(row_labels), len(col_labels), squeeze=False,
                             figsize=(4.2 * len(col_labels), 4.0 * len(row_labels)))
    for r, row_label in enumerate(row_labels):
        for c, col_label in enumerate(col_labels):
            matrix = np.asarray(matrices[row_label][col_label])
            ax = axes[r, c]
            ax.imshow(matrix, cmap="Blues")
            n = matrix.shape[0]
            threshold = matrix.max() / 2
            for i in range(n):
                for j in range(n):
                    ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=6,
                            color="white" if matrix[i, j] > threshold else "black")
            ax.set_xticks(range(n))
            ax.set_yticks(range(n))
            ax.set_xlabel("predicted")
            ax.set_ylabel("true")
            ax.set_title(f"{row_label}: {col_label}", fontsize=10)
    # Wrapped to the figure's width: a long title must not widen the figure.
    width = max(40, int(fig.get_figwidth() * 15))
    fig.suptitle(textwrap.fill(title, width), fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, source=source)


def plot_learning_curves(histories, path, source, title="Learning curves"):
    """Accuracy and loss per epoch of each model: training solid with dots, validation dashed with squares.

    Parameters
    ----------
    histories : dict
        ``{label: History.history}``, i.e. per-epoch lists under "accuracy", "loss",
        "val_accuracy", "val_loss" (the validation ones optional).
    path : str or Path
    source : str
    title : str

    Returns
    -------
    str
        The path written.
    """
    plt = get_pyplot()
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, history) in enumerate(histories.items()):
        for ax, key in ((ax_acc, "accuracy"), (ax_loss, "loss")):
            # Markers keep a one-epoch (quick) run visible, and differ so that its two points of
            # one colour still say which is training and which validation.
            for prefix, style, split in (("", dict(linestyle="-", marker="o"), "train"),
                                         ("val_", dict(linestyle="--", marker="s",
                                                       markerfacecolor="white"), "validation")):
                values = history.get(prefix + key)
                if values:
                    ax.plot(range(1, len(values) + 1), values, markersize=5,
                            color=colors[i % len(colors)], label=f"{label}, {split}", **style)
    from matplotlib.ticker import MaxNLocator

    n_epochs = max((len(values) for history in histories.values() for values in history.values()),
                   default=1)
    for ax, key in ((ax_acc, "accuracy"), (ax_loss, "loss")):
        ax.set_xlim(0.5, n_epochs + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, source=source)


def epoch_time_cells(seconds, n_images):
    """Display cells (first epoch s, later epochs' mean s, images/s) of one model's epoch times.

    The first epoch also compiles kernels and allocates, so images/s comes from the later epochs;
    with a single epoch there are none ("-"), and images/s comes from the first, marked so.
    """
    seconds = np.asarray(seconds, dtype=float)
    if len(seconds) > 1:
        later = seconds[1:].mean()
        return f"{seconds[0]:.2f}", f"{later:.2f}", f"{n_images / later:,.0f}"
    return f"{seconds[0]:.2f}", "-", f"{n_images / seconds[0]:,.0f} (first epoch)"


EPOCH_TIME_NOTE = ("Images/s: training images over the later epochs' mean time (the first epoch "
                   "also compiles kernels); over the first epoch's where there was only one.")


class Timings(dict):
    """Seconds per named step; ``with timings("step"): ...`` records one."""

    @contextmanager
    def __call__(self, step):
        start = time.perf_counter()
        try:
            yield
        finally:
            self[step] = self.get(step, 0.0) + time.perf_counter() - start


def check_digits(data_dir=None, **_):
    """a1's and a2's check_options: DatasetNotFoundError now, before any assignment runs, where
    the course digits' directory (data_dir, else $FASTDL_DATA) lacks their files (without either:
    the embedded digits). Looks for the files only; reads nothing."""
    from fastdl.data.digits import resolve_data_dir

    resolve_data_dir(data_dir)


def check_backend(backend=None):
    """The backend that trains a model built for `backend` (None: the one in force).

    Raises ValueError for an unknown name and BackendUnavailableError for one that cannot run here
    (cuda without a GPU): a4, a5 and a6 check their ``backend`` with it before loading anything.
    """
    from fastdl import backend as _backend

    return _backend.resolve("dense", backend)


def compute_device(backend=None):
    """What runs a model built for `backend` (None: the one in force), in words: the GPU for "cuda",
    else the CPU backend, its threads and the processor."""
    import platform

    from fastdl import backend as _backend

    name = check_backend(backend)
    if name == "cuda":
        return f"cuda ({_backend.backend_status()['cuda'][1]})"
    cpu = platform.processor() or platform.machine()
    try:  # Linux names the processor model here
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    threads = _backend.get_num_threads()
    return f"{name} on {threads} CPU thread{'s' if threads != 1 else ''} ({cpu})"


def write_summary(out, result):
    """Write ``result`` as ``out/summary.json``, after adding that path to ``result["files"]``.

    Returns
    -------
    dict
        ``result``, so that a runner can end with ``return report.write_summary(out, result)``.
    """
    path = str(Path(out) / "summary.json")
    result["files"].append(path)
    write_json(path, result)
    return result


def cap_counts(counts, sizes=None):
    """Images per split after keeping at most ``sizes[split]`` of each (a split not in ``sizes``
    keeps all of its ``counts[split]``)."""
    return {split: min(count, (sizes or {}).get(split, count)) for split, count in counts.items()}


def fastest_call(step, calls=TIMED_BATCHES, seconds=TIMED_SECONDS, most=MAX_TIMED_CALLS):
    """Seconds the fastest of several timed calls ``step(i)`` took, i = 0, 1, 2, ...

    At least ``calls`` calls, then more while they add up to under ``seconds`` (at most ``most``
    in all), so a step of milliseconds is timed many times and one of seconds no more than
    ``calls`` times. The fastest, not the mean: other processes on the cores slow calls down and
    never speed one up (a training step of the course MLP took 0.6 ms, and 70 ms for a second or
    more at a time, on two cores other processes kept busy).
    """
    times = []
    while len(times) < calls or (sum(times) < seconds and len(times) < most):
        start = time.perf_counter()
        step(len(times))
        times.append(time.perf_counter() - start)
    return min(times)


def seconds_per_image(model, x, y, batch_size, infer="predict"):
    """(training, inference) seconds per image of a compiled model, for a full run's estimate.

    The first batch is trained on and inferred once untimed (compiling kernels, allocating); then
    each batch of ``x`` (unshuffled) is trained on, and inferred, as a call of its own, cycling
    over them: the fastest call of each kind (:func:`fastest_call`), over the batch's images.

    Parameters
    ----------
    model : fastdl.nn.Sequential or fastdl.nn.Model, compiled
    x : ndarray of shape (n, ...)
        A few batches of images (``TIMED_BATCHES`` of them, say); fewer than ``batch_size`` are
        timed as one batch, a last partial batch is left out.
    y : ndarray or dict of ndarrays
        The targets of ``x``, as ``model.fit`` takes them.
    batch_size : int
    infer : {"predict", "evaluate"}, default "predict"
        What the run does with its images besides training them.

    Returns
    -------
    (float, float)
    """
    if infer not in ("predict", "evaluate"):
        raise ValueError(f"infer must be 'predict' or 'evaluate', got {infer!r}")
    if len(x) == 0 or batch_size < 1:
        raise ValueError(f"need images and a batch size >= 1 to time, got {len(x)} images, batch_size={batch_size}")

    def rows(values, part):
        return {name: value[part] for name, value in values.items()} if isinstance(values, dict) else values[part]

    def inference(images, targets):
        if infer == "evaluate":
            return model.evaluate(images, targets, batch_size=batch_size)
        return model.predict(images, batch_size=batch_size)

    first = slice(0, batch_size)
    model.fit(x[first], rows(y, first), epochs=1, batch_size=batch_size)
    inference(x[first], rows(y, first))
    size = min(batch_size, len(x))
    batches = [slice(start, start + size) for start in range(0, len(x) - size + 1, size)]

    def train(i):
        part = batches[i % len(batches)]
        model.fit(x[part], rows(y, part), epochs=1, batch_size=batch_size, shuffle=False)

    def infer_batch(i):
        part = batches[i % len(batches)]
        inference(x[part], rows(y, part))

    return fastest_call(train) / size, fastest_call(infer_batch) / size


def epochs(n):
    """The count with "epoch", plural unless it is one ("1 epoch", "3 epochs")."""
    return f"{n} epoch{'s' if n != 1 else ''}"


def minutes(seconds):
    """Seconds as whole minutes, or "under 1" for a part of a time estimate that rounds to 0."""
    return f"{max(seconds / 60, 1):.0f}" if seconds >= 30 else "under 1"  # (30 s: "1", not round-half-even's "0")


def announce_estimate():
    """Say that the full run's time is being estimated: the timing takes seconds, up to half a minute."""
    print("Estimating how long the full run takes here (timing a few training steps)...", flush=True)


def rerun_options(data_dir=None, backend=None, verify=True):
    """The options that a printed command for another run of an assignment keeps, so that it runs
    on the same data and backend (" --data-dir D --backend B --no-verify", those given)."""
    import shlex

    options = "" if data_dir is None else f" --data-dir {shlex.quote(str(data_dir))}"
    options += "" if backend is None else f" --backend {shlex.quote(str(backend))}"
    return options + ("" if verify else " --no-verify")


def announce_decision(estimate, parts, quick, run, full_command, quick_run=True):
    """Print what the time estimate decided, and what runs.

    Parameters
    ----------
    estimate : dict
        Seconds of the full run, with its ``"total"``.
    parts : str
        The estimate's parts in words ("MLP 1.2, CNN 9.5 min").
    quick : bool
        Whether the estimate was over ``AUTO_QUICK_SECONDS``, so that the settings the caller
        left unset take the quick run's values.
    run : str
        The settings that run, in words ("800 training and 200 test images, 3 epochs per model").
    full_command : str
        The command that runs the full version.
    quick_run : bool, default True
        Whether every setting is the quick run's: only then is this called "the quick run".
    """
    minutes = estimate["total"] / 60
    if not quick:
        print(f"A full run takes about {minutes:.1f} min here ({parts}); running it: {run}.\n")
        return
    what = "this is the quick run" if quick_run else "the settings not given are the quick run's"
    print(f"A full run would take about {minutes:.0f} min here ({parts}), so {what}: {run}.\n"
          f"The full run: {full_command}\n")


def print_header(text):
    """Print a section header to stdout."""
    print(f"\n== {text} ==\n")
