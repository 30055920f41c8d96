"""The payment dispatcher: each authorized payment's payment-run file, written once.

invoice-match queues a ``payment_deliveries`` row (the document) in the transaction that
authorizes the payment. A pass claims due rows one at a time with ``FOR UPDATE SKIP LOCKED``
(two dispatchers never write one payment) and writes ``<file_name>.json`` to the target
(``adapters.outbound.FolderTarget``: atomic, and a file of that name with other bytes is never
overwritten). A target that is down (or a conflicting file) leaves the row pending with the
error and an exponential backoff, as the PO dispatcher does (its ``render`` and
``backoff_delay`` are reused: the same canonical JSON, the same retry curve). A crash after
the write and before the row is marked writes the same bytes again: a repeat, not a second
payment. Layout: docs/outbound-payments.md.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from supplybus.adapters.outbound import PurchaseOrderTarget
from supplybus.config import Settings
from supplybus.consumers.procurement.dispatch import Backoff, backoff_delay, render
from supplybus.consumers.runtime.loops import run_passes
from supplybus.errors import PermanentError, TargetUnavailable

log = logging.getLogger("supplybus.payment_dispatch")
_BACKOFF = Backoff()

_CLAIM = """
SELECT payment_id, file_name, document, attempts FROM payment_deliveries
WHERE status = 'PENDING' AND next_attempt_at <= now() AND NOT payment_id = ANY(%s::text[])
ORDER BY created_at, payment_id
LIMIT 1
FOR UPDATE SKIP LOCKED
"""
_DELIVERED = """
UPDATE payment_deliveries SET status = 'DELIVERED', attempts = attempts + 1,
       delivered_at = now(), delivered_to = %s, last_error = NULL
WHERE payment_id = %s
"""
_RETRY = """
UPDATE payment_deliveries SET attempts = attempts + 1, last_error = %s,
       next_attempt_at = now() + make_interval(secs => %s)
WHERE payment_id = %s
"""


@dataclass
class PaymentStats:
    delivered: int = 0
    retried: int = 0
    passes: int = 0
    untried: int = 0  # pending files never attempted, after the last pass


class PaymentDispatcher:
    """Writes pending payment-run files to ``target`` (a background loop of ``Runner``)."""

    def __init__(
        self,
        settings: Settings,
        target: PurchaseOrderTarget,
        *,
        backoff: Backoff = _BACKOFF,
        rand: Callable[[], float] = random.random,
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.target = target
        self.backoff = backoff
        self.rand = rand
        self.on_line = on_line
        self.stats = PaymentStats()
        self.error: BaseException | None = None

    def drained(self) -> bool:
        """A pass ran and no payment file waits for its first attempt."""
        return self.stats.passes > 0 and self.stats.untried == 0

    def run(self, stop: threading.Event, interval: float = 0.5) -> None:
        """Pass after pass until ``stop``; a database outage is waited out, anything else is
        kept in ``error`` and sets ``stop``."""
        try:
            run_passes(self.settings, stop, lambda conn: self.dispatch_pass(conn, stop),
                       name="payment dispatcher", interval=interval)  # fmt: skip
        except BaseException as exc:
            self.error = exc
            log.exception("payment dispatcher stopped by an error")
            stop.set()

    def dispatch_pass(self, conn: psycopg.Connection, stop: threading.Event | None = None) -> int:
        """Attempt every payment file due now, each once; returns how many were written.
        ``conn`` must be in autocommit mode."""
        tried: list[str] = []
        written = 0
        while stop is None or not stop.is_set():
            with conn.transaction():
                row = conn.execute(_CLAIM, (tried,)).fetchone()
                if row is None:
                    break
                pid, name, document, attempts = row
                tried.append(pid)
                try:
                    where = self.target.deliver(name, render(document))
                except (TargetUnavailable, PermanentError, ConnectionError, TimeoutError) as exc:
                    delay = backoff_delay(attempts + 1, self.rand(), self.backoff)
                    conn.execute(_RETRY, (str(exc), delay, pid))
                    self.stats.retried += 1
                    self._say(f"retrying {name} (attempt {attempts + 1}, in {delay:.1f} s): {exc}")
                    continue
                conn.execute(_DELIVERED, (where, pid))
                written += 1
                self.stats.delivered += 1
                self._say(f"written {name} -> {where}")
        row = conn.execute(
            "SELECT count(*) FROM payment_deliveries WHERE status = 'PENDING' AND attempts = 0"
        ).fetchone()
        self.stats.untried = int(row[0]) if row else 0
        self.stats.passes += 1
        return written

    def _say(self, line: str) -> None:
        log.info("%s", line)
        if self.on_line is not None:
            self.on_line(line)
