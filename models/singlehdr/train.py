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
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from models.harness.cli import train_main
from models.harness.config import TrainConfig
from models.harness.loop import Batch, Validation, fit, load_data, start_run
from models.mqn.convention import pq_to_nits
from models.mqn.data import Sample, SceneBank, SynthesisConfig, encode_sdr
from service.colour.scaling import SDR_WHITE_NITS

log = logging.getLogger("models.singlehdr.train")

CONFIGS = Path(__file__).parent / "configs"
PHASE_KEYS = frozenset({"stage", "steps", "lr", "lr_min", "warmup_steps", "max_minutes", "val_every", "loss"})
"""What a phase may set for itself; everything else is the run's."""


def _default_phases() -> list[dict[str, Any]]:
    return [{"stage": stage} for stage in ("deq", "lin", "hal", "joint")]


@dataclass
class SingleHDRTrainConfig(TrainConfig):
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
    """The run's settings for one phase: its own checkpoint folder, steps, schedule and loss weights.

    Raises
    ------
    ValueError
        For a phase key that is not one of :data:`PHASE_KEYS`, or an unknown stage.
    """
    from models.singlehdr.losses import PHASES

    unknown = set(phase) - PHASE_KEYS
    if unknown:
        raise ValueError(
            f"phase keys {sorted(unknown)} are not known; expected a subset of {sorted(PHASE_KEYS)}"
        )
    if phase.get("stage") not in PHASES:
        raise ValueError(f"phase stage {phase.get('stage')!r} is not known; expected one of {PHASES}")
    settings = {k: v for k, v in phase.items() if k not in ("stage", "loss")}
    return replace(cfg, run=f"{cfg.run}/{phase['stage']}", loss=cfg.loss | phase.get("loss", {}), **settings)


def _finished(cfg: TrainConfig) -> bool:
    """Whether a phase already reached its steps (its summary says so)."""
    path = cfg.resolve(cfg.log_root) / cfg.run / "summary.json"
    return path.exists() and json.loads(path.read_text())["steps"] >= cfg.steps


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
    phases = [phase_config(cfg, p) for p in cfg.phases]
    stages = [p["stage"] for p in cfg.phases]
    if cfg.stage is not None and cfg.stage not in stages:
        raise ValueError(f"stage {cfg.stage!r} is not one of this run's phases {stages}")
    ckpt_dir, log_dir = start_run(cfg, log)
    from models.singlehdr.losses import LossWeights, stage_loss
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

    summaries: dict[str, Any] = {}
    previous: Path | None = None
    for stage, pcfg in zip(stages, phases, strict=True):
        phase_dir = pcfg.resolve(pcfg.checkpoint_root) / pcfg.run
        if (cfg.stage is None or cfg.stage == stage) and not _finished(pcfg):
            for name, part in net.stages.items():
                part.trainable = stage == "joint" or name == stage
            weights = LossWeights(**pcfg.loss)
            start = previous

            def loss(m: Any, batch: Any, stage: str = stage, w: LossWeights = weights) -> Any:
                frame, deq_t, base, target = batch
                return stage_loss(stage, m(frame, training=True), deq_t, base, target, w)

            def init(start: Path | None = start) -> None:
                if start is not None:
                    model.load_weights(start / "last.weights.h5")

            def stream(seed: int, pcfg: TrainConfig = pcfg) -> Iterator[Batch]:
                return batches(data.train, pcfg.batch_size, pcfg.crop, data.synthesis, seed)

            for root in (pcfg.checkpoint_root, pcfg.log_root):
                (pcfg.resolve(root) / pcfg.run).mkdir(parents=True, exist_ok=True)
            log.info("phase %s: up to %d steps", stage, pcfg.steps)
            summaries[stage] = fit(pcfg, model, loss, predict, stream, val, log, init)
        elif (done := pcfg.resolve(pcfg.log_root) / pcfg.run / "summary.json").exists():
            summaries[stage] = json.loads(done.read_text())
        previous = phase_dir
    final = phases[-1]
    final_dir = final.resolve(final.checkpoint_root) / final.run
    if (final_dir / "best.weights.h5").exists():
        for which in ("best", "last"):
            shutil.copyfile(final_dir / f"{which}.weights.h5", ckpt_dir / f"{which}.weights.h5")
    last = summaries.get(stages[-1], {})
    summary = {
        "run": cfg.run,
        "steps": sum(int(s.get("steps", 0)) for s in summaries.values()),
        "phases": summaries,
        **{k: v for k, v in last.items() if k.startswith(("val_", "best_"))},
    }
    (log_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


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
