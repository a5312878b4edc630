"""Ctrl-C held back over a few steps that must happen together (an optimizer's update of all its
runs, files renamed into place), then delivered."""

import _signal  # signal's own functions: signal.signal and getsignal add 4-8 us a call (enum lookups)
import contextlib
import threading


@contextlib.contextmanager
def sigint_deferred():
    """Hold Ctrl-C back for the block (an optimizer's step over its runs, a reproduction's files
    as they move into place: milliseconds), then deliver it: a step is taken whole or not at all,
    a folder never left half published. Only the main thread sets handlers; a handler not set from
    Python (None) is kept. A few us a block."""
    if threading.current_thread() is not threading.main_thread() or _signal.getsignal(_signal.SIGINT) is None:
        yield
        return
    caught = []
    previous = _signal.signal(_signal.SIGINT, lambda *args: caught.append(args))
    try:
        yield
    finally:
        _signal.signal(_signal.SIGINT, previous)
    if caught:
        _signal.raise_signal(_signal.SIGINT)
