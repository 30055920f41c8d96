"""The federated policy: an enterprise standard tightened by entity and facility overrides.

``PolicySet`` merges every override into the policy above it (enterprise, then the facility's
entity) and refuses one that is looser anywhere: a higher auto-approve limit, a band that
starts later (a wider band below it), a required role dropped, a longer SLA. Each refusal is
one line naming the file, the rule and the bound it broke.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from supplybus.consumers.approvals.fields import duration_text
from supplybus.consumers.approvals.policy import (
    AutoApprove,
    Band,
    Expedite,
    PolicyDoc,
    Requirement,
    parse_policy,
)
from supplybus.errors import BusinessRuleError, ConfigError
from supplybus.events.schema_store import schemas_dir


@dataclass(frozen=True)
class Policy:
    """The effective policy of one entity or facility; ``layers`` are (policy_id, version)
    of the documents merged into it, enterprise first."""

    currency: str
    default_sla: int
    auto_approve: AutoApprove
    bands: tuple[Band, ...]
    categories: dict[str, Requirement]
    conditions: dict[str, Requirement]
    urgency: dict[str, Expedite]
    layers: tuple[tuple[str, int], ...]


def enterprise_policy(doc: PolicyDoc) -> Policy:
    """The enterprise standard on its own (``parse_policy`` checked it is complete)."""
    if doc.currency is None or doc.default_sla is None or doc.auto_approve is None:
        raise ConfigError(f"{doc.source}: expected an ENTERPRISE policy")
    auto = AutoApprove(doc.auto_approve["id"], doc.auto_approve["below"], doc.ref)
    base = Policy(doc.currency, doc.default_sla, auto, (), {}, {}, {}, ())
    return tighten(base, doc)


def tighten(base: Policy, doc: PolicyDoc) -> Policy:
    """``base`` with ``doc``'s rules applied; ConfigError when one is looser than base's."""
    if doc.currency is not None and doc.currency != base.currency:
        raise doc.fail("currency", f"{base.currency}, the enterprise currency", doc.currency)
    default_sla = base.default_sla
    if doc.default_sla is not None and base.layers:
        _not_longer(doc, "default_sla", "default_sla", doc.default_sla, base.default_sla, "")
    default_sla = doc.default_sla or default_sla
    auto = base.auto_approve
    if doc.auto_approve:
        below = doc.auto_approve["below"]
        below = auto.below if below is None else below
        if below > auto.below:
            raise _looser(doc, "auto_approve.below", doc.auto_approve["id"], below, auto,
                          f"at most {auto.below}")  # fmt: skip
        auto = AutoApprove(doc.auto_approve["id"], below, doc.ref)
    bands = {b.role: b for b in base.bands}
    seen: set[str] = set()
    for i, raw in enumerate(doc.spend_bands):
        path, role = f"spend_bands[{i}]", raw["role"]
        if role is None or role in seen:
            raise doc.fail(f"{path}.role", "a role named once in spend_bands", role)
        seen.add(role)
        old = bands.get(role)
        if old is None and raw["from"] is None:
            raise doc.fail(f"{path}.from", f"the amount from which {role} approves")
        start = raw["from"] if raw["from"] is not None else old.start  # type: ignore[union-attr]
        sla = raw["sla"] or (old.sla_minutes if old else default_sla)
        if old is not None:
            if start > old.start:
                raise _looser(doc, f"{path}.from", raw["id"], start, old, f"at most {old.start}")
            _not_longer(doc, f"{path}.sla", raw["id"], sla, old.sla_minutes, old)
        bands[role] = Band(raw["id"], role, start, sla, doc.ref)
    ladder = tuple(sorted(bands.values(), key=lambda b: (b.start, b.role)))
    if ladder and ladder[0].start > auto.below:
        raise doc.fail(
            "spend_bands",
            f"a band from at most auto_approve.below {auto.below} (requisitions between it and "
            f"the lowest band, {ladder[0].role} from {ladder[0].start}, would need no approval)",
        )
    return Policy(
        currency=base.currency,
        default_sla=default_sla,
        auto_approve=auto,
        bands=ladder,
        categories=_requirements(doc, "categories", base.categories, default_sla),
        conditions=_requirements(doc, "conditions", base.conditions, default_sla),
        urgency=_urgency(doc, base.urgency),
        layers=(*base.layers, (doc.policy_id, doc.version)),
    )


def _requirements(
    doc: PolicyDoc, table: str, inherited: dict[str, Requirement], default_sla: int
) -> dict[str, Requirement]:
    merged = dict(inherited)
    for name, raw in getattr(doc, table).items():
        path, old = f"{table}.{name}", inherited.get(name)
        if raw is None:
            _refuse_drop(doc, path, old)
            continue
        roles = raw["roles"] or (old.roles if old else ())
        if not roles:
            raise doc.fail(f"{path}.roles", "at least one role")
        start = raw["from"] if raw["from"] is not None else (old.start if old else Decimal(0))
        sla = raw["sla"] or (old.sla_minutes if old else default_sla)
        if old is not None:
            dropped = [r for r in old.roles if r not in roles]
            if dropped:
                raise _looser(doc, f"{path}.roles", raw["id"], f"no {dropped[0]}", old,
                              f"roles including {', '.join(old.roles)}")  # fmt: skip
            if start > old.start:
                raise _looser(doc, f"{path}.from", raw["id"], start, old, f"at most {old.start}")
            _not_longer(doc, f"{path}.sla", raw["id"], sla, old.sla_minutes, old)
        merged[name] = Requirement(raw["id"], tuple(roles), sla, start, doc.ref)
    return merged


def _urgency(doc: PolicyDoc, inherited: dict[str, Expedite]) -> dict[str, Expedite]:
    merged = dict(inherited)
    for name, raw in doc.urgency.items():
        path, old = f"urgency.{name}", inherited.get(name)
        if raw is None:
            _refuse_drop(doc, path, old)
            continue
        sla = raw["sla"] if raw["sla"] is not None else (old.sla_minutes if old else None)
        if sla is None:
            raise doc.fail(f"{path}.sla", "a duration such as 2h")
        if old is not None:
            _not_longer(doc, f"{path}.sla", raw["id"], sla, old.sla_minutes, old)
        merged[name] = Expedite(raw["id"], sla, doc.ref)
    return merged


def _refuse_drop(doc: PolicyDoc, path: str, old: Requirement | Expedite | None) -> None:
    if old is None:
        raise doc.fail(path, "a rule (null removes nothing)")
    raise ConfigError(
        f"{doc.source}: {path}: cannot drop {old.id} of {old.origin}; "
        "expected a rule at least as strict (a local policy may only tighten)"
    )


def _not_longer(doc: PolicyDoc, path: str, rule_id: str, sla: int, bound: int, old: Any) -> None:
    if sla > bound:
        if old == "":
            raise ConfigError(
                f"{doc.source}: {path}: {duration_text(sla)} is looser than the inherited "
                f"default_sla; expected at most {duration_text(bound)}"
            )
        raise _looser(doc, path, rule_id, duration_text(sla), old,
                      f"at most {duration_text(bound)}")  # fmt: skip


def _looser(
    doc: PolicyDoc, path: str, rule_id: str, got: object, old: Any, bound: str
) -> Exception:
    return ConfigError(
        f"{doc.source}: {path} ({rule_id}): {got} is looser than {old.id} of {old.origin}; "
        f"expected {bound}"
    )


class PolicySet:
    """Every policy document, merged per entity and per facility; checked when built."""

    def __init__(self, docs: Sequence[PolicyDoc]) -> None:
        _check_unique(docs)
        top = [d for d in docs if d.scope == "ENTERPRISE"]
        if len(top) != 1:
            found = ", ".join(d.source for d in top) or "none"
            raise ConfigError(f"policies: expected exactly one ENTERPRISE policy, found {found}")
        self.docs = tuple(docs)
        self.enterprise = enterprise_policy(top[0])
        scoped = {(d.scope, d.scope_id): d for d in docs}
        self.entities = {
            d.scope_id: tighten(self.enterprise, d) for d in docs if d.scope == "ENTITY"
        }
        self.facilities = {
            d.scope_id: tighten(self.entities.get(d.entity_id, self.enterprise), d)
            for d in docs
            if d.scope == "FACILITY"
        }
        self.facility_entity = {fid: scoped[("FACILITY", fid)].entity_id for fid in self.facilities}

    @classmethod
    def from_documents(cls, documents: Iterable[tuple[str, str]]) -> PolicySet:
        """From (source label, YAML text) pairs, e.g. ApprovalPolicyUpserted documents."""
        return cls([parse_policy(text, source) for source, text in documents])

    def effective(self, entity_id: str, facility_id: str | None = None) -> Policy:
        """The policy of a requisition of this entity (and facility)."""
        if facility_id is not None and facility_id in self.facilities:
            owner = self.facility_entity[facility_id]
            if owner != entity_id:
                raise BusinessRuleError(
                    f"facility {facility_id} belongs to entity {owner} by its approval "
                    f"policy, not {entity_id}"
                )
            return self.facilities[facility_id]
        return self.entities.get(entity_id, self.enterprise)


def load_policies(directory: Path | None = None) -> PolicySet:
    """Every ``*.yaml`` of ``directory`` (default: the shipped ``schemas/policies``)."""
    folder = directory if directory is not None else default_policy_dir()
    paths = sorted(folder.glob("*.yaml"))
    if not paths:
        raise ConfigError(f"{folder}: expected policy files (*.yaml), found none")
    documents = []
    for path in paths:
        try:
            documents.append((str(path), path.read_text()))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    return PolicySet.from_documents(documents)


def default_policy_dir() -> Path:
    return schemas_dir() / "policies"


def _check_unique(docs: Sequence[PolicyDoc]) -> None:
    """Policy ids, scopes and rule ids each name one thing across the set."""
    owners: dict[tuple[str, str], str] = {}
    for doc in docs:
        names = [("policy_id", doc.policy_id), ("scope", f"{doc.scope} {doc.scope_id or ''}")]
        names += [("rule id", rule_id) for rule_id in _rule_ids(doc)]
        for kind, value in names:
            other = owners.setdefault((kind, value), doc.source)
            if other != doc.source or (kind == "rule id" and _rule_ids(doc).count(value) > 1):
                raise ConfigError(
                    f"{doc.source}: {kind} {value.strip()!r}: expected it once in the policy "
                    f"set, also in {other}"
                )


def _rule_ids(doc: PolicyDoc) -> list[str]:
    rules: list[dict[str, Any] | None] = [doc.auto_approve, *doc.spend_bands]
    for table in (doc.categories, doc.conditions, doc.urgency):
        rules.extend(table.values())
    return [r["id"] for r in rules if r]
