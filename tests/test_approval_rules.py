"""The approval chain's pure rules (consumers/approvals/authority.py, chain.py): who may decide
a step (scope, delegation, authority limit, segregation of duties), what a step needs, where an
overdue step escalates, and the chain's state machine; unit tests and hypothesis properties
over the sample approvers and the shipped policy set."""

from __future__ import annotations

import copy
import datetime as dt
from collections import Counter
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from supplybus.consumers.approvals.authority import (
    FALLBACK,
    Scope,
    escalation_role,
    refusal,
    step_authority,
)
from supplybus.consumers.approvals.chain import (
    DENIED,
    GRANTED,
    OPEN,
    PENDING,
    WAITING,
    Chain,
    Outcome,
    steps_of_route,
)
from supplybus.consumers.approvals.federation import load_policies
from supplybus.consumers.masterdata.approvers import Approver, Delegation, approver_of_record
from tests.requisition_data import SAMPLE, TODAY

POLICY = load_policies().effective("ENT-EAST", "FAC-E1")
BANDS = POLICY.bands  # MANAGER 2,500, DIRECTOR 10,000, VP 100,000, CFO 250,000
LADDER = [b.role for b in sorted(BANDS, key=lambda b: b.start)]
#: Every role the shipped policies can put on a route, with a rule demanding it.
RULE_OF_ROLE = {
    **{r: rule.id for rule in (*POLICY.categories.values(), *POLICY.conditions.values())
       for r in rule.roles},
    **{b.role: b.id for b in BANDS},
}  # fmt: skip
ROLES = sorted(RULE_OF_ROLE)
BOOK = {
    a.approver_id: a
    for a in (
        approver_of_record(r) for r in SAMPLE if r["envelope"]["event_type"] == "ApproverUpserted"
    )
}
SCOPE = Scope("ENT-EAST", "FAC-E1", "CC-E1-SURG", "USD")
AT = dt.datetime.combine(TODAY, dt.time(9), tzinfo=dt.UTC)


def _refusal(
    approver_id: str,
    roles: tuple[str, ...] = ("MANAGER",),
    *,
    book: dict[str, Approver] = BOOK,
    scope: Scope = SCOPE,
    day: dt.date = TODAY,
    requester_id: str = "U-1",
    decided: frozenset[str] = frozenset(),
    authority: Decimal = Decimal(3000),
    on_behalf_of: str | None = None,
) -> tuple[str | None, str | None, str | None]:
    """(approver, on behalf of, reason refused) of ``refusal``."""
    decider, why = refusal(
        book, approver_id, roles, scope, day, requester_id=requester_id, decided=decided,
        authority=authority, on_behalf_of=on_behalf_of,
    )  # fmt: skip
    if decider is None:
        return None, None, why
    return decider.approver.approver_id, decider.on_behalf_of, why


# --- refusal: segregation of duties -------------------------------------------------------


def test_an_approver_in_role_and_scope_within_their_limit_decides() -> None:
    assert _refusal("APR-EAST-MGR") == ("APR-EAST-MGR", None, None)


def test_the_requester_never_approves_their_own_requisition() -> None:
    _, _, why = _refusal("APR-EAST-MGR", requester_id="APR-EAST-MGR")
    assert why == "segregation of duties: APR-EAST-MGR requested it and may not approve it"


def test_nobody_decides_two_steps_of_one_chain() -> None:
    _, _, why = _refusal("APR-EAST-MGR", decided=frozenset({"APR-EAST-MGR"}))
    assert why == "segregation of duties: APR-EAST-MGR already decided a step of this chain"


def test_a_delegate_may_not_act_for_someone_who_already_decided() -> None:
    """APR-EAST-DIR is away (the sample's delegation to APR-EAST-DIR2 covers today)."""
    _, _, why = _refusal(
        "APR-EAST-DIR2", ("DIRECTOR",), decided=frozenset({"APR-EAST-DIR"}),
        on_behalf_of="APR-EAST-DIR",
    )  # fmt: skip
    assert why == "segregation of duties: APR-EAST-DIR already decided a step of this chain"
    # in their own right (the delegate holds DIRECTOR too) they still may
    assert _refusal("APR-EAST-DIR2", ("DIRECTOR",), decided=frozenset({"APR-EAST-DIR"}))[:2] == (
        "APR-EAST-DIR2",
        None,
    )


def test_a_delegate_who_decided_may_not_act_for_another_on_the_same_chain() -> None:
    _, _, why = _refusal(
        "APR-EAST-DIR2", ("DIRECTOR",), decided=frozenset({"APR-EAST-DIR2"}),
        on_behalf_of="APR-EAST-DIR",
    )  # fmt: skip
    assert why == "segregation of duties: APR-EAST-DIR2 already decided a step of this chain"


def test_a_delegate_may_not_approve_for_the_requester() -> None:
    _, _, why = _refusal(
        "APR-EAST-DIR2", ("DIRECTOR",), requester_id="APR-EAST-DIR", on_behalf_of="APR-EAST-DIR"
    )
    assert why == "segregation of duties: APR-EAST-DIR requested it and may not approve it"


# --- refusal: authority, role and scope ---------------------------------------------------


def test_beyond_the_authority_limit_is_refused_with_the_numbers() -> None:
    _, _, why = _refusal("APR-EAST-MGR", authority=Decimal("25000.0001"))
    assert why == (
        "authority limit: APR-EAST-MGR may approve up to 25000.0000 USD; "
        "this step needs 25000.0001 USD"
    )
    assert _refusal("APR-EAST-MGR", authority=Decimal(25000))[2] is None  # the limit itself


def test_a_limit_in_another_currency_is_refused() -> None:
    _, _, why = _refusal("APR-EAST-MGR", scope=replace(SCOPE, currency="EUR"))
    assert why == "authority limit of APR-EAST-MGR is in USD, the requisition in EUR"


def test_an_approver_without_the_role_is_refused_naming_it() -> None:
    _, _, why = _refusal("APR-EAST-MGR", ("DIRECTOR", "VP"))
    assert why is not None
    assert why.startswith("approver APR-EAST-MGR does not hold role DIRECTOR or VP for FAC-E1")


def test_an_unknown_approver_is_refused() -> None:
    assert _refusal("APR-NOBODY")[2] == "approver APR-NOBODY is not in the approver master"


MGR = BOOK["APR-EAST-MGR"]


@pytest.mark.parametrize(
    ("change", "scope"),
    [
        ({"entity_id": "ENT-WEST"}, SCOPE),
        ({"facility_ids": frozenset({"FAC-E2"})}, SCOPE),
        ({"cost_center_ids": frozenset({"CC-E1-ICU"})}, SCOPE),
        ({"active": False}, SCOPE),
        ({}, replace(SCOPE, entity_id="ENT-WEST")),
    ],
    ids=["other entity", "other facility", "other cost center", "inactive", "scope elsewhere"],
)
def test_out_of_scope_or_inactive_is_refused(change: dict[str, Any], scope: Scope) -> None:
    book = {**BOOK, "APR-EAST-MGR": replace(MGR, **change)}
    decider, _, why = _refusal("APR-EAST-MGR", book=book, scope=scope)
    assert decider is None and why is not None and "does not hold role MANAGER" in why


def test_limited_to_the_facility_and_cost_center_of_the_step_decides() -> None:
    limited = replace(
        MGR, facility_ids=frozenset({"FAC-E1"}), cost_center_ids=frozenset({"CC-E1-SURG"})
    )
    assert _refusal("APR-EAST-MGR", book={**BOOK, "APR-EAST-MGR": limited})[2] is None


# --- refusal: delegation --------------------------------------------------------------------

START, END = TODAY + dt.timedelta(days=3), TODAY + dt.timedelta(days=5)
AWAY_BOOK = {
    **BOOK,
    "APR-EAST-MGR": replace(MGR, delegations=(Delegation("DELEGATE", START, END),)),
    "DELEGATE": Approver(
        "DELEGATE", "Deputy", "ENT-EAST", frozenset(), Decimal(0), "USD"
    ),  # no role, no authority of their own
}


@pytest.mark.parametrize("day", [START, START + dt.timedelta(days=1), END], ids=str)
def test_a_delegation_covers_from_and_to_inclusive(day: dt.date) -> None:
    """The delegate decides on behalf of the approver, with the approver's role and limit."""
    assert _refusal("DELEGATE", book=AWAY_BOOK, day=day, authority=Decimal(20000)) == (
        "DELEGATE",
        "APR-EAST-MGR",
        None,
    )


@pytest.mark.parametrize("day", [START - dt.timedelta(days=1), END + dt.timedelta(days=1)], ids=str)
def test_outside_the_delegation_the_delegate_has_no_say(day: dt.date) -> None:
    _, _, why = _refusal("DELEGATE", book=AWAY_BOOK, day=day)
    assert why is not None and "does not hold role MANAGER" in why and "nor acts for" in why


def test_the_principal_may_still_act_while_away() -> None:
    assert _refusal("APR-EAST-MGR", book=AWAY_BOOK, day=START) == ("APR-EAST-MGR", None, None)


def test_a_delegate_is_held_to_the_principals_limit() -> None:
    _, _, why = _refusal("DELEGATE", book=AWAY_BOOK, day=START, authority=Decimal(30000))
    assert why is not None and why.startswith("authority limit: APR-EAST-MGR may approve up to")


def test_on_behalf_of_someone_they_do_not_act_for_is_refused() -> None:
    _, _, why = _refusal("APR-EAST-VP", ("DIRECTOR",), on_behalf_of="APR-EAST-DIR")
    assert why is not None and "APR-EAST-VP on behalf of APR-EAST-DIR does not hold" in why


# --- step_authority -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "total", "band_step", "needed"),
    [
        ("MANAGER", "30000", True, "10000.00"),  # capped at the DIRECTOR band's start
        ("MANAGER", "8000", True, "8000"),  # below the next band: the total
        ("MANAGER", "10000", True, "10000.00"),  # at the next band's start
        ("DIRECTOR", "30000", True, "30000"),  # the VP band starts at 100,000
        ("DIRECTOR", "180000", True, "100000.00"),
        ("CFO", "900000", True, "900000"),  # the top rung vouches for everything
        ("MANAGER", "30000", False, "30000"),  # not a band step: the whole total
        ("SOURCING", "30000", False, "30000"),
    ],
)
def test_step_authority(role: str, total: str, band_step: bool, needed: str) -> None:
    assert step_authority(role, Decimal(total), BANDS, band_step) == Decimal(needed)


totals = st.decimals(min_value=0, max_value=2_000_000, places=2, allow_nan=False)


@settings(max_examples=200)
@given(st.sampled_from(ROLES), totals, totals, st.booleans())
def test_step_authority_never_exceeds_the_total_and_grows_with_it(
    role: str, a: Decimal, b: Decimal, band_step: bool
) -> None:
    low, high = sorted((a, b))
    needed_low = step_authority(role, low, BANDS, band_step)
    needed_high = step_authority(role, high, BANDS, band_step)
    assert needed_low <= low and needed_high <= high
    assert needed_low <= needed_high, "a larger total never needs less authority"


def test_steps_of_route_give_band_steps_their_rung_and_others_the_total() -> None:
    route = _route(["SOURCING", "MANAGER", "DIRECTOR"])
    steps = steps_of_route(route, Decimal(30000), BANDS)
    assert [(s.step, s.role, s.authority, s.status) for s in steps] == [
        (1, "SOURCING", Decimal(30000), WAITING),
        (2, "MANAGER", Decimal(10000), WAITING),
        (3, "DIRECTOR", Decimal(30000), WAITING),
    ]


# --- escalation_role ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("on_route", "to"),
    [
        (["MANAGER"], "DIRECTOR"),
        (["MANAGER", "DIRECTOR"], "VP"),
        (["DIRECTOR", "MANAGER"], "VP"),  # the highest on the route counts, not the last
        (["SOURCING"], "MANAGER"),  # no band role on the route: the lowest rung
        ([], "MANAGER"),
        (["VP"], "CFO"),
        (["CFO"], FALLBACK),  # above the top of the ladder: the fallback queue
        (["SOURCING", "CFO", "MANAGER"], FALLBACK),
    ],
)
def test_escalation_role(on_route: list[str], to: str) -> None:
    assert escalation_role(on_route, BANDS) == to


@given(st.lists(st.sampled_from(ROLES), max_size=6))
def test_escalation_goes_strictly_above_every_band_role_on_the_route(roles: list[str]) -> None:
    to = escalation_role(roles, BANDS)
    on_ladder = [LADDER.index(r) for r in roles if r in LADDER]
    if to == FALLBACK:
        assert max(on_ladder) == len(LADDER) - 1, "fallback only above the top of the ladder"
    else:
        assert to in LADDER and all(LADDER.index(to) > i for i in on_ladder)
        assert LADDER.index(to) == max(on_ladder, default=-1) + 1, "one rung up, not more"


# --- the chain ----------------------------------------------------------------------------


def _route(roles: list[str], sla_minutes: int = 60) -> dict[str, Any]:
    return {
        "steps": [
            {"role": r, "reason": f"{r} demanded", "sla_minutes": sla_minutes,
             "rule": RULE_OF_ROLE.get(r, f"RULE-{r}"), "also": []}
            for r in roles
        ]
    }  # fmt: skip


def _chain(
    roles: list[str],
    total: Decimal = Decimal(30000),
    requester: str = "U-1",
    book: dict[str, Approver] = BOOK,
) -> tuple[Chain, list[Outcome]]:
    route = _route(roles)
    chain = Chain("REQ-1", requester, SCOPE, total, "VALIDATED", route=route)
    return chain, chain.start(steps_of_route(route, total, BANDS), book, AT)


def _kinds(outcomes: list[Outcome]) -> list[tuple[str, int]]:
    return [(o.kind, o.step) for o in outcomes]


def test_a_chain_without_steps_is_approved_at_once() -> None:
    chain, outcomes = _chain([])
    assert _kinds(outcomes) == [("approved", 0)] and chain.status == "APPROVED"
    assert chain.open_step() is None


def test_decisions_in_order_grant_each_step_then_approve() -> None:
    chain, outcomes = _chain(["MANAGER", "DIRECTOR"])
    assert _kinds(outcomes) == [("requested", 1)] and chain.status == "PENDING_APPROVAL"
    first = chain.steps[0]
    assert first.status == PENDING and first.requested_at == AT
    assert first.due_at == AT + dt.timedelta(minutes=60)
    later = AT + dt.timedelta(hours=1)
    assert _kinds(chain.decide(1, "APR-EAST-MGR", True, BOOK, later)) == [
        ("granted", 1), ("requested", 2),
    ]  # fmt: skip
    assert chain.steps[1].requested_at == later
    end = chain.decide(2, "APR-EAST-DIR2", True, BOOK, later, on_behalf_of="APR-EAST-DIR")
    assert _kinds(end) == [("granted", 2), ("approved", 0)] and chain.status == "APPROVED"
    assert [(s.status, s.decided_by, s.on_behalf_of) for s in chain.steps] == [
        (GRANTED, "APR-EAST-MGR", None), (GRANTED, "APR-EAST-DIR2", "APR-EAST-DIR"),
    ]  # fmt: skip


def test_a_denial_ends_the_chain() -> None:
    chain, _ = _chain(["MANAGER", "DIRECTOR"])
    assert _kinds(chain.decide(1, "APR-EAST-MGR", False, BOOK, AT)) == [("denied", 1)]
    assert chain.status == "DENIED" and chain.steps[1].status == WAITING
    after = chain.decide(2, "APR-EAST-DIR", True, BOOK, AT)
    assert _kinds(after) == [("refused", 2)] and "the requisition is denied" in after[0].why


def test_a_decision_on_a_step_not_open_is_refused_and_changes_nothing() -> None:
    chain, _ = _chain(["MANAGER", "DIRECTOR"])
    before = copy.deepcopy(chain)
    out = chain.decide(2, "APR-EAST-DIR", True, BOOK, AT)
    assert _kinds(out) == [("refused", 2)] and "step 2 is waiting" in out[0].why
    assert _kinds(chain.decide(7, "APR-EAST-DIR", True, BOOK, AT)) == [("refused", 7)]
    assert chain == before


def test_a_step_nobody_can_decide_goes_to_the_fallback_queue_and_is_not_lost() -> None:
    book = {k: v for k, v in BOOK.items() if "GRANTS_OFFICE" not in v.roles}
    chain, outcomes = _chain(["GRANTS_OFFICE"], book=book)
    assert _kinds(outcomes) == [("requested", 1), ("fallback", 1)]
    assert "no approver with role GRANTS_OFFICE can decide step 1" in outcomes[1].why
    step = chain.open_step()
    assert step is not None and step.step == 1 and step.status == FALLBACK
    # nobody within the limit: the manager's rung at 30,000 needs 10,000; a limit of 5,000
    poor = {**BOOK, "APR-EAST-MGR": replace(MGR, limit=Decimal(5000))}
    chain, outcomes = _chain(["MANAGER"], book=poor)
    assert _kinds(outcomes)[-1] == ("fallback", 1) and chain.open_step() is not None


def test_the_requester_being_the_only_approver_is_a_fallback() -> None:
    _, outcomes = _chain(["MANAGER"], requester="APR-EAST-MGR")
    assert _kinds(outcomes) == [("requested", 1), ("fallback", 1)]


def test_escalate_adds_the_role_and_moves_the_due_time_by_the_sla() -> None:
    chain, _ = _chain(["MANAGER", "DIRECTOR"])
    overdue = AT + dt.timedelta(hours=5)
    out = chain.escalate(1, "DIRECTOR", BOOK, overdue)
    assert _kinds(out) == [("escalated", 1)]
    step = chain.steps[0]
    assert step.roles == ["MANAGER", "DIRECTOR"] and step.escalations == 1
    assert step.due_at == overdue + dt.timedelta(minutes=60) and step.status == PENDING
    # the director may now decide the manager's step (within their limit)
    assert _kinds(chain.decide(1, "APR-EAST-VP", True, BOOK, overdue))[0] == ("refused", 1)
    assert _kinds(chain.decide(1, "APR-EAST-DIR", True, BOOK, overdue))[0] == ("granted", 1)


def test_escalating_a_fallback_step_to_a_role_someone_holds_makes_it_pending() -> None:
    book = {k: v for k, v in BOOK.items() if "GRANTS_OFFICE" not in v.roles}
    chain, _ = _chain(["GRANTS_OFFICE"], book=book)
    out = chain.escalate(1, "CFO", book, AT + dt.timedelta(hours=2))
    assert _kinds(out) == [("escalated", 1)] and chain.steps[0].status == PENDING


def test_escalate_to_fallback_keeps_the_roles_and_a_closed_step_is_not_escalated() -> None:
    chain, _ = _chain(["MANAGER"])
    chain.escalate(1, FALLBACK, BOOK, AT)
    assert chain.steps[0].roles == ["MANAGER"] and chain.steps[0].escalations == 1
    chain.decide(1, "APR-EAST-MGR", True, BOOK, AT)
    assert _kinds(chain.escalate(1, "DIRECTOR", BOOK, AT)) == [("refused", 1)]


# --- the chain's invariants under any sequence of decisions ---------------------------------

EAST = sorted(a for a in BOOK if a.startswith("APR-EAST-"))
STRANGERS = ["P0", "P1", "P2", "P3"]
PEOPLE = [*EAST, *STRANGERS]


@st.composite
def books(draw: st.DrawFn) -> dict[str, Approver]:
    """The sample approvers of ENT-EAST, some changed, and a few strangers with random roles,
    limits, scope and delegations covering the decision day or not."""
    book = {a: BOOK[a] for a in EAST}
    for aid in [*EAST, *STRANGERS]:
        if aid in book and draw(st.integers(0, 3)):
            continue  # as in the sample (three times in four)
        away = draw(st.sampled_from([None, *PEOPLE]))
        start = TODAY + dt.timedelta(days=draw(st.integers(-2, 1)))
        book[aid] = Approver(
            aid,
            aid,
            draw(st.sampled_from(["ENT-EAST", "ENT-EAST", "ENT-WEST"])),
            frozenset(draw(st.lists(st.sampled_from(ROLES), max_size=2))),
            Decimal(draw(st.sampled_from([1000, 10_000, 100_000, 1_000_000]))),
            "USD",
            active=draw(st.booleans()) or draw(st.booleans()),
            delegations=() if away is None else (Delegation(away, start, start + dt.timedelta(1)),),
        )
    return book


#: A decision: on a step (None: the open one), by one of those able to decide it (an index)
#: or by anyone, for someone or not; or an escalation. Mostly decisions a user could make.
actions = st.lists(
    st.one_of(
        st.tuples(
            st.just("decide"), st.none() | st.integers(1, 4),
            st.integers(0, 3) | st.sampled_from(PEOPLE), st.booleans() | st.just(True),
            st.sampled_from([None, None, *PEOPLE]),
        ),
        st.tuples(
            st.just("escalate"), st.none() | st.integers(1, 4),
            st.sampled_from([*LADDER, FALLBACK]),
        ),
    ),
    max_size=10,
)  # fmt: skip


def _check_invariants(chain: Chain) -> None:
    decided = [s for s in chain.steps if s.status in (GRANTED, DENIED)]
    people = Counter(p for s in decided for p in {s.decided_by, s.on_behalf_of} if p)
    assert all(n == 1 for n in people.values()), f"someone decided twice: {people}"
    assert chain.requester_id not in people, "the requester decided a step"
    statuses = [s.status for s in chain.steps]
    assert (chain.status == "APPROVED") == (statuses.count(GRANTED) == len(statuses))
    assert (chain.status == "DENIED") == (DENIED in statuses) and statuses.count(DENIED) <= 1
    if chain.status == "PENDING_APPROVAL":
        step = chain.open_step()
        assert step is not None, "a pending chain without an open step is lost"
        n = step.step - 1
        assert [s for s in statuses if s in OPEN] == [step.status]
        assert statuses[:n] == [GRANTED] * n and all(s == WAITING for s in statuses[n + 1 :])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(ROLES), min_size=1, max_size=4, unique=True),
    totals,
    st.sampled_from(["U-1", *PEOPLE]),
    books(),
    actions,
)
def test_any_sequence_of_decisions_keeps_the_chain_consistent(
    roles: list[str], total: Decimal, requester: str, book: dict[str, Approver], todo: list[Any]
) -> None:
    """At most one decision per person per chain (delegation included), never the
    requester's; APPROVED only when every step is GRANTED; a pending chain always has exactly
    one open step; once DENIED or APPROVED nothing but 'refused', and nothing changes."""
    chain, outcomes = _chain(roles, total, requester, book)
    _check_invariants(chain)
    at = AT
    for action in todo:
        at += dt.timedelta(minutes=30)
        closed = chain.status in ("DENIED", "APPROVED")
        before = copy.deepcopy(chain)
        open_step = chain.open_step()
        step = action[1] or (open_step.step if open_step else 1)
        if action[0] == "decide":
            _, _, who, granted, for_whom = action
            able = chain.candidates(open_step, book, at.date()) if open_step else []
            if isinstance(who, int):
                pick = able[who % len(able)] if able else None
                who = pick.approver.approver_id if pick else PEOPLE[who]
                for_whom = pick.on_behalf_of if pick else for_whom
            outcomes = chain.decide(step, who, granted, book, at, on_behalf_of=for_whom)
            first = outcomes[0]
            assert first.kind in ("granted", "denied", "refused")
            if first.kind != "refused":
                decided = chain.step_of(step)
                assert first.decider is not None and decided is not None
                assert first.decider.approver.approver_id == who == decided.decided_by
                assert first.decider.principal.limit >= decided.authority
                assert first.decider.principal.roles & set(decided.roles)
        else:
            to_role = action[2]
            outcomes = chain.escalate(step, to_role, book, at)
        if closed:
            assert [o.kind for o in outcomes] == ["refused"] and chain == before
        if outcomes[0].kind == "refused":
            assert len(outcomes) == 1 and chain == before, "a refusal changed the chain"
        _check_invariants(chain)
    event(f"ends {chain.status}")
