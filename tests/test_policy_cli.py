"""`supplybus policies check | route | publish`: output, one-line errors (exit 2), and the
published ApprovalPolicyUpserted events read back from the broker."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from supplybus.config import Settings
from supplybus.consumers.approvals.federation import default_policy_dir
from supplybus.events.catalog import EventCatalog
from supplybus.ops.cli import main
from tests.helpers import cli_env, read_all


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["policies", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def copy_policies(tmp_path: Path) -> Path:
    folder = tmp_path / "policies"
    shutil.copytree(default_policy_dir(), folder)
    return folder


@pytest.fixture
def on_services(isolated: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-process CLI pointed at the test's broker, database and catalog."""
    for name, value in cli_env(isolated, tmp_path / "home").items():
        monkeypatch.setenv(name, value)


def test_check_prints_the_merged_policy_of_each_scope(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "--json")
    assert code == 0
    scopes = {s["scope"]: s for s in json.loads(out)}
    assert sorted(scopes) == ["ENTERPRISE", "ENTITY ENT-EAST", "FACILITY FAC-E1"]
    fac = scopes["FACILITY FAC-E1"]
    assert [p["policy_id"] for p in fac["policies"]] == [
        "enterprise-standard",
        "entity-ent-east",
        "facility-fac-e1",
    ]
    assert fac["auto_approve"] == {
        "id": "EAST-AUTO",
        "below": "2500.00",
        "origin": "entity-ent-east v1",
    }
    assert fac["categories"]["CONTROLLED_SUBSTANCE"]["roles"] == ["PHARMACY", "DIRECTOR"]
    code, out, _ = run(capsys, "check")
    assert code == 0 and "3 policy file(s) valid" in out and "FACILITY FAC-E1" in out


def test_check_refuses_a_looser_file_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = copy_policies(tmp_path)
    east = folder / "entity-ent-east.yaml"
    east.write_text(east.read_text().replace('below: "2500.00"', 'below: "9000.00"'))
    code, out, err = run(capsys, "check", str(folder))
    assert code == 2 and out == ""
    assert err == (
        f"error: {east}: auto_approve.below (EAST-AUTO): 9000.00 is looser than ENT-AUTO of "
        "enterprise-standard v1; expected at most 5000.00\n"
    )


def test_route_shows_the_steps_and_the_rules_behind_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["route", "--entity", "ENT-EAST", "--facility", "FAC-E1", "--amount", "12000",
            "--currency", "usd", "--urgency", "stat", "--category", "controlled-substance",
            "--off-contract", "--json"]  # fmt: skip
    code, out, _ = run(capsys, *args)
    assert code == 0
    result = json.loads(out)
    assert [(s["role"], s["rule"], s["sla_minutes"]) for s in result["steps"]] == [
        ("SOURCING", "E1-OFF-CONTRACT", 60),
        ("PHARMACY", "E1-CAT-CONTROLLED", 60),
        ("DIRECTOR", "E1-CAT-CONTROLLED", 60),
        ("MANAGER", "EAST-BAND-MANAGER", 60),
    ]
    assert result["urgency_rule"] == "EAST-STAT"
    assert [p["version"] for p in result["policies"]] == [1, 1, 1]
    code, out, _ = run(capsys, "route", "--entity", "ENT-WEST", "--amount", "4999.99")
    assert code == 0 and "auto-approved by ENT-AUTO (enterprise-standard v1)" in out
    code, out, _ = run(capsys, "route", "--entity", "ENT-WEST", "--amount", "300000",
                       "--category", "capital")  # fmt: skip
    assert code == 0
    for role in ("CAPITAL_COMMITTEE", "MANAGER", "DIRECTOR", "VP", "CFO"):
        assert role in out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--amount", "12k"], "error: --amount: expected a decimal amount, got '12k'"),
        (["--amount", "1", "--category", "food"], "error: --category: expected one of med-surg,"),
        (
            ["--amount", "1", "--currency", "EUR"],
            "error: total.currency: expected USD (the approval policy's currency), got EUR",
        ),
    ],
)
def test_route_errors_are_one_line_with_exit_code_2(
    capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    code, out, err = run(capsys, "route", "--entity", "ENT-WEST", *args)
    assert code == 2 and out == ""
    assert err.startswith(expected) and err.count("\n") == 1


def test_publish_sends_each_file_as_approval_policy_upserted(
    isolated: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    on_services: None,
) -> None:
    catalog = EventCatalog.from_settings(isolated)
    topic = catalog.topics.topic_for("ApprovalPolicyUpserted")
    folder = copy_policies(tmp_path)
    for again in ("", " (3 unchanged)"):  # the same files twice: the same event ids
        code, out, err = run(capsys, "publish", str(folder))
        assert code == 0, err
        assert f"published 3 ApprovalPolicyUpserted event(s) to {topic.name}{again}" in out
    records = read_all(isolated, topic.name, topic.partitions, expect=6)
    decoded = [catalog.codec.decode(m.value()) for m in records]
    assert len(decoded) == 6 and len({d.envelope["event_id"] for d in decoded}) == 3
    by_id = {d.record["policy_id"]: d.record for d in decoded}
    facility = by_id["facility-fac-e1"]
    text = (folder / "facility-fac-e1.yaml").read_text()
    assert facility["document"] == text
    assert facility["checksum"] == hashlib.sha256(text.encode()).hexdigest()
    assert (facility["scope"], facility["scope_id"], facility["version"]) == (
        "FACILITY",
        "FAC-E1",
        1,
    )
    assert by_id["enterprise-standard"]["scope_id"] is None
    assert {m.key() for m in records} == {p.encode() for p in by_id}


def test_publish_sends_nothing_when_a_file_is_refused(
    isolated: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    on_services: None,
) -> None:
    folder = copy_policies(tmp_path)
    facility = folder / "facility-fac-e1.yaml"
    facility.write_text(facility.read_text().replace("sla: 12h", "sla: 2d"))
    code, _, err = run(capsys, "publish", str(folder))
    assert code == 2
    assert err.startswith(f"error: {facility}: categories.CONTROLLED_SUBSTANCE.sla (E1-CAT-")
    assert "expected at most 1d" in err
    topic = EventCatalog.from_settings(isolated).topics.topic_for("ApprovalPolicyUpserted")
    assert read_all(isolated, topic.name, topic.partitions, expect=0, timeout=2) == []


def test_publish_refuses_a_changed_document_under_a_published_version(
    isolated: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    on_services: None,
) -> None:
    folder = copy_policies(tmp_path)
    assert run(capsys, "publish", str(folder))[0] == 0
    east = folder / "entity-ent-east.yaml"
    east.write_text(east.read_text().replace("sla: 1h", "sla: 45m"))
    code, _, err = run(capsys, "publish", str(folder))
    assert code == 2
    assert err.startswith(
        f"error: {east}: version: entity-ent-east v1 is already published with another "
        "document (sha256 "
    )
    assert err.endswith("expected version 2 or more\n")
    east.write_text(east.read_text().replace("version: 1", "version: 2"))
    code, out, err = run(capsys, "publish", str(folder))
    assert code == 0, err
    assert "(2 unchanged)" in out
    east.write_text(east.read_text().replace("version: 2", "version: 1"))
    code, _, err = run(capsys, "publish", str(folder))
    assert code == 2
    assert "version: entity-ent-east v2 is published; expected version 2 or more, got 1" in err
    topic = EventCatalog.from_settings(isolated).topics.topic_for("ApprovalPolicyUpserted")
    sent = read_all(isolated, topic.name, topic.partitions, expect=6)
    assert len(sent) == 6  # 3 + 3: the refused runs sent nothing
