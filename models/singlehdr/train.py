"""Train SingleHDR on CPU: ``python -m models.train --model singlehdr`` (``configs/default.json``).

The paper's schedule as the run's ``phases``, one command for all of them: dequantization alone, then
linearization alone, then hallucination alone (each with the stages before it frozen and its own loss,
:mod:`models.singlehdr.losses`), then every stage jointly with the refinement. Each phase is a run of the
MQN harness (:func:`models.harness.loop.fit`: the same scenes, split, synthesis, validation views and
absolute PQ targets), checkpointed under ``models/checkpoints/<run>/<phase>/`` and started from the weights
the phase before it ended with. Rerunning the command resumes the phase it stopped in and skips the ones
that finished; ``--set stage='"hal"'`` runs one phase only. The last phase's weights are copied to
``models/checkpoints/<run>/{best,last}.weights.h5`` for the export.
"""

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.harness import phases
from models.harness.cli import train_main
from models.harness.config import TrainConfig
from models.harness.loop import Batch, Validation, fit, load_data, start_run
from models.mqn.convention import pq_to_nits
from models.mqn.data import Sample, SceneBank, SynthesisConfig, encode_sdr
from service.colour.scaling import SDR_WHITE_NITS

log = logging.getLogger("models.singlehdr.train")

CONFIGS = Path(__file__).parent / "configs"
PHASE_KEYS = phases.PHASE_KEYS


def _default_phases() -> list[dict[str, Any]]:
    return [{"stage": stage} for stage in ("deq", "lin", "hal", "joint")]


@dataclass
class SingleHDRTrainConfig(phases.PhasedTrainConfig):
    """MQN's run settings, SingleHDR's defaults, and the phases.

    ``net_sizes``, ``val_net`` and ``init_from`` are unused. A phase's ``loss`` is merged over the run's.
    """

    run: str = "singlehdr"
    crop: int = 128
    """Side of the square training views (a multiple of the U-Nets' stride; the paper trains on 256²)."""
    batch_size: int = 8
    val_size: int = 256
    phases: list[dict[str, Any]] = field(default_factory=_default_phases)
    stage: str | None = None
    """Run only the phase of this stage (the others must have run before it)."""


def deq_target(sample: Sample) -> np.ndarray:
    """What dequantization aims at: the reference clipped at SDR white, in the frame's own transfer's codes.

    The synthesis renders with 8 bits, noise and JPEG after its tone curve and keeps none of the in-between
    images, so the paper's target (the unquantized LDR) is not there; the clipped absolute reference is, and
    in the mid-tones it is the SDR's own display light (the targets are placed by them).
    """
    relative = np.minimum(pq_to_nits(sample.target) / SDR_WHITE_NITS, 1.0)
    return encode_sdr(relative, str(sample.meta["transfer"]))


def inputs_of(samples: list[Sample]) -> Batch:
    """(frame,) in [0, 1], NHWC float32: what the network is given for these samples."""
    return (np.stack([s.sdr for s in samples]).astype(np.float32) / 255.0,)


def batches(bank: SceneBank, batch_size: int, size: int, cfg: SynthesisConfig, seed: int) -> Iterator[Batch]:
    """Endless (frame, dequantization target, base PQ, target PQ) batches, deterministic for a seed."""
    rng = np.random.default_rng(seed)
    while True:
        items = [bank.sample(rng, (size, size), cfg) for _ in range(batch_size)]
        yield (
            *inputs_of(items),
            np.stack([deq_target(s) for s in items]),
            np.stack([s.base for s in items]),
            np.stack([s.target for s in items]),
        )


def phase_config(cfg: SingleHDRTrainConfig, phase: dict[str, Any]) -> SingleHDRTrainConfig:
    """The run's settings for one phase (:func:`models.harness.phases.phase_config` over SingleHDR's stages).

    Raises
    ------
    ValueError
        For a phase key that is not one of :data:`PHASE_KEYS`, or an unknown stage.
    """
    from models.singlehdr.losses import PHASES

    return phases.phase_config(cfg, phase, PHASES)  # type: ignore[return-value]


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) every phase; returns the summary also written to ``<log_root>/<run>/summary.json``.

    Raises
    ------
    ValueError
        If the config asks for a warm start, names an unknown phase, stage or model key.
    """
    if not isinstance(cfg, SingleHDRTrainConfig):
        raise TypeError(f"expected a SingleHDRTrainConfig, got {type(cfg).__name__}")
    if cfg.init_from:
        raise ValueError("init_from (warm start) is MQN's; SingleHDR trains from scratch, phase by phase")
    from models.singlehdr.losses import PHASES, LossWeights, stage_loss

    phase_cfgs = phases.check_phases(cfg, PHASES)
    ckpt_dir, log_dir = start_run(cfg, log)
    from models.singlehdr.model import SingleHDRConfig, build_singlehdr

    mcfg = SingleHDRConfig.from_json(cfg.model)
    for size in (cfg.crop, cfg.val_size):
        if size % mcfg.stride:
            raise ValueError(f"view side {size} must be a multiple of the U-Nets' stride {mcfg.stride}")
    (ckpt_dir / "model.json").write_text(json.dumps(mcfg.to_json(), indent=2))
    net = build_singlehdr(mcfg)
    model = net.model
    data = load_data(cfg, log)
    val = Validation.of(data.val, inputs_of(data.val))

    def predict(inputs: Batch) -> np.ndarray:
        return np.asarray(model(inputs[0], training=False)[-1], np.float32)

    def fit_phase(stage: str, pcfg: TrainConfig, previous: Path | None) -> dict[str, Any]:
        for name, part in net.stages.items():
            part.trainable = stage == "joint" or name == stage
        weights = LossWeights(**pcfg.loss)

        def loss(m: Any, batch: Any) -> Any:
            frame, deq_t, base, target = batch
            return stage_loss(stage, m(frame, training=True), deq_t, base, target, weights)

        def init() -> None:
            if previous is not None:
                model.load_weights(previous / "last.weights.h5")

        def stream(seed: int) -> Iterator[Batch]:
            return batches(data.train, pcfg.batch_size, pcfg.crop, data.synthesis, seed)

        return fit(pcfg, model, loss, predict, stream, val, log, init)

    return phases.run_phases(cfg, phase_cfgs, fit_phase, log, ckpt_dir, log_dir)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    return train_main(
        argv,
        prog="python -m models.train --model singlehdr",
        description=__doc__,
        default_config=CONFIGS / "default.json",
        load=SingleHDRTrainConfig.load,
        train=train,
    )
