"""How the Cython extensions were built (OpenMP or not)."""

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int fastdl_openmp_enabled(void) { return 1; }
    static int fastdl_openmp_max_threads(void) { return omp_get_max_threads(); }
    #else
    static int fastdl_openmp_enabled(void) { return 0; }
    static int fastdl_openmp_max_threads(void) { return 1; }
    #endif
    """
    int fastdl_openmp_enabled() nogil
    int fastdl_openmp_max_threads() nogil


def openmp_enabled():
    """True when the extensions were compiled with OpenMP."""
    return bool(fastdl_openmp_enabled())


def openmp_max_threads():
    """OpenMP's default thread count, or 1 without OpenMP."""
    return fastdl_openmp_max_threads()
