"""One approval policy document: its rules as plain data, parsed and checked from YAML.

A document is an enterprise standard or a per-entity / per-facility override (the format is
documented in ``schemas/policies/README.md``). ``parse_policy`` checks one document on its own
and refuses a bad one with one line naming the file, the rule and what was expected;
``federation`` checks an override against the policy it tightens.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import yaml

from supplybus.errors import ConfigError
from supplybus.events.domain_checks import CURRENCIES

SCOPES = ("ENTERPRISE", "ENTITY", "FACILITY")
#: schemas/procurement/RequisitionSubmitted.v1.avsc, enum Urgency.
URGENCIES = ("STAT", "URGENT", "ROUTINE")
#: schemas/masterdata/ItemUpserted.v1.avsc, enum ItemCategory.
CATEGORIES = (
    "MED_SURG", "PHARMACY", "CONTROLLED_SUBSTANCE", "IMPLANT", "LAB", "CAPITAL", "OTHER"
)  # fmt: skip
#: Facts of a requisition that may demand an approval step, in routing order.
CONDITIONS = ("off_contract", "over_budget", "grant_funded")

_KEYS = {
    "policy_id", "scope", "scope_id", "entity_id", "version", "description", "currency",
    "default_sla", "auto_approve", "spend_bands", "categories", "conditions", "urgency",
}  # fmt: skip
_RULE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ROLE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_DURATION = re.compile(r"([1-9][0-9]{0,5})([mhd])")
_MINUTES = {"m": 1, "h": 60, "d": 1440}


@dataclass(frozen=True)
class AutoApprove:
    """Below ``below`` the spend ladder demands nothing."""

    id: str
    below: Decimal
    origin: str = ""


@dataclass(frozen=True)
class Band:
    """One rung of the spend ladder: ``role`` approves from ``start`` (inclusive) up."""

    id: str
    role: str
    start: Decimal
    sla_minutes: int
    origin: str = ""


@dataclass(frozen=True)
class Requirement:
    """Roles demanded by a category present or a condition true, from ``start`` up."""

    id: str
    roles: tuple[str, ...]
    sla_minutes: int
    start: Decimal = Decimal(0)
    origin: str = ""


@dataclass(frozen=True)
class Expedite:
    """An urgency's SLA: no step of such a requisition waits longer."""

    id: str
    sla_minutes: int
    origin: str = ""


@dataclass(frozen=True)
class PolicyDoc:
    """One parsed file. Rules a local override leaves out are inherited; fields of a rule it
    leaves out (``None``, an empty ``roles``) are inherited from the rule it tightens."""

    source: str
    policy_id: str
    scope: str
    scope_id: str | None
    entity_id: str | None
    version: int
    document: str
    currency: str | None
    default_sla: int | None
    auto_approve: dict[str, Any] | None
    spend_bands: tuple[dict[str, Any], ...]
    categories: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    conditions: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    urgency: dict[str, dict[str, Any] | None] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.policy_id} v{self.version}"

    @property
    def checksum(self) -> str:
        """SHA-256 hex digest of the document, as ApprovalPolicyUpserted carries it."""
        return hashlib.sha256(self.document.encode()).hexdigest()

    def fail(self, path: str, expected: str, got: object = None) -> ConfigError:
        shown = "" if got is None else f", got {got!r}" if isinstance(got, str) else f", got {got}"
        return ConfigError(f"{self.source}: {path}: expected {expected}{shown}")


def parse_policy(text: str, source: str) -> PolicyDoc:
    """Check one document on its own (structure, names, amounts, durations)."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f"line {where.line + 1}: " if where is not None else ""
        raise ConfigError(
            f"{source}: {line}expected valid YAML ({exc.__class__.__name__})"
        ) from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of policy fields, got {_kind(raw)}")
    unknown = sorted(str(k) for k in raw if k not in _KEYS)
    if unknown:
        raise ConfigError(f"{source}: {unknown[0]}: unknown field; expected one of {_list(_KEYS)}")
    p = _Parser(source)
    scope = p.choice(raw.get("scope"), "scope", SCOPES)
    scope_id = p.name(raw.get("scope_id"), "scope_id") if scope != "ENTERPRISE" else None
    if scope == "ENTERPRISE" and raw.get("scope_id") is not None:
        raise ConfigError(f"{source}: scope_id: expected none for an ENTERPRISE policy")
    entity_id = p.name(raw.get("entity_id"), "entity_id") if scope == "FACILITY" else None
    version = raw.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ConfigError(f"{source}: version: expected an integer >= 1, got {version!r}")
    currency = raw.get("currency")
    if currency is not None and currency not in CURRENCIES:
        raise ConfigError(f"{source}: currency: expected an ISO 4217 code, got {currency!r}")
    bands = p.seq(raw.get("spend_bands"), "spend_bands")
    doc = PolicyDoc(
        source=source,
        policy_id=p.name(raw.get("policy_id"), "policy_id"),
        scope=scope,
        scope_id=scope_id,
        entity_id=entity_id,
        version=version,
        document=text,
        currency=currency,
        default_sla=p.duration(raw.get("default_sla"), "default_sla", optional=True),
        auto_approve=p.rule(raw.get("auto_approve"), "auto_approve", {"below"}, optional=True),
        spend_bands=tuple(
            p.rule(b, f"spend_bands[{i}]", {"role", "from", "sla"}) for i, b in enumerate(bands)
        ),
        categories=p.table(raw.get("categories"), "categories", CATEGORIES, _REQUIREMENT),
        conditions=p.table(raw.get("conditions"), "conditions", CONDITIONS, _REQUIREMENT),
        urgency=p.table(raw.get("urgency"), "urgency", URGENCIES, {"sla"}),
    )
    if scope == "ENTERPRISE":
        _check_complete(doc)
    return doc


_REQUIREMENT = {"roles", "from", "sla"}


def _check_complete(doc: PolicyDoc) -> None:
    """The enterprise standard states everything an override may inherit."""
    if doc.currency is None:
        raise doc.fail("currency", "the currency of every amount (an ISO 4217 code)")
    if doc.default_sla is None:
        raise doc.fail("default_sla", "the SLA of a step whose rule names none, e.g. 48h")
    if doc.auto_approve is None or doc.auto_approve.get("below") is None:
        raise doc.fail("auto_approve.below", "the auto-approve limit (an amount)")
    if not doc.spend_bands:
        raise doc.fail("spend_bands", "at least one band (role, from)")
    for i, band in enumerate(doc.spend_bands):
        for key in ("role", "from"):
            if band.get(key) is None:
                raise doc.fail(f"spend_bands[{i}].{key}", "a value in the enterprise standard")
    for table in ("categories", "conditions"):
        for name, rule in getattr(doc, table).items():
            if rule is None or not rule.get("roles"):
                raise doc.fail(f"{table}.{name}.roles", "at least one role")
    for name, rule in doc.urgency.items():
        if rule is None or rule.get("sla") is None:
            raise doc.fail(f"urgency.{name}.sla", "a duration such as 2h")


class _Parser:
    """Field checks of one file; each failure is one line naming the file and the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, path: str, expected: str, got: object) -> ConfigError:
        return ConfigError(f"{self.source}: {path}: expected {expected}, got {got!r}")

    def name(self, value: object, path: str) -> str:
        if not isinstance(value, str) or not _RULE_ID.fullmatch(value):
            raise self.error(path, "an id of letters, digits, '.', '_' or '-'", value)
        return value

    def choice(self, value: object, path: str, choices: tuple[str, ...]) -> str:
        if value not in choices:
            raise self.error(path, f"one of {', '.join(choices)}", value)
        return str(value)

    def seq(self, value: object, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(path, "a list", _kind(value))
        return value

    def duration(self, value: object, path: str, *, optional: bool = False) -> int | None:
        if value is None and optional:
            return None
        match = _DURATION.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise self.error(path, "a duration such as 30m, 4h or 2d", value)
        return int(match[1]) * _MINUTES[match[2]]

    def amount(self, value: object, path: str) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.error(path, 'an amount as a string such as "5000.00" or an integer', value)
        try:
            amount = Decimal(value)
        except InvalidOperation:
            raise self.error(path, "a decimal amount", value) from None
        if not amount.is_finite() or amount < 0 or amount.as_tuple().exponent < -4:  # type: ignore[operator]
            raise self.error(path, "an amount >= 0 with at most 4 decimals", value)
        return amount

    def rule(
        self, value: object, path: str, fields: set[str], *, optional: bool = False
    ) -> dict[str, Any]:
        """A rule mapping: ``id`` plus ``fields``, each checked; absent fields are None."""
        if value is None and optional:
            return {}
        if not isinstance(value, dict):
            raise self.error(path, f"a mapping with id and {_list(fields)}", _kind(value))
        unknown = sorted(str(k) for k in value if k not in fields | {"id"})
        if unknown:
            raise ConfigError(
                f"{self.source}: {path}.{unknown[0]}: unknown field; expected one of id, "
                f"{_list(fields)}"
            )
        rule: dict[str, Any] = {"id": self.name(value.get("id"), f"{path}.id")}
        for key in sorted(fields):
            got = value.get(key)
            where = f"{path}.{key}"
            if got is None:
                rule[key] = () if key == "roles" else None
            elif key in ("from", "below"):
                rule[key] = self.amount(got, where)
            elif key == "sla":
                rule[key] = self.duration(got, where)
            elif key == "role":
                rule[key] = self.role(got, where)
            else:
                roles = self.seq(got, where)
                rule[key] = tuple(self.role(r, f"{where}[{i}]") for i, r in enumerate(roles))
        return rule

    def role(self, value: object, path: str) -> str:
        if not isinstance(value, str) or not _ROLE.fullmatch(value):
            raise self.error(path, "a role in capitals such as DIRECTOR", value)
        return value

    def table(
        self, value: object, path: str, names: tuple[str, ...], fields: set[str]
    ) -> dict[str, dict[str, Any] | None]:
        """A mapping name -> rule; a null rule is kept as None (an attempt to drop one)."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(path, f"a mapping of {', '.join(names)} to rules", _kind(value))
        table: dict[str, dict[str, Any] | None] = {}
        for name in sorted(value, key=str):
            if name not in names:
                raise ConfigError(
                    f"{self.source}: {path}.{name}: unknown name; "
                    f"expected one of {', '.join(names)}"
                )
            rule = value[name]
            table[name] = None if rule is None else self.rule(rule, f"{path}.{name}", fields)
        return table


def _kind(value: object) -> str:
    return "nothing" if value is None else type(value).__name__


def _list(names: set[str]) -> str:
    return ", ".join(sorted(names))


def duration_text(minutes: int) -> str:
    """Minutes as the policy files write them: 30m, 4h, 2d."""
    for unit in ("d", "h"):
        if minutes % _MINUTES[unit] == 0:
            return f"{minutes // _MINUTES[unit]}{unit}"
    return f"{minutes}m"
