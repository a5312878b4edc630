"""The ``fastdl`` command: reproduce, info, bench, data.

Importing this module must stay cheap (it runs on every ``fastdl --help``), so numpy,
scikit-learn, matplotlib and umap are imported inside the commands that use them.
"""

import argparse
import contextlib
import os
import platform
import sys


def main(argv=None):
    """Run the ``fastdl`` command line.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; None reads ``sys.argv[1:]``.

    Returns
    -------
    int
        Exit status: 0 on success; 2 on a usage or data error, an unavailable backend, a file
        that cannot be read or written, or too little memory; 1 when a download fails (the
        network), ``bench`` finds a wrong or failing contender, or the reader of the output goes
        away (``fastdl info | head -1``); 130 on Ctrl-C.
    """
    from fastdl.backend import BackendUnavailableError

    parser = _build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        status = args.handler(args) or 0
        sys.stdout.flush()  # here, so that a reader gone away is caught below, not at exit
        return status
    except KeyboardInterrupt:
        print("fastdl: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away: stop quietly, as Python's documentation advises (signal module,
        # "Note on SIGPIPE"): stdout to devnull, lest flushing it at exit fail again, and status 1.
        with contextlib.suppress(AttributeError, OSError, ValueError):  # a stdout with no file
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (ValueError, OSError, MemoryError, BackendUnavailableError) as error:
        # The user's to fix (data, arguments, paths, permissions, sizes, no GPU): a one-line
        # message, not a traceback. Programming errors (TypeError, ...) still show theirs.
        print(f"fastdl: error: {_describe_error(error)}", file=sys.stderr)
        return 2


def _describe_error(error):
    """One line for a user-facing error; a MemoryError's own text may be empty."""
    if isinstance(error, MemoryError):
        return f"out of memory ({error})" if str(error) else "out of memory"
    return str(error) or type(error).__name__


def _build_parser():
    from fastdl.repro import ASSIGNMENTS

    parser = argparse.ArgumentParser(
        prog="fastdl", description="fastdl: compiled kernels for the course assignments.")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    names = ", ".join(f"{name} ({description})" for name, (_, description)
                      in ASSIGNMENTS.items())
    reproduce = commands.add_parser(
        "reproduce", help="regenerate an assignment's tables and figures",
        description=f"Regenerate tables and figures. Implemented: {names}.")
    reproduce.add_argument("assignments", nargs="*", metavar="NAME",
                           help="assignments to run, or 'all' (default: all)")
    reproduce.add_argument("--data-dir", default=None,
                           help="directory with the data: course digits (default: $FASTDL_DATA, "
                                "else the embedded scikit-learn digits), Fashion-MNIST or "
                                "CIFAR-10 files, or the clocks' images.npy and labels.npy "
                                "(else synthetic clocks; see `fastdl data list`)")
    reproduce.add_argument("--out", default="results", help="output directory (default: results)")
    reproduce.add_argument("--dataset", choices=("fashion", "cifar10"), default=None,
                           help="a4's dataset (default: fashion)")
    speed = reproduce.add_mutually_exclusive_group()
    speed.add_argument("--quick", action="store_const", const=True, default=None,
                       help="skip the slow steps (t-SNE, UMAP, ...; a4: a few thousand images, "
                            "one epoch; a5: 800 training clocks, three epochs; a6: 256 images, "
                            "two epochs per model)")
    speed.add_argument("--full", action="store_const", const=False, dest="quick",
                       help="the full runs (a4, a5 and a6 otherwise run their quick version when "
                            "the full one would take over ten minutes here)")
    reproduce.add_argument("--models", default=None, metavar="KEYS",
                           help="a5: train only these models, comma-separated (e.g. "
                                "multihead,hands; default: all ten)")
    reproduce.add_argument("--data", default=None, metavar="SOURCE",
                           help="a6's images: faces (synthetic, default), fashion (Fashion-MNIST), "
                                "folder:PATH (PNG/JPEG files, e.g. Kaggle's Simpsons faces) or npy:PATH "
                                "(a .npy array of faces)")
    reproduce.add_argument("--epochs", type=_positive_int, default=None,
                           help="a5, a6: epochs per model (default: a5 60 full, 3 quick; a6 20 full, 2 quick)")
    reproduce.add_argument("--images", type=_positive_int, default=None,
                           help="a6: training images (default: 10000 full, 256 quick)")
    reproduce.add_argument("--backend", default=None, metavar="NAME",
                           help="the backend that trains the networks of a4, a5 and a6: cuda trains "
                                "them on the GPU (default: the process default, FASTDL_BACKEND or auto)")
    reproduce.add_argument("--no-verify", action="store_true",
                           help="accept data files that are not the course's (no SHA-256 check)")
    reproduce.set_defaults(handler=_cmd_reproduce)

    info = commands.add_parser("info", help="versions, backends, threads, GPU")
    info.set_defaults(handler=_cmd_info)

    bench = commands.add_parser("bench", help="a short timing of the backends vs numpy and "
                                              "scikit-learn (full suite: make bench)")
    bench.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    bench.set_defaults(handler=_cmd_bench)

    data = commands.add_parser("data", help="datasets and where they are looked for")
    data_commands = data.add_subparsers(title="data commands", metavar="ACTION")
    data_list = data_commands.add_parser("list", help="known datasets and their locations")
    data_list.add_argument("--data-dir", default=None, help="also look in this directory")
    data_list.set_defaults(handler=_cmd_data_list)
    data_download = data_commands.add_parser(
        "download", help="fetch fashion-mnist or cifar-10 (verified by SHA-256)",
        description="Fetch a dataset's published files into DIR/NAME (default: "
                    "$FASTDL_CACHE_DIR or ~/.cache/fastdl), where the loaders look for them.")
    data_download.add_argument("name", metavar="NAME", choices=["fashion-mnist", "cifar-10"],
                               help="fashion-mnist or cifar-10")
    data_download.add_argument("--data-dir", default=None, metavar="DIR",
                               help="download into DIR/NAME instead of the cache")
    data_download.set_defaults(handler=_cmd_data_download)
    data_generate = data_commands.add_parser(
        "generate", help="render synthetic clocks (assignment 5's data without the course's) or "
                         "cartoon faces (assignment 6)",
        description="Render synthetic clocks into DIR/clocks (default: $FASTDL_CACHE_DIR or "
                    "~/.cache/fastdl, then clocks/), as images.npy, labels.npy and clocks.json, "
                    "where fastdl.data.load_clocks looks for them; or cartoon faces into "
                    "DIR/faces, as images.npy (64x64 RGB), factors.npy (their generative "
                    "factors) and faces.json.")
    data_generate.add_argument("name", metavar="NAME", choices=["clocks", "faces"],
                               help="clocks or faces")
    data_generate.add_argument("--n", type=_positive_int, default=None,
                               help="number of images (default: clocks 18000, the course's count; "
                                    "faces 10000)")
    data_generate.add_argument("--seed", type=_non_negative_int, default=0,
                               help="renderer seed (default: 0, what load_clocks renders)")
    data_generate.add_argument("--max-turn", type=float, default=None, metavar="DEGREES",
                               help="clocks: turn the whole clock by at most this many degrees "
                                    "either way (default: 30, what load_clocks renders; 180: any "
                                    "angle)")
    data_generate.add_argument("--faces", choices=["one", "varied"], default=None,
                               help="clocks: one: the seed's one clock in every image, as the "
                                    "course's photographs (default); varied: every image a clock "
                                    "of its own design")
    data_generate.add_argument("--data-dir", default=None, metavar="DIR",
                               help="write into DIR/clocks (DIR/faces) instead of the cache")
    data_generate.set_defaults(handler=_cmd_data_generate)
    data.set_defaults(handler=_cmd_data_list, data_dir=None)
    return parser


# reproduce's options that only some assignments take: flag -> the runner's parameter.
_ASSIGNMENT_OPTIONS = {"--dataset": "dataset", "--models": "models", "--data": "data",
                       "--epochs": "epochs", "--images": "images", "--backend": "backend",
                       "--no-verify": "verify"}


def _check_models(models):
    from fastdl.repro import a5

    a5.check_models(models)


def _check_data(data):
    from fastdl.repro import a6

    a6.parse_data(data)


# The checks of option values that look at nothing else (no files): run for an option that no
# assignment of the command takes.
_VALUE_CHECKS = {"models": _check_models, "data": _check_data}


def _cmd_reproduce(args):
    import inspect
    from pathlib import Path

    from fastdl.data import DatasetNotFoundError
    from fastdl.repro import ASSIGNMENTS, check_options, get_runner, run

    names = args.assignments or ["all"]
    run_all = "all" in names
    if run_all:
        names = list(ASSIGNMENTS)
    unknown = [name for name in names if name not in ASSIGNMENTS]
    if unknown:
        raise ValueError(f"unknown assignment(s) {', '.join(unknown)}; "
                         f"implemented: {', '.join(ASSIGNMENTS)} (or 'all')")
    if run_all and args.data_dir is not None and not Path(args.data_dir).expanduser().is_dir():
        # Else every assignment with data would be skipped for it, one after the other.
        raise FileNotFoundError(f"--data-dir {args.data_dir} not found: no such directory")
    out = Path(args.out).expanduser()  # `--out=~/res`: the shell leaves a ~ after "=" as it is

    def parameters(name):
        return inspect.signature(get_runner(name)).parameters

    # Checked before anything runs, so a mistake is said at once, not after an hour of a1 to a5:
    # which assignments take the options given, then every value for every assignment.
    options = _assignment_options(args)
    for flag, option in _ASSIGNMENT_OPTIONS.items():
        ignoring = [name for name in names if option in options and option not in parameters(name)]
        if ignoring:  # only then are the other assignments' modules imported, to name the takers
            _report_ignored(flag, [name for name in ASSIGNMENTS if option in parameters(name)], ignoring,
                            run_all)
    # A value no assignment here reads is still checked (the warning above says it is ignored):
    # a typo in `reproduce a2 a5 --models ...` would otherwise pass until a5's turn, or for ever.
    for option, check in _VALUE_CHECKS.items():
        if option in options and not any(option in parameters(name) for name in names):
            check(options[option])
    runs = {name: dict(data_dir=args.data_dir, quick=args.quick,
                       **{key: value for key, value in options.items() if key in parameters(name)})
            for name in names}
    for name, kwargs in runs.items():
        try:
            check_options(name, **kwargs)
        except DatasetNotFoundError:
            if not run_all:
                raise  # else its run says it is skipped, in its turn
    for name, kwargs in runs.items():
        try:
            result = run(name, out_dir=out, **kwargs)
        except DatasetNotFoundError as error:
            if not run_all:
                raise
            # Running everything (`make run`): one missing dataset must not hide the rest.
            print(f"{name}: skipped, its data is missing:\n{error}\n")
            continue
        files = result.get("files", [])
        # The folder that holds them: out/a6/faces for a6, out/a4/fashion for a4.
        folder = Path(os.path.commonpath([str(Path(f).parent) for f in files])) if files else out / name
        print(f"{name}: data source: {result.get('source')}; {len(files)} files written under {folder}/")
    return 0


def _assignment_options(args):
    """{runner parameter: value} of the options given on the command line."""
    models = None if args.models is None else [key.strip() for key in args.models.split(",") if key.strip()]
    options = {"dataset": args.dataset, "models": models, "data": args.data, "epochs": args.epochs,
               "images": args.images, "backend": args.backend,
               # Only passed when asked for, so an assignment without checksummed data needn't accept it.
               "verify": False if args.no_verify else None}
    return {key: value for key, value in options.items() if value is not None}


def _report_ignored(flag, takers, ignoring, run_all):
    """Say which assignments ignore a flag given: an error for --backend on one named (it would
    train elsewhere than asked), else a warning (running them all shares the flags; and an
    assignment's other work may still be wanted)."""
    several = len(ignoring) > 1
    if flag == "--backend":
        message = (f"--backend applies to the assignments that train networks; {', '.join(ignoring)} "
                   f"train{'' if several else 's'} none (use FASTDL_BACKEND for "
                   f"{'their' if several else 'its'} kernels)")
        if not run_all:
            raise ValueError(message)
    else:
        message = (f"{flag} applies to {', '.join(takers) or 'no assignment'}; {', '.join(ignoring)} "
                   f"ignore{'' if several else 's'} it")
    print(f"fastdl: warning: {message}", file=sys.stderr)


def _version(module_name):
    """A module's __version__, or why it could not be imported."""
    try:
        module = __import__(module_name)
    except Exception as error:  # any import failure is reportable, never fatal here
        return f"not available ({type(error).__name__}: {error})"
    return getattr(module, "__version__", "unknown version")


def _cmd_info(args):
    import fastdl

    print(f"fastdl        {getattr(fastdl, '__version__', 'unknown')}")
    print(f"Python        {platform.python_version()} ({sys.executable})")
    print(f"platform      {platform.platform()}")
    for name in ("numpy", "numba", "Cython", "sklearn", "scipy", "threadpoolctl"):
        label = "scikit-learn" if name == "sklearn" else name
        version = _version(name)
        if name == "Cython" and version.startswith("not available"):
            version = "not installed (needed only to build the cython backend; see Backends)"
        print(f"{label:<13} {version}")

    print("\nBackends:")
    status = fastdl.backend_status()
    for name, (available, reason) in status.items():
        state = "available" if available else "unavailable"
        print(f"  {name:<8} {state}" + (f" ({reason})" if reason else ""))
    print(f"  default: {_describe_default_backend(fastdl.get_backend())}")

    print("\nThreads:")
    print(f"  fastdl.get_num_threads()  {_describe_num_threads(fastdl)}")
    try:
        import numba

        print(f"  numba                     {numba.get_num_threads()} "
              f"(layer: {numba.config.THREADING_LAYER})")
    except Exception as error:
        print(f"  numba                     unknown ({error})")
    for line in _threadpool_lines():
        print(f"  {line}")
    from fastdl import config

    policy = os.environ.get("OMP_WAIT_POLICY") or (
        "PASSIVE while fastdl's kernels loaded" if config.openmp_policy_applied else "unset")
    print(f"  OMP_WAIT_POLICY           {policy}")
    spin = os.environ.get("OPENBLAS_THREAD_TIMEOUT") or (
        f"{config.BLAS_SPIN} while numpy loaded" if config.blas_spin_applied
        else "unset (numpy was imported before fastdl)")
    print(f"  OPENBLAS_THREAD_TIMEOUT   {spin}")
    print("\nNumba compilation:")
    print(f"  FASTDL_CACHE              {_describe_flag(config.numba_cache)} (numba's disk cache)")
    print(f"  cache directory           {_describe_numba_cache()}")
    print(f"  FASTDL_FASTMATH           {_describe_flag(config.numba_fastmath)}")
    print(f"  FASTDL_WINOGRAD           {_describe_flag(config.winograd)}")

    print("\nGPU:")
    print(f"  CUDA device visible: {_cuda_visible()}")
    return 0


def _describe_default_backend(name):
    """The default backend's name, flagged when FASTDL_BACKEND set it to no backend at all, or to
    one that cannot load here (cuda without a GPU)."""
    from fastdl.backend import PACKAGES, backend_status

    valid = ("auto", *PACKAGES)
    key = name.strip().lower()
    if key not in valid:
        return (f"{name} (invalid FASTDL_BACKEND: every operation will fail; valid names: "
                f"{', '.join(valid)})")
    if key != "auto" and not backend_status()[key][0]:
        return f"{name} (unavailable here: every operation without backend= will fail)"
    return name


def _describe_num_threads(fastdl):
    """fastdl's thread count, or what is wrong with FASTDL_NUM_THREADS (as a bad FASTDL_BACKEND is
    described, the report goes on)."""
    try:
        return str(fastdl.get_num_threads())
    except ValueError as error:  # FASTDL_NUM_THREADS is not a positive integer
        return f"invalid ({error}): every operation will fail unless fastdl.set_num_threads() is called"


def _describe_flag(read):
    """A FASTDL_* on/off flag as read, or what is wrong with its value (the report goes on)."""
    try:
        return "on" if read() else "off"
    except ValueError as error:
        return f"invalid ({error}): every operation will fail"


def _describe_numba_cache():
    """Where numba caches fastdl's kernels and whether it can write there, found as numba finds it
    (its locators: $NUMBA_CACHE_DIR, the kernels' __pycache__, the user's cache; the first writable
    one). Where none is, fastdl compiles in memory and every process compiles again. (Like numba,
    this creates the directory it finds, and a temporary file in it.)"""
    from pathlib import Path

    from fastdl import config

    try:
        if not config.numba_cache():
            return "not used (FASTDL_CACHE=0): every process compiles the kernels it runs again"
    except ValueError:
        return "unknown (FASTDL_CACHE is invalid, see above)"
    try:
        import numba
        from numba.core import caching

        from fastdl.kernels.cpu import _jit
    except Exception as error:  # no numba: nothing is compiled
        return f"unknown ({type(error).__name__}: {error})"
    user_dir = numba.config.CACHE_DIR
    try:  # every numba kernel is in _jit's folder: they share one cache directory
        path = caching.FunctionCache(_jit.helper).cache_path
    except RuntimeError:  # "no locator available": nowhere writable
        impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)
        kinds = ("UserProvided", "InTree", "UserWide") if user_dir else ("InTree", "UserWide")
        tried = []
        for locator in getattr(impl, "_locator_classes", ()):  # in numba's order
            if any(kind in locator.__name__ for kind in kinds):
                with contextlib.suppress(Exception):
                    tried.append(locator(_jit.helper, _jit.__file__).get_cache_path())
        return (f"none writable (tried {', '.join(tried)}): every process compiles the kernels it runs "
                f"again (minutes of a `fastdl reproduce`); set NUMBA_CACHE_DIR to a writable directory")
    except Exception as error:  # another numba version's internals: the report goes on
        return f"unknown ({type(error).__name__}: {error})"
    cached = len(list(Path(path).glob(f"*.py{sys.version_info.major}{sys.version_info.minor}.nbi")))
    said = f"{path} (writable; {cached} function{'s' if cached != 1 else ''} cached)"
    if user_dir and not Path(path).is_relative_to(user_dir):
        said += f"; NUMBA_CACHE_DIR {user_dir} is not writable"
    return said


def _threadpool_lines():
    """BLAS and OpenMP thread pools loaded in this process (via threadpoolctl)."""
    try:
        import numpy  # noqa: F401  (loads BLAS so threadpoolctl can see it)
        from threadpoolctl import threadpool_info
    except Exception as error:
        return [f"BLAS/OpenMP               unknown ({error})"]
    _import_cython_kernels()  # loads the OpenMP runtime if the extensions were built with it
    lines = []
    for pool in threadpool_info():
        api = pool.get("user_api", "?")
        label = "BLAS" if api == "blas" else "OpenMP" if api == "openmp" else api
        lines.append(f"{label + ' (' + pool.get('internal_api', '?') + ')':<25} "
                     f"{pool.get('num_threads')} threads, {pool.get('filepath', '')}")
    if not any("OpenMP" in line for line in lines):
        lines.append("OpenMP                    no OpenMP runtime loaded (extensions built "
                     "without it, or not built)")
    return lines


def _import_cython_kernels():
    """Import whatever Cython kernel modules are built; failures are irrelevant to info."""
    from fastdl import config

    with config.passive_openmp():  # as the backends load them
        _import_cython_modules()


def _import_cython_modules():
    try:
        import importlib
        import pkgutil

        import fastdl.kernels.cy as cy
        for module in pkgutil.iter_modules(cy.__path__):
            try:
                importlib.import_module(f"fastdl.kernels.cy.{module.name}")
            except Exception:
                pass
    except Exception:
        pass


def _cuda_visible():
    """Whether numba.cuda sees a device; never raises."""
    try:
        from numba import cuda

        if cuda.is_available():
            name = cuda.get_current_device().name
            if isinstance(name, bytes):
                name = name.decode(errors="replace")
            return f"yes ({name})"
        return "no"
    except Exception as error:
        return f"no ({type(error).__name__}: {error})"


def _best_time(fn, repeats):
    """Fastest of ``repeats`` calls; the caller's untimed checked call has warmed ``fn`` up (JIT
    compiling, lazy initialisation)."""
    import time

    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _bench_mismatch(out, expected):
    """Why a bench contender's output differs from the float64 reference, or None when it agrees.

    Distances must agree within a tolerance for their dtype (as benchmarks/bench_distance.py
    checks them); kNN, given as its indices or a (distances, indices) pair, must find exactly the
    reference's neighbours, in order (as benchmarks/bench_knn.py).
    """
    import numpy as np

    if expected.dtype.kind == "i":
        out = out[1] if isinstance(out, tuple) else out
    out = np.asarray(out)
    if out.shape != expected.shape:
        return f"shape {out.shape}, expected {expected.shape}"
    if expected.dtype.kind == "i":
        wrong = int(np.count_nonzero(np.any(out != expected, axis=1)))
        return f"the neighbours of {wrong} of {len(out)} queries differ" if wrong else None
    rtol, atol = (1e-4, 1e-3) if out.dtype == np.float32 else (1e-9, 1e-9)
    if np.allclose(out, expected, rtol=rtol, atol=atol):
        return None
    return f"largest difference {np.nanmax(np.abs(out - expected)):.3g}"


def _speedup(baseline, seconds):
    """baseline / seconds as "2.50x"; "-" where the baseline has no time (it failed or was wrong)."""
    return "-" if isinstance(baseline, str) else f"{baseline / seconds:.2f}x"


def _cmd_bench(args):
    import numpy as np
    from scipy.spatial.distance import cdist
    from sklearn.metrics.pairwise import euclidean_distances
    from sklearn.neighbors import NearestNeighbors

    import fastdl
    from fastdl import _device, ops

    n_query, n_ref, n_features = (500, 1000, 64) if args.quick else (2000, 4000, 256)
    k, repeats = 3, (2 if args.quick else 5)
    rng = np.random.default_rng(0)
    queries = rng.standard_normal((n_query, n_features))
    refs = rng.standard_normal((n_ref, n_features))

    def numpy_distances():
        # The usual GEMM expansion; clipping guards against tiny negative squares.
        sq = (queries ** 2).sum(1)[:, None] + (refs ** 2).sum(1)[None, :] - 2 * queries @ refs.T
        return np.sqrt(np.maximum(sq, 0.0))

    def numpy_knn():
        dist = numpy_distances()
        part = np.argpartition(dist, k - 1, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(dist, part, 1), axis=1, kind="stable")
        return np.take_along_axis(part, order, 1)

    brute = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(refs)
    cases = {
        "pairwise_distances": {
            "numpy": numpy_distances,
            "scikit-learn": lambda: euclidean_distances(queries, refs)},
        f"knn (k={k})": {
            "numpy": numpy_knn,
            "scikit-learn": lambda: brute.kneighbors(queries)},
    }
    # What every contender must compute: exact float64 distances, and the k nearest by them.
    exact = cdist(queries, refs)
    expected = {"pairwise_distances": exact,
                f"knn (k={k})": np.argsort(exact, axis=1, kind="stable")[:, :k]}
    # numba's CUDA simulator runs each GPU thread as Python: no speed to measure.
    backends = [b for b in fastdl.available_backends() if not (b == "cuda" and _device.simulated())]
    for backend in backends:
        cases["pairwise_distances"][f"fastdl[{backend}]"] = (
            lambda b=backend: ops.pairwise_distances(queries, refs, backend=b))
        cases[f"knn (k={k})"][f"fastdl[{backend}]"] = (
            lambda b=backend: ops.knn(queries, refs, k, backend=b))

    print(f"query {n_query} x {n_features}, reference {n_ref} x {n_features}, float64; "
          f"each result checked against exact float64 distances, then the best of {repeats} "
          f"timed calls; {fastdl.get_num_threads()} threads")
    rows, failures = [], 0
    for op, impls in cases.items():
        times = {}  # name -> seconds, or why there is no time
        for name, fn in impls.items():
            try:
                wrong = _bench_mismatch(fn(), expected[op])  # untimed; also the warm-up call
                times[name] = f"wrong result: {wrong}" if wrong else _best_time(fn, repeats)
            except Exception as error:  # one broken contender must not hide the others' numbers
                times[name] = f"failed: {type(error).__name__}: {error}"
            failures += isinstance(times[name], str)
        for name, seconds in times.items():
            if isinstance(seconds, str):
                rows.append([op, name, seconds, "-", "-"])
                continue
            rows.append([op, name, f"{seconds * 1e3:.2f}", _speedup(times["numpy"], seconds),
                         _speedup(times["scikit-learn"], seconds)])
    from fastdl.repro.report import markdown_table

    print(markdown_table(["Op", "Implementation", "ms", "speed-up vs numpy",
                          "speed-up vs scikit-learn"], rows))
    print("\n(The full benchmark suite is `make bench`.)")
    return 1 if failures else 0


def _cmd_data_download(args):
    from fastdl.data import download_dataset

    try:
        report = download_dataset(args.name, args.data_dir)
    except OSError as error:
        if not _network_error(error):
            raise  # a directory that cannot be written: main's exit status 2, as for every file
        print(f"fastdl: error: {error}", file=sys.stderr)
        return 1
    for path, state in report.items():
        print(f"{path}: {state}")
    print("(every file checked against its published SHA-256)")
    return 0


def _network_error(error):
    """Whether an OSError of a download is the network's (no connection, a refused or dropped one,
    a timeout, an HTTP error), not the disk's."""
    import http.client
    import urllib.error

    from fastdl.data._download import DownloadError

    return (isinstance(error, (DownloadError, ConnectionError, TimeoutError))
            or isinstance(error.__cause__, (urllib.error.URLError, http.client.HTTPException)))


def _positive_int(text):
    return _int_at_least(text, 1)


def _non_negative_int(text):
    return _int_at_least(text, 0)


def _int_at_least(text, minimum):
    """argparse type: an int >= minimum."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def _read_by_default(directory):
    """Whether load_clocks() without a path reads the clocks in ``directory`` (the cache's, or
    $FASTDL_DATA's, where its search finds them first)."""
    from pathlib import Path

    from fastdl.data import clocks

    try:
        found = clocks.find()
    except FileNotFoundError:  # a $FASTDL_DATA that is no directory, or holds half a set
        return False
    return found is not None and Path(found).resolve() == Path(directory).resolve()


def _cmd_data_generate(args):
    """``fastdl data generate clocks|faces``: render a synthetic set into the cache (or DIR/NAME)."""
    import functools
    import time
    from pathlib import Path

    from fastdl.data import clocks, faces

    if args.name == "faces":
        clock_options = [option for option, value in (("--max-turn", args.max_turn),
                                                      ("--faces", args.faces)) if value is not None]
        if clock_options:
            verb = "applies" if len(clock_options) == 1 else "apply"
            raise ValueError(f"{' and '.join(clock_options)} only {verb} to clocks")
        module, n, generate = faces, faces.SYNTHETIC_N if args.n is None else args.n, faces.generate_faces
        files = (faces.IMAGES, faces.FACTORS, faces.SIDECAR)
    else:
        module, n = clocks, clocks.SYNTHETIC_N if args.n is None else args.n
        settings = {"n": n, "seed": args.seed,
                    "max_turn": clocks.SYNTHETIC_MAX_TURN if args.max_turn is None else args.max_turn,
                    "faces": clocks.SYNTHETIC_FACES if args.faces is None else args.faces}
        generate = functools.partial(clocks.generate_clocks, max_turn=settings["max_turn"], faces=settings["faces"])
        files = (clocks.IMAGES, clocks.LABELS, clocks.SIDECAR)
    directory = Path(args.data_dir).expanduser() / module.NAME if args.data_dir else None
    start = time.perf_counter()
    try:
        directory = generate(n, args.seed, directory)
    except FileNotFoundError:
        raise  # a data error, whose message says what is missing
    except OSError as error:  # an unwritable directory, a full disk: main's exit status 2
        raise OSError(f"could not write the {args.name}: {error}") from error
    seconds = time.perf_counter() - start
    print(f"wrote {n:,} synthetic {args.name} (seed {args.seed}) to {directory}: {', '.join(files)}")
    print(f"{seconds:.1f} s, {n / max(seconds, 1e-9):,.0f} images/s (rendering and writing)")
    if args.name == "clocks" and settings != clocks.DEFAULT_SET and _read_by_default(directory):
        print(f"note: load_clocks() and `fastdl reproduce a5` read these clocks now, not the stand-in for the "
              f"course's set ({clocks.SYNTHETIC_N:,} clocks, seed {clocks.SYNTHETIC_SEED}, one clock turned at most "
              f"{clocks.SYNTHETIC_MAX_TURN:g} degrees), which `fastdl data generate clocks` with the same --data-dir "
              f"puts back; a --data-dir of its own keeps a set apart")
    return 0


def _cmd_data_list(args):
    import importlib
    import inspect
    from pathlib import Path

    from fastdl import config
    from fastdl.data import DATASETS, dataset_locations

    for given, named in ((getattr(args, "data_dir", None), "--data-dir"), (config.data_dir(), "$FASTDL_DATA")):
        if given is not None and not Path(given).expanduser().is_dir():
            print(f"warning: {named} is {given}, which is not a directory: a loader whose search reaches "
                  f"it stops with an error\n")
    for name, (description, loader, files) in DATASETS.items():
        print(f"{name}: {description}")
        module, function = loader.rsplit(".", 1)
        print(f"  loader: {loader}{inspect.signature(getattr(importlib.import_module(module), function))}")
        print(f"  files:  {', '.join(files)}")
        print("  looked for, in order:")
        for place, note in dataset_locations(name, getattr(args, "data_dir", None)):
            print(f"    {place}  [{note}]")
    return 0
