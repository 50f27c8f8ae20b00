"""The web client's files, read once from the installed package and served from memory.

Why from memory: the set is small and fixed, so a request is a dictionary lookup, never a
path joined from client input (no traversal to reason about), and it works with no
internet and no file system access after start. Each file has a strong ETag so a browser
revalidates with one round trip (``Cache-Control: no-cache``) and always runs the version
the server has.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

__all__ = ["CONTENT_TYPES", "Asset", "load_assets"]

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
    ".txt": "text/plain; charset=utf-8",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def _walk(folder: Traversable, prefix: str) -> dict[str, Asset]:
    found: dict[str, Asset] = {}
    for entry in folder.iterdir():
        name = entry.name
        if name.startswith("."):
            continue
        if entry.is_dir():
            found.update(_walk(entry, f"{prefix}{name}/"))
            continue
        ctype = CONTENT_TYPES.get(name[name.rfind(".") :].lower()) if "." in name else None
        if ctype is None:
            continue  # only types we name are served (no sniffing, no surprises)
        body = entry.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        found[f"{prefix}{name}"] = Asset(body, ctype, etag)
    return found


def load_assets() -> dict[str, Asset]:
    """Every servable file, by URL path (``/index.html``; ``/`` is the index too)."""
    root = resources.files("chaton.web").joinpath("static")
    assets = _walk(root, "/") if root.is_dir() else {}
    if "/index.html" in assets:
        assets["/"] = assets["/index.html"]
    return assets
