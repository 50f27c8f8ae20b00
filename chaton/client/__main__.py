"""``python -m chaton.client [HOST[:PORT]] [options]``: the client without the ``chaton`` CLI."""

from __future__ import annotations

import sys

from chaton.client import main

if __name__ == "__main__":
    sys.exit(main())
