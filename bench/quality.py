"""The MQN model-card quality table: ``python -m bench.quality`` (same as ``python -m models.evaluate``).

Writes ``models/results/eval.json`` / ``eval.md`` and a copy of the table in ``bench/results/quality.json``.
"""

import json
import sys
from pathlib import Path

from bench._report import write
from models.mqn.evaluate import main

if __name__ == "__main__":
    code = main(sys.argv[1:])
    result = Path(__file__).resolve().parents[1] / "models" / "results" / "eval.json"
    if code == 0 and result.exists():
        table = json.loads(result.read_text())["table"]
        print(f"wrote {write('quality', [{'method': k, **v} for k, v in table.items()])}")
    raise SystemExit(code)
