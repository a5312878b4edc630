#!/usr/bin/env bash
# Build fastdl on a CUDA machine, run its cuda tests on the device, then the device benchmarks.
#
#   NUMPY24=path/to/numpy-2.4.*-cp312-*.whl bash benchmarks/gpu/run_on_device.sh [pytest args for the benchmarks]
#   bash benchmarks/gpu/run_on_device.sh path/to/numpy24.whl-or-unpacked-dir [pytest args ...]
#
# numba-cuda 0.30 cannot compile kernels under numpy 2.5, so a numpy 2.4 wheel (or a folder holding
# an unpacked one) goes first on PYTHONPATH; without either, the first .whl/numpy-2.4*.whl is used.
# Nothing is installed from a registry. Logs (and the benchmarks' JSON) go to $OUT when it is set.
# A4_FULL=1 also runs `fastdl reproduce a4 --full --backend cuda` on Fashion-MNIST read from
# $FASHION_DIR (default .data/fashion-mnist, carried like .whl/: the device reaches no network).
# CUDA_TESTS=0 or BENCH=0 skip the tests or the benchmarks (to spread the steps over several calls
# of a few minutes each); `-k nn_models` among the extra arguments runs only the training benchmarks.
# CPU16=1 also runs the CPU comparisons on the machine's cores (16 on the GPU machines): the course
# MLP's and CNN's train steps against PyTorch's, kNN on the course digits (from $FASTDL_DATA, default
# .data/leiden-digits, carried) against faiss and scikit-learn, and the serial part of each training
# step (benchmarks/serial_sections.py) and how each step and each of fastdl's layers scales from 1 to
# 16 threads (benchmarks/scaling.py); fastdl and the peers in separate processes (benchmarks/README.md).
set -euo pipefail

# The repository root, whatever the caller's directory.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
REPO=$PWD
PYTHON=${PYTHON:-python3}
LOGS=${OUT:-}

# Where numpy 2.4 comes from: $NUMPY24, else the first argument, else a carried .whl/ wheel.
if [ -z "${NUMPY24:-}" ] && [ $# -gt 0 ] && [[ "$1" != -* ]]; then
    NUMPY24=$1
    shift
fi
if [ -z "${NUMPY24:-}" ]; then
    NUMPY24=$(ls .whl/numpy-2.4*.whl 2>/dev/null | head -n 1 || true)
fi
if [ -z "$NUMPY24" ] || [ ! -e "$NUMPY24" ]; then
    echo "run_on_device.sh: give a numpy 2.4 wheel or unpacked folder (NUMPY24=... or the first argument)" >&2
    exit 2
fi

# A wheel is unpacked (it is a zip) into a folder of its own; a folder is used as it is.
if [ -f "$NUMPY24" ]; then
    NUMPY_DIR=${TMPDIR:-/tmp}/fastdl-numpy24
    rm -rf "$NUMPY_DIR"
    "$PYTHON" -m zipfile -e "$NUMPY24" "$NUMPY_DIR"
else
    NUMPY_DIR=$(cd "$NUMPY24" && pwd)
fi

# numpy 2.4 first, then the checkout (fastdl imported in place); check that this numpy is the one found.
export PYTHONPATH="$NUMPY_DIR:$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
"$PYTHON" -c "import numpy, sys; v = numpy.__version__; print('numpy', v, 'from', numpy.__file__); \
sys.exit(0 if v.startswith('2.4.') and numpy.__file__.startswith('$NUMPY_DIR') else 'numpy 2.4 is not first on PYTHONPATH')"

# Log a step's output to $OUT/<name>.log as well as the terminal, when $OUT is set.
log() { if [ -n "$LOGS" ]; then tee "$LOGS/$1.log"; else cat; fi; }

# The Cython extensions, in place; fastdl.kernels is the top-level kernels/ folder (setup.py's package_dir).
"$PYTHON" setup.py build_ext --inplace -j 16 2>&1 | log build
[ -e fastdl/kernels ] || ln -s ../kernels fastdl/kernels

# The GPU and the versions in use.
{ nvidia-smi -L || true; "$PYTHON" -m fastdl info || true; } 2>&1 | log info

# The cuda tests on the device (never the simulator) at real sizes; a failure still lets the benchmarks run.
status=0
if [ "${CUDA_TESTS:-1}" != 0 ]; then
    NUMBA_ENABLE_CUDASIM=0 "$PYTHON" -m pytest -m cuda tests -q 2>&1 | log cuda-tests || status=$?
fi

# The device benchmarks against CuPy and PyTorch CUDA, with the ratio report; extra arguments go to pytest.
json=()
[ -n "$LOGS" ] && json=(--benchmark-json="$LOGS/gpu-bench.json")
if [ "${BENCH:-1}" != 0 ]; then
    NUMBA_ENABLE_CUDASIM=0 "$PYTHON" -m pytest benchmarks/gpu --benchmark-columns=min,median,mean,rounds \
        ${json[@]+"${json[@]}"} "$@" 2>&1 | log gpu-bench || status=$?
fi

# Assignment 4's full run trained on the GPU: its tables (under $OUT, else results/) give the test
# accuracies to hold against the CPU run's (issue 16: within 0.01) and the seconds per epoch.
if [ "${A4_FULL:-0}" = 1 ]; then
    NUMBA_ENABLE_CUDASIM=0 "$PYTHON" -m fastdl reproduce a4 --full --backend cuda \
        --data-dir "${FASHION_DIR:-.data/fashion-mnist}" --out "${LOGS:-results}" 2>&1 | log a4-full || status=$?
fi

# The CPU on its own: serial sections that cost little on 2 cores dominate on 16.
if [ "${CPU16:-0}" = 1 ]; then
    "$PYTHON" benchmarks/serial_sections.py --threads "$(nproc)" 2>&1 | log cpu-serial-sections || status=$?
    "$PYTHON" benchmarks/scaling.py --threads "1,2,4,8,$(nproc)" --models mlp,cnn 2>&1 | log cpu-scaling || status=$?
    # fastdl's contenders and the peers in separate processes, each with the OpenMP runtime as it
    # alone loads it (benchmarks/README.md), then one report of both.
    CPU_BENCH=(benchmarks/bench_nn_models.py benchmarks/bench_knn.py --benchmark-columns=min,median,mean,rounds)
    RUNS=${LOGS:-$(mktemp -d)}
    FASTDL_BENCH_PEERS=0 FASTDL_DATA=${FASTDL_DATA:-.data} "$PYTHON" -m pytest "${CPU_BENCH[@]}" \
        -k "mlp or cnn or knn" --benchmark-json="$RUNS/cpu-bench-fastdl.json" 2>&1 | log cpu-bench-fastdl || status=$?
    FASTDL_DATA=${FASTDL_DATA:-.data} "$PYTHON" -m pytest "${CPU_BENCH[@]}" \
        -k "(mlp or cnn or knn) and (torch or faiss)" --benchmark-json="$RUNS/cpu-bench-peers.json" 2>&1 \
        | log cpu-bench-peers || status=$?
    "$PYTHON" benchmarks/ratios.py "$RUNS/cpu-bench-fastdl.json" "$RUNS/cpu-bench-peers.json" 2>&1 \
        | log cpu-bench || status=$?
fi

exit "$status"
