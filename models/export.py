"""``python -m models.export``: LiteRT export of MQN (see :mod:`models.mqn.export`)."""

from models.mqn.export import main

if __name__ == "__main__":
    raise SystemExit(main())
