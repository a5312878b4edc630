"""Layer and model names as Keras 3 gives and checks them: "dense", "dense_1", ..., no "/"."""

import re


def snake_case(class_name):
    """A class name in snake case by Keras 3's rule (keras.src.utils.naming.to_snake_case):
    Conv2DTranspose -> "conv2d_transpose", MaxPooling2D -> "max_pooling2d", LeakyReLU ->
    "leaky_re_lu", ReLU -> "re_lu"."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", re.sub(r"\W+", "", class_name))
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def default_layer_name(layer, taken):
    """Keras' name for an unnamed layer: its class in snake case (snake_case: "conv2d_transpose"),
    with "_1", "_2", ... added while the name is in `taken`."""
    base = snake_case(type(layer).__name__)
    name, k = base, 0
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    return name


def unnamed(layer):
    """Whether a model takes `layer` in with a name of its choosing: no name given (a model's
    default name counts as none until a model it is in has kept it)."""
    return layer.name is None or getattr(layer, "name_is_default", False)


def check_name(name):
    """A layer's or model's name as Keras 3 takes it: a "/" in it is a ValueError. Weights are
    named by the layers and models they are in ("model/layer/kernel"): a "/" in a name could give
    two weights one name, which save and load would confuse."""
    if isinstance(name, str) and "/" in name:
        raise ValueError(f"Argument `name` cannot contain character `/` (as in Keras 3). Received: name={name!r}")
    return name


def take_name(layer, taken, avoid, model):
    """Name a layer that `model` takes in: an unnamed one gets Keras' default name, free of the
    names `taken` by the model's other layers and of those to `avoid` (kept for the model from then
    on: the models it is in name weights by it); a name already taken, or one with a "/"
    (check_name: a layer renamed since, a model given one), is a ValueError."""
    if unnamed(layer):
        layer.name = default_layer_name(layer, taken | avoid)
        layer.name_is_default = False
    elif check_name(layer.name) in taken:
        raise ValueError(f"layer name {layer.name!r} is used twice in model {model.name!r}: give the layers "
                         "distinct names (name=...)")
