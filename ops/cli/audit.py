"""`supplybus audit`: an entity's audit history, and verification of every hash chain."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
import psycopg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.audit import Report, history, verify
from supplybus.consumers.audit.trail import count, row_as_json
from supplybus.errors import ConfigError
from supplybus.ops.cli.root import Context, cli, emit_json, json_option, out, pass_ctx


@cli.command("audit")
@click.argument("entity_id", metavar="ENTITY_ID|verify")
@click.option("--type", "entity_type", help="Only entities of this type (e.g. requisition).")
@json_option
@pass_ctx
def audit_cmd(ctx: Context, entity_id: str, entity_type: str | None, as_json: bool) -> None:
    """The audit trail (ADR 0011): `audit ENTITY_ID` prints an entity's history, oldest first
    (who did what, when, why: reason, rule ids and version; the event and correlation ids
    that caused it; the hash chain). `audit verify` checks every chain and exits 0 when all
    are intact, 1 with one line per problem (entity, sequence number, and edited, deleted or
    reordered).
    """
    settings = ctx.running(kafka=False)
    if entity_id == "verify":
        _verify(settings, entity_type, as_json)
    else:
        _show(settings, entity_id, entity_type, as_json)


@contextmanager
def _audit_db(settings: Settings) -> Iterator[psycopg.Connection]:
    with connect(settings) as conn:
        try:
            yield conn
        except psycopg.errors.UndefinedTable as exc:
            raise ConfigError(
                f"schema {settings.db_schema}: no audit tables (run `supplybus db migrate`)"
            ) from exc


def _show(settings: Settings, entity_id: str, entity_type: str | None, as_json: bool) -> None:
    with _audit_db(settings) as conn:
        rows = history(conn, entity_id, entity_type)
    if not rows:
        of_type = f" of type {entity_type}" if entity_type else ""
        raise ConfigError(f"audit: no entries for entity {entity_id!r}{of_type}")
    if as_json:
        emit_json([row_as_json(r) for r in rows])
        return
    several = len({r.entry.entity_type for r in rows}) > 1
    table = Table(*(["type"] if several else []), "seq", "at", "actor", "action", "why", "event")
    for r in rows:
        e = r.entry
        rules = ", ".join(e.rule_ids) + (f" @{e.rule_version}" if e.rule_version else "")
        why = "; ".join(part for part in (e.reason, rules) if part.strip())
        cells = [str(r.seq), e.at.isoformat(timespec="seconds"), e.actor, e.action, why]
        table.add_row(*([e.entity_type] if several else []), *cells, e.event_id[:8])
    out.print(f"{rows[0].entry.entity_type if not several else ''} {entity_id}".strip())
    out.print(table)
    out.print(f"head hash {rows[-1].hash[:16]}")


def _verify(settings: Settings, entity_type: str | None, as_json: bool) -> None:
    with _audit_db(settings) as conn:
        if sys.stderr.isatty() and not as_json:
            report = _verify_with_progress(conn, entity_type)
        else:
            report = verify(conn, entity_type)
    if as_json:
        emit_json(
            {
                "intact": report.intact,
                "entities": report.entities,
                "entries": report.entries,
                "problems": [
                    {
                        "entity_type": p.entity_type,
                        "entity_id": p.entity_id,
                        "seq": p.seq,
                        "kind": p.kind,
                        "detail": p.detail,
                    }
                    for p in report.problems
                ],
            }
        )
    else:
        for problem in report.problems:
            click.echo(str(problem))
        summary = f"{report.entities} entities, {report.entries} entries"
        if report.intact:
            click.echo(f"audit trail intact: {summary}")
        else:
            click.echo(f"audit trail NOT intact: {len(report.problems)} problem(s) in {summary}")
    if not report.intact:
        sys.exit(1)


def _verify_with_progress(conn: psycopg.Connection, entity_type: str | None) -> Report:
    total = count(conn, entity_type)
    columns = (TextColumn("verifying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("entries", total=total)
        return verify(conn, entity_type, on_chain=lambda n: progress.advance(task, n))
