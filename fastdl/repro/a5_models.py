"""The ten clock readers of assignment 5: how each is built, what it learns, how it is read.

Each model has a key ("regression_mse", "classes_48", "multihead", "hands", ...). For a key,
:func:`compiled_model` gives the network compiled with its loss, :func:`targets` turns [hour,
minute] labels into what it learns, and :func:`decode` turns its outputs back into [hour, minute]
rows for :func:`fastdl.metrics.common_sense_errors`. The decoding functions are public so that
they can be checked (and reused) on their own.
"""

import numpy as np

from fastdl import nn
from fastdl.repro.models import (clock_classification_cnn, clock_hands, clock_multihead,
                                 clock_regression_cnn)

DIAL_MINUTES = 720  # a 12-hour dial
CLASS_COUNTS = (24, 48, 120, 240, 480, 720)
# Keras' RMSprop defaults, as the course used them.
SETTINGS = {"optimizer": "RMSprop", "lr": 0.001, "batch_size": 100, "epochs": 60}
# key -> (approach, loss or classes): the rows of the write-up's table, then fastdl's own model.
MODELS = {
    "regression_mse": ("Regression", "MSE"),
    "regression_cyclic": ("Regression", '"Common sense" (cyclic MSE)'),
    **{f"classes_{n}": ("Classification", f"{n} classes") for n in CLASS_COUNTS},
    "multihead": ("Multi-head", "12 classes (hour) + MSE (minute)"),
    "hands": ("fastdl: hand angles", "(cos, sin) of both hands, MSE; mirrored clocks too"),
}
# Models that also learn from the training clocks' mirror images (see training_data).
MIRRORED = ("hands",)
# The write-up's (train, test) common-sense errors in minutes; fastdl's own model has none.
WRITE_UP = {
    "regression_mse": (13.44, 47.66), "regression_cyclic": (16.93, 33.30),
    "classes_24": (14.62, 24.79), "classes_48": (7.09, 22.89), "classes_120": (3.51, 35.81),
    "classes_240": (1.98, 41.15), "classes_480": (1.71, 56.34), "classes_720": (1.53, 83.38),
    "multihead": (4.91, 11.71),
}


def n_classes_of(key):
    """The number of classes of a classification key ("classes_48" -> 48), else None."""
    return int(key.split("_")[1]) if key.startswith("classes_") else None


def architecture(key):
    """Which network a key trains: "regression", "classification", "multihead" or "hands".

    Models with the same architecture train at the same speed; the functions below branch on it.
    """
    if key.startswith("regression"):
        return "regression"
    return "classification" if key.startswith("classes_") else key


def compiled_model(key, input_shape=(150, 150, 1), seed=0, backend=None):
    """The model of ``key``, compiled with RMSprop (lr 0.001) and its loss.

    Parameters
    ----------
    key : str
        A key of ``MODELS``.
    input_shape : tuple of int, default (150, 150, 1)
    seed : int, default 0
        Seeds initialisation, shuffling and dropout.
    backend : str, optional
        The model's backend ("cuda": train on the GPU); None: the process default.

    Returns
    -------
    fastdl.nn.Sequential or fastdl.nn.Model
    """
    if key not in MODELS:
        raise ValueError(f"unknown model {key!r}; choose one of {', '.join(MODELS)}")
    optimizer = getattr(nn, SETTINGS["optimizer"])(lr=SETTINGS["lr"])
    arch = architecture(key)
    if arch == "regression":
        model = clock_regression_cnn(input_shape, seed=seed, backend=backend)
        loss = nn.CyclicMSE(12) if key == "regression_cyclic" else "mse"
    elif arch == "classification":
        model = clock_classification_cnn(n_classes_of(key), input_shape, seed=seed, backend=backend)
        loss = "sparse_categorical_crossentropy"
    elif arch == "multihead":
        model = clock_multihead(input_shape, seed=seed, backend=backend)
        loss = {"hour": "sparse_categorical_crossentropy", "minute": "mse"}
    else:
        model = clock_hands(input_shape, seed=seed, backend=backend)
        loss = "mse"
    model.compile(optimizer, loss)
    return model


def dial_minutes(labels):
    """[hour, minute] rows as minutes past 0:00 on the dial, ``hour * 60 + minute``."""
    labels = np.asarray(labels)
    return labels[:, 0] * 60 + labels[:, 1]


def time_classes(labels, n_classes):
    """The class of each time: which of ``n_classes`` equal bins of the dial it falls in,
    ``floor(total_minutes / (720 / n_classes))``.

    Returns
    -------
    ndarray of shape (n_samples,), int64
    """
    # In integers, so a time on a bin's edge is never put in the bin below by rounding.
    return (np.asarray(dial_minutes(labels), dtype=np.int64) % DIAL_MINUTES * n_classes
            // DIAL_MINUTES).astype(np.int64)


def hand_angles(labels):
    """(cos, sin) of the hour hand's and the minute hand's angle, clockwise from 12.

    The hour hand turns once in 720 minutes (it moves on with the minutes), the minute hand once
    in 60.

    Returns
    -------
    ndarray of shape (n_samples, 4), float64
        ``[cos(hour angle), sin(hour angle), cos(minute angle), sin(minute angle)]``.
    """
    labels = np.asarray(labels)
    hour_angle = 2 * np.pi * dial_minutes(labels) / DIAL_MINUTES
    minute_angle = 2 * np.pi * labels[:, 1] / 60
    return np.stack([np.cos(hour_angle), np.sin(hour_angle), np.cos(minute_angle),
                     np.sin(minute_angle)], axis=1)


def mirror_clocks(images, labels):
    """Clocks mirrored left to right and the times they show: h:m becomes 12:00 - h:m.

    Mirroring turns each hand's angle from 12 into its negative, so the time read clockwise
    becomes the time read anticlockwise (2:10 becomes 9:50, 0:00 stays 0:00).

    Parameters
    ----------
    images : ndarray of shape (n_samples, height, width[, channels])
    labels : ndarray of shape (n_samples, 2), [hour, minute]

    Returns
    -------
    images : ndarray, the same shape, mirrored
    labels : ndarray of shape (n_samples, 2), int64
    """
    total = -dial_minutes(np.asarray(labels, dtype=np.int64)) % DIAL_MINUTES
    return np.asarray(images)[:, :, ::-1], np.stack([total // 60, total % 60], axis=1)


def training_data(key, images, labels, epochs):
    """What the model of ``key`` trains on: (images, targets, epochs).

    The course's models train on the training split for ``epochs`` epochs. fastdl's own model
    (``MIRRORED``) trains on the split and its mirror images, each a clock of a time of its own,
    for half as many epochs, rounded up (:func:`mirrored_epochs`).
    """
    if key not in MIRRORED:
        return images, targets(key, labels), epochs
    mirrored, mirrored_labels = mirror_clocks(images, labels)
    both = np.concatenate([labels, mirrored_labels])
    return np.concatenate([images, mirrored]), targets(key, both), mirrored_epochs(epochs)


def mirrored_epochs(epochs):
    """Half of ``epochs``, rounded up: on twice the clocks, as many steps as ``epochs`` when it is
    even (60: 30), and one epoch's more when it is odd (3: 2, the steps of 4)."""
    return (epochs + 1) // 2


def targets(key, labels):
    """What the model of ``key`` learns from [hour, minute] labels (n_samples, 2)."""
    labels = np.asarray(labels, dtype=np.int64)
    arch = architecture(key)
    if arch == "regression":
        return labels[:, 0] + labels[:, 1] / 60.0
    if arch == "classification":
        return time_classes(labels, n_classes_of(key))
    if arch == "multihead":
        return {"hour": labels[:, 0], "minute": labels[:, 1] / 60.0}
    return hand_angles(labels)


def decode_hours(hours):
    """A regression's output in hours, taken modulo 12, as [hour, minute] rows (12.25 -> 0:15)."""
    from fastdl.metrics import hours_to_hm

    return hours_to_hm(np.asarray(hours, dtype=np.float64).reshape(-1))


def decode_classes(classes, n_classes, edge="centre"):
    """The time a predicted class stands for, as [hour, minute] rows.

    Parameters
    ----------
    classes : ndarray of shape (n_samples,), int
    n_classes : int
    edge : {"centre", "left"}, default "centre"
        "left": the bin's first minute, as the course decoded (half a bin late on average).
        "centre": the middle of the whole minutes the bin holds (labels are whole minutes), the
        time that is closest on average to the times of the bin: 14.5 minutes past the left
        edge for 24 classes, the left edge itself for 720.

    Returns
    -------
    ndarray of shape (n_samples, 2), float64
    """
    classes = np.asarray(classes, dtype=np.int64)
    if edge not in ("centre", "left"):
        raise ValueError(f"edge must be 'centre' or 'left', got {edge!r}")
    # Bin c holds the whole minutes t with c * 720 / n <= t < (c + 1) * 720 / n.
    first = -(-classes * DIAL_MINUTES // n_classes)
    minutes = first.astype(np.float64)
    if edge == "centre":
        last = -(-(classes + 1) * DIAL_MINUTES // n_classes) - 1
        minutes = (first + last) / 2.0
    return np.stack([minutes // 60, minutes % 60], axis=1)


def decode_multihead(hour_probabilities, minute):
    """The multi-head's hour class and minute / 60 as [hour, minute] rows (minute in [0, 60))."""
    hours = np.argmax(np.asarray(hour_probabilities), axis=1).astype(np.float64)
    minutes = np.clip(np.asarray(minute, dtype=np.float64).reshape(-1) * 60.0, 0.0, 59.999)
    return np.stack([hours, minutes], axis=1)


def decode_hands(outputs):
    """[hour, minute] rows from the (cos, sin) pairs of both hands (see :func:`hand_angles`).

    The minute comes from the minute hand. The hour hand's angle, in minutes of the dial, is
    about ``60 * hour + minute``: the hour is ``round((hour_hand_minutes - minute) / 60) mod
    12``, so hour and minute always agree (a clock just before 3:00 reads 2:59, not 3:59,
    even when the hour hand looks closer to 3).

    Parameters
    ----------
    outputs : ndarray of shape (n_samples, 4)
        ``[cos, sin]`` of the hour hand, then of the minute hand (need not be unit length).

    Returns
    -------
    ndarray of shape (n_samples, 2), float64
    """
    outputs = np.asarray(outputs, dtype=np.float64)
    hour_hand = np.mod(np.arctan2(outputs[:, 1], outputs[:, 0]) / (2 * np.pi) * DIAL_MINUTES,
                       DIAL_MINUTES)
    minutes = np.mod(np.arctan2(outputs[:, 3], outputs[:, 2]) / (2 * np.pi) * 60.0, 60.0)
    minutes = np.where(minutes >= 60.0, 0.0, minutes)  # mod of a tiny negative can give 60.0
    hours = np.mod(np.round((hour_hand - minutes) / 60.0), 12)
    return np.stack([hours, minutes], axis=1)


def decode(key, outputs, edge="centre"):
    """[hour, minute] rows from the model of ``key``'s outputs (``edge``: classes only)."""
    arch = architecture(key)
    if arch == "regression":
        return decode_hours(outputs)
    if arch == "classification":
        return decode_classes(np.argmax(outputs, axis=1), n_classes_of(key), edge)
    if arch == "multihead":
        return decode_multihead(outputs["hour"], outputs["minute"])
    return decode_hands(outputs)
