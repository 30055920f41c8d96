"""Background loops beside the lanes (PO and payment dispatchers, ...): one pass after another
on an autocommit connection, a database outage waited out."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg

from supplybus.adapters.postgres import connect, is_transient
from supplybus.config import Settings
from supplybus.errors import TransientError

log = logging.getLogger("supplybus.runtime")


def run_passes(
    settings: Settings,
    stop: threading.Event,
    one_pass: Callable[[psycopg.Connection], object],
    *,
    name: str,
    interval: float,
) -> None:
    """``one_pass(conn)`` every ``interval`` seconds until ``stop``. A transient database error
    closes the connection, waits a second and opens another; any other error is raised."""
    conn: psycopg.Connection | None = None
    try:
        while not stop.is_set():
            try:
                if conn is None:
                    conn = connect(settings, autocommit=True)
                one_pass(conn)
                stop.wait(interval)
            except (psycopg.Error, TransientError) as exc:
                if not (isinstance(exc, TransientError) or is_transient(exc)):
                    raise
                log.warning("%s: database unavailable, retrying: %s", name, exc)
                if conn is not None:
                    conn.close()
                    conn = None
                stop.wait(1.0)
    finally:
        if conn is not None:
            conn.close()
