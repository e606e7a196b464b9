"""Custom Keras layers of the region-map ConvLSTM, all lowered to TFLite builtin ops (no Flex, no 5-D).

Every layer stores each ``__init__`` argument and returns it from ``get_config()`` (keras-hub style). None has
trainable weights: the convolutions are plain Keras ``Conv2D`` layers (:mod:`models.region_lstm.model`).
"""

from typing import Any

import keras
import tensorflow as tf

from models.mqn.layers import pq_decode_tf, pq_encode_tf
from service.operators.region_lstm import REGIONS

SHARPNESS = 4.0 * 255.0
"""Slope of the region ramps: every code value is half a code from a bound or more, so exactly 0 or 1."""
MID_GREY = 0.18
"""Display light (1.0 = SDR white) that the inverse S-curve keeps where BT.2408 puts it (Reinhard's key)."""


@keras.saving.register_keras_serializable(package="region_lstm")
class RegionMaps(keras.layers.Layer):
    """Frame and bounds -> the ``regions`` region maps, brightest first (N x H x W x 3 -> N x H x W x 3N).

    The twin of :func:`service.operators.region_lstm.region_maps` on float codes: region of code x in channel
    c is the number of bounds below it; step_k = clip((x - b_k) * ``SHARPNESS``, 0, 1) is exactly 0 or 1
    (bounds sit half a code between code values), and map n is x * (step_(n-1) - step_n). TILE, SUB, MUL,
    clip and slices.
    """

    def __init__(self, regions: int = REGIONS, channels: int = 3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.regions = regions
        self.channels = channels

    def call(self, x: Any, bounds: Any) -> Any:
        """N x H x W x C codes in [0, 1], N x 1 x 1 x (regions - 1) * C bounds -> N x H x W x regions * C."""
        c, k = self.channels, self.regions - 1
        steps = tf.clip_by_value((tf.tile(x, (1, 1, 1, k)) - bounds) * SHARPNESS, 0.0, 1.0)
        above = [steps[..., c * j : c * (j + 1)] for j in range(k)]  # above bound j: region > j
        maps = [x * above[-1]]
        maps += [x * (above[j - 1] - above[j]) for j in range(k - 1, 0, -1)]
        maps.append(x * (1.0 - above[0]))
        return tf.concat(maps, axis=-1)

    def get_config(self) -> dict[str, Any]:
        """Round-trippable config."""
        return {**super().get_config(), "regions": self.regions, "channels": self.channels}


@keras.saving.register_keras_serializable(package="region_lstm")
class PseudoHDR(keras.layers.Layer):
    """The inverse Reinhard S-curve of SParam-Net's parameters, anchored on mid-grey, in PQ of absolute light.

    The paper maps display light d to world light by the inverse of Reinhard's extended operator
    d = L (1 + L / W²) / (1 + L), L = α L_w / L̄_w, with its parameters L'max and the white points (R, G, B)
    from SParam-Net and the scale α / L̄_w from the image's log-average. Here the scale is fixed by the
    convention instead of the image: mid-grey m (``mid_grey`` of SDR white) maps to itself. Per channel,
    SParam-Net's four logits give the expansion of SDR white, E_c = 1 + (E_max - 1) * sigmoid(p_0 + p_c)
    (p_0: the common L'max, p_c: the channel's white point), bounded in [1, E_max = ``peak_nits`` /
    ``white_nits``]. The curve with f(m) = m and f(1) = E_c has the key k = (1 - m / E²) / (1 - m) and the
    white W = E k, and is f(d) = L(d) / k with L(d) the inverse operator
    L = 2d / (sqrt((1 - d)² + 4d / W²) + (1 - d)) (the rationalised root: no cancellation near d = 0).
    E = 1 is the identity (``bt2408``); f is monotone with f(0) = 0.
    """

    def __init__(
        self,
        white_nits: float = 203.0,
        peak_nits: float = 1000.0,
        mid_grey: float = MID_GREY,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.white_nits = white_nits
        self.peak_nits = peak_nits
        self.mid_grey = mid_grey

    def expansion(self, curve: Any) -> Any:
        """N x 4 logits -> N x 1 x 1 x 3 expansion of SDR white per channel, in [1, E_max]."""
        e_max = self.peak_nits / self.white_nits
        e = 1.0 + (e_max - 1.0) * tf.sigmoid(curve[:, :1] + curve[:, 1:])
        return tf.reshape(e, (-1, 1, 1, 3))

    def call(self, anchor_pq: Any, curve: Any) -> Any:
        """N x H x W x 3 PQ of the BT.2408 placement, N x 4 logits -> N x H x W x 3 PQ of the pseudo-HDR."""
        m = self.mid_grey
        d = tf.clip_by_value(pq_decode_tf(anchor_pq) / self.white_nits, 0.0, 1.0)
        e = self.expansion(curve)
        k = (1.0 - m / (e * e)) / (1.0 - m)
        inv_w2 = 1.0 / tf.square(e * k)
        one_minus = 1.0 - d
        light = 2.0 * d / (tf.sqrt(one_minus * one_minus + 4.0 * d * inv_w2) + one_minus)
        return pq_encode_tf(tf.clip_by_value(light / k * self.white_nits, 0.0, self.peak_nits))

    def get_config(self) -> dict[str, Any]:
        """Round-trippable config."""
        return {
            **super().get_config(),
            "white_nits": self.white_nits,
            "peak_nits": self.peak_nits,
            "mid_grey": self.mid_grey,
        }


@keras.saving.register_keras_serializable(package="region_lstm")
class LSTMGates(keras.layers.Layer):
    """One ConvLSTM update from its gate pre-activations: (gates, c) -> (h, c'), i, f, g, o in that order.

    c' = sigmoid(f) c + sigmoid(i) tanh(g), h = sigmoid(o) tanh(c') (Shi et al. 2015 without peepholes);
    without ``c`` (the first step, zero state) c' = sigmoid(i) tanh(g). SPLIT, LOGISTIC, TANH, MUL, ADD.
    """

    def call(self, gates: Any, c: Any = None) -> Any:
        """N x H x W x 4C pre-activations (and N x H x W x C cell) -> (hidden, cell), N x H x W x C each."""
        i, f, g, o = tf.split(gates, 4, axis=-1)
        cell = tf.sigmoid(i) * tf.tanh(g)
        if c is not None:
            cell = tf.sigmoid(f) * c + cell
        return tf.sigmoid(o) * tf.tanh(cell), cell


@keras.saving.register_keras_serializable(package="region_lstm")
class Crop(keras.layers.Layer):
    """Drop ``pixels`` rows and columns on every side (after a deconvolution of an edge-padded input)."""

    def __init__(self, pixels: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pixels = pixels

    def call(self, x: Any) -> Any:
        """N x H x W x C -> N x (H - 2p) x (W - 2p) x C."""
        p = self.pixels
        return x[:, p:-p, p:-p, :]

    def get_config(self) -> dict[str, Any]:
        """Round-trippable config."""
        return {**super().get_config(), "pixels": self.pixels}


@keras.saving.register_keras_serializable(package="region_lstm")
class AnchorOffset(keras.layers.Layer):
    """logit(pseudo / ``pq_peak``) - logit(anchor / ``pq_peak``) + z: the output as an offset from BT.2408.

    ``z`` is the decoder's correction (zero at initialisation: the model starts at the pseudo-HDR image).
    The operator adds the offset to the frame's own BT.2408 logits (``expandnet``'s output stage); training
    takes ``pq_peak * sigmoid(logit(anchor) + offset)`` of it (``models.expandnet.model.AnchoredSigmoid``).
    Both logits are clipped to [eps, 1 - eps] as the operator clips its anchor. LOG and SUB only.
    """

    def __init__(self, pq_peak: float, eps: float = 1e-4, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pq_peak = pq_peak
        self.eps = eps

    def logit(self, pq: Any) -> Any:
        """Logit of a PQ code as a fraction of the sigmoid's range."""
        p = tf.clip_by_value(pq / self.pq_peak, self.eps, 1.0 - self.eps)
        return tf.math.log(p) - tf.math.log(1.0 - p)

    def call(self, pseudo_pq: Any, anchor_pq: Any, z: Any) -> Any:
        """Offsets, N x H x W x 3."""
        return self.logit(pseudo_pq) - self.logit(anchor_pq) + z

    def get_config(self) -> dict[str, Any]:
        """Round-trippable config."""
        return {**super().get_config(), "pq_peak": self.pq_peak, "eps": self.eps}
