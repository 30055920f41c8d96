"""The approval chain of one requisition as a state machine over plain data (no SQL, no Kafka).

A chain is the route's steps, decided one after the other. ``Chain.start`` opens the first
step (or approves at once: no step); ``decide`` applies a grant or a denial after checking who
decides (``authority.refusal``); ``escalate`` widens an overdue step to the next level. Each
returns the ``Outcome``s the processor turns into events and audit entries. A step opens
PENDING when someone can decide it, else FALLBACK (the fallback queue, with an alert): a
requisition is never left without a way forward.

Times come from the events (``at``), never from the clock, so a re-run decides the same.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from supplybus.consumers.approvals.authority import (
    FALLBACK,
    Decider,
    Scope,
    available,
    deciders,
    refusal,
    step_authority,
)
from supplybus.consumers.approvals.policy import Band
from supplybus.consumers.masterdata.approvers import Approver

WAITING, PENDING, GRANTED, DENIED = "WAITING", "PENDING", "GRANTED", "DENIED"
OPEN = (PENDING, FALLBACK)


@dataclass
class StepState:
    step: int
    role: str
    roles: list[str]
    reason: str
    rule_id: str
    sla_minutes: int
    authority: Decimal
    status: str = WAITING
    requested_at: dt.datetime | None = None
    due_at: dt.datetime | None = None
    escalations: int = 0
    decided_by: str | None = None
    on_behalf_of: str | None = None
    decided_at: dt.datetime | None = None
    comment: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What happened: ``kind`` is requested, fallback, granted, denied, refused, escalated or
    approved; ``step`` the step concerned (0: the chain); ``why`` one line for the trail."""

    kind: str
    step: int
    why: str = ""
    decider: Decider | None = None


@dataclass
class Chain:
    requisition_id: str
    requester_id: str
    scope: Scope
    total: Decimal
    status: str  # VALIDATED, PENDING_APPROVAL, APPROVED, DENIED (then ORDERED, CANCELLED)
    steps: list[StepState] = field(default_factory=list)
    route: Mapping[str, Any] = field(default_factory=dict)  # Route.to_json() as stored

    def decided(self) -> set[str]:
        """Everyone who decided a step, or was represented by a delegate on one."""
        people: set[str] = set()
        for s in self.steps:
            if s.status in (GRANTED, DENIED):
                people |= {p for p in (s.decided_by, s.on_behalf_of) if p}
        return people

    def open_step(self) -> StepState | None:
        return next((s for s in self.steps if s.status in OPEN), None)

    def step_of(self, number: int) -> StepState | None:
        return next((s for s in self.steps if s.step == number), None)

    def start(
        self, steps: Sequence[StepState], approvers: Mapping[str, Approver], at: dt.datetime
    ) -> list[Outcome]:
        """Take the route's steps and open the first (none: approved at once)."""
        self.steps = list(steps)
        if not self.steps:
            self.status = "APPROVED"
            return [Outcome("approved", 0, "auto-approved: no step demanded")]
        self.status = "PENDING_APPROVAL"
        return self._open(self.steps[0], approvers, at)

    def decide(
        self,
        step: int,
        approver_id: str,
        granted: bool,
        approvers: Mapping[str, Approver],
        at: dt.datetime,
        *,
        on_behalf_of: str | None = None,
        comment: str | None = None,
    ) -> list[Outcome]:
        """Apply a decision of ``approver_id`` on step ``step``: refused (with the reason)
        unless the step is open and they may decide it."""
        current = self.step_of(step)
        if self.status != "PENDING_APPROVAL" or current is None or current.status not in OPEN:
            state = current.status.lower() if current is not None else "not on the route"
            closed = f"step {step} is {state}; the requisition is {self.status.lower()}"
            return [Outcome("refused", step, closed)]
        decider, why = refusal(
            approvers, approver_id, current.roles, self.scope, at.date(),
            requester_id=self.requester_id, decided=self.decided(),
            authority=current.authority, on_behalf_of=on_behalf_of,
        )  # fmt: skip
        if decider is None:
            return [Outcome("refused", step, why or "not allowed")]
        current.status = GRANTED if granted else DENIED
        current.decided_by, current.on_behalf_of = approver_id, decider.on_behalf_of
        current.decided_at, current.comment = at, comment
        done = [Outcome("granted" if granted else "denied", step, comment or "", decider)]
        if not granted:
            self.status = "DENIED"
            return done
        following = next((s for s in self.steps if s.status == WAITING), None)
        if following is None:
            self.status = "APPROVED"
            return [*done, Outcome("approved", 0, f"all {len(self.steps)} step(s) granted")]
        return [*done, *self._open(following, approvers, at)]

    def escalate(
        self, step: int, to_role: str, approvers: Mapping[str, Approver], at: dt.datetime
    ) -> list[Outcome]:
        """Widen an open step to ``to_role`` (FALLBACK: the fallback queue), due again one SLA
        after ``at``."""
        current = self.step_of(step)
        if self.status != "PENDING_APPROVAL" or current is None or current.status not in OPEN:
            return [Outcome("refused", step, f"step {step} is not open; nothing to escalate")]
        current.escalations += 1
        current.due_at = at + dt.timedelta(minutes=current.sla_minutes)
        if to_role != FALLBACK and to_role not in current.roles:
            current.roles.append(to_role)
        escalated = Outcome("escalated", step, f"overdue; escalated to {to_role}")
        return [escalated, *self._settle(current, approvers, at)]

    def _open(
        self, step: StepState, approvers: Mapping[str, Approver], at: dt.datetime
    ) -> list[Outcome]:
        step.requested_at = at
        step.due_at = at + dt.timedelta(minutes=step.sla_minutes)
        return [Outcome("requested", step.step, step.reason), *self._settle(step, approvers, at)]

    def _settle(
        self, step: StepState, approvers: Mapping[str, Approver], at: dt.datetime
    ) -> list[Outcome]:
        """PENDING when someone can decide the step now, else FALLBACK with the reason."""
        able = available(
            deciders(approvers, step.roles, self.scope, at.date()),
            self.requester_id, self.decided(), step.authority, self.scope.currency,
        )  # fmt: skip
        if able:
            step.status = PENDING
            return []
        step.status = FALLBACK
        why = (
            f"no approver with role {' or '.join(step.roles)} can decide step {step.step} "
            f"({self.scope.entity_id}, {self.scope.cost_center_id}, authority "
            f"{step.authority} {self.scope.currency}): fallback queue"
        )
        return [Outcome("fallback", step.step, why)]

    def candidates(
        self, step: StepState, approvers: Mapping[str, Approver], day: dt.date
    ) -> list[Decider]:
        """Who can decide ``step`` on ``day``."""
        return available(
            deciders(approvers, step.roles, self.scope, day),
            self.requester_id, self.decided(), step.authority, self.scope.currency,
        )  # fmt: skip


def steps_of_route(
    route: Mapping[str, Any], total: Decimal, bands: Sequence[Band]
) -> list[StepState]:
    """The chain's steps from a stored route (``Route.to_json()``), each with the authority
    its decider needs (``authority.step_authority``)."""
    band_ids = {b.id for b in bands}
    steps: list[StepState] = []
    for number, raw in enumerate(route.get("steps") or (), start=1):
        rules = {raw["rule"], *raw.get("also", ())}
        steps.append(
            StepState(
                step=number,
                role=raw["role"],
                roles=[raw["role"]],
                reason=raw["reason"],
                rule_id=raw["rule"],
                sla_minutes=int(raw["sla_minutes"]),
                authority=step_authority(raw["role"], total, bands, rules <= band_ids),
            )
        )
    return steps
