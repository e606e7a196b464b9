"""Where an evaluation table goes: ``<out>.json`` (figures and what they were measured on) and ``<out>.md``.

Every model's evaluation writes through :func:`write_table`, so the files of one model read like another's.
"""

import json
import platform
from pathlib import Path
from typing import Any

from models.harness.evaluation import PEAK
from models.mqn.data import DEFAULT_VAL_SCENES


def markdown(table: dict[str, dict[str, float]]) -> str:
    """The model-card table."""
    head = (
        "| method | abs PU21-PSNR ↑ | abs PQ-SSIM ↑ | abs ΔE_ITP ↓ | shape PU21-PSNR ↑ | shape PQ-SSIM ↑ "
        "| shape ΔE_ITP ↓ | mid-tone ratio | highlights PU21-PSNR ↑ |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {n} | {r['abs_pu21_psnr']:.2f} | {r['abs_pq_ssim']:.4f} | {r['abs_de_itp']:.2f} "
        f"| {r['shape_pu21_psnr']:.2f} | {r['shape_pq_ssim']:.4f} | {r['shape_de_itp']:.2f} "
        f"| {r['midtone_ratio']:.3f} | {r.get('highlight_pu21_psnr', float('nan')):.2f} |"
        for n, r in table.items()
    ]
    return head + "\n".join(lines) + "\n"


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
