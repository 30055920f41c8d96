"""Published approval policies on the real broker and database: `policies publish` puts the set
in force for every processor; a newer, stricter version replaces it; a looser document sent by
a foreign producer is dead-lettered with the reason, the key's next document (a changed one
under the published version) waits behind it, and nothing changes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.approvals.federation import default_policy_dir, load_policies
from supplybus.consumers.approvals.policy import parse_policy
from supplybus.consumers.approvals.published import PoliciesInForce, processor
from supplybus.consumers.runtime.runner import Runner
from supplybus.events.envelope import deterministic_id
from supplybus.ops.cli import main
from supplybus.ops.cli.policies import policy_record
from supplybus.producers.publisher import Publisher
from tests.helpers import cli_env
from tests.workers import fresh_group


def _run(settings: Settings) -> None:
    assert Runner(settings, [processor()], until_idle=1.0, signals=False).run() == 0


def _in_force(settings: Settings) -> dict[str, tuple[int, str]]:
    with connect(settings) as conn:
        rows = conn.execute("SELECT policy_id, version, checksum FROM approval_policies")
        return {p: (v, c) for p, v, c in rows}


def _foreign(path: Path, text: str, version: int) -> dict[str, object]:
    """An ApprovalPolicyUpserted as any producer could send it, past the CLI's checks."""
    record = policy_record(parse_policy(text, str(path)), "someone")
    record["envelope"]["event_id"] = deterministic_id("test-foreign", path.name, version, text)
    return record


def test_published_policies_are_in_force_and_a_looser_one_is_refused(
    isolated: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = fresh_group(isolated)
    for name, value in cli_env(settings, tmp_path / "home").items():
        monkeypatch.setenv(name, value)
    folder = tmp_path / "policies"
    shutil.copytree(default_policy_dir(), folder)
    with connect(settings) as conn:
        assert PoliciesInForce()(conn).effective("ENT-EAST").layers == (
            load_policies().effective("ENT-EAST").layers
        ), "nothing published: the shipped files"

    assert main(["policies", "publish", str(folder)]) == 0
    _run(settings)
    published = _in_force(settings)
    assert {p: v for p, (v, _) in published.items()} == {
        "enterprise-standard": 1, "entity-ent-east": 1, "facility-fac-e1": 1,
    }  # fmt: skip

    east = folder / "entity-ent-east.yaml"
    stricter = (
        east.read_text()
        .replace("version: 1", "version: 2")
        .replace('below: "2500.00"', 'below: "2000.00"')
        .replace('from: "2500.00"', 'from: "2000.00"')
    )
    east.write_text(stricter)
    assert main(["policies", "publish", str(folder)]) == 0
    _run(settings)
    in_force = PoliciesInForce()
    with connect(settings) as conn:
        policy = in_force(conn).effective("ENT-EAST")
    assert ("entity-ent-east", 2) in policy.layers and str(policy.auto_approve.below) == "2000.00"

    looser = (
        stricter.replace("version: 2", "version: 3")
        .replace('below: "2000.00"', 'below: "9000.00"')
        .replace('from: "2000.00"', 'from: "9000.00"')
    )
    changed = stricter.replace("Lower limits", "Changed limits")
    with Publisher.from_settings(settings) as pub:
        pub.publish_all([_foreign(east, looser, 3), _foreign(east, changed, 2)])
    _run(settings)
    with connect(settings) as conn:
        dead = [m for (m,) in conn.execute(
            "SELECT message FROM dead_letters WHERE processor = 'approval-policies' ORDER BY 1"
        )]  # fmt: skip
        assert in_force(conn).effective("ENT-EAST") is policy, "unchanged, and not rebuilt"
        (held,) = conn.execute(
            "SELECT count(*) FROM held_events WHERE processor = 'approval-policies'"
        ).fetchone() or (0,)
    assert held == 1
    assert _in_force(settings)["entity-ent-east"][0] == 2
    assert len(dead) == 1 and "policy entity-ent-east v3 refused" in dead[0]
    assert "auto_approve.below" in dead[0] and "at most 5000.00" in dead[0]
