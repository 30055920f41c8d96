"""approvals: the approval chain of each validated requisition, step by step.

Consumes RequisitionValidated (the route the ``requisitions`` processor stored with the
requisition) and the decisions: ApprovalGranted and ApprovalDenied (from `supplybus approve`
/ `deny` or any other system, through the outbox) and ApprovalEscalated (from the SLA sweep,
``approvals.sweep``). Per batch: the chains the batch touches and the approver master are read
(four queries), the pure state machine of ``chain`` decides, and the changes are written back
with the events emitted (ApprovalRequested for each step opened, RequisitionApproved when the
last is granted) and one audit entry per state change, refusals included.

A decision for a step that is not open yet (it arrived before its requisition, or before the
step before it was granted: redelivery, reordering across topics, a foreign producer) waits in
``approval_inbox`` and is applied when the step opens, so every order of arrival gives the same
final state. A decision that may not be applied (segregation of duties, authority limit, a
step already decided) changes nothing and is recorded as refused, with the reason.
A step nobody can decide goes to the fallback queue (status FALLBACK) and raises an alert (an
ERROR log line naming it; `supplybus approvals list --fallback`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import psycopg

from supplybus.consumers import audit
from supplybus.consumers.approvals.authority import Scope
from supplybus.consumers.approvals.chain import Chain, Outcome, StepState, steps_of_route
from supplybus.consumers.approvals.federation import PolicySet
from supplybus.consumers.approvals.published import PoliciesInForce
from supplybus.consumers.masterdata.approvers import Approver
from supplybus.consumers.masterdata.queries import approvers as read_approvers
from supplybus.consumers.runtime.processor import Event, Processor, Record
from supplybus.errors import BusinessRuleError
from supplybus.events import jsonio
from supplybus.events.envelope import caused_by

NAME = "approvals"
ENTITY_TYPE = "requisition"
DECISIONS = ("ApprovalGranted", "ApprovalDenied", "ApprovalEscalated")
log = logging.getLogger(__name__)


class _Loaded:
    """One chain, and whether the batch changed it."""

    def __init__(self, chain: Chain) -> None:
        self.chain, self.dirty, self.had_steps = chain, False, bool(chain.steps)


def approvals(policies: PolicySet | None = None) -> Processor:
    """The processor, with ``policies`` (default: the published set in force, else the
    shipped files: ``PoliciesInForce``)."""
    in_force = PoliciesInForce(policies)

    def handle(events: Sequence[Event], conn: psycopg.Connection) -> list[Record]:
        policy_set = policies if policies is not None else in_force(conn)
        ids = sorted({str(e.record["requisition_id"]) for e in events})
        chains = {rid: _Loaded(c) for rid, c in load_chains(conn, ids).items()}
        inbox = _inbox(conn, ids)
        master = read_approvers(conn)
        run = _Run(conn, chains, inbox, master, policy_set)
        for event in events:
            run.apply(event.record)
        run.save()
        return run.emitted

    return Processor(
        name=NAME,
        consumes=("RequisitionValidated", *DECISIONS),
        handle=handle,
        description="Runs each requisition's approval chain: steps, decisions, escalations.",
        on_dead_letter="hold_key",
    )


class _Run:
    """One batch: applies events to the loaded chains, collecting events, audit and inbox."""

    def __init__(
        self,
        conn: psycopg.Connection,
        chains: dict[str, _Loaded],
        inbox: dict[tuple[str, int], list[Record]],
        master: Mapping[str, Approver],
        policies: PolicySet,
    ) -> None:
        self.conn, self.chains, self.inbox, self.master = conn, chains, inbox, master
        self.policies = policies
        self.emitted: list[Record] = []
        self.entries: list[audit.AuditEntry] = []
        self.parked: list[Record] = []
        self.unparked: list[str] = []

    def apply(self, record: Record) -> None:
        kind, rid = record["envelope"]["event_type"], str(record["requisition_id"])
        loaded = self.chains.get(rid)
        if kind == "RequisitionValidated":
            self._start(record, loaded)
            return
        chain = loaded.chain if loaded is not None else None
        step = chain.step_of(int(record["step"])) if chain is not None else None
        early = chain is None or chain.status == "VALIDATED"
        waiting = (
            chain is not None
            and chain.status == "PENDING_APPROVAL"
            and (step is not None and step.status == "WAITING")
        )
        if early or waiting:
            self.inbox.setdefault((rid, int(record["step"])), []).append(record)
            self.parked.append(record)
            return
        assert loaded is not None
        self._decide(loaded, record)

    def _start(self, record: Record, loaded: _Loaded | None) -> None:
        rid = str(record["requisition_id"])
        if loaded is None:
            raise BusinessRuleError(
                f"requisition {rid} is not known to supplybus (RequisitionValidated without "
                "its RequisitionSubmitted having been validated here)"
            )
        chain = loaded.chain
        if loaded.had_steps or chain.status != "VALIDATED":
            return  # started already (a re-validation or a replay): nothing changes
        policy = self.policies.effective(chain.scope.entity_id, chain.scope.facility_id)
        steps = steps_of_route(chain.route, chain.total, policy.bands)
        at = record["envelope"]["occurred_at"]
        self._record(loaded, record, chain.start(steps, self.master, at))

    def _decide(self, loaded: _Loaded, record: Record) -> None:
        chain, env = loaded.chain, record["envelope"]
        at, step = env["occurred_at"], int(record["step"])
        kind = env["event_type"]
        if kind == "ApprovalEscalated":
            outcomes = chain.escalate(step, str(record["to_role"]), self.master, at)
        else:
            outcomes = chain.decide(
                step, str(record["approver_id"]), kind == "ApprovalGranted", self.master, at,
                on_behalf_of=record.get("on_behalf_of"),
                comment=record.get("comment") if kind == "ApprovalGranted" else record["reason"],
            )  # fmt: skip
        self._record(loaded, record, outcomes)

    def _record(self, loaded: _Loaded, cause: Record, outcomes: Sequence[Outcome]) -> None:
        """Events, audit entries and inbox follow-ups of ``outcomes``."""
        chain, env = loaded.chain, cause["envelope"]
        loaded.dirty = True
        rid = chain.requisition_id
        versions = ",".join(f"{p['policy_id']}@{p['version']}" for p in
                            chain.route.get("policies", ()))  # fmt: skip
        for outcome in outcomes:
            step = chain.step_of(outcome.step)
            rules = [step.rule_id] if step is not None else _route_rules(chain.route)
            actor = NAME
            detail: dict[str, str] = {"step": str(outcome.step)}
            if outcome.decider is not None:
                actor = outcome.decider.approver.approver_id
                if outcome.decider.on_behalf_of:
                    detail["on_behalf_of"] = outcome.decider.on_behalf_of
            if outcome.kind == "refused":
                actor = str(cause.get("approver_id") or env["actor"])
                detail["refused"] = env["event_type"]
            if outcome.kind == "fallback":
                log.error("approval fallback: requisition %s: %s", rid, outcome.why)
            if outcome.kind == "requested" and step is not None:
                self.emitted.append(self._requested(cause, chain, step))
            if outcome.kind == "approved":
                self.emitted.append(self._approved(cause, chain))
            self.entries.append(
                audit.from_envelope(
                    env, entity_type=ENTITY_TYPE, entity_id=rid, action=outcome.kind,
                    actor=actor, reason=outcome.why, rule_ids=rules, rule_version=versions,
                    detail=detail,
                )
            )  # fmt: skip
            if outcome.kind == "requested" and step is not None:
                self._follow_inbox(loaded, rid, step.step)
        if chain.status in ("APPROVED", "DENIED"):  # no step opens again: refuse what waits
            for key in sorted(k for k in self.inbox if k[0] == rid):
                self._follow_inbox(loaded, rid, key[1])

    def _follow_inbox(self, loaded: _Loaded, rid: str, step: int) -> None:
        """Decisions that waited for ``step`` to open, applied in arrival order."""
        waiting = self.inbox.pop((rid, step), [])
        for record in waiting:
            self.unparked.append(str(record["envelope"]["event_id"]))
            self._decide(loaded, record)

    def _requested(self, cause: Record, chain: Chain, step: StepState) -> Record:
        able = chain.candidates(step, self.master, step.requested_at.date())  # type: ignore[union-attr]
        people = sorted({d.approver.approver_id for d in able})
        return {
            "envelope": caused_by(cause["envelope"], "ApprovalRequested", emitter=NAME,
                                  discriminator=f"{chain.requisition_id}/{step.step}"),
            "requisition_id": chain.requisition_id,
            "step": step.step,
            "approver_id": people[0] if len(people) == 1 else None,
            "role": step.role,
            "rule_ids": [step.rule_id],
            "due_at": step.due_at,
            "amount": {"amount": chain.total, "currency": chain.scope.currency},
        }  # fmt: skip

    def _approved(self, cause: Record, chain: Chain) -> Record:
        route = chain.route
        return {
            "envelope": caused_by(cause["envelope"], "RequisitionApproved", emitter=NAME,
                                  discriminator=chain.requisition_id),
            "requisition_id": chain.requisition_id,
            "total": {"amount": chain.total, "currency": chain.scope.currency},
            "auto_approved": not chain.steps,
            "approvals": [
                {"step": s.step, "role": s.role, "approver_id": s.decided_by,
                 "on_behalf_of": s.on_behalf_of}
                for s in chain.steps
            ],
            "rule_ids": _route_rules(route),
            "policy_versions": [f"{p['policy_id']}@{p['version']}"
                                for p in route.get("policies", ())],
        }  # fmt: skip

    def save(self) -> None:
        dirty = [c for c in self.chains.values() if c.dirty]
        if dirty:
            _save(self.conn, dirty)
        if self.parked:
            with self.conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO approval_inbox (event_id, requisition_id, step, event_type,"
                    " record) VALUES (%s, %s, %s, %s, %s::jsonb) ON CONFLICT DO NOTHING",
                    [(str(r["envelope"]["event_id"]), str(r["requisition_id"]), int(r["step"]),
                      r["envelope"]["event_type"], jsonio.dumps(r)) for r in self.parked],
                )  # fmt: skip
        if self.unparked:
            self.conn.execute(
                "DELETE FROM approval_inbox WHERE event_id = ANY(%s::uuid[])", (self.unparked,)
            )
        audit.append(self.conn, self.entries)


def _route_rules(route: Mapping[str, Any]) -> list[str]:
    rules = [s["rule"] for s in route.get("steps", ())]
    return rules or [r for r in [route.get("auto_approved_by")] if r]


_CHAINS = (
    "SELECT requisition_id, requester_id, entity_id, facility_id, cost_center_id, currency,"
    " total, status, route FROM requisitions WHERE requisition_id = ANY(%s)"
    " ORDER BY requisition_id"
)
_STEPS = (
    "SELECT requisition_id, step, role, roles, reason, rule_id, sla_minutes, authority, status,"
    " requested_at, due_at, escalations, decided_by, on_behalf_of, decided_at, comment"
    " FROM approval_steps WHERE requisition_id = ANY(%s) ORDER BY requisition_id, step"
)


def load_chains(
    conn: psycopg.Connection, ids: Sequence[str], *, lock: bool = True
) -> dict[str, Chain]:
    """The approval chains of ``ids`` as stored (requisitions unknown are left out); ``lock``:
    their requisition rows locked for the transaction (the processor's writes)."""
    steps: dict[str, list[StepState]] = {}
    for rid, *fields in conn.execute(_STEPS, (ids,)):
        fields[2] = list(fields[2])
        steps.setdefault(rid, []).append(StepState(*fields))
    found: dict[str, Chain] = {}
    query = _CHAINS + (" FOR UPDATE" if lock else "")
    for rid, requester, entity, facility, center, currency, total, status, route in conn.execute(
        query, (list(ids),)
    ):
        scope = Scope(entity, facility, center, currency)
        found[rid] = Chain(rid, requester, scope, Decimal(total), status, steps.get(rid, []),
                           route or {})  # fmt: skip
    return found


def _inbox(conn: psycopg.Connection, ids: list[str]) -> dict[tuple[str, int], list[Record]]:
    """Decisions waiting for their step, as records (times and amounts parsed back)."""
    found: dict[tuple[str, int], list[Record]] = {}
    for rid, step, record in conn.execute(
        "SELECT requisition_id, step, record FROM approval_inbox WHERE requisition_id = ANY(%s)"
        " ORDER BY seq",
        (ids,),
    ):
        record["envelope"]["occurred_at"] = dt.datetime.fromisoformat(
            record["envelope"]["occurred_at"]
        )
        found.setdefault((rid, step), []).append(record)
    return found


_UPSERT_STEP = """
INSERT INTO approval_steps (requisition_id, step, role, roles, reason, rule_id, sla_minutes,
    authority, status, requested_at, due_at, escalations, decided_by, on_behalf_of, decided_at,
    comment)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (requisition_id, step) DO UPDATE SET roles = EXCLUDED.roles,
    status = EXCLUDED.status, requested_at = EXCLUDED.requested_at, due_at = EXCLUDED.due_at,
    escalations = EXCLUDED.escalations, decided_by = EXCLUDED.decided_by,
    on_behalf_of = EXCLUDED.on_behalf_of, decided_at = EXCLUDED.decided_at,
    comment = EXCLUDED.comment
"""


def _save(conn: psycopg.Connection, dirty: list[_Loaded]) -> None:
    rows = [
        (c.chain.requisition_id, s.step, s.role, s.roles, s.reason, s.rule_id, s.sla_minutes,
         s.authority, s.status, s.requested_at, s.due_at, s.escalations, s.decided_by,
         s.on_behalf_of, s.decided_at, s.comment)
        for c in dirty for s in c.chain.steps
    ]  # fmt: skip
    with conn.cursor() as cur:
        cur.executemany(_UPSERT_STEP, rows)
        cur.executemany(
            "UPDATE requisitions SET status = %s, updated_at = now() WHERE requisition_id = %s"
            " AND status <> %s",
            [(c.chain.status, c.chain.requisition_id, c.chain.status) for c in dirty],
        )
