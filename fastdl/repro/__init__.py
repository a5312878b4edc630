"""One module per course assignment; each has ``run(data_dir, out_dir, quick) -> dict``.

``run`` may also accept ``verify`` (checksums of course data); ``fastdl reproduce --no-verify``
passes ``verify=False``. One that accepts ``dataset`` (a4: "fashion" or "cifar10") gets
``--dataset``; one that accepts ``data``, ``epochs`` or ``images`` (a6) gets ``--data``,
``--epochs`` or ``--images``. ``quick`` is True (``--quick``), False (``--full``) or None (neither): a runner
with a slow full run may then decide itself (a4 estimates the time); the others run in full.

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
        ``run(data_dir=None, out_dir="results", quick=False) -> dict``.
    """
    if name not in ASSIGNMENTS:
        raise ValueError(f"unknown assignment {name!r}; implemented: {', '.join(ASSIGNMENTS)}")
    module = importlib.import_module(ASSIGNMENTS[name][0])
    return module.run


def run(name, data_dir=None, out_dir="results", quick=False):
    """Reproduce one assignment; see ``get_runner``.

    Returns
    -------
    dict
        The assignment's results (tables, timings, written files).
    """
    return get_runner(name)(data_dir=data_dir, out_dir=out_dir, quick=quick)
