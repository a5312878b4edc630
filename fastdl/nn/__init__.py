"""Keras-like neural networks on fastdl's compiled ops: layers, losses, optimizers, Sequential."""

from fastdl.nn.activations import Activation, ReLU, Sigmoid, Softmax, Tanh
from fastdl.nn.layers import Conv2D, Dense, Dropout, Flatten, Input, MaxPool2D, MaxPooling2D
from fastdl.nn.losses import CategoricalCrossentropy, Loss, MeanSquaredError, SparseCategoricalCrossentropy
from fastdl.nn.model import History, Sequential
from fastdl.nn.module import Layer, Parameter
from fastdl.nn.optimizers import SGD, Adam, Optimizer, RMSprop

__all__ = [
    "Layer", "Parameter", "Input", "Dense", "Conv2D", "MaxPool2D", "MaxPooling2D", "Flatten", "Dropout",
    "Activation", "ReLU", "Sigmoid", "Tanh", "Softmax",
    "Loss", "SparseCategoricalCrossentropy", "CategoricalCrossentropy", "MeanSquaredError",
    "Optimizer", "SGD", "RMSprop", "Adam", "Sequential", "History",
]
