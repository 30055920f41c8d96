"""`supplybus reconcile --period P [--erp-export FILE.csv] [--json]`: where the platforms
disagree, per period (consumers/finance/reconciliation.py holds the rules, and
reconciliation_queries.py every query)."""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

import click
import psycopg
from rich.table import Table

from supplybus.adapters.postgres import connect
from supplybus.consumers.finance import reconciliation_queries as q
from supplybus.consumers.finance.reconciliation import (
    Difference,
    Report,
    Section,
    accrual_differences,
    budget_differences,
    cost_center_rows,
)
from supplybus.consumers.finance.reconciliation_stock import (
    Balance,
    ErpExport,
    erp_on_hand,
    parse_erp_export,
    stock_differences,
)
from supplybus.consumers.finance.spend import is_period
from supplybus.consumers.masterdata.units import ItemUnits
from supplybus.errors import BusinessRuleError, ConfigError
from supplybus.ops.cli.root import Context, cli, emit_json, json_option, out, pass_ctx


@cli.command("reconcile")
@click.option("--period", required=True, metavar="YYYY-MM", help="The budget period, e.g. 2026-11.")
@click.option(
    "--erp-export",
    "erp_export",
    metavar="FILE.csv",
    type=click.Path(path_type=Path),
    help="The ERP's on-hand export: columns location_id, item_id, [lot_number,] quantity, uom.",
)
@click.option("--check", is_flag=True, help="Exit 1 when there is any difference.")
@json_option
@pass_ctx
def reconcile(
    ctx: Context, period: str, erp_export: Path | None, check: bool, as_json: bool
) -> None:
    """Month-end reconciliation, runnable any day (the period is a filter; nothing is
    changed). Budget: per cost center, budget vs committed vs actual, and per purchase order
    of the period what budget-spend recorded against what the PO and its match imply
    (COMMITMENT_MISSING, COMMITMENT_UNEXPLAINED, COMMITTED_DIFFERS, RELEASE_MISSING,
    ACTUAL_DIFFERS, ...). Accrual: per PO line of the period, accepted vs invoiced quantity
    at the PO price (RECEIVED_NOT_INVOICED, INVOICED_NOT_RECEIVED). Stock (with
    --erp-export): on hand vs the ERP's, converted to the stocking unit (NOT_IN_ERP,
    NOT_IN_SUPPLYBUS, ON_HAND_DIFFERS); a lot_number column compares per lot. Every
    difference names its correlation ids and event ids. A bad export line is one error
    naming file, line and field (exit 2). --json prints every difference, amounts as strings.
    """
    if not is_period(period):
        raise ConfigError(f"--period: expected YYYY-MM (e.g. 2026-11), got {period!r}")
    export = _read_export(erp_export) if erp_export is not None else None
    with connect(ctx.running(kafka=False)) as conn:
        try:
            report = build_report(conn, period, export, str(erp_export) if erp_export else None)
        except psycopg.errors.UndefinedTable as exc:
            raise ConfigError(
                f"the database schema is behind ({str(exc).splitlines()[0]}): "
                "run `supplybus db migrate`"
            ) from exc
    if as_json:
        emit_json(report.as_json())
    else:
        _print(report)
    if check and report.differences:
        sys.exit(1)


def _read_export(path: Path) -> ErpExport:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"--erp-export: {path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"--erp-export: {path}: {exc.strerror}") from None
    return parse_erp_export(text, str(path))


def build_report(
    conn: psycopg.Connection, period: str, export: ErpExport | None, name: str | None
) -> Report:
    """The report of ``period``; stock compared with ``export`` when given."""
    spends = q.cost_center_spend(conn, period)
    commitments = q.po_commitments(conn, period)
    differences = budget_differences(commitments, q.budget_references(conn, period), spends)
    invoiced = q.invoiced_lines(conn, period)
    units = q.units_of(conn, {ln.item_id for ln in invoiced})
    differences += accrual_differences(
        q.received_lines(conn, period), invoiced, lambda *a: _convert(units, *a)
    )
    compared = 0
    if export is not None and name is not None:
        stock, compared = _stock(conn, export, name)
        differences += stock
    rows = cost_center_rows(spends, commitments)
    return Report(period, tuple(rows), tuple(differences), name, compared)


def _convert(
    units: dict[str, ItemUnits], item: str, quantity: Decimal, from_uom: str, to_uom: str
) -> Decimal:
    if from_uom == to_uom:
        return quantity
    if item not in units:
        raise BusinessRuleError(f"item {item} is not in the item master")
    return units[item].convert(quantity, from_uom, to_uom)


def _stock(conn: psycopg.Connection, export: ErpExport, name: str) -> tuple[list[Difference], int]:
    kept = q.balances(conn)
    units = q.units_of(conn, {ln.item_id for ln in export.lines} | {b.item_id for b, _ in kept})
    locations = q.known_locations(conn, {ln.location_id for ln in export.lines})
    erp = erp_on_hand(export, units, locations, name)
    ours = [_in_stocking_unit(b, uom, units) for b, uom in kept]
    uoms = {item: u.base_uom for item, u in units.items()}

    def compare(
        moves: dict[tuple[str, str], tuple[str, ...]],
        dead: dict[tuple[str, str], tuple[str, ...]],
    ) -> list[Difference]:
        return stock_differences(ours, erp, export.has_lots, uoms, moves, dead)

    pairs = {_pair(d) for d in compare({}, {})}
    keys = {(b.location_id, b.item_id, b.lot_number if export.has_lots else None) for b in ours}
    return (
        compare(q.last_movements(conn, pairs), q.dead_movements(conn, pairs)),
        len(keys | set(erp)),
    )


def _in_stocking_unit(balance: Balance, uom: str, units: dict[str, ItemUnits]) -> Balance:
    """A balance kept in another unit (from before stock-balances converted) is converted
    when the item master allows; else it is compared as it is."""
    item = units.get(balance.item_id)
    if item is None or uom == item.base_uom:
        return balance
    try:
        return Balance(balance.location_id, balance.item_id, balance.lot_number,
                       item.to_base(balance.on_hand, uom))  # fmt: skip
    except BusinessRuleError:
        return balance


def _pair(d: Difference) -> tuple[str, str]:
    refs = dict(d.refs)
    return (refs["location_id"][0], refs["item_id"][0])


# --- tables ------------------------------------------------------------------------------

_SHOWN = ("receipt_ids", "invoice_ids", "dead_letter_event_ids")


def _short(ids: tuple[str, ...], limit: int = 3) -> str:
    shown = " ".join(i[:8] for i in ids[:limit])
    return shown + (f" +{len(ids) - limit}" if len(ids) > limit else "")


def _summary(report: Report, section: Section, amount: str) -> str:
    found = report.summary(section)
    if not found["differences"]:
        return f"{section}: no differences"
    parts = [
        f"{k['kind']} {k['count']} ({Decimal(k[amount]):,.2f} {k['unit']})"
        for k in found["by_kind"]
    ]
    return f"{section}: {found['differences']} difference(s): " + "; ".join(parts)


def _print(report: Report) -> None:
    out.print(f"[bold]reconciliation of {report.period}[/bold]")
    centers = Table(
        "cost center", "name", "budget", "committed", "actual", "available", "explained",
        "unexplained", "currency", title="budget per cost center",
    )  # fmt: skip
    for column in centers.columns[2:8]:
        column.justify = "right"
    for row in report.cost_centers:
        s = row.spend
        over = row.available is not None and row.available < 0
        centers.add_row(
            s.cost_center_id, s.name or "?", _money(s.budget), _money(s.committed),
            _money(s.actual), _money(row.available) + (" OVER" if over else ""),
            _money(row.explained), _money(row.unexplained), s.currency or "",
            style="bold red" if row.unexplained else None,
        )  # fmt: skip
    if report.cost_centers:
        out.print(centers)
    _section(report.of("budget"), ("expected_committed", "recorded_committed", "difference"))
    out.print(_summary(report, "budget", "difference"))
    _section(report.of("accrual"), ("accepted", "invoiced", "amount"))
    out.print(_summary(report, "accrual", "amount"))
    if report.erp_file is None:
        out.print("stock: not compared (no --erp-export)")
        return
    _section(report.of("stock"), ("supplybus", "erp", "difference"))
    line = _summary(report, "stock", "difference")
    out.print(f"{line} ({report.stock_compared} compared with {report.erp_file})")


def _section(found: list[Difference], amounts: tuple[str, ...]) -> None:
    if not found:
        return
    names = (a.replace("_", " ") for a in amounts)
    table = Table("kind", "subject", *names, "unit", "refs", "correlation", "events")
    for column in table.columns[2 : 2 + len(amounts)]:
        column.justify = "right"
    for d in found:
        refs = " ".join(f"{n}={','.join(v)}" for n, v in d.refs if v and n in _SHOWN)
        table.add_row(
            d.kind, d.subject, *(str(d.amount(a)) for a in amounts),
            d.unit, refs, " ".join(d.correlation_ids), _short(d.event_ids),
        )  # fmt: skip
    out.print(table)


def _money(amount: Decimal | None) -> str:
    return "-" if amount is None else f"{amount:,.2f}"
