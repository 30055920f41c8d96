"""`supplybus stock`: on-hand stock per location, item and lot, with expiry and risk."""

from __future__ import annotations

import datetime as dt

import click
from rich.table import Table

from supplybus.adapters.postgres import connect
from supplybus.consumers.inventory.queries import StockRow, is_known, stock_report
from supplybus.errors import ConfigError
from supplybus.ops.cli.root import Context, cli, emit_json, json_option, out, pass_ctx


@cli.command("stock")
@click.option("--location", metavar="ID", help="Only this location, e.g. LOC-E1-1.")
@click.option("--item", metavar="ID", help="Only this item, e.g. ITEM-0001.")
@click.option(
    "--expiring-within",
    "expiring_within",
    metavar="DAYS",
    type=click.IntRange(min=0),
    help="Only lots with stock that expire within DAYS days (expired lots included).",
)
@json_option
@pass_ctx
def stock(
    ctx: Context,
    location: str | None,
    item: str | None,
    expiring_within: int | None,
    as_json: bool,
) -> None:
    """On-hand stock per location, item and lot, in the item's stocking unit, from the
    `stock-balances` processor (`supplybus run stock-balances`). Lots are listed first expiry
    first; EXPIRED marks a lot past its expiry date (today, UTC), NEGATIVE a balance below
    zero (more was issued than was on hand: a miscount to investigate). Risk is the last
    stockout-risk level of the location and item; REORDER marks one at or below its reorder
    point (a breach open). --json prints quantities as strings (exact decimals).
    """
    settings = ctx.running(kafka=False)
    today = dt.datetime.now(dt.UTC).date()
    with connect(settings) as conn:
        rows = stock_report(
            conn, today, location=location, item=item, expiring_within=expiring_within
        )
        if not rows and (unknown := is_known(conn, location=location, item=item)):
            value = location if unknown == "--location" else item
            raise ConfigError(
                f"{unknown}: {value!r} is not known to the master data "
                "(is it loaded and `supplybus run masterdata` run?)"
            )
    if as_json:
        emit_json([r.as_json() for r in rows])
        return
    if not rows:
        out.print("no stock recorded" + (" expiring in that time" if expiring_within else ""))
        return
    out.print(_table(rows))


def _table(rows: list[StockRow]) -> Table:
    table = Table("location", "item", "lot", "expiry", "on hand", "unit", "risk", "flags")
    table.columns[4].justify = "right"
    for r in rows:
        flags = [f for f, on in (("EXPIRED", r.expired), ("NEGATIVE", r.negative),
                                 ("REORDER", r.breached)) if on]  # fmt: skip
        table.add_row(
            r.location_id,
            r.item_id,
            r.lot_number or "-",
            r.expiry_date.isoformat() if r.expiry_date else "-",
            f"{r.on_hand:,.3f}",
            r.uom,
            r.risk_level,
            " ".join(flags),
            style="bold red" if r.expired or r.negative else None,
        )
    return table
