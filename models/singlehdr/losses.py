"""SingleHDR's losses, one per stage and their sum for the joint fine-tuning, in PQ of absolute light.

The paper: L_deq (L2 of the dequantized image), L_lin + lambda_crf L_crf (L2 of the linear image and of the
inverse response), L_hal (L2 of log HDR), and jointly lambda_deq 1, lambda_lin 10, lambda_crf 1, lambda_hal 1,
a VGG perceptual term (0.001) and total variation (0.1). Here (the model card's table says why):

* ``deq``: L2 of the dequantized codes against the clipped reference in the frame's own transfer;
* ``lin``: L2, in PQ, of I_lin against the reference clipped at SDR white (no L_crf: the synthesis does not
  record every response it draws, nor the saturation, noise and JPEG after it);
* ``hal``: L1 in PQ (log-like, as the paper's log) of H against the reference, over the over-exposure mask;
* ``out`` (joint only): L1 in PQ of the output, near-clipped SDR pixels weighted 5x (ExpandNet's lesson).

No VGG term (no ImageNet weights can be downloaded), no total variation.
"""

from dataclasses import dataclass
from typing import Any

import tensorflow as tf

from models.mqn.convention import nits_to_pq
from models.mqn.layers import pq_decode_tf
from models.mqn.losses import LossWeights as MQNLossWeights
from models.mqn.losses import highlight_mask
from service.colour.scaling import SDR_WHITE_NITS

PQ_WHITE = float(nits_to_pq(SDR_WHITE_NITS))
"""PQ code of SDR white (203 cd/m²): where the linearization's range ends."""
PHASES = ("deq", "lin", "hal", "joint")
"""The paper's schedule: each stage alone (refinement has no stage target), then everything jointly."""


@dataclass(frozen=True)
class LossWeights:
    """λ of each term in the joint phase (a single-stage phase uses its own term alone)."""

    deq: float = 1.0
    lin: float = 10.0
    hal: float = 1.0
    out: float = 1.0
    highlight: float = 4.0
    """Extra weight of near-clipped SDR pixels in ``out`` (0: plain L1)."""


def stage_terms(
    outputs: Any, deq_target: Any, base_pq: Any, target_pq: Any, w: LossWeights
) -> dict[str, Any]:
    """Every stage's loss from the training model's outputs (images N x H x W x C)."""
    x_deq, lin_pq, alpha, h_pq, out_pq = outputs
    hal_err = alpha * tf.abs(h_pq - target_pq)
    weight = 1.0 + w.highlight * highlight_mask(pq_decode_tf(base_pq), MQNLossWeights())
    return {
        "deq": tf.reduce_mean(tf.square(x_deq - deq_target)),
        "lin": tf.reduce_mean(tf.square(lin_pq - tf.minimum(target_pq, PQ_WHITE))),
        "hal": tf.reduce_sum(hal_err) / tf.maximum(3.0 * tf.reduce_sum(alpha), 1.0),
        "out": tf.reduce_mean(weight * tf.abs(out_pq - target_pq)),
    }


def stage_loss(
    stage: str, outputs: Any, deq_target: Any, base_pq: Any, target_pq: Any, w: LossWeights = LossWeights()
) -> tuple[Any, dict[str, Any]]:
    """Total loss of a training phase and all its terms (logged, whichever the phase optimises).

    Raises
    ------
    ValueError
        For a phase that is not one of :data:`PHASES`.
    """
    terms = stage_terms(outputs, deq_target, base_pq, target_pq, w)
    if stage == "joint":
        return w.deq * terms["deq"] + w.lin * terms["lin"] + w.hal * terms["hal"] + w.out * terms[
            "out"
        ], terms
    if stage not in terms:
        raise ValueError(f"stage '{stage}' is not known; expected one of {PHASES}")
    return terms[stage], terms
