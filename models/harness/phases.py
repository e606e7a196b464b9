"""Training in phases: one command runs a model's schedule, each phase a resumable run of :func:`fit`.

A phased model (SingleHDR: each stage alone, then jointly; the region-map ConvLSTM: SParam-Net first, then the
whole model) lists its ``phases`` in its config, each a ``stage`` name and the settings it changes. Each phase
is checkpointed under ``models/checkpoints/<run>/<stage>/`` and starts from the weights the phase before it
ended with. Rerunning the command resumes the phase it stopped in and skips the ones that finished;
``--set stage='"<stage>"'`` runs one phase only. The last phase's weights are copied to
``models/checkpoints/<run>/{best,last}.weights.h5`` for the export.
"""

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from models.harness.config import TrainConfig

PHASE_KEYS = frozenset({"stage", "steps", "lr", "lr_min", "warmup_steps", "max_minutes", "val_every", "loss"})
"""What a phase may set for itself; everything else is the run's."""

FitPhase = Callable[[str, TrainConfig, Path | None], dict[str, Any]]
"""(stage, the phase's config, the folder of the phase before it or None) -> the summary of :func:`fit`."""


@dataclass
class PhasedTrainConfig(TrainConfig):
    """MQN's run settings and the phases. A phase's ``loss`` is merged over the run's."""

    phases: list[dict[str, Any]] = field(default_factory=list)
    stage: str | None = None
    """Run only the phase of this stage (the others must have run before it)."""


def phase_config(cfg: PhasedTrainConfig, phase: dict[str, Any], stages: tuple[str, ...]) -> PhasedTrainConfig:
    """The run's settings for one phase: its own checkpoint folder, steps, schedule and loss weights.

    Raises
    ------
    ValueError
        For a phase key that is not one of :data:`PHASE_KEYS`, or a stage not in ``stages``.
    """
    unknown = set(phase) - PHASE_KEYS
    if unknown:
        raise ValueError(
            f"phase keys {sorted(unknown)} are not known; expected a subset of {sorted(PHASE_KEYS)}"
        )
    if phase.get("stage") not in stages:
        raise ValueError(f"phase stage {phase.get('stage')!r} is not known; expected one of {stages}")
    settings = {k: v for k, v in phase.items() if k not in ("stage", "loss")}
    return replace(cfg, run=f"{cfg.run}/{phase['stage']}", loss=cfg.loss | phase.get("loss", {}), **settings)


def check_phases(cfg: PhasedTrainConfig, stages: tuple[str, ...]) -> list[PhasedTrainConfig]:
    """Every phase's config, after checking the run's phases and its ``stage``.

    Raises
    ------
    ValueError
        As :func:`phase_config`, or if ``cfg.stage`` is not one of the run's phases.
    """
    phases = [phase_config(cfg, p, stages) for p in cfg.phases]
    names = [p["stage"] for p in cfg.phases]
    if cfg.stage is not None and cfg.stage not in names:
        raise ValueError(f"stage {cfg.stage!r} is not one of this run's phases {names}")
    return phases


def finished(cfg: TrainConfig) -> bool:
    """Whether a phase already reached its steps (its summary says so)."""
    path = cfg.resolve(cfg.log_root) / cfg.run / "summary.json"
    return path.exists() and json.loads(path.read_text())["steps"] >= cfg.steps


def run_phases(
    cfg: PhasedTrainConfig,
    phases: list[PhasedTrainConfig],
    fit_phase: FitPhase,
    log: logging.Logger,
    ckpt_dir: Path,
    log_dir: Path,
) -> dict[str, Any]:
    """Run (or resume, or skip) each phase with ``fit_phase``; returns the run's summary (also written).

    ``fit_phase`` makes the model ready for its stage (what it trains, its loss, the weights it starts
    from) and calls :func:`models.harness.loop.fit`.
    """
    stages = [p["stage"] for p in cfg.phases]
    summaries: dict[str, Any] = {}
    previous: Path | None = None
    for stage, pcfg in zip(stages, phases, strict=True):
        phase_dir = pcfg.resolve(pcfg.checkpoint_root) / pcfg.run
        if (cfg.stage is None or cfg.stage == stage) and not finished(pcfg):
            for root in (pcfg.checkpoint_root, pcfg.log_root):
                (pcfg.resolve(root) / pcfg.run).mkdir(parents=True, exist_ok=True)
            log.info("phase %s: up to %d steps", stage, pcfg.steps)
            summaries[stage] = fit_phase(stage, pcfg, previous)
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
