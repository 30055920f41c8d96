"""Poll a legacy table in another database and write its rows as events to the outbox.

One poll reads the table page by page (``batch_size`` rows) from where the watermark says
(producers/polling/watermark.py) until a page comes back short. Each page is ONE transaction
in supplybus's database: lock the table's watermark row, read the page from the source, keep
the rows not seen before (updated mode: ``polling_seen``), map and validate them, append the
events to the outbox (the relay publishes them), record bad rows in ``polling_rejects``, and
move the watermark. A crash before the commit leaves everything as it was (the page is read
again); after it, nothing is read again that was kept. Event ids are deterministic in
(source, table, row key, updated-at), so even a row read twice would carry one id.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

import psycopg
from prometheus_client import Gauge
from psycopg import sql

from supplybus import crashpoints
from supplybus.adapters.postgres import connect, is_transient
from supplybus.config import Settings, mask_url
from supplybus.errors import ConfigError, DatabaseUnavailable, SupplybusError, ValidationError
from supplybus.events.catalog import EventCatalog, Outgoing
from supplybus.metrics import Metrics
from supplybus.producers import outbox
from supplybus.producers.files.mapping import FileMapping, LineError, check_against_schema
from supplybus.producers.polling import watermark as wm
from supplybus.producers.polling.rows import SOURCE, Reject, Row, record_of

log = logging.getLogger("supplybus.ingest.db")
Mode = Literal["key", "updated"]


@dataclass(frozen=True)
class TableSpec:
    """What to poll: ``table`` (``name`` or ``schema.name``) in the source named ``source``."""

    source: str
    table: str
    key_column: str
    updated_column: str | None = None
    look_back: dt.timedelta = dt.timedelta(seconds=60)
    batch_size: int = 500
    max_rows_per_second: float | None = None

    @property
    def mode(self) -> Mode:
        return "key" if self.updated_column is None else "updated"


@dataclass
class PollResult:
    """What one poll did."""

    read: int = 0
    accepted: int = 0
    duplicates: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    watermark: str | None = None
    lag_seconds: float | None = None

    @property
    def rejected(self) -> int:
        return sum(self.reasons.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": self.read, "accepted": self.accepted, "rejected": self.rejected,
            "duplicates": self.duplicates, "reasons": dict(sorted(self.reasons.items())),
            "watermark": self.watermark, "lag_seconds": self.lag_seconds,
        }  # fmt: skip


class Poller:
    """Polls one table with one mapping; ``settings`` names supplybus's own database."""

    def __init__(
        self,
        settings: Settings,
        spec: TableSpec,
        mapping: FileMapping,
        source_url: str,
        *,
        metrics: Metrics | None = None,
        catalog: EventCatalog | None = None,
    ) -> None:
        self.settings = settings
        self.spec = spec
        self.mapping = mapping
        self.source_url = source_url
        self.catalog = catalog or EventCatalog.from_settings(settings)
        try:
            self.schema = self.catalog.store.latest(mapping.event_type)
        except (KeyError, SupplybusError) as exc:
            raise ConfigError(f"mapping {mapping.name}: event_type: unknown event type "
                              f"{mapping.event_type!r}") from exc  # fmt: skip
        problems = check_against_schema(mapping, self.schema.raw)
        if problems:
            raise ConfigError(f"mapping {mapping.name}: {problems[0]}")
        self.zone = ZoneInfo(mapping.timezone)
        self.metrics = metrics
        self.lag = None
        if metrics is not None:
            self.lag = Gauge(
                "supplybus_ingest_db_lag_seconds",
                "Source clock minus the watermark (updated mode), or the last poll's duration",
                ("source", "table"),
                registry=metrics.registry,
            )
        columns = [spec.key_column, spec.updated_column, *mapping.headers]
        self.columns = list(dict.fromkeys(c for c in columns if c is not None))
        self._source: psycopg.Connection | None = None

    # -- connections ------------------------------------------------------------------------

    def source(self) -> psycopg.Connection:
        """The source connection (autocommit, read only, in the mapping's time zone)."""
        if self._source is None or self._source.closed:
            try:
                self._source = psycopg.connect(
                    self.source_url,
                    autocommit=True,
                    connect_timeout=max(1, int(self.settings.connect_timeout_s)),
                    options=f"-c TimeZone={self.mapping.timezone}"
                    " -c default_transaction_read_only=on",
                    application_name="supplybus-ingest-db",
                )
            except psycopg.Error as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise DatabaseUnavailable(
                    f"--source-url: cannot reach {mask_url(self.source_url)}: {first}"
                ) from exc
            self._check_columns(self._source)
        return self._source

    def close(self) -> None:
        if self._source is not None:
            self._source.close()

    def _check_columns(self, conn: psycopg.Connection) -> None:
        query = sql.SQL("SELECT * FROM {} LIMIT 0").format(self._table())
        try:
            cur = conn.execute(query)
        except psycopg.errors.UndefinedTable:
            raise ConfigError(f"--table: no table {self.spec.table!r} in the source") from None
        except psycopg.errors.InsufficientPrivilege:
            raise ConfigError(f"--table: no read access to {self.spec.table!r}") from None
        have = {d.name for d in cur.description or []}
        for column in self.columns:
            if column not in have:
                what = ("--key-column" if column == self.spec.key_column else "--updated-column"
                        if column == self.spec.updated_column
                        else f"mapping {self.mapping.name}: columns")  # fmt: skip
                raise ConfigError(f"{what}: no column {column!r} in {self.spec.table} "
                                  f"(has {', '.join(sorted(have))[:200]})")  # fmt: skip

    def _table(self) -> sql.Composable:
        return sql.Identifier(*self.spec.table.split("."))

    # -- one poll ---------------------------------------------------------------------------

    def poll(self, stop: Callable[[], bool] = lambda: False) -> PollResult:
        """Read the table up to its end (or until ``stop()``), page by page. A connection
        lost on the way is DatabaseUnavailable (the pages committed so far stay committed)."""
        try:
            return self._poll(stop)
        except psycopg.Error as exc:
            if not is_transient(exc):
                raise
            self.close()
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise DatabaseUnavailable(f"{self.spec.table}: a database went away: {first}") from exc

    def _poll(self, stop: Callable[[], bool]) -> PollResult:
        started = time.monotonic()
        result = PollResult()
        source = self.source()
        source_now: dt.datetime = source.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
        cursor: tuple[Any, Any] | None = None  # updated mode: (updated, key) of the last row read
        with connect(self.settings, autocommit=True) as own:
            self._ensure_row(own)
            while not stop():
                page_started = time.monotonic()
                rows, cursor, last = self._page(own, source, source_now, cursor, result)
                crashpoints.reached("poll-after-commit")
                result.watermark = last
                if len(rows) < self.spec.batch_size:
                    break
                self._throttle(len(rows), page_started)
            self._prune(own)
            lag = self._lag(own, source_now, started)
        result.lag_seconds = lag
        if self.lag is not None and lag is not None:
            self.lag.labels(self.spec.source, self.spec.table).set(lag)
        log.info("ingest db: %s %s: %d read, %d published, %d already seen, %d rejected %s",
                 self.spec.source, self.spec.table, result.read, result.accepted,
                 result.duplicates, result.rejected, dict(result.reasons))  # fmt: skip
        return result

    def run(
        self,
        interval_s: float,
        stop: Callable[[], bool],
        on_result: Callable[[PollResult], None] = lambda r: None,
    ) -> None:
        """Poll every ``interval_s`` seconds until ``stop()``; a database outage is waited out."""
        while not stop():
            try:
                on_result(self.poll(stop))
            except DatabaseUnavailable as exc:
                log.warning("ingest db: %s; polling again in %.1f s", exc, interval_s)
                self.close()
            deadline = time.monotonic() + interval_s
            while not stop() and time.monotonic() < deadline:
                time.sleep(min(0.1, interval_s))

    def _ensure_row(self, own: psycopg.Connection) -> None:
        with own.transaction():
            own.execute(
                "INSERT INTO polling_watermarks (source, source_table, mode) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                (self.spec.source, self.spec.table, self.spec.mode),
            )
            row = own.execute(
                "SELECT mode FROM polling_watermarks WHERE source = %s AND source_table = %s",
                (self.spec.source, self.spec.table),
            ).fetchone()
        if row is not None and row[0] != self.spec.mode:
            raise ConfigError(
                f"--table {self.spec.table}: polled by {row[0]} before (source "
                f"{self.spec.source}); use the same mode, or another --source-name"
            )

    def _page(
        self,
        own: psycopg.Connection,
        source: psycopg.Connection,
        source_now: dt.datetime,
        cursor: tuple[Any, Any] | None,
        result: PollResult,
    ) -> tuple[list[Row], tuple[Any, Any] | None, str | None]:
        spec = self.spec
        with own.transaction():
            last_key, last_updated = own.execute(
                "SELECT last_key, last_updated FROM polling_watermarks"
                " WHERE source = %s AND source_table = %s FOR UPDATE",
                (spec.source, spec.table),
            ).fetchone() or (None, None)
            rows = self._read(source, last_key, last_updated, cursor)
            result.read += len(rows)
            fresh = self._fresh(own, rows)
            result.duplicates += len(rows) - len(fresh)
            outs, rejects = self._events(fresh, result)
            outbox.append(own, SOURCE, outs)
            self._reject(own, rejects)
            if spec.mode == "key":  # every row read is above the stored key (the query says)
                top = wm.next_key(None, [r.key for r in rows])
                key_value: str | None = last_key if top is None else str(top)
                updated_value, shown = None, key_value
            else:
                stamps = [r.updated for r in rows if r.updated is not None]
                moved = wm.next_updated(last_updated, stamps, source_now)
                key_value, updated_value = None, moved
                shown = None if moved is None else moved.isoformat()
            own.execute(
                "UPDATE polling_watermarks SET last_key = coalesce(%s, last_key),"
                " last_updated = coalesce(%s, last_updated), accepted = accepted + %s,"
                " rejected = rejected + %s, last_poll_at = now()"
                " WHERE source = %s AND source_table = %s",
                (key_value, updated_value, len(outs), len(rejects), spec.source, spec.table),
            )
        if self.metrics is not None:
            self.metrics.ingest_accepted.labels("db", self.mapping.event_type).inc(len(outs))
            for reject in rejects:
                self.metrics.ingest_rejected.labels("db", reject.reason).inc()
        next_cursor = (rows[-1].updated, rows[-1].key) if rows else cursor
        return rows, next_cursor, shown

    def _read(
        self,
        source: psycopg.Connection,
        last_key: str | None,
        last_updated: dt.datetime | None,
        cursor: tuple[Any, Any] | None,
    ) -> list[Row]:
        spec = self.spec
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in self.columns)
        key = sql.Identifier(spec.key_column)
        params: list[Any] = []
        where: sql.Composable
        order: sql.Composable
        if spec.updated_column is None:
            where = sql.SQL("")
            if last_key is not None:
                where, params = sql.SQL("WHERE {} > %s").format(key), [last_key]
            order = key
        else:
            upd = sql.Identifier(spec.updated_column)
            order = sql.SQL("{}, {}").format(upd, key)
            start = wm.window_start(last_updated, spec.look_back)
            if cursor is not None:
                where, params = sql.SQL("WHERE ({}, {}) > (%s, %s)").format(upd, key), [*cursor]
            elif start is not None:
                where, params = sql.SQL("WHERE {} >= %s").format(upd), [start]
            else:
                where = sql.SQL("WHERE {} IS NOT NULL").format(upd)
        query = sql.SQL("SELECT {} FROM {} {} ORDER BY {} LIMIT {}").format(
            cols, self._table(), where, order, sql.Literal(spec.batch_size)
        )
        names = self.columns
        found = []
        for values in source.execute(query, params).fetchall():
            cells = dict(zip(names, values, strict=True))
            updated = cells.get(spec.updated_column) if spec.updated_column else None
            if isinstance(updated, dt.datetime) and updated.tzinfo is None:
                updated = updated.replace(tzinfo=self.zone)
            if updated is not None and not isinstance(updated, dt.datetime):
                raise ConfigError(f"--updated-column: {spec.updated_column} is not a timestamp "
                                  f"({type(updated).__name__})")  # fmt: skip
            raw_key = cells[spec.key_column]
            found.append(Row(raw_key, str(raw_key), updated, cells))
        return found

    def _fresh(self, own: psycopg.Connection, rows: Sequence[Row]) -> list[Row]:
        """Updated mode: the rows not seen before (recorded as seen now); key mode: all."""
        if self.spec.mode == "key" or not rows:
            return list(rows)
        inserted = own.execute(
            "INSERT INTO polling_seen (source, source_table, row_key, updated_at)"
            " SELECT %s, %s, k, u FROM unnest(%s::text[], %s::timestamptz[]) AS t(k, u)"
            " ON CONFLICT DO NOTHING RETURNING row_key, updated_at",
            (self.spec.source, self.spec.table, [r.row_key for r in rows],
             [r.updated for r in rows]),
        ).fetchall()  # fmt: skip
        new = {(k, u) for k, u in inserted}
        return [r for r in rows if (r.row_key, r.updated) in new]

    def _events(
        self, rows: Sequence[Row], result: PollResult
    ) -> tuple[list[Outgoing], list[Reject]]:
        spec = self.spec
        outs: list[Outgoing] = []
        rejects: list[Reject] = []
        now = dt.datetime.now(dt.UTC)
        for row in rows:
            try:
                record = record_of(self.mapping, row, source=spec.source, table=spec.table,
                                   schema_version=self.schema.version, now=now)  # fmt: skip
                outs.append(self.catalog.prepare(record))
                result.accepted += 1
                continue
            except LineError as exc:
                reason, message = exc.reason, exc.message
            except ValidationError as exc:
                reason, message = "invalid", str(exc)
            except (TypeError, KeyError, AttributeError, ValueError, ArithmeticError) as exc:
                reason, message = "unreadable", f"a value could not be read ({type(exc).__name__})"
            result.reasons[reason] += 1
            rejects.append(Reject(row.row_key, row.updated, reason, message))
            # the row key and reason only: the message may quote row values (personal data)
            log.warning("ingest db: %s %s: row %s rejected (%s)", spec.source, spec.table,
                        row.row_key, reason)  # fmt: skip
        return outs, rejects

    def _reject(self, own: psycopg.Connection, rejects: Sequence[Reject]) -> None:
        if not rejects:
            return
        with own.cursor() as cur:
            cur.executemany(
                "INSERT INTO polling_rejects (source, source_table, row_key, updated_at, reason,"
                " message) VALUES (%s, %s, %s, coalesce(%s, '-infinity'::timestamptz), %s, %s)"
                " ON CONFLICT DO NOTHING",
                [
                    (self.spec.source, self.spec.table, r.row_key, r.updated, r.reason, r.message)
                    for r in rejects
                ],
            )

    def _prune(self, own: psycopg.Connection) -> None:
        if self.spec.mode != "updated":
            return
        with own.transaction():
            row = own.execute(
                "SELECT last_updated FROM polling_watermarks WHERE source = %s AND source_table"
                " = %s",
                (self.spec.source, self.spec.table),
            ).fetchone()
            before = wm.prunable_before(row[0] if row else None, self.spec.look_back)
            if before is not None:
                own.execute(
                    "DELETE FROM polling_seen WHERE source = %s AND source_table = %s"
                    " AND updated_at < %s",
                    (self.spec.source, self.spec.table, before),
                )

    def _lag(self, own: psycopg.Connection, source_now: dt.datetime, started: float) -> float:
        if self.spec.mode == "key":
            return round(time.monotonic() - started, 3)
        row = own.execute(
            "SELECT last_updated FROM polling_watermarks WHERE source = %s AND source_table = %s",
            (self.spec.source, self.spec.table),
        ).fetchone()
        if row is None or row[0] is None:
            return 0.0
        seconds: float = (source_now - row[0]).total_seconds()
        return round(max(0.0, seconds), 3)

    def _throttle(self, rows: int, page_started: float) -> None:
        rate = self.spec.max_rows_per_second
        if rate:
            time.sleep(max(0.0, rows / rate - (time.monotonic() - page_started)))
