"""``chaton history export|purge``: the message store, for admins, on the database.

Safe while the server runs: both use SQLite's own locking; a purge deletes in bounded
chunks (each one commit, so the server's message commits wait for one chunk at most) and
takes the words out of the search index in the same commits. Every purge is audited (who,
what, how many; never a message's text). An export is read-only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import IO

from chaton.cli_admin import EXIT_OK, CliError, _actor, _command, _open, _settings
from chaton.history_store import HistoryStore, StoredMessage, room_key
from chaton.protocol.durations import DurationError, parse_duration
from chaton.protocol.names import BadRoomName, room_name
from chaton.server.lines import server_time

__all__ = ["add_history_subcommands"]


def _moment(text: str) -> float:
    """``30d`` (that long ago) or an ISO date/time (UTC unless it says otherwise)."""
    try:
        return time.time() - parse_duration(text)
    except DurationError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CliError(f"{text!r} is neither a duration (30d, 12h) nor a date "
                       "(2026-01-31 or 2026-01-31T12:00:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _room(text: str) -> str:
    try:
        return room_key(room_name(text, 200))
    except BadRoomName as why:
        raise CliError(f"{text!r} is not a room name: {why}") from None


def _conversation(row: StoredMessage) -> str:
    """A person-readable name of the conversation (a private one: its two parties)."""
    if row.target.startswith("~"):
        return " <-> ".join(row.target[1:].split("\x00"))
    return row.recipient


@_command
def cmd_history_export(args: argparse.Namespace) -> int:
    """history export"""
    settings = _settings(args)
    target = _room(args.room) if args.room else None
    since = _moment(args.since) if args.since else None
    out: IO[str] = sys.stdout
    if args.output:
        try:
            out = open(args.output, "x", encoding="utf-8")  # noqa: SIM115 (closed below)
        except FileExistsError:
            raise CliError(f"{args.output} exists; choose a new file") from None
    count = 0
    store = HistoryStore(settings.db_file, readonly=True)
    try:
        for row in store.export(target, since):
            out.write(json.dumps({
                "time": server_time(row.at), "conversation": _conversation(row),
                "command": row.command, "from": row.source, "account": row.account,
                "msgid": row.msgid, "params": list(row.params), "tags": row.tags or {},
            }, ensure_ascii=False) + "\n")
            count += 1
    finally:
        store.close()
        if out is not sys.stdout:
            out.close()
    print(f"exported {count} messages", file=sys.stderr)
    return EXIT_OK


@_command
def cmd_history_purge(args: argparse.Namespace) -> int:
    """history purge"""
    settings = _settings(args)
    before = _moment(args.before)
    target = _room(args.room) if args.room else None
    where = args.room or "every conversation"
    when = server_time(before)
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError("purging cannot be undone: add --yes to confirm")
        answer = input(f"Delete every message of {where} before {when}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return EXIT_OK
    store = HistoryStore(settings.db_file, create=False)
    total = 0
    try:
        while True:
            n = store.purge_before(before, settings.history_purge_chunk, target=target)
            total += n
            if n:
                print(f"\rdeleted {total} messages...", end="", file=sys.stderr, flush=True)
            if n < settings.history_purge_chunk:
                break
    finally:
        store.close()
        if total:
            print(file=sys.stderr)
    with _open(settings) as admin:
        admin.audit(_actor(), "history-purge", f"{where} before {when}", f"{total} messages")
    print(f"deleted {total} messages of {where} before {when}")
    return EXIT_OK


def add_history_subcommands(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    history = subparsers.add_parser(
        "history", parents=[common], help="export or purge stored messages",
        description="The message store (room and private messages, room events). Safe "
        "while the server runs.",
    )
    actions = history.add_subparsers(dest="history_command", metavar="ACTION", required=True)
    p = actions.add_parser(
        "export", parents=[common], help="write messages as JSON lines, oldest first",
        description="One JSON object per message: time, conversation, command, from, "
        "account, msgid, params, tags. Read-only.",
    )
    p.add_argument("--room", metavar="ROOM", help="only this room")
    p.add_argument("--since", metavar="WHEN", help="a duration ago (7d) or a date")
    p.add_argument("-o", "--output", metavar="FILE", help="a new file (default: stdout)")
    p.set_defaults(func=cmd_history_export)
    p = actions.add_parser(
        "purge", parents=[common], help="delete messages older than a date, for good",
        description="Deletes in chunks of history_purge_chunk, each its own commit, with "
        "progress; audited. Asks first at a terminal; --yes otherwise.",
    )
    p.add_argument("--before", required=True, metavar="WHEN",
                   help="a duration ago (90d) or a date (2026-01-01)")
    p.add_argument("--room", metavar="ROOM", help="only this room")
    p.add_argument("--yes", action="store_true", help="do not ask")
    p.set_defaults(func=cmd_history_purge)
