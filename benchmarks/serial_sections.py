"""How much of a training step runs on the calling thread while fastdl's other threads wait.

On 2 cores a pass left on one thread costs little; on 16 it can take as long as all the parallel
work of a step (on a 16-core machine PyTorch trained the course CNN 2.17x faster than fastdl).
This script times training steps of the course's networks at a given thread count, and the part
of each step spent outside fastdl's parallel regions (`run_row_ranges`), outside the compiled kernels that thread themselves
(activations, pooling, the optimizers' updates: called with n_threads > 1) and outside BLAS calls
that BLAS threads: Amdahl's serial part, which more cores do not shorten.

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
    thread is now (0: in the serial part)."""
    import numpy as np

    from fastdl import _parallel

    spent, depth = [0.0], [0]
    original, dot = _parallel.run_row_ranges, np.dot

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

    for name, module in list(sys.modules.items()):
        if name.startswith("fastdl") and getattr(module, "run_row_ranges", None) is original:
            module.run_row_ranges = timing(original, lambda args: True)
    for name, module in list(sys.modules.items()):  # every kernel's last argument is n_threads
        if name.startswith(("fastdl.kernels.cpu.", "fastdl.kernels.cy.")):
            for attribute, kernel in list(vars(module).items()):
                if not attribute.startswith("_") and callable(kernel) and not isinstance(kernel, type):
                    setattr(module, attribute, timing(kernel, lambda args: args and type(args[-1]) is int and args[-1] > 1))
    np.dot = timing(dot, lambda args: not _parallel.blas_held())
    return spent, depth


MODELS = ("mlp", "cnn", "clock", "vae", "gan")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int_at_least(1), default=16, help="fastdl's thread count, 1 or more (default 16)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated: {', '.join(MODELS)}")
    parser.add_argument("--steps", type=int_at_least(1), default=3,
                        help="timed steps per model (at least; steps run for 0.5 s), after two warm-up steps")
    parser.add_argument("--where", type=int_at_least(0), default=0, metavar="N",
                        help="then sample where the calling thread spends its serial part: the N commonest places")
    args = parser.parse_args()
    models = model_list(parser, args.models, MODELS)
    os.environ["FASTDL_NUM_THREADS"] = str(args.threads)  # before fastdl is imported
    steps = _models(set(models))
    for step in steps.values():  # loads every module the steps use, so that all are wrapped
        step()
    in_parallel, depth = _time_parallel_regions()
    print(f"{args.threads} fastdl threads on {os.cpu_count()} CPUs")
    for label, step in steps.items():
        step()
        step()
        in_parallel[0] = 0.0
        start, n_steps = time.perf_counter(), 0
        while n_steps < args.steps or time.perf_counter() - start < 0.5:  # short steps: a few hundred
            step()
            n_steps += 1
        total = (time.perf_counter() - start) / n_steps
        serial = total - in_parallel[0] / n_steps
        print(f"{label}: {_ms(total)} a step, {_ms(serial)} of it outside the parallel regions")
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
