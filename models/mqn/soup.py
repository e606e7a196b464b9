"""Average the weights of trained runs (a model soup): ``python -m models.mqn.soup --config CONFIG``.

Soup configs live in ``models/mqn/configs/soups/``, one per averaged run (the shipped ``mqn_v38.json``).

Two fine-tunes of one parent that each learned a different half of what we want can be averaged
weight by weight into one network of the same size and speed (Wortsman et al., "Model soups", ICML 2022):
fine-tunes from a shared start stay in one basin of the loss, so their mean is a model, not noise.
``mqn_v36`` (larger views) is the best run on the wider screen but dims the night lamps; ``mqn_v34``
(larger views, then its peak curve retuned) keeps the lamps; their mean keeps most of each (model card,
``mqn_v38``). Retuning the peak curve of ``mqn_v36`` instead (``mqn_v37``) cost three times as much.

Config: ``{"run": NAME, "ingredients": {RUN: SHARE, ...}, "weights": "best"|"last"}``; a list of runs
means equal shares, shares are normalised to sum to 1, and ``checkpoint_root``/``log_root`` are as in
training. The ingredients must share the architecture and the data split. The soup is written as a run
of its own (``best.weights.h5``, ``model.json``, the first ingredient's ``config.json`` under the new name,
and a ``summary.json`` naming its ingredients), so ``python -m models.export --run NAME`` takes it like
any trained run.
"""

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from models.harness.config import TrainConfig
from models.harness.export import training_summary
from models.mqn.data import REPO_ROOT

DEFAULTS = {
    "weights": "best",
    "checkpoint_root": TrainConfig.checkpoint_root,
    "log_root": TrainConfig.log_root,
}


def _root(path: str) -> Path:
    return REPO_ROOT / path  # an absolute root wins, as in training


def soup_settings(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    """(settings with defaults, {ingredient: share} summing to 1) of a soup config; refuses a bad one."""
    cfg = DEFAULTS | config
    unknown = set(cfg) - {"run", "ingredients", *DEFAULTS}
    if unknown:
        raise ValueError(f"unknown soup settings: {sorted(unknown)}")
    ingredients = cfg["ingredients"]
    shares = ingredients if isinstance(ingredients, dict) else dict.fromkeys(ingredients, 1.0)
    if len(shares) < 2:
        raise ValueError("a soup needs at least two ingredients")
    if min(shares.values()) <= 0:
        raise ValueError("every ingredient needs a positive share")
    total = float(sum(shares.values()))
    return cfg, {name: float(share) / total for name, share in shares.items()}


def soup(config: dict[str, Any]) -> dict[str, Any]:
    """Write the run ``config["run"]`` as the weighted mean of its ingredients; returns its summary."""
    from models.mqn.export import load_trained
    from models.mqn.model import MQNConfig

    cfg, shares = soup_settings(config)
    names = list(shares)
    weights = np.asarray(list(shares.values()), np.float64)
    runs = [_root(cfg["checkpoint_root"]) / name for name in names]
    # Normalised through the config class: a run saved before a switch existed lacks its (default) key.
    architectures = [
        MQNConfig.from_json(json.loads((run / "model.json").read_text())).to_json() for run in runs
    ]
    configs = [json.loads((run / "config.json").read_text()) for run in runs]
    for name, arch, train_cfg in zip(names[1:], architectures[1:], configs[1:], strict=True):
        if arch != architectures[0]:
            raise ValueError(f"{name} has another architecture than {names[0]}: weights cannot be averaged")
        if train_cfg["val_scenes"] != configs[0]["val_scenes"]:
            raise ValueError(f"{name} was trained on another split than {names[0]}")
    models = [load_trained(run, cfg["weights"])[1] for run in runs]
    mean = models[0]
    for i, var in enumerate(mean.weights):
        values = np.stack([np.asarray(m.weights[i].numpy(), np.float64) for m in models])
        var.assign(np.tensordot(weights, values, axes=1).astype(var.dtype))
    out = _root(cfg["checkpoint_root"]) / cfg["run"]
    out.mkdir(parents=True, exist_ok=True)
    mean.save_weights(out / "best.weights.h5")
    (out / "model.json").write_text(json.dumps(architectures[0], indent=2))
    (out / "config.json").write_text(json.dumps(configs[0] | {"run": cfg["run"]}, indent=2))
    summary = {
        "run": cfg["run"],
        "soup": {
            "ingredients": dict(zip(names, weights.round(4).tolist(), strict=True)),
            "weights": cfg["weights"],
        },
        "ingredients": {
            name: training_summary(c | {"log_root": cfg["log_root"]})
            for name, c in zip(names, configs, strict=True)
        },
    }
    logs = _root(cfg["log_root"]) / cfg["run"]
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: ``--config PATH``."""
    parser = argparse.ArgumentParser(prog="python -m models.mqn.soup", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    args = parser.parse_args(argv)
    print(json.dumps(soup(json.loads(args.config.read_text())), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
