"""Domain checks on conformed records: GS1 GTIN check digit, positive quantities, known units of
measure, ISO 4217 currencies. Plain functions over plain data; each error names its field path.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from supplybus.errors import FieldError
from supplybus.events.registry import SchemaVersion

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


def _nodes(value: Any, path: str) -> Iterator[tuple[str, str, Any]]:
    """(path, field name, value) for every field of nested records and lists."""
    if isinstance(value, Mapping):
        for key, child in value.items():
            where = f"{path}.{key}" if path else key
            yield where, key, child
            yield from _nodes(child, where)
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from _nodes(child, f"{path}[{i}]")


def _is_quantity(v: Any) -> bool:
    return isinstance(v, Mapping) and set(v) == {"value", "uom"}


def _is_money(v: Any) -> bool:
    return isinstance(v, Mapping) and set(v) == {"amount", "currency"}


def check_domain(sv: SchemaVersion, record: Mapping[str, Any]) -> list[FieldError]:
    """Every domain error of a conformed record (empty when it passes)."""
    errors: list[FieldError] = []
    signed = sv.event_type == "StockMovement" and record.get("kind") == "ADJUSTMENT"
    for path, name, v in _nodes(record, ""):
        if name == "gtin" and isinstance(v, str) and not gtin_is_valid(v):
            errors.append(FieldError(path, "a GS1 GTIN-8/12/13/14 with a valid check digit", v))
        elif _is_quantity(v):
            errors.extend(_quantity(path, name, v, signed=signed and path == "quantity"))
        elif _is_money(v):
            errors.extend(_money(path, v))
    return errors


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
