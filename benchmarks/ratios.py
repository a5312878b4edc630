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

import collections
import json
import os
import sys

FASTDL_PREFIX = "fastdl["


def format_seconds(seconds):
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


def format_ratio(time, baseline):
    """'2.50x slower' / '1.30x faster' relative to the fastdl baseline; '1.00x (same)' for every
    ratio, either way, that rounds to 1.00 (the baseline's own row included)."""
    if baseline is None:
        return "n/a"
    ratio = time / baseline
    text, word = (f"{ratio:.2f}", "slower") if ratio >= 1.0 else (f"{1.0 / ratio:.2f}", "faster")
    return "1.00x (same)" if text == "1.00" else f"{text}x {word}"


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


def label_by_file(runs):
    """The rows of several files, (path, rows) each, as one list; a contender that more than one
    file has in the same group gets its file's name after its own, e.g. 'torch (peers.json)'."""
    files = collections.defaultdict(set)
    for path, rows in runs:
        for row in rows:
            files[row[0], row[1]].add(path)
    names = [os.path.basename(path) for path, _ in runs]
    if len(set(names)) < len(names):  # the same name in two folders: the paths tell them apart
        names = [path for path, _ in runs]
    results = []
    for name, (path, rows) in zip(names, runs):
        for group, contender, *rest in rows:
            if len(files[group, contender]) > 1:
                contender = f"{contender} ({name})"
            results.append((group, contender, *rest))
    return results


def main(paths):
    if not paths:
        print("usage: python benchmarks/ratios.py RUN.json [RUN.json ...]", file=sys.stderr)
        return 2
    results = label_by_file([(path, results_from_json(path)) for path in paths])
    print(f"fastdl ratios from {len(paths)} run(s): {', '.join(paths)}")
    print("'vs fastdl (mean)': contender mean / best fastdl mean; 'vs fastdl (min)': the same with min times.")
    report(results, print)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
