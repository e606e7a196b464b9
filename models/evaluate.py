"""``python -m models.evaluate``: the MQN model-card table (see :mod:`models.mqn.evaluate`)."""

from models.mqn.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
