"""``python -m models.train [--model NAME] ...``: a model's trainer (``models/<model>/train.py``)."""

from models.harness.cli import dispatch

if __name__ == "__main__":
    raise SystemExit(dispatch("train"))
