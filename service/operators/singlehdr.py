"""The learned operator ``singlehdr``: SingleHDR (Liu et al., CVPR 2020) on LiteRT, ``fast`` and ``quality``.

The network reverses the camera pipeline in four stages (dequantization, linearization by a predicted
inverse response, hallucination where the over-exposure mask is on, refinement; ``models/singlehdr``). It is
fully convolutional with a global descriptor for the response curve, so it runs at any size: ``quality``
runs it on the frame itself (sides rounded to multiples of the U-Nets' stride), ``fast`` on the frame
downscaled to a 512 px long side (Pillow-exact bilinear, as MQN's fast mode).

Its output is a logit of PQ(1000 cd/m²)'s range per pixel and channel. The operator subtracts the logit of
the network input's own BT.2408 placement, upsamples that offset bilinearly to the frame (when the network
ran smaller) and adds it to the full-resolution frame's placement: the output stage of every learned
operator here (:func:`service.operators.learned.offsets_to_nits`; the modes and the upsampling are
:class:`~service.operators.learned.ModedLearnedOperator`'s, shared with ``region_lstm``). So edges and
texture come from the frame at full resolution, the expansion from the network, and the same network output
decodes to the same light at the network's own size.

Artefacts are read from ``ITM_SINGLEHDR_DIR`` if set (tests), else from ``models/artifacts``. Without an
exported model the operator is still listed, and creating it fails with an
:class:`~service.errors.EngineError` that says how to make it.
"""

from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from service.colour.description import ColourDescription
from service.inference import engine as inference
from service.operators.base import Frames, OperatorInfo
from service.operators.classical import PEAK_PARAM
from service.operators.learned import MODE_PARAM, LearnedEngine, ModedLearnedOperator, Runtime
from service.timing import StageClock

DIR_ENV = "ITM_SINGLEHDR_DIR"
"""Environment variable naming another artefact directory (tests, staged models)."""
META_FILE = "singlehdr.json"
FEATURES_FILE = "singlehdr_deq_int8.tflite"
HEAD_FILE = "singlehdr_head_dr.tflite"
FRAME_INPUT = "frame"
RESIDUAL_INPUT = "residual"
"""Input names, by their Keras names (``models/singlehdr/model.py``)."""

F32 = npt.NDArray[np.float32]


def artifacts_dir() -> Path:
    """Where the model is read from: ``ITM_SINGLEHDR_DIR``, else the shipped artefacts."""
    return inference.artifacts_dir(DIR_ENV)


class Predictor(Runtime, Protocol):
    """What the operator needs from a runtime: ``meta`` (``stride``, ``peak_nits`` ...) and ``run``."""

    def run(self, frames: Frames, clock: StageClock) -> F32:
        """N x h x w x 3 uint8 frames (sides multiples of ``stride``) -> N x h x w x 3 logits."""
        ...


class SingleHDREngine(LearnedEngine):
    """The exported SingleHDR: int8 dequantization U-Net + float-activation rest, each a :class:`LiteRTModel`.

    Raises
    ------
    EngineError
        If the model has not been exported to ``directory``.
    """

    name = "singlehdr"
    meta_file = META_FILE
    dir_env = DIR_ENV

    def run(self, frames: Frames, clock: StageClock) -> F32:
        """Logits, charging ``backbone`` (int8 dequantization) and ``head`` (float stages) to ``clock``."""
        (residual,) = self.features.run({FRAME_INPUT: frames})
        clock.lap("backbone")
        unit = frames.astype(np.float32) * np.float32(1.0 / 255.0)
        (logit,) = self.head.run({FRAME_INPUT: unit, RESIDUAL_INPUT: np.asarray(residual, np.float32)})
        clock.lap("head")
        return np.asarray(logit, np.float32)


class SingleHDR(ModedLearnedOperator[Predictor]):
    """Learned ITM: SingleHDR (dequantization, linearization, hallucination, refinement), trained here.

    Raises
    ------
    ValueError
        For an unknown ``mode``.
    service.errors.EngineError
        If the model is not exported yet (the message says how) or LiteRT fails.
    """

    info = OperatorInfo(
        "singlehdr",
        "SingleHDR (learned; reverses the camera pipeline: dequantization, inverse response curve, "
        "hallucination where over-exposed, refinement; run on a 512 px view (fast) or at native resolution "
        "(quality), its expansion applied to every full-resolution pixel on the BT.2408 placement)",
        (PEAK_PARAM, MODE_PARAM),
    )
    engine_type = SingleHDREngine
    default_stride = 8  # the U-Nets'

    def offsets(self, small: Frames, colour: ColourDescription) -> F32:
        """The network's logits less the logit of its input's own BT.2408 placement."""
        self.clock.lap("preprocess")
        logits = self.engine.run(small, self.clock)
        return logits - self.spec.anchor_logits(colour)[small]
