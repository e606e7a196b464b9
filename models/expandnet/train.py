"""Train ExpandNet on CPU: ``python -m models.train --model expandnet`` (``configs/default.json``).

The MQN harness (:mod:`models.harness.loop`): the same scenes, split, SDR synthesis, validation views and
absolute PQ targets; resumable checkpoints under ``models/checkpoints/<run>/``. Views are ``crop`` pixels
square at full resolution (every layer but the global branch runs there); the global branch sees each view
resized to 256 x 256 with Pillow's bilinear filter, bit for bit what the operator feeds it.
"""

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.harness.cli import train_main
from models.harness.config import TrainConfig
from models.harness.loop import Batch, Validation, fit, load_data, start_run
from models.mqn.data import Sample, SceneBank, SynthesisConfig, downscale

log = logging.getLogger("models.expandnet.train")

CONFIGS = Path(__file__).parent / "configs"


@dataclass
class ExpandNetTrainConfig(TrainConfig):
    """MQN's run settings, ExpandNet's defaults; ``net_sizes``, ``val_net`` and ``init_from`` are unused."""

    run: str = "expandnet"
    crop: int = 256
    """Side of the square full-resolution training views (the paper trains on 256 x 256)."""
    batch_size: int = 8
    val_size: int = 256


def inputs_of(samples: list[Sample], global_size: int) -> Batch:
    """(frame, global view) in [0, 1], NHWC float32: what the network is given for these samples."""
    frame = np.stack([s.sdr for s in samples]).astype(np.float32) / 255.0
    view = (
        np.stack([downscale(s.sdr, (global_size, global_size)) for s in samples]).astype(np.float32) / 255.0
    )
    return frame, view


def batches(
    bank: SceneBank, batch_size: int, size: int, global_size: int, cfg: SynthesisConfig, seed: int
) -> Iterator[Batch]:
    """Endless (frame, global view, base PQ, target PQ) batches, deterministic for a seed."""
    rng = np.random.default_rng(seed)
    while True:
        items = [bank.sample(rng, (size, size), cfg) for _ in range(batch_size)]
        yield (
            *inputs_of(items, global_size),
            np.stack([s.base for s in items]),
            np.stack([s.target for s in items]),
        )


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) training; returns the summary that is also written to ``summary.json``.

    Raises
    ------
    ValueError
        If the config asks for a warm start (MQN only) or an unknown model key.
    """
    if cfg.init_from:
        raise ValueError("init_from (warm start) is MQN's; ExpandNet trains from scratch")
    ckpt_dir, _ = start_run(cfg, log)
    from models.expandnet.losses import LossWeights, expandnet_loss
    from models.expandnet.model import ExpandNetConfig, build_expandnet

    mcfg = ExpandNetConfig.from_json(cfg.model)
    (ckpt_dir / "model.json").write_text(json.dumps(mcfg.to_json(), indent=2))
    model, _, _ = build_expandnet(mcfg)
    data = load_data(cfg, log)
    val = Validation.of(
        data.val, (*inputs_of(data.val, mcfg.global_size), np.stack([s.base for s in data.val]))
    )
    weights = LossWeights(**cfg.loss)

    def loss(m: Any, batch: Any) -> Any:
        frame, view, base, target = batch
        return expandnet_loss(target, m([frame, view, base], training=True), weights, base)

    def predict(inputs: Batch) -> np.ndarray:
        return np.asarray(model(list(inputs), training=False), np.float32)

    def stream(seed: int) -> Iterator[Batch]:
        return batches(data.train, cfg.batch_size, cfg.crop, mcfg.global_size, data.synthesis, seed)

    return fit(cfg, model, loss, predict, stream, val, log)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    return train_main(
        argv,
        prog="python -m models.train --model expandnet",
        description=__doc__,
        default_config=CONFIGS / "default.json",
        load=ExpandNetTrainConfig.load,
        train=train,
    )


if __name__ == "__main__":
    raise SystemExit(main())
