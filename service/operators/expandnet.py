"""The learned operator ``expandnet``: ExpandNet (Marnerides et al., Eurographics 2018) on LiteRT.

Every pixel of the frame goes through the network at native resolution: ExpandNet has no upsampling, so it
has no cheaper low-resolution mode (its cost grows with the frame; see the model card). The int8 feature
extractor reads the frame and a 256 x 256 view of it (Pillow-exact bilinear, :func:`resize_bilinear`, the
same pixels training saw); the float head gives three logit offsets per pixel; and one fused pass turns them
into light: PQ = PQ(1000 cd/m²) * sigmoid(logit(BT.2408 placement) + offset), decoded to cd/m² and converted
to BT.2020 (:func:`service.operators.learned.offsets_to_nits`, the output stage ``singlehdr`` and
``region_lstm`` share). A zero offset is exactly ``bt2408``; nothing depends on the frame's own statistics
except through the network's global branch.

The artefacts are read from ``ITM_EXPANDNET_DIR`` if set (tests point it at a freshly exported smoke model),
else from the shipped ``models/artifacts``. Until the model is trained and exported the operator is still
listed, and creating it fails with an :class:`~service.errors.EngineError` that says how to make it.
"""

from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from service.colour.description import ColourDescription
from service.colour.scaling import DEFAULT_PEAK_NITS
from service.inference import engine as inference
from service.operators.base import Frames, Nits, OperatorInfo
from service.operators.classical import PEAK_PARAM
from service.operators.learned import LOGIT_EPS as LOGIT_EPS  # re-exported: the models' layers read it here
from service.operators.learned import LearnedEngine, LearnedOperator, Runtime, offsets_to_nits
from service.operators.resample import resize_bilinear
from service.timing import StageClock

DIR_ENV = "ITM_EXPANDNET_DIR"
"""Environment variable naming another artefact directory (tests, staged models)."""
META_FILE = "expandnet.json"
FEATURES_FILE = "expandnet_features_int8.tflite"
HEAD_FILE = "expandnet_head_dr.tflite"
FRAME_INPUT = "frame"
GLOBAL_INPUT = "global_view"
"""The feature extractor's inputs, by their Keras names (``models/expandnet/model.py``)."""

F32 = npt.NDArray[np.float32]


def artifacts_dir() -> Path:
    """Where the model is read from: ``ITM_EXPANDNET_DIR``, else the shipped artefacts."""
    return inference.artifacts_dir(DIR_ENV)


class Predictor(Runtime, Protocol):
    """What the operator needs from a runtime: ``meta`` (``global_size``, ``peak_nits``) and ``run``."""

    def run(self, frames: Frames, view: Frames, clock: StageClock) -> F32:
        """N x H x W x 3 uint8 frames and their N x g x g x 3 views -> N x H x W x 3 logit offsets."""
        ...


class ExpandNetEngine(LearnedEngine):
    """The exported ExpandNet: int8 feature extractor + dynamic-range head, each a :class:`LiteRTModel`.

    Raises
    ------
    EngineError
        If the model has not been exported to ``directory``.
    """

    name = "expandnet"
    meta_file = META_FILE
    dir_env = DIR_ENV

    def run(self, frames: Frames, view: Frames, clock: StageClock) -> F32:
        """Logit offsets, charging ``backbone`` (int8 part) and ``head`` (float part) to ``clock``."""
        (features,) = self.features.run({FRAME_INPUT: frames, GLOBAL_INPUT: view})
        clock.lap("backbone")
        (offsets,) = self.head.run({"features": features})
        clock.lap("head")
        return np.asarray(offsets, np.float32)


class ExpandNet(LearnedOperator[Predictor]):
    """Learned ITM: ExpandNet (local, dilated and global CNN branches at native resolution), trained here.

    Raises
    ------
    service.errors.EngineError
        If the model is not exported yet (the message says how) or LiteRT fails.
    """

    info = OperatorInfo(
        "expandnet",
        "ExpandNet (learned; local, dilated and global CNN branches over every pixel at native resolution, "
        "no fast mode; PQ anchored on the BT.2408 placement)",
        (PEAK_PARAM,),
    )
    engine_type = ExpandNetEngine

    def __init__(self, peak_nits: float = DEFAULT_PEAK_NITS, engine: Predictor | None = None) -> None:
        super().__init__(peak_nits, engine)
        self.global_size = int(self.engine.meta["global_size"])

    def apply(self, frames: Frames, colour: ColourDescription) -> Nits:
        """Run the network over the whole frame and anchor its output on the frame's BT.2408 placement."""
        view = resize_bilinear(frames, self.global_size, self.global_size)
        self.clock.lap("preprocess")
        offsets = self.engine.run(frames, view, self.clock)
        return offsets_to_nits(frames, colour, offsets, self.spec)
