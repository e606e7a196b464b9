"""``python -m models.export [--model NAME] ...``: LiteRT export (``models/<model>/export.py``)."""

from models.harness.cli import dispatch

if __name__ == "__main__":
    raise SystemExit(dispatch("export"))
