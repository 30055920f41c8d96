"""The PO dispatcher: delivers ``po_deliveries`` to the outbound target, once, with retries.

The purchase-orders processor writes a ``po_deliveries`` row (the document the target must
receive) in the transaction that issues the PO. A pass of the dispatcher claims due rows one
at a time (``status = 'PENDING' AND next_attempt_at <= now()``, CRITICAL priority first, then
oldest) with ``FOR UPDATE SKIP LOCKED``, so that two dispatchers never deliver one PO at the
same time, and in that short transaction:

- the PO was cancelled: the delivery is marked CANCELLED, nothing is sent;
- delivered: marked DELIVERED (``delivered_at``, ``delivered_to``, ``attempts + 1``);
- ``TargetUnavailable``: ``attempts + 1``, ``last_error``, and the next attempt after an
  exponential backoff with jitter (``backoff_delay``). Once the PO has waited longer than the
  alert time an alert fires, once per PO: ``alerted_at``, one ERROR log line naming the PO and
  the target, metric ``po_delivery_alerts_total``;
- a permanent error (a different file already under the PO's name, a document that does not
  match its row): the alert fires at once (``last_error`` starts with ``permanent:``), and
  the PO is retried with the same backoff, so that it goes out once someone has cleared the
  cause.

At least once towards the target, exactly once in effect: a crash after the target took the
document and before the row was marked delivers the same bytes again, which a target must
accept as a repeat (``FolderTarget`` does: same name, same bytes).
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import psycopg

from supplybus import crashpoints
from supplybus.adapters.outbound import PurchaseOrderTarget
from supplybus.config import Settings
from supplybus.consumers.runtime.loops import run_passes
from supplybus.errors import ConfigError, PermanentError, TargetUnavailable
from supplybus.metrics import Metrics

log = logging.getLogger("supplybus.po_dispatch")
LAYOUT = "supplybus.po.v1"
OutcomeKind = Literal["delivered", "retried", "cancelled", "failed"]


def render(document: Mapping[str, Any]) -> bytes:
    """The canonical bytes of a PO document: sorted keys, indent 2, UTF-8, trailing newline."""
    return (json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: ``base_s * 2**(attempts - 1)`` capped at ``cap_s``, less a random
    share of up to ``jitter`` (so that dispatchers retrying together spread out)."""

    base_s: float = 1.0
    cap_s: float = 300.0
    jitter: float = 0.25


def backoff_delay(attempts: int, rand: float, backoff: Backoff = Backoff()) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt; ``rand`` is in [0, 1)."""
    exponent = min(max(attempts - 1, 0), 60)
    full = min(backoff.cap_s, backoff.base_s * 2.0**exponent)
    return full * (1.0 - backoff.jitter * min(max(rand, 0.0), 1.0))


def should_alert(waited_s: float, alert_after_s: float, alerted: bool) -> bool:
    """An alert fires once per PO, the first time it has waited longer than the alert time."""
    return not alerted and waited_s > alert_after_s


@dataclass(frozen=True)
class Outcome:
    """What one attempt did with one PO."""

    po_number: str
    kind: OutcomeKind
    detail: str  # where it went, or why not
    attempts: int
    alerted: bool = False  # the alert fired at this attempt
    retry_in_s: float | None = None

    def line(self) -> str:
        """One line for the CLI."""
        if self.kind == "delivered":
            return f"delivered {self.po_number} -> {self.detail}"
        if self.kind == "cancelled":
            return f"cancelled {self.po_number}: the PO was cancelled before delivery"
        alert = " [ALERT]" if self.alerted else ""
        verb = "retrying" if self.kind == "retried" else "FAILED"
        return (
            f"{verb} {self.po_number}{alert} (attempt {self.attempts}, next in "
            f"{self.retry_in_s or 0:.1f} s): {self.detail}"
        )


@dataclass
class DispatchStats:
    delivered: int = 0
    retried: int = 0
    cancelled: int = 0
    failed: int = 0  # attempts that met a permanent error
    alerts: int = 0
    passes: int = 0  # passes completed
    overdue: int = 0  # pending deliveries older than the alert time, after the last pass
    untried: int = 0  # pending deliveries never attempted, after the last pass


_CLAIM = """
SELECT d.po_id, d.po_number, d.document, d.attempts, p.status,
       extract(epoch FROM now() - d.created_at)::float8, d.alerted_at IS NOT NULL
FROM po_deliveries d JOIN purchase_orders p ON p.po_id = d.po_id
WHERE d.status = 'PENDING' AND d.next_attempt_at <= now() AND NOT d.po_id = ANY(%s::text[])
ORDER BY p.priority = 'CRITICAL' DESC, d.created_at, d.po_number
LIMIT 1
FOR UPDATE OF d SKIP LOCKED
FOR SHARE OF p SKIP LOCKED
"""
_DELIVERED = """
UPDATE po_deliveries SET status = 'DELIVERED', attempts = attempts + 1, delivered_at = now(),
       last_attempt_at = now(), delivered_to = %s
WHERE po_id = %s
"""
_CANCELLED = "UPDATE po_deliveries SET status = 'CANCELLED' WHERE po_id = %s"
_RETRY = """
UPDATE po_deliveries SET attempts = attempts + 1, last_attempt_at = now(), last_error = %s,
       next_attempt_at = now() + make_interval(secs => %s),
       alerted_at = CASE WHEN %s THEN now() ELSE alerted_at END
WHERE po_id = %s
"""
_BACKLOG = """
SELECT count(*) FILTER (WHERE now() - created_at > make_interval(secs => %s)),
       count(*) FILTER (WHERE attempts = 0)
FROM po_deliveries WHERE status = 'PENDING'
"""


class PoDispatcher:
    """Delivers pending POs to ``target``. ``alert_after_s`` defaults to the setting
    SUPPLYBUS_PO_ALERT_AFTER; ``on_outcome`` sees every attempt (the CLI prints them)."""

    def __init__(
        self,
        settings: Settings,
        target: PurchaseOrderTarget,
        metrics: Metrics | None = None,
        *,
        alert_after_s: float | None = None,
        backoff: Backoff = Backoff(),
        rand: Callable[[], float] = random.random,
        on_outcome: Callable[[Outcome], None] | None = None,
    ) -> None:
        self.settings = settings
        self.target = target
        self.metrics = metrics or Metrics()
        self.alert_after_s = settings.po_alert_after_s if alert_after_s is None else alert_after_s
        if not self.alert_after_s > 0:
            raise ConfigError(f"alert after: expected seconds > 0, got {self.alert_after_s}")
        self.backoff = backoff
        self.rand = rand
        self.on_outcome = on_outcome
        self.stats = DispatchStats()
        self.error: BaseException | None = None

    def drained(self) -> bool:
        """For ``run --until-idle``: a pass ran and no delivery waits for its first attempt
        (POs retrying against a target that is down do not keep a run from ending: they stay
        pending, alert when overdue, and go out at a later run)."""
        return self.stats.passes > 0 and self.stats.untried == 0

    def run(self, stop: threading.Event, interval: float = 0.5) -> None:
        """Pass after pass until ``stop`` is set; a database outage is waited out. An
        unexpected error is kept in ``error`` and sets ``stop``."""
        try:
            self._run(stop, interval)
        except BaseException as exc:
            self.error = exc
            log.exception("PO dispatcher stopped by an error")
            stop.set()

    def _run(self, stop: threading.Event, interval: float) -> None:
        run_passes(self.settings, stop, lambda conn: self.dispatch_pass(conn, stop),
                   name="PO dispatcher", interval=interval)  # fmt: skip

    def dispatch_pass(
        self, conn: psycopg.Connection, stop: threading.Event | None = None
    ) -> list[Outcome]:
        """Attempt every delivery due now, each once; ``conn`` must be in autocommit mode."""
        tried: list[str] = []
        outcomes: list[Outcome] = []
        while stop is None or not stop.is_set():
            with conn.transaction():
                row = conn.execute(_CLAIM, (tried,)).fetchone()
                if row is None:
                    break
                po_id, po_number, document, attempts, po_status, waited, alerted = row
                tried.append(po_id)
                if po_status == "CANCELLED":
                    conn.execute(_CANCELLED, (po_id,))
                    outcome = Outcome(po_number, "cancelled", "", attempts)
                else:
                    outcome = self._attempt(conn, po_id, po_number, document, attempts + 1)
                    if outcome.kind != "delivered":
                        outcome = self._defer(conn, po_id, outcome, waited, alerted)
            self._count(outcome)
            outcomes.append(outcome)
        self._backlog(conn)
        self.stats.passes += 1
        return outcomes

    def _attempt(
        self, conn: psycopg.Connection, po_id: str, po_number: str, document: Any, attempt: int
    ) -> Outcome:
        """Deliver one PO; marks it delivered, or returns what went wrong (nothing marked)."""
        try:
            body = render(_checked(po_number, document))
            where = self.target.deliver(po_number, body)
        except (TargetUnavailable, ConnectionError, TimeoutError) as exc:
            return Outcome(po_number, "retried", str(exc), attempt)
        except PermanentError as exc:
            return Outcome(po_number, "failed", str(exc), attempt)
        crashpoints.reached("po-after-write")
        conn.execute(_DELIVERED, (where, po_id))
        log.info("PO %s delivered to %s", po_number, where)
        return Outcome(po_number, "delivered", where, attempt)

    def _defer(
        self, conn: psycopg.Connection, po_id: str, failed: Outcome, waited: float, alerted: bool
    ) -> Outcome:
        """Record a failed attempt: next attempt after the backoff, the alert when due."""
        permanent = failed.kind == "failed"
        delay = backoff_delay(failed.attempts, self.rand(), self.backoff)
        alert = not alerted if permanent else should_alert(waited, self.alert_after_s, alerted)
        error = f"permanent: {failed.detail}" if permanent else failed.detail
        conn.execute(_RETRY, (error, delay, alert, po_id))
        if permanent:
            log.error(
                "PO %s cannot be delivered to %s: %s", failed.po_number, self.target.name, error
            )
        elif alert:
            log.error(
                "ALERT: PO %s has waited %.0f s for target %s (alert after %.0f s), "
                "%d attempt(s), last error: %s",
                failed.po_number,
                waited,
                self.target.name,
                self.alert_after_s,
                failed.attempts,
                failed.detail,
            )
        else:
            log.warning(
                "PO %s: target %s unavailable (attempt %d), next in %.1f s: %s",
                failed.po_number,
                self.target.name,
                failed.attempts,
                delay,
                failed.detail,
            )
        return Outcome(
            failed.po_number, failed.kind, error, failed.attempts, alerted=alert, retry_in_s=delay
        )

    def _count(self, outcome: Outcome) -> None:
        setattr(self.stats, outcome.kind, getattr(self.stats, outcome.kind) + 1)
        self.metrics.po_deliveries.labels(outcome.kind).inc()
        if outcome.alerted:
            self.stats.alerts += 1
            self.metrics.po_alerts.inc()
        if self.on_outcome is not None:
            self.on_outcome(outcome)

    def _backlog(self, conn: psycopg.Connection) -> None:
        row = conn.execute(_BACKLOG, (self.alert_after_s,)).fetchone()
        self.stats.overdue, self.stats.untried = row if row else (0, 0)
        self.metrics.po_overdue.set(self.stats.overdue)


def _checked(po_number: str, document: Any) -> Mapping[str, Any]:
    """The stored document, if it is a PO document for this PO number."""
    if not isinstance(document, dict) or document.get("po_number") != po_number:
        found = document.get("po_number") if isinstance(document, dict) else type(document)
        raise PermanentError(
            f"po_deliveries.document of {po_number}: expected a {LAYOUT} object with "
            f"po_number {po_number!r}, got po_number {found!r}"
        )
    return document


STATUSES = ("PENDING", "DELIVERED", "CANCELLED")


def deliveries(
    conn: psycopg.Connection, status: str | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    """PO deliveries, oldest first (those of one status when given), as plain rows."""
    rows = conn.execute(
        """
        SELECT po_number, status, attempts, last_error, alerted_at, created_at,
               next_attempt_at, delivered_at, delivered_to
        FROM po_deliveries WHERE %(status)s::text IS NULL OR status = %(status)s
        ORDER BY created_at, po_number LIMIT %(limit)s
        """,
        {"status": status, "limit": limit},
    ).fetchall()
    names = (
        "po_number",
        "status",
        "attempts",
        "last_error",
        "alerted_at",
        "created_at",
        "next_attempt_at",
        "delivered_at",
        "delivered_to",
    )
    return [dict(zip(names, row, strict=True)) for row in rows]


__all__ = [
    "LAYOUT",
    "STATUSES",
    "Backoff",
    "DispatchStats",
    "Outcome",
    "PoDispatcher",
    "backoff_delay",
    "deliveries",
    "render",
    "should_alert",
]
