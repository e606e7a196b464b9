"""Custom Keras layers of MQN, all lowered to TFLite *builtin* ops (no Flex / SELECT_TF_OPS).

Every layer stores each ``__init__`` argument and returns it from ``get_config()`` so that saved models
round-trip (keras-hub style).
"""

from typing import Any

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="mqn")
class ResizeLike(keras.layers.Layer):
    """Bilinear resize of ``x`` to the spatial size of ``like``.

    Keras 3.15's ``UpSampling2D(interpolation="bilinear")`` cannot trace with unknown H/W; resizing to the
    skip tensor's own size also lifts the "H and W divisible by 32" constraint of a U-Net with strides.
    """

    def call(self, x: Any, like: Any) -> Any:
        """Resize ``x`` (NHWC) to ``like``'s H x W."""
        return tf.image.resize(x, tf.shape(like)[1:3], method="bilinear")


@keras.saving.register_keras_serializable(package="mqn")
class ToUnit(keras.layers.Layer):
    """uint8 code values -> float32 in [0, 1] (CAST + MUL in TFLite), so callers can pass raw pixels."""

    def call(self, x: Any) -> Any:
        """Cast and scale."""
        return tf.cast(x, tf.float32) * (1.0 / 255.0)


@keras.saving.register_keras_serializable(package="mqn")
class InstanceNorm(keras.layers.Layer):
    """Instance normalisation (per frame, per channel) from mean/variance reductions.

    Written with builtin ops so the head converts without Flex (the authors' head used a TF-Addons op).
    Statistics are per frame, so batch mates never influence each other.
    """

    def __init__(self, epsilon: float = 1e-3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape: Any) -> None:
        """Per-channel affine parameters."""
        c = int(input_shape[-1])
        self.gamma = self.add_weight(shape=(c,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(c,), initializer="zeros", name="beta")

    def call(self, x: Any) -> Any:
        """Normalise over H and W."""
        mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
        centred = x - mean
        var = tf.reduce_mean(tf.square(centred), axis=[1, 2], keepdims=True)
        return centred * tf.math.rsqrt(var + self.epsilon) * self.gamma + self.beta

    def get_config(self) -> dict[str, Any]:
        """Round-trippable config."""
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="mqn")
class ChannelAttention(keras.layers.Layer):
    """Squeeze-and-excitation channel attention: GAP -> 1x1 (C*ratio) -> ReLU -> 1x1 (C) -> sigmoid -> x*."""

    def __init__(self, ratio: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ratio = ratio

    def build(self, input_shape: Any) -> None:
        """Two 1x1 convolutions on the pooled descriptor."""
        c = int(input_shape[-1])
        self.squeeze = keras.layers.Conv2D(max(1, int(c * self.ratio)), 1, activation="relu", name="squeeze")
        self.excite = keras.layers.Conv2D(c, 1, activation="sigmoid", name="excite")
        self.squeeze.build((None, 1, 1, c))
        self.excite.build((None, 1, 1, max(1, int(c * self.ratio))))

    def call(self, x: Any) -> Any:
        """Reweight channels by their global context."""
        return x * self.excite(self.squeeze(tf.reduce_mean(x, axis=[1, 2], keepdims=True)))

    def get_config(self) -> dict[str, Any]:
        """Round-trippable config."""
        return {**super().get_config(), "ratio": self.ratio}


@keras.saving.register_keras_serializable(package="mqn")
class SpatialAttention(keras.layers.Layer):
    """CBAM-style spatial attention: [mean_c, max_c] -> k x k conv -> sigmoid -> x*."""

    def __init__(self, kernel_size: int = 7, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kernel_size = kernel_size

    def build(self, input_shape: Any) -> None:
        """One k x k convolution on the two pooled maps."""
        self.conv = keras.layers.Conv2D(
            1, self.kernel_size, padding="same", activation="sigmoid", name="conv"
        )
        self.conv.build((None, None, None, 2))

    def call(self, x: Any) -> Any:
        """Reweight positions by their cross-channel statistics."""
        pooled = tf.concat(
            [tf.reduce_mean(x, axis=-1, keepdims=True), tf.reduce_max(x, axis=-1, keepdims=True)], axis=-1
        )
        return x * self.conv(pooled)

    def get_config(self) -> dict[str, Any]:
        """Round-trippable config."""
        return {**super().get_config(), "kernel_size": self.kernel_size}


@keras.saving.register_keras_serializable(package="mqn")
class ResidualBound(keras.layers.Layer):
    """Output stage: ``clip(base + scale * residual, 0, upper)`` in the PQ domain.

    ``base`` is the BT.2408 placement of the SDR (see :mod:`models.mqn.convention`), so the network learns
    only the expansion; the clip is the bounded activation that keeps output inside [black, peak].
    """

    def __init__(self, scale: float = 0.25, upper: float = 0.7518, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scale = scale
        self.upper = upper

    def call(self, residual: Any, base: Any) -> Any:
        """Add the scaled residual to the base and bound the result."""
        return tf.clip_by_value(base + self.scale * residual, 0.0, self.upper)

    def get_config(self) -> dict[str, Any]:
        """Round-trippable config."""
        return {**super().get_config(), "scale": self.scale, "upper": self.upper}
