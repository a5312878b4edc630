"""Keras' everyday toolkit in fastdl.nn: augmentation, AdamW with clipping, a learning rate that
drops on a plateau, early stopping and a CSV log, on a small CNN reading the course digits.

Run:  python examples/08_keras_toolkit.py [--quick] [DATA_DIR]

DATA_DIR holds the course's digit CSVs (as for 01); without it scikit-learn's 8x8 digits stand
in. The random rotations and shifts change the training images only (predict and evaluate see
them as they are). The table shows each epoch as the CSV log has it: the loss, the validation
accuracy and the learning rate it trained with, which ReduceLROnPlateau halves once the
validation loss stops falling; EarlyStopping keeps the best epoch's weights. `--quick` trains 2
epochs on 200 images.
"""

import csv
import sys

import numpy as np

from fastdl import nn
from fastdl.data import DatasetNotFoundError, load_digits_dataset

quick = "--quick" in sys.argv[1:]
data_dirs = [arg for arg in sys.argv[1:] if arg != "--quick"]
try:
    data = load_digits_dataset(data_dirs[0] if data_dirs else None)
except DatasetNotFoundError as exc:
    print(exc, file=sys.stderr)  # it says where it looked
    sys.exit(2)
print(data.describe())

side = data.image_shape[0]
x_train, x_test = (x.reshape(-1, side, side, 1) for x in (data.X_train, data.X_test))
y_train, y_test = data.y_train, data.y_test
if quick:
    x_train, y_train = x_train[:200], y_train[:200]

model = nn.Sequential([
    nn.Input((side, side, 1)),
    nn.RandomRotation(0.04, fill_mode="nearest"),          # up to about 15 degrees either way
    nn.RandomTranslation(0.1, 0.1, fill_mode="nearest"),   # up to a tenth of the image
    nn.Conv2D(16, 3, padding="same", activation="relu"), nn.MaxPool2D(2),
    nn.Conv2D(32, 3, padding="same", activation="relu"), nn.MaxPool2D(2),
    nn.Flatten(), nn.Dropout(0.3), nn.Dense(data.n_classes, activation="softmax"),
], seed=0)
model.compile(nn.AdamW(2e-3, weight_decay=1e-4, clipnorm=1.0), "sparse_categorical_crossentropy",
              metrics=["accuracy"])
callbacks = [
    nn.ReduceLROnPlateau(factor=0.5, patience=2),
    nn.EarlyStopping(patience=5, restore_best_weights=True),
    nn.CSVLogger("digits_log.csv"),  # after the rate's callback, so that its column is logged
]
model.fit(x_train, y_train, batch_size=32, epochs=2 if quick else 40, validation_split=0.2, callbacks=callbacks)

print(f"{'epoch':>5} {'loss':>7} {'val accuracy':>13} {'learning rate':>14}")
with open("digits_log.csv", newline="") as f:
    for row in csv.DictReader(f):
        print(f"{int(row['epoch']) + 1:>5} {float(row['loss']):>7.4f} {float(row['val_accuracy']):>13.4f} "
              f"{float(row['learning_rate']):>14.2e}")
loss, accuracy = model.evaluate(x_test, y_test)
print(f"test accuracy {accuracy:.4f} (best epoch's weights)")
