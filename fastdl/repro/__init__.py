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

``ASSIGNMENTS`` is the registry ``fastdl reproduce`` reads: adding assignment N is one line
here plus its module. Modules are imported only when run, so listing them stays cheap.
"""

import importlib

__all__ = ["ASSIGNMENTS", "get_runner", "run"]

# name -> (module, one-line description)
ASSIGNMENTS = {
    "a1": ("fastdl.repro.a1", "data dimensionality: distance-based classification"),
    "a2": ("fastdl.repro.a2", "multi-class perceptron: batch and online training"),
    "a3": ("fastdl.repro.a3", "XOR network: gradient descent and the lazy random search"),
    "a4": ("fastdl.repro.a4", "MLP and CNN on Fashion-MNIST or CIFAR-10"),
    "a5": ("fastdl.repro.a5", "tell the time: regression, classification, multi-head CNNs"),
    "a6": ("fastdl.repro.a6", "generative models: a VAE and a GAN generating faces"),
}


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
    if name not in ASSIGNMENTS:
        raise ValueError(f"unknown assignment {name!r}; implemented: {', '.join(ASSIGNMENTS)}")
    module = importlib.import_module(ASSIGNMENTS[name][0])
    return module.run


def run(name, data_dir=None, out_dir="results", quick=None):
    """Reproduce one assignment; see ``get_runner``.

    ``quick=None``, as ``fastdl reproduce`` without ``--quick`` or ``--full``: a4, a5 and a6
    estimate their full run's time and run the quick version when it would take over ten
    minutes; the others run in full. True: the quick run; False: the full run, however long.

    Returns
    -------
    dict
        The assignment's results (tables, timings, written files).
    """
    return get_runner(name)(data_dir=data_dir, out_dir=out_dir, quick=quick)
