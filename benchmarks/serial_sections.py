"""How much of a training step runs on the calling thread while fastdl's other threads wait.

On 2 cores a pass left on one thread costs little; on 16 it can take as long as all the parallel
work of a step (on a 16-core machine PyTorch trained the course CNN 2.17x faster than fastdl).
This script times training steps of the course's networks at a given thread count, and the part
of each step spent outside fastdl's parallel regions (`run_row_ranges` calls whose rows go in more
than one range: with one, the calling thread runs it alone), outside the compiled kernels that
thread themselves (activations, pooling, the optimizers' updates: called with n_threads > 1) and
outside BLAS calls that BLAS threads: Amdahl's serial part, which more cores do not shorten. It
also counts the regions of a step by the ranges they ran on, and names the places whose regions
ran on fewer ranges than threads (too little work to split further) for the most time.

Run from the repository root: `python benchmarks/serial_sections.py --threads 16`. With more
threads than cores the step times mean little, but the serial part is still what one thread does
alone; on a machine with that many cores both are real. A model of Dense layers (the course MLP)
leaves its GEMMs to BLAS's own threads: there, the BLAS calls count as the parallel part.
"""

import argparse
import collections
import os
import sys
import threading
import time

from _cli import int_at_least, model_list


def _models(names):
    """{name: step function} of the networks asked for (each built once, seed 0, random data)."""
    import numpy as np

    from fastdl import nn
    from fastdl.repro import a6_models
    from fastdl.repro.models import clock_regression_cnn, course_cnn, course_mlp

    rng = np.random.default_rng(0)
    steps = {}
    if "mlp" in names:  # the course MLP, batch 32, SGD
        mlp = course_mlp(seed=0)
        mlp.compile(nn.SGD(0.01), "sparse_categorical_crossentropy")
        digits, labels = rng.random((32, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, 32)
        steps["course MLP, batch 32"] = lambda: mlp.train_on_batch(digits, labels)
    if "cnn" in names:  # the course CNN, batch 128, RMSprop
        cnn = course_cnn((28, 28, 1), seed=0)
        cnn.compile(nn.RMSprop(), "sparse_categorical_crossentropy")
        images, codes = rng.random((128, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, 128)
        steps["course CNN, batch 128"] = lambda: cnn.train_on_batch(images, codes)
    if "clock" in names:  # a5's regression CNN, batch 100, RMSprop
        clock = clock_regression_cnn(seed=0)
        clock.compile(nn.RMSprop(), "mse")
        clocks, hours = rng.random((100, 150, 150, 1), dtype=np.float32), rng.random((100, 1), dtype=np.float32)
        steps["clock CNN, batch 100"] = lambda: clock.train_on_batch(clocks, hours)
    if "vae" in names:  # a6's VAE, batch 32 of 64x64x3
        vae, _, _ = a6_models.build_vae((64, 64, 3), seed=0)
        faces = rng.random((32, 64, 64, 3), dtype=np.float32)
        steps["VAE, batch 32"] = lambda: vae.train_on_batch(faces, faces)
    if "gan" in names:  # a6's GAN: 32 real and 32 generated images, then 64 for the generator
        gan, generator, discriminator = a6_models.build_gan((64, 64, 3), seed=0)
        real = rng.random((32, 64, 64, 3), dtype=np.float32) * 2 - 1
        steps["GAN, 32 real images"] = lambda: a6_models.gan_step(gan, generator, discriminator, real, rng)
    return steps


def _time_parallel_regions():
    """Wrap run_row_ranges wherever fastdl imported it, the CPU kernels (counted when they are asked
    for more than one thread) and numpy's dot (counted when BLAS may thread it) outside it; returns
    one-element lists: the seconds spent in any of them so far, and how deep in one the calling
    thread is now (0: in the serial part); and {(place, ranges): [calls, seconds]} of the
    run_row_ranges calls made in the serial part, by the place that made them and the ranges
    their rows went in (fastdl._parallel.row_ranges); for one range, the seconds outside what
    threaded inside it.

    A run_row_ranges call whose rows go in one range runs it on the calling thread: its time
    counts as serial (a kernel or BLAS call inside it that threads itself still counts as
    parallel), and so does that of one made inside another's range, which runs its ranges one
    after the other."""
    import inspect

    import numpy as np

    from fastdl import _parallel

    spent, depth, on_one_range = [0.0], [0], [0]
    regions = collections.defaultdict(lambda: [0, 0.0])
    original, dot = _parallel.run_row_ranges, np.dot
    signature = inspect.signature(original)

    def timing(func, counts):
        def timed(*args, **kwargs):
            if depth[0] or not counts(args):
                return func(*args, **kwargs)
            start = time.perf_counter()
            depth[0] += 1
            try:
                return func(*args, **kwargs)
            finally:
                depth[0] -= 1
                spent[0] += time.perf_counter() - start

        return timed

    def ranges(args, kwargs):
        """How many ranges run_row_ranges(*args, **kwargs) runs at once."""
        if getattr(_parallel._region, "active", False):
            return 1
        if len(args) >= 4 and not kwargs:
            n_rows, n_threads, work_per_row, align = (*args[1:5], 1)[:4]
        else:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            n_rows, n_threads, work_per_row, align = (bound.arguments[name] for name in
                                                      ("n_rows", "n_threads", "work_per_row", "align"))
        return len(_parallel.row_ranges(n_rows, n_threads, work_per_row, align))

    def region(*args, **kwargs):
        if depth[0]:
            return original(*args, **kwargs)
        caller = sys._getframe(1)
        place = f"{os.path.basename(caller.f_code.co_filename)}:{caller.f_code.co_name}:{caller.f_lineno}"
        count = ranges(args, kwargs)
        outer = on_one_range[0]  # a region inside a one-range one: its time is counted there
        start, spent_before = time.perf_counter(), spent[0]
        depth[0] += count > 1
        on_one_range[0] += count == 1
        try:
            return original(*args, **kwargs)
        finally:
            depth[0] -= count > 1
            on_one_range[0] -= count == 1
            seconds = time.perf_counter() - start
            if count > 1:
                spent[0] += seconds
            else:  # less what threaded inside it (BLAS, a kernel, a region)
                seconds -= spent[0] - spent_before
            entry = regions[place, count]
            entry[0] += 1
            entry[1] += 0.0 if outer else seconds

    for name, module in list(sys.modules.items()):
        if name.startswith("fastdl") and getattr(module, "run_row_ranges", None) is original:
            module.run_row_ranges = region
    for name, module in list(sys.modules.items()):  # every kernel's last argument is n_threads
        if name.startswith(("fastdl.kernels.cpu.", "fastdl.kernels.cy.")):
            for attribute, kernel in list(vars(module).items()):
                if not attribute.startswith("_") and callable(kernel) and not isinstance(kernel, type):
                    setattr(module, attribute, timing(kernel, lambda args: args and type(args[-1]) is int and args[-1] > 1))
    np.dot = timing(dot, lambda args: not _parallel.blas_held())
    return spent, depth, regions


def _region_report(regions, n_steps, n_threads, n_places):
    """Lines on the parallel regions of a step (see _time_parallel_regions): how many, how many ran
    on fewer ranges than threads (one: serially), and the n_places places whose regions took the
    most time a step on fewer ranges than threads, with their calls a step by ranges."""
    calls = sum(entry[0] for entry in regions.values()) / n_steps
    single = [entry for (_, count), entry in regions.items() if count == 1]
    fewer = [entry for (_, count), entry in regions.items() if 1 < count < n_threads]
    lines = [f"  {calls:,.1f} parallel regions a step: {sum(e[0] for e in single) / n_steps:,.1f} on one range "
             f"(serial, {_ms(sum(e[1] for e in single) / n_steps)})"
             + (f", {sum(e[0] for e in fewer) / n_steps:,.1f} on 2 to {n_threads - 1} ranges "
                f"({_ms(sum(e[1] for e in fewer) / n_steps)})" if n_threads > 2 else "")]
    by_place = collections.defaultdict(lambda: [0.0, collections.Counter()])
    for (place, count), (n_calls, seconds) in regions.items():
        if count < n_threads:
            by_place[place][0] += seconds / n_steps
        by_place[place][1][count] += n_calls / n_steps
    short = sorted(((seconds, place, counts) for place, (seconds, counts) in by_place.items() if seconds),
                   reverse=True)[:n_places]
    if short:
        lines.append(f"  regions on fewer ranges than the {n_threads} threads, by time a step there "
                     "(calls a step x ranges):")
    for seconds, place, counts in short:
        spread = ", ".join(f"{n_calls:g} x {count}" for count, n_calls in sorted(counts.items()))
        lines.append(f"  {_ms(seconds):>9}  {place}  ({spread})")
    return lines


MODELS = ("mlp", "cnn", "clock", "vae", "gan")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int_at_least(1), default=16, help="fastdl's thread count, 1 or more (default 16)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated: {', '.join(MODELS)}")
    parser.add_argument("--steps", type=int_at_least(1), default=3,
                        help="timed steps per model (at least; steps run for 0.5 s), after two warm-up steps")
    parser.add_argument("--where", type=int_at_least(0), default=0, metavar="N",
                        help="then sample where the calling thread spends its serial part: the N commonest places")
    parser.add_argument("--regions", type=int_at_least(0), default=5, metavar="N",
                        help="the N places whose parallel regions ran on fewer ranges than threads for the most "
                             "time (default 5)")
    args = parser.parse_args()
    models = model_list(parser, args.models, MODELS)
    os.environ["FASTDL_NUM_THREADS"] = str(args.threads)  # before fastdl is imported
    steps = _models(set(models))
    for step in steps.values():  # loads every module the steps use, so that all are wrapped
        step()
    in_parallel, depth, regions = _time_parallel_regions()
    print(f"{args.threads} fastdl threads on {os.cpu_count()} CPUs")
    for label, step in steps.items():
        step()
        step()
        in_parallel[0] = 0.0
        regions.clear()
        start, n_steps = time.perf_counter(), 0
        while n_steps < args.steps or time.perf_counter() - start < 0.5:  # short steps: a few hundred
            step()
            n_steps += 1
        total = (time.perf_counter() - start) / n_steps
        serial = total - in_parallel[0] / n_steps
        print(f"{label}: {_ms(total)} a step, {_ms(serial)} of it outside the parallel regions")
        for line in _region_report(regions, n_steps, args.threads, args.regions):
            print(line)
        if args.where:
            for seconds, place in _serial_places(step, n_steps, args.where, depth):
                print(f"  {_ms(seconds):>9}  {place}")


def _serial_places(step, n_steps, n_places, depth):
    """[(seconds a step, place)] of the calling thread outside the parallel parts (depth[0] == 0:
    see _time_parallel_regions), from samples of its stack every half millisecond while it runs
    n_steps steps (the sampler takes the interpreter lock, so the steps run slower; the shares
    stand, but a sample due while a compiled call held no interpreter lock lands just after the
    call returns: calls that take long count against the lines that follow them). A place is the
    innermost three frames."""
    main = threading.get_ident()
    places, samples, done = collections.Counter(), [0], threading.Event()

    def sample():
        while not done.wait(0.0005):
            frame, chain = sys._current_frames().get(main), []
            if not depth[0]:
                while frame is not None:
                    code = frame.f_code
                    if code.co_filename != __file__:  # (the wrappers)
                        chain.append(f"{os.path.basename(code.co_filename)}:{code.co_name}:{frame.f_lineno}")
                    frame = frame.f_back
                places[" < ".join(chain[:3])] += 1
            samples[0] += 1

    sampler = threading.Thread(target=sample, daemon=True)
    start = time.perf_counter()
    sampler.start()
    for _ in range(n_steps):
        step()
    done.set()
    sampler.join()
    per_sample = (time.perf_counter() - start) / n_steps / max(samples[0], 1)
    return [(count * per_sample, place) for place, count in places.most_common(n_places)]


def _ms(seconds):
    return f"{seconds * 1e6:,.0f} µs" if seconds < 1e-3 else f"{seconds * 1e3:,.1f} ms"


if __name__ == "__main__":
    main()
