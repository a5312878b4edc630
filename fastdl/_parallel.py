"""Row-parallel driver for GEMM-plus-kernel operations.

A BLAS GEMM followed by a compiled kernel, each with its own thread pool, makes the two pools
spin against each other between calls (measured here: 4.5 ms GEMM + 1.6 ms kernel took 13-16 ms
together on 2 cores). Instead each of our threads takes a contiguous range of rows and runs BLAS
single-threaded and the kernel serially on it, so every core does one thing at a time.
"""

import contextlib
import functools
import math
import operator
import os
import sys
import threading

import numpy as np

from fastdl import backend as _backend

# Below this much work (rows x columns x features) one thread is faster than handing out tasks.
MIN_WORK_PER_THREAD = 1 << 22
# The largest work array scratch() keeps for reuse, per thread and name. A training step of the
# course's networks needs at most 9.4 MB under one name (the course CNN's transformed kernels).
SCRATCH_KEEP_BYTES = 64 << 20
# The work of one elementwise operation on one value, in those units (as the kernels' passes count
# it: threads_worth_it(rows, 8 * columns)).
ELEMENTWISE_WORK = 8
# The work of a value that BLAS streams through at memory speed: half an elementwise operation.
# Measured here (float32, one thread, against 0.1-0.18 ns a value for numpy's multiply): a dot
# product 0.06 ns a value; the thin GEMMs of the kernels' Winograd transforms (an inner or outer
# dimension of 9 taps) 0.05-0.08 ns a multiply-add; OpenBLAS' packing of a GEMM's right operand,
# most of the time of a GEMM of a few rows, 0.085 ns a value in cache (0.41 from memory: counted
# as in cache, since work worth less would be split at a loss).
STREAMED_VALUE_WORK = ELEMENTWISE_WORK // 2

_lock = threading.Lock()
_scratch = threading.local()
_controller = None
_controller_modules = 0
_blas_users = 0
_blas_limits = None
_blas_cap = None  # a cap set (set_num_threads) while BLAS was held: applied as the hold ends


class _Team:
    """fastdl's worker threads: worker i waits on a lock of its own, runs its task when the lock
    is released, then releases a second one.

    Plain locks, whose waits are C calls that let go of the GIL. A ThreadPoolExecutor's futures,
    conditions and semaphores are Python code that each worker runs under the GIL at every
    parallel region (an empty 2-thread region cost 56-60 µs of CPU with one, 39-49 with these).

    Ctrl-C: Python raises KeyboardInterrupt where it checks for signals, which includes just
    after a lock's acquire() or release() returned, so an interrupted wait cannot tell whether it
    took the lock. Counters can: the caller counts the tasks it gave each worker, the worker the
    tasks it ended, and a wait ends when the two agree, however often it was interrupted.
    """

    _RETIRE = object()
    # A wait re-reads the counters this often (seconds): only after an interrupt that came just
    # as it took the lock does it need to (nothing will release the lock it now holds).
    _POLL = 0.1

    def __init__(self, size):
        self.size = size
        self._start = [threading.Lock() for _ in range(size)]
        self._done = [threading.Lock() for _ in range(size)]
        for lock in self._start + self._done:
            lock.acquire()
        self._tasks, self._errors = [None] * size, [None] * size
        self._given, self._ended = [0] * size, [0] * size  # tasks handed to / ended by worker i
        for i in range(size):
            threading.Thread(target=self._work, args=(i,), name=f"fastdl-{i}", daemon=True).start()

    def _work(self, i):
        _region.active = True  # a region started from inside this one runs on this thread
        while True:
            self._start[i].acquire()
            task = self._tasks[i]
            if task is self._RETIRE:
                return
            try:
                task()
            except BaseException as exc:  # the caller re-raises it
                self._errors[i] = exc
            # Drop this frame's reference too: while the worker waits for its next task, the
            # task's closure (the op's inputs and outputs) must not stay alive.
            task = self._tasks[i] = None
            self._done[i].release()
            self._ended[i] += 1  # after the release: a caller that sees the count can take the lock

    def _wait(self, i):
        """Until worker i has ended every task given to it, with its done lock taken again (held
        between regions). Safe to call again after a KeyboardInterrupt inside it."""
        done = self._done[i]
        while self._ended[i] < self._given[i]:
            # The lock was held, so taking it means the worker released it for this task.
            if done.acquire(timeout=self._POLL):
                return
        done.acquire(blocking=False)  # taken here, or by an interrupted wait before this one

    def run(self, tasks, own):
        """tasks[i]() on worker i and own() on the calling thread; then the first error raised.

        A KeyboardInterrupt is raised once every worker has ended its task, so that the next
        region's waits are for its own tasks.
        """
        try:
            for i, task in enumerate(tasks):
                self._tasks[i] = task
                self._given[i] += 1  # no signal check between this and the release
                self._start[i].release()
            own()
        finally:
            # Workers that were never started (an interrupt in the loop above) have nothing to
            # end: their wait returns at once.
            interrupt = None
            while True:  # a second Ctrl-C within the same microsecond could still escape here
                try:
                    for i in range(len(tasks)):
                        self._wait(i)
                    errors = [error for error in self._errors[: len(tasks)] if error is not None]
                    self._errors[: len(tasks)] = [None] * len(tasks)  # also when own() raised
                    break
                except KeyboardInterrupt as exc:
                    interrupt = exc
            if interrupt is not None:
                raise interrupt
        if errors:
            raise errors[0]

    def retire(self):
        for i in range(self.size):
            self._tasks[i] = self._RETIRE
            self._start[i].release()


_team = None
_team_lock = threading.Lock()  # held by the thread whose region the team runs


class _Region(threading.local):
    active = False  # this thread is inside a parallel region


class _Holds(threading.local):
    depth = 0  # the single_threaded_blas() holds this thread is inside


# Class defaults, not getattr(..., default): a thread that never set one reads it at an attribute
# lookup's cost (getattr's default goes through a caught AttributeError, a few times a layer).
_region = _Region()
_holds = _Holds()


def _forget_team():
    """In a forked child: the team's threads are not there, and the lock may be held. Where
    another thread of the parent was inside a region, BLAS is held to one thread by a count that
    no thread of the child will bring down: the child gets BLAS's original limits back.

    The child's kernels run on one thread (fastdl.get_num_threads() is 1): once the parent has run
    an OpenMP kernel (Cython) or a threaded Numba one, a threaded kernel in a forked child hangs
    (GNU OpenMP is not fork-safe) or is killed by Numba. fastdl.set_num_threads(n) in the child
    gives it threads back at that risk; for threaded work in other processes use the "spawn" or
    "forkserver" start method of multiprocessing (or concurrent.futures' mp_context).
    """
    global _team, _team_lock, _lock, _blas_users, _blas_limits
    _team, _team_lock, _lock = None, threading.Lock(), threading.Lock()
    _holds.depth = 0  # (the forking thread's: the child's only one)
    _backend._num_threads = 1  # as set_num_threads(1) stores it, BLAS left as it is
    if _blas_users or _blas_limits is not None:
        _blas_users = 0
        _restore_blas()


def _set_blas(change):
    """Call change() (a threadpoolctl limit or restore) so that it acts from whichever thread runs it.

    threadpoolctl 3.8 lets one "controlling thread" at a time change the limits of an OpenBLAS built
    with pthreads, and a thread keeps that role until it leaves a `with threadpool_limits()` block;
    a plain call elsewhere is silently ignored. fastdl changes the limits from whichever thread
    starts or ends a region (under _lock), so it takes the role for the call and gives it back
    (a thread that kept it, fastdl's or a plain threadpool_limits() call's, would leave the limits
    of every other thread's regions unset: BLAS threaded inside a region that promises one thread).
    """
    import threadpoolctl

    clear = getattr(getattr(threadpoolctl, "OpenBLASController", None), "clear_controlling_thread", None)
    if clear is None:  # threadpoolctl < 3.8: any thread may change the limits
        return change()
    clear(force=True)
    try:
        return change()
    finally:
        clear()  # only where this thread holds the role: another may have taken it meanwhile


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_team)


@contextlib.contextmanager
def single_threaded_blas():
    """BLAS limited to one thread while any fastdl region runs (counted, so overlapping calls from
    several user threads restore the original limits only when the last one leaves).

    Also held around a whole training run of any model with more than Dense layers: nested regions
    then cost a counter, and no BLAS worker thread is left spinning between steps on the cores our
    own threads need.

    Ctrl-C (a KeyboardInterrupt, raised at any Python line of the main thread) never leaves BLAS
    on one thread: the original limits are saved before BLAS is limited and kept until they are
    put back, and the end of a hold is retried until it is done, then the interrupt raised.
    """
    global _controller, _controller_modules, _blas_users, _blas_limits
    # FASTDL_NUM_THREADS caps BLAS when it is first read: read it now, so the limits saved below
    # (and put back at the end) are those under its cap, not the ones before it.
    _backend._process_threads()
    counted = False
    try:
        with _lock:
            _blas_users += 1
            counted = True  # no signal check between the count and this
            if _blas_users == 1:
                # Saved limits that are still here are those an interrupted hold did not put back:
                # the originals, where saving now would save its one thread.
                if _blas_limits is None:
                    # The controller knows the BLAS libraries loaded when it was made: a module
                    # imported since (torch, scipy) may have brought another, so then it is made
                    # again (scanning costs ~1 ms).
                    if _controller is None or _controller_modules != len(sys.modules):
                        from threadpoolctl import ThreadpoolController

                        _controller, _controller_modules = ThreadpoolController(), len(sys.modules)
                    # limits=None changes nothing: this only saves them.
                    _blas_limits = _set_blas(functools.partial(_controller.limit, limits=None, user_api="blas"))
                _set_blas(_blas_to_one)
        depth = _holds.depth
        try:
            _holds.depth = depth + 1
            yield
        finally:
            _holds.depth = depth
    finally:
        if counted:

            def end():
                global _blas_users
                nonlocal counted
                with _lock:
                    if counted:
                        _blas_users -= 1
                        counted = False
                    if _blas_users == 0:
                        _restore_blas()

            _uninterrupted(end)


def _blas_to_one():
    """Every BLAS of the controller on one thread (the limits saved apart, before this)."""
    for library in _controller.lib_controllers:
        if library.user_api == "blas":
            library.set_num_threads(1)


def _restore_blas():
    """The limits saved by single_threaded_blas put back, then a pending cap of cap_blas (with
    _lock held, or in a forked child). Safe to run again after an interrupt inside it."""
    global _blas_limits
    if _blas_limits is not None:
        _set_blas(_blas_limits.restore_original_limits)
        _blas_limits = None
    _apply_blas_cap()


def _uninterrupted(step):
    """Call step() until it returns without a KeyboardInterrupt, then raise the interrupt, if
    any (step must be safe to run again from the start)."""
    interrupt = None
    while True:  # a second Ctrl-C within the same microsecond could still escape here
        try:
            step()
            break
        except KeyboardInterrupt as exc:
            interrupt = exc
    if interrupt is not None:
        raise interrupt


def cap_blas(n):
    """Limit BLAS to `n` threads (fastdl.set_num_threads): now, or where a region holds BLAS to one
    thread, as the hold ends (restoring the limits saved when it began would undo it)."""
    global _blas_cap
    with _lock:
        _blas_cap = n
        if _blas_users == 0:
            _restore_blas()  # limits an interrupted hold left to put back first, if any


def _apply_blas_cap():
    """Put the pending cap of cap_blas on BLAS (called with _lock held, or in a forked child)."""
    global _blas_cap
    if _blas_cap is not None:
        from threadpoolctl import threadpool_limits

        _set_blas(functools.partial(threadpool_limits, _blas_cap, user_api="blas"))
        _blas_cap = None  # after: an interrupt before this leaves the cap to apply again


def blas_held():
    """Whether a fastdl region holds BLAS to one thread right now (single_threaded_blas), in any
    thread."""
    return _blas_users > 0


def in_blas_hold():
    """Whether this thread runs under a hold of BLAS to one thread: inside a single_threaded_blas()
    it entered, or as one of a region's threads. Another thread's hold limits BLAS here too, but
    does not count: what an op computes (how dense_into splits its GEMMs, and so its bits) must
    not depend on what other threads run (a CNN predicting beside a Dense-only model)."""
    return _holds.depth > 0 or _region.active


def row_ranges(n_rows, n_threads, work_per_row, align=1):
    """Split range(n_rows) into at most n_threads contiguous (start, stop) ranges worth running.

    With align > 1 every range starts at a multiple of `align`, so a caller that runs one GEMM
    per block of `align` rows makes the same GEMM calls whatever the thread count: some BLAS
    builds round differently for different row counts (OpenBLAS with OPENBLAS_CORETYPE=Haswell
    on an AVX-512 CPU does), and fastdl's answers must not depend on the threads.
    """
    if n_threads == 1 or n_rows * work_per_row < 2 * MIN_WORK_PER_THREAD:
        return [(0, n_rows)]  # one range: most passes of a small model (the quick answer)
    n_blocks = -(-n_rows // align)
    worth = max(1, int(n_rows * work_per_row // MIN_WORK_PER_THREAD))
    n_parts = max(1, min(n_threads, n_blocks, worth))
    step, extra = divmod(n_blocks, n_parts)
    ranges, start = [], 0
    for part in range(n_parts):
        stop = start + step + (part < extra)
        ranges.append((start * align, min(stop * align, n_rows)))
        start = stop
    return ranges


def blocks(first, last, size):
    """(start, stop) blocks of `size` rows covering first..last-1, at multiples of `size` from 0."""
    return [(start, min(start + size, last)) for start in range(first, last, size)]


def threads_worth_it(n_rows, work_per_row):
    """Threads for a compiled kernel's parallel loop over n_rows rows: fastdl's count, or one for
    small inputs, where waking a team costs more than the work."""
    return len(row_ranges(n_rows, _backend.get_num_threads(), work_per_row))


def run_row_ranges(func, n_rows, n_threads, work_per_row, align=1):
    """Call func(start, stop) over contiguous row ranges, in parallel when the work is worth it.

    With several ranges BLAS is limited to one thread while they run (each range is one thread's
    job); with one range BLAS keeps its own threads. Ranges start at multiples of `align`
    (see row_ranges).
    """
    global _team
    ranges = row_ranges(n_rows, n_threads, work_per_row, align)
    if len(ranges) == 1:
        func(*ranges[0])
        return
    if _region.active:  # inside a region: its threads are all busy
        for start, stop in ranges:
            func(start, stop)
        return
    with _team_lock, single_threaded_blas():  # another caller's region waits for this one
        if _team is None or _team.size < len(ranges) - 1:
            if _team is not None:
                _team.retire()
            _team = _Team(len(ranges) - 1)
        _region.active = True
        try:
            # The calling thread takes the first range itself instead of waiting for a worker to wake.
            _team.run([functools.partial(func, *bounds) for bounds in ranges[1:]], functools.partial(func, *ranges[0]))
        finally:
            _region.active = False


def stacked_matmul(a, b, out):
    """np.matmul(a, b, out=out) for stacks of matrices a (s, m, k) and b (s, k, n), the stack's
    matrices spread over fastdl's threads when this runs outside a parallel region: a convolution
    of a few images (a predict's) makes Winograd's GEMMs, one per point, on the calling thread
    while the others wait. numpy multiplies a stack matrix by matrix, the same GEMM call for a matrix
    whichever stack it is in, so the bits do not depend on the split."""
    n_threads = _backend.get_num_threads()
    if n_threads == 1 or _region.active:
        return np.matmul(a, b, out=out)
    _, m, k = a.shape
    n = out.shape[2]
    run_row_ranges(lambda first, last: np.matmul(a[first:last], b[first:last], out=out[first:last]), len(a),
                   n_threads, m * k * n + STREAMED_VALUE_WORK * k * n)
    return out


def sum_in_order(partials):
    """The partial sums {first row of a range: C-contiguous array} added in row order, into the
    first one, which is returned: the same bits for the same partials, however many threads add
    them (each thread takes a slice of the elements through every partial).

    The partials of a parallel reduction are one per thread; added on one thread, they would
    cost as much as the rest of a kernel gradient's work on 16 cores.
    """
    arrays = [partials[first] for first in sorted(partials)]
    if not all(array.flags.c_contiguous for array in arrays):
        raise ValueError("sum_in_order adds C-contiguous partials")
    total, rest = arrays[0].reshape(-1), [array.reshape(-1) for array in arrays[1:]]

    def add(start, stop):
        for array in rest:
            total[start:stop] += array[start:stop]

    if rest:
        run_row_ranges(add, total.size, _backend.get_num_threads(), ELEMENTWISE_WORK * len(rest))
    return arrays[0]


def scratch(name, shape, dtype):
    """A temporary array of this thread's, reused by the next call with the same name.

    For work arrays of the compiled ops (patch matrices, partial sums) that would otherwise be
    fresh memory on every call: the kernel zeroing new pages cost ~5% of a CNN step. Each thread
    keeps the largest array it needed under each name, up to SCRATCH_KEEP_BYTES: a bigger one
    (one huge image's patches) is fresh memory, freed with its last reference, so that one call
    does not hold gigabytes for the rest of the process. Contents are undefined.
    """
    arrays = getattr(_scratch, "arrays", None)
    if arrays is None:
        arrays = _scratch.arrays = {}
    dtype = np.dtype(dtype)
    # math.prod, not np.prod (0.06 against 2.2 µs): this runs under the GIL, per batch on every
    # thread, some 430 times a course-CNN step.
    size = math.prod(shape) if isinstance(shape, tuple) else operator.index(shape)
    buffer = arrays.get((name, dtype))
    if buffer is None or buffer.size < size:
        buffer = np.empty(size, dtype)
        if buffer.nbytes <= SCRATCH_KEEP_BYTES:
            arrays[(name, dtype)] = buffer
    return buffer[:size].reshape(shape)
