"""Who may decide an approval step: roles, scope, delegation, authority limits and segregation
of duties (pure functions over plain data; no SQL, no Kafka).

- **Scope**: an approver decides for their own legal entity, and only for the facilities and
  cost centers they are limited to (none listed: the whole entity).
- **Delegation**: an approver away on the day (a delegation covering it) is represented by
  their acting delegate, who decides *on behalf of* them with their role and authority.
- **Authority**: the principal's limit (in the policy's currency) must cover the step's
  ``authority``: for a spend-band step, the part of the total that band covers (a MANAGER on
  a 30,000 ladder vouches up to the DIRECTOR band's start); for any other step, the total.
- **Segregation of duties**: the requester never decides their own requisition, and nobody
  (neither as approver nor as principal) decides two steps of one chain.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from supplybus.consumers.approvals.policy import Band
from supplybus.consumers.masterdata.approvers import Approver, acting_approver
from supplybus.errors import BusinessRuleError

#: The pseudo-role of a step that nobody can decide: the fallback queue (with an alert).
FALLBACK = "FALLBACK"


@dataclass(frozen=True)
class Scope:
    """What a step's decider must be entitled to."""

    entity_id: str
    facility_id: str | None
    cost_center_id: str
    currency: str


@dataclass(frozen=True)
class Decider:
    """``approver`` decides with ``principal``'s role and authority (themselves, or the
    approver they act for)."""

    approver: Approver
    principal: Approver

    @property
    def on_behalf_of(self) -> str | None:
        same = self.approver.approver_id == self.principal.approver_id
        return None if same else self.principal.approver_id


def in_scope(approver: Approver, scope: Scope) -> bool:
    """``approver`` is active and entitled to the scope's entity, facility and cost center."""
    return (
        approver.active
        and approver.entity_id == scope.entity_id
        and (not approver.facility_ids or scope.facility_id in approver.facility_ids)
        and (not approver.cost_center_ids or scope.cost_center_id in approver.cost_center_ids)
    )


def principals(
    approvers: Mapping[str, Approver], roles: Collection[str], scope: Scope
) -> list[Approver]:
    """Approvers holding one of ``roles`` in ``scope``, by id."""
    return sorted(
        (a for a in approvers.values() if a.roles & set(roles) and in_scope(a, scope)),
        key=lambda a: a.approver_id,
    )


def deciders(
    approvers: Mapping[str, Approver], roles: Collection[str], scope: Scope, day: dt.date
) -> list[Decider]:
    """Everyone who can act on a step with ``roles`` on ``day``: each principal, or the
    delegate acting for them (a delegation loop or a delegate unknown leaves the principal)."""
    found: list[Decider] = []
    for principal in principals(approvers, roles, scope):
        try:
            acting = acting_approver(approvers, principal.approver_id, day)
        except BusinessRuleError:
            acting = principal
        found.append(Decider(acting, principal))
        if acting is not principal:
            found.append(Decider(principal, principal))  # the principal may still act
    return found


def available(
    candidates: Iterable[Decider],
    requester_id: str,
    decided: Collection[str],
    authority: Decimal,
    currency: str,
) -> list[Decider]:
    """The candidates that segregation of duties and the authority limit leave."""
    return [
        d
        for d in candidates
        if _conflict(d, requester_id, decided) is None
        and _short(d.principal, authority, currency) is None
    ]


def refusal(
    approvers: Mapping[str, Approver],
    approver_id: str,
    roles: Collection[str],
    scope: Scope,
    day: dt.date,
    *,
    requester_id: str,
    decided: Collection[str],
    authority: Decimal,
    on_behalf_of: str | None = None,
) -> tuple[Decider | None, str | None]:
    """The decider ``approver_id`` would be on a step, or why they may not decide it (one
    line). ``decided``: everyone who decided (or was represented on) a step of the chain."""
    if approver_id not in approvers:
        return None, f"approver {approver_id} is not in the approver master"
    options = sorted(  # their own authority first, then those they act for
        (
            d
            for d in deciders(approvers, roles, scope, day)
            if d.approver.approver_id == approver_id
            and (on_behalf_of is None or d.principal.approver_id == on_behalf_of)
        ),
        key=lambda d: d.on_behalf_of is not None,
    )
    if not options:
        who = f" on behalf of {on_behalf_of}" if on_behalf_of else ""
        place = scope.facility_id or scope.entity_id
        return None, (
            f"approver {approver_id}{who} does not hold role {' or '.join(sorted(roles))} "
            f"for {place} / {scope.cost_center_id} on {day} (nor acts for anyone who does)"
        )
    reasons: list[str] = []
    for option in options:
        why = _conflict(option, requester_id, decided) or _short(
            option.principal, authority, scope.currency
        )
        if why is None:
            return option, None
        reasons.append(why)
    return None, reasons[0]


def _conflict(d: Decider, requester_id: str, decided: Collection[str]) -> str | None:
    for person in {d.approver.approver_id, d.principal.approver_id}:
        if person == requester_id:
            return f"segregation of duties: {person} requested it and may not approve it"
        if person in decided:
            return f"segregation of duties: {person} already decided a step of this chain"
    return None


def _short(principal: Approver, authority: Decimal, currency: str) -> str | None:
    if principal.currency != currency:
        return (
            f"authority limit of {principal.approver_id} is in {principal.currency}, "
            f"the requisition in {currency}"
        )
    if principal.limit < authority:
        return (
            f"authority limit: {principal.approver_id} may approve up to {principal.limit} "
            f"{currency}; this step needs {authority} {currency}"
        )
    return None


def step_authority(role: str, total: Decimal, bands: Sequence[Band], is_band_step: bool) -> Decimal:
    """The limit a step's decider needs: for a spend-band step, the total capped at the next
    band's start (they vouch for their rung); otherwise the whole total."""
    if not is_band_step:
        return total
    ladder = sorted(bands, key=lambda b: b.start)
    starts = [b.start for b in ladder]
    for i, band in enumerate(ladder):
        if band.role == role and i + 1 < len(ladder) and total >= starts[i + 1]:
            return starts[i + 1]
    return total


def escalation_role(roles_on_route: Iterable[str], bands: Sequence[Band]) -> str:
    """Where an overdue step goes: the first spend-band role above every band role on the
    route (the step's own escalations included), or ``FALLBACK`` above the top of the ladder."""
    ladder = [b.role for b in sorted(bands, key=lambda b: b.start)]
    highest = max((ladder.index(r) for r in roles_on_route if r in ladder), default=-1)
    return ladder[highest + 1] if highest + 1 < len(ladder) else FALLBACK
