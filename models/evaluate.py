"""``python -m models.evaluate [--model NAME] ...``: a quality table (``models/<model>/evaluate.py``)."""

from models.harness.cli import dispatch

if __name__ == "__main__":
    raise SystemExit(dispatch("evaluate"))
