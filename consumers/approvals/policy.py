"""One approval policy document: its rules as plain data, parsed and checked from YAML.

A document is an enterprise standard or a per-entity / per-facility override (the format is
documented in ``schemas/policies/README.md``). ``parse_policy`` checks one document on its own
and refuses a bad one with one line naming the file, the rule and what was expected;
``federation`` checks an override against the policy it tightens.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import yaml

from supplybus.consumers.approvals.fields import FieldParser, kind, listed
from supplybus.errors import BusinessRuleError, ConfigError
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
        raise ConfigError(f"{source}: expected a mapping of policy fields, got {kind(raw)}")
    unknown = sorted(str(k) for k in raw if k not in _KEYS)
    if unknown:
        raise ConfigError(f"{source}: {unknown[0]}: unknown field; expected one of {listed(_KEYS)}")
    p = FieldParser(source)
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


def supersedes(published: tuple[int, str] | None, doc: PolicyDoc) -> bool:
    """Whether ``doc`` replaces the published (version, checksum) of its policy: a higher
    version does; the same document again, or an older version, does not; the same version
    with another document is refused (a changed policy needs a new version)."""
    if published is None or doc.version > published[0]:
        return True
    version, checksum = published
    if doc.version == version and doc.checksum != checksum:
        raise BusinessRuleError(
            f"{doc.source}: version: {doc.policy_id} v{version} is already published with "
            f"another document (sha256 {checksum[:12]}); expected version {version + 1} or more"
        )
    return False
