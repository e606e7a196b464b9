"""MQN training loss in the PQ domain (perceptually uniform: L1 there weights shadows and highlights alike).

Paper: L1 + L2 + cosine similarity (λ = 1, 1, 0.1) + a VGG16 perceptual term. VGG16 needs ImageNet weights
that cannot be downloaded here, so the perceptual term is replaced by a weights-free structural one: L1 of
image gradients (finite differences) in PQ, which penalises blur and halo edges the pixel terms miss.
"""

from dataclasses import dataclass
from typing import Any

import tensorflow as tf


@dataclass(frozen=True)
class LossWeights:
    """λ of each term."""

    l1: float = 1.0
    l2: float = 1.0
    cosine: float = 0.1
    gradient: float = 1.0


def _gradients(x: Any) -> tuple[Any, Any]:
    return x[:, 1:, :, :] - x[:, :-1, :, :], x[:, :, 1:, :] - x[:, :, :-1, :]


def mqn_loss(y_true: Any, y_pred: Any, w: LossWeights = LossWeights()) -> tuple[Any, dict[str, Any]]:
    """Total loss and its terms, both PQ-coded NHWC tensors.

    The cosine term compares per-pixel RGB directions (hue/saturation), so it is 1 - cos averaged over pixels.
    """
    diff = y_pred - y_true
    l1 = tf.reduce_mean(tf.abs(diff))
    l2 = tf.reduce_mean(tf.square(diff))
    cos = 1.0 - tf.reduce_mean(
        tf.reduce_sum(tf.math.l2_normalize(y_true, -1, 1e-6) * tf.math.l2_normalize(y_pred, -1, 1e-6), -1)
    )
    gty, gtx = _gradients(y_true)
    gpy, gpx = _gradients(y_pred)
    grad = tf.reduce_mean(tf.abs(gty - gpy)) + tf.reduce_mean(tf.abs(gtx - gpx))
    total = w.l1 * l1 + w.l2 * l2 + w.cosine * cos + w.gradient * grad
    return total, {"l1": l1, "l2": l2, "cos": cos, "grad": grad}
