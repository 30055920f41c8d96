"""Approval policies: loading refuses each bad or looser file in one line; routing examples."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from supplybus.consumers.approvals.federation import PolicySet, load_policies
from supplybus.consumers.approvals.policy import parse_policy, supersedes
from supplybus.consumers.approvals.routing import Request, route
from supplybus.errors import BusinessRuleError, ConfigError
from supplybus.events.samples import sample_record
from supplybus.events.schema_store import default_store

ENTERPRISE = """
policy_id: std
scope: ENTERPRISE
version: 3
currency: USD
default_sla: 48h
auto_approve: {id: A, below: "5000"}
spend_bands:
  - {id: B-M, role: MANAGER, from: "5000", sla: 24h}
  - {id: B-D, role: DIRECTOR, from: "25000"}
categories:
  CONTROLLED_SUBSTANCE: {id: C-CS, roles: [PHARMACY], sla: 24h}
  CAPITAL: {id: C-CAP, roles: [CAPITAL_COMMITTEE], sla: 10d}
conditions:
  off_contract: {id: K-OFF, roles: [SOURCING]}
  grant_funded: {id: K-GRANT, roles: [GRANTS_OFFICE]}
urgency:
  STAT: {id: U-STAT, sla: 2h}
"""

ENTITY_HEAD = "policy_id: east\nscope: ENTITY\nscope_id: E1\nversion: 2\n"


def policies(*overrides: str) -> PolicySet:
    docs = [("enterprise.yaml", ENTERPRISE)]
    docs += [(f"o{i}.yaml", ENTITY_HEAD + text) for i, text in enumerate(overrides)]
    return PolicySet.from_documents(docs)


def refusal(*overrides: str) -> str:
    with pytest.raises(ConfigError) as caught:
        policies(*overrides)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            'auto_approve: {id: X, below: "10000"}',
            "o0.yaml: auto_approve.below (X): 10000 is looser than A of std v3; "
            "expected at most 5000",
        ),
        (
            'spend_bands: [{id: X, role: DIRECTOR, from: "30000"}]',
            "o0.yaml: spend_bands[0].from (X): 30000 is looser than B-D of std v3; "
            "expected at most 25000",
        ),
        (
            "categories: {CONTROLLED_SUBSTANCE: {id: X, roles: [DIRECTOR]}}",
            "o0.yaml: categories.CONTROLLED_SUBSTANCE.roles (X): no PHARMACY is looser than "
            "C-CS of std v3; expected roles including PHARMACY",
        ),
        (
            "categories: {CONTROLLED_SUBSTANCE: null}",
            "o0.yaml: categories.CONTROLLED_SUBSTANCE: cannot drop C-CS of std v3; "
            "expected a rule at least as strict (a local policy may only tighten)",
        ),
        (
            "urgency: {STAT: {id: X, sla: 4h}}",
            "o0.yaml: urgency.STAT.sla (X): 4h is looser than U-STAT of std v3; "
            "expected at most 2h",
        ),
        (
            "spend_bands: [{id: X, role: MANAGER, sla: 2d}]",
            "o0.yaml: spend_bands[0].sla (X): 2d is looser than B-M of std v3; expected at most 1d",
        ),
        (
            'conditions: {off_contract: {id: X, from: "100"}}',
            "o0.yaml: conditions.off_contract.from (X): 100 is looser than K-OFF of std v3; "
            "expected at most 0",
        ),
        (
            "default_sla: 3d",
            "o0.yaml: default_sla: 3d is looser than the inherited default_sla; "
            "expected at most 2d",
        ),
        ("currency: EUR", "o0.yaml: currency: expected USD, the enterprise currency, got 'EUR'"),
        (
            'auto_approve: {id: X, below: "1000"}',
            "o0.yaml: spend_bands: expected a band from at most auto_approve.below 1000",
        ),
    ],
)
def test_a_looser_override_is_refused_naming_file_rule_and_bound(
    override: str, expected: str
) -> None:
    assert refusal(override).startswith(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: 0", "o0.yaml: version: expected an integer >= 1, got 0"),
        ("colour: red", "o0.yaml: colour: unknown field; expected one of auto_approve,"),
        (
            "auto_approve: {id: X, below: 10.5}",
            'o0.yaml: auto_approve.below: expected an amount as a string such as "5000.00" or '
            "an integer, got 10.5",
        ),
        (
            "urgency: {STAT: {id: X, sla: soon}}",
            "o0.yaml: urgency.STAT.sla: expected a duration such as 30m, 4h or 2d, got 'soon'",
        ),
        ("categories: {FOOD: {id: X, roles: [CHEF]}}", "o0.yaml: categories.FOOD: unknown name"),
        (
            "conditions: {off_contract: {id: X, roles: [sourcing]}}",
            "o0.yaml: conditions.off_contract.roles[0]: expected a role in capitals such as "
            "DIRECTOR, got 'sourcing'",
        ),
        (
            "urgency: {STAT: {id: X, sla: 1h, role: VP}}",
            "o0.yaml: urgency.STAT.role: unknown field; expected one of id, sla",
        ),
        (
            "urgency: {STAT: {id: A, sla: 1h}}",
            "o0.yaml: rule id 'A': expected it once in the policy set, also in enterprise.yaml",
        ),
        ("spend_bands: [{id: X, role: CEO}]", "o0.yaml: spend_bands[0].from: expected the amount"),
        ("spend_bands: {id: X}", "o0.yaml: spend_bands: expected a list, got 'dict'"),
        ("[1, 2", "o0.yaml: line 5: expected valid YAML"),
    ],
)
def test_a_malformed_file_is_refused_in_one_line(text: str, expected: str) -> None:
    assert refusal(text).startswith(expected)


def test_the_set_needs_one_enterprise_policy_and_unique_scopes() -> None:
    with pytest.raises(ConfigError, match="expected exactly one ENTERPRISE policy, found none"):
        PolicySet.from_documents([("e.yaml", ENTITY_HEAD)])
    twice = ENTITY_HEAD.replace("east", "east2")
    with pytest.raises(ConfigError, match="o1.yaml: scope 'ENTITY E1': expected it once"):
        policies("", twice)
    incomplete = ENTERPRISE.replace("default_sla: 48h\n", "")
    with pytest.raises(ConfigError, match="e.yaml: default_sla: expected the SLA of a step"):
        PolicySet.from_documents([("e.yaml", incomplete)])


def request(**changes: object) -> Request:
    base: dict[str, object] = {
        "entity_id": "E1",
        "facility_id": None,
        "cost_center_id": "CC-1",
        "urgency": "ROUTINE",
        "total": Decimal("1200.00"),
        "currency": "USD",
    }
    return Request(**(base | changes))  # type: ignore[arg-type]


def test_routing_by_band_category_condition_and_urgency() -> None:
    policy = policies().enterprise
    auto = route(request(), policy)
    assert auto.auto_approved and auto.auto_approved_by == "A"
    assert auto.policies == (("std", 3),)
    big = route(request(total=Decimal("30000")), policy)
    assert [(s.role, s.rule, s.sla_minutes) for s in big.steps] == [
        ("MANAGER", "B-M", 1440),
        ("DIRECTOR", "B-D", 2880),
    ]
    mixed = route(
        request(
            categories=frozenset({"CAPITAL", "CONTROLLED_SUBSTANCE"}),
            grant_funded=True,
            off_contract=True,
            over_budget=True,  # the enterprise policy says nothing of it
            urgency="STAT",
        ),
        policy,
    )
    assert [(s.role, s.rule, s.sla_minutes, s.sla_rule) for s in mixed.steps] == [
        ("SOURCING", "K-OFF", 120, "U-STAT"),
        ("GRANTS_OFFICE", "K-GRANT", 120, "U-STAT"),
        ("PHARMACY", "C-CS", 120, "U-STAT"),
        ("CAPITAL_COMMITTEE", "C-CAP", 120, "U-STAT"),
    ]
    assert mixed.urgency_rule == "U-STAT" and mixed.auto_approved_by is None


def test_an_override_tightens_and_the_route_names_every_policy_version() -> None:
    east = policies(
        'auto_approve: {id: X-A, below: "1000"}\n'
        'spend_bands: [{id: X-M, role: MANAGER, from: "1000"}]\n'
        "conditions: {over_budget: {id: X-OB, roles: [FINANCE], sla: 4h}}\n"
        "categories: {CAPITAL: {id: X-CAP, roles: [CAPITAL_COMMITTEE, FINANCE], sla: 1d}}\n"
    ).effective("E1")
    r = route(request(over_budget=True, categories=frozenset({"CAPITAL"})), east)
    assert r.policies == (("std", 3), ("east", 2))
    assert [(s.role, s.rule, s.sla_minutes, s.also) for s in r.steps] == [
        ("FINANCE", "X-OB", 240, ("X-CAP",)),
        ("CAPITAL_COMMITTEE", "X-CAP", 1440, ()),
        ("MANAGER", "X-M", 1440, ()),
    ]


def test_a_request_in_another_currency_or_of_a_foreign_facility_is_refused() -> None:
    with pytest.raises(BusinessRuleError, match="total.currency: expected USD .* got EUR"):
        route(request(currency="EUR"), policies().enterprise)
    shipped = load_policies()
    with pytest.raises(BusinessRuleError, match="facility FAC-E1 belongs to entity ENT-EAST"):
        shipped.effective("ENT-WEST", "FAC-E1")
    with pytest.raises(BusinessRuleError, match="urgency: expected one of STAT, URGENT, ROUTINE"):
        request(urgency="SOON")


def test_the_shipped_policies_load_and_tighten_in_layers() -> None:
    shipped = load_policies()
    assert shipped.enterprise.layers == (("enterprise-standard", 1),)
    gen = shipped.effective("ENT-EAST", "FAC-E1")
    assert [p for p, _ in gen.layers] == [
        "enterprise-standard",
        "entity-ent-east",
        "facility-fac-e1",
    ]
    other = shipped.effective("ENT-WEST", "FAC-W1")
    assert other == shipped.enterprise
    r = route(
        request(entity_id="ENT-EAST", facility_id="FAC-E1", total=Decimal("12000"),
                urgency="STAT", categories=frozenset({"CONTROLLED_SUBSTANCE"})),
    gen)  # fmt: skip
    assert [s.role for s in r.steps] == ["PHARMACY", "DIRECTOR", "MANAGER"]
    assert {s.sla_minutes for s in r.steps} == {60}


def test_an_empty_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"expected policy files \(\*.yaml\), found none"):
        load_policies(tmp_path)


def test_a_changed_document_needs_a_higher_version() -> None:
    v3 = parse_policy(ENTERPRISE, "e.yaml")
    assert supersedes(None, v3)
    assert supersedes((2, "old"), v3)
    assert not supersedes((3, v3.checksum), v3)  # the same document again
    assert not supersedes((4, "newer"), v3)  # a late older version
    with pytest.raises(BusinessRuleError, match="e.yaml: version: std v3 is already published"):
        supersedes((3, "0" * 64), v3)


def test_a_request_from_a_requisition_record() -> None:
    record = sample_record(default_store().latest("RequisitionSubmitted"), seed=3)
    record["envelope"] |= {"entity_id": "ENT-EAST", "facility_id": "FAC-E1"}
    record |= {"urgency": "STAT", "grant_funded": True,
               "total": {"amount": Decimal("12000.0000"), "currency": "USD"}}  # fmt: skip
    req = Request.of_requisition(record, ["IMPLANT", "IMPLANT"], over_budget=True)
    assert (req.entity_id, req.facility_id, req.urgency, req.total) == (
        "ENT-EAST", "FAC-E1", "STAT", Decimal("12000.0000"))  # fmt: skip
    assert req.categories == {"IMPLANT"} and req.grant_funded and req.over_budget
    r = route(req, load_policies().effective("ENT-EAST", "FAC-E1"))
    assert [s.role for s in r.steps] == ["FINANCE", "GRANTS_OFFICE", "SOURCING", "MANAGER",
                                         "DIRECTOR"]  # fmt: skip
