"""Assignment 3: the XOR network trained by gradient descent, and the lazy random search.

Tables: iteration counts and final outputs per setting (learning rates 0.3, 0.6, 0.8 from the
uniform initialisation; normal vs uniform at 0.3), the lazy search's statistics. Figures: MSE and
misclassified points per iteration, for the learning rates and for the two initialisations.
The learning-rate sweep starts from the uniform weights because the write-up's figure caption
says so ("Left: varying learning rates with uniform initialization. Right: varying
initializations with learning rate 0.3.").
Everything is generated (no data files): weights from ``np.random.RandomState(42)``, first
``normal(0, 1, 9)`` then ``uniform(-1, 1, 9)``, as the course.
"""

from pathlib import Path

import numpy as np

from fastdl import backend as _backend
from fastdl import xor
from fastdl.repro import report

TITLE = "Assignment 3: XOR network (gradient descent and lazy search)"
SOURCE = "generated: the four XOR points; weights from np.random.RandomState(42)"
SEED = 42
LEARNING_RATES = (0.3, 0.6, 0.8)
INIT_LR = 0.3
LAZY_SUCCESSES = 1000
LAZY_SUCCESSES_QUICK = 100
LAZY_SEED = 0  # the lazy search's counter-based normal(0, 1) streams
COURSE_LAZY_MEAN = 118570.75  # the write-up's four runs
COURSE_LAZY_STD = 118409.22


def course_weights():
    """The course's initial weights: {"normal": ..., "uniform": ...} from one RandomState(42)."""
    rs = np.random.RandomState(SEED)
    normal = rs.normal(0, 1, 9)
    return {"normal": normal, "uniform": rs.uniform(-1, 1, 9)}


def format_output(value):
    """An output to 4 decimals, or as many more as it takes not to print 0.5: the table must show
    on which side of 0.5, the class boundary, every output lies."""
    for decimals in range(4, 17):
        text = f"{value:.{decimals}f}"
        if float(text) != 0.5:  # rounding to nearest can reach 0.5 but never cross it
            return text
    return repr(float(value))


def _plot_curves(runs, path, title):
    plt = report.get_pyplot()
    fig, (ax_mse, ax_wrong) = plt.subplots(1, 2, figsize=(11, 4))
    for label, result in runs.items():
        steps = np.arange(1, result.n_iterations + 1)
        ax_mse.plot(steps, result.mse, label=f"{label} ({result.n_iterations} it.)")
        ax_wrong.plot(steps, result.n_misclassified, label=label)
    ax_mse.set_xlabel("iteration")
    ax_mse.set_ylabel("mean squared error")
    ax_wrong.set_xlabel("iteration")
    ax_wrong.set_ylabel("misclassified points")
    ax_wrong.set_yticks(range(5))
    for ax in (ax_mse, ax_wrong):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return report.save_figure(fig, path, source=SOURCE)


def run(data_dir=None, out_dir="results", quick=False):
    """Reproduce assignment 3's tables and figures.

    Parameters
    ----------
    data_dir : str or Path, optional
        Unused: XOR needs no files (accepted as every assignment's runner accepts it).
    out_dir : str or Path, default "results"
        Files go to ``out_dir/a3/``.
    quick : bool, default False
        Fewer lazy-search successes (100 instead of 1000).

    Returns
    -------
    dict
        Keys: "source", "quick", "settings" (list of {"name", "init", "lr", "n_iterations",
        "final_mse", "outputs"}), "lazy_search" (lazy_search_stats plus "seconds",
        "draws_per_second", "backend", "draws"), "timings", "files".
    """
    timings = report.Timings()
    out = Path(out_dir) / "a3"
    files = []
    report.print_header(f"{TITLE}\ndata: {SOURCE}")
    weights = course_weights()

    settings = [("uniform", lr) for lr in LEARNING_RATES] + [("normal", INIT_LR)]
    results = {}
    with timings("train_xor"):
        for init, lr in settings:
            results[(init, lr)] = xor.train_xor(weights[init], lr)
    rows, data = [], []
    for (init, lr), result in results.items():
        outputs = xor.xor_forward(result.weights)
        rows.append([init, f"{lr:g}", result.n_iterations, f"{result.mse[-1]:.4f}"]
                    + [format_output(o) for o in outputs])
        data.append({"name": f"{init} lr={lr:g}", "init": init, "lr": lr, "n_iterations": result.n_iterations,
                     "converged": result.converged, "final_mse": float(result.mse[-1]),
                     "outputs": outputs, "weights": result.weights})
    files += report.write_table(
        out, "xor_training", "XOR network: iterations until no point is misclassified",
        ["Init", "lr", "Iterations", "Final MSE"]
        + [f"out({a:.0f},{b:.0f}), target {t:.0f}" for (a, b), t in zip(xor.INPUTS, xor.TARGETS)],
        rows, SOURCE, data=data,
        notes=["A point is classified by the side of 0.5 its output lies on; outputs that would "
               "round to 0.5000 are shown with more digits. Training stops at the first "
               "iteration with every point on its target's side, so an output can lie just on "
               "the right side of 0.5."])

    with timings("figures"):
        files.append(_plot_curves({f"lr={lr:g}": results[("uniform", lr)] for lr in LEARNING_RATES},
                                  out / "xor_learning_rates.png", "XOR: learning rates (uniform init)"))
        files.append(_plot_curves({init: results[(init, INIT_LR)] for init in ("normal", "uniform")},
                                  out / "xor_initialisations.png", f"XOR: initialisations (lr={INIT_LR:g})"))

    n_successes = LAZY_SUCCESSES_QUICK if quick else LAZY_SUCCESSES
    module_backend = _backend.resolve("xor")
    xor.lazy_search(2, seed=LAZY_SEED + 1)  # compile / warm up outside the timed region
    with timings("lazy_search"):
        draws = xor.lazy_search(n_successes, seed=LAZY_SEED)
    seconds = timings["lazy_search"]
    stats = xor.lazy_search_stats(draws)
    rate = stats["total_draws"] / seconds
    lazy = dict(stats, seconds=seconds, draws_per_second=rate, backend=module_backend,
                n_threads=_backend.get_num_threads(), draws=draws)
    print(f"lazy search: {stats['total_draws']:,} candidate networks in {seconds:.2f} s = "
          f"{rate / 1e6:.1f} million per second ({module_backend}, {lazy['n_threads']} threads)\n")
    files += report.write_table(
        out, "xor_lazy_search", "XOR lazy search: normal(0, 1) draws until a network solves XOR",
        ["Run", "Successes", "Mean draws", "Std draws", "P(success) per draw", "95% CI"],
        [["fastdl", stats["n_successes"], f"{stats['mean']:,.1f}", f"{stats['std']:,.1f}",
          f"{stats['p']:.3e}", f"[{stats['p_low']:.3e}, {stats['p_high']:.3e}]"],
         ["course write-up", 4, f"{COURSE_LAZY_MEAN:,.2f}", f"{COURSE_LAZY_STD:,.2f}",
          f"{1 / COURSE_LAZY_MEAN:.3e}", "-"]],
        f"generated: counter-based normal(0, 1) streams, seed {LAZY_SEED}", data=lazy)
    return report.write_summary(out, {"source": SOURCE, "quick": bool(quick), "settings": data, "lazy_search": lazy,
                                      "timings": dict(timings), "files": files})
