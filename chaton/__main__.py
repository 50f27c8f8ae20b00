"""``python -m chaton`` is the ``chaton`` command."""

from chaton.cli import main

raise SystemExit(main())
