"""`supplybus db migrate | status`."""

from __future__ import annotations

from supplybus.ops import migrate
from supplybus.ops.cli.root import Context, cli, emit_json, json_option, out, pass_ctx


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
