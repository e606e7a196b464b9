"""Shared output format of the benchmarks: one line per case, plus a JSON record in bench/results/."""

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def line(name: str, frames: int, seconds: float) -> str:
    """The house format: `'<name>': N frames in S s => X ms/frame (Y FPS)`."""
    per_frame_ms = 1e3 * seconds / frames
    fps = frames / seconds
    return f"'{name}': {frames} frames in {seconds:.3f} s => {per_frame_ms:.2f} ms/frame ({fps:.1f} FPS)"


def environment() -> dict[str, Any]:
    """Machine, versions and git sha, so a figure can be traced back to what produced it."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        sha = "unknown"
    import numpy

    return {
        "python": sys.version.split()[0],
        "numpy": numpy.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        # Other work on the machine skews every figure; the 1/5/15-minute load average records it.
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "git_sha": sha,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write(subject: str, cases: list[dict[str, Any]], settings: dict[str, Any] | None = None) -> Path:
    """Write ``bench/results/<subject>.json`` and return its path; ``settings`` records how it was run."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{subject}.json"
    record: dict[str, Any] = {"environment": environment()}
    if settings is not None:
        record["settings"] = settings
    record["cases"] = cases
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def write_markdown(subject: str, text: str) -> Path:
    """Write ``bench/results/<subject>.md`` (a table ready to paste into a document) and return its path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{subject}.md"
    path.write_text(text if text.endswith("\n") else text + "\n")
    return path
