"""Assignment 5 on a stream of clocks: the course's multi-head reader trained on fresh ones.

Run:  python examples/07_clock_stream.py [--quick]

No data set: every training step renders 100 new clocks (fastdl.data.clock_batches), so the
network never sees a clock twice and cannot learn one by heart. The clocks are of varied designs,
turned at most 30 degrees; the test clocks come from another seed, so none of them is trained on.
The table shows the "common sense" error on them (minutes, the shorter way round the dial) as the
clocks seen grow: about 20 minutes of training on 2 cores take the median from chance (180
minutes) to about 50. `--quick` runs 2 steps of 8 clocks twice: the API, not a clock reader.
"""

import sys

import numpy as np

from fastdl.data import clock_batches, render_clocks, scale_images
from fastdl.metrics import common_sense_errors
from fastdl.repro import a5_models

quick = "--quick" in sys.argv[1:]
KEY = "multihead"  # the write-up's best: 12 hour classes and the minute by regression
BATCH, STEPS, ROUNDS, N_TEST = (8, 2, 2, 40) if quick else (100, 200, 10, 500)

test_images, test_times = render_clocks(N_TEST, seed=1, max_turn=30)
x_test = scale_images(test_images)
model = a5_models.compiled_model(KEY)
batches = ((x, a5_models.targets(KEY, times)) for x, times in clock_batches(BATCH, seed=0, max_turn=30))

print(f"{'clocks seen':>12} {'train loss':>11} {'test median':>12} {'test mean':>10}")
for round_ in range(1, ROUNDS + 1):
    history = model.fit(batches, steps_per_epoch=STEPS)  # goes on where the last round stopped
    errors = common_sense_errors(test_times, a5_models.decode(KEY, model.predict(x_test, batch_size=BATCH)))
    print(f"{round_ * STEPS * BATCH:>12} {history.history['loss'][-1]:>11.3f} {np.median(errors):>12.1f} "
          f"{errors.mean():>10.1f}")
