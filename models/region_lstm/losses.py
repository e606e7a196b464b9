"""The region-map ConvLSTM's loss: L1 plus SSIM (the paper's Eq. 7), on PQ of absolute light, per phase.

The paper mixes SSIM and L1 with weight 0.83 (after Zhao et al.), and trains SParam-Net first on the
pseudo-HDR image alone, then the whole model on α Loss_LSTM + β Loss_SParam (its Eq. 8; α > β was better,
its Table 1). Here both terms are on PQ codes of absolute light (the harness's domain: perceptually uniform,
what validation measures), SSIM with TensorFlow's 11x11 Gaussian window and peak 1.0.

One term is ours, as in ExpandNet's and SingleHDR's losses (:func:`models.mqn.losses.highlight_mask`): the
L1 of pixels the SDR has (nearly) clipped weighs ``1 + highlight`` times more. The targets put mid-tones
exactly at the BT.2408 placement, so an unweighted loss is met almost everywhere by the baseline, and the
few highlights that carry the expansion are outvoted (the model card's ExpandNet finding: without the weight
the model stayed at ``bt2408``).
"""

from dataclasses import dataclass
from typing import Any

import tensorflow as tf

from models.mqn.layers import pq_decode_tf
from models.mqn.losses import LossWeights as MQNLossWeights
from models.mqn.losses import highlight_mask

PHASES = ("sparam", "joint")
"""SParam-Net alone on the pseudo-HDR image, then everything."""


@dataclass(frozen=True)
class LossWeights:
    """λ of each term."""

    ssim_mix: float = 0.83
    """Weight of (1 - SSIM) against the L1's 1 - ssim_mix (the paper's 0.83)."""
    highlight: float = 4.0
    """Extra L1 weight of near-clipped SDR pixels (0: the paper's loss)."""
    lstm: float = 1.0
    """α: the output's loss in the joint phase."""
    sparam: float = 0.5
    """β: the pseudo-HDR image's loss in the joint phase."""


def l1_ssim(out_pq: Any, target_pq: Any, base_pq: Any, w: LossWeights) -> tuple[Any, Any, Any]:
    """(mixed loss, weighted L1, mean SSIM) of one PQ image batch, N x H x W x 3 (sides 11 or more)."""
    weight = 1.0 + w.highlight * highlight_mask(pq_decode_tf(base_pq), MQNLossWeights())
    l1 = tf.reduce_mean(weight * tf.abs(out_pq - target_pq))
    ssim = tf.reduce_mean(tf.image.ssim(out_pq, target_pq, max_val=1.0))
    return w.ssim_mix * (1.0 - ssim) + (1.0 - w.ssim_mix) * l1, l1, ssim


def phase_loss(
    stage: str, outputs: Any, base_pq: Any, target_pq: Any, w: LossWeights = LossWeights()
) -> tuple[Any, dict[str, Any]]:
    """Total loss of a training phase and its terms.

    ``outputs`` is the pseudo-HDR PQ in phase ``sparam``, (pseudo-HDR PQ, PQ out) in phase ``joint``.

    Raises
    ------
    ValueError
        For a phase that is not one of :data:`PHASES`.
    """
    if stage == "sparam":
        total, l1, ssim = l1_ssim(outputs, target_pq, base_pq, w)
        return total, {"pseudo_l1": l1, "pseudo_ssim": ssim}
    if stage == "joint":
        pseudo, out = outputs
        pseudo_loss, pseudo_l1, pseudo_ssim = l1_ssim(pseudo, target_pq, base_pq, w)
        out_loss, l1, ssim = l1_ssim(out, target_pq, base_pq, w)
        terms = {"l1": l1, "ssim": ssim, "pseudo_l1": pseudo_l1, "pseudo_ssim": pseudo_ssim}
        return w.lstm * out_loss + w.sparam * pseudo_loss, terms
    raise ValueError(f"stage '{stage}' is not known; expected one of {PHASES}")
