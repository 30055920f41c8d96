"""Reading spend back: per cost center for a period (the requisitions' budget check) and the
spend report (`supplybus spend`): budget, committed, actual and available per cost center
and period."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg

from supplybus.consumers.finance.spend import ZERO, Spend, available, used_percent

_SPEND = """
SELECT cost_center_id, committed, actual FROM budget_spend
WHERE cost_center_id = ANY(%s) AND period = %s
"""
# With a period: every cost center in it (zero spend and no budget when none is recorded).
# Without: every period a cost center has a budget or spend for.
_REPORT = """
WITH accounts AS (
    SELECT cost_center_id, %(period)s::text AS period FROM cost_centers
    WHERE %(period)s::text IS NOT NULL
      AND (%(center)s::text IS NULL OR cost_center_id = %(center)s)
    UNION
    SELECT cost_center_id, period FROM cost_center_budgets
    WHERE %(period)s::text IS NULL
      AND (%(center)s::text IS NULL OR cost_center_id = %(center)s)
    UNION
    SELECT cost_center_id, period FROM budget_spend
    WHERE (%(period)s::text IS NULL OR period = %(period)s)
      AND (%(center)s::text IS NULL OR cost_center_id = %(center)s)
)
SELECT a.cost_center_id, c.name, a.period, b.amount, coalesce(s.committed, 0::numeric(18,4)),
       coalesce(s.actual, 0::numeric(18,4)), coalesce(b.currency, s.currency)
FROM accounts a
LEFT JOIN cost_centers c USING (cost_center_id)
LEFT JOIN cost_center_budgets b USING (cost_center_id, period)
LEFT JOIN budget_spend s USING (cost_center_id, period)
ORDER BY a.cost_center_id, a.period
"""
_KNOWN = """
SELECT EXISTS (SELECT 1 FROM cost_centers WHERE cost_center_id = %(c)s)
    OR EXISTS (SELECT 1 FROM budget_spend WHERE cost_center_id = %(c)s)
"""


@dataclass(frozen=True, slots=True)
class SpendRow:
    """A cost center's budget and spend in one period (``budget`` None: no budget)."""

    cost_center_id: str
    name: str | None
    period: str
    budget: Decimal | None
    spend: Spend
    currency: str | None

    @property
    def available(self) -> Decimal:
        return available(self.budget or ZERO, self.spend)

    @property
    def used_percent(self) -> Decimal | None:
        return used_percent(self.budget, self.spend)

    @property
    def over_budget(self) -> bool:
        return self.available < 0

    def as_json(self) -> dict[str, Any]:
        """Amounts as strings: exact decimals."""
        percent = self.used_percent
        return {
            "cost_center_id": self.cost_center_id,
            "name": self.name,
            "period": self.period,
            "budget": None if self.budget is None else str(self.budget),
            "committed": str(self.spend.committed),
            "actual": str(self.spend.actual),
            "available": str(self.available),
            "used_percent": None if percent is None else str(percent),
            "over_budget": self.over_budget,
            "currency": self.currency,
        }


def spend_of(
    conn: psycopg.Connection, cost_center_ids: Iterable[str], period: str
) -> dict[str, Spend]:
    """Committed and actual spend of each cost center in ``period`` (zero when none)."""
    wanted = sorted(set(cost_center_ids))
    found = {cid: Spend() for cid in wanted}
    for cid, committed, actual in conn.execute(_SPEND, (wanted, period)):
        found[cid] = Spend(committed, actual)
    return found


def spend_report(
    conn: psycopg.Connection, cost_center: str | None = None, period: str | None = None
) -> list[SpendRow]:
    """Budget and spend per cost center and period, ordered by both; ``period`` lists every
    cost center in it, without it every period with a budget or spend."""
    rows = conn.execute(_REPORT, {"center": cost_center, "period": period}).fetchall()
    return [
        SpendRow(cid, name, p, budget, Spend(committed, actual), currency)
        for cid, name, p, budget, committed, actual, currency in rows
    ]


def is_known(conn: psycopg.Connection, cost_center_id: str) -> bool:
    """Whether the master data or the spend records know ``cost_center_id``."""
    row = conn.execute(_KNOWN, {"c": cost_center_id}).fetchone()
    return bool(row and row[0])
