"""A processor's stored identity (table ``processors``, ADR 0007) and the "runner is live" lock.

A processor's name is its consumer groups and its ledger namespace: a name changed in code
would be a new processor that replays the retained topics. So the runner registers each
processor on its first run (its event types, its start, when) and, while it runs, holds a
shared PostgreSQL advisory lock per processor on one connection (released when the process
ends, however it ends). ``supplybus processors rename`` takes that lock exclusively: it cannot
run while a runner of the processor is live, and no runner starts while it renames.

The runner refuses a processor that is not registered while a registered one consumes exactly
the same event types, has applied events and is not started with it (the likely accidental
rename), unless the run says its new processors are new (``--new``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg

from supplybus.adapters.kafka import is_tansu, make_admin
from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.runtime.processor import Processor
from supplybus.consumers.runtime.start import Start, check_start, format_start, parse_start
from supplybus.errors import ConfigError

log = logging.getLogger("supplybus.runtime")
_LOCK = "SELECT {}(%s, hashtext(current_schema() || '/' || %s))"
_LOCK_CLASS = 0x5B07  # advisory lock class of processor names (the migrator uses 0x5B05)
_COLUMNS = "name, consumes, start_position, registered_at, renamed_from, renamed_at, renaming_to"


@dataclass(frozen=True)
class Identity:
    """One row of ``processors``."""

    name: str
    consumes: tuple[str, ...]
    start: Start
    registered_at: datetime
    renamed_from: str | None = None
    renamed_at: datetime | None = None
    renaming_to: str | None = None


def identities(conn: psycopg.Connection) -> dict[str, Identity]:
    """Every registered processor by name."""
    rows = conn.execute(f"SELECT {_COLUMNS} FROM processors ORDER BY name").fetchall()
    return {r[0]: _identity(r) for r in rows}


def _identity(row: Sequence[Any]) -> Identity:
    name, consumes, start, registered_at, renamed_from, renamed_at, renaming_to = row
    return Identity(
        name, tuple(consumes), parse_start(start), registered_at, renamed_from, renamed_at,
        renaming_to,
    )  # fmt: skip


def try_lock(conn: psycopg.Connection, name: str, *, shared: bool) -> bool:
    """Take the session-level advisory lock of processor ``name``; False when held elsewhere."""
    func = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
    row = conn.execute(_LOCK.format(func), (_LOCK_CLASS, name)).fetchone()
    return bool(row and row[0])


class Registration:
    """The processors as registered (their stored start) and the connection whose shared
    locks say that a runner of them is live, until ``close``."""

    def __init__(self, processors: list[Processor], conn: psycopg.Connection) -> None:
        self.processors = processors
        self._conn = conn

    def close(self) -> None:
        self._conn.close()


def register(
    settings: Settings, processors: Sequence[Processor], *, new: bool = False
) -> Registration:
    """Register the processors not registered yet (idempotent; concurrent runners register
    once) and lock them as live. ConfigError (one line) for a likely accidental rename, a
    rename under way, or a start this broker cannot honour."""
    conn = connect(settings, autocommit=True)
    try:
        for p in processors:
            check_start(p.start, f"processor {p.name}: start")
            if not try_lock(conn, p.name, shared=True):
                raise ConfigError(
                    f"processor {p.name}: `supplybus processors rename` is renaming it; "
                    "start it again once that is done"
                )
        with conn.transaction():
            conn.execute("LOCK TABLE processors IN SHARE ROW EXCLUSIVE MODE")
            known = identities(conn)
            for p in processors:
                _register_one(conn, p, known, {q.name for q in processors}, new)
            stored = identities(conn)
            effective = [replace(p, start=stored[p.name].start) for p in processors]
            _check_broker(settings, effective)
        for declared, used in zip(processors, effective, strict=True):
            if declared.start != used.start:
                log.warning(
                    "processor %s declares start %s but was registered with %s: the stored "
                    "start is kept",
                    used.name,
                    format_start(declared.start),
                    format_start(used.start),
                )
        return Registration(effective, conn)
    except BaseException:
        conn.close()
        raise


def _register_one(
    conn: psycopg.Connection,
    p: Processor,
    known: dict[str, Identity],
    starting: set[str],
    new: bool,
) -> None:
    consumes = sorted(set(p.consumes))
    stored = known.get(p.name)
    if stored is not None:
        if stored.renaming_to is not None:
            raise ConfigError(
                f"processor {p.name}: a rename to {stored.renaming_to} was interrupted; finish "
                f"it with `supplybus processors rename {p.name} {stored.renaming_to}`"
            )
        if sorted(stored.consumes) != consumes:
            conn.execute("UPDATE processors SET consumes = %s WHERE name = %s", (consumes, p.name))
        return
    for other in known.values():
        if other.renaming_to == p.name:
            raise ConfigError(
                f"processor {p.name}: the rename of {other.name} to it was interrupted; finish "
                f"it with `supplybus processors rename {other.name} {p.name}`"
            )
    if not new:
        _refuse_lookalike(conn, p.name, consumes, starting)
    if isinstance(p.start, datetime) and p.start > datetime.now(UTC):
        raise ConfigError(f"processor {p.name}: start {p.start.isoformat()} is in the future")
    conn.execute(
        "INSERT INTO processors (name, consumes, start_position) VALUES (%s, %s, %s)"
        " ON CONFLICT (name) DO NOTHING",
        (p.name, consumes, format_start(p.start)),
    )
    log.info("registered processor %s (start: %s)", p.name, format_start(p.start))


def _refuse_lookalike(
    conn: psycopg.Connection, name: str, consumes: list[str], starting: set[str]
) -> None:
    row = conn.execute(
        "SELECT p.name FROM processors p"
        " WHERE p.name <> ALL(%s) AND p.consumes @> %s::text[] AND p.consumes <@ %s::text[]"
        " AND EXISTS (SELECT 1 FROM processed_events e WHERE e.processor = p.name)"
        " ORDER BY p.registered_at LIMIT 1",
        (sorted(starting), consumes, consumes),
    ).fetchone()
    if row is not None:
        old = row[0]
        raise ConfigError(
            f"processor {name} is not registered, but {old} consumes the same event types "
            f"({', '.join(consumes)}) and has applied events: if {name} is {old} renamed, run "
            f"`supplybus processors rename {old} {name}` first; if it is a new processor, "
            "start it once with `supplybus run --new`"
        )


def _check_broker(settings: Settings, processors: Sequence[Processor]) -> None:
    timed = [p.name for p in processors if isinstance(p.start, datetime)]
    if timed and is_tansu(make_admin(settings)):
        raise ConfigError(
            f"processor {timed[0]}: a start at a time needs a broker whose ListOffsets by "
            "timestamp works; the embedded Tansu broker's does not (ADR 0007): use "
            "'earliest' or 'latest'"
        )


# --- rename -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RenameState:
    """What the database says about a rename of ``old`` to ``new``."""

    old: Identity | None
    new: Identity | None
    old_rows: dict[str, int]  # rows per table of MOVED
    new_rows: dict[str, int]


#: The tables whose rows belong to a processor by name: the ledger, the dead letters, and the
#: events held behind them per key (migration 0007). A rename moves them all.
MOVED = ("processed_events", "dead_letters", "key_holds", "held_events")


def rename_state(conn: psycopg.Connection, old: str, new: str) -> RenameState:
    known = identities(conn)
    rows = [{table: _count(conn, table, name) for table in MOVED} for name in (old, new)]
    return RenameState(known.get(old), known.get(new), rows[0], rows[1])


def _count(conn: psycopg.Connection, table: str, name: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {table} WHERE processor = %s", (name,)).fetchone()
    return int(row[0]) if row else 0


def rename_decision(
    state: RenameState, old: str, new: str, *, new_has_offsets: Callable[[], bool]
) -> Literal["done", "rename"]:
    """``done`` when an earlier run finished this rename, ``rename`` when it may go on (also
    to finish an interrupted one, whose copy of the offsets the groups of ``new`` hold);
    ConfigError naming the reason otherwise."""
    if state.old is None:
        if state.new is not None and state.new.renamed_from == old:
            return "done"
        raise ConfigError(f"processors rename: {old} is not a registered processor")
    if old == new:
        raise ConfigError(f"processors rename: the new name is the old one ({old})")
    resuming = state.old.renaming_to == new
    if state.old.renaming_to is not None and not resuming:
        raise ConfigError(
            f"processors rename: {old} is being renamed to {state.old.renaming_to}; finish "
            "that rename first"
        )
    if state.new is not None or any(state.new_rows.values()):
        raise ConfigError(
            f"processors rename: {new} already exists (registered, or with ledger rows, dead "
            "letters or held events): choose another name"
        )
    if not resuming and new_has_offsets():
        raise ConfigError(
            f"processors rename: the consumer groups of {new} have committed offsets: "
            "choose another name"
        )
    return "rename"


def mark_rename(conn: psycopg.Connection, old: str, new: str) -> None:
    """Say that ``old`` is being renamed: its runners refuse to start until it is done."""
    conn.execute("UPDATE processors SET renaming_to = %s WHERE name = %s", (new, old))


def finish_rename(conn: psycopg.Connection, old: str, new: str) -> dict[str, int]:
    """In ONE transaction: move the rows of every MOVED table and the identity row. Returns
    the rows moved per table."""
    with conn.transaction():
        moved = {
            table: conn.execute(
                f"UPDATE {table} SET processor = %s WHERE processor = %s", (new, old)
            ).rowcount
            for table in MOVED
        }
        renamed = conn.execute(
            "UPDATE processors SET name = %s, renamed_from = %s, renamed_at = now(),"
            " renaming_to = NULL WHERE name = %s AND renaming_to = %s",
            (new, old, old, new),
        ).rowcount
        if renamed != 1:
            raise ConfigError(f"processors rename: {old} changed while renaming; run it again")
    return moved


def open_for_rename(settings: Settings, old: str, new: str) -> psycopg.Connection:
    """A connection holding both names' locks exclusively; ConfigError when a runner of either
    (or another rename) holds one."""
    conn = connect(settings, autocommit=True)
    for name in (old, new):
        if not try_lock(conn, name, shared=False):
            conn.close()
            raise ConfigError(
                f"processors rename: a runner of {name} is live (or another rename of it is "
                "under way): stop it first"
            )
    return conn


def lane_groups(settings: Settings, name: str) -> dict[str, str]:
    """The consumer group of each lane of processor ``name`` (as ``Lane.group_id``)."""
    return {
        "routine": f"{settings.group_prefix}.{name}",
        "critical": f"{settings.group_prefix}.{name}.critical",
    }
