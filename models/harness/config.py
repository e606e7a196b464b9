"""``TrainConfig``: the settings of one training run, for every model the harness trains.

Its fields and defaults are MQN's (the first model, and ``python -m models.train``'s default); a model with
other defaults subclasses it (``ExpandNetTrainConfig``). Runs store it as ``config.json`` beside their
checkpoints, and ``models/mqn/configs/*.json`` name exactly these keys, so a field is renamed or removed
only with every config and checkpoint folder that holds it.
"""

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from models.mqn.data import DEFAULT_DATA_DIR, DEFAULT_VAL_SCENES, REPO_ROOT


@dataclass
class TrainConfig:
    """Everything a run depends on; stored as ``config.json`` next to its checkpoints."""

    run: str = "mqn"
    data_dir: str | None = None
    val_scenes: tuple[str, ...] = DEFAULT_VAL_SCENES
    crop: int = 384
    """Side of the square full-resolution views the curves are sliced at and the loss is computed on."""
    net_sizes: tuple[int, ...] = (96, 128, 192)
    """Network input sides (multiples of 32), one per batch: 2-4x below the view, as frames at run time."""
    wide_share: float = 0.0
    """Share of batches of 16:9 views, seen through the runtime's squeezed 2:1 view (MQN only;
    ``models.mqn.data.batches``)."""
    batch_size: int = 8
    steps: int = 20000
    max_minutes: float = 75.0
    lr: float = 1e-3
    lr_min: float = 2e-5
    warmup_steps: int = 200
    lr_scale: dict[str, float] = field(default_factory=dict)
    """Learning-rate multipliers by layer-name prefix (e.g. ``{"head_": 10}``). Adam moves a parameter by
    about the learning rate per step whatever the loss weights say, so a small layer whose outputs must
    travel several units (a log-slope from -2 to +1) cannot get there in a fine-tune at the backbone's rate;
    measured on ``mqn_v8``'s peak curve (model card)."""
    val_every: int = 500
    val_per_scene: int = 4
    val_size: int = 384
    val_net: int = 128
    log_every: int = 50
    seed: int = 0
    threads: int = 2
    prefetch: int = 6
    model: dict[str, Any] = field(default_factory=dict)
    synthesis: dict[str, Any] = field(default_factory=dict)
    loss: dict[str, float] = field(default_factory=dict)
    init_from: str | None = None
    """Warm start (fresh runs only): an earlier run's checkpoint folder (its ``best.weights.h5``) or one of
    its ``*.weights.h5`` files, loaded into every layer of this model with the same name and weight shapes
    (the others keep their initialisation). How a new head part is trained on top of a backbone that
    already learned."""
    init_fresh: tuple[str, ...] = ()
    """Layers a warm start leaves at their initialisation although the source has them: how a part that
    its source never really trained (``mqn_v6``'s peak curve, stuck on the base curve) starts over."""
    checkpoint_root: str = "models/checkpoints"
    log_root: str = "models/logs"

    def __post_init__(self) -> None:
        if self.init_fresh and not self.init_from:
            raise ValueError("init_fresh names layers to leave out of a warm start, but init_from is not set")

    @classmethod
    def load(cls, path: Path, overrides: dict[str, Any] | None = None) -> "TrainConfig":
        """Read a JSON config (unknown keys are an error, so typos do not silently fall back)."""
        raw = json.loads(path.read_text())
        raw.update(overrides or {})
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(
                f"config keys {sorted(unknown)} are not known; expected a subset of {sorted(known)}"
            )
        for key in ("val_scenes", "net_sizes", "init_fresh"):
            if key in raw:
                raw[key] = tuple(raw[key])
        return cls(**raw)

    def resolve(self, rel: str) -> Path:
        """Paths in configs are relative to the repository root."""
        p = Path(rel)
        return p if p.is_absolute() else REPO_ROOT / p

    @property
    def data_path(self) -> Path:
        """Scene directory (default ``<repo>/../shared/data/hdr``)."""
        return self.resolve(self.data_dir) if self.data_dir else DEFAULT_DATA_DIR
