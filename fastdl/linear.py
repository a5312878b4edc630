"""Linear classifiers with the scikit-learn estimator API: the course's multi-class perceptron."""

import numbers

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from fastdl import backend as _backend
from fastdl._validation import as_compute, check_int

METHODS = ("batch", "online")
RULES = {"sigmoid": 0, "classic": 1}  # the kernels' rule codes (kernels/*/perceptron)


def _with_bias(X, dtype):
    """X with a trailing column of ones, C-contiguous in dtype: the kernels' X1."""
    X1 = np.empty((X.shape[0], X.shape[1] + 1), dtype=dtype)
    X1[:, :-1] = X
    X1[:, -1] = 1
    return X1


def _accuracy(X1, codes, W):
    """Fraction of rows whose highest score (first maximum) is their class."""
    return float(np.count_nonzero(np.argmax(X1 @ W, axis=1) == codes)) / len(codes)


class MultiClassPerceptron(ClassifierMixin, BaseEstimator):
    """The course's multi-class perceptron: one linear unit per class, argmax decision.

    Parameters
    ----------
    lr : float, default 0.2
        Learning rate, > 0.
    method : {"batch", "online"}, default "batch"
        "batch": one update per epoch from the whole training set; "online": one update per
        sample, in dataset order.
    rule : {"sigmoid", "classic"}, default "sigmoid"
        "sigmoid" (the course's): ``W += lr * X1.T @ (onehot - sigmoid(X1 @ W))``; "classic":
        on a mistake, add the sample to its class's weights and subtract it from the predicted
        class's.
    patience : int, default 15
        Stop after this many epochs without a new best training accuracy.
    max_epochs : int, default 1000
        Upper bound on the epochs.
    init_std : float, default 5.0
        Weights start as ``RandomState(random_state).normal(0, init_std, (n_features + 1, n_classes))``.
    random_state : int, default 21
    backend : str, optional
        "auto", "numpy", "numba", "cython" (None: the process default).

    Attributes
    ----------
    coef_ : ndarray of shape (n_features + 1, n_classes)
        The best weights seen; the last row is the bias.
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    n_epochs_ : int
        Epochs run.
    best_epoch_ : int
        Epoch (1-based) whose weights were kept; 0 when none beat the initial weights.
    history_ : dict
        "train_accuracy" (and "val_accuracy" when fit got validation_data): one value per epoch,
        the accuracy of the weights after that epoch.

    Notes
    -----
    Training stops at 100% training accuracy or after `patience` epochs without a new best, and
    keeps the weights of the best epoch.
    """

    def __init__(self, lr=0.2, method="batch", rule="sigmoid", patience=15, max_epochs=1000,
                 init_std=5.0, random_state=21, backend=None):
        self.lr = lr
        self.method = method
        self.rule = rule
        self.patience = patience
        self.max_epochs = max_epochs
        self.init_std = init_std
        self.random_state = random_state
        self.backend = backend

    def _check_params(self):
        for name in ("lr", "init_std"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"{name} must be a real number, got {value!r}")
            if not np.isfinite(value) or value < 0 or (name == "lr" and value == 0):
                raise ValueError(f"{name} must be a finite number {'> 0' if name == 'lr' else '>= 0'}, "
                                 f"got {value!r}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.rule not in RULES:
            raise ValueError(f"rule must be one of {tuple(RULES)}, got {self.rule!r}")
        check_int(self.patience, "patience", 1)
        check_int(self.max_epochs, "max_epochs", 1)
        if self.random_state is not None:
            check_int(self.random_state, "random_state", 0, 2**32 - 1)

    def fit(self, X, y, validation_data=None):
        """Train from the initial weights until 100% training accuracy or patience runs out.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            At least two classes.
        validation_data : (X_val, y_val), optional
            Scored after every epoch into ``history_["val_accuracy"]``; never used for training.

        Returns
        -------
        self
        """
        self._check_params()
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], order="C")
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"y must hold at least two classes, got only {self.classes_.tolist()}")
        codes = np.ascontiguousarray(codes, dtype=np.int64)
        dtype = X.dtype.type
        X1 = _with_bias(X, dtype)
        val = self._validation(validation_data, dtype) if validation_data is not None else None

        n_classes = len(self.classes_)
        shape = (X1.shape[1], n_classes)
        W = as_compute(np.random.RandomState(self.random_state).normal(0, self.init_std, shape), dtype)
        kernels, _ = _backend.kernels("perceptron", self.backend)
        rule = RULES[self.rule]
        lr = dtype(self.lr)
        n_threads = _backend.get_num_threads()
        if self.method == "batch":
            scores = np.empty((X1.shape[0], n_classes), dtype=dtype)
            grad = np.empty(shape, dtype=dtype)
            step = lambda: kernels.batch_epoch(X1, codes, lr, rule, W, scores, grad, n_threads)
        else:
            work = np.empty(n_classes, dtype=dtype)
            step = lambda: kernels.online_epoch(X1, codes, lr, rule, W, work, n_threads)

        history = {"train_accuracy": []}
        if val is not None:
            history["val_accuracy"] = []
        best_accuracy, best_W, best_epoch, since_best = _accuracy(X1, codes, W), W.copy(), 0, 0
        epoch = 0
        while epoch < self.max_epochs and best_accuracy < 1.0 and since_best < self.patience:
            step()
            epoch += 1
            accuracy = _accuracy(X1, codes, W)
            history["train_accuracy"].append(accuracy)
            if val is not None:
                history["val_accuracy"].append(_accuracy(val[0], val[1], W))
            if accuracy > best_accuracy:
                best_accuracy, best_W, best_epoch, since_best = accuracy, W.copy(), epoch, 0
            else:
                since_best += 1
        self.coef_ = best_W
        self.n_epochs_ = epoch
        self.best_epoch_ = best_epoch
        self.history_ = history
        return self

    def _validation(self, validation_data, dtype):
        """(X1_val, codes_val) from fit's validation_data, checked like X and y."""
        try:
            X_val, y_val = validation_data
        except (TypeError, ValueError):
            raise TypeError("validation_data must be a pair (X_val, y_val)") from None
        X_val = validate_data(self, X_val, reset=False, dtype=[np.float64, np.float32], order="C")
        y_val = np.asarray(y_val)
        if y_val.ndim != 1 or y_val.shape[0] != X_val.shape[0]:
            raise ValueError(f"validation_data: y_val must be 1-D with {X_val.shape[0]} labels, "
                             f"got shape {y_val.shape}")
        unknown = ~np.isin(y_val, self.classes_)
        if unknown.any():
            raise ValueError(f"validation_data: y_val holds labels not seen in y: "
                             f"{np.unique(y_val[unknown]).tolist()}")
        codes = np.searchsorted(self.classes_, y_val).astype(np.int64)
        return _with_bias(X_val, dtype), codes

    def decision_function(self, X):
        """Scores ``[X, 1] @ coef_`` of each class, ndarray of shape (n_samples, n_classes)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32], order="C")
        return _with_bias(X, self.coef_.dtype) @ self.coef_

    def predict(self, X):
        """The class with the highest score (the first on ties)."""
        scores = self.decision_function(X)  # checks fitted first
        return self.classes_[np.argmax(scores, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags
