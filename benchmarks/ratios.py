"""The ratio report: every contender's mean and min time per group against fastdl's fastest backend.

conftest.py prints it after a run. Run as a script, it prints it for the JSON files of several
runs together (`pytest --benchmark-json=FILE`), such as fastdl's contenders and the peers measured
in separate processes:

    FASTDL_BENCH_PEERS=0 python -m pytest benchmarks/bench_nn_models.py --benchmark-json=fastdl.json
    python -m pytest benchmarks/bench_nn_models.py -k torch --benchmark-json=peers.json
    python benchmarks/ratios.py fastdl.json peers.json

In one process fastdl and PyTorch share one OpenMP runtime, and whichever loads it first sets its
wait policy for both (fastdl's kernels load it with OMP_WAIT_POLICY=PASSIVE, PyTorch with the
runtime's default): see benchmarks/README.md.
"""

import json
import sys

FASTDL_PREFIX = "fastdl["


def format_seconds(seconds):
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


def format_ratio(time, baseline):
    """'2.50x slower' / '1.30x faster' / '1.00x' relative to the fastdl baseline."""
    if baseline is None:
        return "n/a"
    ratio = time / baseline
    if ratio >= 1.0:
        return f"{ratio:.2f}x slower" if ratio >= 1.005 else "1.00x"
    return f"{1.0 / ratio:.2f}x faster"


def report(results, write):
    """Write the per-group table of results: (group, contender, mean_s, min_s, rounds, note) rows."""
    groups = {}
    for group, contender, mean, min_, rounds, note in results:
        groups.setdefault(group, []).append((mean, min_, contender, rounds, note))
    for group, rows in groups.items():
        rows.sort()
        fastdl_rows = [row for row in rows if row[2].startswith(FASTDL_PREFIX)]
        best_mean = min(row[0] for row in fastdl_rows) if fastdl_rows else None
        best_min = min(row[1] for row in fastdl_rows) if fastdl_rows else None
        width = max(len(row[2]) for row in rows)
        write("")
        write(group)
        write(f"  {'contender':<{width}}  {'mean':>9}  {'min':>9}  {'vs fastdl (mean)':<16}  "
              f"{'vs fastdl (min)':<15}  rounds")
        for mean, min_, contender, rounds, note in rows:
            line = (f"  {contender:<{width}}  {format_seconds(mean):>9}  {format_seconds(min_):>9}  "
                    f"{format_ratio(mean, best_mean):<16}  {format_ratio(min_, best_min):<15}  {rounds:>6}")
            write(line + (f"  {note}" if note else ""))
        if best_mean is None:
            write("  (no fastdl backend ran in this group, so there is no baseline)")


def results_from_json(path):
    """The report's rows from one pytest-benchmark JSON file (benchmarks that named a contender)."""
    with open(path) as file:
        data = json.load(file)
    rows = []
    for bench in data["benchmarks"]:
        extra, stats = bench.get("extra_info", {}), bench["stats"]
        if "group" in extra:
            rows.append((extra["group"], extra.get("contender", bench["name"]), stats["mean"], stats["min"],
                         stats["rounds"], extra.get("note", "")))
    return rows


def main(paths):
    if not paths:
        print("usage: python benchmarks/ratios.py RUN.json [RUN.json ...]", file=sys.stderr)
        return 2
    results = [row for path in paths for row in results_from_json(path)]
    print(f"fastdl ratios from {len(paths)} run(s): {', '.join(paths)}")
    print("'vs fastdl (mean)': contender mean / best fastdl mean; 'vs fastdl (min)': the same with min times.")
    report(results, print)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
