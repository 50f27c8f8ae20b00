"""Wire the durable services (store, accounts, bans) into a :class:`ChatServer`."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from chaton.server import accounts, admin
from chaton.server.accounts import AccountService
from chaton.store import Store

if TYPE_CHECKING:
    from chaton.server.app import ChatServer

__all__ = ["attach_services"]


def attach_services(server: ChatServer) -> AccountService:
    """Open the database in the data dir (made 0700) and attach accounts, bans and admin."""
    data_dir = server.settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    service = AccountService(server, Store(server.settings.db_file))
    server.accounts = service
    server.commands.update(accounts.COMMANDS)
    server.commands.update(admin.COMMANDS)
    return service
