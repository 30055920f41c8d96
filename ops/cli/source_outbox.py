"""`supplybus source-outbox install|relay|status`: the outbox in a source system's database."""

from __future__ import annotations

import signal
import sys
import threading
import time
from types import FrameType

import click

from supplybus.errors import ConfigError
from supplybus.metrics import Metrics
from supplybus.ops.cli.root import Context, cli, emit_json, json_option, out, pass_ctx
from supplybus.producers import source_outbox as so
from supplybus.producers.relay import OutboxRelay

_url = click.option(
    "--url",
    envvar="SOURCE_DATABASE_URL",
    required=True,
    help="The SOURCE system's PostgreSQL URL (not supplybus's); env SOURCE_DATABASE_URL.",
)
_schema = click.option(
    "--schema",
    default=so.DEFAULT_SCHEMA,
    show_default=True,
    help="The schema of the source database that holds the outbox table.",
)


@cli.group("source-outbox")
def source_outbox_group() -> None:
    """The outbox of a source system on PostgreSQL (docs/source-outbox.md).

    The source adds events in its own transactions (`source_outbox(conn).add(record)` in
    Python); the relay publishes committed rows in order with the idempotent producer.
    """


@source_outbox_group.command("install")
@_url
@_schema
@click.option("--print-sql", is_flag=True, help="Print the DDL instead of running it.")
def install_cmd(url: str, schema: str, print_sql: bool) -> None:
    """Create SCHEMA.outbox in the source database (idempotent: an existing table is kept)."""
    if print_sql:
        with so.connect_source(url) as conn:
            click.echo(so.ddl(schema).as_string(conn))
        return
    with so.connect_source(url) as conn:
        so.install(conn, schema)
    click.echo(f"source outbox ready: {schema}.outbox")


@source_outbox_group.command("relay")
@_url
@_schema
@click.option("--batch-size", type=click.IntRange(1), default=5000, show_default=True)
@click.option("--until-idle", is_flag=True, help="Exit once nothing is pending (for cron, tests).")
@click.option(
    "--idle-seconds",
    type=click.FloatRange(0),
    default=2.0,
    show_default=True,
    help="With --until-idle: how long the outbox must stay drained.",
)
@pass_ctx
def relay_cmd(
    ctx: Context, url: str, schema: str, batch_size: int, until_idle: bool, idle_seconds: float
) -> None:
    """Publish the source outbox until SIGTERM/SIGINT (or idle, with --until-idle).

    Rows go out in id order; a row is marked sent only after the broker acknowledged it, so a
    crash re-publishes at most the round in hand, with the same event ids. A second relay on
    the same outbox stands by until the first one's session ends. Exit codes: 0 stopped,
    1 the relay failed, 2 a usage or configuration error.
    """
    settings = ctx.running(kafka=True, database=False)
    with so.connect_source(url) as conn:
        if not so.is_installed(conn, schema):
            raise ConfigError(
                f"source outbox: no table {schema}.outbox in the source database "
                f"(run `supplybus source-outbox install --url URL --schema {schema}`)"
            )
    relay = OutboxRelay(
        settings, Metrics(), batch_size=batch_size, location=so.location(url, schema)
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(target=relay.run, args=(stop,), name="source-relay")
    thread.start()
    drained_since: float | None = None
    while thread.is_alive() and not stop.is_set():
        stop.wait(0.1)
        if until_idle:
            drained = relay.stats.rounds > 0 and relay.stats.backlog == 0
            drained_since = (drained_since or time.monotonic()) if drained else None
            if drained_since is not None and time.monotonic() - drained_since >= idle_seconds:
                stop.set()
    stop.set()
    thread.join()
    click.echo(f"published {relay.stats.published}, parked {relay.stats.parked}", err=True)
    if relay.error is not None:
        click.echo(f"error: the relay stopped: {relay.error}", err=True)
        sys.exit(1)


@source_outbox_group.command("status")
@_url
@_schema
@json_option
def status_cmd(url: str, schema: str, as_json: bool) -> None:
    """Rows pending, parked (never publishable: see their park_reason) and sent."""
    with so.connect_source(url) as conn:
        if not so.is_installed(conn, schema):
            raise ConfigError(f"source outbox: no table {schema}.outbox in the source database")
        counts = so.status(conn, schema)
    if as_json:
        emit_json(counts)
        return
    out.print(
        f"{schema}.outbox: {counts['pending']:,} pending, {counts['parked']:,} parked, "
        f"{counts['sent']:,} sent"
    )
