"""Backend registry: which compiled kernels serve an operation.

Each backend is a package of kernel modules with the same module and function names:

    numpy   fastdl.kernels.npy   vectorised numpy, the reference; always available
    numba   fastdl.kernels.cpu   Numba @njit kernels
    cython  fastdl.kernels.cy    Cython extensions (OpenMP when the build had it)
    cuda    fastdl.kernels.gpu   numba.cuda kernels; opt-in, never chosen by "auto"

"auto" picks, per operation, the first available backend in AUTO_ORDER (the order the benchmarks
measured fastest on a 2-core laptop-class CPU).
"""

import contextlib
import contextvars
import importlib
import numbers
import os
import threading
import warnings

from fastdl import config

PACKAGES = {
    "numpy": "fastdl.kernels.npy",
    "numba": "fastdl.kernels.cpu",
    "cython": "fastdl.kernels.cy",
    "cuda": "fastdl.kernels.gpu",
}
_NAMES = frozenset(("auto", *PACKAGES))  # the names _check_name passes as they are

# Measured with `make bench`; see the closing notes of the issues that added each operation.
AUTO_ORDER = {
    "distance": ("cython", "numba", "numpy"),
    "neighbors": ("cython", "numba", "numpy"),
    "perceptron": ("cython", "numba", "numpy"),
    "xor": ("cython", "numba", "numpy"),
    "conv": ("cython", "numba", "numpy"),
    "winograd": ("cython", "numba", "numpy"),
    "dense": ("cython", "numba", "numpy"),
    "pool": ("cython", "numba", "numpy"),
    "optim": ("cython", "numba", "numpy"),
    "norm": ("cython", "numba", "numpy"),
    "loss": ("cython", "numba", "numpy"),
    # Numba's cached clock kernel renders 20-50% faster than Cython's, but compiles for 13-26 s the
    # first time: longer than Cython takes for the course's 18,000 clocks (10-13 s).
    "clock": ("cython", "numba", "numpy"),
    "faces": ("cython", "numba", "numpy"),
    # The augmentation layers' resampling: Cython 2.4 ms, Numba 2.9 for RandomRotation + RandomZoom
    # over 128x32x32x3 float32 (benchmarks/bench_augment.py).
    "augment": ("cython", "numba", "numpy"),
}
DEFAULT_AUTO_ORDER = ("cython", "numba", "numpy")

_process_default = config.env_backend()
_context_backend = contextvars.ContextVar("fastdl_backend", default=None)
_status_cache = {}
_module_cache = {}
_warned = set()


class BackendUnavailableError(RuntimeError):
    """A backend was asked for by name but cannot be loaded here."""


def _check_name(name):
    if type(name) is str and name in _NAMES:  # already checked (get_backend's), the usual case
        return name
    if not isinstance(name, str):
        raise TypeError(f"backend must be a string, got {type(name).__name__}")
    name = name.strip().lower()
    if name != "auto" and name not in PACKAGES:
        raise ValueError(f"unknown backend {name!r}; choose one of 'auto', " + ", ".join(map(repr, PACKAGES)))
    return name


def _probe(name):
    """(available, reason) for one backend, loading it once."""
    if name == "numpy":
        return True, "vectorised numpy reference"
    if name == "numba":
        try:
            import numba
        except ImportError as exc:
            return False, f"numba is not installed ({exc})"
        return True, f"numba {numba.__version__}"
    if name == "cython":
        try:
            from fastdl.kernels.cy import _build
        except ImportError as exc:
            return False, f"the Cython extensions are not built ({exc}); reinstall: `make test` in a source checkout, or `pip install .`"
        openmp = "with OpenMP" if _build.openmp_enabled() else "without OpenMP (single-threaded)"
        return True, f"compiled {openmp}"
    if name == "cuda":
        return _probe_cuda()
    raise AssertionError(name)


def _probe_cuda():
    try:
        import numba
        from numba import cuda
    except ImportError as exc:
        return False, f"numba.cuda is not installed ({exc}); pip install \"fastdl[cuda]\""
    if numba.config.ENABLE_CUDASIM:
        return True, "numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1): exact, at Python's speed"
    try:
        visible = cuda.is_available()
    except Exception as exc:  # a broken driver must not break fastdl
        return False, f"the CUDA driver failed to load ({exc})"
    if not visible:
        try:
            from numba.cuda.cudadrv.driver import driver

            problem = getattr(driver, "initialization_error", None)
        except Exception as exc:  # noqa: BLE001 - any failure here means the same: no driver
            problem = exc
        if problem:
            return False, f"no NVIDIA driver could be loaded ({' '.join(str(problem).split())})"
        return False, "the NVIDIA driver sees no CUDA device"
    if "NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS" not in os.environ:
        # A small model's launches are small by nature: numba's warning for grids under 128 blocks
        # would fire on most of a training step's launches, at a few microseconds each.
        numba.config.CUDA_LOW_OCCUPANCY_WARNINGS = 0
    try:
        device = cuda.get_current_device()
        name = device.name.decode() if isinstance(device.name, bytes) else device.name
        return True, f"{name}, compute capability {device.compute_capability[0]}.{device.compute_capability[1]}"
    except Exception as exc:  # a device that cannot be opened (busy, out of memory)
        return False, f"the CUDA device could not be opened ({exc})"


def backend_status():
    """Availability of every backend.

    Returns
    -------
    dict
        name -> (available, reason), where reason says why a backend cannot be used.
    """
    missing = [name for name in PACKAGES if name not in _status_cache]
    if missing:
        # Probing the cython backend loads the OpenMP runtime, which reads its wait policy then (_load).
        with config.passive_openmp():
            for name in missing:
                _status_cache[name] = _probe(name)
    # In PACKAGES order, whichever backend an operation happened to load first.
    return {name: _status_cache[name] for name in PACKAGES}


def available_backends():
    """Names of the backends usable in this process, reference first."""
    return [name for name, (ok, _) in backend_status().items() if ok]


def set_backend(name):
    """Set the process-wide default backend ("auto", "numpy", "numba", "cython" or "cuda").

    Raises
    ------
    ValueError
        ``name`` is none of these (case and surrounding spaces are ignored).
    TypeError
        ``name`` is not a string.
    """
    global _process_default
    _process_default = _check_name(name)


def get_backend():
    """The backend name in force here: the innermost `use_backend`, else the process default."""
    return _context_backend.get() or _process_default


def selects_cuda(backend=None):
    """Whether `backend` (None: the one in force here) is "cuda": a model built so runs on the device."""
    return (_check_name(backend) if backend is not None else _check_name(get_backend())) == "cuda"


@contextlib.contextmanager
def use_backend(name):
    """Context manager selecting a backend for the operations run inside it.

    The choice belongs to the calling thread (a context variable, as `decimal.localcontext`'s):
    threads started inside the block, a ThreadPoolExecutor's included, run on the process
    default (`set_backend`) unless they enter `use_backend` themselves or are handed the context
    (`contextvars.copy_context().run`). fastdl's ops pick their kernels on the calling thread, so
    the work they hand to fastdl's own threads runs on the caller's choice.

    Raises
    ------
    ValueError
        ``name`` is not "auto", "numpy", "numba", "cython" or "cuda" (case and surrounding spaces
        are ignored).
    TypeError
        ``name`` is not a string.
    """
    token = _context_backend.set(_check_name(name))
    try:
        yield
    finally:
        _context_backend.reset(token)


_load_lock = threading.RLock()


def _load(name, family):
    """(kernel module or None, reason) of one family on one backend, cached."""
    key = (name, family)
    if key in _module_cache:
        return _module_cache[key]
    # One load at a time: two threads' loads would both set OMP_WAIT_POLICY and then both remove
    # it (a KeyError), as fastdl's own threads can when a family first loads inside a region.
    with _load_lock:
        if key in _module_cache:  # loaded while this thread waited
            return _module_cache[key]
        # Its at-fork hook puts a forked child's kernels on one thread: without it, a child of a
        # process that only rendered clocks (no fastdl region) hung in its first OpenMP kernel.
        import fastdl._parallel  # noqa: F401
        config.check_flags()
        _process_threads()  # a bad FASTDL_NUM_THREADS raises here too, whatever the op (a direct one)  # a bad FASTDL_FASTMATH raises here, not as "kernels failed to load"
        # The first compiled module loads the OpenMP runtime, which reads its wait policy then.
        with config.passive_openmp():
            if name not in _status_cache:
                _status_cache[name] = _probe(name)
            ok, reason = _status_cache[name]
            module = None
            if ok and name == "cuda" and family not in _gpu_families():
                reason = (f"fastdl's {family!r} operations do not run on it yet (it runs "
                          f"{', '.join(_gpu_families())})")
            elif ok:
                try:
                    module = importlib.import_module(f"{PACKAGES[name]}.{family}")
                except Exception as exc:  # noqa: BLE001 - a missing module, or Numba failing as a
                    # module compiles its helpers: the backend is unavailable, "auto" goes on.
                    reason = f"its {family!r} kernels failed to load ({type(exc).__name__}: {exc})"
        _module_cache[key] = (module, reason)
    return _module_cache[key]


def _gpu_families():
    from fastdl.kernels.gpu import FAMILIES

    return FAMILIES


def resolve(family, backend=None):
    """The backend name that will run `family`."""
    return kernels(family, backend)[1]


def kernels(family, backend=None):
    """The kernel module of `family` ("distance", "neighbors", ...) and the backend name."""
    name = _check_name(backend) if backend is not None else _check_name(get_backend())
    if name != "auto":
        module, reason = _load(name, family)
        if module is None:
            raise BackendUnavailableError(f"backend {name!r} is unavailable: {reason}")
        return module, name
    for candidate in AUTO_ORDER.get(family, DEFAULT_AUTO_ORDER):
        module, reason = _load(candidate, family)
        if module is not None:
            return module, candidate
        if candidate not in _warned:
            _warned.add(candidate)
            warnings.warn(f"fastdl: skipping backend {candidate!r}: {reason}", RuntimeWarning, stacklevel=3)
    raise AssertionError("the numpy backend is always available")


# Threads ---------------------------------------------------------------------------------------

_num_threads = None
_context_threads = contextvars.ContextVar("fastdl_kernel_threads", default=None)


def get_num_threads():
    """Threads fastdl's kernels use (Numba, OpenMP) and the cap it puts on BLAS."""
    process_threads = _process_threads()  # first, so that FASTDL_NUM_THREADS caps BLAS inside kernel_threads too
    threads = _context_threads.get()
    return process_threads if threads is None else threads


def _process_threads():
    """set_num_threads' count, else FASTDL_NUM_THREADS (read once, when it also caps BLAS), else the
    CPUs this process may use."""
    global _num_threads
    if _num_threads is None:
        _num_threads = config.env_num_threads()
        if config.num_threads_from_env():
            _limit_blas(_num_threads)
    return _num_threads


def set_num_threads(n):
    """Set the threads used by Numba and OpenMP kernels, and by BLAS, to `n` (an int or a NumPy integer).

    Raises
    ------
    ValueError
        ``n`` is not an integer from 1 to 1024 (a bool or a float such as 2.0 included).
    """
    global _num_threads
    n = _thread_count(n)
    _num_threads = n
    _limit_blas(n)


@contextlib.contextmanager
def kernel_threads(n):
    """Context manager: fastdl's own kernels run on `n` threads inside it; BLAS keeps its threads.

    For work that is all GEMMs (a model of Dense layers): BLAS threads those itself, and fastdl's
    light kernels around them run on one thread, so the two never spin against each other.
    """
    token = _context_threads.set(_thread_count(n))
    try:
        yield
    finally:
        _context_threads.reset(token)


def _thread_count(n):
    """n as a Python int from 1 to config.MAX_THREADS; NumPy integers count as integers (as in
    fastdl._validation.check_int)."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"the number of threads must be a positive integer, got {n!r}")
    if n > config.MAX_THREADS:
        raise ValueError(f"the number of threads must be at most {config.MAX_THREADS}, got {n!r}")
    return int(n)


def _limit_blas(n):
    # Our kernels never call BLAS from inside their own parallel regions, so capping BLAS at the
    # same count keeps the cores from being oversubscribed when a GEMM and a kernel alternate.
    # While a region holds BLAS to one thread the cap waits for its end (see _parallel.cap_blas).
    from fastdl import _parallel

    _parallel.cap_blas(n)
