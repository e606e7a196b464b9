"""Custom Keras layers of SingleHDR, all lowered to TFLite builtin ops (no Flex, no 5-D tensors).

Every layer stores each ``__init__`` argument and returns it from ``get_config()`` (keras-hub style).
The fixed filters (Sobel, histogram bins, the curve's hat functions) are constants built from those
arguments, never trainable weights.
"""

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from models.mqn.layers import EdgePad, pq_encode_tf
from models.singlehdr.basis import KNOTS, response_basis

SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
"""Sobel's horizontal derivative kernel; its transpose is the vertical one."""


@keras.saving.register_keras_serializable(package="singlehdr")
class Sobel(keras.layers.Layer):
    """Horizontal and vertical Sobel responses of each channel (N x H x W x C -> N x H x W x 2C).

    The paper's linearization reads edges (Sobel) and colour histograms: a response curve shows in how edges
    of one scene change across intensities. One DEPTHWISE_CONV_2D over an edge-replicated frame.
    """

    def __init__(self, channels: int = 3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.channels = channels
        self.pad = EdgePad()

    def build(self, input_shape: Any) -> None:
        """The padding layer has no weights; build it with this one."""
        self.pad.build(input_shape)

    def call(self, x: Any) -> Any:
        """Edge responses, channel ``c`` at ``2c`` (x) and ``2c + 1`` (y)."""
        kx = np.array(SOBEL_X, np.float32)
        kernel = np.stack([kx, kx.T], axis=-1)[:, :, None, :] / 8.0  # 3 x 3 x 1 x 2
        kernel = np.tile(kernel, (1, 1, self.channels, 1))
        return tf.nn.depthwise_conv2d(self.pad(x), tf.constant(kernel), (1, 1, 1, 1), "VALID")

    def get_config(self) -> dict[str, Any]:
        """Round-trippable config."""
        return {**super().get_config(), "channels": self.channels}


def _expand_kernel(channels: int, copies: int, scale: float) -> tf.Tensor:
    """1x1 kernel copying each of ``channels`` inputs ``copies`` times, times ``scale`` (C -> C * copies)."""
    k = np.zeros((1, 1, channels, channels * copies), np.float32)
    for c in range(channels):
        k[0, 0, c, c * copies : (c + 1) * copies] = scale
    return tf.constant(k)


@keras.saving.register_keras_serializable(package="singlehdr")
class SoftHistogram(keras.layers.Layer):
    """Per pixel, its membership of ``bins`` intensity bins per channel (the paper's spatial-aware histogram).

    h(c, b) = max(0, 1 - |x_c - (2b - 1) / 2B| * B): a soft, differentiable histogram vote that stays in
    place, so the convolutions after it see where in the frame each intensity occurs. One 1x1 CONV_2D
    (copies and centres), ABS, SUB and RELU.
    """

    def __init__(self, bins: int = 8, channels: int = 3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bins = bins
        self.channels = channels

    def call(self, x: Any) -> Any:
        """N x H x W x C in [0, 1] -> N x H x W x C * bins memberships."""
        b = self.bins
        centres = np.tile((2.0 * np.arange(1, b + 1) - 1.0) / (2.0 * b), self.channels).astype(np.float32)
        d = tf.nn.conv2d(x, _expand_kernel(self.channels, b, float(b)), 1, "VALID") - centres * b
        return tf.nn.relu(1.0 - tf.abs(d))

    def get_config(self) -> dict[str, Any]:
        """Round-trippable config."""
        return {**super().get_config(), "bins": self.bins, "channels": self.channels}


@keras.saving.register_keras_serializable(package="singlehdr")
class ResponseCurve(keras.layers.Layer):
    """PCA weights -> a monotone inverse response, as its ``KNOTS - 1`` non-negative increments summing to 1.

    curve = mean + weights @ basis, then, as the paper keeps it monotone: differences, ReLU (plus ``eps``:
    never flat, so invertible), normalised by their sum, so the curve runs from 0 to 1. Zero weights give the
    family's mean curve. The mean and the basis are the layer's non-trainable weights, initialised from
    :func:`models.singlehdr.basis.response_basis`: saved with the model and baked into its LiteRT graph, so a
    trained model keeps its basis even if the synthesis curves it was built from change later.
    """

    def __init__(self, components: int = 11, eps: float = 1e-4, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.components = components
        self.eps = eps

    def build(self, input_shape: Any) -> None:
        """The basis, as constants of this layer."""
        mean, basis = response_basis(self.components)
        self.mean = self.add_weight(
            shape=(1, KNOTS),
            initializer=keras.initializers.Constant(mean[None].astype(np.float32)),
            trainable=False,
            name="mean",
        )
        self.basis = self.add_weight(
            shape=(self.components, KNOTS),
            initializer=keras.initializers.Constant(basis.astype(np.float32)),
            trainable=False,
            name="basis",
        )

    def call(self, weights: Any) -> Any:
        """N x components -> N x (KNOTS - 1) increments."""
        curve = self.mean + tf.matmul(weights, self.basis)
        steps = tf.nn.relu(curve[:, 1:] - curve[:, :-1]) + self.eps
        return steps / tf.reduce_sum(steps, axis=-1, keepdims=True)

    def get_config(self) -> dict[str, Any]:
        """Round-trippable config."""
        return {**super().get_config(), "components": self.components, "eps": self.eps}


@keras.saving.register_keras_serializable(package="singlehdr")
class ApplyCurve(keras.layers.Layer):
    """Each pixel's code through its frame's piecewise-linear curve (increments from :class:`ResponseCurve`).

    g(x) = sum_k step_k * clip(x * K - k, 0, 1): one 1x1 CONV_2D making the K ramps of each channel, a clip,
    a MUL by the frame's increments (broadcast) and a 1x1 CONV_2D summing each channel's K terms. All 4-D.
    """

    def __init__(self, segments: int = 32, channels: int = 3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.segments = segments
        self.channels = channels

    def call(self, x: Any, steps: Any) -> Any:
        """N x H x W x C codes in [0, 1], N x K increments -> N x H x W x C linear light in [0, 1]."""
        k, c = self.segments, self.channels
        offsets = np.tile(np.arange(k, dtype=np.float32), c)
        ramps = tf.clip_by_value(
            tf.nn.conv2d(x, _expand_kernel(c, k, float(k)), 1, "VALID") - offsets, 0.0, 1.0
        )
        weights = tf.tile(steps, (1, c))[:, None, None, :]
        total = np.zeros((1, 1, c * k, c), np.float32)
        for ch in range(c):
            total[0, 0, ch * k : (ch + 1) * k, ch] = 1.0
        return tf.nn.conv2d(ramps * weights, tf.constant(total), 1, "VALID")

    def get_config(self) -> dict[str, Any]:
        """Round-trippable config."""
        return {**super().get_config(), "segments": self.segments, "channels": self.channels}


@keras.saving.register_keras_serializable(package="singlehdr")
class OverExposureMask(keras.layers.Layer):
    """The paper's soft over-exposure mask: alpha = max(0, max_c I_lin - gamma) / (1 - gamma), gamma 0.95."""

    def __init__(self, gamma: float = 0.95, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gamma = gamma

    def call(self, linear: Any) -> Any:
        """N x H x W x 3 linear light in [0, 1] -> N x H x W x 1 in [0, 1]."""
        peak = tf.reduce_max(linear, axis=-1, keepdims=True)
        return tf.clip_by_value((peak - self.gamma) / (1.0 - self.gamma), 0.0, 1.0)

    def get_config(self) -> dict[str, Any]:
        """Round-trippable config."""
        return {**super().get_config(), "gamma": self.gamma}


@keras.saving.register_keras_serializable(package="singlehdr")
class Dequantize(keras.layers.Layer):
    """clip(x + r, 0, 1): the input codes plus the dequantization U-Net's residual, still code values."""

    def call(self, x: Any, residual: Any) -> Any:
        """Dequantized codes, N x H x W x 3."""
        return tf.clip_by_value(x + residual, 0.0, 1.0)


@keras.saving.register_keras_serializable(package="singlehdr")
class Hallucinate(keras.layers.Layer):
    """H = I_lin + alpha * softplus(u): content added only where the over-exposure mask is on.

    The paper's H = I_lin + alpha * C^-1(I_lin); ``u`` is the hallucination U-Net's output, in units of SDR
    white.
    """

    def call(self, linear: Any, alpha: Any, u: Any) -> Any:
        """Relative light (1.0 = SDR white), N x H x W x 3."""
        return linear + alpha * tf.nn.softplus(u)


@keras.saving.register_keras_serializable(package="singlehdr")
class RelativeToPQ(keras.layers.Layer):
    """Relative light (1.0 = ``white_nits``) -> PQ code of absolute light, clipped at ``peak_nits``."""

    def __init__(self, white_nits: float = 203.0, peak_nits: float = 1000.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.white_nits = white_nits
        self.peak_nits = peak_nits

    def call(self, relative: Any) -> Any:
        """PQ code in [0, PQ(peak)], same shape."""
        return pq_encode_tf(tf.clip_by_value(relative * self.white_nits, 0.0, self.peak_nits))

    def get_config(self) -> dict[str, Any]:
        """Round-trippable config."""
        return {**super().get_config(), "white_nits": self.white_nits, "peak_nits": self.peak_nits}


@keras.saving.register_keras_serializable(package="singlehdr")
class AnchoredLogit(keras.layers.Layer):
    """logit(clip(h / ``pq_peak``, eps, 1 - eps)) + z: the refinement's output, as a logit of the PQ range.

    ``h`` is the PQ of the hallucinated image and ``z`` the refinement U-Net's (zero-initialised) output, so
    an untrained refinement passes the stage before it through. The runtime turns the logit into light by
    the same output stage as ``expandnet`` (:func:`service.operators.expandnet.offsets_to_nits`); training
    takes ``pq_peak * sigmoid`` of it. LOG and SUB only: LiteRT has no LOG1P builtin.
    """

    def __init__(self, pq_peak: float, eps: float = 1e-4, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pq_peak = pq_peak
        self.eps = eps

    def call(self, h_pq: Any, z: Any) -> Any:
        """Logit, N x H x W x 3."""
        p = tf.clip_by_value(h_pq / self.pq_peak, self.eps, 1.0 - self.eps)
        return tf.math.log(p) - tf.math.log(1.0 - p) + z

    def get_config(self) -> dict[str, Any]:
        """Round-trippable config."""
        return {**super().get_config(), "pq_peak": self.pq_peak, "eps": self.eps}
