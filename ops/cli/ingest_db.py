"""`supplybus ingest db`: poll a legacy table in another database (docs/db-polling.md)."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType

import click
from psycopg.conninfo import conninfo_to_dict

from supplybus.errors import ConfigError
from supplybus.events import jsonio
from supplybus.metrics import Metrics
from supplybus.ops.cli.ingest import ingest
from supplybus.ops.cli.root import Context, emit_json, json_option, out, pass_ctx
from supplybus.ops.logs import configure_json_logging
from supplybus.producers.files.mapping import load_mapping
from supplybus.producers.polling.poller import Poller, PollResult, TableSpec
from supplybus.producers.polling.watermark import parse_duration


def default_source_name(url: str) -> str:
    """The source database's name from its URL (never the password or host)."""
    try:
        name = conninfo_to_dict(url).get("dbname")
    except Exception as exc:  # psycopg.ProgrammingError for a malformed URL
        raise ConfigError("--source-url: not a PostgreSQL connection URL") from exc
    return str(name or "source")


@ingest.command("db")
@click.option(
    "--source-url",
    envvar="SUPPLYBUS_SOURCE_URL",
    required=True,
    help="PostgreSQL URL of the source database (or SUPPLYBUS_SOURCE_URL); read only.",
)
@click.option("--table", required=True, help="The table to poll: NAME or SCHEMA.NAME.")
@click.option(
    "--mapping",
    "mapping_path",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="YAML mapping of the table's columns onto one event type (as for `ingest files`).",
)
@click.option("--key-column", required=True, help="A unique key of the rows (e.g. id).")
@click.option(
    "--updated-column",
    help="A timestamp set on every insert and update: poll by it (with --look-back) instead "
    "of by an increasing --key-column.",
)
@click.option(
    "--look-back",
    default="60s",
    show_default=True,
    help="With --updated-column: re-read this window before the watermark every poll, for "
    "rows committed late (longer than your longest writing transaction).",
)
@click.option(
    "--source-name",
    help="Name of the source in ids and watermarks (default: the database name of the URL).",
)
@click.option("--once", is_flag=True, help="Poll until the table is caught up, then exit.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=5.0,
    show_default=True,
    help="Seconds between polls (without --once; stops on SIGTERM/SIGINT).",
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=500, show_default=True,
    help="Rows per page (one transaction each).",
)  # fmt: skip
@click.option(
    "--max-rows-per-second",
    type=click.FloatRange(min=1),
    help="Read no faster than this, to spare a busy source database.",
)
@click.option("--metrics-port", type=int, help="Without --once: serve /metrics on this port.")
@json_option
@pass_ctx
def db(
    ctx: Context,
    source_url: str,
    table: str,
    mapping_path: Path,
    key_column: str,
    updated_column: str | None,
    look_back: str,
    source_name: str | None,
    once: bool,
    interval: float,
    batch_size: int,
    max_rows_per_second: float | None,
    metrics_port: int | None,
    as_json: bool,
) -> None:
    """Publish the rows of a legacy table as events, mapped by --mapping.

    Rows are read by an increasing --key-column, or by --updated-column with a look-back
    window so that rows committed late are not missed. The watermark is kept in supplybus's
    database and moved in the same transaction as the events are written to the outbox (the
    relay publishes them): a restart continues without gaps or doubles. Each row version
    has one event id (source, table, key, updated-at). Bad rows are recorded with the reason
    (table polling_rejects) and never block the table.

    \b
    Exit codes: 0 done (bad rows do not fail a poll); 2 a bad option, mapping, table or
    column, or an unreachable database (one line).

    \b
    Examples:
      supplybus ingest db --source-url postgresql://ro@erp/erp --table mm.usage \\
        --mapping usage.yaml --key-column id --updated-column changed_at --look-back 2m
      supplybus ingest db --source-url "$ERP_URL" --table issues --mapping m.yaml \\
        --key-column issue_no --once --json
    """
    mapping = load_mapping(mapping_path)
    if not 1 <= len(table.split(".")) <= 2 or not all(table.split(".")):
        raise ConfigError(f"--table: NAME or SCHEMA.NAME, got {table!r}")
    spec = TableSpec(
        source=source_name or default_source_name(source_url),
        table=table,
        key_column=key_column,
        updated_column=updated_column,
        look_back=parse_duration(look_back),
        batch_size=batch_size,
        max_rows_per_second=max_rows_per_second,
    )
    settings = ctx.running()
    configure_json_logging(settings.log_level if not ctx.verbose else "DEBUG")
    metrics = Metrics()
    poller = Poller(settings, spec, mapping, source_url, metrics=metrics)
    try:
        if once:
            report(poller.poll(), spec, as_json, final=True)
            return
        if metrics_port:
            metrics.serve(metrics_port)
        stopping = False

        def stop(signum: int, frame: FrameType | None) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        poller.run(interval, lambda: stopping, lambda r: report(r, spec, as_json, final=False))
    finally:
        poller.close()


def report(result: PollResult, spec: TableSpec, as_json: bool, *, final: bool) -> None:
    if as_json:
        data = {"source": spec.source, "table": spec.table, **result.as_dict()}
        emit_json(data) if final else click.echo(jsonio.dumps(data))
        return
    if not final and not result.read:
        return
    reasons = ", ".join(f"{n} {r}" for r, n in sorted(result.reasons.items()))
    rejected = f", {result.rejected} rejected ({reasons}; see polling_rejects)" if reasons else ""
    out.print(
        f"{spec.table}: {result.read} read, {result.accepted} published, "
        f"{result.duplicates} already seen{rejected}; watermark {result.watermark or '-'}"
    )
