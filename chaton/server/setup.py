"""Wire the durable services (store, accounts, bans) into a :class:`ChatServer`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from chaton.datadir import DataDirLock, private_dir
from chaton.server.accounts import AccountService
from chaton.server.history import History
from chaton.server.retention import Retention
from chaton.server.room_registry import RoomRegistry
from chaton.store import Store, StoreError

if TYPE_CHECKING:
    from chaton.server.app import ChatServer

__all__ = ["attach_services"]

log = logging.getLogger("chaton")

RESTORE_HINT = "restore a backup (see 'Backups' in the README) or move the file away"


def attach_services(server: ChatServer) -> AccountService:
    """Lock the data dir (made 0700 if new), open and check its database, attach the services.

    Raises :class:`chaton.datadir.DataDirInUse` when another server holds the data dir and
    :class:`StoreError` (one line saying what to do) when the database is unusable.
    """
    data_dir = server.settings.data_dir
    warning = private_dir(data_dir)
    if warning:
        log.warning("data-dir: %s", warning)
    lock = DataDirLock(data_dir).acquire()
    try:
        store = Store(server.settings.db_file)
        try:
            problems = store.integrity_check(quick=True)
            if problems != ["ok"]:
                raise StoreError(
                    f"database {store.path} is damaged ({'; '.join(problems[:2])}); "
                    + RESTORE_HINT
                )
            service = AccountService(server, store, lock)
        except BaseException:
            store.close()
            raise
    except StoreError as exc:
        lock.release()
        text = str(exc)
        damaged = any(word in text for word in ("not a database", "malformed", "corrupt"))
        if damaged and RESTORE_HINT not in text:
            text = f"{text}; {RESTORE_HINT}"  # a full disk or a permission needs no restore
        raise StoreError(text) from None
    except BaseException:
        lock.release()
        raise
    server.accounts = service
    server.authority = service.authority
    registry = RoomRegistry(server, store, service.writer)
    try:
        if registry.register_default(server.settings.default_channel):
            log.info("registered the default room %s, owned by the admins",
                     server.settings.default_channel)
        log.info("registered rooms: %d", registry.load())
    except StoreError:
        service.close()
        raise
    server.registry = registry
    if server.settings.history:
        server.history = History(server.settings.db_file, server.settings.history_max_pending)
        server.retention = Retention(server)
    return service
