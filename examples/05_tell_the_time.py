"""Assignment 5 in a few lines: tell the time from pictures of analog clocks.

Run:  python examples/05_tell_the_time.py [--quick] [DATA_DIR]

DATA_DIR holds the course's images.npy (18,000 grey 150x150 clocks) and labels.npy ([hour,
minute] of each). Without it fastdl.data.load_clocks looks in $FASTDL_DATA and its cache, and
else renders 18,000 synthetic clocks there once. `--quick` (anywhere in the arguments) renders
600 synthetic clocks instead, unless DATA_DIR is given, and trains one epoch on a slice: it runs
in seconds and shows the API, not a good clock reader. The whole assignment, every model, table
and figure: `fastdl reproduce a5`.
"""

import sys

import numpy as np

from fastdl import nn
from fastdl.data import DatasetNotFoundError, load_clocks, render_clocks
from fastdl.metrics import common_sense_minutes
from fastdl.repro.a5_models import decode_multihead

quick = "--quick" in sys.argv[1:]
data_dirs = [arg for arg in sys.argv[1:] if arg != "--quick"]
if quick and not data_dirs:
    # As load_clocks' stand-in: one clock, turned at most 30 degrees, in 600 poses and scenes.
    images, labels = render_clocks(600, seed=0, max_turn=30, faces="one")
    source = "600 synthetic clocks of one design (--quick)"
else:
    try:
        images, labels, source = load_clocks(data_dirs[0] if data_dirs else None, with_source=True)
    except DatasetNotFoundError as exc:
        print(exc, file=sys.stderr)  # it says where it looked
        sys.exit(2)
print("data:", source)

# The course's split: shuffle with RandomState(42), 80% to train, the rest to test.
order = np.random.RandomState(42).permutation(len(images))
cut = int(0.8 * len(images))
train, test = (order[:400], order[cut:cut + 100]) if quick else (order[:cut], order[cut:])
x = images[..., None].astype(np.float32) / 255  # channels-last, in [0, 1]

# The course's multi-head network: one convolutional trunk, an hour head (12 classes) and a
# minute head (a regression on minute / 60), trained together.
inputs = nn.Input((150, 150, 1))
trunk = inputs
for filters in (16, 32, 32):
    trunk = nn.MaxPool2D(2)(nn.Conv2D(filters, 3, activation="relu")(trunk))
trunk = nn.Flatten()(trunk)
hour = nn.Dense(256, activation="relu", kernel_regularizer=nn.L2(0.01))(trunk)
hour = nn.Dense(128, activation="relu")(nn.Dropout(0.1)(hour))
hour = nn.Dense(12, activation="softmax", name="hour")(nn.Dropout(0.1)(hour))
minute = nn.Dense(128, activation="relu")(trunk)
minute = nn.Dense(1, name="minute")(nn.Dense(128, activation="relu")(minute))
model = nn.Model(inputs, {"hour": hour, "minute": minute}, seed=0)
model.compile(nn.RMSprop(), loss={"hour": "sparse_categorical_crossentropy", "minute": "mse"})
print(f"multi-head network: {model.count_params():,} parameters")

model.fit(x[train], {"hour": labels[train, 0], "minute": labels[train, 1] / 60.0},
          epochs=1 if quick else 60, batch_size=100)


def read_clocks(index):
    """[hour, minute] the network reads on the clocks at `index`: the likeliest hour class, and
    the minute head's output times 60, kept inside [0, 60)."""
    outputs = model.predict(x[index], batch_size=100)
    return decode_multihead(outputs["hour"], outputs["minute"])


# The "common sense" error: minutes off, the short way round the dial (11:50 for 0:10 is 20).
print(f"{'split':<8}{'clocks':>8}{'error (minutes)':>18}")
for name, index in (("train", train), ("test", test)):
    print(f"{name:<8}{len(index):>8}{common_sense_minutes(labels[index], read_clocks(index)):>18.1f}")
hour_read, minute_read = read_clocks(test[:1])[0]
print(f"first test clock: read {int(hour_read)}:{int(minute_read):02d}, "
      f"true {labels[test[0], 0]}:{labels[test[0], 1]:02d}")
