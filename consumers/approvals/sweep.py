"""The SLA sweep as a loop beside the processors (`supplybus run approvals-sweep`, and
`run all`): every ``interval`` seconds, an ApprovalEscalated for each overdue step
(``commands.overdue``) goes to the outbox, and the fallback queue's size is published as the
gauge ``supplybus_approvals_fallback`` (alert on > 0)."""

from __future__ import annotations

import logging
import threading

import psycopg

from supplybus.adapters.postgres import connect, is_transient
from supplybus.config import Settings
from supplybus.consumers.approvals import commands
from supplybus.consumers.approvals.federation import PolicySet
from supplybus.consumers.approvals.published import PoliciesInForce
from supplybus.errors import TransientError
from supplybus.events.catalog import EventCatalog
from supplybus.events.envelope import utcnow
from supplybus.metrics import Metrics

log = logging.getLogger(__name__)


class EscalationSweep:
    """Escalates overdue approval steps, pass after pass, until ``stop``."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics | None = None,
        *,
        policies: PolicySet | None = None,
        interval_s: float = 30.0,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.policies = PoliciesInForce(policies)
        self.interval_s = interval_s
        self.catalog = EventCatalog.from_settings(settings)
        self.passes = 0
        self.escalated = 0
        self.error: BaseException | None = None

    def drained(self) -> bool:
        return self.passes > 0

    def run(self, stop: threading.Event) -> None:
        """Pass after pass; a database outage is waited out; another error is kept in
        ``error`` and sets ``stop``."""
        try:
            while not stop.is_set():
                try:
                    self.sweep()
                except (psycopg.Error, TransientError) as exc:
                    if not (isinstance(exc, TransientError) or is_transient(exc)):
                        raise
                    log.warning("approval SLA sweep: database unavailable, retrying: %s", exc)
                stop.wait(self.interval_s)
        except BaseException as exc:
            self.error = exc
            log.exception("approval SLA sweep stopped by an error")
            stop.set()

    def sweep(self) -> int:
        """One pass: the escalations queued (committed), the fallback gauge set."""
        with connect(self.settings) as conn:
            records = commands.overdue(conn, self.policies(conn), utcnow())
            commands.queue(conn, self.catalog, records)
            (fallback,) = conn.execute(
                "SELECT count(*) FROM approval_steps s JOIN requisitions r USING (requisition_id)"
                " WHERE s.status = 'FALLBACK' AND r.status = 'PENDING_APPROVAL'"
            ).fetchone() or (0,)
            conn.commit()
        for r in records:
            log.info("escalated %s step %s to %s", r["requisition_id"], r["step"], r["to_role"])
        self.metrics.approvals_escalated.inc(len(records))
        self.metrics.approvals_fallback.set(fallback)
        self.passes += 1
        self.escalated += len(records)
        return len(records)
