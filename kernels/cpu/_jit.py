"""How every Numba kernel here is compiled: options from fastdl.config, caching that never breaks."""

import numba

from fastdl import config


def compile_kernel(func, parallel=False):
    """njit `func` lazily with the configured options (serial or parallel variant)."""
    options = dict(nogil=True, parallel=parallel, fastmath=config.numba_fastmath())
    if config.numba_cache():
        try:
            return numba.njit(cache=True, **options)(func)
        except RuntimeError:
            # No writable cache location (read-only install, no home directory): compile in memory.
            pass
    return numba.njit(**options)(func)


def launch(serial, parallel, n_threads, *args):
    """Run the parallel variant on `n_threads` threads, or the serial one for a single thread."""
    if n_threads > 1:
        # set_num_threads is per calling thread in Numba, so set it at every launch.
        numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))
        return parallel(*args)
    return serial(*args)
