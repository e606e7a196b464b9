"""Root of the test tree: puts the repository on sys.path so shared helpers import as ``tests.<dir>.<module>``
(the importlib import mode does not add test directories to sys.path)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import models  # noqa: E402, F401  (sets TensorFlow's oneDNN switch before any test imports TensorFlow)
