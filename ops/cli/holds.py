"""`supplybus holds`: keys held behind dead letters, and the dead letters they wait on."""

from __future__ import annotations

import click
from rich.table import Table

from supplybus.adapters.postgres import connect
from supplybus.consumers.runtime import hold
from supplybus.ops.cli.root import Context, cli, emit_json, json_option, out, pass_ctx


@cli.command("holds")
@click.option("--processor", help="Only this processor's holds.")
@click.option(
    "--limit",
    type=click.IntRange(1, 100_000),
    default=200,
    show_default=True,
    help="List at most this many keys (oldest first).",
)
@json_option
@pass_ctx
def holds_cmd(ctx: Context, processor: str | None, limit: int, as_json: bool) -> None:
    """Keys whose later events wait behind a dead letter (per-key order, ADR 0009).

    Each key is listed with the dead letters it waits on, how many events are held behind
    them and the age of the oldest. Resolving a key's dead letters (replaying or skipping them)
    releases its events, in order, through the processor's routine lane.
    """
    settings = ctx.running(kafka=False)
    with connect(settings) as conn:
        found = hold.held(conn, processor, limit)
    if as_json:
        emit_json(
            [
                {
                    "processor": h.processor,
                    "key": h.key.decode(errors="replace"),
                    "dead_letters": list(h.dead_letters),
                    "error_codes": list(h.error_codes),
                    "held_events": h.events,
                    "oldest_age_s": round(h.oldest_age_s, 1),
                }
                for h in found
            ]
        )
        return
    if not found:
        out.print("no held keys")
        return
    table = Table("processor", "key", "waits on", "errors", "held events", "oldest")
    for h in found:
        table.add_row(
            h.processor,
            h.key.decode(errors="replace")[:60],
            ", ".join(d[:8] for d in h.dead_letters) or "(resolved: releasing)",
            ", ".join(h.error_codes),
            str(h.events),
            f"{h.oldest_age_s:.0f} s",
        )
    out.print(table)
