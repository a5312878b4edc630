"""Keras-style merge layers, called on a list of tensors: Add (a skip connection) and Concatenate.

    x = Input((8, 8, 3))
    h = Conv2D(3, 3, padding="same", activation="relu")(x)
    h = Add()([x, h])                                 # a residual block's skip connection
    a, b = Conv2D(4, 1)(h), Conv2D(2, 3, padding="same")(h)
    h = Concatenate()([a, b])                         # (batch, 8, 8, 6): the channels side by side

The backward pass of a merge layer returns a list of gradients, one per input, in the inputs'
order (fastdl.nn.functional.Model hands each to its input's layer, summing where a tensor feeds
several layers). On the host the work is NumPy's own vectorised calls (np.add into the output,
slice assignment), memory-bound already; on the cuda backend small kernels do the same passes
(kernels/gpu/_arrays: add, place_columns and take_columns).
"""

import math
import numbers

import numpy as np

from fastdl import _device
from fastdl.nn.module import Layer, as_layer_input
from fastdl.ops import _nn_on_device


def _shapes(layer, input_shape):
    """The list of input shapes a merge layer is called on, checked to be a non-empty list."""
    if not input_shape or not all(isinstance(s, (tuple, list)) for s in input_shape):
        raise ValueError(f"{type(layer).__name__} is called on a list of tensors, e.g. "
                         f"{type(layer).__name__}()([a, b]); got one tensor of shape (batch, "
                         f"{', '.join(map(str, input_shape))})")
    return [tuple(s) for s in input_shape]


def _batch_shapes(shapes):
    return ", ".join(f"(batch, {', '.join(map(str, s))})" for s in shapes)


class _Merge(Layer):
    """A layer of several inputs: forward takes a list of arrays, backward returns a list of gradients."""

    gemm_only = True  # light passes: no reason for BLAS to give up its threads
    runs_on_device = True

    def _inputs(self, inputs):
        """The input arrays, checked against the shapes the layer was built for, in its dtype, and
        their batch size (forward sizes its output by it, not by `_batch`, backward's, which
        another thread's inference pass on the model may have set meanwhile)."""
        name = self.name or type(self).__name__
        if not isinstance(inputs, (list, tuple)) or len(inputs) != len(self.input_shape):
            got = f"{len(inputs)} arrays" if isinstance(inputs, (list, tuple)) else type(inputs).__name__
            raise ValueError(f"{name} was built for a list of {len(self.input_shape)} inputs, got {got}")
        _device.on_device({f"input {k}": x for k, x in enumerate(inputs)})  # all on one side, or an error
        inputs = [as_layer_input(x, self.dtype, shape, name) for x, shape in zip(inputs, self.input_shape)]
        batches = [x.shape[0] for x in inputs]
        if len(set(batches)) > 1:
            raise ValueError(f"{name}: the inputs have different batch sizes {batches} (shapes "
                             f"{[tuple(x.shape) for x in inputs]})")
        self._batch = batches[0]
        return inputs, batches[0]

    def _dout(self, dout):
        name = self.name or type(self).__name__
        dout = as_layer_input(dout, self.dtype, self.output_shape, name + " backward")
        if dout.shape[0] != self._batch:
            raise ValueError(f"{name} backward: the output gradient has {dout.shape[0]} samples, the forward "
                             f"pass had {self._batch}")
        return dout


class Add(_Merge):
    """The sum of its inputs, tensors of one shape: Keras' Add (layers.Add()([a, b, ...])).

    Keras also broadcasts axes of size 1 between the inputs; fastdl asks for equal shapes (a
    ValueError names them otherwise). The sum is taken left to right in the layer's dtype; the
    gradient with respect to each input is the output's gradient itself.
    """

    def compute_output_shape(self, input_shape):
        shapes = _shapes(self, input_shape)
        if len(set(shapes)) > 1:
            raise ValueError(f"Add needs inputs of one shape, got {_batch_shapes(shapes)}")
        return shapes[0]

    def forward(self, inputs, training=False):
        inputs, batch = self._inputs(inputs)
        shape = (batch, *self.output_shape)
        out = self._buffer("out", shape) if training else self._empty(shape)
        if _device.is_device(out):
            return _nn_on_device.add_into(inputs, out)
        if len(inputs) == 1:
            np.copyto(out, inputs[0])
        else:
            np.add(inputs[0], inputs[1], out=out)
            for x in inputs[2:]:
                np.add(out, x, out=out)
        return out

    def backward(self, dout):
        dout = self._dout(dout)
        # One array for every input: the model's backward pass only reads the gradients it is given.
        return [dout if self.needs_input_grad else None] * len(self.input_shape)


class Concatenate(_Merge):
    """Its inputs side by side along `axis`: Keras' Concatenate (layers.Concatenate()([a, b, ...])).

    Parameters
    ----------
    axis : int, default -1
        The axis to join along, counting the batch axis as 0 as Keras does (-1: the last, the
        channels of images); the inputs agree on every other axis. The batch axis cannot be joined.
    """

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            raise TypeError(f"axis must be an integer, got {axis!r}")
        self.axis = int(axis)

    def _axis(self, rank):
        """The axis as an index into a sample's shape (rank axes, the batch axis not counted)."""
        axis = self.axis + rank + 1 if self.axis < 0 else self.axis
        if not 1 <= axis <= rank:
            raise ValueError(f"Concatenate joins along axis {self.axis}: inputs (batch, ...) of {rank + 1} axes "
                             f"have axes 1 to {rank} or -1 to -{rank} besides the batch axis")
        return axis - 1

    def compute_output_shape(self, input_shape):
        shapes = _shapes(self, input_shape)
        ranks = {len(s) for s in shapes}
        if len(ranks) > 1:
            raise ValueError(f"Concatenate needs inputs with as many axes, got {_batch_shapes(shapes)}")
        axis = self._axis(ranks.pop())
        others = {s[:axis] + s[axis + 1:] for s in shapes}
        if len(others) > 1:
            raise ValueError(f"Concatenate along axis {self.axis} needs inputs that agree on every other axis, "
                             f"got {_batch_shapes(shapes)}")
        first = shapes[0]
        return (*first[:axis], sum(s[axis] for s in shapes), *first[axis + 1:])

    def build(self, input_shape, rng, dtype=np.float32):
        super().build(input_shape, rng, dtype)
        # The join seen on arrays with the batch axis: rows (the axes before it) of columns.
        self._join = self._axis(len(self.output_shape)) + 1
        self._widths = [math.prod(s[self._join - 1:]) for s in self.input_shape]

    def forward(self, inputs, training=False):
        inputs, batch = self._inputs(inputs)
        shape = (batch, *self.output_shape)
        out = self._buffer("out", shape) if training else self._empty(shape)
        if _device.is_device(out):
            return _nn_on_device.concatenate_into(inputs, out, self._join)
        block, start = self._columns(out, sum(self._widths)), 0
        for x, width in zip(inputs, self._widths):
            block[:, start:start + width] = self._columns(x, width)
            start += width
        return out

    def backward(self, dout):
        dout = self._dout(dout)
        if not self.needs_input_grad:
            return [None] * len(self.input_shape)
        # Each gradient in a buffer of its own: C-contiguous, as the layers before take them.
        parts = [self._buffer(("dx", k), (self._batch, *shape)) for k, shape in enumerate(self.input_shape)]
        if _device.is_device(dout):
            return _nn_on_device.split_into(dout, parts, self._join)
        block, start = self._columns(dout, sum(self._widths)), 0
        for part, width in zip(parts, self._widths):
            self._columns(part, width)[...] = block[:, start:start + width]
            start += width
        return parts

    @staticmethod
    def _columns(array, width):
        """A C-contiguous host array as rows (the axes before the join) of `width` columns: a view."""
        return array.reshape(-1, width)


def add(inputs, **kwargs):
    """Add(**kwargs)(inputs): Keras' functional form of the layer."""
    return Add(**kwargs)(inputs)


def concatenate(inputs, axis=-1, **kwargs):
    """Concatenate(axis, **kwargs)(inputs): Keras' functional form of the layer."""
    return Concatenate(axis=axis, **kwargs)(inputs)
