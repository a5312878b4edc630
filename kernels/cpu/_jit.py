"""How every Numba kernel here is compiled: options from fastdl.config, caching that never breaks."""

import hashlib
import types
import warnings

import numba

from fastdl import config

# Numba starts its threading layer, and with it the OpenMP runtime, at the first parallel launch,
# long after fastdl.backend loaded this module under config.passive_openmp: the runtime would
# then read the default wait policy, and its threads spin 7-8 ms after every kernel (measured),
# on the cores the GEMMs on fastdl's own threads need next. Start the layer now, as it loads.
numba.get_num_threads()


def _variant(func, suffix):
    """A copy of func under another name.

    Numba's on-disk cache keys entries by function name, source and signature but not by compile
    options, so a serial and a parallel build of one function would load each other's machine code.
    Each variant gets its own name, and so its own cache entry.
    """
    clone = types.FunctionType(func.__code__, func.__globals__, func.__name__ + suffix,
                               func.__defaults__, func.__closure__)
    clone.__qualname__ = func.__qualname__ + suffix
    clone.__doc__ = func.__doc__
    return clone


def _njit(func, **options):
    """numba.njit(func) cached on disk unless FASTDL_CACHE=0 (config.numba_cache); in memory
    where Numba finds no writable cache location (read-only install, no writable home)."""
    global _uncached_warned
    if config.numba_cache():
        try:
            return numba.njit(cache=True, **options)(func)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            if not _uncached_warned:
                _uncached_warned = True
                warnings.warn("fastdl: Numba finds no writable place to cache its compiled kernels (the "
                              "kernels' __pycache__, ~/.cache/numba): every process compiles the ones it runs "
                              "again, up to minutes; set NUMBA_CACHE_DIR to a writable directory (fastdl info "
                              "says where the cache is)", RuntimeWarning, stacklevel=2)
    return numba.njit(**options)(func)


_uncached_warned = False  # _njit's warning is given once a process


def helper(cache=True, **options):
    """Decorator: numba.njit for a function the kernels call (no kernel itself), cached on disk as
    the kernels are (see _njit). cache=False for a helper that calls another file's helpers:
    Numba's cache keys it on its own file, and would keep their old code after an edit of theirs
    (a kernel loaded from the cache needs none of its helpers compiled; see compile_kernel's uses)."""

    def decorate(func):
        if cache:
            return _njit(func, nogil=True, **options)
        return numba.njit(nogil=True, **options)(func)

    return decorate


def compile_kernel(func, parallel=False, exact=False, uses=()):
    """njit `func` lazily with the configured options (serial or parallel variant).

    Float division by zero gives inf or nan instead of raising (numpy's error model, as Cython's
    cdivision): with Python's, the check in every division keeps a loop from vectorising (the
    RMSprop and Adam updates ran 13x slower on one thread). exact: never fastmath (the kernel
    promises the same bits as its Cython twin, or relies on the exact rounding of its arithmetic,
    as vecmath's range reductions do). uses: the modules of helpers the kernel inlines from other
    files, whose source goes into the variant's name: Numba's cache keys a kernel on its own
    file only, and would keep the old inlined code after an edit of theirs.
    """
    fastmath = config.numba_fastmath() and not exact
    options = dict(nogil=True, parallel=parallel, fastmath=fastmath, error_model="numpy")
    # Every option that changes the machine code is in the variant's name (see _variant); the
    # error model's part keeps caches written before it was numpy's from being loaded.
    suffix = ("_parallel" if parallel else "_serial") + ("_fastmath" if fastmath else "") + "_numpy_errors"
    if uses:
        suffix += "_" + _sources_digest(uses)
    return _njit(_variant(func, suffix), **options)


def _sources_digest(modules):
    """A short digest of the modules' source files (their names' order kept)."""
    digest = hashlib.sha256()
    for module in modules:
        with open(module.__file__, "rb") as source:
            digest.update(source.read())
    return digest.hexdigest()[:12]


def launch(serial, parallel, n_threads, *args):
    """Run the parallel variant on `n_threads` threads, or the serial one for a single thread."""
    if n_threads > 1:
        # set_num_threads is per calling thread in Numba, so set it at every launch.
        numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))
        return parallel(*args)
    return serial(*args)
