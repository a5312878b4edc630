"""CallbackList: the callbacks of one fit, evaluate or predict, each hook called on all of them in order,
as Keras' CallbackList."""

import numpy as np

from fastdl.nn.callbacks import Callback


class CallbackList:
    """The callbacks of one fit, evaluate or predict, each given the model and Keras' params ({"verbose",
    "epochs", "steps"}). A hook's logs: one dict all the callbacks share where Keras shares it
    (on_train_batch_end, on_epoch_end, on_train_end: History records what the others add), else
    each callback's own."""

    def __init__(self, callbacks, model, params):
        """params: Keras' ("verbose", "epochs", "steps": batches an epoch, None where fit's x is an
        iterator that gives them until it ends)."""
        callbacks = list(callbacks or [])
        for callback in callbacks:
            if not isinstance(callback, Callback):
                raise TypeError(f"callbacks must be Callback objects, got {type(callback).__name__}")
        self.callbacks, self.model, self.params = [], model, params
        for callback in callbacks:
            self.append(callback)

    def append(self, callback):
        callback.set_model(self.model)
        callback.set_params(self.params)
        self.callbacks.append(callback)

    def logged_names(self, names, validating):
        """The names fit's epoch logs will hold (Keras 2's params["metrics"]): the model's, their
        val_ twins where fit validates, and those the callbacks add; None where a callback may add
        names of its own (one of yours: adds_to_logs None)."""
        added = [callback.adds_to_logs for callback in self.callbacks]
        if any(keys is None for keys in added):
            return None
        return [*names, *(f"val_{name}" for name in names if validating), *sorted({k for keys in added for k in keys})]

    def on_train_begin(self):
        for callback in self.callbacks:
            callback.on_train_begin({})

    def on_train_end(self, logs):
        for callback in self.callbacks:
            callback.on_train_end(logs)

    def on_epoch_begin(self, epoch):
        for callback in self.callbacks:
            callback.on_epoch_begin(epoch, {})

    def on_epoch_end(self, epoch, logs):
        """Whether a callback returned True to stop (each still sees the epoch, as in Keras). Only
        True stops: Keras ignores what on_epoch_end returns, so a Keras callback that returns
        something else (its logs, say) must not end training."""
        stops = [callback.on_epoch_end(epoch, logs) for callback in self.callbacks]
        return any(stop is True or stop is np.True_ for stop in stops)

    def on_train_batch_begin(self, batch):
        for callback in self.callbacks:
            callback.on_train_batch_begin(batch, {})

    def on_train_batch_end(self, batch, logs):
        for callback in self.callbacks:
            callback.on_train_batch_end(batch, logs)

    def on_test_begin(self):
        for callback in self.callbacks:
            callback.on_test_begin({})

    def on_test_end(self, logs):
        for callback in self.callbacks:
            callback.on_test_end(dict(logs))

    def on_test_batch_begin(self, batch):
        for callback in self.callbacks:
            callback.on_test_batch_begin(batch, {})

    def on_test_batch_end(self, batch, logs):
        for callback in self.callbacks:
            callback.on_test_batch_end(batch, dict(logs))

    def on_predict_begin(self):
        for callback in self.callbacks:
            callback.on_predict_begin({})

    def on_predict_end(self):
        for callback in self.callbacks:
            callback.on_predict_end({})

    def on_predict_batch_begin(self, batch):
        for callback in self.callbacks:
            callback.on_predict_batch_begin(batch, {})

    def on_predict_batch_end(self, batch, logs):
        for callback in self.callbacks:
            callback.on_predict_batch_end(batch, dict(logs))

    def watch_test_batches(self):
        """Whether a callback overrides a test batch hook (else evaluation runs in one pass)."""
        return any(_overrides(callback, "on_test_batch_begin", "on_test_batch_end") for callback in self.callbacks)


def _overrides(callback, *hooks):
    """Whether the callback overrides one of the Callback hooks named: in its class, or as a
    function of its own (a LambdaCallback's)."""
    return any(getattr(getattr(callback, hook), "__func__", None) is not getattr(Callback, hook) for hook in hooks)
