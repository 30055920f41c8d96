"""Approvers as plain data, and who acts for an approver on a day (delegation; pure, no I/O)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from supplybus.errors import BusinessRuleError


@dataclass(frozen=True)
class Delegation:
    """``delegate_id`` acts for the approver from ``from_date`` to ``to_date``, inclusive."""

    delegate_id: str
    from_date: dt.date
    to_date: dt.date

    def covers(self, day: dt.date) -> bool:
        return self.from_date <= day <= self.to_date


@dataclass(frozen=True)
class Approver:
    approver_id: str
    name: str
    entity_id: str
    roles: frozenset[str]
    limit: Decimal
    currency: str
    cost_center_ids: frozenset[str] = frozenset()
    facility_ids: frozenset[str] = frozenset()
    active: bool = True
    delegations: tuple[Delegation, ...] = ()

    def away_to(self, day: dt.date) -> str | None:
        """The delegate acting for this approver on ``day``, if any (the first that covers it)."""
        return next((d.delegate_id for d in self.delegations if d.covers(day)), None)


def approver_of_record(record: Mapping[str, Any]) -> Approver:
    """The Approver of an ApproverUpserted record (or a row shaped like one)."""
    return Approver(
        approver_id=record["approver_id"],
        name=record["name"],
        entity_id=record["owning_entity_id"],
        roles=frozenset(record["roles"]),
        limit=Decimal(record["authority_limit"]["amount"]),
        currency=record["authority_limit"]["currency"],
        cost_center_ids=frozenset(record.get("cost_center_ids") or ()),
        facility_ids=frozenset(record.get("facility_ids") or ()),
        active=bool(record.get("active", True)),
        delegations=tuple(
            Delegation(d["delegate_id"], d["from_date"], d["to_date"])
            for d in record.get("delegations") or ()
        ),
    )


def acting_approver(
    approvers: Mapping[str, Approver], approver_id: str, on_date: dt.date
) -> Approver:
    """Who acts for ``approver_id`` on ``on_date``: the approver, or the delegate of a
    delegation covering that day (from/to inclusive), followed on when the delegate is away
    too. Refused (``BusinessRuleError``): an unknown approver or delegate, or delegations
    that lead back to someone already on the chain."""
    chain = [approver_id]
    current = _known(approvers, approver_id, approver_id)
    while (delegate := current.away_to(on_date)) is not None:
        if delegate in chain:
            cycle = " -> ".join([*chain, delegate])
            raise BusinessRuleError(
                f"approver {approver_id}: delegations on {on_date} loop: {cycle}"
            )
        chain.append(delegate)
        current = _known(approvers, delegate, approver_id)
    return current


def _known(approvers: Mapping[str, Approver], wanted: str, for_id: str) -> Approver:
    found = approvers.get(wanted)
    if found is None:
        role = "approver" if wanted == for_id else f"delegate of approver {for_id}:"
        raise BusinessRuleError(f"{role} {wanted} is not in the approver master")
    return found
