"""Where host and device meet in fastdl.nn and the cuda ops: what a call may mix, and what it refuses.

The README's rule: NumPy in, NumPy out; device in, device out; fastdl never copies a device array
to the host by itself. Under numba's CUDA simulator the models are tiny.
"""

import copy
import pickle
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from host_as_device import HostAsDevice
from fastdl import _device, nn
from fastdl.nn.module import as_layer_input
from fastdl.ops import knn, pairwise_distances


def _to_device(array):
    from numba import cuda

    return cuda.to_device(array)


def _dense_model(backend, seed=0):
    model = nn.Sequential([nn.Input((4,)), nn.Dense(3, activation="softmax")], seed=seed, backend=backend)
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.build()
    return model


def _data(n=6):
    rng = np.random.default_rng(0)
    return rng.random((n, 4)).astype(np.float32), rng.integers(0, 3, n)


# -- layouts: a device x must be C-contiguous -------------------------------------------------------
def test_is_c_contiguous_reads_the_array_interface():
    block = np.zeros((6, 4), np.float32)
    assert _device.is_c_contiguous(HostAsDevice(block))
    assert _device.is_c_contiguous(HostAsDevice(block[1:3]))  # rows of a C array
    assert _device.is_c_contiguous(HostAsDevice(block[:, :1][:1]))  # one value: any strides
    assert not _device.is_c_contiguous(HostAsDevice(np.asfortranarray(block)))
    assert not _device.is_c_contiguous(HostAsDevice(block[::2]))
    assert not _device.is_c_contiguous(HostAsDevice(block[:, 1:3]))


@pytest.mark.cuda
def test_a_device_x_that_is_not_c_contiguous_is_refused(cuda_backend):
    """numba reshapes a device array without copying: on a GPU a Fortran-order x went through the
    model's reshapes with C strides, its values scrambled (the simulator's reshape copies, so it
    passed here). It is refused where it comes in, naming its layout."""
    model = _dense_model(cuda_backend)
    x, y = _data()
    with pytest.raises(TypeError, match=r"x on the device must be C-contiguous, got shape \(6, 4\) in Fortran order"):
        model.predict(_to_device(np.asfortranarray(x)))
    with pytest.raises(TypeError, match=r"C-contiguous, got shape \(3, 4\) with strides"):
        model.predict(_to_device(x)[::2])
    with pytest.raises(TypeError, match="validation x on the device must be C-contiguous"):
        model.fit(_to_device(x), y, validation_data=(_to_device(np.asfortranarray(x)), y))
    rows = model.predict(_to_device(x)[2:5])  # a row slice of a C array is C-contiguous
    np.testing.assert_allclose(rows, model.predict(x[2:5]), rtol=1e-6)


@pytest.mark.cuda
def test_device_layer_inputs_and_reshapes_refuse_other_layouts(cuda_backend):
    fortran = _to_device(np.asfortranarray(np.ones((3, 4), np.float32)))
    with pytest.raises(TypeError, match="Dense's input on the device must be C-contiguous"):
        as_layer_input(fortran, np.float32, (4,), "Dense")
    with pytest.raises(TypeError, match="in Fortran order"):
        _device.reshaped(fortran, (12,))
    assert _device.reshaped(_to_device(np.ones((3, 4), np.float32))[1:], (8,)).shape == (8,)


# -- a layer called by itself computes on its own side ----------------------------------------------
@pytest.mark.cuda
def test_a_layer_called_directly_refuses_the_other_side(cuda_backend):
    """A layer of a model on the device, given a NumPy array, gave a device array back; a layer of a
    host model, given a device array, copied it to the host. Both are TypeErrors now."""
    x, _ = _data(2)
    on_device, on_host = _dense_model(cuda_backend).layers[0], _dense_model("numpy").layers[0]
    with pytest.raises(TypeError, match=r"layer 'dense' runs on the CUDA device .* x is a host array"):
        on_device(x)
    with pytest.raises(TypeError, match=r"x is on the CUDA device but layer 'dense' is not"):
        on_host(_to_device(x))
    assert _device.is_device(on_device(_to_device(x)))
    assert isinstance(on_host(x), np.ndarray)


class _FakeCupy:
    """What _gemm uses of CuPy, on host arrays (seen as HostAsDevice)."""

    cuda = SimpleNamespace(device=SimpleNamespace(get_cublas_handle=lambda: 7))

    @staticmethod
    def asarray(x):
        return x.array if isinstance(x, HostAsDevice) else np.asarray(x)

    array, abs = staticmethod(np.array), staticmethod(np.abs)

    @staticmethod
    def matmul(a, b, out=None):
        return np.matmul(a, b, out=out)


class _Blas:
    """CuPy's cuBLAS bindings, their sgemm/dgemm raising `failure` as broken bindings would (else
    doing nothing: the products these tests check never reach them)."""

    CUBLAS_OP_N, CUBLAS_OP_T, CUBLAS_POINTER_MODE_HOST = 0, 1, 0

    def __init__(self, failure=None):
        self.failure = failure

    def setStream(self, handle, stream):  # noqa: N802 - cuBLAS' name
        pass

    def setPointerMode(self, handle, mode):  # noqa: N802
        pass

    def sgemm(self, *args):
        if self.failure is not None:
            raise self.failure

    dgemm = sgemm


def _fake_cublas(monkeypatch, blas):
    """gemm's CuPy path on _FakeCupy and `blas`: (the _gemm module, the _Cublas products go to)."""
    from fastdl.kernels.gpu import _gemm

    direct = _gemm._Cublas(_FakeCupy, blas)
    monkeypatch.setattr(_gemm, "_cupy", lambda: _FakeCupy)
    monkeypatch.setattr(_gemm, "_DIRECT", {"cublas": direct})
    return _gemm, direct


def test_gemm_raises_the_callers_error_without_switching_cublas_off(monkeypatch):
    """Arrays that do not multiply are the caller's error: raised as it is, with no warning that
    CuPy's bindings failed, and cuBLAS still on for the next product (it used to be switched off
    for the whole process)."""
    _gemm, direct = _fake_cublas(monkeypatch, _Blas())
    a, b, out = (HostAsDevice(np.ones(shape, np.float32)) for shape in [(2, 3), (4, 2), (2, 2)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="matmul"):
            _gemm.gemm(a, b, out)
    assert _gemm._DIRECT["cublas"] is direct


def test_gemm_falls_back_to_cupy_matmul_when_the_bindings_fail(monkeypatch):
    _gemm, _ = _fake_cublas(monkeypatch, _Blas(RuntimeError("CUBLAS_STATUS_NOT_INITIALIZED")))
    rng = np.random.default_rng(1)
    a, b = rng.random((2, 3), np.float32), rng.random((3, 2), np.float32)
    out = np.zeros((2, 2), np.float32)
    with pytest.warns(RuntimeWarning, match="bindings failed .*CUBLAS_STATUS_NOT_INITIALIZED"):
        _gemm.gemm(HostAsDevice(a), HostAsDevice(b), HostAsDevice(out))
    np.testing.assert_allclose(out, a @ b, rtol=1e-6)
    assert _gemm._DIRECT["cublas"] is None


# -- targets are NumPy arrays ----------------------------------------------------------------------
@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["numpy", "cuda"])
def test_device_targets_are_refused_not_copied(backend, cuda_backend):
    """np.asarray(y) copied a device y to the host, on either backend."""
    model = _dense_model(backend)
    x, y = _data()
    y_device = _to_device(y)
    message = r"y is a device array \(.*\); pass targets as NumPy arrays"
    for call in (lambda: model.fit(x, y_device), lambda: model.evaluate(x, y_device),
                 lambda: model.train_on_batch(x, y_device), lambda: model.test_on_batch(x, y_device)):
        with pytest.raises(TypeError, match=message):
            call()
    with pytest.raises(TypeError, match="validation y is a device array"):
        model.fit(x, y, validation_data=(x, y_device))
    with pytest.raises(TypeError, match="y is a device array"):
        model.loss.check_targets(y_device, 6, (3,))
    with pytest.raises(TypeError, match="calling a loss takes NumPy arrays"):
        nn.MeanSquaredError()(y_device, _to_device(x))


@pytest.mark.cuda
def test_a_models_device_targets_by_output_are_refused(cuda_backend):
    inputs = nn.Input((4,))
    hidden = nn.Dense(3)(inputs)
    model = nn.Model(inputs, {"a": nn.Dense(1)(hidden), "b": nn.Dense(2, activation="softmax")(hidden)}, seed=0)
    model.compile("sgd", {"a": "mse", "b": "sparse_categorical_crossentropy"})
    x, y = _data()
    with pytest.raises(TypeError, match=r"y\['b'\] is a device array"):
        model.fit(x, {"a": np.zeros(6), "b": _to_device(y)})
    with pytest.raises(TypeError, match=r"^y is a device array"):
        model.evaluate(x, _to_device(y))


# -- copies of a model on the device ---------------------------------------------------------------
@pytest.mark.cuda
def test_a_model_on_the_device_refuses_copies(cuda_backend):
    """A copy held NumPy arrays in a model marked on the device (predict then failed deep in an
    upload); on a GPU numba's arrays cannot be copied at all."""
    model = _dense_model(cuda_backend)
    model.predict(_data()[0])
    for copier in (copy.deepcopy, pickle.dumps):
        for thing in (model, model.layers[0]):
            with pytest.raises(TypeError, match=r"is on the CUDA device and cannot be copied .*get_weights"):
                copier(thing)
    unbuilt = nn.Sequential([nn.Input((4,)), nn.Dense(3)], backend=cuda_backend)
    assert copy.deepcopy(unbuilt).backend == cuda_backend  # nothing on the device yet


# -- empty inputs of the cuda distances ------------------------------------------------------------
@pytest.mark.cuda
@pytest.mark.parametrize("op, args, message", [
    (pairwise_distances, (np.zeros((3, 0)), np.zeros((2, 0))), r"A must not be empty, got shape \(3, 0\)"),
    (knn, (np.ones((3, 2)), np.ones((0, 2)), 1), r"X_ref must not be empty, got shape \(0, 2\)"),
    (knn, (np.ones((0, 2)), np.ones((3, 2)), 1), r"X_query must not be empty, got shape \(0, 2\)"),
], ids=["no features", "no reference rows", "no queries"])
def test_empty_device_inputs_are_refused_as_on_the_host(op, args, message, cuda_backend):
    for given in (args, tuple(_to_device(a) if isinstance(a, np.ndarray) else a for a in args)):
        with pytest.raises(ValueError, match=message):
            op(*given, backend=cuda_backend)


# -- a model with nothing to train -----------------------------------------------------------------
def _frozen_before_compile():
    model = nn.Sequential([nn.Input((4,)), nn.Dense(1)], seed=0, name="discriminator")
    model.trainable = False
    model.compile("adam", nn.BinaryCrossentropy(from_logits=True))
    return model


def test_training_a_model_compiled_frozen_warns_once():
    """The GAN recipe's slip (discriminator.trainable = False before its compile) trained nothing
    without a word; Keras 3 warns."""
    x, y = _data()
    y = (y > 0).astype(float)
    model = _frozen_before_compile()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict(x)
        model.evaluate(x, y)
    with pytest.warns(UserWarning, match=r"model 'discriminator' has no trainable weights.*compile the discriminator "
                                         r"before setting discriminator.trainable = False"):
        model.train_on_batch(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.train_on_batch(x, y)
        model.fit(x, y, epochs=1)
    with pytest.warns(UserWarning, match="no trainable weights"):
        _frozen_before_compile().fit(x, y, epochs=1)
    trainable = nn.Sequential([nn.Input((4,)), nn.Dense(1)], seed=0)
    trainable.compile("adam", "mse")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainable.fit(x, y, epochs=1)


def test_non_finite_inputs_name_what_stopped():
    model = _dense_model("numpy")
    x, y = _data()
    x[1, 2] = np.nan
    for call in (model.predict, model, lambda x: model.evaluate(x, y)):
        with pytest.raises(ValueError, match="^the input batch contains NaN or infinity$"):
            call(x)
    with pytest.raises(ValueError, match="^train_on_batch: the input batch contains NaN or infinity; the step was "
                                         "not taken$"):
        model.train_on_batch(x, y)


@pytest.mark.cuda
def test_one_loss_for_two_outputs_keeps_a_gradient_buffer_for_each(cuda_backend):
    """A loss that had trained on the device, given to two outputs of a Model, was copied with its
    device buffers: the second output's gradient overwrote the first's, and training went astray."""
    rng = np.random.default_rng(0)
    x = rng.random((6, 4)).astype(np.float32)
    targets = {"a": rng.random((6, 2)), "b": rng.random((6, 2))}

    def trained(backend):
        loss = nn.MeanSquaredError()
        first = nn.Sequential([nn.Input((4,)), nn.Dense(2)], seed=0, backend=backend)
        first.compile("sgd", loss)
        first.fit(x, targets["a"])
        inputs = nn.Input((4,))
        hidden = nn.Dense(3)(inputs)
        model = nn.Model(inputs, {"a": nn.Dense(2)(hidden), "b": nn.Dense(2)(hidden)}, seed=1, backend=backend)
        model.compile(nn.SGD(0.1), {"a": loss, "b": loss})
        model.fit(x, targets, epochs=2, batch_size=6, shuffle=False)
        return model.get_weights()

    for on_host, on_device in zip(trained("numpy"), trained(cuda_backend)):
        np.testing.assert_allclose(on_device, on_host, rtol=2e-5, atol=2e-5)
