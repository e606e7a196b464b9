"""MQN training loss, in the PQ domain (perceptually uniform: shadows and highlights count alike).

Paper: L1 + L2 + cosine similarity + a VGG16 perceptual term. VGG16 needs ImageNet weights that cannot be
downloaded here, so the perceptual term is replaced by a weights-free structural one (L1 of PQ image
gradients). The cosine (hue) term is gone: the curves keep each pixel's SDR chromaticity by construction.
Terms of our own:

* **highlight weight**: pixels the SDR has (nearly) clipped weigh ``1 + highlight`` times more. They are few
  (often < 1 % of a view), yet they carry the expansion that HDR is bought for; unweighted, the cheapest
  answer is to leave them at SDR white.
* **peak weight** (``peak``, off by default): pixels the peak curve serves (their peak weight, at the model's
  ``peak_ratio``) weigh ``1 + peak`` times more. Light sources in the dark are ~0.1 % of a view; measured on
  ``mqn_v8``, the model put them at 2.7-3.2x the placement where their targets' median is ~5x.
* **shadow weight** (``shadow``, off by default): the same for the SDR's darkest pixels, where the toe of
  the SDR's curve decides how far to lift them.
* **smoothness** of the curve grid across cells (L1 of neighbouring knots): curves that change little from
  cell to cell cannot draw halos, and cells whose own pixels never visit a part of the curve inherit it from
  their neighbours instead of keeping an arbitrary one.
"""

from dataclasses import dataclass
from typing import Any

import tensorflow as tf

from models.mqn.layers import peak_weight_tf, pq_decode_tf, pq_encode_tf
from service.colour.scaling import SDR_WHITE_NITS
from service.colour.ycbcr import LUMA_BT709


@dataclass(frozen=True)
class LossWeights:
    """λ of each term."""

    l1: float = 1.0
    l2: float = 1.0
    gradient: float = 0.5
    highlight: float = 4.0
    smooth: float = 0.05
    highlight_from: float = 0.8
    """Relative SDR light (max channel, 1.0 = white) where the highlight weight ramps up (to 1 at 0.95)."""
    peak: float = 0.0
    shadow: float = 0.0
    """Pixels in the SDR's shadows (relative luminance up to ``shadow_below``, ramping to 0 at twice it) weigh
    ``1 + shadow`` times more (off by default). The references' toe ranges from 0 to +3 stops with the SDR's
    curve; the first grid model (``mqn_v2``) gave every frame nearly the same +0.8 stop at the darkest
    codes, and small errors in dark PQ codes may give little reason to tell the curves apart. Tried as
    ``mqn_v43``: the shadows rose on every view instead (model card, "Where v1's lead at 640×360 is")."""
    shadow_below: float = 0.01
    global_aux: float = 0.0
    """λ of the squared error of the global path's two auxiliary numbers (``MQNConfig.global_aux``)."""


def highlight_mask(linear: Any, w: LossWeights) -> Any:
    """0..1 per pixel: how close the brightest channel of the SDR is to white."""
    rel = tf.reduce_max(linear, axis=-1, keepdims=True) / SDR_WHITE_NITS
    return tf.clip_by_value((rel - w.highlight_from) / (0.95 - w.highlight_from), 0.0, 1.0)


def _luminance(linear: Any) -> Any:
    """BT.709 luminance of linear light, last axis kept (N x H x W x 1)."""
    return tf.reduce_sum(linear * tf.constant(LUMA_BT709, tf.float32), axis=-1, keepdims=True)


def shadow_mask(linear: Any, w: LossWeights) -> Any:
    """0..1 per pixel: 1 up to ``w.shadow_below`` of SDR white in luminance, 0 from twice that."""
    return tf.clip_by_value(2.0 - _luminance(linear) / SDR_WHITE_NITS / w.shadow_below, 0.0, 1.0)


def _gradients(x: Any) -> tuple[Any, Any]:
    return x[:, 1:, :, :] - x[:, :-1, :, :], x[:, :, 1:, :] - x[:, :, :-1, :]


def mqn_loss(
    target_pq: Any,
    out_nits: Any,
    knots: Any,
    linear: Any,
    w: LossWeights = LossWeights(),
    peak_ratio: float | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Total loss and its terms.

    ``target_pq`` PQ codes, ``out_nits``/``linear`` cd/m², ``knots`` the grid; ``peak_ratio`` the model's, if
    it has a peak curve (``w.peak`` weighs nothing without one).
    """
    pred = pq_encode_tf(out_nits)
    diff = pred - target_pq
    hl = highlight_mask(linear, w)
    weight = 1.0 + w.highlight * hl
    if w.shadow:
        weight = weight + w.shadow * shadow_mask(linear, w)
    if w.peak and peak_ratio is not None:
        weight = weight + w.peak * peak_weight_tf(_luminance(linear), peak_ratio)
    l1 = tf.reduce_mean(weight * tf.abs(diff))
    l2 = tf.reduce_mean(weight * tf.square(diff))
    gty, gtx = _gradients(target_pq)
    gpy, gpx = _gradients(pred)
    grad = tf.reduce_mean(tf.abs(gty - gpy)) + tf.reduce_mean(tf.abs(gtx - gpx))
    ky, kx = _gradients(knots)
    smooth = tf.reduce_mean(tf.abs(ky)) + tf.reduce_mean(tf.abs(kx))
    total = w.l1 * l1 + w.l2 * l2 + w.gradient * grad + w.smooth * smooth
    hl_l1 = tf.reduce_sum(hl * tf.abs(diff)) / tf.maximum(3.0 * tf.reduce_sum(hl), 1.0)
    return total, {"l1": l1, "l2": l2, "grad": grad, "smooth": smooth, "hl_l1": hl_l1}


AUX_SHADOWS_NITS = (0.1, 3.0)
"""Placement luminance of the pixels whose lift the toe number is: where the curves' toes differ."""
AUX_CLIPPED = 0.98
"""Brightest channel, in SDR white, from which a pixel counts as clipped for the clipped-area number."""
AUX_MIN_SHARE = 0.01
"""A frame with fewer such pixels has no target for that number (its error is left out)."""


def global_aux_targets(linear: Any, target_pq: Any) -> tuple[Any, Any]:
    """Per frame, (targets N x 2, valid N x 2): mean stops of reference over placement, shadows and clipped.

    These are what the SDR's tone curve decides and the SDR does not record: a toe (ACES, a sigmoid camera
    response) puts the shadows 1.4-1.7 stops below the scene, a clip or gamma curve keeps them; a shoulder
    curve's clipped areas were ~2 stops above white, a hard clip's ~0.7.
    """
    luma = tf.constant(LUMA_BT709, tf.float32)
    y_in = tf.reduce_sum(linear * luma, axis=-1)
    y_ref = tf.reduce_sum(pq_decode_tf(target_pq) * luma, axis=-1)
    stops = tf.math.log(tf.maximum(y_ref, 1e-4) / tf.maximum(y_in, 1e-4)) / tf.math.log(2.0)
    low, high = AUX_SHADOWS_NITS
    masks = [
        tf.cast((y_in >= low) & (y_in < high), tf.float32),
        tf.cast(tf.reduce_max(linear, axis=-1) >= AUX_CLIPPED * SDR_WHITE_NITS, tf.float32),
    ]
    targets, valid = [], []
    for m in masks:
        count = tf.reduce_sum(m, axis=[1, 2])
        targets.append(tf.reduce_sum(m * stops, axis=[1, 2]) / tf.maximum(count, 1.0))
        pixels = tf.cast(tf.shape(m)[1] * tf.shape(m)[2], tf.float32)
        valid.append(tf.cast(count >= AUX_MIN_SHARE * pixels, tf.float32))
    return tf.stop_gradient(tf.stack(targets, axis=-1)), tf.stack(valid, axis=-1)


def global_aux_loss(pred: Any, linear: Any, target_pq: Any) -> Any:
    """Mean squared error of the auxiliary numbers over the frames that have them."""
    targets, valid = global_aux_targets(linear, target_pq)
    return tf.reduce_sum(valid * tf.square(pred - targets)) / tf.maximum(tf.reduce_sum(valid), 1.0)
