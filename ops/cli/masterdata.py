"""`supplybus masterdata load-sample` and `supplybus masterdata show`."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from typing import Any

import click
import psycopg

from supplybus.adapters.postgres import connect
from supplybus.consumers.masterdata import queries
from supplybus.consumers.masterdata.sample import sample_masterdata
from supplybus.errors import ConfigError
from supplybus.ops.cli.root import Context, cli, emit_json, json_option, out, pass_ctx
from supplybus.producers.publisher import Publisher

_SHOW: dict[str, Callable[[psycopg.Connection, str], dict[str, Any] | None]] = {
    "item": queries.item,
    "supplier": queries.supplier,
    "cost-center": queries.cost_center,
}


@cli.group()
def masterdata() -> None:
    """Master data: suppliers, items, facilities, locations, cost centers, approvers."""


@masterdata.command("load-sample")
@click.option("--seed", type=int, default=0, show_default=True, help="Varies names and prices.")
@click.option(
    "--today",
    type=click.DateTime(["%Y-%m-%d"]),
    help="The day the data is as of (budget periods, delegation); default: today (UTC).",
)
@json_option
@pass_ctx
def load_sample(ctx: Context, seed: int, today: dt.datetime | None, as_json: bool) -> None:
    """Publish the sample master data (two entities, 4 facilities, 20 suppliers, 200 items,
    cost centers, approvers): validated first, all or nothing. The same seed and day give the
    same event ids, so loading it again changes nothing downstream.

    Run the `masterdata` processor (`supplybus run masterdata`) to fill the read models.
    """
    records = sample_masterdata(seed, today.date() if today else None)
    running = ctx.running(database=False)
    with Publisher.from_settings(running) as publisher:
        publisher.publish_all(records)
        delivered = publisher.flush()
    counts = Counter(str(r["envelope"]["event_type"]) for r in records)
    if as_json:
        emit_json({"published": delivered, "events": dict(sorted(counts.items()))})
        return
    shown = ", ".join(f"{n} {t}" for t, n in sorted(counts.items()))
    out.print(f"published {delivered} master-data events: {shown}")


@masterdata.command("show")
@click.argument("kind", type=click.Choice(sorted(_SHOW)))
@click.argument("record_id")
@json_option
@pass_ctx
def show(ctx: Context, kind: str, record_id: str, as_json: bool) -> None:
    """One item, supplier or cost center as the read models hold it."""
    settings = ctx.running(kafka=False)
    with connect(settings) as conn:
        found = _SHOW[kind](conn, record_id)
    if found is None:
        raise ConfigError(
            f"{kind} {record_id!r}: not in the master-data read models "
            "(is it published, and has `supplybus run masterdata` run?)"
        )
    if as_json:
        emit_json(found)
        return
    for name, value in found.items():
        if isinstance(value, list):
            out.print(f"{name}:")
            for entry in value:
                out.print("  " + "  ".join(f"{k}={v}" for k, v in entry.items()))
        elif isinstance(value, dict):
            out.print(f"{name}: " + ", ".join(f"{k}={v}" for k, v in value.items()))
        else:
            out.print(f"{name}: {value}")
