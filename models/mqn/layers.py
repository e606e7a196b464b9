"""Custom Keras layers of MQN, all lowered to TFLite *builtin* ops (no Flex / SELECT_TF_OPS).

Every layer stores each ``__init__`` argument and returns it from ``get_config()`` so that saved models
round-trip (keras-hub style).
"""

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from service.colour import pq
from service.colour.pq import eotf_inverse_st2084
from service.colour.primaries import PRIMARIES_BT709, PRIMARIES_BT2020, matrix_rgb_to_rgb
from service.colour.scaling import SDR_WHITE_NITS
from service.colour.ycbcr import LUMA_BT709
from service.operators.curve_grid import NEAR_WHITE, PEAK_CONTRAST, PEAK_RADIUS_DIVISOR, SATURATION_RANGE


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
class EdgePad(keras.layers.Layer):
    """Pad H and W by one pixel that repeats the edge (what a 3x3 convolution reads past the border).

    Every 3x3 convolution of the backbone reads this instead of zero padding. Zero padding tells the
    network where the frame ends, and the old model answered by darkening the borders (20-49 % on a flat
    field); a repeated edge looks like more of the same picture, so a flat field stays exactly flat to the
    edge and a vertical gradient keeps each row uniform. Written as SLICE + CONCATENATION rather than
    ``tf.pad(mode="SYMMETRIC")``: LiteRT's MIRROR_PAD is not delegated to XNNPACK and made the int8 backbone
    18x slower (17.9 ms against 1.0 ms at 256x144, one thread).
    """

    def call(self, x: Any) -> Any:
        """Pad NHWC spatially by one repeated edge pixel."""
        x = tf.concat([x[:, :1], x, x[:, -1:]], axis=1)
        return tf.concat([x[:, :, :1], x, x[:, :, -1:]], axis=2)


@keras.saving.register_keras_serializable(package="mqn")
class ToUnit(keras.layers.Layer):
    """uint8 code values -> float32 in [0, 1] (CAST + MUL in TFLite), so callers can pass raw pixels."""

    def call(self, x: Any) -> Any:
        """Cast and scale."""
        return tf.cast(x, tf.float32) * (1.0 / 255.0)


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


TAIL_DARK_CODES = (0.02, 0.05, 0.1, 0.2)
"""Luma codes whose shares :class:`GlobalStats` counts below: ~0.02, 0.16, 0.8 and 4 cd/m² of SDR display
light at 203 white, a stop apart or more, where the toes of the camera curves differ."""
TAIL_CLIPPED_CODES = (0.97, 0.99)
"""Codes whose shares :class:`GlobalStats` counts above, in the brightest and in the darkest channel."""
TAIL_FEATURES = len(TAIL_DARK_CODES) + 2 * len(TAIL_CLIPPED_CODES)


@keras.saving.register_keras_serializable(package="mqn")
class GlobalStats(keras.layers.Layer):
    """One vector per frame: pooled backbone features and soft histograms of the frame's own SDR.

    Which inverse camera curve an SDR frame needs is mostly a property of the whole frame (how it was
    exposed, how hard its highlights were compressed or clipped), and the local curves got it wrong per
    image: a single per-image monotone correction of v2's output would have lifted its validation
    PU21-PSNR from 30.1 to 35.8 dB. HDRNet has a global path for the same reason. The histograms (luma and
    brightest channel of the non-linear code values, ``bins`` triangular bins each, scaled to mean 1) say
    directly how much of the frame sits at or near clipping, which 16x downsampled features blur. Per frame
    only: nothing is shared across a batch. Builtin ops only (MEAN, SUB, ABS, RELU, MINIMUM, CONCATENATION).

    With ``tails`` it also gives the shares of pixels in the two tails where camera curves differ most and
    the bins (1/15 of the code range apart) are blind: luma below log-spaced dark codes (how hard the toe
    crushed; code 0.067, the first bin's reach, is already 0.3 cd/m² at 203 white) and brightest / darkest
    channel at the clip (a hard clip piles pixels on 1.0, a soft shoulder does not; a triangular top bin
    counts both alike). ``mqn_v25`` lifts the shadows of clipped and filmic views alike; ``mqn_v26`` and
    ``mqn_v27``, trained with the tails, did no better on held-out views (model card), and no shipped model
    reads them.
    Inputs: features N x h x w x C, sdr N x H x W x 3 in [0, 1]. Output: N x (C + 2 * bins [+ TAIL_FEATURES]).
    """

    def __init__(self, bins: int = 16, tails: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bins = bins
        self.tails = tails
        self._centres = tf.constant(np.linspace(0.0, 1.0, bins, dtype=np.float32))

    @staticmethod
    def _share(v: Any, edge: float, above: bool) -> Any:
        """Share of pixels past ``edge``: a ramp half a code wide, a step without CAST or compare ops."""
        ramp = (v - edge) if above else (edge - v)
        return tf.reduce_mean(tf.minimum(tf.nn.relu(ramp * 512.0), 1.0), axis=[1, 2])

    def _tails(self, luma: Any, brightest: Any, darkest: Any) -> Any:
        """Shares of pixels in the tails the triangular bins blur: ``TAIL_FEATURES`` values."""
        low = [self._share(luma, edge, above=False) for edge in TAIL_DARK_CODES]
        high = [self._share(brightest, edge, above=True) for edge in TAIL_CLIPPED_CODES]
        white = [self._share(darkest, edge, above=True) for edge in TAIL_CLIPPED_CODES]
        return tf.concat(low + high + white, axis=-1)

    def _histogram(self, v: Any) -> Any:
        weights = tf.nn.relu(1.0 - tf.abs(v - self._centres) * float(self.bins - 1))
        return tf.reduce_mean(weights, axis=[1, 2]) * float(self.bins)

    def call(self, features: Any, sdr: Any) -> Any:
        """Concatenate pooled features with the luma and max-channel histograms."""
        luma = tf.reduce_sum(sdr * tf.constant(LUMA_BT709, tf.float32), axis=-1, keepdims=True)
        brightest = tf.reduce_max(sdr, axis=-1, keepdims=True)
        pooled = tf.reduce_mean(features, axis=[1, 2])
        parts = [pooled, self._histogram(luma), self._histogram(brightest)]
        if self.tails:
            parts.append(self._tails(luma, brightest, tf.reduce_min(sdr, axis=-1, keepdims=True)))
        return tf.concat(parts, axis=-1)

    def get_config(self) -> dict[str, Any]:
        """Round-trippable config."""
        return {**super().get_config(), "bins": self.bins, "tails": self.tails}


def knot_codes(knots_nits: tuple[float, ...]) -> np.ndarray:
    """PQ codes of the curve's input knots (cd/m² of the BT.2408 placement), float32."""
    return np.asarray(eotf_inverse_st2084(np.asarray(knots_nits, np.float64)), np.float32)


@keras.saving.register_keras_serializable(package="mqn")
class CurveKnots(keras.layers.Layer):
    """Per-cell log-slopes -> output PQ at each input knot: a monotone tone curve per grid cell.

    Segment ``k`` of the curve rises by ``exp(s_k)`` times the rise of the identity (the BT.2408 placement)
    over the same segment, so every curve is strictly increasing whatever the network predicts, and a zero
    prediction *is* the BT.2408 placement. ``s`` is clipped to ``[-4, max_log_slope]``: steep enough to lift
    SDR white to the 1000 cd/m² peak over the last, narrow segment. Output: N x h x w x K values at knots
    1..K (knot 0, black, stays at 0).

    With ``toe_knots`` T the curves' first T knots are the placement's, whatever the slopes say (every knot
    after them at least as high as the last pinned one, so the curve stays monotone): shadows stay where the
    SDR put them. Which camera curve crushed a frame's shadows the network cannot tell (model card,
    ``mqn_v26``/``v27``), so it lifts every frame's shadows by about the training views' mean toe, +0.4 to
    +1.2 stops on real video. Measured on ``mqn_v25``'s weights pinned at 1 and 3 cd/m² (``mqn_v30``): the
    held-out scene-light references lose more than they gain (640×360 +0.09 dB, 1280×720 −0.40 dB,
    validation −0.71 dB), so no shipped model pins its toe.

    With ``toe_shape_nits`` the segments up to that input light take their *shares* of the toe's rise from
    extra inputs (shape logits, appended last, one per toe segment), and their total rise from the slopes
    as before: the shape moves the darkest codes and nothing from the toe's top knot up. In the plain form
    a steeper first segment lifts every knot above it, so the training pulls the frame's level through it,
    not the toe's shape (model card, ``mqn_v46``). Zero logits give the plain curves exactly.
    """

    def __init__(
        self,
        knots_nits: tuple[float, ...] = (0.0, 1.0),
        max_log_slope: float = 3.5,
        paired: bool = False,
        toe_knots: int = 0,
        toe_shape_nits: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.knots_nits = tuple(float(k) for k in knots_nits)
        self.max_log_slope = max_log_slope
        self.paired = paired
        self.toe_knots = toe_knots
        self.toe_shape_nits = float(toe_shape_nits)
        codes = knot_codes(self.knots_nits)
        widths = np.diff(codes)
        if not 0 <= toe_knots < len(widths):
            raise ValueError(f"toe_knots must be in [0, {len(widths) - 1}], got {toe_knots}")
        self.toe_segments = toe_shape_segments(self.knots_nits, self.toe_shape_nits)
        self._widths = tf.constant(widths, tf.float32)
        self._log_toe_widths = tf.constant(np.log(widths[: self.toe_segments]), tf.float32)
        # Upper-triangular ones: cumulative sum as one matmul (BATCH_MATMUL / FULLY_CONNECTED builtins).
        self._tri = tf.constant(np.triu(np.ones((len(widths), len(widths)), np.float32)))
        self._toe = tf.constant(np.cumsum(widths)[:toe_knots], tf.float32)

    def _pinned(self, curve: Any) -> Any:
        """``curve`` with its first ``toe_knots`` knots on the placement and none after them below those."""
        if not self.toe_knots:
            return curve
        toe = tf.zeros_like(curve[..., : self.toe_knots]) + self._toe
        return tf.concat([toe, tf.maximum(curve[..., self.toe_knots :], self._toe[-1])], axis=-1)

    def call(self, log_slopes: Any) -> Any:
        """Cumulative rises of the segments (``paired``: then the peak curve, the base plus its own rises)."""
        k = len(self.knots_nits) - 1
        slopes = tf.clip_by_value(log_slopes[..., :k], -4.0, self.max_log_slope)
        rises = tf.exp(slopes) * self._widths
        if self.toe_segments:
            rises = self._reshaped_toe(rises, slopes, log_slopes[..., -self.toe_segments :])
        base = tf.tensordot(rises, self._tri, axes=[[3], [0]])
        if not self.paired:
            return self._pinned(base)
        # Extra rises may be ~0: the peak curve is the base curve plus a non-negative, rising difference.
        extra = tf.exp(tf.clip_by_value(log_slopes[..., k : 2 * k], -12.0, self.max_log_slope)) * self._widths
        peak = base + tf.tensordot(extra, self._tri, axes=[[3], [0]])
        return tf.concat([self._pinned(base), self._pinned(peak)], axis=-1)

    def _reshaped_toe(self, rises: Any, slopes: Any, shape: Any) -> Any:
        """``rises`` with the toe's total rise shared out by softmax(slope + log width + shape logit)."""
        t = self.toe_segments
        total = tf.reduce_sum(rises[..., :t], axis=-1, keepdims=True)
        shares = tf.nn.softmax(slopes[..., :t] + self._log_toe_widths + shape, axis=-1)
        return tf.concat([total * shares, rises[..., t:]], axis=-1)

    def get_config(self) -> dict[str, Any]:
        """Round-trippable config."""
        return {
            **super().get_config(),
            "knots_nits": list(self.knots_nits),
            "max_log_slope": self.max_log_slope,
            "paired": self.paired,
            "toe_knots": self.toe_knots,
            "toe_shape_nits": self.toe_shape_nits,
        }


def toe_shape_segments(knots_nits: tuple[float, ...], below_nits: float) -> int:
    """How many curve segments end at or below ``below_nits`` (the toe whose shape is learnt apart).

    Raises
    ------
    ValueError
        If ``below_nits`` is set but takes fewer than two segments: a toe of one segment has no shape.
    """
    if not below_nits:
        return 0
    count = sum(1 for nits in knots_nits[1:] if nits <= below_nits)
    if count < 2:
        raise ValueError(f"toe_shape_nits {below_nits} spans {count} curve segment(s); it needs at least 2")
    return count


def _repeat_edges(x: Any, pad: Any, axis: int) -> Any:
    first = tf.gather(x, [0], axis=axis)
    last = tf.gather(x, [tf.shape(x)[axis] - 1], axis=axis)
    return tf.concat([tf.repeat(first, pad, axis=axis), x, tf.repeat(last, pad, axis=axis)], axis=axis)


def peak_weight_tf(y: Any, ratio: float = 1.0) -> Any:
    """Training twin of :func:`service.operators.curve_grid.peak_weight` (luminance N x H x W x 1, cd/m²)."""
    rel = tf.clip_by_value(y / SDR_WHITE_NITS, 0.0, 1.0)
    # The radius follows the frame size, which is dynamic in a traced graph: a (2r + 1)² window is r passes
    # of 3 x 3 (VALID, on the frame padded by 2r repeated edge pixels, as the runtime pads it).
    # peak_radius's rounding, in TensorFlow ops.
    short = tf.cast(tf.minimum(tf.shape(y)[1], tf.shape(y)[2]), tf.float32)
    radius = tf.maximum(1, tf.cast(tf.round(short / PEAK_RADIUS_DIVISOR), tf.int32))
    pad = 2 * radius
    padded = _repeat_edges(_repeat_edges(rel, pad, axis=1), pad, axis=2)

    def repeat(x: Any, op: Any) -> Any:
        shape = tf.TensorShape([None, None, None, 1])
        return tf.while_loop(
            lambda i, _: i < radius,
            lambda i, a: (i + 1, op(a)),
            (0, x),
            shape_invariants=(tf.TensorShape([]), shape),
        )[1]

    eroded = repeat(padded, lambda a: -tf.nn.max_pool2d(-a, 3, 1, "VALID"))
    opened = repeat(eroded, lambda a: tf.nn.max_pool2d(a, 3, 1, "VALID"))
    return tf.clip_by_value((rel - ratio * opened) / PEAK_CONTRAST, 0.0, 1.0)


@keras.saving.register_keras_serializable(package="mqn")
class CellStats(keras.layers.Layer):
    """Training twin of :func:`service.operators.cell_stats.cell_stats` (per cell, from the full view).

    Per grid cell, sqrt(mean peak weight) and sqrt(share of pixels at or above ``NEAR_WHITE`` of SDR
    white). Inputs: linear N x H x W x 3 (BT.709, BT.2408 cd/m²) and the backbone's features (for the grid
    size; H and W must be whole multiples of it, as training crops are). Inputs only: no gradient.
    """

    def __init__(self, peak_ratio: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.peak_ratio = peak_ratio

    def call(self, linear: Any, features: Any) -> Any:
        """Block means over each cell's pixels."""
        y = tf.reduce_sum(linear * tf.constant(LUMA_BT709, tf.float32), axis=-1, keepdims=True)
        near = tf.cast(y >= NEAR_WHITE * SDR_WHITE_NITS, tf.float32)
        planes = tf.concat([peak_weight_tf(y, self.peak_ratio), near], axis=-1)
        n, h, w = tf.shape(linear)[0], tf.shape(linear)[1], tf.shape(linear)[2]
        gh, gw = tf.shape(features)[1], tf.shape(features)[2]
        blocks = tf.reshape(planes, [n, gh, h // gh, gw, w // gw, 2])
        return tf.stop_gradient(tf.sqrt(tf.reduce_mean(blocks, axis=[2, 4])))

    def get_config(self) -> dict[str, Any]:
        """Round-trippable config."""
        return {**super().get_config(), "peak_ratio": self.peak_ratio}


def pq_encode_tf(nits: Any) -> Any:
    """cd/m² -> PQ code, differentiable (training only; the runtime uses service/colour/pq.py)."""
    y = tf.pow(tf.clip_by_value(nits / 10000.0, 1e-10, 1.0), pq.M1)
    return tf.pow((pq.C1 + pq.C2 * y) / (1.0 + pq.C3 * y), pq.M2)


def pq_decode_tf(code: Any) -> Any:
    """PQ code -> cd/m², differentiable (the TensorFlow twin of ``pq.eotf_st2084``)."""
    e = tf.pow(tf.clip_by_value(code, 1e-6, 1.0), 1.0 / pq.M2)
    return 10000.0 * tf.pow(tf.maximum(e - pq.C1, 1e-10) / (pq.C2 - pq.C3 * e), 1.0 / pq.M1)


@keras.saving.register_keras_serializable(package="mqn")
class CurveSlice(keras.layers.Layer):
    """Training-time twin of the runtime slicing kernel (``service/operators/mqn.py``).

    Every full-resolution pixel reads the tone curve at its own place (bilinear across grid cells) and its
    own luminance: output luminance = curve(PQ of the BT.2408 luminance), never below ``floor`` times the
    BT.2408 luminance, at most ``peak``. The pixel's linear RGB is scaled by output / input luminance, so its
    chromaticity (hue and saturation) is the SDR's, and lowered together if a channel would pass the peak.
    With ``saturation`` the grid's last two channels move each pixel's colour from (or towards) the white of
    its own luminance (``curve_grid.saturation_factor`` and ``saturate``; the gamut cap in BT.2020, where the
    runtime applies it). Inputs: knots N x h x w x K (PQ at knots 1..K [, log-saturation at black and
    white]), linear N x H x W x 3 (BT.709, BT.2408 cd/m²). Output: cd/m², BT.709.
    """

    def __init__(
        self,
        knots_nits: tuple[float, ...] = (0.0, 1.0),
        floor: float = 0.6,
        peak: float = 1000.0,
        luma: tuple[float, float, float] = LUMA_BT709,
        paired: bool = False,
        peak_ratio: float = 1.0,
        saturation: bool = False,
        saturation_range: tuple[float, float] = SATURATION_RANGE,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.knots_nits = tuple(float(k) for k in knots_nits)
        self.peak_ratio = peak_ratio
        self.saturation = saturation
        self.saturation_range = (float(saturation_range[0]), float(saturation_range[1]))
        self._to_2020 = tf.constant(matrix_rgb_to_rgb(PRIMARIES_BT709, PRIMARIES_BT2020).T, tf.float32)
        self.floor = floor
        self.peak = peak
        self.luma = tuple(luma)
        self.paired = paired
        self._codes = tf.constant(knot_codes(self.knots_nits))

    def call(self, knots: Any, linear: Any) -> Any:
        """Slice the grid at full resolution."""
        y = tf.reduce_sum(linear * tf.constant(self.luma, tf.float32), axis=-1, keepdims=True)
        u = pq_encode_tf(y)
        codes = self._codes
        # Sum of ramps: the piecewise-linear curve is the sum over segments of rise_k * ramp_k(u).
        ramps = tf.clip_by_value((u - codes[:-1]) / (codes[1:] - codes[:-1]), 0.0, 1.0)
        k = len(self.knots_nits) - 1

        def read(curve: Any) -> Any:
            rises = tf.concat([curve[..., :1], curve[..., 1:] - curve[..., :-1]], axis=-1)
            rises = tf.image.resize(rises, tf.shape(linear)[1:3], method="bilinear")
            return tf.reduce_sum(ramps * rises, axis=-1, keepdims=True)

        v = read(knots[..., :k])
        if self.paired:  # the weight is a function of the input alone: nothing to learn through it
            v = v + tf.stop_gradient(peak_weight_tf(y, self.peak_ratio)) * (read(knots[..., k : 2 * k]) - v)
        v = tf.minimum(v, float(eotf_inverse_st2084(self.peak)))
        y_out = tf.maximum(pq_decode_tf(v), self.floor * y)
        rgb = linear * (y_out / tf.maximum(y, 1e-6))
        if self.saturation:
            rgb = self._saturate(rgb, y, y_out, knots[..., k * (2 if self.paired else 1) :], linear)
        over = tf.reduce_max(rgb, axis=-1, keepdims=True)
        return rgb * tf.minimum(1.0, self.peak / tf.maximum(over, 1e-6))

    def _saturate(self, rgb: Any, y: Any, y_out: Any, log_sat: Any, linear: Any) -> Any:
        """``curve_grid.saturate(rgb, saturation_factor(y, pair))``, per pixel, differentiable."""
        # Exponentiated per cell, interpolated as factors (as curve_grid.cell_saturation and the kernel).
        pair = tf.exp(tf.clip_by_value(log_sat, *self.saturation_range))
        pair = tf.image.resize(pair, tf.shape(linear)[1:3], method="bilinear")
        a = tf.sqrt(tf.clip_by_value(y / SDR_WHITE_NITS, 0.0, 1.0))
        factor = pair[..., :1] + (pair[..., 1:] - pair[..., :1]) * a
        low = tf.reduce_min(tf.tensordot(rgb, self._to_2020, axes=[[3], [0]]), axis=-1, keepdims=True)
        factor = tf.minimum(factor, y_out / tf.maximum(y_out - low, 1e-6))
        # Moving towards or away from white is the same in any RGB with a D65 white: BT.709 here.
        return y_out + factor * (rgb - y_out)

    def get_config(self) -> dict[str, Any]:
        """Round-trippable config."""
        return {
            **super().get_config(),
            "saturation": self.saturation,
            "saturation_range": list(self.saturation_range),
            "knots_nits": list(self.knots_nits),
            "floor": self.floor,
            "peak": self.peak,
            "luma": list(self.luma),
            "paired": self.paired,
            "peak_ratio": self.peak_ratio,
        }
