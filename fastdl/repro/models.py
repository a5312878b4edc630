"""The course's networks, built once for the reproductions, the tests and the benchmarks.

Each builder takes the input shape (only the input layer changes from dataset to dataset, as in
the course) and passes the rest to :class:`fastdl.nn.Sequential`.
"""

from fastdl import nn

__all__ = ["course_cnn", "course_mlp"]


def course_mlp(input_shape=(28, 28, 1), **kwargs):
    """The course's MLP: Flatten, Dense 300 and 100 (ReLU), Dense 10 (softmax).

    Parameters
    ----------
    input_shape : tuple of int, default (28, 28, 1)
        One image's shape; (32, 32, 3) for CIFAR-10.
    **kwargs
        Passed to :class:`fastdl.nn.Sequential` (seed, dtype, backend, name).

    Returns
    -------
    fastdl.nn.Sequential
        266,610 parameters on 28x28 images.
    """
    return nn.Sequential([
        nn.Input(tuple(input_shape)),
        nn.Flatten(),
        nn.Dense(300, activation="relu"),
        nn.Dense(100, activation="relu"),
        nn.Dense(10, activation="softmax"),
    ], **kwargs)


def course_cnn(input_shape=(28, 28, 1), **kwargs):
    """The course's CNN: Conv 64 (7x7), then 2x Conv 128 and 2x Conv 256 (3x3), each block
    max-pooled, then Dense 128 and 64 (ReLU, Dropout 0.5) and Dense 10 (softmax).

    Parameters
    ----------
    input_shape : tuple of int, default (28, 28, 1)
        One image's shape; (32, 32, 3) for CIFAR-10.
    **kwargs
        Passed to :class:`fastdl.nn.Sequential` (seed, dtype, backend, name).

    Returns
    -------
    fastdl.nn.Sequential
        1,413,834 parameters on 28x28x1 images.
    """
    return nn.Sequential([
        nn.Input(tuple(input_shape)),
        nn.Conv2D(64, 7, padding="same", activation="relu"),
        nn.MaxPool2D(2),
        nn.Conv2D(128, 3, padding="same", activation="relu"),
        nn.Conv2D(128, 3, padding="same", activation="relu"),
        nn.MaxPool2D(2),
        nn.Conv2D(256, 3, padding="same", activation="relu"),
        nn.Conv2D(256, 3, padding="same", activation="relu"),
        nn.MaxPool2D(2),
        nn.Flatten(),
        nn.Dense(128, activation="relu"),
        nn.Dropout(0.5),
        nn.Dense(64, activation="relu"),
        nn.Dropout(0.5),
        nn.Dense(10, activation="softmax"),
    ], **kwargs)
