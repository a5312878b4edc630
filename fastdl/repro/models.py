"""The course's networks, built once for the reproductions, the tests and the benchmarks.

Each builder takes the input shape (only the input layer changes from dataset to dataset, as in
the course) and passes the rest to :class:`fastdl.nn.Sequential`, or to :class:`fastdl.nn.Model`
for the multi-head network (two outputs).
"""

from fastdl import nn

__all__ = ["clock_classification_cnn", "clock_hands", "clock_multihead", "clock_regression_cnn",
           "course_cnn", "course_mlp"]


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


# -- assignment 5, "Tell the Time": clocks of 150x150 grey pixels ---------------------------------


def _clock_trunk(filters):
    """3x3 'valid' ReLU convolutions, each followed by a 2x2 max pooling, then Flatten."""
    layers = []
    for n_filters in filters:
        layers += [nn.Conv2D(n_filters, 3, padding="valid", activation="relu"), nn.MaxPool2D(2)]
    return layers + [nn.Flatten()]


def _clock_dense(units):
    """The course's dense part: Dense 128 (ReLU), Dropout 0.1, Dense 128 (ReLU), Dropout 0.1."""
    return [nn.Dense(128, activation="relu"), nn.Dropout(0.1),
            nn.Dense(128, activation="relu"), nn.Dropout(0.1),
            nn.Dense(units, activation="softmax" if units > 1 else None)]


def clock_regression_cnn(input_shape=(150, 150, 1), **kwargs):
    """The course's regression CNN: Conv 16, 32, 32 (3x3 valid, ReLU, each max-pooled), Dense 128
    and 128 (ReLU, Dropout 0.1), Dense 1 (linear): the time in hours, hour + minute / 60.

    Parameters
    ----------
    input_shape : tuple of int, default (150, 150, 1)
    **kwargs
        Passed to :class:`fastdl.nn.Sequential` (seed, dtype, backend, name).

    Returns
    -------
    fastdl.nn.Sequential
        1,214,561 parameters on 150x150x1 clocks.
    """
    return nn.Sequential([nn.Input(tuple(input_shape)), *_clock_trunk((16, 32, 32)),
                          *_clock_dense(1)], **kwargs)


def clock_classification_cnn(n_classes, input_shape=(150, 150, 1), **kwargs):
    """The course's classification CNN: Conv 32, 32, 32 (3x3 valid, ReLU, each max-pooled), Dense
    128 and 128 (ReLU, Dropout 0.1), Dense ``n_classes`` (softmax): which of ``n_classes`` equal
    bins of the 12-hour dial the time falls in.

    Parameters
    ----------
    n_classes : int
        24, 48, 120, 240, 480 or 720 in the course.
    input_shape : tuple of int, default (150, 150, 1)
    **kwargs
        Passed to :class:`fastdl.nn.Sequential` (seed, dtype, backend, name).

    Returns
    -------
    fastdl.nn.Sequential
        1,219,200 + 129 * n_classes parameters on 150x150x1 clocks.
    """
    return nn.Sequential([nn.Input(tuple(input_shape)), *_clock_trunk((32, 32, 32)),
                          *_clock_dense(n_classes)], **kwargs)


def clock_multihead(input_shape=(150, 150, 1), **kwargs):
    """The course's multi-head network: one trunk (Conv 16, 32, 32, each max-pooled), a "minute"
    head (Dense 128, 128, ReLU; Dense 1 linear: minute / 60) and an "hour" head (Dense 256 ReLU
    with an L2(0.01) kernel penalty, Dropout 0.1, Dense 128 ReLU, Dropout 0.1, Dense 12 softmax).

    Parameters
    ----------
    input_shape : tuple of int, default (150, 150, 1)
    **kwargs
        Passed to :class:`fastdl.nn.Model` (seed, dtype, backend, name).

    Returns
    -------
    fastdl.nn.Model
        Outputs "hour" (12 probabilities) and "minute" (1 value); 3,616,749 parameters on
        150x150x1 clocks.
    """
    inputs = nn.Input(tuple(input_shape))
    trunk = inputs
    for layer in _clock_trunk((16, 32, 32)):
        trunk = layer(trunk)
    minute = nn.Dense(128, activation="relu")(trunk)
    minute = nn.Dense(128, activation="relu")(minute)
    minute = nn.Dense(1, name="minute")(minute)
    hour = nn.Dense(256, activation="relu", kernel_regularizer=nn.L2(0.01))(trunk)
    hour = nn.Dropout(0.1)(hour)
    hour = nn.Dense(128, activation="relu")(hour)
    hour = nn.Dropout(0.1)(hour)
    hour = nn.Dense(12, activation="softmax", name="hour")(hour)
    return nn.Model(inputs, {"hour": hour, "minute": minute}, **kwargs)


def clock_hands(input_shape=(150, 150, 1), **kwargs):
    """fastdl's own clock reader: where each hand points, as a point on the unit circle.

    The multi-head trunk with a fourth convolution (Conv 16, 32, 32, 64, each max-pooled: 7x7x64
    features where the course's trunk gives 17x17x32), Dense 256 and 128 (ReLU, Dropout 0.1),
    and Dense 4 (linear): (cos, sin) of the hour hand's angle and of the minute hand's, trained
    with the MSE. See :mod:`fastdl.repro.a5` for why and how it is decoded.

    Parameters
    ----------
    input_shape : tuple of int, default (150, 150, 1)
    **kwargs
        Passed to :class:`fastdl.nn.Sequential` (seed, dtype, backend, name).

    Returns
    -------
    fastdl.nn.Sequential
        869,028 parameters on 150x150x1 clocks.
    """
    return nn.Sequential([nn.Input(tuple(input_shape)), *_clock_trunk((16, 32, 32, 64)),
                          nn.Dense(256, activation="relu"), nn.Dropout(0.1),
                          nn.Dense(128, activation="relu"), nn.Dropout(0.1), nn.Dense(4)],
                         **kwargs)
