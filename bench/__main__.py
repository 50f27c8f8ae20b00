"""Entry point of ``python -m bench`` (run it from the repository root)."""

from __future__ import annotations

from bench.run import main

raise SystemExit(main())
