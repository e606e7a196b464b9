"""ExpandNet's loss: L1 plus cosine similarity over colour (Marnerides et al. 2018, section 3.3).

The paper takes both on min-max normalised linear light; ours follow the harness convention instead. The L1
term is on PQ codes of absolute light (MQN's domain: perceptually uniform, so shadows and highlights count
alike, and what the validation PSNR measures). The cosine term is on linear light, where the direction of an
RGB vector is its colour whatever its brightness: it penalises hue and saturation errors that an L1 over
three channels averages away. λ = 5 as in the paper.

One term is ours, as in MQN's loss (:func:`models.mqn.losses.highlight_mask`): the L1 of pixels the SDR has
(nearly) clipped weighs ``1 + highlight`` times more. Our targets put mid-tones exactly at the BT.2408
placement, so for almost every pixel the best offset is zero and an unweighted L1 (a median) is balanced
there; the few highlights that carry the expansion were outvoted. Measured: with the paper's loss alone the
run `expandnet_v1` stayed at the `bt2408` baseline for 1000 steps (validation 25.57 dB against 25.53).
"""

from dataclasses import dataclass
from typing import Any

import tensorflow as tf

from models.mqn.layers import pq_decode_tf
from models.mqn.losses import LossWeights as MQNLossWeights
from models.mqn.losses import highlight_mask

COSINE_EPS = 1e-8
"""Added to the product of norms (PyTorch's ``cosine_similarity`` default), cd/m² squared."""


@dataclass(frozen=True)
class LossWeights:
    """λ of each term."""

    l1: float = 1.0
    cosine: float = 5.0
    highlight: float = 0.0
    """Extra L1 weight of near-clipped SDR pixels (0: the paper's loss)."""


def expandnet_loss(
    target_pq: Any, out_pq: Any, w: LossWeights = LossWeights(), base_pq: Any = None
) -> tuple[Any, dict[str, Any]]:
    """Total loss and its terms; images PQ codes, N x H x W x 3.

    ``base_pq`` is the SDR's BT.2408 placement, needed when ``w.highlight`` is on.
    """
    weight = 1.0
    if w.highlight:
        hl = highlight_mask(pq_decode_tf(base_pq), MQNLossWeights())
        weight = 1.0 + w.highlight * hl
    l1 = tf.reduce_mean(weight * tf.abs(out_pq - target_pq))
    a, b = pq_decode_tf(out_pq), pq_decode_tf(target_pq)
    dot = tf.reduce_sum(a * b, axis=-1)
    norms = tf.norm(a, axis=-1) * tf.norm(b, axis=-1)
    cosine = tf.reduce_mean(1.0 - dot / (norms + COSINE_EPS))
    return w.l1 * l1 + w.cosine * cosine, {"l1": l1, "cosine": cosine}
