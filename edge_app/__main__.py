"""``python -m edge_app``: the ``edge-app`` command without its console script (the tests run the
daemon this way, so they need no installed entry point)."""

import sys

from edge_app.cli import main

sys.exit(main())
