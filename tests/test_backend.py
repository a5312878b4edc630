"""Backend registry, dispatch, environment variables, threads and lazy imports."""

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import fastdl
from fastdl import backend as backend_module
from fastdl.ops import class_centroids, knn, majority_vote, pairwise_distances

ALL_BACKENDS = {"numpy", "numba", "cython", "cuda"}


def _run_python(code, tmp_path, **env_vars):
    """Run `code` in a fresh interpreter (outside the source tree) with FASTDL_* taken from env_vars."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTDL_")}
    env.update(env_vars)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def fresh_registry(monkeypatch):
    """Empty probe/module caches and warning record, so tests can simulate backends going missing."""
    monkeypatch.setattr(backend_module, "_status_cache", {})
    if hasattr(backend_module, "_module_cache"):
        monkeypatch.setattr(backend_module, "_module_cache", {})
    monkeypatch.setattr(backend_module, "_warned", set())


# Registry ---------------------------------------------------------------------------------------


def test_backend_status_lists_every_backend():
    status = fastdl.backend_status()
    assert set(status) == ALL_BACKENDS
    for name, (available, reason) in status.items():
        assert isinstance(available, bool)
        assert isinstance(reason, str) and reason, name
    assert status["numpy"][0] is True


def test_available_backends():
    names = fastdl.available_backends()
    assert names[0] == "numpy"
    assert set(names) <= ALL_BACKENDS
    assert names == [n for n, (ok, _) in fastdl.backend_status().items() if ok]


def test_auto_never_picks_cuda():
    for family in backend_module.AUTO_ORDER:
        assert backend_module.resolve(family, "auto") != "cuda"


def test_cuda_unavailable_by_name_raises_with_reason(tmp_path):
    """Without a device and without the simulator, asking for cuda says why it cannot run."""
    result = _run_python(
        """
        import numpy as np, fastdl
        from fastdl.ops import knn, pairwise_distances
        ok, reason = fastdl.backend_status()["cuda"]
        print(ok)
        for call in (lambda: pairwise_distances(np.ones((2, 2)), backend="cuda"),
                     lambda: knn(np.ones((2, 2)), np.ones((3, 2)), 1, backend="cuda")):
            try:
                call()
            except fastdl.BackendUnavailableError as exc:
                print(reason in str(exc), isinstance(exc, RuntimeError))
        """,
        tmp_path, NUMBA_ENABLE_CUDASIM="0",
    )
    assert result.returncode == 0, result.stderr
    if result.stdout.split()[0] == "True":
        pytest.skip("a CUDA device is present")
    assert result.stdout.split()[1:] == ["True"] * 4


def test_cuda_families_without_kernels_say_so(cuda_backend):
    with pytest.raises(fastdl.BackendUnavailableError, match="'clock' operations do not run on it yet"):
        backend_module.kernels("clock", "cuda")


@pytest.mark.parametrize("name", ["tpu", "", "numpy2"])
def test_unknown_backend_name_raises_value_error(name):
    with pytest.raises(ValueError, match="unknown backend"):
        fastdl.set_backend(name)
    with pytest.raises(ValueError, match="unknown backend"):
        with fastdl.use_backend(name):
            pass
    with pytest.raises(ValueError, match="unknown backend"):
        pairwise_distances(np.ones((2, 2)), backend=name)
    assert fastdl.get_backend() == "auto"


@pytest.mark.parametrize("name", [1, None, ["numpy"]])
def test_non_string_backend_raises_type_error(name):
    with pytest.raises(TypeError, match="backend must be a string"):
        fastdl.set_backend(name)


def test_set_backend_and_use_backend(backend):
    assert fastdl.get_backend() == "auto"
    fastdl.set_backend(backend)
    assert fastdl.get_backend() == backend
    assert backend_module.resolve("distance") == backend
    with fastdl.use_backend("numpy"):
        assert fastdl.get_backend() == "numpy"
        assert backend_module.resolve("neighbors") == "numpy"
        # An explicit argument beats the context.
        assert backend_module.resolve("neighbors", backend) == backend
        with fastdl.use_backend(backend):
            assert fastdl.get_backend() == backend
        assert fastdl.get_backend() == "numpy"
    assert fastdl.get_backend() == backend


def test_use_backend_restores_after_exception():
    with pytest.raises(ZeroDivisionError):
        with fastdl.use_backend("numpy"):
            1 / 0
    assert fastdl.get_backend() == "auto"


def test_names_are_normalised():
    fastdl.set_backend("  NumPy ")
    assert fastdl.get_backend() == "numpy"


def test_ops_run_under_every_selection_method(backend, rng):
    A = rng.normal(size=(5, 3))
    expected = pairwise_distances(A, backend="numpy")
    np.testing.assert_allclose(pairwise_distances(A, backend=backend), expected, rtol=1e-10, atol=1e-12)
    with fastdl.use_backend(backend):
        np.testing.assert_allclose(pairwise_distances(A), expected, rtol=1e-10, atol=1e-12)
    fastdl.set_backend(backend)
    np.testing.assert_allclose(pairwise_distances(A), expected, rtol=1e-10, atol=1e-12)


# "auto" and missing backends ---------------------------------------------------------------------


def test_auto_picks_first_available_in_order():
    for family, order in backend_module.AUTO_ORDER.items():
        first = next(n for n in order if fastdl.backend_status()[n][0])
        assert backend_module.resolve(family, "auto") == first


def test_auto_skips_unavailable_backend_with_one_warning(fresh_registry, rng):
    backend_module._status_cache["cython"] = (False, "simulated: extension not built")
    A = rng.normal(size=(4, 3))
    with pytest.warns(RuntimeWarning, match="skipping backend 'cython': simulated") as record:
        assert backend_module.resolve("distance", "auto") == "numba"
        out = pairwise_distances(A, backend="auto")
        knn(A, A, 2, backend="auto")
    assert len([w for w in record if issubclass(w.category, RuntimeWarning)]) == 1
    np.testing.assert_allclose(out, pairwise_distances(A, backend="numpy"), rtol=1e-10, atol=1e-12)
    # Later calls stay silent.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert backend_module.resolve("neighbors", "auto") == "numba"
    # Asked for by name, the unavailable backend is an error carrying the reason.
    with pytest.raises(fastdl.BackendUnavailableError, match="simulated: extension not built"):
        pairwise_distances(A, backend="cython")


def test_auto_falls_back_to_numpy_via_probe(fresh_registry, monkeypatch):
    real_probe = backend_module._probe

    def probe(name):
        if name in ("cython", "numba"):
            return False, f"simulated: {name} missing"
        return real_probe(name)

    monkeypatch.setattr(backend_module, "_probe", probe)
    with pytest.warns(RuntimeWarning) as record:
        assert backend_module.resolve("neighbors") == "numpy"
        assert backend_module.resolve("distance") == "numpy"
    messages = sorted(str(w.message) for w in record if issubclass(w.category, RuntimeWarning))
    assert len(messages) == 2  # one per skipped backend, not one per call
    assert "cython" in messages[0] and "numba" in messages[1]
    assert [name for name in fastdl.available_backends() if name != "cuda"] == ["numpy"]  # cuda: opt-in
    status = fastdl.backend_status()
    assert status["numba"] == (False, "simulated: numba missing")


def test_kernels_failing_to_load_make_the_backend_unavailable(fresh_registry, monkeypatch, rng):
    """Not only an ImportError: Numba raises RuntimeError where it cannot cache a helper compiled as
    a kernel module loads. By name that is a BackendUnavailableError; "auto" skips it with a warning."""
    import types

    real_import = backend_module.importlib.import_module

    def import_module(name):
        if name == "fastdl.kernels.cpu.distance":
            raise RuntimeError("cannot cache function 'mix64': no locator available")
        return real_import(name)

    monkeypatch.setattr(backend_module, "importlib", types.SimpleNamespace(import_module=import_module))
    A = rng.normal(size=(4, 3))
    with pytest.raises(fastdl.BackendUnavailableError, match="RuntimeError: cannot cache function 'mix64'"):
        pairwise_distances(A, backend="numba")
    backend_module._status_cache["cython"] = (False, "simulated: extension not built")
    with pytest.warns(RuntimeWarning) as record:
        out = pairwise_distances(A, backend="auto")
    assert any("skipping backend 'numba': its 'distance' kernels failed" in str(w.message) for w in record)
    np.testing.assert_allclose(out, pairwise_distances(A, backend="numpy"), rtol=1e-10, atol=1e-12)


# Environment variables (read at import, so each needs a fresh interpreter) ------------------------


@pytest.mark.parametrize("name", ["numpy", "numba"])
def test_fastdl_backend_env(tmp_path, name):
    result = _run_python(
        """
        import numpy as np, fastdl
        from fastdl import backend
        from fastdl.ops import pairwise_distances
        pairwise_distances(np.ones((2, 2)))
        print(fastdl.get_backend(), backend.resolve("distance"))
        """,
        tmp_path, FASTDL_BACKEND=name,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [name, name]


def test_fastdl_backend_env_unavailable(tmp_path):
    result = _run_python(
        """
        import numpy as np, fastdl
        from fastdl.ops import pairwise_distances
        try:
            pairwise_distances(np.ones((2, 2)))
        except fastdl.BackendUnavailableError as exc:
            print("unavailable:", exc)
        """,
        tmp_path, FASTDL_BACKEND="cuda", NUMBA_ENABLE_CUDASIM="0",
    )
    assert result.returncode == 0, result.stderr
    if not result.stdout:
        pytest.skip("a CUDA device is present")
    assert result.stdout.startswith("unavailable: backend 'cuda' is unavailable")


def test_fastdl_backend_env_unknown_name(tmp_path):
    result = _run_python(
        """
        import numpy as np, fastdl
        from fastdl.ops import pairwise_distances
        try:
            pairwise_distances(np.ones((2, 2)))
        except ValueError as exc:
            print("error:", exc)
        """,
        tmp_path, FASTDL_BACKEND="bogus",
    )
    assert result.returncode == 0, result.stderr
    assert "unknown backend 'bogus'" in result.stdout


def test_fastdl_num_threads_env(tmp_path):
    result = _run_python("import fastdl; print(fastdl.get_num_threads())", tmp_path, FASTDL_NUM_THREADS="1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"
    result = _run_python("import fastdl; fastdl.get_num_threads()", tmp_path, FASTDL_NUM_THREADS="zero")
    assert result.returncode != 0
    assert "FASTDL_NUM_THREADS must be an integer from 1 to 1024, got 'zero'" in result.stderr
    result = _run_python("import fastdl; fastdl.get_num_threads()", tmp_path, FASTDL_NUM_THREADS="2147483647")
    assert result.returncode != 0
    assert "FASTDL_NUM_THREADS must be an integer from 1 to 1024, got '2147483647'" in result.stderr


def test_fastdl_num_threads_env_caps_blas_when_a_model_of_dense_layers_trains_first(tmp_path):
    """A model of Dense layers trains inside kernel_threads(1), which answers get_num_threads before
    the environment is read: FASTDL_NUM_THREADS must still cap BLAS, which threads its GEMMs."""
    result = _run_python(
        """
        import numpy as np
        from threadpoolctl import threadpool_info
        from fastdl import nn

        model = nn.Sequential([nn.Input((4,)), nn.Dense(3)], seed=0)
        model.compile(nn.SGD(0.1), "mse")
        model.train_on_batch(np.ones((2, 4), np.float32), np.ones((2, 3), np.float32))
        print(sorted({pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}))
        """, tmp_path, FASTDL_NUM_THREADS="1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[1]"


@pytest.mark.parametrize("threads", ["1", "2"])
def test_fastdl_num_threads_env_caps_blas_when_a_cnn_trains_first(tmp_path, threads):
    """A CNN's fit holds BLAS to one thread (_parallel.single_threaded_blas) and reads the thread
    count first inside that hold: BLAS stays at one thread all through the fit, and afterwards
    FASTDL_NUM_THREADS caps it (the hold's end must not put back the limits from before the cap)."""
    result = _run_python(
        """
        import numpy as np
        from threadpoolctl import threadpool_info
        from fastdl import nn
        from fastdl.nn.callbacks import Callback

        def blas():
            return sorted({pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"})

        inside = set()

        class Record(Callback):
            def on_batch_end(self, batch, logs=None):
                inside.update(blas())

        rng = np.random.default_rng(0)
        model = nn.Sequential([nn.Conv2D(2, 3, input_shape=(6, 6, 1)), nn.Flatten(), nn.Dense(2)], seed=0)
        model.compile("sgd", "mse")
        model.fit(rng.random((8, 6, 6, 1)), rng.random((8, 2)), epochs=1, batch_size=4, callbacks=[Record()])
        print(sorted(inside), blas())
        """, tmp_path, FASTDL_NUM_THREADS=threads)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"[1] [{threads}]"


def test_calling_a_cnn_holds_blas_to_one_thread_as_predict_does(tmp_path):
    """model(x) runs under the same BLAS policy as predict: a CNN's GEMMs on fastdl's threads, BLAS
    on one (its threads spinning beside fastdl's made model(x) 2.5-4x slower than predict)."""
    result = _run_python(
        """
        import numpy as np
        from threadpoolctl import threadpool_info
        from fastdl import nn

        inside = set()

        class Spy(nn.Flatten):
            def forward(self, x, training=False):
                inside.update(pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas")
                return super().forward(x, training)

        model = nn.Sequential([nn.Conv2D(2, 3, input_shape=(6, 6, 1)), Spy(), nn.Dense(2)], seed=0)
        x = np.ones((3, 6, 6, 1), np.float32)
        model(x)
        called = sorted(inside)
        inside.clear()
        model.predict(x)
        print(called, sorted(inside))
        """, tmp_path, FASTDL_NUM_THREADS="2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[1] [1]"


def test_import_compiles_nothing(tmp_path):
    result = _run_python(
        """
        import sys
        import fastdl, fastdl.ops, fastdl.neighbors
        loaded = sorted(m for m in sys.modules
                        if m == "numba" or m.startswith("numba.") or m.startswith("fastdl.kernels."))
        print(loaded)
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# Threads ----------------------------------------------------------------------------------------


def test_set_num_threads_round_trip():
    fastdl.set_num_threads(1)
    assert fastdl.get_num_threads() == 1
    fastdl.set_num_threads(2)
    assert fastdl.get_num_threads() == 2


def test_numpy_integer_thread_counts_accepted():
    """As check_int accepts NumPy integers elsewhere (k, n_neighbors, ...)."""
    import numpy as np

    fastdl.set_num_threads(np.int64(2))
    assert fastdl.get_num_threads() == 2 and type(fastdl.get_num_threads()) is int
    with backend_module.kernel_threads(np.uint8(1)):
        assert fastdl.get_num_threads() == 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, 2.0, "2", None, True])
def test_invalid_thread_counts(bad):
    before = fastdl.get_num_threads()
    with pytest.raises(ValueError, match="number of threads must be a positive integer"):
        fastdl.set_num_threads(bad)
    assert fastdl.get_num_threads() == before


@pytest.mark.parametrize("too_many", [1025, 2**31, np.int64(2**40)])
def test_thread_counts_past_the_cap(too_many):
    """OpenMP ended the process without an exception at counts it could not start (2**31 - 1),
    and the Cython kernels raised OverflowError past C's int (2**31)."""
    before = fastdl.get_num_threads()
    with pytest.raises(ValueError, match="number of threads must be at most 1024"):
        fastdl.set_num_threads(too_many)
    with pytest.raises(ValueError, match="at most 1024"):
        with backend_module.kernel_threads(too_many):
            pass
    assert fastdl.get_num_threads() == before


def test_kernel_threads_is_scoped_and_checked():
    fastdl.set_num_threads(2)
    with backend_module.kernel_threads(1):
        assert fastdl.get_num_threads() == 1
        with backend_module.kernel_threads(3):
            assert fastdl.get_num_threads() == 3
        assert fastdl.get_num_threads() == 1
    assert fastdl.get_num_threads() == 2
    with pytest.raises(ValueError, match="number of threads must be a positive integer"):
        with backend_module.kernel_threads(0):
            pass


def test_kernel_threads_stays_in_its_thread():
    import threading

    fastdl.set_num_threads(2)
    seen = []
    with backend_module.kernel_threads(1):
        worker = threading.Thread(target=lambda: seen.append(fastdl.get_num_threads()))
        worker.start()
        worker.join()
    assert seen == [2]


def _with_threads(n_threads, func, *args, **kwargs):
    before = fastdl.get_num_threads()
    fastdl.set_num_threads(n_threads)
    try:
        return func(*args, **kwargs)
    finally:
        fastdl.set_num_threads(before)


def test_one_and_two_threads_identical(backend, rng):
    """Per-thread work splits must not change a single bit of any answer."""
    A = rng.normal(size=(300, 8))
    B = rng.normal(size=(200, 8))
    codes = rng.integers(0, 5, size=(300, 4))

    def run_all():
        return (
            pairwise_distances(A, B, backend=backend),
            pairwise_distances(A.astype(np.float32), squared=True, backend=backend),
            *knn(A, B, 5, backend=backend),
            *knn(A.astype(np.float32), B.astype(np.float32), 5, backend=backend),
            majority_vote(codes, 5, backend=backend),
        )

    for one, two in zip(_with_threads(1, run_all), _with_threads(2, run_all)):
        np.testing.assert_array_equal(one, two)


def test_class_centroids_one_and_two_threads_identical(backend, rng):
    # Each class sum adds its rows in order whatever the thread count (600 rows: several chunks).
    X = rng.normal(size=(600, 4))
    y = rng.integers(0, 3, size=600)
    one = _with_threads(1, class_centroids, X, y, backend=backend)
    two = _with_threads(2, class_centroids, X, y, backend=backend)
    np.testing.assert_array_equal(one, two)


def test_kernels_load_with_passive_openmp_and_leave_the_environment_alone(monkeypatch):
    """OMP_WAIT_POLICY is PASSIVE while kernels load (the OpenMP runtime reads it then), put back
    afterwards so that libraries loaded later see the user's environment, and never overrides a
    value the user set."""
    from fastdl import config

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    with config.passive_openmp():
        assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    assert "OMP_WAIT_POLICY" not in os.environ
    monkeypatch.setenv("OMP_WAIT_POLICY", "active")
    with config.passive_openmp():
        assert os.environ["OMP_WAIT_POLICY"] == "active"
    assert os.environ["OMP_WAIT_POLICY"] == "active"


def test_numba_starts_its_threads_as_its_kernels_load(tmp_path):
    """Numba starts its threading layer, which loads the OpenMP runtime, at its first parallel
    launch unless something started it before: loading fastdl's Numba kernels starts it, inside
    config.passive_openmp, so the runtime reads the PASSIVE wait policy and its threads do not
    spin after every kernel on the cores fastdl's GEMM threads need."""
    result = _run_python("""
        import numba
        from fastdl import backend

        try:
            numba.threading_layer()
        except ValueError:  # not started
            pass
        else:
            raise AssertionError("Numba's threads started before any fastdl kernel loaded")
        backend.kernels("dense", "numba")
        print(numba.threading_layer())
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() in {"omp", "tbb", "workqueue"}


def test_openblas_threads_stop_spinning_soon_when_fastdl_loads_numpy(tmp_path, monkeypatch):
    """Imported before numpy, fastdl loads it with OPENBLAS_THREAD_TIMEOUT=20 (then puts the
    environment back): OpenBLAS' threads sleep some 0.3 ms after a threaded call instead of
    spinning for about 0.1 s each on the cores fastdl's threads need next. Measured as the CPU
    time the process burns while it sleeps after a float64 dot that OpenBLAS threads (none at all
    on one core); numpy imported first keeps OpenBLAS' default, which `fastdl info` says."""
    monkeypatch.delenv("OPENBLAS_THREAD_TIMEOUT", raising=False)
    code = """
        import os, time
        {first}
        from fastdl import config
        v = np.random.default_rng(0).random(256_000)
        np.dot(v, v)
        start = time.process_time()
        time.sleep(0.2)
        print(config.blas_spin_applied, "OPENBLAS_THREAD_TIMEOUT" in os.environ, (time.process_time() - start) * 1e3)
    """
    result = _run_python(code.format(first="import fastdl\n        import numpy as np"), tmp_path)
    assert result.returncode == 0, result.stderr
    applied, left_set, burnt_ms = result.stdout.split()
    assert applied == "True" and left_set == "False"
    assert float(burnt_ms) < 30, f"OpenBLAS' threads burnt {burnt_ms} ms of CPU after the call"
    result = _run_python(code.format(first="import numpy as np\n        import fastdl"), tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:2] == ["False", "False"]


def test_kernel_families_load_one_at_a_time(monkeypatch):
    """Loads on two threads at once (fastdl's own threads, when a family first loads inside a
    region) both set OMP_WAIT_POLICY and then both removed it: a KeyError in one of them."""
    import threading
    import time

    inside, most = [0], [0]
    real_import = backend_module.importlib.import_module

    def slow_import(name):
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        time.sleep(0.05)
        inside[0] -= 1
        return real_import(name)

    monkeypatch.setattr(backend_module, "_module_cache", {})
    monkeypatch.setattr(backend_module.importlib, "import_module", slow_import)
    errors = []

    def load(family):
        try:
            backend_module.kernels(family, "numpy")
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=load, args=(family,)) for family in ("conv", "dense", "pool", "conv")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and most[0] == 1
