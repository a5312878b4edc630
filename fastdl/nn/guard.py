"""Never train on from NaN or infinite values: fit's snapshot of each epoch's starting state, put
back where the epoch ends non-finite, and train_on_batch's checks before and after its step. And
never leave part of a step after Ctrl-C: the optimizer's step taken whole (sigint_deferred), the
moving statistics of a step not taken put back (statistics_kept)."""

import contextlib
import math

import numpy as np

from fastdl import _device
from fastdl._interrupts import sigint_deferred
from fastdl._validation import NonFiniteError, all_finite


def finite(array):
    """Whether a host or device array holds no NaN or infinity (its sum of squares is finite, or
    failing that, its values are)."""
    return squares_finite(array) or all_finite(_device.host(array))


def squares_finite(array):
    """Whether every value of a host or device array squares to a finite number in its dtype: its
    sum of squares is finite (one BLAS dot, or one GEMM on the device, read back), or failing that
    (a sum past float range), its values are looked at."""
    if array.size == 0:
        return True
    if _device.is_device(array):
        from fastdl.ops._nn_on_device import sum_of_squares

        if math.isfinite(sum_of_squares(array)):
            return True
        array = _device.host(array)
    flat = array.reshape(-1)
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.dot(flat, flat)):
            return True
        return bool(all_finite(flat) and np.abs(flat).max() <= math.sqrt(np.finfo(flat.dtype).max))


def stopped_at(exc, epoch, batch):
    """The error that ends fit at a batch: where, and for values gone NaN or infinite, what to try."""
    if isinstance(exc, NonFiniteError):
        return NonFiniteError(f"epoch {epoch + 1}, batch {batch + 1}: {exc}; training stopped (lower the learning "
                              "rate or check the data)")
    return ValueError(f"epoch {epoch + 1}, batch {batch + 1}: {exc}; training stopped")


def step_refused(exc):
    """The error that ends train_on_batch before its optimizer step (the input, the loss or a
    gradient NaN or infinite, a layer's error): the weights and optimizer state are untouched."""
    if isinstance(exc, NonFiniteError):
        return NonFiniteError(f"train_on_batch: {exc}; the step was not taken (lower the learning rate or check "
                              "the data)")
    return ValueError(f"train_on_batch: {exc}; the step was not taken")


def check_finite_gradients(optimizer):
    """train_on_batch's, before the optimizer's step: NonFiniteError where a gradient it is to
    apply is NaN, infinite, or beyond float range squared."""
    if not all(squares_finite(grad) for grad in optimizer.gradient_arrays()):
        raise NonFiniteError("a gradient is NaN, infinite or too large to square in float range (a backward "
                             "pass overflowed)")


def _state_arrays(model):
    """The arrays a training step writes: the optimizer's flat value buffers and slots (a
    parameter outside the flat buffers: its own value) and the layers' non-trainable state
    (BatchNormalization's moving statistics). Frozen weights are not among them: no step
    writes them."""
    return model.optimizer.state_arrays() + [array for _, array in model.non_trainable_state()]


def guarded(model, train, before, rate=None, start=None):
    """train() (an epoch of fit), never leaving NaN or infinite weights or optimizer state.

    The loss is checked at every step, but a float32 gradient or update can overflow while the
    float64 loss stays finite (inputs of 1e20, say): the weights went to inf with no error, or
    only at the next step, too late to keep them. So what a step writes (_state_arrays) is
    copied before train() and put back where it stops on a non-finite value (NonFiniteError:
    a NaN loss, whose steps before it may have diverged to huge but finite weights), where
    another ValueError leaves the state non-finite, and where it returns with the state
    non-finite; the error then says the state is that from `before` (the generators' too, so that
    the epoch trained again draws the same). rate: the learning rate from
    before too (one a schedule set at the epoch's begin goes back with the epoch), None to keep it.
    start: where the epoch went on from (fit's record of an epoch Ctrl-C stopped, or None), the
    record put back with the state.
    """
    copies, iterations = [_device.copy(array) for array in _state_arrays(model)], model.optimizer.iterations
    generators = list(model._generators().values())
    states = [generator.bit_generator.state for generator in generators]

    def state_is_finite():
        return all(finite(array) for array in _state_arrays(model))

    def put_back():
        with sigint_deferred():
            model._unfinished = start  # the epoch starts again from where it started
            for generator, state in zip(generators, states):  # with the same shuffle and dropout draws
                generator.bit_generator.state = state
            for array, copy in zip(_state_arrays(model), copies):
                _device.assign(array, copy)
            model.optimizer.iterations = iterations
            if rate is not None:
                model.optimizer.lr = rate

    try:
        logs = train()
    except ValueError as exc:
        if not isinstance(exc, NonFiniteError) and state_is_finite():
            raise
        put_back()
        kind = NonFiniteError if isinstance(exc, NonFiniteError) else ValueError
        raise kind(f"{exc}; the weights and optimizer state are put back to those from before {before}") from exc
    if not state_is_finite():
        put_back()
        raise NonFiniteError(f"{before}: the weights or optimizer state became NaN or infinite (a gradient or an "
                             "update overflowed float range); training stopped with the weights and optimizer "
                             f"state put back to those from before {before} (lower the learning rate or scale the "
                             "inputs)")
    return logs


@contextlib.contextmanager
def statistics_kept(model):
    """A training step's (forward, backward, optimizer step): the layers' non-trainable state
    (BatchNormalization's moving statistics) put back where the step stops before the optimizer
    applied it, on a non-finite value or on Ctrl-C (the forward pass moved them before the loss was
    seen; a KeyboardInterrupt after the whole step, held back by sigint_deferred, keeps them)."""
    statistics = [(array, _device.copy(array)) for _, array in model.non_trainable_state()]
    iterations = model.optimizer.iterations  # counted once the step is applied whole

    def put_back():
        with sigint_deferred():
            for array, copy in statistics:
                _device.assign(array, copy)

    try:
        yield
    except NonFiniteError:
        put_back()
        raise
    except KeyboardInterrupt:
        if model.optimizer.iterations == iterations:
            put_back()
        raise


def check_finite_statistics(model):
    """train_on_batch's, after the forward pass and before the optimizer's step: NonFiniteError
    where the pass made a moving statistic NaN or infinite (inputs beyond float range?), so that
    the step is not taken (statistics_kept puts the statistics back)."""
    if not all(finite(array) for _, array in model.non_trainable_state()):
        raise NonFiniteError("the forward pass made the moving statistics NaN or infinite (inputs beyond float "
                             "range?); they are put back to those from before it")
