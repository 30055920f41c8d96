"""`supplybus audit ID` and `supplybus audit verify` as a user runs them: output, one-line
errors and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.audit import append
from tests.helpers import cli_env, run_cli
from tests.test_audit_trail import entry, tamper


def test_history_and_verify_through_the_cli(migrated: Settings, tmp_path: Path) -> None:
    env = cli_env(migrated, tmp_path / "home")
    with connect(migrated) as conn:
        append(
            conn,
            [
                entry("REQ-1", n, action=a)
                for n, a in enumerate(("submitted", "validated", "approved"), 1)
            ],
        )
        append(conn, [entry("PO-1", 1, "purchase_order", action="issued")])
        conn.commit()

    shown = run_cli("audit", "REQ-1", env=env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0] == "requisition REQ-1"
    assert (
        shown.stdout.index("submitted")
        < shown.stdout.index("validated")
        < shown.stdout.index("approved")
    )
    assert "R-5K, R-CAT @enterprise@3" in shown.stdout

    as_json = run_cli("audit", "REQ-1", "--type", "requisition", "--json", env=env)
    assert as_json.returncode == 0, as_json.stderr
    rows = json.loads(as_json.stdout)
    assert [(r["seq"], r["action"]) for r in rows] == [
        (1, "submitted"),
        (2, "validated"),
        (3, "approved"),
    ]
    assert rows[1]["prev_hash"] == rows[0]["hash"]
    assert rows[0]["correlation_id"] == "corr-1" and rows[0]["rule_version"] == "enterprise@3"

    unknown = run_cli("audit", "REQ-404", env=env)
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "error: audit: no entries for entity 'REQ-404'"

    intact = run_cli("audit", "verify", env=env)
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert intact.stdout.strip() == "audit trail intact: 2 entities, 4 entries"

    with connect(migrated) as conn:
        tamper(
            conn,
            "UPDATE audit_log SET reason = 'CFO said so' WHERE seq = 2 AND entity_id = 'REQ-1'",
        )
        tamper(conn, "DELETE FROM audit_log WHERE entity_id = 'PO-1'")
    broken = run_cli("audit", "verify", env=env)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert broken.stdout.splitlines() == [
        "purchase_order PO-1 seq 1: deleted (seq 1 missing)",
        "requisition REQ-1 seq 2: edited (hash mismatch)",
        "audit trail NOT intact: 2 problem(s) in 2 entities, 3 entries",
    ]
    report = run_cli("audit", "verify", "--type", "requisition", "--json", env=env)
    assert report.returncode == 1
    found = json.loads(report.stdout)
    assert found["intact"] is False
    assert found["problems"] == [
        {
            "entity_type": "requisition",
            "entity_id": "REQ-1",
            "seq": 2,
            "kind": "edited",
            "detail": "hash mismatch",
        }
    ]


def test_verify_on_an_unmigrated_database_is_one_line(settings: Settings, tmp_path: Path) -> None:
    done = run_cli("audit", "verify", env=cli_env(settings, tmp_path / "home"))
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == f"error: schema {settings.db_schema}: no audit tables (run `supplybus db migrate`)"
    )
    assert "Traceback" not in done.stderr


def test_verify_with_progress_checks_what_verify_checks(migrated: Settings) -> None:
    from supplybus.ops.cli.audit import _verify_with_progress  # the terminal's path

    with connect(migrated) as conn:
        append(conn, [entry("REQ-1", n) for n in (1, 2)])
        conn.commit()
        tamper(conn, "DELETE FROM audit_log WHERE seq = 1")
        report = _verify_with_progress(conn, None)
    assert (report.entries, [str(p) for p in report.problems]) == (
        1,
        ["requisition REQ-1 seq 1: deleted (seq 1 missing)"],
    )
