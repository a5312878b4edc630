"""Every numba.cuda kernel of kernels/gpu/ compiles with the real CUDA compiler (NVVM), to PTX for
compute capability 9.0, in float32 and float64.

The other cuda tests run on numba's simulator where no driver is present, and the simulator runs a
kernel as Python without compiling it: a kernel NVVM or numba's CUDA typing rejects (`min()` of two
floats, a NumPy call the CUDA target lacks, a type unification error) passes them. Compiling to PTX
needs libnvvm but no device or driver. numba reads NUMBA_ENABLE_CUDASIM when it is imported, and this
process runs the simulator, so the compiles run in a child interpreter with NUMBA_ENABLE_CUDASIM=0:
this file run as a script. The child finds the kernels itself (the module-level numba.cuda
dispatchers of kernels/gpu/*.py that are not device functions, plus the kernels the factories in
FACTORIES build), so a kernel added without an entry in `signatures()` fails here, by name. Device
functions are compiled inside the kernels that call them. Where libnvvm is missing the compile test
is skipped with numba's reason; the bookkeeping test still runs.
"""

import ast
import json
import os
import pkgutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.cuda

PACKAGE = "fastdl.kernels.gpu"
CC = (9, 0)  # H100 / H200
CHILD_TIMEOUT_S = 300  # the child takes ~5 s; a hung one fails the tests instead of blocking them

# Functions of kernels/gpu/ modules that build kernels (module.function -> the arguments to build
# each variant with, as a function of numba). Kernels defined inside any other function fail the
# bookkeeping test: the module walk cannot see them.
FACTORIES = {
    "_gemm._tiled": lambda numba: [numba.float32, numba.float64],
    "_gemm._plain": lambda numba: [numba.float32, numba.float64],
}


def signatures():
    """Kernel name (module.function; module.factory[element type] for factory kernels) -> argument
    types of every way fastdl's ops launch it. Arrays are layout "A": the ops pass C-contiguous
    arrays but also row slices, transposes (.T) and caller's device arrays of any strides."""
    from numba import types

    f32, f64, i64, u64 = types.float32, types.float64, types.int64, types.uint64
    floats = (f32, f64)

    def a1(dtype):
        return types.Array(dtype, 1, "A")

    def a2(dtype):
        return types.Array(dtype, 2, "A")

    def a3(dtype):
        return types.Array(dtype, 3, "A")

    def a4(dtype):
        return types.Array(dtype, 4, "A")

    i32 = types.int32

    # Python scalars arrive as int64 / float64 / boolean; NumPy scalars as their own type.
    return {
        # distance: X is a caller's (or copied) array, float32 or float64; the shifted rows are in
        # the compute dtype, which is float64 for knn queries and for mixed float32/float64 inputs.
        "distance._column_stats": [(a2(t), a1(f64), a1(f64), a1(f64)) for t in floats],
        "distance._shift_rows": [(a2(x), a1(f64), f64, a2(out), a1(f64))
                                 for x, out in ((f32, f32), (f32, f64), (f64, f64))],
        "distance._distances_from_gram": [(a2(t), a2(t), a2(t), a1(f64), a1(f64), f64, f64, types.boolean)
                                          for t in floats],
        # neighbors: candidates from the float64 GEMM, ranked by exact distances from the rows of
        # either dtype.
        "neighbors._knn_from_gram": [(a2(f64), a1(f64), a1(f64), f64, f64, a2(t), a2(t), f64, a2(f64), a2(i64))
                                     for t in floats],
        "neighbors._majority_vote": [(a2(i64), a1(i64))],
        "neighbors._class_sums": [(a2(t), a1(i64), a2(f64), a1(i64)) for t in floats],
        # perceptron: every array in W's dtype but the codes and counters; lr a NumPy scalar of W's
        # dtype, rule a Python int.
        "perceptron._delta_rows": [(a2(t), a1(i64), i64, a1(i64)) for t in floats],
        "perceptron._add_scaled": [(a2(t), t, a2(t)) for t in floats],
        "perceptron._online_epoch": [(a2(t), a1(i64), t, i64, a2(t), a1(t), a1(i64)) for t in floats],
        "perceptron._with_bias": [(a2(t), a2(t), a1(i64)) for t in floats],
        # xor: seeds and searches as np.uint64, first_draw np.int64, lr np.float64; the descent's
        # weights and MSEs in the weights' dtype.
        "xor._normal_weights": [(u64, u64, i64, a2(f64))],
        "xor._lazy_search": [(u64, a1(i64))],
        "xor._train_xor": [(a1(t), f64, a1(t), a1(i64), a1(i64)) for t in floats],
        # dense: out, bias (empty for none), dout and dpre in one float dtype; activation a Python
        # int, alpha a NumPy scalar of that dtype.
        "dense._bias_activation": [(a2(t), a1(t), i64, t) for t in floats],
        "dense._activation_backward": [(a2(t), a2(t), i64, t, a2(t)) for t in floats],
        "dense._activation_backward_sums": [(a2(t), a2(t), i64, t, a2(t), a1(t)) for t in floats],
        "dense._activation_backward_input": [(a2(t), a2(t), i64, a2(t)) for t in floats],
        # loss: values, gradients and masks in one float dtype; targets, draws and row_loss float64;
        # codes int64; scale, period and rate Python floats; kept_scale a NumPy scalar of x's dtype.
        "loss._softmax": [(a2(t), a2(t)) for t in floats],
        "loss._softmax_backward": [(a2(t), a2(t), a2(t)) for t in floats],
        "loss._softmax_xent_codes": [(a2(t), a1(i64), f64, a2(t), a1(f64)) for t in floats],
        "loss._softmax_xent_targets": [(a2(t), a2(f64), f64, a2(t), a1(f64)) for t in floats],
        "loss._squared_error": [(a2(t), a2(f64), f64, f64, a2(t), a1(f64)) for t in floats],
        "loss._absolute_error": [(a2(t), a2(f64), f64, f64, f64, a2(t), a1(f64)) for t in floats],
        "augment._affine_forward": [(a4(t), a2(f64), i64, f64, i64, a4(t)) for t in floats],
        "augment._affine_backward": [(a4(t), a2(f64), i64, i64, a4(t)) for t in floats],
        "loss._binary_xent_logits": [(a2(t), a2(f64), f64, a2(t), a1(f64)) for t in floats],
        "loss._binary_xent": [(a2(t), a2(f64), f64, f64, f64, a2(t), a1(f64)) for t in floats],
        "loss._dropout": [(a2(t), a2(f64), f64, t, a2(t), a2(t)) for t in floats],
        # optim: value, grad and the slots in the parameter's dtype (velocity may be empty); the
        # scalars NumPy scalars of that dtype (fastdl.nn's as_dtype).
        "optim._sgd": [(a1(t), a1(t), a1(t), t, t) for t in floats],
        "optim._rmsprop": [(a1(t), a1(t), a1(t), t, t, t, t) for t in floats],
        "optim._adam": [(a1(t), a1(t), a1(t), a1(t), t, t, t, t) for t in floats],
        "optim._sgd_nesterov": [(a1(t), a1(t), a1(t), t, t) for t in floats],
        "optim._rmsprop_momentum": [(a1(t),) * 5 + (t,) * 5 for t in floats],
        "optim._adam_amsgrad": [(a1(t),) * 5 + (t,) * 4 for t in floats],
        "optim._decay": [(a1(t), t, t) for t in floats],
        "optim._block_square_sums": [(a1(t), a1(i64), a1(f64)) for t in floats],
        "optim._scale_blocks": [(a1(t), a1(i64), a1(t), a1(t), a1(t)) for t in floats],
        "optim._clip_values": [(a1(t), t, t, a1(t)) for t in floats],
        "optim._adagrad": [(a1(t), a1(t), a1(t), t, t) for t in floats],
        "optim._adadelta": [(a1(t),) * 4 + (t,) * 4 for t in floats],
        "optim._adamax": [(a1(t),) * 4 + (t,) * 4 for t in floats],
        "optim._nadam": [(a1(t),) * 4 + (t,) * 6 for t in floats],
        # norm: rows (n, channels) and the per-channel vectors in the layer's dtype; the moments and
        # sums float64.
        "norm._channel_moments": [(a2(t), a1(f64), a1(f64)) for t in floats],
        "norm._normalize": [(a2(t), a1(t), a1(t), a1(t), a1(t), a2(t), a2(t)) for t in floats],
        "norm._channel_sums": [(a2(t), a2(t), a1(f64), a1(f64)) for t in floats],
        "norm._channel_moments_blocks": [(a2(t), a1(f64), a1(f64)) for t in floats],
        "norm._channel_sums_blocks": [(a2(t), a2(t), a1(f64), a1(f64)) for t in floats],
        "norm._normalize_backward": [(a2(t), a2(t), a1(t), a1(t), a1(t), a1(t), a2(t)) for t in floats],
        # pool: channels-last images of one dtype; the window (pool_geometry's six values) Python ints.
        "pool._max_pool2d_forward": [(a4(t), a4(t)) + (i64,) * 6 for t in floats],
        "pool._max_pool2d_backward": [(a4(t),) * 3 + (i64,) * 6 for t in floats],
        # upsampling: x and out (dout and dx) of one dtype; size_h, size_w Python ints.
        "pool._upsample2d": [(a4(t), a4(t), i64, i64) for t in floats],
        "pool._upsample2d_backward": [(a4(t), a4(t), i64, i64) for t in floats],
        "pool._avg_pool2d_forward": [(a4(t), a4(t)) + (i64,) * 6 for t in floats],
        "pool._avg_pool2d_backward": [(a4(t), a4(t)) + (i64,) * 6 for t in floats],
        # conv: every float array in x's dtype but unpool's dbias (float64); code int32; the
        # geometry Python ints.
        "conv._im2col": [(a4(t), a2(t)) + (i64,) * 8 for t in floats],
        "conv._col2im": [(a2(t), a4(t)) + (i64,) * 8 for t in floats],
        "conv._conv_direct": [(a4(t), a2(t)) + (i64,) * 6 + (a2(t),) for t in floats],
        "conv._bias_act_pool": [(a2(t), a1(t)) + (i64,) * 5 + (a4(t), a4(i32)) for t in floats],
        "conv._unpool_block": [(a4(t), a4(i32)) + (i64,) * 4 + (a2(t),) for t in floats],
        "conv._unpool_bias": [(a4(t), a4(i32), a1(f64)) for t in floats],
        "conv._shift_sum": [(a4(t), i64, i64, i64, i64, a4(t)) for t in floats],
        "conv._shift_spread": [(a4(t), i64, i64, i64, i64, a4(t)) for t in floats],
        # winograd: every float array in the images' dtype; the tile counts and paddings Python
        # ints; tile grids int64 arrays, accumulate a bool, bias maybe empty.
        "winograd._winograd_input": [(a4(t), i64, i64, i64, i64, a3(t)) for t in floats],
        "winograd._winograd_output": [(a3(t), i64, i64, a4(t)) for t in floats],
        "winograd._winograd_output_grad": [(a4(t), i64, i64, a3(t)) for t in floats],
        "winograd._tile_gather": [(a4(t), a2(t), a2(t), a1(i64), a1(i64), a3(t)) for t in floats],
        "winograd._tile_scatter": [(a3(t), a2(t), a2(t), a1(i64), a1(i64), a4(t), types.boolean, a1(t), i64)
                                   for t in floats],
        # _gemm: out = op(a) @ op(b), all three of the element type, then the transpose flags and accumulate.
        "_gemm._tiled[float32]": [(a2(f32), a2(f32), a2(f32), types.boolean, types.boolean, types.boolean)],
        "_gemm._tiled[float64]": [(a2(f64), a2(f64), a2(f64), types.boolean, types.boolean, types.boolean)],
        "_gemm._plain[float32]": [(a2(f32), a2(f32), a2(f32), types.boolean, types.boolean, types.boolean)],
        "_gemm._plain[float64]": [(a2(f64), a2(f64), a2(f64), types.boolean, types.boolean, types.boolean)],
        # _arrays: take_rows' source, row numbers and output; the others 1-D, a scalar of their dtype.
        "_arrays._take_rows": [(a2(t), a1(i64), a2(t)) for t in floats],
        "_arrays._add": [(a1(t), a1(t), a1(t)) for t in floats],
        "_arrays._scale": [(a1(t), t, a1(t)) for t in floats],
        "_arrays._place_columns": [(a2(t), a2(t), i64) for t in floats],
        "_arrays._take_columns": [(a2(t), i64, a2(t)) for t in floats],
        "_arrays._add_scaled": [(a1(t), t, a1(t)) for t in floats],
        "_arrays._scale_sign": [(a1(t), t, a1(t)) for t in floats],
        "_arrays._add_scaled_sign": [(a1(t), t, a1(t)) for t in floats],
        "_arrays._swap_axes": [(a3(t), a3(t)) for t in floats],
    }


# ----------------------------------------------------------------------------------------------
# The child: NUMBA_ENABLE_CUDASIM=0, writes a JSON report to the path given as its argument.


def _is_cuda_jit(decorator):
    """(whether `decorator` is cuda.jit / cuda.jit(...), whether it says device=True)."""
    call = decorator if isinstance(decorator, ast.Call) else None
    target = call.func if call else decorator
    if not (isinstance(target, ast.Attribute) and target.attr == "jit"
            and isinstance(target.value, ast.Name) and target.value.id == "cuda"):
        return False, False
    device = any(k.arg == "device" and isinstance(k.value, ast.Constant) and k.value.value
                 for k in (call.keywords if call else []))
    return True, device


def _nested_kernels(source, module_short):
    """(factory, kernel) for each non-device @cuda.jit function defined inside another function."""
    found = []

    def visit(node, enclosing):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if enclosing:
                    for decorator in child.decorator_list:
                        is_jit, device = _is_cuda_jit(decorator)
                        if is_jit and not device:
                            found.append((f"{module_short}.{enclosing[0]}", child.name))
                visit(child, enclosing + [child.name])
            else:
                visit(child, enclosing)

    visit(ast.parse(source), [])
    return found


def _find_kernels(report):
    """name -> (python function, target options) of every kernel of PACKAGE; bookkeeping errors
    go to report["bookkeeping"]."""
    import importlib

    import numba
    from numba.cuda.dispatcher import CUDADispatcher

    package = importlib.import_module(PACKAGE)
    kernels, device_functions = {}, []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{PACKAGE}.{info.name}")
        for name, obj in sorted(vars(module).items()):
            if not isinstance(obj, CUDADispatcher) or obj.py_func.__module__ != module.__name__:
                continue  # not a kernel, or one imported from a sibling (counted in its own module)
            if obj.targetoptions.get("device"):
                device_functions.append(f"{info.name}.{name}")
            else:
                kernels[f"{info.name}.{name}"] = (obj.py_func, obj.targetoptions)
                if type(getattr(obj, "_cache", None)).__name__ == "NullCache":
                    report["uncached"].append(f"{info.name}.{name}")
        for factory, kernel in _nested_kernels(Path(module.__file__).read_text(), info.name):
            if factory not in FACTORIES:
                report["bookkeeping"].append(
                    f"{factory} defines the kernel {kernel!r} inside a function, which this test "
                    f"cannot find: add {factory!r} to FACTORIES in {Path(__file__).name}")
    for factory, variants in FACTORIES.items():
        module_short, function = factory.split(".")
        build = getattr(importlib.import_module(f"{PACKAGE}.{module_short}"), function)
        for variant in variants(numba):
            kernel = build(variant)
            kernels[f"{factory}[{variant}]"] = (kernel.py_func, kernel.targetoptions)
    report["device_functions"] = device_functions
    return kernels


def _child(report_path):
    report = {"numba": None, "nvvm": None, "unavailable": None, "kernels": [], "device_functions": [],
              "uncached": [], "bookkeeping": [], "compiled": 0, "failures": [], "seconds": None}

    def write():
        Path(report_path).write_text(json.dumps(report))

    try:
        import numba
        from numba import cuda

        report["numba"] = numba.__version__
    except Exception as error:  # numba.cuda itself is missing: nothing to compile with
        report["unavailable"] = f"numba.cuda cannot be imported: {type(error).__name__}: {error}"
        return write()
    assert not numba.config.ENABLE_CUDASIM, "the child must run without the simulator"

    kernels = _find_kernels(report)
    report["kernels"] = sorted(kernels)
    table = signatures()
    script = Path(__file__).name
    for name in sorted(set(kernels) - set(table)):
        report["bookkeeping"].append(
            f"kernel {name!r} has no signatures: add the argument types its launcher passes to "
            f"signatures() in {script}")
    for name in sorted(set(table) - set(kernels)):
        report["bookkeeping"].append(f"signatures() in {script} names {name!r}, which is no kernel "
                                     "(renamed or removed?)")

    # compile_ptx needs no device, but a kernel calling a device function compiles that function
    # for get_current_device()'s compute capability, which initialises the driver (and raises
    # where there is none): numba's dispatcher is given CC instead, the kernel's own target.
    from numba.cuda import dispatcher

    if hasattr(dispatcher, "get_current_device"):
        dispatcher.get_current_device = lambda: SimpleNamespace(compute_capability=CC)

    try:  # a trivial kernel first: where this fails, NVVM (or its libdevice) is what is missing
        cuda.compile_ptx(lambda a: None, (numba.types.float32[:],), cc=CC)
        from numba.cuda.cudadrv import nvvm

        report["nvvm"] = f"libNVVM {'.'.join(map(str, nvvm.NVVM().get_version()))}"
        if os.path.exists("/proc/self/maps"):  # which libnvvm the loader found (Linux)
            with open("/proc/self/maps") as maps:
                loaded = sorted({line.split()[-1] for line in maps if "libnvvm" in line})
            report["nvvm"] += f" ({', '.join(loaded)})" if loaded else ""
    except Exception as error:
        report["unavailable"] = f"NVVM is unavailable: {type(error).__name__}: {error}"
        return write()

    start = time.perf_counter()
    for name in sorted(set(kernels) & set(table)):
        py_func, options = kernels[name]
        options = {k: options[k] for k in ("debug", "lineinfo", "fastmath", "opt") if k in options}
        for signature in table[name]:
            try:
                cuda.compile_ptx(py_func, signature, cc=CC, **options)
                report["compiled"] += 1
            except Exception as error:
                message = "".join(traceback.format_exception_only(type(error), error)).strip()
                if len(message) > 3000:
                    message = message[:3000] + " [...]"
                report["failures"].append({"kernel": name, "signature": f"({', '.join(map(str, signature))})",
                                           "error": message})
    report["seconds"] = round(time.perf_counter() - start, 2)
    return write()


# ----------------------------------------------------------------------------------------------
# The tests (simulator process): run the child once, check its report.


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpu_compiles") / "report.json"
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    result = subprocess.run([sys.executable, __file__, str(path)], env=env, capture_output=True,
                            text=True, timeout=CHILD_TIMEOUT_S, cwd=Path(__file__).resolve().parents[1])
    if result.returncode != 0 or not path.exists():
        pytest.fail(f"the compiling child exited with {result.returncode}:\n{result.stdout}\n{result.stderr}")
    data = json.loads(path.read_text())
    if data["unavailable"] and "numba.cuda cannot be imported" in data["unavailable"]:
        pytest.skip(data["unavailable"])
    return data


def test_every_kernel_has_signatures(report):
    """Every kernel of kernels/gpu/ has signatures here and every signature a kernel (needs no NVVM)."""
    assert report["kernels"], "found no kernels in kernels/gpu/"
    assert not report["bookkeeping"], "\n".join(report["bookkeeping"])


def test_module_kernels_cache_their_code(report):
    """The module-level kernels are numba dispatchers with an on-disk cache (kernels/gpu/_launch.kernel):
    a fresh process loads their code instead of compiling it again (the factories' kernels, built at
    run time, cannot be cached and are not counted)."""
    if os.environ.get("FASTDL_CACHE", "1").strip().lower() in ("0", "false", "no", "off", ""):
        pytest.skip("FASTDL_CACHE=0 turns the cache off")
    assert not report["uncached"], f"kernels compiled without numba's cache: {report['uncached']}"


def test_kernels_compile_to_ptx(report):
    """Each kernel compiles with NVVM for compute capability 9.0 in each of its signatures."""
    if report["unavailable"]:
        pytest.skip(report["unavailable"])
    failures = report["failures"]
    print(f"{report['nvvm']}, numba {report['numba']}: {report['compiled']} signatures of "
          f"{len(report['kernels'])} kernels compiled to PTX for sm_{CC[0]}{CC[1]} in {report['seconds']} s "
          f"(with the {len(report['device_functions'])} device functions they call); {len(failures)} failed")
    messages = [f"{f['kernel']}{f['signature']}:\n    " + f["error"].replace("\n", "\n    ")
                for f in failures]
    assert not failures, (f"{len(failures)} kernel signature(s) fail to compile for sm_{CC[0]}{CC[1]} "
                          f"(numba's simulator never compiles them):\n" + "\n".join(messages))


if __name__ == "__main__":
    _child(sys.argv[1])
