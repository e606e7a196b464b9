"""Train the region-map ConvLSTM on CPU: ``python -m models.train --model region_lstm``.

The full run is ``configs/default.json``: the paper's schedule as the run's ``phases``
(:mod:`models.harness.phases`), one command for both: SParam-Net alone on the pseudo-HDR image (``sparam``:
the ConvLSTM and the decoder are not even run), then the whole model from there (``joint``: α Loss_LSTM +
β Loss_SParam, :mod:`models.region_lstm.losses`). Each phase is a run of the MQN harness
(:func:`models.harness.loop.fit`: the same scenes, split, synthesis, validation views and absolute PQ
targets), checkpointed under ``models/checkpoints/<run>/<phase>/``; rerunning resumes,
``--set stage='"joint"'`` runs one phase. Views are ``crop`` pixels square at full resolution (the
``quality`` mode's input); SParam-Net reads each view resized to 256² and its region maps, computed by the
operator's own functions (:func:`service.operators.region_lstm.network_inputs`).
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
from models.mqn.data import Sample, SceneBank, SynthesisConfig
from service.operators.region_lstm import network_inputs

log = logging.getLogger("models.region_lstm.train")

CONFIGS = Path(__file__).parent / "configs"
STAGES = ("sparam", "joint")
"""The phases' stages (:data:`models.region_lstm.losses.PHASES`, named here without TensorFlow)."""


def _default_phases() -> list[dict[str, Any]]:
    return [{"stage": stage} for stage in STAGES]


@dataclass
class RegionLSTMTrainConfig(phases.PhasedTrainConfig):
    """MQN's run settings, this model's defaults, and the phases (the last must be ``joint``).

    ``net_sizes``, ``val_net`` and ``init_from`` are unused. A phase's ``loss`` is merged over the run's.
    """

    run: str = "region_lstm"
    crop: int = 256
    """Side of the square training views (a multiple of the model's stride; the paper trains on 256²)."""
    batch_size: int = 4
    """The paper's batch of four."""
    val_size: int = 256
    phases: list[dict[str, Any]] = field(default_factory=_default_phases)


def inputs_of(samples: list[Sample], sparam_size: int) -> Batch:
    """(frame, SParam view and maps, anchor, bounds), float32: what the network is given for these samples.

    The anchor is the sample's ``base`` (PQ of the BT.2408 placement), which the operator builds from the
    frame's colour description.
    """
    frames = np.stack([s.sdr for s in samples])
    sparam_view, unit, bounds = network_inputs(frames, sparam_size)
    anchor = np.stack([s.base for s in samples]).astype(np.float32)
    return unit, sparam_view.astype(np.float32) / 255.0, anchor, bounds


def batches(
    bank: SceneBank, batch_size: int, size: int, sparam_size: int, cfg: SynthesisConfig, seed: int
) -> Iterator[Batch]:
    """Endless (frame, SParam view, anchor, bounds, target PQ) batches, deterministic for a seed."""
    rng = np.random.default_rng(seed)
    while True:
        items = [bank.sample(rng, (size, size), cfg) for _ in range(batch_size)]
        yield (*inputs_of(items, sparam_size), np.stack([s.target for s in items]))


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) every phase; returns the summary also written to ``<log_root>/<run>/summary.json``.

    Raises
    ------
    ValueError
        If the config asks for a warm start, names an unknown phase, stage or model key, does not end with
        ``joint``, or has views that are not multiples of the stride.
    """
    if not isinstance(cfg, RegionLSTMTrainConfig):
        raise TypeError(f"expected a RegionLSTMTrainConfig, got {type(cfg).__name__}")
    if cfg.init_from:
        raise ValueError("init_from (warm start) is MQN's; region_lstm trains from scratch, phase by phase")
    phase_cfgs = phases.check_phases(cfg, STAGES)
    if not cfg.phases or cfg.phases[-1]["stage"] != "joint":
        raise ValueError(f"the last phase must be 'joint' (the exported model); got {cfg.phases}")
    from models.region_lstm.model import RegionLSTMConfig

    mcfg = RegionLSTMConfig.from_json(cfg.model)
    for size in (cfg.crop, cfg.val_size):
        if size % mcfg.stride:
            raise ValueError(f"view side {size} must be a multiple of the model's stride {mcfg.stride}")
    ckpt_dir, log_dir = start_run(cfg, log)
    from models.region_lstm.losses import LossWeights, phase_loss
    from models.region_lstm.model import build_region_lstm

    (ckpt_dir / "model.json").write_text(json.dumps(mcfg.to_json(), indent=2))
    net = build_region_lstm(mcfg)
    trained = {"sparam": net.pseudo, "joint": net.model}
    data = load_data(cfg, log)
    val = Validation.of(data.val, inputs_of(data.val, mcfg.sparam_size))

    def fit_phase(stage: str, pcfg: TrainConfig, previous: Path | None) -> dict[str, Any]:
        model = trained[stage]
        weights = LossWeights(**pcfg.loss)

        def outputs(m: Any, inputs: Batch, training: bool) -> Any:
            _, view, anchor, _ = inputs
            return m([view, anchor] if stage == "sparam" else list(inputs), training=training)

        def loss(m: Any, batch: Any) -> Any:
            return phase_loss(stage, outputs(m, batch[:4], True), batch[2], batch[4], weights)

        def predict(inputs: Batch) -> np.ndarray:
            out = outputs(model, inputs, False)
            return np.asarray(out if stage == "sparam" else out[-1], np.float32)

        def init() -> None:
            if previous is not None:  # the folder of the phase before: its model's weights
                trained[previous.name].load_weights(previous / "last.weights.h5")

        def stream(seed: int) -> Iterator[Batch]:
            return batches(data.train, pcfg.batch_size, pcfg.crop, mcfg.sparam_size, data.synthesis, seed)

        return fit(pcfg, model, loss, predict, stream, val, log, init)

    return phases.run_phases(cfg, phase_cfgs, fit_phase, log, ckpt_dir, log_dir)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    return train_main(
        argv,
        prog="python -m models.train --model region_lstm",
        description=__doc__,
        default_config=CONFIGS / "default.json",
        load=RegionLSTMTrainConfig.load,
        train=train,
    )


if __name__ == "__main__":
    raise SystemExit(main())
