"""How a training step scales with threads: fastdl's and PyTorch's, and fastdl's layer by layer.

On a 16-core machine PyTorch trained the course CNN 2.17x faster than fastdl; on 2 cores the two
are even. This script times each model's step at each thread count, every run in a fresh process
(fastdl's, then PyTorch's where it is installed, each with the OpenMP runtime as it alone loads
it: benchmarks/README.md). Each run reports the process's CPU time a step besides the wall time:
work that grows with the threads shows there, while cores left idle show as a wall time that
stops falling. For fastdl it also reports each layer's forward and backward time and the
optimizer's update, so a part that does not scale is named.

Run from the repository root: `python benchmarks/scaling.py --threads 1,2,4,8,16 --models mlp,cnn`.
With more threads than cores the times mean little; benchmarks/gpu/run_on_device.sh runs this on
the GPU machine's 16 cores (CPU16=1).
"""

import argparse
import collections
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = ("mlp", "cnn", "clock")  # bench_nn_models' kinds: batch 32 SGD, 128 RMSprop, 100 Adam


def _cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _time_parts():
    """Wrap the forward and backward methods of fastdl.nn's layers and the optimizers' step; returns
    {part: seconds} filled as steps run, a part being "layer name forward" (a convolution fused
    with its pooling counts both) or "optimizer update". Calls inside a call of the same layer
    (a method calling its base class') count once."""
    from fastdl.nn.module import Layer
    from fastdl.nn.optimizers import Optimizer
    from fastdl.nn.training import Training

    spent, active = collections.defaultdict(float), set()

    def wrap(cls, method, part):
        original = cls.__dict__[method]

        def timed(self, *args, **kwargs):
            if id(self) in active:
                return original(self, *args, **kwargs)
            active.add(id(self))
            start = time.perf_counter()
            try:
                return original(self, *args, **kwargs)
            finally:
                spent[f"{getattr(self, 'name', 'optimizer')} {part}"] += time.perf_counter() - start
                active.discard(id(self))

        setattr(cls, method, timed)

    classes, stack = set(), [Layer]
    while stack:
        cls = stack.pop()
        if not issubclass(cls, Training):  # a model's time is its layers'
            classes.add(cls)
        stack.extend(cls.__subclasses__())
    for cls in classes:
        for method, part in (("forward", "forward"), ("forward_pooled", "forward"),
                             ("backward", "backward"), ("backward_pooled", "backward")):
            if method in cls.__dict__:
                wrap(cls, method, part)
    wrap(Optimizer, "step", "update")
    return spent


def _child(contender, kind, n_threads, min_steps):
    """Time kind's step on n_threads threads in this process; print one line of JSON."""
    if contender == "fastdl":
        os.environ["FASTDL_NUM_THREADS"] = str(n_threads)  # before fastdl is imported
        os.environ["FASTDL_BENCH_PEERS"] = "0"  # PyTorch stays out of this process
    sys.path.insert(0, HERE)
    import bench_nn_models as models

    if contender == "fastdl":
        model = models._fastdl_model(kind, None)
        x, y = models._data(kind)

        def step():
            model.train_on_batch(x, y)

        spent = _time_parts()
    else:
        if models.torch is None:
            print(json.dumps({"missing": models.TORCH_MISSING}))
            return
        models.torch.set_num_threads(n_threads)
        step, _ = models._torch_step(kind)
        spent = {}
    step()
    step()
    spent.clear()
    times, cpu, start = [], _cpu_seconds(), time.perf_counter()
    while len(times) < min_steps or time.perf_counter() - start < 1.0:
        before = time.perf_counter()
        step()
        times.append(time.perf_counter() - before)
    n = len(times)
    print(json.dumps({"step": sorted(times)[n // 2], "cpu": (_cpu_seconds() - cpu) / n,
                      "parts": {part: seconds / n for part, seconds in spent.items()}}))


def _run(contender, kind, n_threads, min_steps):
    command = [sys.executable, os.path.abspath(__file__), "--child", f"{contender}:{kind}:{n_threads}",
               "--steps", str(min_steps)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        return {"missing": f"failed: {result.stderr.strip().splitlines()[-1:]}"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def _ms(seconds):
    return f"{seconds * 1e3:,.2f}" if seconds < 0.01 else f"{seconds * 1e3:,.1f}"


def _report(kind, threads, runs):
    """Markdown tables: the steps at each thread count, then fastdl's parts at the fewest and most."""
    print(f"\n### {kind}: a training step (ms), its speed-up over the first row, CPU time a step (ms)\n")
    print("| threads | fastdl | speed-up | CPU | PyTorch | speed-up | CPU |")
    print("|---|---|---|---|---|---|---|")
    first = {contender: runs[contender, threads[0]] for contender in ("fastdl", "torch")}
    for n in threads:
        cells = [str(n)]
        for contender in ("fastdl", "torch"):
            run = runs[contender, n]
            if "missing" in run or "missing" in first[contender]:
                cells += ["-", "-", "-"]
                continue
            cells += [_ms(run["step"]), f"{first[contender]['step'] / run['step']:.2f}x", _ms(run["cpu"])]
        print("| " + " | ".join(cells) + " |")
    few, most = runs["fastdl", threads[0]], runs["fastdl", threads[-1]]
    if "missing" in few or "missing" in most:
        return
    print(f"\nfastdl's parts (ms a step) on {threads[0]} and {threads[-1]} threads; the rest is the loss, "
          "the batch and Python:\n")
    print(f"| part | {threads[0]} | {threads[-1]} | speed-up |")
    print("|---|---|---|---|")
    parts = sorted(few["parts"], key=lambda part: -few["parts"][part])
    rest_few = few["step"] - sum(few["parts"].values())
    rest_most = most["step"] - sum(most["parts"].values())
    for part, a, b in [(part, few["parts"][part], most["parts"].get(part, 0.0)) for part in parts] + [
            ("rest", rest_few, rest_most)]:
        print(f"| {part} | {_ms(a)} | {_ms(b)} | {a / b if b > 0 else float('nan'):.2f}x |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="1,2,4,8,16", help="comma-separated thread counts (default 1,2,4,8,16)")
    parser.add_argument("--models", default="mlp,cnn", help=f"comma-separated, of {', '.join(MODELS)} (default mlp,cnn)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per run at least (runs last 1 s at least)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        contender, kind, n_threads = args.child.split(":")
        _child(contender, kind, int(n_threads), args.steps)
        return
    threads = [int(n) for n in args.threads.split(",")]
    kinds = args.models.split(",")
    unknown = sorted(set(kinds) - set(MODELS))
    if unknown or not threads or min(threads) < 1:
        parser.error(f"models among {', '.join(MODELS)} and positive thread counts, got {args.models!r}, {args.threads!r}")
    print(f"{os.cpu_count()} CPUs; each run in a process of its own")
    for kind in kinds:
        runs = {(contender, n): _run(contender, kind, n, args.steps) for n in threads for contender in ("fastdl", "torch")}
        _report(kind, threads, runs)


if __name__ == "__main__":
    main()
