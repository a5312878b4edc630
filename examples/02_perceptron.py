"""Assignment 2 in a few lines: the course's multi-class perceptron, trained in batch and online.

Run:  python examples/02_perceptron.py [--quick] [DATA_DIR]

`--quick` (accepted anywhere by every example) stops each method after 30 epochs instead of
1000. DATA_DIR holds the course's digits CSV files; without it (and without $FASTDL_DATA)
scikit-learn's bundled 8x8 digits are used, and the first line printed says so.
"""

import sys
import time

from fastdl.data import DatasetNotFoundError, load_digits_dataset
from fastdl.linear import MultiClassPerceptron

quick = "--quick" in sys.argv[1:]
data_dirs = [arg for arg in sys.argv[1:] if arg != "--quick"]
try:
    data = load_digits_dataset(data_dirs[0] if data_dirs else None)
except DatasetNotFoundError as exc:
    print(exc, file=sys.stderr)  # it says where it looked
    sys.exit(2)
print(data.describe())

# The course's settings: one sigmoid unit per class, weights from RandomState(21).normal(0, 5),
# learning rate 0.2, stop at 100% training accuracy or after 15 epochs without a better one.
settings = dict(lr=0.2, rule="sigmoid", init_std=5.0, random_state=21, patience=15,
                max_epochs=30 if quick else 1000)

print(f"\n{'method':<8}{'epochs':>8}{'kept':>6}{'train acc':>11}{'test acc':>10}{'seconds':>9}")
for method in ("batch", "online"):
    # "batch": one update per epoch from the whole training set; "online": one per sample.
    model = MultiClassPerceptron(method=method, **settings)
    start = time.perf_counter()
    model.fit(data.X_train, data.y_train)
    seconds = time.perf_counter() - start  # the first fit also compiles kernels
    # `kept` is the epoch whose weights the model kept: the best training accuracy seen.
    print(f"{method:<8}{model.n_epochs_:>8}{model.best_epoch_:>6}"
          f"{model.score(data.X_train, data.y_train):>11.2%}"
          f"{model.score(data.X_test, data.y_test):>10.2%}{seconds:>9.3f}")

if quick:
    print("\n(--quick: at most 30 epochs per method)")
