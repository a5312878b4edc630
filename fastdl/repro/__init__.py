"""One module per course assignment; each has ``run(data_dir, out_dir, quick) -> dict``.

``fastdl reproduce`` gives each runner the options it has parameters for (see
``fastdl.cli._ASSIGNMENT_OPTIONS``): ``--no-verify`` passes ``verify=False`` (a1, a2, a4, a5, a6:
checksums of the data), ``--dataset`` (a4), ``--models`` (a5), ``--epochs`` (a5, a6),
``--data`` and ``--images`` (a6), ``--backend`` (a4, a5, a6: what trains the networks); a flag
that an assignment has no parameter for is ignored, with a warning (an error for ``--backend``
given to one assignment that trains no network). ``quick`` is True
(``--quick``), False (``--full``) or None (neither): a4, a5 and a6, whose full runs are slow,
then estimate the full run's time here and run their quick version when it would take over ten
minutes; the others run in full.

An assignment whose options can be wrong in value or whose data can be missing (a1, a2: the
digits; a4, a5, a6: a backend, model keys, a data source, sizes) also has
``check_options(**options)``, which :func:`check_options` calls for every assignment of a
``fastdl reproduce`` before the first runs (a4, a5 and a6 call it first in ``run`` too): cheap
(it looks for the data, reads none and trains nothing), so a mistake is said at once, not after
an hour.

``ASSIGNMENTS`` is the registry ``fastdl reproduce`` reads: adding assignment N is one line
here plus its module. Modules are imported only when run, so listing them stays cheap.
"""

import contextlib
import errno
import importlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from fastdl._interrupts import sigint_deferred

__all__ = ["ASSIGNMENTS", "get_runner", "check_options", "run"]

# name -> (module, one-line description)
ASSIGNMENTS = {
    "a1": ("fastdl.repro.a1", "data dimensionality: distance-based classification"),
    "a2": ("fastdl.repro.a2", "multi-class perceptron: batch and online training"),
    "a3": ("fastdl.repro.a3", "XOR network: gradient descent and the lazy random search"),
    "a4": ("fastdl.repro.a4", "MLP and CNN on Fashion-MNIST or CIFAR-10"),
    "a5": ("fastdl.repro.a5", "tell the time: regression, classification, multi-head CNNs"),
    "a6": ("fastdl.repro.a6", "generative models: a VAE and a GAN generating faces"),
}


def _module(name):
    if name not in ASSIGNMENTS:
        raise ValueError(f"unknown assignment {name!r}; implemented: {', '.join(ASSIGNMENTS)}")
    return importlib.import_module(ASSIGNMENTS[name][0])


def get_runner(name):
    """The ``run`` function of an assignment.

    Parameters
    ----------
    name : str
        A key of ``ASSIGNMENTS``, e.g. "a1".

    Returns
    -------
    callable
        ``run(data_dir=None, out_dir="results", quick=..., **options) -> dict``. ``quick``
        defaults to None (estimate the time; see ``run``) in a4, a5 and a6, and to False (the
        full run) in a1, a2 and a3.
    """
    return _module(name).run


def check_options(name, **options):
    """Raise now if the options given to an assignment's runner cannot run.

    Calls the assignment's ``check_options`` (a1, a2, a4, a5, a6; a3 has no options or data to
    check): an unknown or unavailable backend, unknown model keys, a data source that is not
    there, sizes too small. Cheap: it loads no data and trains nothing.

    Parameters
    ----------
    name : str
        A key of ``ASSIGNMENTS``.
    **options
        The keyword arguments its runner will get (``data_dir``, ``quick``, ``backend``, ...).
    """
    check = getattr(_module(name), "check_options", None)
    if check is not None:
        check(**options)


def run(name, data_dir=None, out_dir="results", quick=None, **options):
    """Reproduce one assignment into ``out_dir/name``: all of its files, or none of them.

    ``quick=None``, as ``fastdl reproduce`` without ``--quick`` or ``--full``: a4, a5 and a6
    estimate their full run's time and run the quick version when it would take over ten
    minutes; the others run in full. True: the quick run; False: the full run, however long.

    The runner writes into a hidden folder inside ``out_dir/name``, ``.NAME.PID.XXXX.partial``
    (so moving a file is a rename, even where ``out_dir/name`` links to another file system);
    only when it returns are its files moved into ``out_dir/name``, replacing same-named ones,
    and the files that the previous run's summary.json listed there and this run did not write
    are removed (no other file: a user's own files stay). If it raises (Ctrl-C too), the hidden
    folder is removed and ``out_dir/name`` is left as it was. So the folder never mixes two
    runs' tables and figures. Every path in the result (and in summary.json) names the file's
    final place. A finished run's files are never deleted: where one cannot be moved in, the
    OSError names the hidden folder that keeps it. (A process killed outright leaves its hidden
    folder behind; a runner called directly, ``a1.run(out_dir=...)``, writes straight into
    ``out_dir/a1``.)

    Parameters
    ----------
    name : str
        A key of ``ASSIGNMENTS``.
    data_dir, out_dir, quick
        As the runner takes them.
    **options
        The runner's other parameters (``verify``, ``backend``, ``epochs``, ...).

    Returns
    -------
    dict
        The assignment's results (tables, timings, written files).
    """
    runner = get_runner(name)
    out = Path(out_dir)
    target = out / name
    created = [path for path in (target, *target.parents) if not path.exists()]  # deepest first
    target.mkdir(parents=True, exist_ok=True)
    # Inside the target folder, so that moving a file is a rename even where the target is a link
    # to another file system; mkdtemp for a unique name, joined to the target as given, so the
    # paths the runner reports turn into the final ones by swapping this prefix for `out`.
    staging = target / Path(tempfile.mkdtemp(prefix=f".{name}.{os.getpid()}.", suffix=".partial",
                                             dir=target)).name
    try:
        result = runner(data_dir=data_dir, out_dir=staging, quick=quick, **options)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for directory in created:  # made for this run: removed (where empty) as it failed
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise
    try:
        with sigint_deferred():  # a folder is never left half published
            result = _publish(staging, out, result)
    except OSError as error:  # a finished run's files are never deleted: they stay where they are
        raise OSError(f"{name} finished, but its files could not all be moved into {target} ({error}); "
                      f"those not moved are in {staging}") from error
    shutil.rmtree(staging, ignore_errors=True)  # emptied folders only
    return result


def _publish(staging, out, result):
    """Move the files written under ``staging`` to the same place under ``out``; return
    ``result`` with its paths under ``out``."""
    written = sorted(path.relative_to(staging) for path in staging.rglob("*") if path.is_file())
    summaries = [path for path in written if path.name == "summary.json"]
    stale = {old for summary in summaries for old in _listed_files(out / summary)} - {out / path for path in written}
    for path in summaries:  # their "files" name the final places
        listing = json.loads((staging / path).read_text(encoding="utf-8"))
        (staging / path).write_text(json.dumps(_moved(listing, staging, out), indent=2) + "\n", encoding="utf-8")

    def move(path):
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(staging / path, out / path)
        except OSError as error:
            if error.errno != errno.EXDEV:
                raise
            shutil.move(staging / path, out / path)  # a subfolder that links to another file system

    for path in written:
        if path not in summaries:
            move(path)
    for old in stale:
        old.unlink(missing_ok=True)
    for path in summaries:  # last: a summary.json in place says that its run's files are
        move(path)
    return _moved(result, staging, out)


def _listed_files(summary):
    """The files a previous run's summary.json lists in its folder (none if it is unreadable)."""
    try:
        listed = json.loads(summary.read_text(encoding="utf-8"))["files"]
        (itself,) = [Path(path) for path in listed if Path(path).name == "summary.json"]
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    files = set()
    for path in listed:
        with contextlib.suppress(ValueError, TypeError):  # a path outside its folder: not touched
            relative = Path(path).relative_to(itself.parent)
            if ".." not in relative.parts and (summary.parent / relative).is_file():
                files.add(summary.parent / relative)
    return files


def _moved(value, staging, out):
    """``value`` with every path under ``staging`` named under ``out``; dicts and lists are changed
    in place (the runner's result may be held elsewhere too: its caller's copy must be right)."""
    if isinstance(value, dict):
        for key, item in value.items():
            value[key] = _moved(item, staging, out)
    elif isinstance(value, list):
        value[:] = [_moved(item, staging, out) for item in value]
    elif isinstance(value, tuple):
        return tuple(_moved(item, staging, out) for item in value)
    elif isinstance(value, (str, Path)):
        with contextlib.suppress(ValueError):  # not a path under staging
            return type(value)(out / Path(value).relative_to(staging))
    return value
