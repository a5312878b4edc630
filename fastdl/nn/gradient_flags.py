"""Which gradients a model's backward pass computes: its layers' needs_input_grad and needs_weight_grads.

A layer needs its input's gradient when a layer before it learns, and its parameters' when the
model being trained trains them (its optimizer's parameters: Keras' `trainable`, read when the
model was compiled). The flags are set before a training step's forward pass, which a
BatchNormalization layer reads (a frozen one normalises by its moving statistics). So a frozen
base under a trained head runs no backward pass, and a frozen discriminator inside a GAN passes
gradients to the generator without computing its own weights'. Layers can be shared between
models (the GAN's discriminator trains alone too), so each model sets the flags for its own
optimizer before its step whenever another model set them last.
"""

import weakref

# The optimizer whose parameters last set the layers' flags (GradientFlags._apply_gradient_flags).
_flags_set_for = [lambda: None]


def forget_flags():
    """The flags are to be set afresh at the next training step (a model was compiled: its
    optimizer may now hold other parameters)."""
    _flags_set_for[0] = lambda: None


class GradientFlags:
    """The flags' part of fastdl.nn.training.Training: a model with `layers`, `_calls()` and, to
    train, an `optimizer`."""

    def _calls(self):
        """(key, layer, parents' keys) of each layer call in order, the model's input's key None."""
        raise NotImplementedError

    def _gradient_flags(self, trained, needed):
        """Set the flags on the layers (and inside models among them) for a backward pass that fills
        the gradients of the Parameters whose ids are in `trained`, the gradient at this model's
        input needed or not. A layer called twice needs its input's gradient if either call does."""
        learning, flags = {None: needed}, {}  # flags: id(layer) -> [layer, needs input grad, learns]
        for key, layer, parents in self._calls():
            before = any(learning[parent] for parent in parents)
            if id(layer) not in flags:
                flags[id(layer)] = [layer, False, any(id(p) in trained for _, p in layer.parameters())]
            flags[id(layer)][1] |= before
            learning[key] = before or flags[id(layer)][2]
        for layer, need, learns in flags.values():
            layer.needs_input_grad, layer.needs_weight_grads = need, learns
            if isinstance(layer, GradientFlags):
                layer._gradient_flags(trained, need)

    def _default_gradient_flags(self):
        """The flags for training every parameter, as a model has them when it is built."""
        self._gradient_flags({id(p) for layer in self.layers for _, p in layer.parameters()}, False)
        forget_flags()

    def _call_gradient_flags(self):
        """The flags for a call in training mode outside fit: as this model's training step sets
        them (its optimizer's parameters; before compile, those of the layers not frozen)."""
        optimizer = getattr(self, "optimizer", None)
        if optimizer is not None and optimizer.attached:
            self._apply_gradient_flags()
            return
        self._gradient_flags({id(p) for _, p in self.trainable_parameters()}, False)
        forget_flags()

    def _apply_gradient_flags(self):
        """Before a training step's forward pass: the flags for this model's optimizer, unless they
        are already set for it."""
        if _flags_set_for[0]() is self.optimizer:
            return
        self._gradient_flags({id(p) for p in self.optimizer.params}, False)
        _flags_set_for[0] = weakref.ref(self.optimizer)
