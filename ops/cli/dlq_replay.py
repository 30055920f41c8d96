"""`supplybus dlq replay`: re-drive dead letters through the processor that failed them."""

from __future__ import annotations

import datetime as dt
import getpass
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

import click
import psycopg
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from supplybus.adapters.postgres import connect
from supplybus.consumers.processors import load_processor
from supplybus.consumers.runtime.dlq_store import resolve_id
from supplybus.consumers.runtime.processor import Processor
from supplybus.consumers.runtime.replay import Replayer, Result
from supplybus.errors import ConfigError
from supplybus.events.catalog import EventCatalog
from supplybus.ops.cli.dlq import dlq, parse_since
from supplybus.ops.cli.root import Context, emit_json, json_option, out, pass_ctx

_SHOWN = {
    "applied": "applied",
    "already-applied": "already applied (the ledger had it)",
    "failed-again": "failed again",
    "would-apply": "would apply",
    "would-fail": "would fail again",
    "not-open": "not replayed",
    "not-consumed": "not consumed by this processor",
    "waits": "waits behind its key's earlier dead letter",
}


@dlq.command("replay")
@click.argument("ids", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Every open dead letter (with filters).")
@click.option(
    "--processor",
    "spec",
    help="Replay through this processor (a built-in name or module:attribute) and only its "
    "dead letters. Default: each dead letter through the built-in processor that failed it.",
)
@click.option("--topic", help="Filter: dead letters read from this topic.")
@click.option("--error", "error_code", help="Filter: dead letters with this error code.")
@click.option("--since", help="Filter: failed since (ISO time, or an age such as 2h, 3d).")
@click.option("--dry-run", is_flag=True, help="Predict, inside a rolled-back transaction.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="At most N per second.")
@click.option("--as", "actor", default=getpass.getuser, help="Who replays (for the log).")
@json_option
@pass_ctx
def replay_cmd(
    ctx: Context,
    ids: tuple[str, ...],
    everything: bool,
    spec: str | None,
    topic: str | None,
    error_code: str | None,
    since: str | None,
    dry_run: bool,
    rate: float | None,
    actor: str,
    as_json: bool,
) -> None:
    """Re-drive dead letters (IDS, or --all / filters: open ones only) through the processor
    that failed them, and only that one: nothing is published again, other consumers of the
    topic see nothing. In one transaction per chunk with the idempotency ledger: an event
    already applied is reported and not applied again; one that fails again stays open with
    its history extended; one applied is marked replayed and the events held behind it follow,
    in order. A parked dead letter is not replayed (unpark it first). The corrected version
    of `dlq edit` is used where there is one.

    --dry-run runs the same inside a transaction that is rolled back and says which would
    fail again and why; it changes nothing but the dead-letter log.

    \b
    Exit codes: 0 done (dry run: whatever it predicts); 1 some failed again; 2 bad input.
    """
    filtered = bool(topic or error_code or since)
    if not ids and not everything and not filtered:
        raise ConfigError("dlq replay: give dead letter ids, --all or a filter (--topic ...)")
    settings = ctx.running(kafka=False)
    catalog = EventCatalog.from_settings(settings)
    forced = load_processor(spec) if spec else None
    cutoff = parse_since(since) if since else None
    with connect(settings) as conn:
        wanted = _select(conn, ids, forced, topic, error_code, cutoff)
        conn.commit()
        if not wanted:
            out.print("no dead letter to replay")
            return
        results = _run(conn, catalog, wanted, forced, actor, dry_run, rate)
    _report(results, dry_run, as_json)
    if not dry_run and any(r.outcome == "failed-again" for r, _ in results):
        sys.exit(1)


def _select(
    conn: psycopg.Connection,
    ids: Sequence[str],
    forced: Processor | None,
    topic: str | None,
    error_code: str | None,
    since: dt.datetime | None,
) -> dict[str, list[str]]:
    """Processor name -> dead letter ids, oldest first."""
    if ids:
        chosen = [resolve_id(conn, i) for i in ids]
        rows = conn.execute(
            "SELECT processor, dead_letter_id::text FROM dead_letters"
            " WHERE dead_letter_id = ANY(%s::uuid[]) ORDER BY id",
            (chosen,),
        ).fetchall()
    else:
        rows = conn.execute(
            "SELECT processor, dead_letter_id::text FROM dead_letters WHERE status = 'open'"
            " AND (%(p)s::text IS NULL OR processor = %(p)s)"
            " AND (%(t)s::text IS NULL OR topic = %(t)s)"
            " AND (%(e)s::text IS NULL OR error_code = %(e)s)"
            " AND (%(s)s::timestamptz IS NULL OR last_failed_at >= %(s)s) ORDER BY id",
            {"p": forced.name if forced else None, "t": topic, "e": error_code, "s": since},
        ).fetchall()
    wanted: dict[str, list[str]] = {}
    for processor, dead_letter_id in rows:
        if forced is not None and processor != forced.name:
            raise ConfigError(
                f"dead letter {dead_letter_id} belongs to processor {processor}, not "
                f"{forced.name} (--processor)"
            )
        wanted.setdefault(processor, []).append(dead_letter_id)
    return wanted


def _run(
    conn: psycopg.Connection,
    catalog: EventCatalog,
    wanted: dict[str, list[str]],
    forced: Processor | None,
    actor: str,
    dry_run: bool,
    rate: float | None,
) -> list[tuple[Result, str]]:
    total = sum(len(v) for v in wanted.values())
    results: list[tuple[Result, str]] = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, disable=not sys.stderr.isatty(), transient=True) as bar:
        task = bar.add_task("dry run" if dry_run else "replaying", total=total)
        for name, ids in wanted.items():
            processor = forced or _builtin(name)
            replayer = Replayer(processor, catalog, actor)
            found = replayer.replay(
                conn, ids, dry_run=dry_run, rate=rate,
                progress=lambda n: bar.advance(task, n),
            )  # fmt: skip
            results.extend((r, name) for r in found)
    return results


def _builtin(name: str) -> Processor:
    try:
        return load_processor(name)
    except ConfigError as exc:
        raise ConfigError(
            f"dead letters of processor {name}: it is not a built-in one; name how to load it "
            f"with --processor module:attribute ({exc})"
        ) from exc


def _report(results: list[tuple[Result, str]], dry_run: bool, as_json: bool) -> None:
    if as_json:
        emit_json([_json(r, p) for r, p in results])
        return
    if len(results) <= 200:
        table = Table("dead letter", "processor", "outcome", "why")
        for r, processor in results:
            table.add_row(r.dead_letter_id[:8], processor, _SHOWN[r.outcome], r.message[:120])
        out.print(table)
    counts = Counter(r.outcome for r, _ in results)
    summary = ", ".join(f"{n} {_SHOWN[k].split(' (')[0]}" for k, n in sorted(counts.items()))
    out.print(("dry run (nothing changed): " if dry_run else "") + summary)


def _json(result: Result, processor: str) -> dict[str, Any]:
    return {
        "dead_letter_id": result.dead_letter_id,
        "processor": processor,
        "outcome": result.outcome,
        "message": result.message,
    }
