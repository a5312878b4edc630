"""Dataset loaders. Nothing here downloads; each loader says which data it returned.

``DATASETS`` lists the known datasets for ``fastdl data list``; later loaders (Fashion-MNIST,
CIFAR-10, ...) add one entry each.
"""

from fastdl.data.digits import (
    COURSE_NAME,
    EMBEDDED_NAME,
    DigitsDataset,
    load_digits_dataset,
    load_embedded_digits,
    load_leiden_digits,
    resolve_data_dir,
)

__all__ = [
    "COURSE_NAME",
    "DATASETS",
    "EMBEDDED_NAME",
    "DigitsDataset",
    "dataset_locations",
    "load_digits_dataset",
    "load_embedded_digits",
    "load_leiden_digits",
    "resolve_data_dir",
]

# name -> (one-line description, loader name, files it reads)
DATASETS = {
    "leiden-digits": (
        "course handwritten digits, 1707 train / 1000 test, 16x16 in [-1, 1] (assignments 1-2)",
        "fastdl.data.load_leiden_digits",
        ("train_in.csv", "train_out.csv", "test_in.csv", "test_out.csv"),
    ),
}


def dataset_locations(name, data_dir=None):
    """Where a dataset is looked for, in order, as a list of (place, note) strings.

    Parameters
    ----------
    name : str
        A key of ``DATASETS``.
    data_dir : str or Path, optional
        An explicit directory (the ``--data-dir`` option), which is looked at first.

    Returns
    -------
    list of (str, str)
    """
    from pathlib import Path

    from fastdl import config

    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    places = []
    if data_dir is not None:
        places.append((str(Path(data_dir)), "--data-dir (or its leiden-digits/ subfolder)"))
    env = config.data_dir()
    if env is None:
        places.append(("$FASTDL_DATA", "unset"))
    else:
        places.append((str(Path(env)), "$FASTDL_DATA (or its leiden-digits/ subfolder)"))
    if name == "leiden-digits":
        places.append(("sklearn.datasets.load_digits", "embedded default when neither is set: "
                       + EMBEDDED_NAME))
    return places
