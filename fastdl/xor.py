"""The course's XOR network: a 2-2-1 sigmoid net trained by gradient descent, and the lazy search.

Weights are a vector of 9, laid out as
``[b_h1, w(x1->h1), w(x2->h1), b_h2, w(x1->h2), w(x2->h2), b_out, w(h1->out), w(h2->out)]``;
the XOR points are (0,0), (0,1), (1,0), (1,1) with targets 0, 1, 1, 0, and a point is
misclassified when the output is on the wrong side of 0.5.

On the cuda backend the ops allocate their outputs on the device, run the kernels there and copy
the answers back: they take scalars (and train_xor 9 weights, a NumPy or a device array) and answer
in NumPy.
"""

import math
import numbers
from dataclasses import dataclass

import numpy as np

from fastdl import _device
from fastdl import backend as _backend
from fastdl._validation import NonFiniteError, check_array, check_int

__all__ = ["XORResult", "xor_forward", "train_xor", "lazy_search", "lazy_search_stats", "draw_weights", "NonFiniteError"]

N_WEIGHTS = 9
INPUTS = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
TARGETS = np.array([0.0, 1.0, 1.0, 0.0])
MAX_CONFIDENCE_Z = 1e6  # lazy_search_stats' largest z: 6 already covers all but 2e-9


@dataclass
class XORResult:
    """What `train_xor` returns.

    Attributes
    ----------
    weights : ndarray of shape (9,)
        The weights of the last state (the first with no misclassified point when converged).
    n_iterations : int
        States visited, the initial one counted as 1 (so n_iterations - 1 updates were made).
    mse : ndarray of shape (n_iterations,)
        Mean squared error over the four points at every state.
    n_misclassified : ndarray of shape (n_iterations,), int64
        Misclassified points at every state.
    converged : bool
        Whether the last state classifies all four points correctly.
    """

    weights: np.ndarray
    n_iterations: int
    mse: np.ndarray
    n_misclassified: np.ndarray
    converged: bool


def _check_weights(weights):
    """A finite float32/float64 vector of 9 weights, as a fresh C-contiguous copy."""
    try:
        array = np.asarray(weights)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"weights must be array-like of numbers: {exc}") from None
    if array.dtype == object or array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number) \
            or np.issubdtype(array.dtype, np.complexfloating):
        raise TypeError(f"weights must hold real numbers, got dtype {array.dtype}")
    if array.ndim != 1 or array.shape[0] != N_WEIGHTS:
        raise ValueError(f"weights must be a vector of {N_WEIGHTS} values, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("weights contains NaN or infinity")
    dtype = np.float32 if array.dtype.type is np.float32 else np.float64
    return np.array(array, dtype=np.dtype(dtype).newbyteorder("="), order="C", copy=True)


def _kernels(backend):
    """The xor kernels of `backend` and whether they run on the CUDA device (the cuda backend)."""
    module, name = _backend.kernels("xor", backend)
    return module, name == "cuda"


def _empty(on_device, shape, dtype):
    """An output array for the kernels: on the device for the cuda backend, else NumPy."""
    return _device.empty(shape, dtype) if on_device else np.empty(shape, dtype)


def _host(array):
    """A kernel's output as NumPy: a device array is copied back, a NumPy one passes through."""
    return _device.answer(array, None) if _device.is_device(array) else array


def _check_positive(value, name):
    """value as a float, after checking it is a finite real number > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"{name} must be a positive finite number, got {value}")
    return value


def xor_forward(weights):
    """Outputs of the network at the four XOR points.

    Parameters
    ----------
    weights : array-like of shape (9,)

    Returns
    -------
    ndarray of shape (4,), float64
        Outputs at (0,0), (0,1), (1,0), (1,1).
    """
    w = _check_weights(weights).astype(np.float64)
    x1, x2 = INPUTS[:, 0], INPUTS[:, 1]
    h1 = 1.0 / (1.0 + np.exp(-(w[0] + w[1] * x1 + w[2] * x2)))
    h2 = 1.0 / (1.0 + np.exp(-(w[3] + w[4] * x1 + w[5] * x2)))
    return 1.0 / (1.0 + np.exp(-(w[6] + w[7] * h1 + w[8] * h2)))


def train_xor(weights, lr, max_iter=100_000, backend=None):
    """Full-batch gradient descent on the XOR points until none is misclassified.

    Each step is ``weights -= lr * grad`` where grad is the gradient of half the mean squared error
    over the four points, ``mean((out - target) ** 2) / 2`` (the course's update; it reproduces the
    course's iteration counts exactly). The misclassification count is checked before each step.

    Parameters
    ----------
    weights : array-like of shape (9,)
        Initial weights (see the module docstring for the layout); float32 input keeps the
        weights in float32 (the arithmetic is float64 in every backend), anything else is float64.
        A device array (CuPy, PyTorch CUDA, numba) is copied to the host to be checked (9 values).
    lr : float
        Learning rate, > 0.
    max_iter : int, default 100000
        Most states visited, the initial one included.
    backend : str, optional
        "numpy", "numba", "cython", "cuda" or "auto"; None uses the process default.

    Returns
    -------
    XORResult
        NumPy arrays on every backend: on cuda the descent runs on the device and its states are
        copied back (n_iterations of each, not max_iter).

    Raises
    ------
    fastdl.NonFiniteError
        (a ValueError) The weights or the error became NaN or infinite: lr is too large for them.
    """
    if _device.is_device(weights):
        weights = _device.view(weights).copy_to_host()
    w = _check_weights(weights)
    lr = _check_positive(lr, "lr")
    max_iter = check_int(max_iter, "max_iter", 1)
    module, on_device = _kernels(backend)
    state = _device.to_device(w) if on_device else w
    mse = _empty(on_device, max_iter, w.dtype)
    wrong = _empty(on_device, max_iter, np.int64)
    n = int(module.train_xor(state, lr, mse, wrong, _backend.get_num_threads()))
    weights, mse, wrong = _host(state), _host(mse[:n]).copy(), _host(wrong[:n]).copy()
    # NaN outputs would be counted as class 0 and the descent go on as if it were stuck.
    if not (np.isfinite(weights).all() and np.isfinite(mse).all()):
        raise NonFiniteError(f"train_xor: the {weights.dtype} weights became NaN or infinite: "
                             f"lr={lr} is too large for them, lower it")
    return XORResult(weights=weights, n_iterations=n, mse=mse, n_misclassified=wrong,
                     converged=bool(wrong[n - 1] == 0))


def _check_seed(seed):
    """seed as np.uint64: a plain int would let Numba reuse an int64 build for seeds >= 2**63."""
    return np.uint64(check_int(seed, "seed", 0, 2**64 - 1))


def lazy_search(n_successes, seed=0, backend=None):
    """Draw normal(0, 1) weight vectors until one solves XOR, `n_successes` times independently.

    Search i draws from a counter-based stream that depends only on (seed, i), so the answer is the
    same on every backend and for any thread count; the searches run in parallel.

    Parameters
    ----------
    n_successes : int
        Independent searches, >= 1.
    seed : int, default 0
        In [0, 2**64).
    backend : str, optional
        "numpy", "numba", "cython", "cuda" (one device thread per search) or "auto"; None uses the
        process default.

    Returns
    -------
    ndarray of shape (n_successes,), int64
        Draws each search took, its successful draw included.
    """
    n_successes = check_int(n_successes, "n_successes", 1)
    seed = _check_seed(seed)
    module, on_device = _kernels(backend)
    out = _empty(on_device, n_successes, np.int64)
    module.lazy_search(seed, out, _backend.get_num_threads())
    return _host(out)


def draw_weights(n_draws, search=0, seed=0, first_draw=0, backend=None):
    """The weight vectors search `search` of `lazy_search` draws, from draw `first_draw` on.

    Parameters
    ----------
    n_draws : int >= 0
    search : int in [0, 2**64)
        The index of the search among `lazy_search`'s (its draws depend only on seed and search).
    seed : int, default 0
        As `lazy_search`'s seed.
    first_draw : int in [0, 2**53]
        The index of the first draw returned, so a search can be replayed from any draw on.
    backend : str, optional
        "auto", "numpy", "numba", "cython", "cuda" (None: the process default); every backend
        draws the same numbers.

    Returns
    -------
    ndarray of shape (n_draws, 9), float64
        NumPy on every backend (on cuda, drawn on the device and copied back).
    """
    n_draws = check_int(n_draws, "n_draws", 0)
    search = np.uint64(check_int(search, "search", 0, 2**64 - 1))
    first_draw = check_int(first_draw, "first_draw", 0, 2**53)
    seed = _check_seed(seed)
    module, on_device = _kernels(backend)
    out = _empty(on_device, (n_draws, N_WEIGHTS), np.float64)
    module.normal_weights(seed, search, first_draw, out, _backend.get_num_threads())
    return _host(out)


def lazy_search_stats(draws, confidence_z=1.959963984540054):
    """Mean and standard deviation of draws per success, and the per-draw success probability.

    The probability is n_successes / total draws (the geometric maximum-likelihood estimate), with
    Wilson's score interval (95% by default) on (successes, draws).

    Parameters
    ----------
    draws : array-like of shape (n_successes,)
        Draws each search took (as `lazy_search` returns them): integers >= 1, at least one.
    confidence_z : float, default 1.96 (95%)
        The normal quantile of the interval, a number in (0, 1e6].

    Returns
    -------
    dict
        n_successes, total_draws, mean, std (sample, ddof=1; 0 for one success), p, p_low, p_high.

    Raises
    ------
    ValueError
        No draws, not 1-D, a count below 1, or confidence_z not in (0, 1e6].
    TypeError
        Counts that are not integers, a confidence_z that is not a real number.
    """
    confidence_z = _check_positive(confidence_z, "confidence_z")
    if confidence_z > MAX_CONFIDENCE_Z:  # its square would leave float range
        raise ValueError(f"confidence_z must be at most {MAX_CONFIDENCE_Z:g} (z = 6 already leaves out only 2e-9), "
                         f"got {confidence_z}")
    draws = check_array(draws, "draws", 1, "(n_successes,)")
    if draws.dtype.kind not in "iu":
        raise TypeError(f"draws must hold integer counts of draws, got dtype {draws.dtype}")
    if draws.min() < 1:
        raise ValueError(f"draws must be >= 1 (a success takes at least one draw), got {draws.min()}")
    # Python integers: a total of large counts must not wrap around int64.
    k, n = draws.size, sum(draws.tolist())
    p = k / n
    z2 = confidence_z ** 2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = confidence_z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return {"n_successes": k, "total_draws": n, "mean": n / k,
            "std": float(draws.std(ddof=1)) if k > 1 else 0.0,
            "p": p, "p_low": centre - half, "p_high": centre + half}
