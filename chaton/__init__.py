"""chaton: a self-hosted, TLS-only team chat server and terminal client that speaks IRC."""

__version__ = "0.1.0"
