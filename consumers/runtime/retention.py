"""Retention: what `supplybus db prune` and the scheduled prune of `supplybus run` delete.

Horizons (settings; ADR 0008), each measured on the database clock:

- ledger rows (``processed_events``) processed more than ``ledger_retention_days`` ago. The
  horizon may not be shorter than any topic's ``retention.ms`` in the topic catalog (a record
  still on a topic can be re-delivered). Never deleted: rows of a topic that keeps records
  forever (compacted, or ``retention.ms`` -1: a consumer starting over re-reads them whatever
  their age), and rows of a (processor, key) on hold (tables ``held_events``, ``key_holds``);
- outbox rows sent more than ``outbox_retention_days`` ago; never an unsent or parked row;
- dead letters replayed or resolved more than ``dead_letter_retention_days`` ago; never an
  open or parked one.

A prune deletes in chunks of ``prune_chunk`` rows, one short transaction each, walking each
table's time index from the oldest row: a row kept by a rule is read once, not per chunk. One
prune at a time per schema (a PostgreSQL advisory lock, like the relay's).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from supplybus.adapters.postgres import connect, is_transient
from supplybus.config import Settings
from supplybus.errors import ConfigError, TransientError
from supplybus.events.topics import TopicCatalog, TopicSpec, load_catalog

log = logging.getLogger("supplybus.retention")
LOCK_ID = 0x5B0E  # advisory lock (with the schema): one prune at a time per supplybus schema
DAY_MS = 86_400_000
KAFKA_DEFAULT_RETENTION_MS = 7 * DAY_MS  # a topic without retention.ms gets the broker's

Progress = Callable[[str, int], None]  # (table, rows deleted so far in it)


def retention_ms(topic: TopicSpec, catalog: TopicCatalog) -> int | None:
    """How long the topic keeps a record (ms); ``None`` when it keeps records forever."""
    if "delete" not in topic.configs.get("cleanup.policy", "delete").split(","):
        return None  # compacted: the latest record per key stays, however old
    raw = topic.configs.get("retention.ms", str(KAFKA_DEFAULT_RETENTION_MS))
    try:
        ms = int(raw)
    except ValueError:
        raise ConfigError(
            f"{catalog.path}: topic {topic.name}: retention.ms: expected milliseconds, got {raw!r}"
        ) from None
    return None if ms < 0 else ms


@dataclass(frozen=True)
class Horizons:
    """How long each table keeps its rows, in days, and the topics whose ledger rows stay."""

    ledger_days: int
    outbox_days: int
    dead_letter_days: int
    forever_topics: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> Horizons:
        """The configured horizons, checked against the topic catalog (ConfigError naming the
        topic whose retention is longer than the ledger's)."""
        catalog = load_catalog(settings.topic_catalog)
        days = settings.ledger_retention_days
        forever: list[str] = []
        longest: tuple[int, str] = (0, "")
        for topic in catalog.topics:
            ms = retention_ms(topic, catalog)
            if ms is None:
                forever.append(topic.name)
            else:
                longest = max(longest, (ms, topic.name))
        if longest[0] > days * DAY_MS:
            need = -(-longest[0] // DAY_MS)
            raise ConfigError(
                f"SUPPLYBUS_LEDGER_RETENTION_DAYS: {days} days is shorter than the retention of "
                f"topic {longest[1]} (retention.ms {longest[0]} in {catalog.path}), so a "
                f"re-delivered event could be applied twice; expected at least {need}"
            )
        return cls(
            days,
            settings.outbox_retention_days,
            settings.dead_letter_retention_days,
            tuple(forever),
        )

    def days(self) -> dict[str, int]:
        """Each table's horizon in days."""
        return {
            "processed_events": self.ledger_days,
            "outbox": self.outbox_days,
            "dead_letters": self.dead_letter_days,
        }


@dataclass(frozen=True)
class _Rule:
    """One table's retention: its key, the time column walked, what may go besides age."""

    table: str
    key: str
    at: str
    where: str

    def chunk_sql(self) -> str:
        return f"""
WITH doomed AS (
    SELECT {self.key} FROM {self.table} t
    WHERE t.{self.at} >= %(after)s AND t.{self.at} < %(cutoff)s AND {self.where}
    ORDER BY t.{self.at} LIMIT %(chunk)s
), gone AS (
    DELETE FROM {self.table} t
    WHERE ({self.key}) IN (SELECT {self.key} FROM doomed)
      AND t.{self.at} < %(cutoff)s AND {self.where}
    RETURNING t.{self.at}
)
SELECT count(*), max({self.at}) FROM gone"""

    def count_sql(self) -> str:
        return (
            f"SELECT count(*) FROM {self.table} t WHERE t.{self.at} < %(cutoff)s AND {self.where}"
        )


HOLD_TABLES = ("held_events", "key_holds")  # migration 0007: held events, keys on hold


def _held_filter(conn: psycopg.Connection) -> str:
    """Keep the ledger rows of held keys (either table of migration 0007, where present): per
    (processor, key) when the ledger records the key too, else every row of the processor."""
    rows = conn.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND column_name IN ('processor', 'key') "
        "AND table_name = ANY(%s)",
        ([*HOLD_TABLES, "processed_events"],),
    ).fetchall()
    kinds = {(table, column): kind for table, column, kind in rows}
    ledger_key = kinds.get(("processed_events", "key"))
    keep = ["true"]
    for table in HOLD_TABLES:
        if (table, "processor") not in kinds:
            continue  # not there (yet)
        same_key = ledger_key is not None and kinds.get((table, "key")) == ledger_key
        match = " AND h.key = t.key" if same_key else ""
        keep.append(f"NOT EXISTS (SELECT 1 FROM {table} h WHERE h.processor = t.processor{match})")
    return " AND ".join(keep)


def rules(conn: psycopg.Connection) -> dict[str, _Rule]:
    """Each table's rule (the ledger's depends on the tables present: see ``_held_filter``)."""
    return {
        "processed_events": _Rule(
            "processed_events",
            "processor, event_id",
            "processed_at",
            f"t.topic <> ALL(%(forever)s::text[]) AND {_held_filter(conn)}",
        ),
        "outbox": _Rule("outbox", "id", "sent_at", "t.parked_at IS NULL"),
        "dead_letters": _Rule(
            "dead_letters", "id", "resolved_at", "t.status IN ('replayed', 'resolved')"
        ),
    }


@dataclass
class PruneReport:
    """Rows deleted per table (with ``dry_run``: rows that would be), and the horizons."""

    dry_run: bool
    horizons: Horizons
    deleted: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    stopped: bool = False  # a stop came between two chunks: the rest is left for next time

    def as_dict(self) -> dict[str, object]:
        days = self.horizons.days()
        return {
            "dry_run": self.dry_run,
            "stopped": self.stopped,
            "seconds": round(self.seconds, 3),
            "tables": {t: {"rows": n, "horizon_days": days[t]} for t, n in self.deleted.items()},
        }


def prune(
    conn: psycopg.Connection,
    horizons: Horizons,
    *,
    chunk: int,
    dry_run: bool = False,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> PruneReport:
    """Delete (or with ``dry_run`` count) what is past each horizon; ``conn`` in autocommit
    mode, so that each chunk is its own transaction."""
    started = time.perf_counter()
    report = PruneReport(dry_run, horizons)
    days = horizons.days()
    for table, rule in rules(conn).items():
        row = conn.execute("SELECT now() - make_interval(days => %s)", (days[table],)).fetchone()
        params: dict[str, object] = {
            "cutoff": row[0] if row else None,
            "forever": list(horizons.forever_topics),
            "chunk": chunk,
            "after": "-infinity",
        }
        if dry_run:
            counted = conn.execute(rule.count_sql(), params).fetchone()
            report.deleted[table] = int(counted[0]) if counted else 0
            continue
        report.deleted[table] = 0
        while not (stop is not None and stop.is_set()):
            done = conn.execute(rule.chunk_sql(), params).fetchone()
            count = int(done[0]) if done else 0
            report.deleted[table] += count
            if progress is not None and count:
                progress(table, report.deleted[table])
            if count < chunk:
                break
            params["after"] = done[1] if done else params["after"]
        else:
            report.stopped = True
            break
    report.seconds = time.perf_counter() - started
    return report


def lock(conn: psycopg.Connection, schema: str, *, wait: bool = False) -> bool:
    """Take the schema's prune lock (session level): False when another session holds it,
    or with ``wait``, block until it is free."""
    if wait:
        conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (LOCK_ID, schema))
        return True
    row = conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", (LOCK_ID, schema))
    found = row.fetchone()
    return bool(found and found[0])


def unlock(conn: psycopg.Connection, schema: str) -> None:
    conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (LOCK_ID, schema))


class ScheduledPrune:
    """The prune of `supplybus run`: once at start, then every ``prune_interval_s`` seconds,
    skipped while another runner of the same schema prunes. Errors are logged and the next
    round tries again: retention never stops processing."""

    def __init__(self, settings: Settings, stop: threading.Event) -> None:
        self.settings = settings
        self.stop = stop
        self.horizons = Horizons.from_settings(settings)  # a bad horizon fails the start

    def thread(self) -> threading.Thread:
        return threading.Thread(target=self.run, name="prune", daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.prune_once()
            except Exception:  # a bug here must not stop the processors: log, try later
                log.exception("prune failed")
            self.stop.wait(self.settings.prune_interval_s)

    def prune_once(self) -> PruneReport | None:
        """One round; ``None`` when another prune holds the lock or the round failed."""
        schema = self.settings.db_schema
        try:
            with connect(self.settings, autocommit=True) as conn:
                if not lock(conn, schema):
                    log.info("prune skipped: another runner is pruning schema %s", schema)
                    return None
                report = prune(conn, self.horizons, chunk=self.settings.prune_chunk, stop=self.stop)
                unlock(conn, schema)
        except (psycopg.Error, TransientError) as exc:
            transient = isinstance(exc, TransientError) or is_transient(exc)
            level = logging.WARNING if transient else logging.ERROR
            log.log(
                level, "prune failed (next round in %.0fs): %s", self.settings.prune_interval_s, exc
            )
            return None
        log.info(
            "pruned %s in %.1fs",
            ", ".join(f"{t} {n}" for t, n in report.deleted.items()),
            report.seconds,
        )
        return report
