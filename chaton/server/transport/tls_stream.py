"""Sans-IO TLS for one server connection, over ``ssl.MemoryBIO``.

Why not asyncio's own TLS transport: it keeps a 256 KiB read buffer per connection (a
thousand idle clients would pin a quarter of a gigabyte), it writes one TLS record per
``write()`` call, and a failed handshake never reaches the protocol, so a plain-text client
cannot be told what is wrong. Here the connection owns the bytes both ways: ciphertext in
through :meth:`receive`, plaintext out through :meth:`encrypt`, and whatever TLS itself
needs to send (handshake, alerts, tickets) through :meth:`outgoing`.
"""

from __future__ import annotations

import contextlib
import ssl

__all__ = ["TLS_RECORD_HANDSHAKE", "TlsClosed", "TlsStream"]

#: First byte of a TLS handshake record; anything else on a fresh connection is not TLS.
TLS_RECORD_HANDSHAKE = 0x16
_READ_CHUNK = 16384
#: OpenSSL's memory BIOs keep the largest size they ever held, for the life of the
#: connection; passing bytes through in slices this big bounds that to ~4 KiB per direction
#: instead of the largest burst a client ever sent or received.
BIO_SLICE = 4096


class TlsClosed(Exception):
    """The peer sent close_notify: a clean end of the TLS session."""


class TlsStream:
    """One server-side TLS session. Every method may raise ``ssl.SSLError``."""

    __slots__ = ("_in", "_obj", "_out", "handshaken")

    def __init__(self, context: ssl.SSLContext) -> None:
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = context.wrap_bio(self._in, self._out, server_side=True)
        self.handshaken = False

    @property
    def version(self) -> str | None:
        return self._obj.version()

    @property
    def alpn(self) -> str | None:
        """The application protocol the client and we agreed on (``http/1.1`` or none)."""
        return self._obj.selected_alpn_protocol()

    @property
    def cipher(self) -> str | None:
        info = self._obj.cipher()
        return info[0] if info else None

    def receive(self, data: bytes) -> bytes:
        """Feed ciphertext; return the plaintext it completes (maybe ``b""``)."""
        if len(data) <= BIO_SLICE:
            return self._receive(data)
        parts = [self._receive(data[i : i + BIO_SLICE]) for i in range(0, len(data), BIO_SLICE)]
        return b"".join(parts)

    def _receive(self, data: bytes) -> bytes:
        self._in.write(data)
        if not self.handshaken:
            try:
                self._obj.do_handshake()
            except ssl.SSLWantReadError:
                return b""
            self.handshaken = True
        chunks: list[bytes] = []
        while True:
            try:
                chunk = self._obj.read(_READ_CHUNK)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                if chunks:
                    break
                raise TlsClosed() from None
            if not chunk:
                break
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def encrypt(self, plaintext: bytes) -> bytes:
        """Encrypt application data; return all ciphertext to send (with any TLS output)."""
        if len(plaintext) <= BIO_SLICE:
            self._obj.write(plaintext)
            return self._out.read()
        out = []
        for i in range(0, len(plaintext), BIO_SLICE):
            self._obj.write(plaintext[i : i + BIO_SLICE])
            out.append(self._out.read())
        return b"".join(out)

    def outgoing(self) -> bytes:
        """Ciphertext TLS wants sent on its own account (handshake, tickets, alerts)."""
        return self._out.read() if self._out.pending else b""

    def close(self) -> bytes:
        """Start a clean shutdown; return the close_notify alert to send."""
        with contextlib.suppress(ssl.SSLError):
            self._obj.unwrap()
        return self.outgoing()
