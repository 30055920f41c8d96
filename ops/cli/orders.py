"""`supplybus po dispatch` and `supplybus po deliveries`: outbound purchase orders."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import click
import psycopg
from rich.table import Table

from supplybus.adapters.outbound import FolderTarget
from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.procurement.commands import SOURCE, cancellation
from supplybus.consumers.procurement.dispatch import STATUSES, Outcome, PoDispatcher, deliveries
from supplybus.errors import ConfigError
from supplybus.events.catalog import EventCatalog
from supplybus.events.envelope import utcnow
from supplybus.metrics import Metrics
from supplybus.ops.cli.root import Context, cli, emit_json, json_option, out, pass_ctx
from supplybus.ops.logs import configure_json_logging
from supplybus.producers import outbox


@cli.group("po")
def po() -> None:
    """Purchase orders: delivery to the supplier / ERP through the outbound folder
    (layout, naming and guarantees: docs/outbound-po.md)."""


def folder_target(settings: Settings, target: Path | None) -> FolderTarget:
    """The folder target: --target, else SUPPLYBUS_PO_OUTBOX_DIR (both must exist: a missing
    folder is a target that is down), else <SUPPLYBUS_HOME>/outbound/po, created if missing."""
    if target is None and settings.po_outbox_dir is None:
        settings.po_outbox.mkdir(parents=True, exist_ok=True)
    return FolderTarget(target or settings.po_outbox)


@po.command("dispatch")
@click.option("--once", is_flag=True, help="One pass over the deliveries due now, then exit.")
@click.option(
    "--target",
    type=click.Path(file_okay=False, path_type=Path),
    help="The outbound folder (default: SUPPLYBUS_PO_OUTBOX_DIR, else "
    "<SUPPLYBUS_HOME>/outbound/po). A missing folder counts as a target that is down.",
)
@click.option(
    "--alert-after",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Alert when a PO has waited this long for the target (default: "
    "SUPPLYBUS_PO_ALERT_AFTER, 900).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    help="Serve Prometheus metrics on 127.0.0.1:PORT/metrics.",
)
@pass_ctx
def dispatch(
    ctx: Context,
    once: bool,
    target: Path | None,
    alert_after: float | None,
    metrics_port: int | None,
) -> None:
    """Deliver pending purchase orders to the outbound folder, each exactly once.

    One file per PO, `<po_number>.json`, written atomically. A folder that is missing or
    unwritable is a target that is down: the PO waits and is retried with exponential
    backoff, and an alert (an ERROR log line, metric supplybus_po_delivery_alerts_total)
    fires once a PO has waited past the alert time. A cancelled PO is not delivered. A
    different file already under a PO's name is never overwritten.

    Runs until SIGTERM/SIGINT, or one pass with --once, printing each attempt.

    \b
    Exit codes: 0 done; 1 a permanent error stopped a delivery (e.g. a different file under
    the PO's name: move it away and run again) or the dispatcher failed.
    """
    settings = ctx.running(kafka=False)
    folder = folder_target(settings, target)
    metrics = Metrics()
    if metrics_port:
        metrics.serve(metrics_port)

    def show(outcome: Outcome) -> None:
        click.echo(outcome.line())

    dispatcher = PoDispatcher(settings, folder, metrics, alert_after_s=alert_after, on_outcome=show)
    if once:
        with _db(settings) as conn:
            dispatcher.dispatch_pass(conn)
    else:
        configure_json_logging(settings.log_level if not ctx.verbose else "DEBUG")
        stop = threading.Event()
        _stop_on_signals(stop)
        click.echo(f"dispatching purchase orders to {folder.name} (Ctrl-C stops)", err=True)
        dispatcher.run(stop)
    s = dispatcher.stats
    click.echo(
        f"{s.delivered} delivered, {s.retried} retried, {s.cancelled} cancelled, "
        f"{s.failed} failed; {s.overdue} pending past the alert time",
        err=True,
    )
    if s.failed or dispatcher.error is not None:
        sys.exit(1)


@po.command("deliveries")
@click.option(
    "--status",
    type=click.Choice(STATUSES, case_sensitive=False),
    help="Only deliveries in this status.",
)
@click.option(
    "--limit",
    type=click.IntRange(1, 100_000),
    default=200,
    show_default=True,
    help="List at most this many (oldest first).",
)
@json_option
@pass_ctx
def deliveries_cmd(ctx: Context, status: str | None, limit: int, as_json: bool) -> None:
    """Outbound PO deliveries: status, attempts, last error, when an alert fired."""
    settings = ctx.running(kafka=False)
    with _db(settings) as conn:
        rows = deliveries(conn, status.upper() if status else None, limit)
    if as_json:
        emit_json([{**r, "alerted": r["alerted_at"] is not None} for r in rows])
        return
    if not rows:
        out.print("no PO deliveries" + (f" in status {status.upper()}" if status else ""))
        return
    table = Table("po_number", "status", "attempts", "last error", "alerted", "delivered to")
    for r in rows:
        table.add_row(
            r["po_number"],
            r["status"],
            str(r["attempts"]),
            _short(r["last_error"]),
            _when(r["alerted_at"]),
            r["delivered_to"] or "",
        )
    out.print(table)


@contextmanager
def _db(settings: Settings) -> Iterator[psycopg.Connection]:
    """An autocommit connection, with a one-line error when the schema is not migrated."""
    with connect(settings, autocommit=True) as conn:
        try:
            yield conn
        except psycopg.errors.UndefinedTable as exc:
            raise ConfigError(
                f"schema {settings.db_schema}: no po_deliveries table (run `supplybus db migrate`)"
            ) from exc


def _stop_on_signals(stop: threading.Event) -> None:
    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def _short(text: str | None, width: int = 80) -> str:
    if not text:
        return ""
    return text if len(text) <= width else text[: width - 1] + "…"


def _when(at: Any) -> str:
    return at.isoformat(timespec="seconds") if at is not None else ""


@po.command("cancel")
@click.argument("po_ref", metavar="PO")
@click.option("--reason", required=True, help="Why (kept with the PO and in the audit trail).")
@click.option("--as", "actor", default="cli", show_default=True, help="Who cancels.")
@pass_ctx
def cancel(ctx: Context, po_ref: str, reason: str, actor: str) -> None:
    """Cancel purchase order PO (number or id): its budget commitment is released
    (BudgetReleased) and, if it was not delivered yet, it never will be. Published through the
    outbox; the purchase-orders processor applies it."""
    settings = ctx.running(kafka=False)
    catalog = EventCatalog.from_settings(settings)
    with connect(settings) as conn:
        record = cancellation(conn, po_ref, reason, actor, utcnow())
        outbox.append(conn, SOURCE, [catalog.prepare(record)])
        conn.commit()
    out.print(
        f"cancellation of {po_ref} queued in the outbox (event {record['envelope']['event_id']})"
    )
