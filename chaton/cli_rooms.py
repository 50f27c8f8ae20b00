"""``chaton room list|info|register|drop|set``: registered rooms, on the server's database.

Like the other admin commands (``chaton.cli_admin``), these are safe while the server runs:
each change is one transaction with its audit line, applied to the room's current record
(so a change the server commits meanwhile is kept), and a running server announces it in
the room (from ChanServ) within ``db_poll_interval``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from chaton.cli_admin import (
    EXIT_OK,
    CliError,
    _audit,
    _command,
    _open,
    _printable,
    _settings,
    _table,
    _when,
)
from chaton.config import Settings
from chaton.protocol.names import BadRoomName, casefold, room_key, room_name
from chaton.server.room_modes import OP, VOICE, Change, apply, mode_string, parse_changes
from chaton.server.room_registry import ADMINS_OWNER, scratch_of, stored_part
from chaton.store import RoomRecord, Store

__all__ = ["add_room_subcommands"]

GRANTS = {"o": OP, "v": VOICE, "ov": OP | VOICE, "vo": OP | VOICE, "none": 0}


def _room(settings: Settings, name: str) -> str:
    try:
        return room_name(name, settings.channellen)
    except BadRoomName as why:
        raise CliError(f"{name!r} is not a valid room name: {why}") from None


def _owner(store: Store, owner: str) -> str:
    """``admins`` or an existing account, as stored (casefolded)."""
    if owner.lower() == "admins":
        return ADMINS_OWNER
    account = store.get_account(owner)
    if account is None:
        raise CliError(f"there is no account {owner!r} (or say 'admins')")
    return casefold(account.name)


def _owner_text(owner: str) -> str:
    return "admins" if owner == ADMINS_OWNER else owner


def _modes(record: RoomRecord) -> str:
    return " ".join(mode_string(scratch_of(record), show_key=True))


def _letters(bits: int) -> str:
    return ("o" if bits & OP else "") + ("v" if bits & VOICE else "")


@_command
def cmd_room_list(args: argparse.Namespace) -> int:
    """room list"""
    with _open(_settings(args), readonly=True) as store:
        rooms = store.list_rooms()
    if not rooms:
        print("no registered rooms")
        return EXIT_OK
    _table(["ROOM", "OWNER", "MODES", "REGISTERED", "TOPIC"], [
        [r.name, _owner_text(r.owner), _modes(r), _when(r.registered), r.topic[:50]]
        for r in rooms
    ])
    return EXIT_OK


@_command
def cmd_room_info(args: argparse.Namespace) -> int:
    """room info ROOM"""
    settings = _settings(args)
    name = _room(settings, args.room)
    with _open(settings, readonly=True) as store:
        record = store.get_room(room_key(name))
    if record is None:
        raise CliError(f"{name} is not registered")
    rows = [
        ["room", record.name],
        ["owner", _owner_text(record.owner)],
        ["registered", _when(record.registered)],
        ["modes", _modes(record)],
        ["topic", record.topic or "-"],
        ["topic set by", f"{record.topic_by} at {_when(record.topic_at)}" if record.topic
         else "-"],
        ["grants", " ".join(f"{a}(+{_letters(b)})" for a, b in record.grants.items()) or "-"],
    ]
    for letter, label in (("b", "bans"), ("e", "exceptions"), ("I", "invite exceptions")):
        entries = record.lists.get(letter, [])
        rows.append([label, ", ".join(m for m, _, _ in entries) or "-"])
    for key, value in rows:
        print(f"{key:18} {_printable(value)}")
    return EXIT_OK


@_command
def cmd_room_register(args: argparse.Namespace) -> int:
    """room register ROOM --owner ACCOUNT|admins"""
    settings = _settings(args)
    name = _room(settings, args.room)
    with _open(settings) as store:
        owner = _owner(store, args.owner)
        record = RoomRecord(key=room_key(name), name=name, owner=owner, registered=time.time())
        if not store.register_room(record, audit=_audit("room-register", name, owner)):
            raise CliError(f"{name} is already registered")
    print(f"{name} registered, owned by {_owner_text(owner)}")
    return EXIT_OK


@_command
def cmd_room_drop(args: argparse.Namespace) -> int:
    """room drop ROOM"""
    settings = _settings(args)
    name = _room(settings, args.room)
    with _open(settings) as store:
        record = store.get_room(room_key(name))
        if record is None or not store.drop_room(record.key,
                                                 audit=_audit("room-drop", record.name)):
            raise CliError(f"{name} is not registered")
    print(f"{record.name} is no longer registered")
    return EXIT_OK


@_command
def cmd_room_set(args: argparse.Namespace) -> int:
    """room set ROOM [--owner A] [--topic T] [--modes M [ARG...]] [--grant ACCOUNT=o|v|ov|none]"""
    settings = _settings(args)
    name = _room(settings, args.room)
    if args.owner is None and args.topic is None and args.modes is None and not args.grant:
        raise CliError("nothing to set: give --owner, --topic, --modes or --grant")
    if args.topic is not None and (len(args.topic) > settings.topiclen
                                   or not args.topic.isprintable()):
        raise CliError(f"a topic is at most {settings.topiclen} printable characters")
    with _open(settings) as store:
        owner = _owner(store, args.owner) if args.owner is not None else None
        grants: dict[str, int] = {}
        for item in args.grant or []:
            account, _, letters = item.partition("=")
            if letters not in GRANTS:
                raise CliError(f"--grant {item!r}: say ACCOUNT=o, =v, =ov or =none")
            found = store.get_account(account)
            if found is None and GRANTS[letters]:
                raise CliError(f"there is no account {account!r}")
            grants[casefold(found.name if found else account)] = GRANTS[letters]
        changes: list[Change] = []
        words = args.modes.split() if args.modes is not None else []
        if args.modes is not None:
            changes, errors = parse_changes(words[0] if words else "", words[1:])
            bad = [e for e in errors if e.kind != "list"] + [
                c for c in changes if c.letter in "ov"]
            if bad or not changes:
                raise CliError(f"--modes {args.modes!r}: give room modes such as "
                               "'+i', '-m', '+k KEY', '+l 20', '+b MASK' (not o or v)")
        problems: list[str] = []

        def edit(record: RoomRecord) -> RoomRecord:
            now = time.time()
            if changes:
                scratch = scratch_of(record)
                _, errors = apply(scratch, changes, {}, by="ChanServ", at=now)
                problems.extend(f"{e.letter} list is full" for e in errors)
                record = stored_part(scratch, record)
            if args.topic is not None:
                record = replace(record, topic=args.topic, topic_by="ChanServ", topic_at=now)
            if owner is not None:
                record = replace(record, owner=owner)
            if grants:
                merged = {**record.grants, **grants}
                record = replace(record, grants={a: b for a, b in merged.items() if b})
            return record

        what = " ".join(part for part in (
            f"owner={args.owner}" if owner else "", "topic" if args.topic is not None else "",
            f"modes={args.modes}" if args.modes else "",
            " ".join(f"grant={g}" for g in args.grant or []),
        ) if part)
        record = store.update_room(room_key(name), edit, audit=_audit("room-set", name, what))
    if record is None:
        raise CliError(f"{name} is not registered")
    for problem in problems:
        print(f"chaton: warning: {problem}")
    print(f"{record.name}: owner {_owner_text(record.owner)}, modes {_modes(record)}")
    return EXIT_OK


def add_room_subcommands(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    room = subparsers.add_parser(
        "room", parents=[common], help="manage registered rooms (offline, on the database)",
        description="Registered rooms keep their owner, topic, modes, lists and standing "
        "grants across restarts. Safe while the server runs: it announces changes in the "
        "room within about a second.",
    )
    rooms = room.add_subparsers(dest="room_command", metavar="ACTION", required=True)
    p = rooms.add_parser("list", parents=[common], help="list registered rooms")
    p.set_defaults(func=cmd_room_list)
    p = rooms.add_parser("info", parents=[common], help="show one registered room")
    p.add_argument("room", metavar="ROOM")
    p.set_defaults(func=cmd_room_info)
    p = rooms.add_parser("register", parents=[common], help="register a room")
    p.add_argument("room", metavar="ROOM")
    p.add_argument("--owner", required=True, metavar="ACCOUNT",
                   help="the owning account, or 'admins' (any admin is its owner)")
    p.set_defaults(func=cmd_room_register)
    p = rooms.add_parser("drop", parents=[common], help="unregister a room")
    p.add_argument("room", metavar="ROOM")
    p.set_defaults(func=cmd_room_drop)
    p = rooms.add_parser(
        "set", parents=[common], help="change a registered room's owner, topic, modes, grants",
        description="Examples: --owner alice; --topic 'Release on Friday'; --modes +i; "
        "--modes='-m'; --modes '+k sesame'; --modes '+b spam*!*@*'; "
        "--grant bob=o --grant carol=none.",
    )
    p.add_argument("room", metavar="ROOM")
    p.add_argument("--owner", metavar="ACCOUNT", help="give the room to ACCOUNT (or 'admins')")
    p.add_argument("--topic", metavar="TEXT", help="set the topic ('' clears it)")
    p.add_argument("--modes", metavar="'MODES [ARG...]'",
                   help="a mode string and its arguments in one word, as in MODE "
                   "(e.g. '-m', '+k sesame'; not o or v)")
    p.add_argument("--grant", action="append", metavar="ACCOUNT=o|v|ov|none",
                   help="a standing grant (repeatable)")
    p.set_defaults(func=cmd_room_set)
