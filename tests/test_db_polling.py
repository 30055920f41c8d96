"""`supplybus ingest db` on the real database and broker (issue 20, acceptance 2).

The source is a table in a schema of its own on the embedded PostgreSQL, reached through its
own URL as a legacy database would be. Every case ends with the outbox, and the main one by
running the relay and reading the topic back: each good row is published exactly once.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.events.catalog import EventCatalog
from supplybus.metrics import Metrics
from supplybus.producers.files.mapping import load_mapping
from supplybus.producers.polling.poller import Poller, TableSpec
from supplybus.producers.polling.rows import event_id
from tests.helpers import InProcessCli, cli_env, drain_relay, read_all, wait_for

MAPPING = """\
event_type: StockMovement
timezone: UTC
codes: {units: {CASE: CS, EACH: EA, BOX: BX}}
constants: {kind: ISSUE, envelope.source_system: erp-db, envelope.entity_id: ENT-EAST}
line_ids: [movement_id]
columns:
  changed_at: {field: envelope.occurred_at, type: datetime}
  item: item_id
  location: location_id
  qty: {field: quantity.value, type: decimal}
  unit: {field: quantity.uom, codes: units}
  lot: {field: lot_number, required: false}
"""
PRIVATE = "LOT-Roe-Jane"  # stands for personal data: never in a log line
BAD_UNIT = "PALLET-9"


@pytest.fixture
def source(isolated: Settings) -> Iterator[str]:
    """A schema of this test's own standing for the legacy database; its ``usage`` table."""
    schema = f"src_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(isolated.database_url or "", autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(
            f"CREATE TABLE {schema}.usage (id bigserial PRIMARY KEY, changed_at timestamptz"
            " NOT NULL, item text, location text, qty numeric(12,3), unit text, lot text)"
        )
    try:
        yield f"{schema}.usage"
    finally:
        with psycopg.connect(isolated.database_url or "", autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def mapping(tmp_path: Path) -> Path:
    path = tmp_path / "usage.yaml"
    path.write_text(MAPPING)
    return path


def insert(settings: Settings, table: str, n: int, base: dt.datetime, step_s: float = 1.0) -> None:
    """``n`` rows, changed ``step_s`` apart from ``base``; every 600th (from 7) has an unknown
    unit and every 1000th (from 500) no quantity: 8 bad rows in 3,000."""
    with psycopg.connect(settings.database_url or "", autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO {table} (changed_at, item, location, qty, unit, lot)"
            " SELECT %s + make_interval(secs => i * %s), 'ITEM-' || lpad((i %% 50)::text, 4, '0'),"
            " 'LOC-E1-OR', CASE WHEN i %% 1000 = 500 THEN NULL ELSE (i %% 7) + 1.5 END,"
            " CASE WHEN i %% 600 = 7 THEN %s ELSE 'CASE' END, %s"
            " FROM generate_series(0, %s - 1) AS i",
            (base, step_s, BAD_UNIT, PRIVATE, n),
        )


def good_ids(settings: Settings, table: str, source_name: str) -> set[str]:
    with psycopg.connect(settings.database_url or "") as conn:
        rows = conn.execute(
            f"SELECT id, changed_at FROM {table} WHERE qty IS NOT NULL AND unit <> %s",
            (BAD_UNIT,),
        ).fetchall()
    return {event_id(source_name, table, str(i), at) for i, at in rows}


def outbox_ids(settings: Settings) -> tuple[int, int]:
    """(outbox rows written by the poller, distinct event ids among them)."""
    with connect(settings) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM outbox WHERE source = 'db-poll'"
        ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def relay_and_read(settings: Settings, expect: int) -> list[str]:
    """Run the relay until the outbox is drained; the event ids on the StockMovement topic."""
    drain_relay(settings)
    spec = EventCatalog.from_settings(settings).topics.topic_for("StockMovement")
    records = read_all(settings, spec.name, spec.partitions, expect, timeout=20)
    return [dict(m.headers() or [])["sb-event-id"].decode() for m in records]


def start_poller(settings: Settings, home: Path, table: str, mapping: Path, *more: str
                 ) -> subprocess.Popen[str]:  # fmt: skip
    args = ["ingest", "db", "--source-url", settings.database_url or "", "--table", table,
            "--mapping", str(mapping), "--key-column", "id", "--updated-column", "changed_at",
            "--look-back", "60s", "--source-name", "erp", *more]  # fmt: skip
    env = {**cli_env(settings, home), "PATH": "/usr/bin:/bin"}
    return subprocess.Popen(
        [sys.executable, "-m", "supplybus.ops.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def ended(proc: subprocess.Popen[str], signum: int) -> str:
    """Signal the process, wait for it (kill -9 after 15 s) and return what it logged."""
    proc.send_signal(signum)
    try:
        _, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


def watermark(settings: Settings) -> dt.datetime | None:
    with connect(settings) as conn:
        row = conn.execute("SELECT last_updated FROM polling_watermarks").fetchone()
    return row[0] if row else None


def test_killed_mid_table_and_restarted_publishes_every_row_once_with_a_late_row(
    isolated: Settings, source: str, mapping: Path, tmp_path: Path
) -> None:
    base = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=2)
    insert(isolated, source, 3000, base)
    late_at = base + dt.timedelta(seconds=2990.5)  # inside the last minute of the table
    late = psycopg.connect(isolated.database_url or "")  # a writer whose transaction began early
    late.execute(
        f"INSERT INTO {source} (changed_at, item, location, qty, unit, lot)"
        " VALUES (%s, 'ITEM-LATE', 'LOC-E1-OR', 1, 'EACH', NULL)",
        (late_at,),
    )
    home = tmp_path / "home"
    first = start_poller(isolated, home, source, mapping, "--batch-size", "100",
                         "--max-rows-per-second", "1000", "--interval", "0.2")  # fmt: skip
    try:
        wait_for(lambda: outbox_ids(isolated)[0] >= 600, timeout=30, what="600 rows in the outbox")
    finally:
        ended(first, signal.SIGKILL)
    at_kill = outbox_ids(isolated)[0]
    assert 600 <= at_kill < 2992, f"the kill did not land mid-table ({at_kill} rows written)"

    second = start_poller(isolated, home, source, mapping, "--batch-size", "200",
                          "--interval", "0.2")  # fmt: skip
    try:
        wait_for(lambda: outbox_ids(isolated)[0] >= 2992, timeout=30, what="the table read")
        wait_for(lambda: (watermark(isolated) or base) > late_at, timeout=10,
                 what="the watermark past the late row")  # fmt: skip
        late.commit()  # committed after the poller passed its updated-at
        late.close()
        wait_for(lambda: outbox_ids(isolated)[0] >= 2993, timeout=15, what="the late row")
    finally:
        err = ended(second, signal.SIGTERM)
        late.close()
    assert second.returncode == 0, err
    assert PRIVATE not in err and BAD_UNIT not in err  # row values never logged
    rows, distinct = outbox_ids(isolated)
    assert (rows, distinct) == (2993, 2993), "duplicate outbox rows" if rows > distinct else rows

    expected = good_ids(isolated, source, "erp")
    assert len(expected) == 2993
    published = relay_and_read(isolated, 2993)
    assert len(published) == len(set(published)), "a row published twice"
    assert set(published) == expected, (
        f"lost {len(expected - set(published))}, unexpected {len(set(published) - expected)}"
    )
    with connect(isolated) as conn:
        rejects = conn.execute(
            "SELECT reason, count(*) FROM polling_rejects GROUP BY reason ORDER BY reason"
        ).fetchall()
        seen_before = conn.execute(
            "SELECT count(*) FROM polling_seen WHERE updated_at < %s",
            (base + dt.timedelta(seconds=2999 - 61),),
        ).fetchone()
    assert rejects == [("missing", 3), ("unknown_code", 5)], rejects
    assert seen_before == (0,), "seen rows outside the look-back window were not pruned"


@pytest.fixture
def cli(isolated: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> InProcessCli:  # fmt: skip
    return InProcessCli(isolated, tmp_path / "home", monkeypatch, capsys)


def poll_once(cli: InProcessCli, settings: Settings, table: str, mapping: Path, *more: str
              ) -> dict[str, object]:  # fmt: skip
    result = cli("ingest", "db", "--source-url", settings.database_url or "", "--table", table,
                 "--mapping", str(mapping), "--key-column", "id", "--source-name", "erp",
                 "--once", "--json", *more)  # fmt: skip
    assert result.returncode == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_key_mode_publishes_new_rows_once_and_records_bad_rows(
    isolated: Settings, source: str, mapping: Path, cli: InProcessCli
) -> None:
    base = dt.datetime(2026, 11, 3, 8, tzinfo=dt.UTC)
    insert(isolated, source, 1200, base)
    first = poll_once(cli, isolated, source, mapping, "--batch-size", "250")
    assert (first["read"], first["accepted"], first["rejected"]) == (1200, 1197, 3)
    assert first["reasons"] == {"missing": 1, "unknown_code": 2}
    assert first["watermark"] == "1200"
    again = poll_once(cli, isolated, source, mapping)
    assert (again["read"], again["accepted"]) == (0, 0)
    insert(isolated, source, 10, base + dt.timedelta(days=1))
    more = poll_once(cli, isolated, source, mapping)
    assert (more["read"], more["accepted"], more["rejected"]) == (10, 9, 1)
    assert outbox_ids(isolated) == (1206, 1206)
    with connect(isolated) as conn:
        rejects = conn.execute(
            "SELECT row_key, reason, message FROM polling_rejects ORDER BY row_key::bigint"
        ).fetchall()
        mark = conn.execute("SELECT mode, last_key, accepted, rejected FROM polling_watermarks"
                            ).fetchone()  # fmt: skip
    assert [(k, r) for k, r, _ in rejects] == [
        ("8", "unknown_code"), ("501", "missing"), ("608", "unknown_code"), ("1208", "unknown_code")
    ]  # fmt: skip
    assert BAD_UNIT in rejects[0][2]  # the reason names the value, in the database only
    assert mark == ("key", "1210", 1206, 4)


def test_mistakes_are_one_line(
    isolated: Settings, source: str, mapping: Path, cli: InProcessCli
) -> None:
    url = isolated.database_url or ""
    common = ["ingest", "db", "--mapping", str(mapping), "--key-column", "id", "--once"]
    cases = {
        ("--source-url", url, "--table", "nope.usage"): "error: --table: no table 'nope.usage'",
        ("--source-url", url, "--table", source, "--updated-column", "changed"):
            "error: --updated-column: no column 'changed'",
        ("--source-url", url, "--table", source, "--updated-column", "changed_at",
         "--look-back", "a while"): "error: --look-back: a duration such as 60s",
        ("--source-url", "postgresql://nobody@127.0.0.1:1/x", "--table", source):
            "error: --source-url: cannot reach postgresql://nobody@127.0.0.1:1/x",
    }  # fmt: skip
    for args, expected in cases.items():
        result = cli(*common, *args)
        assert result.returncode == 2, (args, result.stdout)
        assert result.stderr.startswith(expected), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    poll_once(cli, isolated, source, mapping)  # key mode now
    mixed = cli(*common, "--source-url", url, "--table", source, "--source-name", "erp",
                "--updated-column", "changed_at")  # fmt: skip
    assert mixed.returncode == 2 and "polled by key before" in mixed.stderr, mixed.stderr


def test_a_window_read_again_publishes_nothing_and_metrics_count(
    isolated: Settings, source: str, mapping: Path
) -> None:
    base = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)
    insert(isolated, source, 20, base)  # row 8 (i = 7) has an unknown unit
    metrics = Metrics()
    spec = TableSpec("erp", source, "id", "changed_at", dt.timedelta(seconds=60), batch_size=6)
    poller = Poller(isolated, spec, load_mapping(mapping), isolated.database_url or "",
                    metrics=metrics)  # fmt: skip
    try:
        first = poller.poll()
        again = poller.poll()  # the whole table is inside the look-back window
    finally:
        poller.close()
    assert (first.read, first.accepted, first.rejected, first.duplicates) == (20, 19, 1, 0)
    assert (again.read, again.accepted, again.rejected, again.duplicates) == (20, 0, 0, 20)
    assert outbox_ids(isolated) == (19, 19)
    sample = metrics.registry.get_sample_value
    accepted = {"source": "db", "event_type": "StockMovement"}
    assert sample("supplybus_ingest_accepted_total", accepted) == 19
    assert (
        sample("supplybus_ingest_rejected_total", {"source": "db", "reason": "unknown_code"}) == 1
    )
    lag = sample("supplybus_ingest_db_lag_seconds", {"source": "erp", "table": source})
    assert lag is not None and 10 <= lag <= 40  # source clock minus the newest row (~11 s ago)
