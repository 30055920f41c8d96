"""The source-side outbox: a source system on PostgreSQL writes events in its own transaction.

```python
from supplybus.producers.source_outbox import source_outbox
with conn.transaction():                      # the source's business transaction
    conn.execute("UPDATE stock SET ...")
    with source_outbox(conn) as ob:
        ob.add(record)                        # ValidationError here, before anything commits
```

``add`` validates, encodes and routes the event exactly as the Publisher does, then inserts
it into ``<schema>.outbox`` in the SOURCE database, on the caller's connection: the row
commits or rolls back with the business change. ``install`` creates that table (the columns
of supplybus's own outbox, so the same relay publishes it: ``OutboxRelay`` with the
``location`` of this module); `supplybus source-outbox relay --url URL` runs it.
Events published this way are at least once with stable ids: a relay killed between the
broker's acknowledgement and marking rows sent re-publishes those rows with the same
``sb-event-id``, which consumers' ledgers skip.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from supplybus.config import Settings, mask_url
from supplybus.errors import ConfigError, DatabaseUnavailable
from supplybus.events.catalog import EventCatalog, Outgoing
from supplybus.events.key_lanes import KeyLanes
from supplybus.producers import outbox
from supplybus.producers.publisher import prepare_all
from supplybus.producers.relay import OutboxLocation

DEFAULT_SCHEMA = "supplybus_outbox"
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

_DDL = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {table} (
    id             bigserial   PRIMARY KEY,
    topic          text        NOT NULL,
    key            bytea,
    value          bytea,
    headers        jsonb,
    event_id       uuid,
    event_type     text,
    correlation_id text,
    causation_id   text,
    priority       text,
    traceparent    text,
    source         text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    sent_at        timestamptz,
    parked_at      timestamptz,
    park_code      text,
    park_reason    text
);
CREATE INDEX IF NOT EXISTS outbox_pending ON {table} (id)
    WHERE sent_at IS NULL AND parked_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_parked ON {table} (id) WHERE parked_at IS NOT NULL;
COMMENT ON TABLE {table} IS
    'supplybus source outbox: events written in business transactions, published by '
    '`supplybus source-outbox relay`; rows with sent_at are published';
"""


def check_schema(schema: str) -> str:
    """The schema name, or ConfigError: lower-case letters, digits and _, as PostgreSQL folds."""
    if not _NAME.fullmatch(schema):
        raise ConfigError(
            f"--schema: expected a lower-case PostgreSQL name ([a-z_][a-z0-9_]*), got {schema!r}"
        )
    return schema


def table_of(schema: str) -> sql.Composable:
    return sql.Identifier(check_schema(schema), "outbox")


def ddl(schema: str = DEFAULT_SCHEMA) -> sql.Composed:
    """The statements ``install`` runs (idempotent), e.g. for a DBA to review or apply."""
    return sql.SQL(_DDL).format(schema=sql.Identifier(check_schema(schema)), table=table_of(schema))


def install(conn: psycopg.Connection, schema: str = DEFAULT_SCHEMA) -> None:
    """Create the outbox table in ``schema`` of the source database (nothing if it exists)."""
    with conn.transaction():
        conn.execute(ddl(schema))


def is_installed(conn: psycopg.Connection, schema: str = DEFAULT_SCHEMA) -> bool:
    row = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL", (f"{check_schema(schema)}.outbox",)
    ).fetchone()
    return bool(row and row[0])


class SourceOutbox:
    """Adds events to the source outbox on the caller's connection and transaction."""

    def __init__(
        self, conn: psycopg.Connection, catalog: EventCatalog, schema: str, source: str
    ) -> None:
        self.conn = conn
        self.catalog = catalog
        self.table = table_of(schema)
        self.source = source
        self.added: list[Outgoing] = []
        self._lanes = KeyLanes(catalog.topics)
        self._open = True

    def add(self, record: Mapping[str, Any]) -> Outgoing:
        """Validate and insert one event; ValidationError (nothing inserted) if it is invalid."""
        return self.add_all([record])[0]

    def add_all(
        self, records: Sequence[Mapping[str, Any]], *, labels: Sequence[str] | None = None
    ) -> list[Outgoing]:
        """All or nothing: every record is validated before any is inserted (one COPY)."""
        if not self._open:
            raise ConfigError("source outbox: add after its `with` block ended")
        prepared = prepare_all(self.catalog, records, labels=labels, key_lanes=self._lanes)
        outbox.append(self.conn, self.source, prepared, table=self.table)
        self.added.extend(prepared)
        return prepared


@contextmanager
def source_outbox(
    conn: psycopg.Connection,
    *,
    catalog: EventCatalog | None = None,
    schema: str = DEFAULT_SCHEMA,
    source: str = "source",
) -> Iterator[SourceOutbox]:
    """The source outbox on ``conn``'s current transaction (see the module docstring).

    ``catalog`` defaults to the one of ``Settings.from_env()``; ``source`` is stored with each
    row (which system wrote it). A connection in autocommit mode outside ``conn.transaction()``
    is refused: each event would commit on its own, apart from the business change.
    """
    if conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE:
        raise ConfigError(
            "source outbox: the connection is in autocommit mode outside a transaction; "
            "open `with conn.transaction():` so that events commit with the business change"
        )
    ob = SourceOutbox(
        conn, catalog or EventCatalog.from_settings(Settings.from_env()), schema, source
    )
    try:
        yield ob
    finally:
        ob._open = False


def connect_source(
    url: str, *, autocommit: bool = False, timeout_s: float = 10.0
) -> psycopg.Connection:
    """A connection to the source database; DatabaseUnavailable names the (masked) URL."""
    try:
        return psycopg.connect(
            url,
            autocommit=autocommit,
            connect_timeout=max(1, int(timeout_s)),
            application_name="supplybus-source-outbox",
        )
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(
            f"cannot reach the source database {mask_url(url)}: {first}"
        ) from exc
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"--url: {exc} (got {mask_url(url)!r})") from exc


def location(url: str, schema: str = DEFAULT_SCHEMA, timeout_s: float = 10.0) -> OutboxLocation:
    """The source outbox as the relay reads it (one active relay per database and schema)."""
    table = table_of(schema)
    return OutboxLocation(
        lambda: connect_source(url, autocommit=True, timeout_s=timeout_s),
        table,
        f"source-outbox:{schema}",
    )


def status(conn: psycopg.Connection, schema: str = DEFAULT_SCHEMA) -> dict[str, int]:
    """Counts of the source outbox: pending, parked, sent."""
    table = table_of(schema)
    row = conn.execute(
        sql.SQL(
            "SELECT count(*) FILTER (WHERE sent_at IS NULL AND parked_at IS NULL),"
            " count(*) FILTER (WHERE parked_at IS NOT NULL),"
            " count(*) FILTER (WHERE sent_at IS NOT NULL) FROM {}"
        ).format(table)
    ).fetchone()
    pending, parked, sent = row if row else (0, 0, 0)
    return {"pending": int(pending), "parked": int(parked), "sent": int(sent)}


__all__ = [
    "DEFAULT_SCHEMA",
    "SourceOutbox",
    "connect_source",
    "ddl",
    "install",
    "is_installed",
    "location",
    "source_outbox",
    "status",
]
