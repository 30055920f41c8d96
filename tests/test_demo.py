"""`make demo` runs end to end and checks its own results (balances equal published sums)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from supplybus.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_and_verifies_itself(settings: Settings, tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers or "",
        "DATABASE_URL": settings.database_url or "",
        "SUPPLYBUS_DB_SCHEMA": settings.db_schema,
        "SUPPLYBUS_GROUP_PREFIX": f"demo-{settings.db_schema}",
        "SUPPLYBUS_HOME": str(tmp_path / "home"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "supplybus.ops.demo"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    out = result.stdout
    assert "published 4 validated events" in out
    assert "3000 duplicates skipped, 1 dead-lettered" in out
    assert "all 30 balances equal the published sums" in out
    assert "dead letter: inventory.stock-movements.v1" in out and "DECODE" in out
