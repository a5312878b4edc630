"""Assignment 5 in a few lines: tell the time from pictures of analog clocks.

Run:  python examples/05_tell_the_time.py [--quick] [DATA_DIR]

DATA_DIR holds the course's images.npy (18,000 grey 150x150 clocks) and labels.npy ([hour,
minute] of each). Without it fastdl.data.load_clocks looks in $FASTDL_DATA and its cache, and
else renders 18,000 synthetic clocks there once. `--quick` (anywhere in the arguments) renders
600 synthetic clocks instead, unless DATA_DIR is given, and trains for one epoch on a slice: it
runs in seconds and shows the API, not a good clock reader. The whole assignment, with every
table and figure: `fastdl reproduce a5`.
"""

import sys

import numpy as np

from fastdl.data import load_clocks
from fastdl.data.clock_render import render_clocks
from fastdl.metrics import common_sense_minutes
from fastdl.repro.a5_models import compiled_model, decode, targets

quick = "--quick" in sys.argv[1:]
data_dirs = [arg for arg in sys.argv[1:] if arg != "--quick"]
if quick and not data_dirs:
    images, labels = render_clocks(600, seed=0)
    source = "600 synthetic clocks (--quick)"
else:
    images, labels, source = load_clocks(data_dirs[0] if data_dirs else None, with_source=True)
print("data:", source)

# The course's split: shuffle with RandomState(42), 80% to train, the rest to test.
order = np.random.RandomState(42).permutation(len(images))
cut = int(0.8 * len(images))
train, test = order[:cut], order[cut:]
if quick:
    train, test = train[:400], test[:100]
x = images[..., None].astype(np.float32) / 255  # channels-last, in [0, 1]
epochs = 1 if quick else 20

# Two readers: the course's regression with the "common sense" (cyclic) loss, and fastdl's own
# model, which predicts where each hand points as (cos, sin) pairs.
print(f"{'model':<20}{'parameters':>12}{'train error':>14}{'test error':>13}  (minutes)")
for key in ("regression_cyclic", "hands"):
    model = compiled_model(key, x.shape[1:], seed=0)  # RMSprop, the model's own loss
    model.fit(x[train], targets(key, labels[train]), epochs=epochs, batch_size=100)
    errors = [common_sense_minutes(labels[split], decode(key, model.predict(x[split], 100)))
              for split in (train, test)]
    print(f"{key:<20}{model.count_params():>12,}{errors[0]:>14.1f}{errors[1]:>13.1f}")

# Reading one clock: the hands model's four outputs, and the time they stand for.
outputs = model.predict(x[test[:1]])
hour, minute = decode("hands", outputs)[0]
print(f"first test clock: outputs {np.round(outputs[0], 2)} -> {int(hour)}:{int(minute):02d} "
      f"(true {labels[test[0], 0]}:{labels[test[0], 1]:02d})")
