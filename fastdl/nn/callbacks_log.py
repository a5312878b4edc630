"""Callbacks that run functions of the user's or write the logs to a file, as Keras 3's do:
LambdaCallback and CSVLogger (fastdl.nn.callbacks imports them: import them from there)."""

import csv
import os
import warnings

from fastdl.nn.callbacks import Callback

# The hooks a LambdaCallback may be given, each as Keras calls it.
_HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_train_batch_begin",
          "on_train_batch_end", "on_batch_begin", "on_batch_end", "on_test_begin", "on_test_end",
          "on_test_batch_begin", "on_test_batch_end", "on_predict_begin", "on_predict_end",
          "on_predict_batch_begin", "on_predict_batch_end")


class LambdaCallback(Callback):
    """A callback made of functions, as Keras 3's: each hook given is called with the hook's
    arguments, (logs) or (epoch or batch, logs)::

        nn.LambdaCallback(on_epoch_end=lambda epoch, logs: print(epoch, logs["loss"]))

    on_epoch_begin, on_epoch_end, on_train_begin, on_train_end, on_train_batch_begin and
    on_train_batch_end come in Keras' order; any other hook (on_test_batch_end, ...) by name. What
    the functions return is ignored, as Keras ignores it (to stop training, set
    model.stop_training = True). A name that is no hook, or a hook that is not callable, is an
    error when the callback is made.
    """

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None, on_train_end=None,
                 on_train_batch_begin=None, on_train_batch_end=None, **hooks):
        unknown = sorted(set(hooks) - set(_HOOKS))
        if unknown:
            raise ValueError(f"LambdaCallback has no hooks {unknown}; the hooks are {list(_HOOKS)}")
        hooks.update(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end, on_train_begin=on_train_begin,
                     on_train_end=on_train_end, on_train_batch_begin=on_train_batch_begin,
                     on_train_batch_end=on_train_batch_end)
        for name, function in hooks.items():
            if function is None:
                continue
            if not callable(function):
                raise TypeError(f"LambdaCallback's {name} must be a function, got {function!r}")
            setattr(self, name, _ignoring_result(function))
        # Only a function given the epoch's logs, or the validation's, could add names to them.
        self.adds_to_logs = None if on_epoch_end is not None or hooks.get("on_test_end") is not None else ()


def _ignoring_result(function):
    def hook(*args):
        function(*args)  # returns None: fastdl stops training where on_epoch_end returns True; Keras never

    return hook


class CSVLogger(Callback):
    """Write each epoch's logs to a CSV file, as Keras 3's CSVLogger: a header "epoch" and the
    logged names in sorted order, then a row per epoch (its index from 0, the true one where fit
    resumes).

    Parameters
    ----------
    filename : str or path
    separator : str, default ","
        One character.
    append : bool, default False
        True: add to the file (the header only where it is empty or new); False: start it afresh
        at each fit.

    Notes
    -----
    The file is opened for each row and closed again, so every finished epoch is on disk, even
    after an error or Ctrl-C. The columns are the first epoch's (appending, the file's own header's;
    with fit's validation_freq, the first epoch's and their val_ names, as Keras 3);
    a later epoch missing one writes "NA" there, as Keras, and names not among them are left out,
    as Keras leaves them, with a warning (once a fit) that Keras does not give.
    """

    adds_to_logs = ()

    def __init__(self, filename, separator=",", append=False):
        if not isinstance(filename, (str, os.PathLike)):
            raise TypeError(f"filename must be a str or a path, got {filename!r}")
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"separator must be one character, got {separator!r}")
        self.filename, self.separator, self.append = os.fspath(filename), separator, bool(append)
        self.keys = None

    def on_train_begin(self, logs=None):
        self.keys, self._warned = None, False
        if self.append and os.path.exists(self.filename):
            with open(self.filename, encoding="utf-8", newline="") as f:
                header = next(csv.reader(f, delimiter=self.separator), [])
            self._header = not header
            if header[:1] == ["epoch"]:  # the rows go on under the file's own columns
                self.keys = header[1:]
        else:
            self._header = True
            open(self.filename, "w", encoding="utf-8").close()  # afresh; a bad path fails before training

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            if (getattr(self, "params", None) or {}).get("validation_freq", 1) != 1 and \
                    not any(key.startswith("val_") for key in self.keys):
                # A first epoch fit did not validate (validation_freq): the val_ columns to come, as Keras 3.
                self.keys += ["val_" + key for key in self.keys]
        new = sorted(set(logs) - set(self.keys))
        if new and not self._warned:
            self._warned = True
            warnings.warn(f"CSVLogger: {new} are not among the file's columns (the first epoch's names, or the "
                          "header of the file appended to); they are left out", stacklevel=2)
        with open(self.filename, "a", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, delimiter=self.separator, lineterminator="\n")
            if self._header:
                writer.writerow(["epoch", *self.keys])
                self._header = False
            writer.writerow([epoch, *(logs.get(key, "NA") for key in self.keys)])
