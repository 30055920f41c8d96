"""The human side of approvals: what is pending, decisions, and the SLA sweep.

A decision is an event (ApprovalGranted / ApprovalDenied) written to the outbox in one
transaction and published by the relay; the ``approvals`` processor applies it. Before writing
it, ``decision`` checks it against the chain as stored now (the same pure rules the processor
applies), so a user gets the refusal at once instead of a refused entry in the trail later.
Any other front end (an API, a SaaS tool publishing the same events) shares this path.

``overdue`` is the SLA sweep: an ApprovalEscalated for each open step past its due time, to
the next level (``authority.escalation_role``). Times are passed in (``now``), never read here.
Event ids are deterministic, so a decision or a sweep repeated is applied once.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg

from supplybus.consumers.approvals.authority import FALLBACK, escalation_role
from supplybus.consumers.approvals.chain import OPEN, PENDING, Chain, StepState
from supplybus.consumers.approvals.federation import PolicySet
from supplybus.consumers.approvals.processor import load_chains
from supplybus.consumers.masterdata.queries import approvers as read_approvers
from supplybus.errors import BusinessRuleError, ConfigError
from supplybus.events.catalog import EventCatalog
from supplybus.events.envelope import deterministic_id, new_envelope
from supplybus.producers import outbox

Record = dict[str, Any]
SOURCE = "supplybus.approvals.cli"


@dataclass(frozen=True)
class Pending:
    """An open step, with who can decide it now."""

    requisition_id: str
    step: int
    role: str
    roles: tuple[str, ...]
    status: str  # PENDING or FALLBACK
    due_at: dt.datetime | None
    escalations: int
    total: Decimal
    currency: str
    entity_id: str
    cost_center_id: str
    requester_id: str
    deciders: tuple[str, ...]  # "APR-1" or "APR-2 for APR-1"

    def overdue(self, now: dt.datetime) -> bool:
        return self.due_at is not None and self.due_at < now

    def as_json(self, now: dt.datetime) -> dict[str, Any]:
        return {
            "requisition_id": self.requisition_id,
            "step": self.step,
            "role": self.role,
            "roles": list(self.roles),
            "status": self.status,
            "due_at": self.due_at.isoformat() if self.due_at else None,
            "overdue": self.overdue(now),
            "escalations": self.escalations,
            "total": str(self.total),
            "currency": self.currency,
            "entity_id": self.entity_id,
            "cost_center_id": self.cost_center_id,
            "requester_id": self.requester_id,
            "deciders": list(self.deciders),
        }


def pending(
    conn: psycopg.Connection,
    now: dt.datetime,
    *,
    approver_id: str | None = None,
    fallback_only: bool = False,
) -> list[Pending]:
    """Open steps, oldest due first; for ``approver_id``: those they can decide now."""
    statuses = [FALLBACK] if fallback_only else list(OPEN)
    ids = [
        rid
        for (rid,) in conn.execute(
            "SELECT DISTINCT requisition_id FROM approval_steps WHERE status = ANY(%s)",
            (statuses,),
        )
    ]
    master = read_approvers(conn)
    found: list[Pending] = []
    for chain in load_chains(conn, ids, lock=False).values():
        step = chain.open_step()
        if step is None or step.status not in statuses or chain.status != "PENDING_APPROVAL":
            continue
        able = chain.candidates(step, master, now.date())
        names = tuple(
            d.approver.approver_id + (f" for {d.on_behalf_of}" if d.on_behalf_of else "")
            for d in able
        )
        if approver_id is not None and all(d.approver.approver_id != approver_id for d in able):
            continue
        found.append(_pending(chain, step, names))
    far = dt.datetime.max.replace(tzinfo=dt.UTC)
    return sorted(found, key=lambda p: (p.due_at or far, p.requisition_id))


def _pending(chain: Chain, step: StepState, names: tuple[str, ...]) -> Pending:
    s = chain.scope
    return Pending(
        chain.requisition_id, step.step, step.role, tuple(step.roles), step.status, step.due_at,
        step.escalations, chain.total, s.currency, s.entity_id, s.cost_center_id,
        chain.requester_id, names,
    )  # fmt: skip


def decision(
    conn: psycopg.Connection,
    requisition_id: str,
    approver_id: str,
    *,
    granted: bool,
    now: dt.datetime,
    text: str | None = None,
    on_behalf_of: str | None = None,
) -> Record:
    """The ApprovalGranted (or, ``granted`` false, ApprovalDenied with ``text`` as the reason)
    of ``approver_id`` on the requisition's open step; BusinessRuleError with the one-line
    reason when the processor would refuse it."""
    if not granted and not (text or "").strip():
        raise ConfigError("--reason: a denial needs a reason")
    chains = load_chains(conn, [requisition_id], lock=False)
    chain = chains.get(requisition_id)
    if chain is None:
        raise BusinessRuleError(f"requisition {requisition_id} is not known")
    step = chain.open_step()
    if step is None or chain.status != "PENDING_APPROVAL":
        raise BusinessRuleError(
            f"requisition {requisition_id} has no step waiting for a decision "
            f"(it is {chain.status.lower().replace('_', ' ')})"
        )
    trial = copy.deepcopy(chain)
    outcomes = trial.decide(
        step.step, approver_id, granted, read_approvers(conn), now, on_behalf_of=on_behalf_of
    )
    if outcomes[0].kind == "refused":
        raise BusinessRuleError(f"requisition {requisition_id} step {step.step}: {outcomes[0].why}")
    decider = outcomes[0].decider
    kind = "ApprovalGranted" if granted else "ApprovalDenied"
    record: Record = {
        "envelope": _envelope(conn, chain, kind, approver_id, now, f"{step.step}/{approver_id}"),
        "requisition_id": requisition_id,
        "step": step.step,
        "approver_id": approver_id,
        "rule_ids": [step.rule_id],
    }
    if granted:
        record["on_behalf_of"] = decider.on_behalf_of if decider else None
        record["comment"] = text
    else:
        record["reason"] = str(text)
    return record


def overdue(conn: psycopg.Connection, policies: PolicySet, now: dt.datetime) -> list[Record]:
    """An ApprovalEscalated for every PENDING step due before ``now``."""
    ids = [
        rid
        for (rid,) in conn.execute(
            "SELECT DISTINCT requisition_id FROM approval_steps WHERE status = %s AND due_at < %s",
            (PENDING, now),
        )
    ]
    found: list[Record] = []
    for chain in load_chains(conn, ids, lock=False).values():
        step = chain.open_step()
        if step is None or step.status != PENDING or step.due_at is None or step.due_at >= now:
            continue
        s = chain.scope
        bands = policies.effective(s.entity_id, s.facility_id).bands
        on_route = [r for st in chain.steps for r in st.roles]
        target = escalation_role(on_route, bands)
        level = step.escalations + 1
        found.append({
            "envelope": _envelope(conn, chain, "ApprovalEscalated", "supplybus.sla", now,
                                  f"{step.step}/{level}"),
            "requisition_id": chain.requisition_id,
            "step": step.step,
            "from_approver_id": None,
            "to_approver_id": None,
            "to_role": target,
            "reason": f"step {step.step} ({'/'.join(step.roles)}) due {step.due_at.isoformat()} "
                      f"is overdue at {now.isoformat(timespec='seconds')}",
            "rule_ids": [step.rule_id],
        })  # fmt: skip
    return found


def queue(conn: psycopg.Connection, catalog: EventCatalog, records: Sequence[Record]) -> None:
    """Validate and write ``records`` to the outbox (the caller commits; the relay publishes)."""
    outbox.append(conn, SOURCE, [catalog.prepare(r) for r in records])


def _envelope(
    conn: psycopg.Connection, chain: Chain, kind: str, actor: str, now: dt.datetime, part: str
) -> Record:
    row = conn.execute(
        "SELECT correlation_id, priority, event_id::text FROM requisitions"
        " WHERE requisition_id = %s",
        (chain.requisition_id,),
    ).fetchone()
    if row is None:
        raise BusinessRuleError(f"requisition {chain.requisition_id} is not known")
    correlation, priority, cause = row
    return new_envelope(
        kind,
        source_system=SOURCE,
        entity_id=chain.scope.entity_id,
        facility_id=chain.scope.facility_id,
        actor=actor,
        correlation_id=correlation,
        causation_id=cause,
        priority=priority,
        occurred_at=now,
        event_id=deterministic_id(chain.requisition_id, kind, part),
    )
