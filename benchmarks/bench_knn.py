"""k-nearest-neighbours classification (k=3), fit + predict.

Three datasets:
- the course's leiden-digits: fit on train_in/train_out (1707 x 256), predict test_in (1000 x 256);
- larger images: 28x28 float32 images of random Gaussian blobs plus noise (10 classes by where
  the bright blob is), 10000 to fit and 2000 to predict: what MNIST-sized data asks of a kNN,
  made here because no dataset of that size ships with the repository. Marked `big` (about 0.1-0.4 s
  a call; quick mode skips it).
- low-dimensional points: 100000 uniform 2-D and 3-D points to fit, 10000 to predict (4 classes by
  quadrant), where fastdl searches a kd-tree (fastdl/ops/_kdtree.py) against scikit-learn's
  kd_tree. Marked `big`.

The timed region is fit + predict. Before timing, each contender's predictions are checked once
against fastdl's, and fastdl's neighbour indices (of the first 200 queries for the larger set)
against an exact float64 ranking.
"""

from dataclasses import dataclass

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.neighbors import KNeighborsClassifier as SklearnKNN

from fastdl.neighbors import KNeighborsClassifier

from peers import FAISS_MISSING, TORCH_MISSING, faiss, torch

# At least 10 rounds (pytest-benchmark's default is 5): these cases take tens of ms and are noisy.
pytestmark = pytest.mark.benchmark(min_rounds=10)

K = 3
GROUPS = {
    "leiden-digits": "knn k=3 fit+predict leiden-digits (1707 train, 1000 test, 256 features)",
    "images-784": "knn k=3 fit+predict 28x28 blob images (10000 train, 2000 test, 784 features, float32)",
}
# Queries checked against the exact float64 ranking (scipy's cdist is slow on the larger set).
CHECKED_QUERIES = 200


def blob_images(n, rng):
    """n float32 28x28 images (flattened) and labels 0..9: one bright Gaussian blob, whose place (one
    of 5 columns, top or bottom half) is the label, five faint ones, and noise."""
    yy, xx = np.mgrid[0:28, 0:28]
    images = np.zeros((n, 28, 28), dtype=np.float32)
    labels = None
    for blob in range(6):
        cx, cy = rng.uniform(4, 24, n), rng.uniform(4, 24, n)
        size = rng.uniform(1.5, 4, n)
        height = rng.uniform(0.8, 1.2, n) if blob == 0 else rng.uniform(0.1, 0.4, n)
        shape = np.exp(-((xx - cx[:, None, None]) ** 2 + (yy - cy[:, None, None]) ** 2) / (2 * size[:, None, None] ** 2))
        images += (height[:, None, None] * shape).astype(np.float32)
        if blob == 0:
            labels = 2 * np.minimum(4, ((cx - 4) // 4).astype(np.int64)) + (cy > 14)
    images += 0.02 * rng.standard_normal(images.shape, dtype=np.float32)
    return images.reshape(n, -1), labels


@pytest.fixture(scope="module", params=["leiden-digits", pytest.param("images-784", marks=pytest.mark.big)])
def dataset(request):
    """(name, dict with X_train, y_train, X_test, y_test)."""
    if request.param == "leiden-digits":
        return request.param, request.getfixturevalue("leiden_digits")
    rng = np.random.default_rng(7)
    X, y = blob_images(12000, rng)
    return request.param, {"X_train": X[:10000], "y_train": y[:10000], "X_test": X[10000:], "y_test": y[10000:]}


def vote(neighbor_codes, n_classes):
    """Most frequent code per row; ties go to the smaller code (argmax keeps the first maximum)."""
    n = neighbor_codes.shape[0]
    flat = (np.arange(n)[:, None] * n_classes + neighbor_codes).ravel()
    counts = np.bincount(flat, minlength=n * n_classes).reshape(n, n_classes)
    return counts.argmax(axis=1)


def fastdl_knn(name):
    def run(X_train, y_train, X_test):
        return KNeighborsClassifier(K, backend=name).fit(X_train, y_train).predict(X_test)

    return run


def sklearn_knn(X_train, y_train, X_test):
    return SklearnKNN(K, algorithm="brute").fit(X_train, y_train).predict(X_test)


def faiss_knn(X_train, y_train, X_test):
    """IndexFlatL2 (exact search, float32 only), then a majority vote in numpy."""
    classes, codes = np.unique(y_train, return_inverse=True)
    index = faiss.IndexFlatL2(X_train.shape[1])
    index.add(np.ascontiguousarray(X_train, dtype=np.float32))
    _, neighbors = index.search(np.ascontiguousarray(X_test, dtype=np.float32), K)
    return classes[vote(codes[neighbors], len(classes))]


def torch_knn(dtype):
    def run(X_train, y_train, X_test):
        """torch.cdist + topk(largest=False) + mode (mode returns the smallest of tied values)."""
        classes, codes = np.unique(y_train, return_inverse=True)
        train = torch.from_numpy(np.asarray(X_train, dtype=dtype))
        test = torch.from_numpy(np.asarray(X_test, dtype=dtype))
        neighbors = torch.cdist(test, train).topk(K, dim=1, largest=False).indices
        return classes[torch.mode(torch.from_numpy(codes)[neighbors], dim=1).values.numpy()]

    return run


@dataclass(frozen=True)
class Contender:
    id: str
    label: str
    make: object  # () -> function (X_train, y_train, X_test) -> predicted labels
    missing: str = None
    note: str = ""
    fastdl_backend: str = None


CONTENDERS = [
    Contender("fastdl-numba", "fastdl[numba]", lambda: fastdl_knn("numba"), fastdl_backend="numba"),
    Contender("fastdl-cython", "fastdl[cython]", lambda: fastdl_knn("cython"), fastdl_backend="cython"),
    Contender("sklearn-brute", "sklearn KNeighborsClassifier(brute)", lambda: sklearn_knn),
    Contender("faiss", "faiss IndexFlatL2 + numpy vote", lambda: faiss_knn, missing=FAISS_MISSING,
              note="float32"),
    Contender("torch-float64", "torch cdist+topk+mode float64", lambda: torch_knn(np.float64),
              missing=TORCH_MISSING),
    Contender("torch-float32", "torch cdist+topk+mode float32", lambda: torch_knn(np.float32),
              missing=TORCH_MISSING),
]


def exact_neighbors(X_train, X_test):
    """Indices of the K nearest training rows by float64 distance, ties to the lower index."""
    return np.argsort(cdist(X_test, X_train), axis=1, kind="stable")[:, :K]


@pytest.fixture(scope="module")
def fastdl_reference(dataset, warm_fastdl):
    """fastdl's predictions, the same for every usable backend (numpy, the reference, included)."""
    _, d = dataset
    predictions = {
        name: fastdl_knn(name)(d["X_train"], d["y_train"], d["X_test"])
        for name in warm_fastdl["neighbors"]
    }
    first = next(iter(predictions.values()))
    for name, predicted in predictions.items():
        np.testing.assert_array_equal(predicted, first, err_msg=f"fastdl[{name}] disagrees with fastdl")
    return first


def check_fastdl_neighbours(backend, X_train, y_train, X_test):
    """fastdl's neighbours of the first CHECKED_QUERIES queries are the exact float64 ranking's."""
    model = KNeighborsClassifier(K, backend=backend).fit(X_train, y_train)
    _, indices = model.kneighbors(X_test[:CHECKED_QUERIES])
    np.testing.assert_array_equal(indices, exact_neighbors(X_train, X_test[:CHECKED_QUERIES]),
                                  err_msg="fastdl's neighbours differ from the exact float64 ranking")


@pytest.mark.parametrize("contender", CONTENDERS, ids=[c.id for c in CONTENDERS])
def bench_knn_fit_predict(benchmark, contender, dataset, fastdl_reference,
                          require_fastdl_backend, name_contender):
    if contender.missing:
        pytest.skip(contender.missing)
    name, d = dataset
    X_train, y_train, X_test = d["X_train"], d["y_train"], d["X_test"]
    if contender.fastdl_backend:
        require_fastdl_backend("neighbors", contender.fastdl_backend)
        check_fastdl_neighbours(contender.fastdl_backend, X_train, y_train, X_test)
    run = contender.make()
    predicted = run(X_train, y_train, X_test)  # untimed: checks the result and warms up
    np.testing.assert_array_equal(predicted, fastdl_reference,
                                  err_msg=f"{contender.label} predicts differently from fastdl")
    accuracy = float(np.mean(predicted == d["y_test"]))
    note = f"test accuracy {accuracy:.4f}" + (f", {contender.note}" if contender.note else "")
    name_contender(GROUPS[name], contender.label, note)
    benchmark(run, X_train, y_train, X_test)


POINT_GROUP = "knn k=3 fit+predict uniform {d}-D points (100000 train, 10000 test)"
POINT_CONTENDERS = [
    Contender("fastdl-numba", "fastdl[numba]", lambda: fastdl_knn("numba"), fastdl_backend="numba"),
    Contender("fastdl-cython", "fastdl[cython]", lambda: fastdl_knn("cython"), fastdl_backend="cython"),
    Contender("sklearn-kd_tree", "sklearn KNeighborsClassifier(kd_tree)",
              lambda: lambda X, y, Q: SklearnKNN(K, algorithm="kd_tree").fit(X, y).predict(Q)),
]


@pytest.mark.big
@pytest.mark.parametrize("n_features", [2, 3])
@pytest.mark.parametrize("contender", POINT_CONTENDERS, ids=[c.id for c in POINT_CONTENDERS])
def bench_knn_points(benchmark, contender, n_features, require_fastdl_backend, name_contender):
    """Few features, many rows: fastdl's kd-tree path. Every contender's first labels are checked
    against the exact ranking's vote, and fastdl's neighbours against that ranking."""
    rng = np.random.default_rng(3)
    X = rng.random((110000, n_features))
    y = 2 * (X[:, 0] > 0.5) + (X[:, 1] > 0.5)
    X_train, y_train, X_test = X[:100000], y[:100000], X[100000:]
    if contender.fastdl_backend:
        require_fastdl_backend("neighbors", contender.fastdl_backend)
        check_fastdl_neighbours(contender.fastdl_backend, X_train, y_train, X_test)
    run = contender.make()
    predicted = run(X_train, y_train, X_test)  # untimed: checks the first labels and warms up
    exact = vote(y_train[exact_neighbors(X_train, X_test[:CHECKED_QUERIES])], 4)
    np.testing.assert_array_equal(predicted[:CHECKED_QUERIES], exact,
                                  err_msg=f"{contender.label} predicts differently from the exact ranking")
    name_contender(POINT_GROUP.format(d=n_features), contender.label)
    benchmark(run, X_train, y_train, X_test)
