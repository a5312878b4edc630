"""Assignment 1 in a few lines: distances between digits and two distance-based classifiers.

Run:  python examples/01_distance_knn.py [--quick] [DATA_DIR]

Like every example, it takes `--quick` anywhere in its arguments ("run on a small slice", for the
smoke tests); this one finishes in a second anyway, so it ignores it. DATA_DIR holds the course's
train_in.csv, train_out.csv, test_in.csv and test_out.csv. Without it (and without $FASTDL_DATA)
scikit-learn's bundled 8x8 digits are used instead; the first line printed says which data you
are looking at.
"""

import sys

import numpy as np

import fastdl
from fastdl.data import DatasetNotFoundError, load_digits_dataset
from fastdl.neighbors import KNeighborsClassifier, NearestCentroid
from fastdl.ops import class_centroids, knn, pairwise_distances

data_dirs = [arg for arg in sys.argv[1:] if arg != "--quick"]
try:
    data = load_digits_dataset(data_dirs[0] if data_dirs else None)
except DatasetNotFoundError as exc:
    print(exc, file=sys.stderr)  # it says where it looked
    sys.exit(2)
print(data.describe())
print("backend:", fastdl.get_backend(), "| available:", fastdl.available_backends())

# The centre of each class is the mean image of its training samples.
centroids = class_centroids(data.X_train, data.y_train, n_classes=10)

# How far apart are the class centres? The closest pair is the hardest to tell apart.
distances = pairwise_distances(centroids)
np.fill_diagonal(distances, np.inf)
a, b = np.unravel_index(np.argmin(distances), distances.shape)
print(f"closest class centres: {a} and {b} (distance {distances[a, b]:.1f})")

# The 3 training images nearest to the first test image, and their labels.
neighbour_distances, neighbour_indices = knn(data.X_test[:1], data.X_train, k=3)
print("3 nearest neighbours of test image 0: labels", data.y_train[neighbour_indices[0]],
      "at distances", np.round(neighbour_distances[0], 2), "| true label:", data.y_test[0])

# The same ideas as scikit-learn-style classifiers.
print(f"\n{'classifier':<22}{'train acc':>10}{'test acc':>10}")
for name, model in [("nearest centroid", NearestCentroid()),
                    ("3-nearest neighbours", KNeighborsClassifier(n_neighbors=3))]:
    model.fit(data.X_train, data.y_train)
    train_accuracy = model.score(data.X_train, data.y_train)
    test_accuracy = model.score(data.X_test, data.y_test)
    print(f"{name:<22}{train_accuracy:>10.2%}{test_accuracy:>10.2%}")
