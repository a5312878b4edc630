"""fastdl: compiled kernels for classic machine learning and small deep networks.

Importing fastdl compiles nothing and loads no backend; kernels load on first use.
"""

from fastdl import config as _config

with _config.short_blas_spin():  # imported first, fastdl loads numpy's OpenBLAS (see there)
    __import__("numpy")

from fastdl.backend import (  # noqa: E402
    BackendUnavailableError,
    available_backends,
    backend_status,
    get_backend,
    get_num_threads,
    set_backend,
    set_num_threads,
    use_backend,
)
from fastdl._validation import NonFiniteError  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailableError",
    "NonFiniteError",
    "available_backends",
    "backend_status",
    "get_backend",
    "get_num_threads",
    "set_backend",
    "set_num_threads",
    "use_backend",
    "__version__",
]
