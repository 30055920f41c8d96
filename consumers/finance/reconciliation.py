"""Month-end reconciliation as plain functions over plain data (`supplybus reconcile`).

Three comparisons, each giving ``Difference`` rows (a kind, amounts, and the correlation ids
and event ids that explain it), sorted, so the same state always gives the same report:

- **budget** per PO and cost center of the period: what the purchase orders and the match
  imply (``PoCommitment``: committed = the PO's lines plus any overrun the match committed,
  released = all of it when the PO is cancelled, actual = what invoice-match actualized)
  against what budget-spend recorded for that reference (``BudgetReference``); a recorded
  reference no PO line explains is ``COMMITMENT_UNEXPLAINED``. Per cost center the spend row
  (``CostCenterSpend``) must also equal the sum of its own entries (``SPEND_TOTAL_DIFFERS``).
- **accrual** per PO line: accepted quantity against invoiced quantity (converted to the PO
  line's unit), valued at the PO unit price: ``RECEIVED_NOT_INVOICED`` (the accrual) and
  ``INVOICED_NOT_RECEIVED``.
- **stock** per location, item (and lot, when the ERP export has lots): on hand against the
  ERP export's quantity converted to the stocking unit (``reconciliation_stock``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from supplybus.errors import BusinessRuleError

ZERO = Decimal(0)
CENT = Decimal("0.0001")
Section = Literal["budget", "accrual", "stock"]
SECTIONS: tuple[Section, ...] = ("budget", "accrual", "stock")
#: item, quantity, from unit, to unit -> quantity (exact, or BusinessRuleError)
Convert = Callable[[str, Decimal, str, str], Decimal]


def money(quantity: Decimal, price: Decimal) -> Decimal:
    """Quantity times price at 4 places, half up (as PostgreSQL's round and the POs)."""
    return (quantity * price).quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Difference:
    """One disagreement. ``amounts`` are named, in order; ``unit`` is their currency or
    unit of measure; ``refs`` names the business objects (PO, receipts, invoices)."""

    section: Section
    kind: str
    subject: str
    unit: str
    amounts: tuple[tuple[str, Decimal], ...]
    correlation_ids: tuple[str, ...] = ()
    event_ids: tuple[str, ...] = ()
    refs: tuple[tuple[str, tuple[str, ...]], ...] = ()
    note: str = ""
    order: tuple[str, ...] = ()  # sorts before the subject (e.g. a zero-padded line number)

    @property
    def sort_key(self) -> tuple[int, tuple[str, ...], str, str]:
        return (SECTIONS.index(self.section), self.order, self.subject, self.kind)

    def amount(self, name: str) -> Decimal:
        return dict(self.amounts)[name]

    def as_json(self) -> dict[str, Any]:
        """Amounts as strings (exact decimals)."""
        return {
            "section": self.section,
            "kind": self.kind,
            "subject": self.subject,
            "unit": self.unit,
            **{name: str(value) for name, value in self.amounts},
            **{name: list(values) for name, values in self.refs},
            "correlation_ids": list(self.correlation_ids),
            "event_ids": list(self.event_ids),
            "note": self.note or None,
        }


def sort_differences(differences: Iterable[Difference]) -> list[Difference]:
    return sorted(differences, key=lambda d: d.sort_key)


# --- budget ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Budgeted:
    """Committed, released and actualized amounts of one reference and cost center."""

    committed: Decimal = ZERO
    released: Decimal = ZERO
    actualized: Decimal = ZERO

    @property
    def outstanding(self) -> Decimal:
        """What is still committed: committed - released - actualized."""
        return self.committed - self.released - self.actualized


@dataclass(frozen=True)
class PoCommitment:
    """A PO's lines on one cost center, and what invoice-match actualized there."""

    po_id: str
    po_number: str
    cost_center_id: str
    currency: str
    ordered: Decimal
    actualized: Decimal
    cancelled: bool
    correlation_id: str

    @property
    def expected(self) -> Budgeted:
        overrun = max(ZERO, self.actualized - self.ordered)  # committed by the match first
        released = self.ordered if self.cancelled else ZERO
        return Budgeted(self.ordered + overrun, released, self.actualized)


@dataclass(frozen=True)
class BudgetReference:
    """What budget-spend recorded for one reference and cost center in the period."""

    reference_type: str
    reference_id: str
    cost_center_id: str
    currency: str
    recorded: Budgeted
    correlation_ids: tuple[str, ...]
    event_ids: tuple[str, ...]


@dataclass(frozen=True)
class CostCenterSpend:
    """A cost center in the period: its budget, budget-spend's row, and its entries' sums."""

    cost_center_id: str
    name: str | None
    budget: Decimal | None
    committed: Decimal
    actual: Decimal
    entries_committed: Decimal
    entries_actual: Decimal
    currency: str | None


@dataclass(frozen=True)
class CostCenterRow:
    """A cost center's line of the report: ``explained`` is what the period's POs leave
    committed; ``unexplained`` = committed - explained (its differences say why)."""

    spend: CostCenterSpend
    explained: Decimal

    @property
    def unexplained(self) -> Decimal:
        return self.spend.committed - self.explained

    @property
    def available(self) -> Decimal | None:
        if self.spend.budget is None:
            return None
        return self.spend.budget - self.spend.committed - self.spend.actual

    def as_json(self) -> dict[str, Any]:
        s, available = self.spend, self.available
        return {
            "cost_center_id": s.cost_center_id,
            "name": s.name,
            "currency": s.currency,
            "budget": None if s.budget is None else str(s.budget),
            "committed": str(s.committed),
            "actual": str(s.actual),
            "available": None if available is None else str(available),
            "over_budget": available is not None and available < 0,
            "committed_explained": str(self.explained),
            "committed_unexplained": str(self.unexplained),
        }


def _budget_kind(expected: Budgeted, recorded: Budgeted) -> str | None:
    if expected.committed > 0 and recorded.committed == 0:
        return "COMMITMENT_MISSING"
    if expected.committed != recorded.committed:
        return "COMMITTED_DIFFERS"
    if recorded.released < expected.released:
        return "RELEASE_MISSING"
    if recorded.released != expected.released:
        return "RELEASED_DIFFERS"
    if recorded.actualized != expected.actualized:
        return "ACTUAL_DIFFERS"
    return None


def _budget_amounts(expected: Budgeted, recorded: Budgeted) -> tuple[tuple[str, Decimal], ...]:
    return (
        ("expected_committed", expected.committed),
        ("recorded_committed", recorded.committed),
        ("expected_released", expected.released),
        ("recorded_released", recorded.released),
        ("expected_actual", expected.actualized),
        ("recorded_actual", recorded.actualized),
        ("difference", recorded.outstanding - expected.outstanding),
    )


def budget_differences(
    commitments: Iterable[PoCommitment],
    references: Iterable[BudgetReference],
    spends: Iterable[CostCenterSpend] = (),
) -> list[Difference]:
    """Each PO and cost center whose recorded budget entries differ from what the PO and its
    match imply; each recorded reference no PO line explains with something outstanding; each
    cost center whose spend row differs from the sum of its entries. ``difference`` is what
    that adds to the cost center's committed beyond the POs' own (recorded - expected)."""
    found: list[Difference] = []
    recorded = {
        (r.reference_id, r.cost_center_id): r
        for r in references
        if r.reference_type == "PURCHASE_ORDER"
    }
    explained: set[tuple[str, str]] = set()
    for po in commitments:
        key = (po.po_id, po.cost_center_id)
        explained.add(key)
        ref = recorded.get(key)
        got = ref.recorded if ref else Budgeted()
        kind = _budget_kind(po.expected, got)
        if kind is None:
            continue
        found.append(Difference(
            "budget", kind, f"{po.po_number} {po.cost_center_id}", po.currency,
            _budget_amounts(po.expected, got), (po.correlation_id,),
            ref.event_ids if ref else (), (("po_id", (po.po_id,)),),
        ))  # fmt: skip
    for ref in references:
        key = (ref.reference_id, ref.cost_center_id)
        if ref.reference_type == "PURCHASE_ORDER" and key in explained:
            continue
        if ref.recorded.outstanding == 0:
            continue  # committed and then released or actualized: nothing left to explain
        found.append(Difference(
            "budget", "COMMITMENT_UNEXPLAINED",
            f"{ref.reference_type} {ref.reference_id} {ref.cost_center_id}", ref.currency,
            _budget_amounts(Budgeted(), ref.recorded), ref.correlation_ids, ref.event_ids,
            (("reference_type", (ref.reference_type,)), ("reference_id", (ref.reference_id,))),
            "no purchase order of the period has lines on this cost center for it",
        ))  # fmt: skip
    for s in spends:
        if (s.committed, s.actual) == (s.entries_committed, s.entries_actual):
            continue
        found.append(Difference(
            "budget", "SPEND_TOTAL_DIFFERS", f"{s.cost_center_id}", s.currency or "",
            (("entries_committed", s.entries_committed), ("recorded_committed", s.committed),
             ("entries_actual", s.entries_actual), ("recorded_actual", s.actual),
             ("difference", s.committed - s.entries_committed)),
            note="budget_spend differs from the sum of its budget_entries",
        ))  # fmt: skip
    return sort_differences(found)


def cost_center_rows(
    spends: Iterable[CostCenterSpend], commitments: Iterable[PoCommitment]
) -> list[CostCenterRow]:
    """Per cost center (sorted): its spend and what the period's POs explain of it."""
    explained: dict[str, Decimal] = {}
    for po in commitments:
        explained[po.cost_center_id] = explained.get(po.cost_center_id, ZERO) + (
            po.expected.outstanding
        )
    return [
        CostCenterRow(s, explained.get(s.cost_center_id, ZERO))
        for s in sorted(spends, key=lambda s: s.cost_center_id)
    ]


# --- accrual ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedLine:
    """A PO line and what receiving accepted of it, in the line's unit."""

    po_id: str
    po_number: str
    line_number: int
    item_id: str
    uom: str
    unit_price: Decimal
    currency: str
    correlation_id: str
    accepted: Decimal
    receipt_ids: tuple[str, ...] = ()
    receipt_event_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class InvoicedLine:
    """An invoice line billing a PO line, as invoiced."""

    invoice_id: str
    event_id: str
    po_id: str
    po_line_number: int
    item_id: str
    quantity: Decimal
    uom: str
    unit_price: Decimal


@dataclass
class _Billed:
    quantity: Decimal = ZERO
    amount: Decimal = ZERO
    invoices: set[str] = field(default_factory=set)
    events: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)


def accrual_differences(
    lines: Iterable[ReceivedLine], invoiced: Iterable[InvoicedLine], convert: Convert
) -> list[Difference]:
    """Per PO line: accepted above invoiced is RECEIVED_NOT_INVOICED (the accrual), invoiced
    above accepted INVOICED_NOT_RECEIVED; the quantity valued at the PO unit price. Invoice
    lines of another item than the PO line, or of no PO line, are not counted (the match
    refused them); a unit that does not convert is INVOICE_UNIT_UNCONVERTIBLE."""
    by_line = {(ln.po_id, ln.line_number): ln for ln in lines}
    billed: dict[tuple[str, int], _Billed] = {key: _Billed() for key in by_line}
    for inv in invoiced:
        po_line = by_line.get((inv.po_id, inv.po_line_number))
        if po_line is None or po_line.item_id != inv.item_id:
            continue
        b = billed[(inv.po_id, inv.po_line_number)]
        b.invoices.add(inv.invoice_id)
        b.events.add(inv.event_id)
        b.amount += money(inv.quantity, inv.unit_price)
        try:
            b.quantity += convert(inv.item_id, inv.quantity, inv.uom, po_line.uom)
        except BusinessRuleError as exc:
            b.problems.append(f"invoice {inv.invoice_id}: {exc.reason}")
    found: list[Difference] = []
    for key, ln in sorted(by_line.items()):
        b = billed[key]
        gap = ln.accepted - b.quantity
        if b.problems:
            kind = "INVOICE_UNIT_UNCONVERTIBLE"
        elif gap > 0:
            kind = "RECEIVED_NOT_INVOICED"
        elif gap < 0:
            kind = "INVOICED_NOT_RECEIVED"
        else:
            continue
        found.append(Difference(
            "accrual", kind, f"{ln.po_number} line {ln.line_number}", ln.currency,
            (("accepted", ln.accepted), ("invoiced", b.quantity), ("quantity", abs(gap)),
             ("unit_price", ln.unit_price), ("amount", money(abs(gap), ln.unit_price)),
             ("invoiced_amount", b.amount)),
            (ln.correlation_id,), tuple(sorted({*ln.receipt_event_ids, *b.events})),
            (("po_id", (ln.po_id,)), ("receipt_ids", tuple(sorted(ln.receipt_ids))),
             ("invoice_ids", tuple(sorted(b.invoices)))),
            f"{ln.item_id} in {ln.uom}" + ("; " + "; ".join(b.problems) if b.problems else ""),
            (ln.po_number, f"{ln.line_number:09d}"),
        ))  # fmt: skip
    return sort_differences(found)


def totals(differences: Iterable[Difference], amount: str) -> dict[tuple[str, str], Decimal]:
    """Sum of ``amount`` per (kind, unit), sorted: the summary lines."""
    found: dict[tuple[str, str], Decimal] = {}
    for d in differences:
        key = (d.kind, d.unit)
        found[key] = found.get(key, ZERO) + d.amount(amount)
    return dict(sorted(found.items()))


# --- the report --------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """The whole reconciliation of a period; ``erp_file`` None: stock was not compared."""

    period: str
    cost_centers: tuple[CostCenterRow, ...]
    differences: tuple[Difference, ...]
    erp_file: str | None = None
    stock_compared: int = 0  # keys compared with the ERP export

    def of(self, section: Section) -> list[Difference]:
        return [d for d in self.differences if d.section == section]

    def summary(self, section: Section) -> dict[str, Any]:
        """Counts per kind and the summed ``difference``/``amount`` per kind and unit."""
        found = self.of(section)
        name = "amount" if section == "accrual" else "difference"
        return {
            "differences": len(found),
            "by_kind": [
                {"kind": kind, "unit": unit, "count": sum(
                    1 for d in found if (d.kind, d.unit) == (kind, unit)), name: str(total)}
                for (kind, unit), total in totals(found, name).items()
            ],
        }  # fmt: skip

    def as_json(self) -> dict[str, Any]:
        stock: dict[str, Any] | None = None
        if self.erp_file is not None:
            stock = {
                "erp_export": self.erp_file,
                "compared": self.stock_compared,
                **self.summary("stock"),
                "items": [d.as_json() for d in self.of("stock")],
            }
        return {
            "period": self.period,
            "differences": len(self.differences),
            "budget": {
                "cost_centers": [row.as_json() for row in self.cost_centers],
                **self.summary("budget"),
                "items": [d.as_json() for d in self.of("budget")],
            },
            "accrual": {**self.summary("accrual"),
                        "items": [d.as_json() for d in self.of("accrual")]},
            "stock": stock,
        }  # fmt: skip
