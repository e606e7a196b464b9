"""``python -m models.train``: the MQN trainer (see :mod:`models.mqn.train`)."""

from models.mqn.train import main

if __name__ == "__main__":
    raise SystemExit(main())
