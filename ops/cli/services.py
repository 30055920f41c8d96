"""`supplybus up | down | status | settings`."""

from __future__ import annotations

import sys

import click
from rich.table import Table

from supplybus.config import mask_url, settings_table
from supplybus.ops import services
from supplybus.ops.cli.root import Context, cli, emit_json, json_option, out, pass_ctx


@cli.command()
@pass_ctx
def up(ctx: Context) -> None:
    """Start the embedded broker and database (if not running), migrate, apply topics."""
    report = services.up(ctx.settings)
    s = report.settings
    for name in report.started:
        out.print(f"started  {name}")
    for name in report.already:
        out.print(f"running  {name} (already up)")
    out.print(f"kafka    {s.kafka_bootstrap_servers}")
    out.print(f"database {mask_url(s.database_url or '')}")
    if report.migrations:
        out.print(f"migrated {', '.join(report.migrations)}")
    created = [t.spec.name for t in report.topics if t.status == "created"]
    out.print(f"topics   {len(report.topics)} in catalog, {len(created)} created")
    for t in report.topics:
        for d in t.drift:
            out.print(f"[yellow]drift    {t.spec.name}: {d}[/]")


@cli.command()
@pass_ctx
def down(ctx: Context) -> None:
    """Stop the embedded services that `up` started (external services are left alone)."""
    stopped = services.down(ctx.settings)
    out.print("stopped " + ", ".join(stopped) if stopped else "nothing was running")


@cli.command()
@json_option
@pass_ctx
def status(ctx: Context, as_json: bool) -> None:
    """Report whether the broker and the database answer. Exits 1 when one does not."""
    report = services.status(ctx.settings)
    if as_json:
        emit_json(report)
    else:
        table = Table("service", "mode", "address", "healthy", "detail")
        for name, s in report.items():
            ok = "[green]yes[/]" if s["healthy"] else "[red]no[/]"
            table.add_row(name, s["mode"], str(s["address"] or "-"), ok, s["detail"])
        out.print(table)
    if not all(s["healthy"] for s in report.values()):
        sys.exit(1)


@cli.command("settings")
def show_settings() -> None:
    """List every setting: its environment variable, default and meaning."""
    click.echo(settings_table())
