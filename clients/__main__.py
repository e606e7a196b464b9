"""``python -m clients``: the ``itmstream-client`` CLI without an installed entry point."""

import sys

from clients.cli import main

sys.exit(main())
