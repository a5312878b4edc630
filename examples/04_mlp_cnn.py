"""Assignment 4 in a few lines: the course's MLP and CNN on Fashion-MNIST with fastdl.nn.

Run:  python examples/04_mlp_cnn.py [--quick] [DATA_DIR]

`--quick` (accepted anywhere by every example) trains on 2,000 images for one epoch and scores
500 validation and 1,000 test images (10-20 s on 2 cores); without it the course's full run
(MLP 30 epochs, CNN 12 epochs on 55,000 images) takes about 20 minutes on 2 cores. DATA_DIR
holds the four Fashion-MNIST .gz files; it is also looked for in $FASTDL_DATA, the download cache
and /usr/share/datasets/fashion-mnist. Without the data this prints how to get it and exits 2.
"""

import sys
import time

import numpy as np

from fastdl import nn
from fastdl.data import DatasetNotFoundError, load_fashion_mnist
from fastdl.repro.models import course_cnn

quick = "--quick" in sys.argv[1:]
data_dirs = [arg for arg in sys.argv[1:] if arg != "--quick"]
try:
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist(data_dirs[0] if data_dirs else None)
except DatasetNotFoundError as exc:
    print(exc, file=sys.stderr)  # it lists where it looked and how to fetch the data
    sys.exit(2)

# Scale every split the same way (uint8 -> [0, 1]) and add the channel axis: images are
# channels-last (n, 28, 28, 1). The course's first 5,000 training images are the validation set.
x_train, x_test = (x[..., None].astype(np.float32) / 255 for x in (x_train, x_test))
splits = {"train": (x_train[5000:], y_train[5000:]), "validation": (x_train[:5000], y_train[:5000]),
          "test": (x_test, y_test)}
if quick:
    sizes = {"train": 2000, "validation": 500, "test": 1000}
    splits = {name: (x[:sizes[name]], y[:sizes[name]]) for name, (x, y) in splits.items()}

# The MLP, written out: flatten the image, two ReLU layers, a softmax over the 10 classes.
mlp = nn.Sequential([
    nn.Input((28, 28, 1)),
    nn.Flatten(),
    nn.Dense(300, activation="relu"),
    nn.Dense(100, activation="relu"),
    nn.Dense(10, activation="softmax"),
], seed=0)
mlp.compile(nn.SGD(lr=0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
# The CNN (five 'same' convolutions in three max-pooled blocks, Dense 128-64 with Dropout 0.5).
cnn = course_cnn((28, 28, 1), seed=0)
cnn.compile(nn.RMSprop(lr=0.001), "sparse_categorical_crossentropy", metrics=["accuracy"])

# The course's settings: (model, batch size, epochs).
runs = {"MLP": (mlp, 32, 30), "CNN": (cnn, 128, 12)}
print(f"Fashion-MNIST: {', '.join(f'{len(y):,} {name}' for name, (x, y) in splits.items())}"
      + (" (--quick: a slice, one epoch)" if quick else ""))
rows = []
for name, (model, batch_size, epochs) in runs.items():
    epochs = 1 if quick else epochs
    start = time.perf_counter()
    model.fit(*splits["train"], epochs=epochs, batch_size=batch_size, seed=0,
              verbose=0 if quick else 2)
    seconds_per_epoch = (time.perf_counter() - start) / epochs
    # Accuracy of the trained model on every split (evaluate returns [loss, accuracy]).
    accuracy = [model.evaluate(x, y, batch_size=256)[1] for x, y in splits.values()]
    rows.append((name, model.count_params(), epochs, *accuracy, seconds_per_epoch))

print(f"\n{'model':<6}{'params':>11}{'epochs':>8}{'train':>8}{'val':>8}{'test':>8}{'s/epoch':>9}")
for name, params, epochs, train, val, test, seconds in rows:
    print(f"{name:<6}{params:>11,}{epochs:>8}{train:>8.3f}{val:>8.3f}{test:>8.3f}{seconds:>9.2f}")
