"""Linear classifiers with the scikit-learn estimator API: the course's multi-class perceptron."""

import numbers

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from fastdl import _device
from fastdl import backend as _backend
from fastdl._validation import NonFiniteError, as_compute, check_host, check_int, compute_dtype, device_array_error

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


def _check_device_matrix(X, name):
    """(shape, dtype) of a device X: 2-D, non-empty, float32 or float64 (the compute dtype)."""
    shape, dtype = _device.shape_dtype(X)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} on the device must be float32 or float64, got dtype {dtype}")
    if len(shape) != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {shape}")
    if shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"{name} must not be empty, got shape {shape}")
    return shape, dtype


def _host_labels(y):
    """Labels as a host array: a device y is copied (n values, the one transfer fit documents)."""
    if _device.is_device(y):
        return _device.view(y).copy_to_host()
    return np.asarray(y)


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
        on a mistake, add lr times the sample (with its bias input 1) to its class's weights and
        subtract it from the predicted class's.
    patience : int, default 15
        Stop after this many epochs without a new best training accuracy.
    max_epochs : int, default 1000
        Upper bound on the epochs.
    init_std : float, default 5.0
        Weights start as ``RandomState(random_state).normal(0, init_std, (n_features + 1, n_classes))``.
    random_state : int, numpy.random.RandomState or None, default 21
        As in scikit-learn: an int seeds a new RandomState, an instance is drawn from (and
        advanced), None draws from numpy's global one.
    backend : str, optional
        "auto", "numpy", "numba", "cython", "cuda" (None: the process default). On "cuda" the
        samples, codes and weights stay on the device for all epochs (copied there once per fit),
        and only the weights of a new best epoch and one count per accuracy come back; fit also
        takes a device array X (anything with ``__cuda_array_interface__``), whose bias column is
        added on the device without a host copy (X_val then must be on the device too; the labels
        y and y_val always come to the host, where classes_ lives).

    Attributes
    ----------
    weights_ : ndarray of shape (n_features + 1, n_classes)
        The best weights seen, in the course's layout: a column per class, the last row the bias.
    coef_ : ndarray of shape (n_classes, n_features), or (1, n_features) for two classes
        The same weights in scikit-learn's layout (what RFE and SelectFromModel read): a row per
        class, without the bias; for two classes one row, classes_[1]'s weights less classes_[0]'s,
        as decision_function scores them.
    intercept_ : ndarray of shape (n_classes,), or (1,) for two classes
        The biases, laid out as coef_.
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
    keeps the weights of the best epoch. Weights that become NaN or infinite in any epoch, or best
    weights that give NaN or infinite scores on X (updates past the float range), raise
    fastdl.NonFiniteError, and the estimator is left unfitted. weights_ and coef_ are NumPy arrays on every backend, and
    decision_function, predict and score take host arrays. For two classes decision_function
    gives one score per sample, as scikit-learn's binary classifiers do.
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
        if self.random_state is not None and not isinstance(self.random_state, np.random.RandomState):
            if not isinstance(self.random_state, numbers.Integral) or isinstance(self.random_state, bool):
                raise TypeError(f"random_state must be an int, a numpy.random.RandomState or None, "
                                f"got {self.random_state!r}")
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
        X_val = y_val = None
        if validation_data is not None:
            try:
                X_val, y_val = validation_data
            except (TypeError, ValueError):
                raise TypeError("validation_data must be a pair (X_val, y_val)") from None
        if _device.on_device({"X": X, "X_val": X_val}):
            return self._fit_device(X, y, X_val, y_val)
        if (_device.is_device(y) or _device.is_device(y_val)) and not _backend.selects_cuda(self.backend):
            check_host(y, "y", "a CPU backend")  # (on cuda, device labels come to the host)
            check_host(y_val, "validation_data: y_val", "a CPU backend")
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], order="C")
        codes = self._encode(y)
        dtype = X.dtype.type
        X1 = _with_bias(X, dtype)
        val = self._validation(X_val, y_val, dtype) if X_val is not None else None
        W = self._initial_weights(X1.shape[1], dtype)
        kernels, name = _backend.kernels("perceptron", self.backend)
        if name == "cuda":
            to = _device.to_device
            val = None if val is None else (to(val[0]), to(val[1]))
            return self._train_device(kernels, to(X1), to(codes), to(W), val)
        return self._train(kernels, X1, codes, W, val)

    def _encode(self, y):
        """classes_ from y (1-D, on the host); returns y's int64 class codes."""
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"y must hold at least two classes, got only one class: {self.classes_.tolist()}")
        return np.ascontiguousarray(codes, dtype=np.int64)

    def _initial_weights(self, n_rows, dtype):
        shape = (n_rows, len(self.classes_))
        return as_compute(check_random_state(self.random_state).normal(0, self.init_std, shape), dtype)

    def _train(self, kernels, X1, codes, W, val):
        """The epochs on a CPU backend: host arrays, W updated in place."""
        rule = RULES[self.rule]
        lr = W.dtype.type(self.lr)
        n_threads = _backend.get_num_threads()
        if self.method == "batch":
            scores = np.empty((X1.shape[0], W.shape[1]), dtype=W.dtype)
            grad = np.empty_like(W)
            step = lambda: kernels.batch_epoch(X1, codes, lr, rule, W, scores, grad, n_threads)
        else:
            work = np.empty(W.shape[1], dtype=W.dtype)
            step = lambda: kernels.online_epoch(X1, codes, lr, rule, W, work, n_threads)
        val_accuracy = None if val is None else (lambda: _accuracy(val[0], val[1], W))
        self._epochs(step, lambda: _accuracy(X1, codes, W), val_accuracy, W.copy)
        with np.errstate(over="ignore", invalid="ignore"):
            if not np.isfinite(X1 @ self.weights_).all():
                self._non_finite(f"the weights of the best epoch ({self.best_epoch_}) give NaN or infinite "
                                 "scores on X", W.dtype)
        return self

    def _train_device(self, kernels, X1, codes, W, val):
        """The epochs on the cuda backend: every array a device array, copied nowhere; a new best
        epoch copies W (d + 1, c) back, an accuracy one count."""
        rule = RULES[self.rule]
        dtype = np.dtype(W.dtype)
        lr = dtype.type(self.lr)
        n_threads = _backend.get_num_threads()
        n_samples, n_classes = X1.shape[0], W.shape[1]
        scores = _device.empty((n_samples, n_classes), dtype)  # the batch epoch's and the accuracy's
        if self.method == "batch":
            grad = _device.empty(W.shape, dtype)
            step = lambda: kernels.batch_epoch(X1, codes, lr, rule, W, scores, grad, n_threads)
        else:
            work = _device.empty(n_classes, dtype)
            step = lambda: kernels.online_epoch(X1, codes, lr, rule, W, work, n_threads)
        train_accuracy = lambda: kernels.count_correct(X1, codes, W, scores, n_threads) / n_samples
        val_accuracy = None
        if val is not None:
            X1_val, codes_val = val
            scores_val = _device.empty((X1_val.shape[0], n_classes), dtype)
            val_accuracy = lambda: (kernels.count_correct(X1_val, codes_val, W, scores_val, n_threads)
                                    / X1_val.shape[0])
        return self._epochs(step, train_accuracy, val_accuracy, W.copy_to_host)

    def _epochs(self, step, train_accuracy, val_accuracy, weights):
        """Run step() until 100% training accuracy, patience or max_epochs; weights() is a host
        copy of the current weights."""
        history = {"train_accuracy": []}
        if val_accuracy is not None:
            history["val_accuracy"] = []
        epoch = 0
        # Weights past the float range are the NonFiniteError below, not numpy's warnings first.
        with np.errstate(over="ignore", invalid="ignore"):
            best_accuracy, best_W, best_epoch, since_best = train_accuracy(), weights(), 0, 0
            while epoch < self.max_epochs and best_accuracy < 1.0 and since_best < self.patience:
                step()
                epoch += 1
                current = weights()  # (n_features + 1) x n_classes values: a few us an epoch
                if not np.isfinite(current).all():  # diverged: its best epoch may be chance's
                    self._non_finite(f"the weights became NaN or infinite in epoch {epoch}", current.dtype)
                accuracy = train_accuracy()
                history["train_accuracy"].append(accuracy)
                if val_accuracy is not None:
                    history["val_accuracy"].append(val_accuracy())
                if accuracy > best_accuracy:
                    best_accuracy, best_W, best_epoch, since_best = accuracy, current, epoch, 0
                else:
                    since_best += 1
        self.weights_ = best_W
        if best_W.shape[1] == 2:  # scikit-learn's binary layout, decision_function's difference
            self.coef_ = (best_W[:-1, 1] - best_W[:-1, 0])[None]
            self.intercept_ = best_W[-1:, 1] - best_W[-1:, 0]
        else:
            self.coef_, self.intercept_ = np.ascontiguousarray(best_W[:-1].T), best_W[-1].copy()
        self.n_epochs_ = epoch
        self.best_epoch_ = best_epoch
        self.history_ = history
        return self

    def _non_finite(self, what, dtype):
        """Raise NonFiniteError saying `what` went past dtype's range, leaving the estimator unfitted."""
        for name in [name for name in vars(self) if name.endswith("_") and not name.startswith("__")]:
            delattr(self, name)
        raise NonFiniteError(f"{type(self).__name__}.fit: {what}: the updates went past "
                             f"{np.dtype(dtype).name}'s range; lower lr or scale X down"
                             + (" (or fit float64 X)" if dtype == np.float32 else ""))

    def _validation(self, X_val, y_val, dtype):
        """(X1_val, codes_val) from fit's validation_data, checked like X and y."""
        X_val = validate_data(self, X_val, reset=False, dtype=[np.float64, np.float32], order="C")
        return _with_bias(X_val, dtype), self._val_codes(y_val, X_val.shape[0])

    def _val_codes(self, y_val, n_samples):
        """y_val (on the host) as int64 codes of classes_, checked against n_samples."""
        y_val = np.asarray(y_val)
        if y_val.ndim != 1 or y_val.shape[0] != n_samples:
            raise ValueError(f"validation_data: y_val must be 1-D with {n_samples} labels, "
                             f"got shape {y_val.shape}")
        unknown = ~np.isin(y_val, self.classes_)
        if unknown.any():
            raise ValueError(f"validation_data: y_val holds labels not seen in y: "
                             f"{np.unique(y_val[unknown]).tolist()}")
        return np.searchsorted(self.classes_, y_val).astype(np.int64)

    def _fit_device(self, X, y, X_val, y_val):
        """fit for a device X (and X_val): checked by shape and dtype here, for finiteness while
        the bias column is added on the device, before any epoch."""
        kernels, name = _backend.kernels("perceptron", self.backend)
        if name != "cuda":
            raise device_array_error(X, "X", f"the {name!r} backend")
        shape, dtype = _check_device_matrix(X, "X")
        y = column_or_1d(_host_labels(y), warn=True)
        if y.shape[0] != shape[0]:
            raise ValueError(f"X and y must have the same number of samples, got X {shape} and "
                             f"y {y.shape}")
        codes = self._encode(y)
        self.n_features_in_ = shape[1]
        if hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        if X_val is not None:
            val_shape, _ = _check_device_matrix(X_val, "validation_data: X_val")
            if val_shape[1] != shape[1]:
                raise ValueError(f"validation_data: X_val has {val_shape[1]} features, but "
                                 f"{type(self).__name__} is expecting {shape[1]} features as input")
            codes_val = self._val_codes(_host_labels(y_val), val_shape[0])
        n_threads = _backend.get_num_threads()
        X1 = _device.empty((shape[0], shape[1] + 1), dtype)
        if kernels.with_bias(_device.view(X), X1, n_threads):
            raise ValueError("X contains NaN or infinity")
        val = None
        if X_val is not None:
            X1_val = _device.empty((val_shape[0], shape[1] + 1), dtype)
            if kernels.with_bias(_device.view(X_val), X1_val, n_threads):
                raise ValueError("validation_data: X_val contains NaN or infinity")
            val = (X1_val, _device.to_device(codes_val))
        W = _device.to_device(self._initial_weights(shape[1] + 1, dtype))
        return self._train_device(kernels, X1, _device.to_device(codes), W, val)

    def decision_function(self, X):
        """Confidence scores of the classes, as in scikit-learn's classifiers.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes), or (n_samples,) for two classes
            The scores ``[X, 1] @ weights_`` of each class. For two classes, scikit-learn's binary
            convention: the score of ``classes_[1]`` less that of ``classes_[0]``, positive where
            predict gives ``classes_[1]`` (what roc_auc scoring and other binary metrics take).
            Computed in float32 when both X and weights_ are float32, else in float64 (as fastdl's
            ops do): float64 X beyond float32's range scores finitely on a float32 fit.
        """
        scores = self._scores(X)
        return scores[:, 1] - scores[:, 0] if scores.shape[1] == 2 else scores

    def _scores(self, X):
        """The scores ``[X, 1] @ weights_`` of each class, (n_samples, n_classes), after checking X."""
        check_is_fitted(self)
        if _device.is_device(X):
            raise TypeError(f"decision_function, predict and score take host (NumPy) arrays, got "
                            f"{type(X).__module__}.{type(X).__name__}; weights_ is NumPy on every backend")
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32], order="C")
        dtype = compute_dtype(X, self.weights_)  # never X cast down to a float32 fit's dtype
        return _with_bias(X, dtype) @ as_compute(self.weights_, dtype)

    def predict(self, X):
        """The class with the highest score (the first on ties; scores as in decision_function)."""
        scores = self._scores(X)  # checks fitted first
        return self.classes_[np.argmax(scores, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags
