"""Where an evaluation table goes: ``<out>.json`` (figures and what they were measured on) and ``<out>.md``.

MQN's evaluation writes the same two files its own way (:mod:`models.mqn.evaluate`); it should use this.
"""

import json
import platform
from pathlib import Path
from typing import Any

from models.mqn.data import DEFAULT_VAL_SCENES
from models.mqn.evaluate import PEAK, markdown


def write_table(out: Path, table: dict[str, dict[str, float]], cases: int, size: tuple[int, int]) -> str:
    """Write the table as JSON (cases, view size, scenes, peak, machine) and Markdown; returns the latter."""
    md = markdown(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "table": table,
        "cases": cases,
        "size": list(size),
        "scenes": list(DEFAULT_VAL_SCENES),
        "peak_nits": PEAK,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    out.write_text(json.dumps(meta, indent=2))
    out.with_suffix(".md").write_text(md)
    return md
