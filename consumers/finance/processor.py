"""budget-spend: committed and actual spend per cost center and period (migration 0011).

Consumes BudgetCommitted, BudgetReleased and BudgetActualized (finance.budget.v1, keyed by
cost center). Per batch, in the handler's transaction and in a fixed number of statements:
the budget currencies of the batch's cost centers and what is still committed for each of
its references are read; the rules of ``spend`` are applied in order; the entries are
inserted into ``budget_entries``, their sums added to ``budget_spend``, and each applied entry
appended to the audit trail (entity ``budget``, id ``<cost center>/<period>``).

A release of more than is committed for its reference, an amount in another currency than
the cost center's budget, a malformed period or a cost center the master data does not know
raise ``BusinessRuleError``: the event is dead-lettered and, since the over-release check
depends on order, its cost center's later events are held (``on_dead_letter="hold_key"``)
until it is replayed or skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal

import psycopg

from supplybus.consumers import audit
from supplybus.consumers.finance.spend import (
    KINDS,
    Account,
    Entry,
    Reference,
    check,
    entry_of,
    totals,
)
from supplybus.consumers.runtime.processor import Event, Processor, Record
from supplybus.errors import BusinessRuleError

NAME = "budget-spend"
ENTITY_TYPE = "budget"

_CENTERS = """
SELECT c.cost_center_id, b.period, b.currency
FROM cost_centers c LEFT JOIN cost_center_budgets b USING (cost_center_id)
WHERE c.cost_center_id = ANY(%s)
ORDER BY c.cost_center_id, b.period
"""
_SPEND_CURRENCIES = """
SELECT cost_center_id, period, currency FROM budget_spend
WHERE (cost_center_id, period) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
"""
_OUTSTANDING = """
SELECT cost_center_id, period, reference_type, reference_id,
       sum(CASE kind WHEN 'COMMITTED' THEN amount ELSE -amount END)
FROM budget_entries
WHERE (reference_id, reference_type, cost_center_id, period)
   IN (SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]))
GROUP BY 1, 2, 3, 4
"""
_INSERT = """
INSERT INTO budget_entries (event_id, cost_center_id, period, kind, amount, currency,
                            reference_type, reference_id, occurred_at, reason, correlation_id)
SELECT * FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[], %s::numeric[], %s::text[],
                     %s::text[], %s::text[], %s::timestamptz[], %s::text[], %s::text[])
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id::text
"""
_UPSERT = """
INSERT INTO budget_spend (cost_center_id, period, committed, actual, currency, entries)
SELECT * FROM unnest(%s::text[], %s::text[], %s::numeric[], %s::numeric[], %s::text[],
                     %s::bigint[])
ON CONFLICT (cost_center_id, period) DO UPDATE
SET committed = budget_spend.committed + EXCLUDED.committed,
    actual = budget_spend.actual + EXCLUDED.actual,
    entries = budget_spend.entries + EXCLUDED.entries,
    updated_at = now()
"""


def apply_budget_events(events: Sequence[Event], conn: psycopg.Connection) -> list[Record]:
    """The batch's entries checked, recorded, summed per account and audited; emits nothing."""
    entries = [entry_of(e.event_type, e.record) for e in events]
    if not entries:
        return []
    check(entries, outstanding(conn, entries), currencies(conn, entries))
    inserted = _insert(conn, events, entries)
    applied = [
        (e, entry) for e, entry in zip(events, entries, strict=True) if entry.event_id in inserted
    ]
    _add_up(conn, [entry for _, entry in applied])
    audit.append(conn, [audit_entry(e, entry) for e, entry in applied])
    return []


def currencies(conn: psycopg.Connection, entries: Sequence[Entry]) -> dict[Account, str | None]:
    """Each account's budget currency: its period's budget, else the cost center's latest
    budget, else what the account already records, else None (its first entry decides).
    A cost center the master data does not know is refused."""
    budgets: dict[str, dict[str, str]] = {}
    for cid, period, currency in conn.execute(
        _CENTERS, (sorted({e.cost_center_id for e in entries}),)
    ):
        by_period = budgets.setdefault(cid, {})
        if period is not None:
            by_period[period] = currency
    accounts = sorted({e.account for e in entries})
    recorded = {
        (cid, period): currency
        for cid, period, currency in conn.execute(
            _SPEND_CURRENCIES, ([a[0] for a in accounts], [a[1] for a in accounts])
        )
    }
    found: dict[Account, str | None] = {}
    for cid, period in accounts:
        if cid not in budgets:
            entry = next(e for e in entries if e.cost_center_id == cid)
            raise BusinessRuleError(
                f"{entry.describe()}: cost center {cid} is not in the master data; "
                "replay it once the master data has it"
            )
        by_period = budgets[cid]
        latest = by_period[max(by_period)] if by_period else None
        found[(cid, period)] = by_period.get(period) or latest or recorded.get((cid, period))
    return found


def outstanding(conn: psycopg.Connection, entries: Iterable[Entry]) -> dict[Reference, Decimal]:
    """What is still committed now for each reference of ``entries``."""
    refs = sorted({e.reference for e in entries})
    columns = (
        [r[3] for r in refs],
        [r[2] for r in refs],
        [r[0] for r in refs],
        [r[1] for r in refs],
    )
    return {
        (cid, period, rtype, rid): amount
        for cid, period, rtype, rid, amount in conn.execute(_OUTSTANDING, columns)
    }


def _insert(
    conn: psycopg.Connection, events: Sequence[Event], entries: Sequence[Entry]
) -> set[str]:
    rows = conn.execute(
        _INSERT,
        (
            [e.event_id for e in entries],
            [e.cost_center_id for e in entries],
            [e.period for e in entries],
            [e.kind for e in entries],
            [e.amount for e in entries],
            [e.currency for e in entries],
            [e.reference_type for e in entries],
            [e.reference_id for e in entries],
            [ev.envelope["occurred_at"] for ev in events],
            [e.reason or None for e in entries],
            [str(ev.envelope["correlation_id"]) for ev in events],
        ),
    ).fetchall()
    return {r[0] for r in rows}


def _add_up(conn: psycopg.Connection, entries: Sequence[Entry]) -> None:
    sums = totals(entries)
    if not sums:
        return
    accounts = sorted(sums)
    currency = {e.account: e.currency for e in entries}
    count: dict[Account, int] = {}
    for e in entries:
        count[e.account] = count.get(e.account, 0) + 1
    conn.execute(
        _UPSERT,
        (
            [a[0] for a in accounts],
            [a[1] for a in accounts],
            [sums[a].committed for a in accounts],
            [sums[a].actual for a in accounts],
            [currency[a] for a in accounts],
            [count[a] for a in accounts],
        ),
    )


def audit_entry(event: Event, entry: Entry) -> audit.AuditEntry:
    """The audit entry of an applied budget event; the actor is the event's."""
    why = f"{entry.reference_type} {entry.reference_id}"
    return audit.from_envelope(
        event.envelope,
        entity_type=ENTITY_TYPE,
        entity_id=f"{entry.cost_center_id}/{entry.period}",
        action=entry.kind.lower(),
        reason=f"{why}: {entry.reason}" if entry.reason else why,
        detail={
            "amount": str(entry.amount),
            "currency": entry.currency,
            "reference_type": entry.reference_type,
            "reference_id": entry.reference_id,
        },
    )


processor = Processor(
    name=NAME,
    consumes=tuple(KINDS),
    handle=apply_budget_events,
    description="Committed and actual spend per cost center and budget period.",
    on_dead_letter="hold_key",  # a release must never overtake its commitment
)
