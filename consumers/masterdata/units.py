"""Units of measure of an item: exact conversion through its base unit (pure, no I/O).

An item counts stock in its base unit (e.g. EA) and is packed or ordered in others, each with a
factor in base units (BX = 10 EA, CS = 100 EA, so 1 CS = 10 BX). Quantities are decimal(12,3)
everywhere (the Quantity type of the schemas): a conversion is either exact at that scale and
within its precision, or refused with a ``BusinessRuleError``; it never rounds. So a round trip
gives back what went in, and a->b->c equals a->c.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from supplybus.errors import BusinessRuleError

#: decimal(12,3): three places after the point, at most nine before.
SCALE = 3
QUANTUM = Decimal(1).scaleb(-SCALE)
LIMIT = Decimal(10) ** (12 - SCALE)
_EXACT = decimal.Context(prec=60, traps=[decimal.Inexact])


@dataclass(frozen=True)
class ItemUnits:
    """The units an item is known in: unit -> factor in base units (the base unit itself: 1)."""

    item_id: str
    base_uom: str
    factors: Mapping[str, Decimal]

    def factor(self, uom: str) -> Decimal:
        found = self.factors.get(uom)
        if found is None:
            known = ", ".join(sorted(self.factors))
            raise BusinessRuleError(f"item {self.item_id} has no unit {uom!r} (known: {known})")
        return found

    def convert(self, quantity: Decimal, from_uom: str, to_uom: str) -> Decimal:
        """``quantity`` in ``from_uom`` expressed in ``to_uom``; exact at 3 decimals or refused."""
        source, target = self.factor(from_uom), self.factor(to_uom)
        if from_uom == to_uom:
            return _fits(self.item_id, quantity, quantity, from_uom, to_uom)
        try:
            result = _EXACT.divide(_EXACT.multiply(quantity, source), target)
        except decimal.Inexact:
            approx = (quantity * source / target).quantize(Decimal("0.000001"))
            raise _refused(self.item_id, quantity, from_uom, f"about {approx}", to_uom) from None
        return _fits(self.item_id, quantity, result, from_uom, to_uom)

    def to_base(self, quantity: Decimal, uom: str) -> Decimal:
        return self.convert(quantity, uom, self.base_uom)


def item_units(
    item_id: str, base_uom: str, conversions: Iterable[tuple[str, Decimal]]
) -> ItemUnits:
    """An item's units from its master record's base unit and (unit, factor) pairs.

    Refused (naming item and unit): a factor that is not positive, a unit listed twice with
    different factors, or the base unit with a factor other than 1.
    """
    factors: dict[str, Decimal] = {base_uom: Decimal(1)}
    for uom, factor in conversions:
        if not factor > 0:
            raise BusinessRuleError(f"item {item_id}: unit {uom} has factor {factor}; expected > 0")
        if uom == base_uom and factor != 1:
            raise BusinessRuleError(
                f"item {item_id}: base unit {uom} has factor {factor}; expected 1"
            )
        if uom in factors and factors[uom] != factor:
            raise BusinessRuleError(
                f"item {item_id}: unit {uom} listed with factors {factors[uom]} and {factor}"
            )
        factors[uom] = factor
    return ItemUnits(item_id, base_uom, MappingProxyType(factors))


def units_of_record(record: Mapping[str, Any]) -> ItemUnits:
    """``item_units`` of an ItemUpserted record."""
    return item_units(
        str(record["item_id"]),
        str(record["base_uom"]),
        ((str(c["uom"]), Decimal(c["factor"])) for c in record["uom_conversions"]),
    )


def _fits(item_id: str, quantity: Decimal, result: Decimal, from_uom: str, to_uom: str) -> Decimal:
    if abs(result) < LIMIT:
        try:
            return result.quantize(QUANTUM, context=_EXACT)
        except decimal.Inexact:
            pass
    raise _refused(item_id, quantity, from_uom, str(result.normalize()), to_uom)


def _refused(item_id: str, quantity: Decimal, from_uom: str, shown: str, to_uom: str) -> Exception:
    return BusinessRuleError(
        f"item {item_id}: {quantity} {from_uom} is {shown} {to_uom}, "
        f"not exact as decimal(12,{SCALE})"
    )
