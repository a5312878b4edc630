"""How a training step scales with threads: fastdl's and PyTorch's, and fastdl's layer by layer.

On a 16-core machine PyTorch trained the course CNN 2.17x faster than fastdl; on 2 cores the two
are even. This script times each model's step at each thread count, every run in a fresh process
(fastdl's, then PyTorch's where it is installed, each with the OpenMP runtime as it alone loads
it: benchmarks/README.md). Each run reports the process's CPU time a step besides the wall time:
work that grows with the threads shows there, while cores left idle show as a wall time that
stops falling. For fastdl it also reports each layer's forward and backward time and the
optimizer's update, so a part that does not scale is named. Every number is a median over the
timed steps of that quantity's time in each step (the rest: a step's time less its parts'), so
one slow step moves none of them. A run that fails is listed under its table with the reason,
and the script then exits with status 1.

Run from the repository root: `python benchmarks/scaling.py --threads 1,2,4,8,16 --models mlp,cnn`.
With more threads than cores the times mean little; benchmarks/gpu/run_on_device.sh runs this on
the GPU machine's 16 cores (CPU16=1).
"""

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import time

from _cli import int_at_least, int_list, model_list

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = ("mlp", "cnn", "clock")  # bench_nn_models' kinds: batch 32 SGD, 128 RMSprop, 100 Adam


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
    steps, start = [], time.perf_counter()  # (wall, CPU, {part: seconds}) of each timed step
    while len(steps) < min_steps or time.perf_counter() - start < 1.0:
        spent.clear()
        wall, cpu = time.perf_counter(), time.process_time()  # process_time: every thread's CPU
        step()
        steps.append((time.perf_counter() - wall, time.process_time() - cpu, dict(spent)))
    parts = {part for _, _, spent_in_step in steps for part in spent_in_step}
    print(json.dumps({
        "steps": len(steps),
        "step": statistics.median(wall for wall, _, _ in steps),
        "cpu": statistics.median(cpu for _, cpu, _ in steps),
        "parts": {part: statistics.median(spent_in_step.get(part, 0.0) for _, _, spent_in_step in steps)
                  for part in parts},
        "rest": statistics.median(wall - sum(spent_in_step.values()) for wall, _, spent_in_step in steps),
    }))


def _run(contender, kind, n_threads, min_steps):
    command = [sys.executable, os.path.abspath(__file__), "--child", f"{contender}:{kind}:{n_threads}",
               "--steps", str(min_steps)]
    result = subprocess.run(command, capture_output=True, text=True)
    if not result.returncode:
        try:
            return json.loads(result.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            pass
    last = (result.stderr.strip().splitlines() or result.stdout.strip().splitlines() or ["no output"])[-1]
    return {"missing": f"failed (exit status {result.returncode}): {last}", "failed": True}


def _ms(seconds):
    return f"{seconds * 1e3:,.2f}" if seconds < 0.01 else f"{seconds * 1e3:,.1f}"


def _threads(n):
    return f"{n} thread" + ("" if n == 1 else "s")


def _speedup(before, after):
    return f"{before / after:.2f}x" if before > 0 and after > 0 else "n/a"


def _report(kind, threads, runs):
    """Markdown tables: the steps at each thread count, then fastdl's parts at the fewest and most,
    each followed by the runs that did not happen and why."""
    print(f"\n### {kind}: a training step (ms), its speed-up over the first row, CPU time a step (ms); "
          "medians over the steps\n")
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
            cells += [_ms(run["step"]), _speedup(first[contender]["step"], run["step"]), _ms(run["cpu"])]
        print("| " + " | ".join(cells) + " |")
    missing = [(contender, n, runs[contender, n]["missing"]) for n in threads for contender in ("fastdl", "torch")
               if "missing" in runs[contender, n]]
    if missing:
        print("\nNot run:\n")
        for contender, n, reason in missing:
            print(f"- {'PyTorch' if contender == 'torch' else contender}, {_threads(n)}: {reason}")
    few, most = runs["fastdl", threads[0]], runs["fastdl", threads[-1]]
    if "missing" in few or "missing" in most:
        print(f"\n(no table of fastdl's parts: its run on {_threads(threads[0] if 'missing' in few else threads[-1])} "
              "did not happen)")
        return
    print(f"\nfastdl's parts (ms a step) on {threads[0]} and {threads[-1]} threads; the rest is the loss, "
          "the batch and Python:\n")
    print(f"| part | {threads[0]} | {threads[-1]} | speed-up |")
    print("|---|---|---|---|")
    parts = sorted(set(few["parts"]) | set(most["parts"]),
                   key=lambda part: (-few["parts"].get(part, 0.0), part))
    rows = [(part, few["parts"].get(part, 0.0), most["parts"].get(part, 0.0)) for part in parts]
    for part, a, b in rows + [("rest", few["rest"], most["rest"])]:
        print(f"| {part} | {_ms(a)} | {_ms(b)} | {_speedup(a, b)} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int_list(1), default="1,2,4,8,16",
                        help="comma-separated thread counts, each 1 or more (default 1,2,4,8,16)")
    parser.add_argument("--models", default="mlp,cnn", help=f"comma-separated, of {', '.join(MODELS)} (default mlp,cnn)")
    parser.add_argument("--steps", type=int_at_least(1), default=5,
                        help="timed steps per run at least (runs last 1 s at least)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        contender, kind, n_threads = args.child.split(":")
        _child(contender, kind, int(n_threads), args.steps)
        return 0
    threads, kinds = args.threads, model_list(parser, args.models, MODELS)
    print(f"{os.cpu_count()} CPUs; each run in a process of its own")
    failed = False
    for kind in kinds:
        runs = {(contender, n): _run(contender, kind, n, args.steps) for n in threads for contender in ("fastdl", "torch")}
        _report(kind, threads, runs)
        failed = failed or any(run.get("failed") for run in runs.values())
    if failed:
        print("\nscaling.py: some runs failed (listed under their tables)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
