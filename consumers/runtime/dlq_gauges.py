"""The dead-letter gauges as a loop beside the processors (`supplybus run --metrics-port`):
every ``interval_s`` seconds, ``supplybus_dead_letters_open{processor,error_code}`` and
``supplybus_dead_letter_oldest_age_seconds`` are read from ``dead_letters``."""

from __future__ import annotations

import logging
import threading

import psycopg

from supplybus.adapters.postgres import connect, is_transient
from supplybus.config import Settings
from supplybus.consumers.runtime.dlq_store import refresh_metrics
from supplybus.errors import TransientError
from supplybus.metrics import Metrics

log = logging.getLogger(__name__)


class DeadLetterGauges:
    """Refreshes the dead-letter gauges until ``stop`` (a ``runner.Background``)."""

    def __init__(self, settings: Settings, metrics: Metrics, *, interval_s: float = 30.0) -> None:
        self.settings = settings
        self.metrics = metrics
        self.interval_s = interval_s
        self.passes = 0
        self.error: BaseException | None = None

    def drained(self) -> bool:
        return True  # nothing it does is work left undone

    def run(self, stop: threading.Event) -> None:
        """Pass after pass; a database outage is waited out; another error is kept in
        ``error`` and sets ``stop``."""
        try:
            while not stop.is_set():
                try:
                    self.refresh()
                except (psycopg.Error, TransientError) as exc:
                    if not (isinstance(exc, TransientError) or is_transient(exc)):
                        raise
                    log.warning("dead-letter gauges: database unavailable, retrying: %s", exc)
                stop.wait(self.interval_s)
        except BaseException as exc:
            self.error = exc
            log.exception("dead-letter gauges stopped by an error")
            stop.set()

    def refresh(self) -> None:
        with connect(self.settings, autocommit=True) as conn:
            refresh_metrics(conn, self.metrics)
        self.passes += 1
