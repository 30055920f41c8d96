"""`supplybus spend`: budget, committed, actual and available spend per cost center."""

from __future__ import annotations

from decimal import Decimal

import click
import psycopg
from rich.table import Table

from supplybus.adapters.postgres import connect
from supplybus.consumers.finance.queries import SpendRow, is_known, spend_report
from supplybus.consumers.finance.spend import is_period
from supplybus.errors import ConfigError
from supplybus.ops.cli.root import Context, cli, emit_json, json_option, out, pass_ctx


@cli.command("spend")
@click.option("--cost-center", "cost_center", metavar="ID", help="Only this cost center.")
@click.option("--period", metavar="YYYY-MM", help="Only this budget period, e.g. 2026-11.")
@json_option
@pass_ctx
def spend(ctx: Context, cost_center: str | None, period: str | None, as_json: bool) -> None:
    """Budget, committed, actual and available spend per cost center and period, from the
    `budget-spend` processor's read model (`supplybus run budget-spend`) and the cost
    centers' budgets (master data). Committed is what purchase orders have encumbered and
    not yet released or actualized; actual is what invoices have actualized; available is
    budget - committed - actual. Over-budget rows are marked. --json prints amounts as
    strings (exact decimals).
    """
    if period is not None and not is_period(period):
        raise ConfigError(f"--period: expected YYYY-MM (e.g. 2026-11), got {period!r}")
    settings = ctx.running(kafka=False)
    with connect(settings) as conn:
        try:
            rows = spend_report(conn, cost_center, period)
            if cost_center is not None and not rows and not is_known(conn, cost_center):
                raise ConfigError(
                    f"--cost-center: {cost_center!r} is not a known cost center "
                    "(is the master data loaded and `supplybus run masterdata` run?)"
                )
        except psycopg.errors.UndefinedTable as exc:
            raise ConfigError(
                f"schema {settings.db_schema}: no finance tables (run `supplybus db migrate`)"
            ) from exc
    if as_json:
        emit_json([r.as_json() for r in rows])
        return
    if not rows:
        out.print("no budget or spend recorded" + (f" for {period}" if period else ""))
        return
    out.print(_table(rows))


def _table(rows: list[SpendRow]) -> Table:
    table = Table("cost center", "name", "period", "budget", "committed", "actual", "available",
                  "% used", "currency")  # fmt: skip
    for column in table.columns[3:8]:
        column.justify = "right"
    for r in rows:
        percent = "-" if r.used_percent is None else f"{r.used_percent}%"
        table.add_row(
            r.cost_center_id,
            r.name or "?",
            r.period,
            _money(r.budget),
            _money(r.spend.committed),
            _money(r.spend.actual),
            _money(r.available),
            f"{percent} OVER" if r.over_budget else percent,
            r.currency or "",
            style="bold red" if r.over_budget else None,
        )
    return table


def _money(amount: Decimal | None) -> str:
    return "-" if amount is None else f"{amount:,.2f}"
