"""Custom Keras layers of ExpandNet, all lowered to TFLite builtin ops that quantize to int8.

Every layer stores each ``__init__`` argument and returns it from ``get_config()`` (keras-hub style).
"""

from typing import Any

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="expandnet")
class ReplicatePad(keras.layers.Layer):
    """Pad H and W by ``pad`` pixels that repeat the edge, once, on the input frame.

    The paper zero-pads every convolution. Zero padding tells a network where the frame ends, and MQN's
    first model answered by darkening borders; padding the 3-channel input once by the branches' whole
    receptive radius and running ``valid`` convolutions makes a border pixel see more of the same picture.
    One CONCATENATION per axis on 3 channels costs far less than padding every full-resolution feature map.
    """

    def __init__(self, pad: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pad = pad

    def call(self, x: Any) -> Any:
        """Pad NHWC spatially by ``pad`` repeated edge pixels."""
        n = self.pad
        x = tf.concat([x[:, :1]] * n + [x] + [x[:, -1:]] * n, axis=1)
        return tf.concat([x[:, :, :1]] * n + [x] + [x[:, :, -1:]] * n, axis=2)

    def get_config(self) -> dict[str, Any]:
        """Round-trippable config."""
        return {**super().get_config(), "pad": self.pad}


@keras.saving.register_keras_serializable(package="expandnet")
class BroadcastAdd(keras.layers.Layer):
    """``x + v``: one N x 1 x 1 x C vector per frame added at every pixel of N x H x W x C features.

    ExpandNet concatenates the global feature vector, copied to every pixel, to the local and dilated
    features and fuses them with a 1x1 convolution. That convolution is linear, so its global part is the
    same vector at every pixel: computing it once on the vector and adding it (ADD with broadcasting)
    is the same function without a full-resolution copy of the global features.
    """

    def call(self, x: Any, v: Any) -> Any:
        """Add the per-frame vector at every pixel."""
        return x + v


SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805
"""Klambauer et al., "Self-Normalizing Neural Networks", NeurIPS 2017, eq. (2)."""


@keras.saving.register_keras_serializable(package="expandnet")
class SELU(keras.layers.Layer):
    """SELU written as ``scale * leaky_relu(elu(x), alpha)``: the same function, in ops XNNPACK runs in int8.

    ``elu(x)`` is ``x`` above 0 and ``exp(x) - 1`` below; a leaky ReLU with slope ``alpha`` scales only that
    negative part, so the product is SELU exactly. Keras' own ``selu`` lowers to EXP, GREATER, SELECT_V2, MUL
    and SUB, which XNNPACK does not take: the int8 model then ran 1.4 s at 720p instead of (see model card).
    """

    def call(self, x: Any) -> Any:
        """SELU, elementwise."""
        return SELU_SCALE * tf.nn.leaky_relu(tf.nn.elu(x), alpha=SELU_ALPHA)


@keras.saving.register_keras_serializable(package="expandnet")
class DilatedConv2D(keras.layers.Conv2D):
    """A ``valid`` Conv2D whose dilation is the Conv2D op's own attribute (CONV_2D with dilation factors).

    Keras lowers dilation through SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND, and with a free input size the
    converter cannot fold those back into one CONV_2D: shape arithmetic (SHAPE, FLOOR_MOD, PACK) stays in the
    graph and XNNPACK does not take it.
    """

    def convolution_op(self, inputs: Any, kernel: Any) -> Any:
        """``tf.nn.conv2d`` with ``dilations``: one Conv2D node."""
        return tf.nn.conv2d(
            inputs, kernel, strides=self.strides, padding="VALID", dilations=self.dilation_rate
        )
