"""k-nearest-neighbours classification (k=3), fit + predict, on the course's leiden-digits data.

Every contender fits on train_in/train_out (1707 x 256) and predicts test_in (1000 x 256); the
timed region is fit + predict. Before timing, each contender's predictions are checked once
against fastdl's, and fastdl's neighbour indices against an exact float64 ranking.
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
GROUP = "knn k=3 fit+predict leiden-digits (1707 train, 1000 test, 256 features)"


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
def fastdl_reference(leiden_digits, warm_fastdl):
    """fastdl's predictions, the same for every usable backend (numpy, the reference, included)."""
    d = leiden_digits
    predictions = {
        name: fastdl_knn(name)(d["X_train"], d["y_train"], d["X_test"])
        for name in warm_fastdl["neighbors"]
    }
    first = next(iter(predictions.values()))
    for name, predicted in predictions.items():
        np.testing.assert_array_equal(predicted, first, err_msg=f"fastdl[{name}] disagrees with fastdl")
    return first


@pytest.mark.parametrize("contender", CONTENDERS, ids=[c.id for c in CONTENDERS])
def bench_knn_fit_predict(benchmark, contender, leiden_digits, fastdl_reference,
                          require_fastdl_backend, name_contender):
    if contender.missing:
        pytest.skip(contender.missing)
    d = leiden_digits
    X_train, y_train, X_test = d["X_train"], d["y_train"], d["X_test"]
    if contender.fastdl_backend:
        require_fastdl_backend("neighbors", contender.fastdl_backend)
        model = KNeighborsClassifier(K, backend=contender.fastdl_backend).fit(X_train, y_train)
        _, indices = model.kneighbors(X_test)
        np.testing.assert_array_equal(indices, exact_neighbors(X_train, X_test),
                                      err_msg="fastdl's neighbours differ from the exact float64 ranking")
    run = contender.make()
    predicted = run(X_train, y_train, X_test)  # untimed: checks the result and warms up
    np.testing.assert_array_equal(predicted, fastdl_reference,
                                  err_msg=f"{contender.label} predicts differently from fastdl")
    accuracy = float(np.mean(predicted == d["y_test"]))
    note = f"test accuracy {accuracy:.4f}" + (f", {contender.note}" if contender.note else "")
    name_contender(GROUP, contender.label, note)
    benchmark(run, X_train, y_train, X_test)
