"""Keras-like neural networks on fastdl's compiled ops: layers, losses, optimizers, Sequential, Model."""

from fastdl._validation import NonFiniteError
from fastdl.nn.activations import ELU, Activation, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from fastdl.nn.callbacks import (Callback, CSVLogger, EarlyStopping, EpochTimer, History, LambdaCallback,
                                 LearningRateScheduler, ModelCheckpoint, ReduceLROnPlateau)
from fastdl.nn.layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D, MaxPooling2D, Reshape, UpSampling2D
from fastdl.nn.functional import Input, Model, SymbolicTensor
from fastdl.nn.layers_augment import RandomFlip, RandomRotation, RandomTranslation, RandomZoom
from fastdl.nn.layers_extra import BatchNormalization, Conv2DTranspose, Rescaling
from fastdl.nn.layers_merge import Add, Concatenate, add, concatenate
from fastdl.nn.layers_pool import (AveragePooling2D, AvgPool2D, GlobalAveragePooling2D, GlobalAvgPool2D,
                                   GlobalMaxPool2D, GlobalMaxPooling2D)
from fastdl.nn.losses import (BinaryCrossentropy, CategoricalCrossentropy, CyclicMAE, CyclicMSE, Huber, Loss,
                              MeanAbsoluteError, MeanSquaredError, SparseCategoricalCrossentropy)
from fastdl.nn.model import Sequential
from fastdl.nn.module import Layer, Parameter
from fastdl.nn.optimizers import SGD, Adadelta, Adagrad, Adam, Adamax, AdamW, Nadam, Optimizer, RMSprop
from fastdl.nn import initializers, regularizers  # noqa: F401 (nn.initializers.HeNormal, nn.regularizers.L1)
from fastdl.nn.regularizers import L1, L1L2, L2, l1, l1_l2, l2
from fastdl.nn.sampling import Sampling

__all__ = [
    "Layer", "Parameter", "Input", "Dense", "Conv2D", "MaxPool2D", "MaxPooling2D", "Flatten", "Reshape", "Dropout",
    "Activation", "ReLU", "LeakyReLU", "ELU", "Sigmoid", "Tanh", "Softmax", "L1", "L2", "L1L2", "l1", "l2", "l1_l2",
    "initializers", "regularizers",
    "Loss", "SparseCategoricalCrossentropy", "CategoricalCrossentropy", "MeanSquaredError", "BinaryCrossentropy",
    "CyclicMSE", "MeanAbsoluteError", "CyclicMAE", "Huber", "Optimizer", "SGD", "RMSprop", "Adam", "AdamW", "Adagrad", "Adadelta", "Adamax", "Nadam",
    "Sequential", "History",
    "Callback", "EarlyStopping", "EpochTimer", "ModelCheckpoint", "LearningRateScheduler", "ReduceLROnPlateau",
    "LambdaCallback", "CSVLogger", "Model", "SymbolicTensor", "Conv2DTranspose",
    "BatchNormalization", "UpSampling2D", "Sampling", "Add", "Concatenate", "add", "concatenate",
    "AveragePooling2D", "AvgPool2D", "GlobalAveragePooling2D", "GlobalAvgPool2D", "GlobalMaxPooling2D",
    "GlobalMaxPool2D", "NonFiniteError", "RandomFlip", "RandomRotation", "RandomTranslation", "RandomZoom",
    "Rescaling",
]

# Keras names fastdl.nn has no object for, and what to write instead (fastdl has no automatic
# differentiation, so a function of tensors cannot stand in for a layer, a loss or a metric).
_INSTEAD = {
    "Lambda": "a layer of your own: a subclass of nn.Layer with forward(x, training) and backward(dout) "
              "(README: 'A loss or a layer of your own')",
    "to_categorical": "the losses take class codes as they are: use 'sparse_categorical_crossentropy' (or "
                      "one-hot rows np.eye(n_classes)[y] with 'categorical_crossentropy')",
    "load_model": "build the same model, then model.load(path)",
    "TensorBoard": "the History fit returns (history.history), or a Callback of your own",
}


def __getattr__(name):
    if name in _INSTEAD:
        raise AttributeError(f"fastdl.nn has no {name}; instead: {_INSTEAD[name]}")
    raise AttributeError(f"module 'fastdl.nn' has no attribute {name!r}")
