"""Properties of the federated policy: for any request, a stricter local override never yields a
looser route than the policy it tightens; loosening any one bound is refused; routing is
deterministic and every step names its rule."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from supplybus.consumers.approvals.federation import Policy, PolicySet
from supplybus.consumers.approvals.fields import duration_text
from supplybus.consumers.approvals.policy import CATEGORIES, CONDITIONS, URGENCIES
from supplybus.consumers.approvals.routing import Request, Route, route
from supplybus.errors import ConfigError

ROLES = ("MANAGER", "DIRECTOR", "VP", "CFO", "PHARMACY", "SOURCING", "FINANCE", "GRANTS_OFFICE")
SLAS = (30, 60, 120, 720, 1440, 2880, 7200)
amounts = st.integers(min_value=0, max_value=300_000).map(lambda c: Decimal(c) / 2)
slas = st.sampled_from(SLAS)


def at_most(draw: st.DrawFn, bound: Decimal) -> Decimal:
    return draw(st.integers(min_value=0, max_value=int(bound * 2))) / Decimal(2)


def shorter(draw: st.DrawFn, bound: int) -> int:
    return draw(st.sampled_from([s for s in SLAS if s <= bound]))


class Ids:
    def __init__(self, prefix: str) -> None:
        self.prefix, self.n = prefix, 0

    def __call__(self) -> str:
        self.n += 1
        return f"{self.prefix}-{self.n}"


@st.composite
def enterprise_docs(draw: st.DrawFn) -> dict[str, Any]:
    rid = Ids("ENT")
    below = draw(amounts)
    roles = draw(st.lists(st.sampled_from(ROLES[:4]), min_size=1, max_size=4, unique=True))
    starts = [below] + [below + draw(amounts) for _ in roles[1:]]
    doc: dict[str, Any] = {
        "policy_id": "enterprise", "scope": "ENTERPRISE", "version": 1, "currency": "USD",
        "default_sla": duration_text(draw(slas)),
        "auto_approve": {"id": rid(), "below": str(below)},
        "spend_bands": [
            {"id": rid(), "role": r, "from": str(s), "sla": duration_text(draw(slas))}
            for r, s in zip(roles, starts, strict=True)
        ],
    }  # fmt: skip
    for table, names in (("categories", CATEGORIES), ("conditions", CONDITIONS)):
        chosen = draw(st.lists(st.sampled_from(names), unique=True, max_size=3))
        doc[table] = {n: requirement(draw, rid, fresh=True) for n in chosen}
    chosen = draw(st.lists(st.sampled_from(URGENCIES), unique=True, max_size=2))
    doc["urgency"] = {n: {"id": rid(), "sla": duration_text(draw(slas))} for n in chosen}
    return doc


def requirement(draw: st.DrawFn, rid: Ids, *, fresh: bool) -> dict[str, Any]:
    rule: dict[str, Any] = {"id": rid()}
    if fresh or draw(st.booleans()):
        rule["roles"] = draw(st.lists(st.sampled_from(ROLES), min_size=1, max_size=3, unique=True))
    if fresh or draw(st.booleans()):
        rule["from"] = str(draw(amounts))
    if draw(st.booleans()):
        rule["sla"] = duration_text(draw(slas))
    return rule


def stricter(draw: st.DrawFn, base: Policy, head: dict[str, Any], prefix: str) -> dict[str, Any]:
    """An override of ``base`` that tightens some rules and adds others, never loosening."""
    rid = Ids(prefix)
    doc = dict(head)
    if draw(st.booleans()):
        doc["default_sla"] = duration_text(shorter(draw, base.default_sla))
    below = at_most(draw, base.auto_approve.below) if draw(st.booleans()) else None
    if below is not None:
        doc["auto_approve"] = {"id": rid(), "below": str(below)}
    bands: dict[str, dict[str, Any]] = {}
    for band in base.bands:
        if draw(st.booleans()):
            bands[band.role] = {"id": rid(), "role": band.role}
            if draw(st.booleans()):
                bands[band.role]["from"] = str(at_most(draw, band.start))
            if draw(st.booleans()):
                bands[band.role]["sla"] = duration_text(shorter(draw, band.sla_minutes))
    for role in draw(st.lists(st.sampled_from(ROLES), unique=True, max_size=2)):
        if role not in {b.role for b in base.bands}:
            bands[role] = {"id": rid(), "role": role, "from": str(draw(amounts))}
    lowest = min(
        Decimal(bands[b.role]["from"]) if "from" in bands.get(b.role, {}) else b.start
        for b in base.bands
    )
    limit = base.auto_approve.below if below is None else below
    if min([lowest] + [Decimal(b["from"]) for b in bands.values() if "from" in b]) > limit:
        first = base.bands[0]
        bands[first.role] = bands.get(first.role, {"id": rid(), "role": first.role})
        bands[first.role]["from"] = str(limit)
    doc["spend_bands"] = list(bands.values())
    for table in ("categories", "conditions"):
        inherited = getattr(base, table)
        rules: dict[str, Any] = {}
        for name, old in inherited.items():
            if draw(st.booleans()):
                extra = draw(st.lists(st.sampled_from(ROLES), unique=True, max_size=2))
                rules[name] = {"id": rid(), "roles": list(dict.fromkeys([*old.roles, *extra])),
                               "from": str(at_most(draw, old.start)),
                               "sla": duration_text(shorter(draw, old.sla_minutes))}  # fmt: skip
        names = CATEGORIES if table == "categories" else CONDITIONS
        for name in draw(st.lists(st.sampled_from(names), unique=True, max_size=2)):
            if name not in inherited:
                rules[name] = requirement(draw, rid, fresh=True)
        doc[table] = rules
    doc["urgency"] = {
        name: {"id": rid(), "sla": duration_text(shorter(draw, old.sla_minutes))}
        for name, old in base.urgency.items()
        if draw(st.booleans())
    }
    for name in draw(st.lists(st.sampled_from(URGENCIES), unique=True, max_size=1)):
        if name not in base.urgency:
            doc["urgency"][name] = {"id": rid(), "sla": duration_text(draw(slas))}
    return doc


ENTITY = {"policy_id": "entity", "scope": "ENTITY", "scope_id": "E1", "version": 4}
FACILITY = {"policy_id": "facility", "scope": "FACILITY", "scope_id": "F1", "entity_id": "E1",
            "version": 7}  # fmt: skip


@st.composite
def federations(draw: st.DrawFn) -> tuple[list[tuple[str, str]], PolicySet]:
    """Enterprise, a stricter entity override, and a facility override stricter than both."""
    docs = [("enterprise.yaml", yaml.safe_dump(draw(enterprise_docs())))]
    alone = PolicySet.from_documents(docs)
    docs.append(("entity.yaml", yaml.safe_dump(stricter(draw, alone.enterprise, ENTITY, "E"))))
    entity = PolicySet.from_documents(docs).entities["E1"]
    docs.append(("facility.yaml", yaml.safe_dump(stricter(draw, entity, FACILITY, "F"))))
    return docs, PolicySet.from_documents(docs)


requests = st.builds(
    Request,
    entity_id=st.just("E1"),
    facility_id=st.sampled_from([None, "F1"]),
    cost_center_id=st.just("CC-1"),
    urgency=st.sampled_from(URGENCIES),
    total=amounts,
    currency=st.just("USD"),
    categories=st.frozensets(st.sampled_from(CATEGORIES), max_size=3),
    grant_funded=st.booleans(),
    off_contract=st.booleans(),
    over_budget=st.booleans(),
)


def no_looser(strict: Route, base: Route) -> None:
    slas = {s.role: s.sla_minutes for s in strict.steps}
    assert len(strict.steps) >= len(base.steps)
    for step in base.steps:
        assert step.role in slas, f"{step.role} (rule {step.rule}) lost"
        assert slas[step.role] <= step.sla_minutes, f"{step.role}: SLA longer"
    assert strict.auto_approved <= base.auto_approved


@settings(max_examples=150, deadline=None)
@given(federations(), requests)
def test_a_stricter_override_never_yields_a_looser_route(
    federation: tuple[list[tuple[str, str]], PolicySet], request: Request
) -> None:
    docs, policies = federation
    enterprise = route(request, policies.enterprise)
    entity = route(request, policies.effective("E1"))
    local = route(request, policies.effective("E1", request.facility_id))
    no_looser(entity, enterprise)
    no_looser(local, entity)
    no_looser(local, enterprise)
    again = PolicySet.from_documents(docs).effective("E1", request.facility_id)
    assert route(request, again) == local  # deterministic, also across loads
    ids = set(yaml.safe_dump([yaml.safe_load(text) for _, text in docs]).split())
    for step in local.steps:
        for rule in (step.rule, step.sla_rule, *step.also):
            assert rule in ids, f"{rule} names no rule"
    assert [p for p, _ in local.policies][:2] == ["enterprise", "entity"]


LOOSENINGS = ("auto", "band", "role", "sla", "urgency")


@settings(max_examples=100, deadline=None)
@given(enterprise_docs(), st.sampled_from(LOOSENINGS), st.data())
def test_loosening_any_one_bound_is_refused(
    enterprise: dict[str, Any], how: str, data: st.DataObject
) -> None:
    base = PolicySet.from_documents([("e.yaml", yaml.safe_dump(enterprise))]).enterprise
    override = dict(ENTITY)
    more = data.draw(st.integers(min_value=1, max_value=10_000), label="more")
    if how == "auto":
        override["auto_approve"] = {"id": "L", "below": str(base.auto_approve.below + more)}
        path = "auto_approve.below (L)"
    elif how == "band":
        band = data.draw(st.sampled_from(base.bands), label="band")
        override["spend_bands"] = [{"id": "L", "role": band.role, "from": str(band.start + more)}]
        path = "spend_bands[0].from (L)"
    elif how == "role":
        rules = [(t, n, r) for t in ("categories", "conditions")
                 for n, r in getattr(base, t).items()]  # fmt: skip
        if not rules:
            return
        table, name, old = data.draw(st.sampled_from(rules), label="rule")
        override[table] = {name: {"id": "L", "roles": list(old.roles[1:]) or ["SOMEONE_ELSE"]}}
        path = f"{table}.{name}.roles (L)"
    else:
        if how == "urgency" and base.urgency:
            name = data.draw(st.sampled_from(sorted(base.urgency)), label="urgency")
            override["urgency"] = {name: {"id": "L", "sla": "30d"}}
            path = f"urgency.{name}.sla (L)"
        else:
            band = data.draw(st.sampled_from(base.bands), label="band")
            override["spend_bands"] = [{"id": "L", "role": band.role, "sla": "30d"}]
            path = "spend_bands[0].sla (L)"
    docs = [("e.yaml", yaml.safe_dump(enterprise)), ("o.yaml", yaml.safe_dump(override))]
    with pytest.raises(ConfigError) as caught:
        PolicySet.from_documents(docs)
    assert str(caught.value).startswith(f"o.yaml: {path}: "), str(caught.value)
    assert "is looser than" in str(caught.value)
