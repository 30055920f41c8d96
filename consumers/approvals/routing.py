"""Routing: which approval steps a requisition takes under its effective policy.

``route(request, policy)`` is a pure function: the same request and policy always give the
same ``Route``. Steps come in a fixed order: conditions (off-contract -> sourcing, over budget
-> finance, grant-funded -> grants office), then item categories (in the ItemCategory enum's
order), then the spend ladder from the lowest band up. A role demanded twice is one step, at its
first place, with the shortest SLA of the rules that demanded it. An urgency rule (STAT, URGENT)
caps every step's SLA. No step at all: the requisition is auto-approved.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from supplybus.consumers.approvals.federation import Policy
from supplybus.consumers.approvals.policy import CATEGORIES, CONDITIONS, URGENCIES, Requirement
from supplybus.errors import BusinessRuleError

_CONDITION_REASON = {
    "off_contract": "off-contract lines",
    "over_budget": "over the cost center's budget",
    "grant_funded": "grant-funded cost center",
}


@dataclass(frozen=True)
class Request:
    """What routing needs to know of a requisition (plain data)."""

    entity_id: str
    facility_id: str | None
    cost_center_id: str
    urgency: str
    total: Decimal
    currency: str
    categories: frozenset[str] = frozenset()
    grant_funded: bool = False
    off_contract: bool = False
    over_budget: bool = False

    def __post_init__(self) -> None:
        if self.urgency not in URGENCIES:
            raise BusinessRuleError(f"urgency: expected one of {', '.join(URGENCIES)}")
        unknown = sorted(self.categories - set(CATEGORIES))
        if unknown:
            raise BusinessRuleError(
                f"categories: {unknown[0]!r} is not one of {', '.join(CATEGORIES)}"
            )
        if not self.total.is_finite() or self.total < 0:
            raise BusinessRuleError(f"total: expected an amount >= 0, got {self.total}")

    def condition(self, name: str) -> bool:
        return bool(getattr(self, name))

    @classmethod
    def of_requisition(
        cls,
        record: Mapping[str, Any],
        categories: Iterable[str],
        *,
        off_contract: bool = False,
        over_budget: bool = False,
    ) -> Request:
        """From a RequisitionSubmitted (or Validated) record and what validation found out:
        the item categories of its lines, off-contract lines, over budget."""
        envelope = record["envelope"]
        return cls(
            entity_id=envelope["entity_id"],
            facility_id=envelope["facility_id"],
            cost_center_id=record["cost_center_id"],
            urgency=record["urgency"],
            total=record["total"]["amount"],
            currency=record["total"]["currency"],
            categories=frozenset(categories),
            grant_funded=bool(record.get("grant_funded", False)),
            off_contract=off_contract,
            over_budget=over_budget,
        )


@dataclass(frozen=True)
class Step:
    """One approval: ``rule`` demanded it (``also``: other rules demanding the same role);
    ``sla_rule`` set its SLA (the urgency rule when that was shorter)."""

    role: str
    reason: str
    sla_minutes: int
    rule: str
    sla_rule: str
    also: tuple[str, ...] = ()


@dataclass(frozen=True)
class Route:
    """The ordered steps and the policies (id, version) that produced them."""

    steps: tuple[Step, ...]
    policies: tuple[tuple[str, int], ...]
    urgency_rule: str | None = None
    auto_approved_by: str | None = None

    @property
    def auto_approved(self) -> bool:
        return not self.steps

    def to_json(self) -> dict[str, Any]:
        return {
            "auto_approved": self.auto_approved,
            "auto_approved_by": self.auto_approved_by,
            "urgency_rule": self.urgency_rule,
            "policies": [{"policy_id": p, "version": v} for p, v in self.policies],
            "steps": [
                {
                    "role": s.role,
                    "reason": s.reason,
                    "sla_minutes": s.sla_minutes,
                    "rule": s.rule,
                    "sla_rule": s.sla_rule,
                    "also": list(s.also),
                }
                for s in self.steps
            ],
        }


def route(request: Request, policy: Policy) -> Route:
    """The approval route of ``request`` under ``policy`` (see the module docstring)."""
    if request.currency != policy.currency:
        raise BusinessRuleError(
            f"total.currency: expected {policy.currency} (the approval policy's currency), "
            f"got {request.currency}"
        )
    demands: list[tuple[str, str, int, str]] = []  # role, reason, sla, rule
    for name in CONDITIONS:
        rule = policy.conditions.get(name)
        if rule is not None and request.condition(name):
            demands += _demand(rule, request, _CONDITION_REASON[name])
    for name in CATEGORIES:
        rule = policy.categories.get(name)
        if rule is not None and name in request.categories:
            demands += _demand(rule, request, f"contains {name} items")
    if request.total >= policy.auto_approve.below:
        for band in policy.bands:
            if request.total >= band.start:
                reason = f"spend {request.total} {request.currency} >= {band.start}"
                demands.append((band.role, reason, band.sla_minutes, band.id))
    expedite = policy.urgency.get(request.urgency)
    steps = tuple(_steps(demands, expedite.id if expedite else None,
                         expedite.sla_minutes if expedite else None))  # fmt: skip
    return Route(
        steps=steps,
        policies=policy.layers,
        urgency_rule=expedite.id if expedite else None,
        auto_approved_by=None if steps else policy.auto_approve.id,
    )


def _demand(rule: Requirement, request: Request, reason: str) -> list[tuple[str, str, int, str]]:
    if request.total < rule.start:
        return []
    return [(role, reason, rule.sla_minutes, rule.id) for role in rule.roles]


def _steps(
    demands: Iterable[tuple[str, str, int, str]], urgency_rule: str | None, cap: int | None
) -> list[Step]:
    """One step per role, at its first place, with the shortest SLA demanded."""
    by_role: dict[str, Step] = {}
    for role, reason, sla, rule in demands:
        first = by_role.get(role)
        if first is None:
            by_role[role] = Step(role, reason, sla, rule, rule)
            continue
        faster = sla < first.sla_minutes
        by_role[role] = Step(
            role,
            first.reason,
            sla if faster else first.sla_minutes,
            first.rule,
            rule if faster else first.sla_rule,
            (*first.also, rule),
        )
    steps = list(by_role.values())
    if cap is None or urgency_rule is None:
        return steps
    return [
        s if s.sla_minutes <= cap else Step(s.role, s.reason, cap, s.rule, urgency_rule, s.also)
        for s in steps
    ]
