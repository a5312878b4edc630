"""Cython extensions of fastdl.kernels.cy, with OpenMP when the compiler has it."""

import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
from glob import glob

from Cython.Build import cythonize
from setuptools import Extension, setup

# Cython's support code (memoryviews above all: 23,000 of the 35,000 lines dense.pyx became) is
# compiled once, into this module, instead of into every extension: half the C (Cython 3.1+).
SHARED_UTILITY = "fastdl.kernels.cy._cyutility"

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
    "nonecheck": False,
}


def _flag(name):
    """A build setting given as an environment variable, read as fastdl's run-time flags are
    (fastdl.config): 1, true, yes or on set it; unset, blank, 0, false, no or off leave it off;
    any other value stops the build (rather than be read one way or the other)."""
    value = os.environ.get(name, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise SystemExit(f"{name} must be 1, true, yes or on, or 0, false, no or off; got {os.environ[name]!r}")


def openmp_flags():
    """Compile and link flags for OpenMP, or none when a test program does not build."""
    if _flag("FASTDL_NO_OPENMP"):
        return [], []
    flag = "/openmp" if sys.platform == "win32" else "-fopenmp"
    compiler = os.environ.get("CC", "cc")
    if sys.platform == "win32" or shutil.which(compiler.split()[0]) is None:
        return [], []
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "omp.c")
        with open(source, "w") as f:
            f.write("#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n")
        result = subprocess.run(
            compiler.split() + [flag, source, "-o", os.path.join(tmp, "omp")], capture_output=True
        )
    return ([flag], [flag]) if result.returncode == 0 else ([], [])


def _compiler_builds(flags):
    """Whether the C compiler ($CC, else cc) builds an empty program with `flags`, its warnings
    taken as errors (clang warns of an option it ignores); False where there is none."""
    compiler = os.environ.get("CC", "cc")
    if shutil.which(compiler.split()[0]) is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "probe.c")
        with open(source, "w") as f:
            f.write("int main(void) { return 0; }\n")
        command = compiler.split() + ["-Werror"] + flags + [source, "-o", os.path.join(tmp, "probe")]
        return subprocess.run(command, capture_output=True).returncode == 0


def arch_flags():
    """Tune for this machine's CPU (wider SIMD) unless FASTDL_PORTABLE is set, e.g. to build wheels.

    -ffp-contract=off keeps a * b + c as two roundings, as in the Numba kernels, so both backends
    give the same bits (the kernels' fused multiply-adds are explicit: vecmath32.pxi's fmaf_).
    """
    if _flag("FASTDL_PORTABLE") or sys.platform == "win32":
        return ["-ffp-contract=off"] if sys.platform != "win32" else []
    return ["-march=native", "-ffp-contract=off"] if _compiler_builds(["-march=native"]) else ["-ffp-contract=off"]


# gcc leaves a call to a function declared inline whose body is over 200 of its units (at -O3),
# and a loop with a call in it scalar. gelu's float normal tail (vecmath32.pxi), whose fused
# multiply-adds it counts as calls, is 213 with its exp: gelu's loops ran 10x slower. dense's
# vectorising math may be inlined up to twice that.
DENSE_INLINE_LIMIT = "--param=max-inline-insns-single=400"


def dense_flags():
    """dense's flags beyond every extension's: the higher inline limit, where the compiler has it."""
    return [DENSE_INLINE_LIMIT] if sys.platform != "win32" and _compiler_builds([DENSE_INLINE_LIMIT]) else []


def build_jobs():
    """The CPUs this process may use: gcc compiles that many extensions at once."""
    if hasattr(os, "process_cpu_count"):  # Python 3.13+
        return os.process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


openmp_args, link_args = openmp_flags()
# -fno-trapping-math: fastdl never unmasks floating-point traps, so gcc may turn data-dependent
# branches into selects (elu's gradient on random signs: 1.4 ms a 256 x 1024 pass with a branch,
# mispredicted half the time); every result stays IEEE's, bit for bit.
compile_args = ["-O3", "-fno-math-errno", "-fno-trapping-math"] + arch_flags() + openmp_args


def extension(name, source, extra_args=()):
    """One extension module, compiled and linked as all the others (lists of its own)."""
    return Extension(
        name,
        [source],
        extra_compile_args=list(compile_args) + list(extra_args),
        extra_link_args=list(link_args),
        # Linking libm records versioned symbols (exp@GLIBC_2.29); unversioned ones bind at run time
        # to glibc's oldest exp and log, wrappers with error handling that cost 5% of the XOR lazy search.
        libraries=[] if sys.platform == "win32" else ["m"],
    )


def kernel_extension(path):
    """fastdl.kernels.cy.NAME from kernels/cy/NAME.pyx (dense with dense_flags())."""
    name = os.path.splitext(os.path.basename(path))[0]
    return extension("fastdl.kernels.cy." + name, path, dense_flags() if name == "dense" else ())


# Largest first, so that no long compile starts last while the other jobs sit idle.
sources = sorted(glob(os.path.join("kernels", "cy", "*.pyx")), key=os.path.getsize, reverse=True)
extensions = [extension(SHARED_UTILITY, os.path.join("kernels", "cy", "_cyutility.c"))] + [
    kernel_extension(path) for path in sources
]
jobs = build_jobs()
# cythonize's worker processes are forked; where they would start afresh instead (Windows, macOS,
# Python 3.14's forkserver), each would first run the main script, this file, again.
cython_jobs = jobs if multiprocessing.get_context().get_start_method() == "fork" else 0

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=DIRECTIVES,
        shared_utility_qualified_name=SHARED_UTILITY,
        nthreads=cython_jobs,
    ),
    options={"build_ext": {"parallel": jobs}},
)
