"""Domain checks on conformed records: GS1 GTIN check digit, positive quantities, known units of
measure, ISO 4217 currencies. Plain functions over plain data; each error names its field path.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from typing import Any, Literal

from supplybus.errors import FieldError
from supplybus.events.avro_names import defined_name, index, lookup, namespace_of
from supplybus.events.schema_store import SchemaVersion

#: Units of measure supplybus accepts (UN/ECE Recommendation 20 and common healthcare codes).
UNITS_OF_MEASURE = frozenset(
    "EA BX CS PK DZ PR ST KT BG BT VL AMP CT TB RL SH PL TR JR CN CA "
    "G KG MG MCG LB OZ L ML M CM MM IN FT UN DOSE TAB CAP SYR".split()
)

#: Active ISO 4217 currency codes.
CURRENCIES = frozenset(
    """AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN
    BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP
    GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS
    KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR
    MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF
    SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD
    TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWG""".split()
)

#: Quantity fields that may be zero (a count of what did not happen, or a level).
ZERO_ALLOWED = frozenset(
    {
        "quantity_rejected",
        "quantity_received",
        "on_hand",
        "on_order",
        "actual",
        "daily_usage",
        "reorder_point",
    }
)

_GTIN_LENGTHS = (8, 12, 13, 14)


def gtin_is_valid(gtin: str) -> bool:
    """GS1 check digit: weights 3,1,3,... from the right, excluding the check digit."""
    if not gtin.isascii() or not gtin.isdigit() or len(gtin) not in _GTIN_LENGTHS:
        return False
    digits = [int(c) for c in gtin]
    body, check = digits[:-1], digits[-1]
    total = sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10 == check


def gtin_check_digit(body: str) -> str:
    """The check digit that makes ``body`` + digit a valid GTIN (for generators and tests)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


Kind = Literal["gtin", "quantity", "money"]
_KINDS: dict[str, Kind] = {
    "supplybus.common.Quantity": "quantity",
    "supplybus.common.Money": "money",
}
_KEYS: dict[Kind, frozenset[str]] = {
    "quantity": frozenset({"value", "uom"}),
    "money": frozenset({"amount", "currency"}),
    "gtin": frozenset(),
}


@dataclass(frozen=True)
class _Target:
    """A place in the record to check: field names from the top, "*" for list items."""

    kind: Kind
    steps: tuple[str, ...]

    @cached_property
    def simple(self) -> bool:
        """No list on the way: the value is found by plain lookups (the fast path)."""
        return "*" not in self.steps

    @cached_property
    def path(self) -> str:
        return ".".join(self.steps)


_plans: dict[str, tuple[_Target, ...]] = {}


def _targets(sv: SchemaVersion) -> tuple[_Target, ...]:
    """Where the checked types sit in this schema (computed once per schema version)."""
    plan = _plans.get(sv.content_hash)
    if plan is None:
        found: list[_Target] = []
        _find(dict(sv.raw), "", (), index(dict(sv.raw)), found, set())
        plan = _plans[sv.content_hash] = tuple(found)
    return plan


def _find(
    schema: Any,
    ns: str,
    steps: tuple[str, ...],
    named: dict[str, Any],
    found: list[_Target],
    active: set[str],
) -> None:
    if isinstance(schema, str):
        resolved = lookup(schema, ns, named)
        if resolved is not None:
            _find(resolved[1], namespace_of(resolved[0]), steps, named, found, active)
        return
    if isinstance(schema, list):
        for branch in schema:
            _find(branch, ns, steps, named, found, active)
        return
    kind = schema.get("type")
    if isinstance(kind, dict | list):
        _find(kind, ns, steps, named, found, active)
    elif kind == "array":
        _find(schema["items"], ns, (*steps, "*"), named, found, active)
    elif kind == "record":
        name = defined_name(schema, ns)
        if name in _KINDS:
            found.append(_Target(_KINDS[name], steps))
            return
        if name in active:  # a recursive type: its fields are already being walked
            return
        inner = namespace_of(name)
        for f in schema["fields"]:
            if f["name"] == "gtin":
                found.append(_Target("gtin", (*steps, "gtin")))
            else:
                _find(f["type"], inner, (*steps, f["name"]), named, found, active | {name})


def _values(value: Any, steps: tuple[str, ...], i: int, path: str) -> Iterator[tuple[str, Any]]:
    if value is None:
        return
    if i == len(steps):
        yield path, value
        return
    step = steps[i]
    if step == "*":
        if isinstance(value, list):
            for j, item in enumerate(value):
                yield from _values(item, steps, i + 1, f"{path}[{j}]")
    elif isinstance(value, Mapping) and step in value:
        yield from _values(value[step], steps, i + 1, f"{path}.{step}" if path else step)


def check_domain(sv: SchemaVersion, record: Mapping[str, Any]) -> list[FieldError]:
    """Every domain error of a conformed record (empty when it passes).

    Runs on every consumed event, so the common case (fields not inside lists, decoded into
    dicts) is plain lookups, and nothing is allocated unless there is an error.
    """
    errors: list[FieldError] = []
    signed = sv.event_type == "StockMovement" and record.get("kind") == "ADJUSTMENT"
    for target in _targets(sv):
        if target.simple:
            value: Any = record
            for step in target.steps:
                value = value.get(step) if isinstance(value, dict | Mapping) else None
                if value is None:
                    break
            if value is not None and not _passes(target, value, signed):
                _check(target, target.path, value, signed, errors)
        else:
            for path, v in _values(record, target.steps, 0, ""):
                _check(target, path, v, signed, errors)
    return errors


def _passes(target: _Target, v: Any, signed: bool) -> bool:
    """The fast answer for the common valid value (False: look closer with ``_check``)."""
    if target.kind != "quantity" or type(v) is not dict:
        return False
    value, uom = v.get("value"), v.get("uom")
    if type(value) is not Decimal or uom not in UNITS_OF_MEASURE:
        return False
    return value > 0 and not (signed and target.path == "quantity")


def _check(target: _Target, path: str, v: Any, signed: bool, errors: list[FieldError]) -> None:
    if target.kind == "gtin":
        if isinstance(v, str) and not gtin_is_valid(v):
            errors.append(FieldError(path, "a GS1 GTIN-8/12/13/14 with a valid check digit", v))
    elif not isinstance(v, Mapping) or not _KEYS[target.kind] <= v.keys():
        return  # conformance already reported what is missing
    elif target.kind == "quantity":
        name = target.steps[-1] if target.steps else ""
        errors.extend(_quantity(path, name, v, signed=signed and path == "quantity"))
    else:
        errors.extend(_money(path, v))


def _quantity(path: str, name: str, q: Mapping[str, Any], *, signed: bool) -> list[FieldError]:
    errors = []
    value = q["value"]
    if isinstance(value, Decimal):
        if signed:
            if value == 0:
                errors.append(FieldError(f"{path}.value", "must not be 0", value))
        elif name in ZERO_ALLOWED:
            if value < 0:
                errors.append(FieldError(f"{path}.value", "must be >= 0", value))
        elif value <= 0:
            errors.append(FieldError(f"{path}.value", "must be > 0", value))
    if q["uom"] not in UNITS_OF_MEASURE:
        errors.append(
            FieldError(f"{path}.uom", "a known unit of measure (EA, BX, CS, ...)", q["uom"])
        )
    return errors


def _money(path: str, m: Mapping[str, Any]) -> list[FieldError]:
    errors = []
    if isinstance(m["amount"], Decimal) and m["amount"] < 0:
        errors.append(FieldError(f"{path}.amount", "must be >= 0", m["amount"]))
    if m["currency"] not in CURRENCIES:
        errors.append(FieldError(f"{path}.currency", "an ISO 4217 currency code", m["currency"]))
    return errors
