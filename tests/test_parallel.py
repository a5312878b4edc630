"""The row-parallel driver: splitting, concurrent callers, and BLAS limits put back afterwards."""

import concurrent.futures

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import fastdl
from fastdl import _parallel
from fastdl.ops import knn, pairwise_distances


def _blas_threads():
    return sorted(info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas")


@pytest.mark.parametrize("n_rows, n_threads", [(1, 4), (7, 2), (1000, 2), (1001, 3)])
def test_row_ranges_cover_every_row_once(n_rows, n_threads):
    ranges = _parallel.row_ranges(n_rows, n_threads, work_per_row=1 << 22)
    assert ranges[0][0] == 0 and ranges[-1][1] == n_rows
    assert all(stop == start for (_, stop), (start, _) in zip(ranges, ranges[1:]))
    assert len(ranges) == min(n_rows, n_threads)


def test_small_work_stays_on_one_thread():
    assert _parallel.row_ranges(1000, 8, work_per_row=1) == [(0, 1000)]


@pytest.mark.parametrize("n_rows", [0, 1, 64, 1000])
@pytest.mark.parametrize("align", [1, 64])
def test_one_range_at_the_edge_of_two_threads_worth(n_rows, align):
    """The quick answer for work under two threads' worth, and the split from there on."""
    edge = 2 * _parallel.MIN_WORK_PER_THREAD
    per_row = edge / max(n_rows, 1)
    assert _parallel.row_ranges(n_rows, 8, per_row * 0.999, align) == [(0, n_rows)]
    assert _parallel.row_ranges(n_rows, 1, per_row * 1000, align) == [(0, n_rows)]
    expected = min(2, -(-n_rows // align)) if n_rows else 1
    assert len(_parallel.row_ranges(n_rows, 8, per_row, align)) == expected


def test_concurrent_callers_get_the_same_answers_and_blas_is_restored(backend, rng):
    fastdl.set_num_threads(2)
    X_ref = rng.normal(size=(3000, 64))
    X_query = rng.normal(size=(400, 64))
    expected = knn(X_query, X_ref, 5, backend=backend)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: knn(X_query, X_ref, 5, backend=backend), range(8)))
    for distances, indices in results:
        np.testing.assert_array_equal(indices, expected[1])
        np.testing.assert_array_equal(distances, expected[0])
    assert set(_blas_threads()) == {2}  # every BLAS back to fastdl's count once the calls are done


@pytest.mark.parametrize("before, during", [(2, 1), (1, 2)])
def test_set_num_threads_inside_a_region_caps_blas_when_it_ends(before, during):
    """set_num_threads while a region holds BLAS to one thread (a fit's callback, another thread):
    the hold stays, and its end leaves BLAS at the new count, not at the limits saved before it."""
    import threading

    fastdl.set_num_threads(before)
    with _parallel.single_threaded_blas():
        other = threading.Thread(target=fastdl.set_num_threads, args=(during,))
        other.start()
        other.join()
        assert set(_blas_threads()) == {1}
        assert fastdl.get_num_threads() == during
    assert set(_blas_threads()) == {during}
    with _parallel.single_threaded_blas():  # a later region puts the new count back too
        pass
    assert set(_blas_threads()) == {during}


def test_threads_do_not_change_distances(backend, rng):
    A = rng.normal(size=(600, 200))
    B = rng.normal(size=(500, 200))
    fastdl.set_num_threads(1)
    one = pairwise_distances(A, B, backend=backend)
    fastdl.set_num_threads(2)
    np.testing.assert_array_equal(pairwise_distances(A, B, backend=backend), one)


def test_sum_in_order_is_the_same_bits_on_any_number_of_threads(rng, monkeypatch):
    partials = {first: rng.normal(size=(5, 7)).astype(np.float32) for first in (40, 0, 13, 27)}
    expected = partials[0].copy()
    for first in (13, 27, 40):
        expected += partials[first]
    monkeypatch.setattr(_parallel, "MIN_WORK_PER_THREAD", 1)
    fastdl.set_num_threads(3)
    total = _parallel.sum_in_order({first: array.copy() for first, array in partials.items()})
    np.testing.assert_array_equal(total, expected)
    with pytest.raises(ValueError, match="C-contiguous"):
        _parallel.sum_in_order({0: partials[0].T, 5: partials[13].T})


@pytest.mark.parametrize("n_threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stacked_matmul_is_the_same_bits_on_any_number_of_threads(rng, monkeypatch, n_threads, dtype):
    """Each matrix of the stack is one GEMM whichever range it falls in; transposed views too."""
    a = rng.normal(size=(7, 5, 33)).astype(dtype)
    b = rng.normal(size=(7, 20, 33)).astype(dtype).transpose(0, 2, 1)
    expected = np.matmul(a, b)
    _wide(monkeypatch, n_threads)
    out = np.empty_like(expected)
    assert _parallel.stacked_matmul(a, b, out) is out
    np.testing.assert_array_equal(out, expected)
    out[...] = np.nan
    # Inside a region (each range its own matrices: two GEMMs into one array would race, BLAS
    # zeroing and then adding into it, and could leave twice the product).
    _parallel.run_row_ranges(lambda first, last: _parallel.stacked_matmul(a[first:last], b[first:last],
                                                                          out[first:last]), len(a), 2, 1)
    np.testing.assert_array_equal(out, expected)


def _wide(monkeypatch, n_threads):
    """Every range worth a thread, on n_threads of them."""
    monkeypatch.setattr(_parallel, "MIN_WORK_PER_THREAD", 1)
    fastdl.set_num_threads(n_threads)


def test_every_range_runs_once_on_as_many_threads(monkeypatch):
    import threading

    for n_threads in (2, 5, 3):  # the team grows, then serves fewer ranges
        _wide(monkeypatch, n_threads)
        seen, threads = [], set()

        def record(start, stop):
            seen.append((start, stop))
            threads.add(threading.get_ident())

        _parallel.run_row_ranges(record, 10, n_threads, 1)
        assert sorted(seen) == _parallel.row_ranges(10, n_threads, 1)
        assert len(threads) == n_threads


def test_an_error_in_a_worker_reaches_the_caller_and_the_threads_go_on(monkeypatch):
    _wide(monkeypatch, 3)

    def fail_late(start, stop):
        if start:
            raise ValueError(f"rows {start}..{stop}")

    with pytest.raises(ValueError, match="rows"):
        _parallel.run_row_ranges(fail_late, 9, 3, 1)

    def fail_everywhere(start, stop):
        raise KeyError(start)

    with pytest.raises(KeyError, match="^0$"):  # the caller's own range's error; the workers' are dropped
        _parallel.run_row_ranges(fail_everywhere, 9, 3, 1)
    out = np.zeros(9)

    def fill(start, stop):
        out[start:stop] = 1

    _parallel.run_row_ranges(fill, 9, 3, 1)
    assert out.all()


def test_a_region_inside_a_region_runs_on_its_thread(monkeypatch):
    _wide(monkeypatch, 2)
    out = np.zeros((4, 6))

    def outer(start, stop):
        for row in range(start, stop):
            def inner(first, last, row=row):
                out[row, first:last] = row + 1

            _parallel.run_row_ranges(inner, 6, 2, 1)

    _parallel.run_row_ranges(outer, 4, 2, 1)
    np.testing.assert_array_equal(out, np.arange(1, 5)[:, None] * np.ones(6))


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_runs_regions(monkeypatch):
    """The child has none of the parent's threads: it starts its own."""
    import os

    _wide(monkeypatch, 2)
    _parallel.run_row_ranges(lambda start, stop: None, 4, 2, 1)  # the parent's team exists
    pid = os.fork()
    if pid == 0:  # the child: exit 0 once a region ran, or be killed by the alarm
        import signal

        signal.alarm(20)
        out = np.zeros(4)

        def fill(start, stop):
            out[start:stop] = 1

        _parallel.run_row_ranges(fill, 4, 2, 1)
        os._exit(0 if out.all() else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_child_forked_inside_a_region_gets_blas_back():
    """Another thread of the parent held BLAS to one thread when it forked: the child is not left
    with the hold (it would keep BLAS at one thread for good)."""
    import os

    from threadpoolctl import threadpool_info

    def blas_threads():
        return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]

    before = blas_threads()
    with _parallel.single_threaded_blas():  # as a thread inside a region at the fork
        pid = os.fork()
        if pid == 0:
            import signal

            signal.alarm(20)
            os._exit(0 if not _parallel.blas_held() and blas_threads() == before else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert blas_threads() == before


def test_an_interrupted_wait_still_waits_for_the_workers(monkeypatch):
    """Ctrl-C while the calling thread waits: the region's workers finish before it is raised, so
    the next region waits for its own tasks, not for a lock the old ones released late."""
    import threading
    import time

    _wide(monkeypatch, 2)
    finished = threading.Event()

    def slow_worker(start, stop):
        if start:
            time.sleep(0.2)
            finished.set()

    real_run = _parallel._Team.run
    calls = []

    def interrupted_run(self, tasks, own):
        lock = self._done[0]

        class Interrupting:  # the first wait is interrupted, as a signal would interrupt it
            def acquire(self_, *args, **kwargs):
                if not calls:
                    calls.append(1)
                    raise KeyboardInterrupt
                return lock.acquire(*args, **kwargs)

            def release(self_):
                lock.release()

        self._done[0] = Interrupting()
        try:
            return real_run(self, tasks, own)
        finally:
            self._done[0] = lock

    monkeypatch.setattr(_parallel._Team, "run", interrupted_run)
    with pytest.raises(KeyboardInterrupt):
        _parallel.run_row_ranges(slow_worker, 4, 2, 1)
    assert finished.is_set()


def test_blas_limits_hold_in_a_thread_other_than_the_first_to_set_them(backend, rng):
    """threadpoolctl 3.8 lets one "controlling thread" at a time change a pthreads OpenBLAS' limits,
    and a thread that set them outside a `with` block kept that role: fastdl's limits set from any
    other thread did nothing (BLAS threaded inside a region, other bits than the main thread's;
    set_num_threads not capping BLAS). fastdl takes the role for each change and gives it back."""
    import threading

    from threadpoolctl import threadpool_limits

    threadpool_limits(2, user_api="blas")  # a plain call keeps the role (benchmarks/conftest.py makes one)
    fastdl.set_num_threads(2)
    X_ref = rng.normal(size=(2500, 64))
    X_query = rng.normal(size=(300, 64))
    expected = pairwise_distances(X_query, X_ref, backend=backend)  # the main thread sets limits
    out = {}

    def worker():
        out["distances"] = pairwise_distances(X_query, X_ref, backend=backend)
        with _parallel.single_threaded_blas():
            out["inside"] = _blas_threads()
        fastdl.set_num_threads(1)
        out["after"] = _blas_threads()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    np.testing.assert_array_equal(out["distances"], expected)
    assert set(out["inside"]) == {1}
    assert set(out["after"]) == {1}
    fastdl.set_num_threads(2)  # and the main thread can change them again
    assert set(_blas_threads()) == {2}


def test_a_finished_region_keeps_nothing_of_its_work_alive(monkeypatch):
    """A worker waiting for its next task holds no reference to the last one, whose closure holds
    the op's arrays: they are freed when the caller drops them."""
    import gc
    import weakref

    class Payload:
        pass

    _wide(monkeypatch, 2)
    payload = Payload()
    alive = weakref.ref(payload)

    def work(start, stop, payload=payload):
        assert payload is not None

    _parallel.run_row_ranges(work, 10, 2, 1)
    del work, payload
    gc.collect()
    assert alive() is None


def test_scratch_reuses_small_arrays_and_frees_big_ones(monkeypatch):
    """Work arrays are kept for reuse up to SCRATCH_KEEP_BYTES; a bigger one (a huge image's patch
    matrix: gigabytes) is dropped with its last reference instead of held for the process's life."""
    import weakref

    monkeypatch.setattr(_parallel, "SCRATCH_KEEP_BYTES", 1000)
    small = _parallel.scratch("test scratch small", (10, 10), np.float64)
    assert np.shares_memory(small, _parallel.scratch("test scratch small", 50, np.float64))
    big = _parallel.scratch("test scratch big", (20, 10), np.float64)
    assert big.shape == (20, 10) and not np.shares_memory(big, _parallel.scratch("test scratch big", 5, np.float64))
    base = weakref.ref(big.base if big.base is not None else big)
    del big
    assert base() is None


class _InterruptingLock:
    """A team lock that raises KeyboardInterrupt once, just after its `method` returned, as Python
    does when it checks for a signal right after the C call (the lock then taken or released)."""

    def __init__(self, lock, method):
        self.lock, self.method, self.fired = lock, method, False

    def acquire(self, *args, **kwargs):
        taken = self.lock.acquire(*args, **kwargs)
        self._fire("acquire" if taken else None)
        return taken

    def release(self):
        self.lock.release()
        self._fire("release")

    def _fire(self, method):
        if method == self.method and not self.fired:
            self.fired = True
            raise KeyboardInterrupt


def _one_worker_team(monkeypatch):
    _wide(monkeypatch, 2)
    _parallel.run_row_ranges(lambda start, stop: None, 2, 2, 1)  # the team exists
    return _parallel._team


def _assert_regions_in_step():
    """Each region returns once its worker's rows are done, and the worker lives on."""
    for _ in range(5):
        out = np.zeros(2)

        def fill(start, stop):
            if start:
                __import__("time").sleep(0.01)  # the caller's own row is done first
            out[start:stop] = 1

        _parallel.run_row_ranges(fill, 2, 2, 1)
        assert out.all()


def _slow_second_row(finished):
    def func(start, stop):
        if start:
            __import__("time").sleep(0.1)
            finished.set()

    return func


def test_an_interrupt_just_after_the_wait_took_the_lock_does_not_hang(monkeypatch):
    """Ctrl-C arriving as the caller's wait for a worker took its lock: the old retry took it
    again and waited for good on an idle worker, swallowing every further Ctrl-C."""
    import threading

    team = _one_worker_team(monkeypatch)
    lock = team._done[0]
    team._done[0] = _InterruptingLock(lock, "acquire")
    finished, raised = threading.Event(), []

    def region():  # on another thread, so that a hang fails the test instead of blocking it
        try:
            _parallel.run_row_ranges(_slow_second_row(finished), 2, 2, 1)
        except KeyboardInterrupt:
            raised.append(finished.is_set())

    thread = threading.Thread(target=region)
    thread.start()
    thread.join(5)
    team._done[0] = lock
    if thread.is_alive():
        lock.release()  # unblock the stuck wait (the old code) before failing
        thread.join(5)
        pytest.fail("the interrupted region never returned")
    assert raised == [True]  # the interrupt is raised, once the worker is done
    _assert_regions_in_step()


def test_an_interrupt_just_after_a_worker_started_waits_for_it(monkeypatch):
    """Ctrl-C just after the caller started a worker, before the region's try: the old code
    raised at once, leaving the worker's done lock released once more than it was taken, so the
    next regions returned before their worker's rows were done."""
    import threading

    team = _one_worker_team(monkeypatch)
    lock = team._start[0]
    team._start[0] = _InterruptingLock(lock, "release")
    finished = threading.Event()
    try:
        with pytest.raises(KeyboardInterrupt):
            _parallel.run_row_ranges(_slow_second_row(finished), 2, 2, 1)
        assert finished.is_set()
    finally:
        team._start[0] = lock
    try:
        _assert_regions_in_step()
    finally:
        if _parallel._team is team and not finished.is_set():  # the old code: out of step for good
            team.retire()
            _parallel._team = None


def test_an_interrupt_in_the_final_wait_loop_still_waits(monkeypatch):
    """Ctrl-C at any line of the region's final wait, not only inside the lock's wait (here at
    the len() of its loop): the workers are still waited for before it is raised."""
    import threading

    class Tasks(list):
        interrupted = False

        def __len__(self):
            if not Tasks.interrupted:
                Tasks.interrupted = True
                raise KeyboardInterrupt
            return super().__len__()

    team = _one_worker_team(monkeypatch)
    finished = threading.Event()
    slow = _slow_second_row(finished)
    try:
        with _parallel._team_lock, pytest.raises(KeyboardInterrupt):
            team.run(Tasks([lambda: slow(1, 2)]), lambda: None)
        assert finished.is_set()
    finally:
        if not finished.is_set():  # the old code: out of step for good
            team.retire()
            _parallel._team = None
    _assert_regions_in_step()


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("call", [1, 2, 3])
def test_an_interrupt_while_blas_limits_change_leaves_them_restored(monkeypatch, when, call):
    """Ctrl-C inside the threadpoolctl calls that hold BLAS to one thread and put it back (before
    a call acts, or after it acted but before its result was kept): BLAS is back at fastdl's count
    when the hold ends, and later holds save and restore the real limits, not one thread."""
    fastdl.set_num_threads(2)
    assert set(_blas_threads()) == {2}
    real_set_blas, calls = _parallel._set_blas, []

    def set_blas(change):
        calls.append(change)
        if len(calls) == call and when == "before":
            raise KeyboardInterrupt
        result = real_set_blas(change)
        if len(calls) == call:
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(_parallel, "_set_blas", set_blas)
    try:
        with _parallel.single_threaded_blas():
            pass
    except KeyboardInterrupt:
        pass
    monkeypatch.setattr(_parallel, "_set_blas", real_set_blas)
    assert not _parallel.blas_held()
    assert set(_blas_threads()) == {2}
    for _ in range(2):
        with _parallel.single_threaded_blas():
            assert set(_blas_threads()) == {1}
        assert set(_blas_threads()) == {2}


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
@pytest.mark.parametrize("backend_name", ["cython", "numba"])
def test_a_child_forked_after_threaded_kernels_runs_them(monkeypatch, backend_name, dtype):
    """Once the parent ran a threaded OpenMP (Cython) or Numba kernel, a threaded kernel in a
    forked child hung (GNU OpenMP is not fork-safe) or was killed by Numba: the child's kernels
    run on one thread."""
    import os

    from conftest import skip_unless_available
    from fastdl.ops import max_pool2d

    skip_unless_available(backend_name)
    _wide(monkeypatch, 2)
    x = np.random.default_rng(0).random((4, 8, 8, 3)).astype(dtype)
    expected = max_pool2d(x, 2, backend=backend_name)  # on 2 threads
    pid = os.fork()
    if pid == 0:  # the child: exit 0 with the same answer, or be killed by the alarm
        try:
            import signal

            signal.alarm(10)
            same = np.array_equal(max_pool2d(x, 2, backend=backend_name), expected)
            os._exit(0 if same and fastdl.get_num_threads() == 1 else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert fastdl.get_num_threads() == 2  # the parent keeps its threads
