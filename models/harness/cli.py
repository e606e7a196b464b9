"""``--model NAME`` for ``python -m models.train | export | evaluate``: one entry point per verb, any model.

Each model package has its own ``train``/``export``/``evaluate`` module with a ``main(argv)``; the entry point
takes ``--model`` off the command line and hands the rest to that ``main``, so every model keeps its own
options and ``--help``. Without ``--model`` it is ``mqn``, as it always was. The options every model's
``main`` shares are declared once, so a verb takes the same flags whichever model it runs: training's here
(:func:`train_main`) and export's (:func:`export_main`), evaluation's in :mod:`models.harness.evaluation`.
"""

import argparse
import json
import logging
from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import Any

from models.harness.config import TrainConfig

MODELS = ("mqn", "expandnet", "singlehdr", "region_lstm")
DEFAULT_MODEL = "mqn"


def dispatch(verb: str, argv: list[str] | None = None) -> int:
    """Run ``models.<model>.<verb>.main`` with the arguments that are not ``--model``."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--model", choices=MODELS, default=DEFAULT_MODEL)
    args, rest = parser.parse_known_args(argv)
    main = import_module(f"models.{args.model}.{verb}").main
    return int(main(rest))


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``KEY=JSON`` strings (``--set``) -> a dict; a value that is not JSON is kept as a string."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


def train_main(
    argv: list[str] | None,
    *,
    prog: str,
    description: str | None,
    default_config: Path,
    load: Callable[[Path, dict[str, Any]], TrainConfig],
    train: Callable[[TrainConfig], dict[str, Any]],
) -> int:
    """``--config PATH [--set KEY=JSON ...]``: load the run's config, train, print the summary as JSON.

    Parameters
    ----------
    load : callable
        The model's ``TrainConfig.load`` (its subclass carries the model's defaults).
    train : callable
        The model's ``train(cfg)``.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", type=Path, default=default_config)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="override a config key, e.g. --set max_minutes=5 --set run='\"x\"'",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    summary = train(load(args.config, parse_overrides(args.set)))
    print(json.dumps(summary, indent=2))
    return 0


def export_main(
    argv: list[str] | None,
    *,
    prog: str,
    description: str | None,
    export: Callable[..., dict[str, Any]],
    run: str,
    out: Path,
    calibration_per_scene: int,
    shown: tuple[str, ...],
) -> int:
    """``--run NAME [--checkpoints DIR] [--out DIR] [--weights best|last] ...``: export one run.

    Parameters
    ----------
    export : callable
        The model's ``export(run_dir, out_dir, data_dir, n_per_scene, which=...)``, returning its metadata.
    shown : tuple of str
        The metadata keys printed as JSON (the files written and the model's size).
    """
    from models.mqn.data import DEFAULT_DATA_DIR, REPO_ROOT

    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--run", default=run)
    p.add_argument("--checkpoints", type=Path, default=REPO_ROOT / "models" / "checkpoints")
    p.add_argument("--out", type=Path, default=out)
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--weights", choices=("best", "last"), default="best")
    p.add_argument("--calibration-per-scene", type=int, default=calibration_per_scene)
    args = p.parse_args(argv)
    meta = export(
        args.checkpoints / args.run, args.out, args.data_dir, args.calibration_per_scene, which=args.weights
    )
    print(json.dumps({k: meta[k] for k in shown}, indent=2))
    return 0
