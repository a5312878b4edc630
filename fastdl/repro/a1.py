"""Assignment 1, "Data Dimensionality - Distance Based Classification", reproduced with fastdl.

Steps, as in the write-up: the mean image of each digit, the 10x10 table of distances between
class centres (and the hardest pair to separate), PCA / t-SNE / UMAP maps of the training set,
and the nearest-centroid and 3-nearest-neighbour classifiers on the train and test sets.
Everything is written under ``<out_dir>/a1/`` and each table and figure names its data source.
"""

import warnings
from pathlib import Path

import numpy as np

from fastdl import ops
from fastdl.data import load_digits_dataset
from fastdl.neighbors import KNeighborsClassifier, NearestCentroid
from fastdl.repro import report

TITLE = "Assignment 1: data dimensionality, distance-based classification"
TSNE_SEED = 0
PCA_SEED = 0
UMAP_SEED = 42
KNN_K = 3
CLASSIFIER_LABELS = {"nearest_centroid": "Distance (nearest centroid)",
                     "knn3": f"k-NN (k={KNN_K})"}


check_options = report.check_digits  # the digits found before any assignment runs


def run(data_dir=None, out_dir="results", quick=False, verify=True):
    """Reproduce assignment 1's tables and figures.

    Parameters
    ----------
    data_dir : str or Path, optional
        Directory with the course CSV files; None: $FASTDL_DATA, else the embedded 8x8 digits.
    out_dir : str or Path, default "results"
        Files go to ``out_dir/a1/``.
    quick : bool, default False
        Skip t-SNE and UMAP (the slow steps); the output says they were skipped.
    verify : bool, default True
        Check the course files' SHA-256 (see :func:`fastdl.data.load_digits_dataset`).

    Returns
    -------
    dict
        Keys: "source", "source_path", "n_train", "n_test", "centroid_distances" (10x10 list),
        "hardest_pair" ({"classes": [a, b], "distance": float}), "embeddings",
        "classifiers" ({"nearest_centroid"|"knn3": {"train"|"test": {"correct", "incorrect",
        "accuracy"}}}), "confusion_matrices", "timings" (seconds per step), "files".
    """
    timings = report.Timings()
    with timings("load_data"):
        data = load_digits_dataset(data_dir, verify=verify)
    out = Path(out_dir) / "a1"
    source = data.name
    files = []
    report.print_header(f"{TITLE}\ndata: {data.describe()}")

    with timings("class_centroids"):
        centroids = ops.class_centroids(data.X_train, data.y_train, n_classes=data.n_classes)
    with timings("figure_mean_digits"):
        files.append(_plot_mean_digits(centroids, data.image_shape, out / "mean_digits.png",
                                       source))

    with timings("centroid_distances"):
        distances = np.asarray(ops.pairwise_distances(centroids), dtype=np.float64)
    hardest = hardest_pair(distances)
    files += _write_distance_table(distances, hardest, out, data.describe())

    embeddings = _embeddings(data, centroids, out, quick, timings, files)

    classifiers, confusion = {}, {}
    models = {"nearest_centroid": NearestCentroid(),
              "knn3": KNeighborsClassifier(n_neighbors=KNN_K)}
    splits = {"train": (data.X_train, data.y_train), "test": (data.X_test, data.y_test)}
    for key, model in models.items():
        with timings(key):
            model.fit(data.X_train, data.y_train)
            # kNN on the training set counts each point as its own neighbour, as
            # scikit-learn's predict does and as the write-up's numbers assume.
            predictions = {split: model.predict(X) for split, (X, _) in splits.items()}
        classifiers[key] = {split: report.accuracy_counts(splits[split][1], predictions[split])
                            for split in splits}
        confusion[key] = {split: report.confusion_matrix(splits[split][1], predictions[split],
                                                         data.n_classes)
                          for split in splits}

    headers, rows = report.accuracy_rows(classifiers, CLASSIFIER_LABELS)
    files += report.write_table(out, "classifiers", "Nearest centroid and k-NN accuracy",
                                headers, rows, data.describe(), data=classifiers)
    with timings("figure_confusion"):
        labelled = {CLASSIFIER_LABELS[k]: {s.capitalize(): m for s, m in v.items()}
                    for k, v in confusion.items()}
        files.append(report.plot_confusion_matrices(labelled, out / "confusion_matrices.png",
                                                    source))
    files.append(report.write_json(out / "confusion_matrices.json", {
        "title": "Confusion matrices (rows: true class, columns: predicted class)",
        "source": source, "matrices": confusion}))

    result = report.write_summary(out, {
        "source": source,
        "source_path": data.source,
        "n_train": int(len(data.y_train)),
        "n_test": int(len(data.y_test)),
        "quick": bool(quick),
        "centroid_distances": distances.tolist(),
        "hardest_pair": hardest,
        "embeddings": embeddings,
        "classifiers": classifiers,
        "confusion_matrices": report.to_jsonable(confusion),
        "timings": dict(timings),
        "files": files,
    })
    _print_timings(timings)
    return result


def hardest_pair(distances):
    """The two classes whose centres are closest (smallest off-diagonal distance).

    Parameters
    ----------
    distances : ndarray of shape (n_classes, n_classes)

    Returns
    -------
    dict
        ``{"classes": [a, b], "distance": float, "distance_rounded": float}`` with a < b;
        ties go to the first pair in row-major order.
    """
    masked = np.array(distances, dtype=np.float64)
    masked[np.tril_indices_from(masked)] = np.inf  # each pair once, never a class with itself
    a, b = np.unravel_index(np.argmin(masked), masked.shape)
    value = float(distances[a, b])
    return {"classes": [int(a), int(b)], "distance": value, "distance_rounded": round(value, 1)}


def _write_distance_table(distances, hardest, out, source):
    """The write-up's 10x10 table of centroid distances, to 0.1."""
    n = distances.shape[0]
    headers = [""] + [str(j) for j in range(n)]
    rows = [[str(i)] + [f"{distances[i, j]:.1f}" for j in range(n)] for i in range(n)]
    a, b = hardest["classes"]
    written = report.write_table(
        out, "centroid_distances", "Euclidean distances between class centroids",
        headers, rows, source,
        data={"distances": distances, "hardest_pair": hardest})
    print(f"Hardest pair to separate: {a} and {b} (centroid distance "
          f"{hardest['distance']:.1f})\n")
    return written


def _plot_mean_digits(centroids, image_shape, path, source):
    """A 2x5 grid of the class-mean images."""
    plt = report.get_pyplot()
    fig, axes = plt.subplots(2, 5, figsize=(9, 4))
    for label, ax in enumerate(axes.ravel()):
        ax.imshow(centroids[label].reshape(image_shape), cmap="gray", vmin=-1, vmax=1)
        ax.set_title(str(label))
        ax.axis("off")
    fig.suptitle("Average digit per class", fontsize=10)
    return report.save_figure(fig, path, source)


def _embeddings(data, centroids, out, quick, timings, files):
    """PCA always; t-SNE and UMAP unless quick. Returns what was done per method."""
    from sklearn.decomposition import PCA

    result = {}
    with timings("pca"):
        pca = PCA(n_components=2, random_state=PCA_SEED)
        points = pca.fit_transform(data.X_train)
        centres = pca.transform(centroids)
        files.append(_plot_embedding(points, data.y_train, centres, "PCA", out / "pca.png",
                                     data.name))
    result["pca"] = {"status": "done", "centroids_2d": centres.tolist(),
                     "explained_variance_ratio": pca.explained_variance_ratio_.tolist()}
    if quick:
        note = "skipped (quick=True)"
        result["tsne"] = {"status": note}
        result["umap"] = {"status": note}
        print("t-SNE and UMAP skipped (quick run); run without --quick to draw them.\n")
        return result

    # Measured on 2 cores other processes kept busy: t-SNE 8-61 s, UMAP 4-8 s, and 29-52 s on its
    # first run (compiling); on the README's idle 2 cores all of a1 took 8 s (20 s on the first run).
    print("t-SNE and UMAP maps of the training set (up to a minute on 2 cores; UMAP compiles its "
          "functions on its first run, up to a minute more)...", flush=True)
    from sklearn.manifold import TSNE

    with timings("tsne"):
        points = TSNE(n_components=2, init="pca", learning_rate="auto",
                      random_state=TSNE_SEED).fit_transform(data.X_train)
        # t-SNE embeds only the points it was fitted on, so the centroids have no place on it.
        files.append(_plot_embedding(points, data.y_train, None, "t-SNE", out / "tsne.png",
                                     data.name))
    result["tsne"] = {"status": "done",
                      "centroids_2d": None, "note": "t-SNE cannot transform new points"}

    with timings("umap"):  # includes importing umap and compiling its Numba code
        import umap

        _cache_numba_functions(_umap_modules())
        with warnings.catch_warnings():
            # A fixed random_state makes UMAP single-threaded and it warns about that.
            warnings.filterwarnings("ignore", message=".*n_jobs.*", category=UserWarning)
            reducer = umap.UMAP(random_state=UMAP_SEED)
            points = reducer.fit_transform(data.X_train)
            centres = reducer.transform(centroids)
        files.append(_plot_embedding(points, data.y_train, centres, "UMAP", out / "umap.png",
                                     data.name))
    result["umap"] = {"status": "done", "centroids_2d": np.asarray(centres).tolist()}
    return result


def _umap_modules():
    """umap-learn's modules that hold the Numba functions a fit and transform compile."""
    import importlib

    return [importlib.import_module(f"umap.{name}") for name in ("umap_", "utils", "layouts", "distances")]


def _cache_numba_functions(modules):
    """Turn numba's disk cache on for the modules' Numba functions that were made without it.

    umap-learn compiles some of its functions in every process (fast_knn_indices, smooth_knn_dist,
    compute_membership_strengths, ...): 11 of the 15 s that its fit and transform of the course
    digits took, against 4 s once they are cached; the embedding is the same. A function that two
    dispatchers compile with different options (umap's layout step, serial and parallel) is left
    alone: numba's cache tells its entries apart by signature, not by options. Nothing is done with
    FASTDL_CACHE=0, or for a function whose cache numba cannot place (a read-only install).
    """
    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    from fastdl import config

    if not config.numba_cache():
        return
    dispatchers = {}
    for module in modules:
        for value in vars(module).values():
            if isinstance(value, Dispatcher):
                dispatchers.setdefault(value.py_func, {})[id(value)] = value
    for same_function in dispatchers.values():
        (dispatcher, *others) = same_function.values()
        if not others and isinstance(dispatcher._cache, NullCache):
            try:
                dispatcher.enable_caching()
            except RuntimeError:  # numba finds no writable place for this function's cache
                pass


def _plot_embedding(points, labels, centres, method, path, source):
    """Scatter of a 2-D embedding coloured by class, with the class centroids when known."""
    plt = report.get_pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    cmap = plt.get_cmap("tab10")
    for label in range(10):
        mask = labels == label
        ax.scatter(points[mask, 0], points[mask, 1], s=5, alpha=0.6, color=cmap(label),
                   label=str(label))
    if centres is not None:
        ax.scatter(centres[:, 0], centres[:, 1], s=160, marker="X", c=[cmap(i) for i in
                   range(10)], edgecolors="black", linewidths=1.2)
        for label, (x, y) in enumerate(centres):
            ax.annotate(str(label), (x, y), xytext=(5, 5), textcoords="offset points",
                        fontsize=10, fontweight="bold")
        subtitle = "centroids marked X"
    else:
        subtitle = f"centroids not shown: {method} cannot transform new points"
    ax.set_title(f"{method} of the training set\n{subtitle}", fontsize=9)
    handles, names = ax.get_legend_handles_labels()
    if centres is not None:
        # A proxy handle: the real centroid markers are coloured per class and too big to scale.
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], linestyle="", marker="X", markersize=5,
                              markerfacecolor="0.7", markeredgecolor="black"))
        names.append("centroid")
    ax.legend(handles, names, markerscale=2, fontsize=7, title="digit", loc="upper left",
              bbox_to_anchor=(1.01, 1.0))
    return report.save_figure(fig, path, source)


def _print_timings(timings):
    """Seconds per step, longest first."""
    rows = [[step, f"{seconds:.3f}"] for step, seconds in
            sorted(timings.items(), key=lambda item: -item[1])]
    print(report.markdown_table(["Step", "Seconds"], rows) + "\n")
