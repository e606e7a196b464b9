"""``--model NAME`` for ``python -m models.train | export | evaluate``: one entry point per verb, any model.

Each model package has its own ``train``/``export``/``evaluate`` module with a ``main(argv)``; the entry point
takes ``--model`` off the command line and hands the rest to that ``main``, so every model keeps its own
options and ``--help``. Without ``--model`` it is ``mqn``, as it always was.
"""

import argparse
import json
from importlib import import_module
from typing import Any

MODELS = ("mqn", "expandnet")
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
