"""Durable intake of webhook deliveries: parse and validate the body as ``supplybus publish
--file`` does, then write the event to the transactional outbox together with the delivery's
row in ``webhook_deliveries`` (migration 0018), in ONE transaction. Only once that commits is
the delivery accepted; the outbox relay publishes the event.

Idempotent: a delivery id seen before, an event id seen before, or the same signed request
under another delivery id (a replay) writes nothing and answers the original event id. The
same delivery id with a different body is a conflict (the sender reused an id).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import psycopg

from supplybus.adapters.postgres import connect, is_transient
from supplybus.config import Settings
from supplybus.errors import ConfigError, FieldError, TransientError, ValidationError
from supplybus.events import jsonio
from supplybus.events.catalog import EventCatalog, Outgoing
from supplybus.events.envelope import deterministic_id, utcnow
from supplybus.producers import outbox

log = logging.getLogger("supplybus.webhook")
DELIVERY_HEADER = "X-Supplybus-Delivery"
SOURCE = "webhook"  # outbox.source, and envelope.source_system when the body gives none
MAX_DELIVERY_ID = 200
Outcome = Literal["accepted", "duplicate", "conflict"]


def delivery_id_ok(value: str | None) -> bool:
    """1 to 200 visible ASCII characters (no spaces or controls)."""
    return (
        value is not None
        and 0 < len(value) <= MAX_DELIVERY_ID
        and all("!" <= ch <= "~" for ch in value)
    )


def event_id_for(delivery_id: str) -> str:
    """The event id of a body without ``envelope.event_id``: deterministic in the delivery."""
    return deterministic_id(SOURCE, "delivery", delivery_id)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def load_json(body: bytes) -> Any:
    """The body as JSON (decimals exact); ValidationError naming what is wrong otherwise."""
    try:
        return json.loads(body, parse_float=Decimal, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            [FieldError("", f"a JSON object ({exc.msg} at line {exc.lineno} column {exc.colno})")]
        ) from None
    except UnicodeDecodeError:
        raise ValidationError([FieldError("", "a JSON object in UTF-8")]) from None
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ValidationError([FieldError("", f"a JSON object ({reason})")]) from None


def parse(catalog: EventCatalog, event_type: str, delivery_id: str, body: bytes) -> Outgoing:
    """The body (one ``event_type`` payload, as a line of ``publish --file``) validated,
    encoded and routed. Envelope fields the body leaves out are filled in: ``event_id`` from
    the delivery id, ``correlation_id`` = the event id, ``source_system`` "webhook",
    ``actor`` "webhook", ``priority`` ROUTINE, ``occurred_at`` now. Raises ValidationError.
    """
    sv = catalog.store.latest(event_type)  # ConfigError for an unknown type: checked before
    payload = load_json(body)
    if not isinstance(payload, dict):
        raise ValidationError([FieldError("", f"a JSON object, got {type(payload).__name__}")])
    given = payload.get("envelope")
    if given is not None and not isinstance(given, dict):
        raise ValidationError([FieldError("envelope", "a JSON object", type(given).__name__)])
    if isinstance(given, dict) and given.get("event_type", sv.event_type) != sv.event_type:
        raise ValidationError(
            [
                FieldError(
                    "envelope.event_type",
                    f"{sv.event_type} (as in the URL)",
                    given.get("event_type"),
                )
            ]
        )
    event_id = event_id_for(delivery_id)
    if isinstance(given, dict) and given.get("event_id") is not None:
        event_id = given["event_id"]
    defaults: dict[str, Any] = {
        "event_id": event_id,
        "event_type": sv.event_type,
        "schema_version": sv.version,
        "source_system": SOURCE,
        "priority": "ROUTINE",
        "actor": SOURCE,
        "facility_id": None,
        "causation_id": None,
        "correlation_id": event_id,
        "occurred_at": utcnow(),
    }
    record = jsonio.with_envelope_defaults(payload, defaults)
    try:
        return catalog.prepare(record)
    except ValidationError:
        raise
    except ConfigError as exc:  # e.g. routing: a value the catalog cannot place
        raise ValidationError([FieldError("", str(exc))]) from None
    except (TypeError, KeyError, AttributeError, ValueError, ArithmeticError) as exc:
        # The validator met a value it does not expect (a list where a unit belongs: a domain
        # check after a failed schema check). The sender gets a 4xx, the bug an ERROR line.
        log.error("webhook body: the validator failed with %s", type(exc).__name__)
        expected = f"a valid {sv.event_type} (a value could not be read: {type(exc).__name__})"
        raise ValidationError([FieldError("", expected)]) from None


@dataclass(frozen=True, slots=True)
class Receipt:
    """What became of a delivery: accepted now, a duplicate of an earlier one, or a conflict
    (its delivery id was accepted before with another body). ``event_id`` is the stored one."""

    outcome: Outcome
    event_id: str
    correlation_id: str | None = None  # of the event as parsed now (for the log line)


def record(
    conn: psycopg.Connection, delivery_id: str, out: Outgoing, body: bytes, signature: str
) -> Receipt:
    """Store the delivery and its event in one transaction (``conn`` is in autocommit mode)."""
    body_sha = hashlib.sha256(body).digest()
    sig_sha = hashlib.sha256(signature.encode()).digest()
    event_id = str(out.envelope["event_id"])
    correlation = out.envelope.get("correlation_id")
    with conn.transaction():
        inserted = conn.execute(
            "INSERT INTO webhook_deliveries"
            " (delivery_id, event_id, event_type, body_sha256, signature_sha256)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING event_id",
            (delivery_id, event_id, out.envelope["event_type"], body_sha, sig_sha),
        ).fetchone()
        if inserted is not None:
            outbox.append(conn, SOURCE, [out])
            return Receipt("accepted", event_id, correlation)
        earlier = conn.execute(
            "SELECT delivery_id, event_id::text, body_sha256 FROM webhook_deliveries"
            " WHERE delivery_id = %s OR event_id = %s OR signature_sha256 = %s"
            " ORDER BY delivery_id = %s DESC LIMIT 1",
            (delivery_id, event_id, sig_sha, delivery_id),
        ).fetchone()
    if earlier is None:  # the conflicting row vanished (pruned meanwhile): let the sender retry
        raise TransientError(f"delivery {delivery_id}: conflicting row gone, retry")
    same_id, stored_event, stored_body = earlier
    if same_id == delivery_id and bytes(stored_body) != body_sha:
        return Receipt("conflict", str(stored_event), correlation)
    return Receipt("duplicate", str(stored_event), correlation)


class Connections:
    """A small pool of autocommit connections for the request threads. A connection that saw
    any error is closed, never reused; the pool keeps at most ``size`` idle ones."""

    def __init__(self, settings: Settings, size: int) -> None:
        self.settings = settings
        self.size = size
        self._idle: list[psycopg.Connection] = []
        self._lock = threading.Lock()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """An open connection; DatabaseUnavailable when none can be made."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None or conn.closed:
            conn = connect(self.settings, autocommit=True)
        try:
            yield conn
        except BaseException:
            conn.close()
            raise
        with self._lock:
            if len(self._idle) < self.size and not conn.closed:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class Intake:
    """Parse, validate and durably record deliveries (called from the request threads)."""

    def __init__(self, settings: Settings, catalog: EventCatalog) -> None:
        self.catalog = catalog
        self.connections = Connections(settings, settings.webhook_max_concurrency)

    def knows(self, event_type: str) -> bool:
        return event_type in self.catalog.store.by_type

    def accept(self, event_type: str, delivery_id: str, body: bytes, signature: str) -> Receipt:
        """ValidationError for a bad body; DatabaseUnavailable or a psycopg error when the
        delivery could not be made durable. A pooled connection found broken (the server
        restarted) is replaced once: safe, as recording is idempotent."""
        out = parse(self.catalog, event_type, delivery_id, body)
        try:
            with self.connections.connection() as conn:
                return record(conn, delivery_id, out, body, signature)
        except psycopg.Error as exc:
            if not is_transient(exc):
                raise
        with self.connections.connection() as conn:
            return record(conn, delivery_id, out, body, signature)

    def close(self) -> None:
        self.connections.close()


def check_ready(settings: Settings) -> None:
    """ConfigError naming `supplybus db migrate` when ``webhook_deliveries`` is missing."""
    with connect(settings) as conn:
        row = conn.execute("SELECT to_regclass('webhook_deliveries') IS NOT NULL").fetchone()
    if not row or not row[0]:
        raise ConfigError(
            "the database schema is behind (no table webhook_deliveries): "
            "run `supplybus db migrate`"
        )
