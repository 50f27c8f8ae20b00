#!/usr/bin/env python3
"""Make chaton's private CA and server certificate without installing chaton.

Usage (from anywhere; the repository root is put on the import path):

    python scripts/gen_certs.py [--certs-dir certs] [--host chat.example.com] [--force]

It is the same command as ``chaton certs``; ``--help`` lists every option. Hand the
resulting ``certs/ca.pem`` to clients and keep the ``*-key.pem`` files secret.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chaton.certs import main  # after the path insert above

if __name__ == "__main__":
    raise SystemExit(main())
