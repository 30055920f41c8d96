"""`supplybus db migrate | status | prune`."""

from __future__ import annotations

import click
from rich.table import Table

from supplybus.adapters.postgres import connect
from supplybus.consumers.runtime import retention
from supplybus.errors import ConfigError
from supplybus.ops import migrate
from supplybus.ops.cli.root import Context, cli, emit_json, json_option, out, pass_ctx

RETENTION_MIGRATION = 6
_KEPT = {
    "processed_events": "processed more than {} days ago; rows of keys on hold and of topics "
    "that keep records forever stay",
    "outbox": "sent more than {} days ago; unsent and parked rows stay",
    "dead_letters": "replayed or resolved more than {} days ago; open and parked ones stay",
}


@cli.group()
def db() -> None:
    """The supplybus database (DATABASE_URL or the embedded PostgreSQL)."""


@db.command("migrate")
@pass_ctx
def migrate_cmd(ctx: Context) -> None:
    """Apply pending migrations in order; each runs in its own transaction."""
    settings = ctx.running(kafka=False)
    applied = migrate.migrate(settings)
    out.print("applied " + ", ".join(m.path.name for m in applied) if applied else "up to date")


@db.command("status")
@json_option
@pass_ctx
def status_cmd(ctx: Context, as_json: bool) -> None:
    """List migrations and whether each is applied."""
    settings = ctx.running(kafka=False)
    applied = set(migrate.applied_versions(settings))
    rows = [
        {"version": m.version, "name": m.path.name, "applied": m.version in applied}
        for m in migrate.discover()
    ]
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        out.print(f"{'applied' if r['applied'] else 'pending':8} {r['name']}")


@db.command("prune")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@json_option
@pass_ctx
def prune_cmd(ctx: Context, dry_run: bool, as_json: bool) -> None:
    """Delete what no re-delivery, relay or audit can still need (ADR 0008).

    \b
    Horizons (`supplybus settings`; measured on the database clock):
      ledger rows   SUPPLYBUS_LEDGER_RETENTION_DAYS after processing (default 45); refused
                    when shorter than a topic's retention.ms in the topic catalog
      outbox rows   SUPPLYBUS_OUTBOX_RETENTION_DAYS after sending (default 7)
      dead letters  SUPPLYBUS_DEAD_LETTER_RETENTION_DAYS after replay or resolution (90)
    Never deleted: unsent or parked outbox rows, open or parked dead letters, ledger rows
    of a key with held events or of a topic that keeps records forever (compacted).

    Deletes in chunks of SUPPLYBUS_PRUNE_CHUNK rows, one short transaction each; waits while
    another prune (a `supplybus run`) holds the schema's lock. `supplybus run` prunes by
    itself every SUPPLYBUS_PRUNE_INTERVAL seconds.
    """
    horizons = retention.Horizons.from_settings(ctx.settings)  # before starting anything
    settings = ctx.running(kafka=False)
    if RETENTION_MIGRATION not in migrate.applied_versions(settings):
        raise ConfigError(
            f"schema {settings.db_schema}: migration 0006_retention.sql is not applied: "
            "run `supplybus db migrate` first"
        )
    with connect(settings, autocommit=True) as conn:
        if not dry_run and not retention.lock(conn, settings.db_schema):
            click.echo(f"waiting for the prune running on schema {settings.db_schema}", err=True)
            retention.lock(conn, settings.db_schema, wait=True)
        if out.is_terminal and not as_json:
            with out.status("pruning") as status:

                def progress(table: str, rows: int) -> None:
                    status.update(f"{table}: {rows:,} rows deleted")

                report = retention.prune(
                    conn, horizons, chunk=settings.prune_chunk, dry_run=dry_run, progress=progress
                )
        else:
            report = retention.prune(conn, horizons, chunk=settings.prune_chunk, dry_run=dry_run)
    if as_json:
        emit_json(report.as_dict())
        return
    title = "dry run: nothing deleted" if dry_run else "pruned"
    table = Table(
        "table",
        "would delete" if dry_run else "deleted",
        "rule",
        title=f"{title} ({report.seconds:.1f}s)",
        title_justify="left",
    )
    days = horizons.days()
    for name, rows in report.deleted.items():
        table.add_row(name, f"{rows:,}", _KEPT[name].format(days[name]))
    out.print(table)
