"""Committed and actual spend, as plain functions over plain data.

Each BudgetCommitted, BudgetReleased and BudgetActualized becomes an ``Entry``. Per cost center
and period::

    committed = sum(COMMITTED) - sum(RELEASED) - sum(ACTUALIZED)
    actual    = sum(ACTUALIZED)
    available = budget - committed - actual

Actualizing X moves X from committed to actual. What is still committed is also tracked per
reference (cost center, period, reference type and id): releasing more than that is refused,
as is an amount in another currency than the cost center's budget (``BusinessRuleError``, so
the runtime dead-letters the event and holds its cost center's later events).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from supplybus.errors import BusinessRuleError

Kind = Literal["COMMITTED", "RELEASED", "ACTUALIZED"]
#: event type -> entry kind
KINDS: dict[str, Kind] = {
    "BudgetCommitted": "COMMITTED",
    "BudgetReleased": "RELEASED",
    "BudgetActualized": "ACTUALIZED",
}
#: (cost center, period)
Account = tuple[str, str]
#: (cost center, period, reference type, reference id)
Reference = tuple[str, str, str, str]

ZERO = Decimal(0)
_PERIOD = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")


def is_period(text: str) -> bool:
    """Whether ``text`` is a budget period: YYYY-MM, month 01 to 12."""
    return _PERIOD.fullmatch(text) is not None


@dataclass(frozen=True, slots=True)
class Spend:
    """Committed and actual spend of a cost center in a period."""

    committed: Decimal = ZERO
    actual: Decimal = ZERO

    def __add__(self, other: Spend) -> Spend:
        return Spend(self.committed + other.committed, self.actual + other.actual)

    @property
    def used(self) -> Decimal:
        """Committed plus actual: what the budget has lost."""
        return self.committed + self.actual


@dataclass(frozen=True, slots=True)
class Entry:
    """One applied budget event."""

    event_id: str
    kind: Kind
    cost_center_id: str
    period: str
    amount: Decimal
    currency: str
    reference_type: str
    reference_id: str
    reason: str = ""

    @property
    def account(self) -> Account:
        return (self.cost_center_id, self.period)

    @property
    def reference(self) -> Reference:
        return (self.cost_center_id, self.period, self.reference_type, self.reference_id)

    def describe(self) -> str:
        """E.g. ``released 40.0000 USD of PURCHASE_ORDER PO-1 on CC-E1-SURG 2026-11``."""
        return (
            f"{self.kind.lower()} {self.amount} {self.currency} of {self.reference_type} "
            f"{self.reference_id} on {self.cost_center_id} {self.period}"
        )


def entry_of(event_type: str, record: Mapping[str, Any]) -> Entry:
    """The entry of a decoded budget event; a malformed period is refused."""
    kind = KINDS.get(event_type)
    if kind is None:
        raise BusinessRuleError(f"{event_type} is not a budget entry; expected one of {KINDS}")
    entry = Entry(
        event_id=str(record["envelope"]["event_id"]),
        kind=kind,
        cost_center_id=str(record["cost_center_id"]),
        period=str(record["period"]),
        amount=record["amount"]["amount"],
        currency=str(record["amount"]["currency"]),
        reference_type=str(record["reference_type"]),
        reference_id=str(record["reference_id"]),
        reason=str(record.get("reason") or ""),
    )
    if not is_period(entry.period):
        raise BusinessRuleError(
            f"{event_type} of {entry.reference_type} {entry.reference_id}: period "
            f"{entry.period!r} is not a budget period (expected YYYY-MM, e.g. 2026-11)"
        )
    return entry


def effect(entry: Entry) -> Spend:
    """What one entry does to its cost center's spend in its period."""
    if entry.kind == "COMMITTED":
        return Spend(committed=entry.amount)
    if entry.kind == "RELEASED":
        return Spend(committed=-entry.amount)
    return Spend(committed=-entry.amount, actual=entry.amount)


def spend_of(entries: Iterable[Entry]) -> Spend:
    """The spend of ``entries`` (of one account), whatever their order."""
    total = Spend()
    for entry in entries:
        total += effect(entry)
    return total


def totals(entries: Iterable[Entry]) -> dict[Account, Spend]:
    """The spend of ``entries`` per (cost center, period)."""
    found: dict[Account, Spend] = {}
    for entry in entries:
        found[entry.account] = found.get(entry.account, Spend()) + effect(entry)
    return found


def available(budget: Decimal, spend: Spend) -> Decimal:
    """What is left of ``budget``: budget - committed - actual (negative when overspent)."""
    return budget - spend.committed - spend.actual


def used_percent(budget: Decimal | None, spend: Spend) -> Decimal | None:
    """Committed plus actual as a percentage of ``budget``, to 0.1; None without a budget."""
    if budget is None or budget <= 0:
        return None
    return (spend.used * 100 / budget).quantize(Decimal("0.1"))


def still_committed(outstanding: Decimal, entry: Entry) -> Decimal:
    """What remains committed for ``entry``'s reference after it; releasing more than
    ``outstanding`` is refused, naming the reference and both amounts."""
    if entry.kind == "COMMITTED":
        return outstanding + entry.amount
    if entry.kind == "RELEASED" and entry.amount > outstanding:
        raise BusinessRuleError(
            f"cannot release {entry.amount} {entry.currency} of {entry.reference_type} "
            f"{entry.reference_id} on {entry.cost_center_id} {entry.period}: only "
            f"{outstanding} is committed for it"
        )
    return outstanding - entry.amount


def check_currency(entry: Entry, expected: str | None) -> None:
    """Refuse an amount in another currency than the cost center's budget (``expected``)."""
    if expected is not None and entry.currency != expected:
        raise BusinessRuleError(
            f"{entry.kind.lower()} amount of {entry.reference_type} {entry.reference_id} is in "
            f"{entry.currency}; cost center {entry.cost_center_id} budgets in {expected}"
        )


def check(
    entries: Iterable[Entry],
    outstanding: Mapping[Reference, Decimal],
    currencies: Mapping[Account, str | None],
) -> dict[Reference, Decimal]:
    """Apply the rules to ``entries`` in order, from what is committed per reference now and
    each account's budget currency (None: the account's first entry sets it); returns what
    is committed per reference afterwards. The first entry that breaks a rule raises
    ``BusinessRuleError``."""
    after = dict(outstanding)
    known = dict(currencies)
    for entry in entries:
        expected = known.get(entry.account) or entry.currency
        check_currency(entry, expected)
        known[entry.account] = expected
        after[entry.reference] = still_committed(after.get(entry.reference, ZERO), entry)
    return after
