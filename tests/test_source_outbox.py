"""The source-side outbox on the real broker and a real (separate) source database: events
commit with the business change or not at all, and a relay killed with -9 loses nothing and
repeats only event ids it had already sent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from supplybus.config import Settings
from supplybus.errors import ConfigError, ValidationError
from supplybus.events.catalog import EventCatalog
from supplybus.producers import source_outbox as so
from supplybus.producers.relay import OutboxRelay
from tests import flood
from tests.helpers import cli_env, drain_relay, read_all, run_cli, wait_for


@pytest.fixture
def source_url(database_url: str) -> Iterator[str]:
    """A database of its own, standing for the source system's (not supplybus's)."""
    name = f"src_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = make_conninfo(database_url, dbname=name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE stock (item text PRIMARY KEY, qty numeric NOT NULL)")
    yield url
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def _add(url: str, catalog: EventCatalog, records: list[dict[str, Any]], per_tx: int) -> None:
    """The source's business transactions: a stock change and its events, ``per_tx`` a time."""
    with psycopg.connect(url) as conn:
        for start in range(0, len(records), per_tx):
            with conn.transaction(), so.source_outbox(conn, catalog=catalog) as ob:
                for record in records[start : start + per_tx]:
                    conn.execute(
                        "INSERT INTO stock VALUES (%s, %s) ON CONFLICT (item)"
                        " DO UPDATE SET qty = stock.qty + excluded.qty",
                        (record["item_id"], record["quantity"]["value"]),
                    )
                    ob.add(record)


def _ids(messages: list[Any]) -> list[str]:
    return [dict(m.headers())["sb-event-id"].decode() for m in messages]


def _drain(settings: Settings, url: str) -> OutboxRelay:
    return drain_relay(settings, location=so.location(url))


def test_a_rolled_back_transaction_publishes_nothing(isolated: Settings, source_url: str) -> None:
    catalog = EventCatalog.from_settings(isolated)
    topic = catalog.topics.topic_for("StockMovement")
    with psycopg.connect(source_url) as conn:
        so.install(conn)
        so.install(conn)  # idempotent
    committed, rolled_back = flood.load("ok", 2, 3), flood.load("rb", 2, 3)
    _add(source_url, catalog, committed, per_tx=6)
    with psycopg.connect(source_url) as conn:
        with (
            pytest.raises(RuntimeError),
            conn.transaction(),
            so.source_outbox(conn, catalog=catalog) as ob,
        ):
            ob.add_all(rolled_back)
            raise RuntimeError("the business change failed")
        bad = flood.with_fields(flood.movement("bad", 1, 1), quantity__uom="PALLET?")
        with conn.transaction(), so.source_outbox(conn, catalog=catalog) as ob:
            with pytest.raises(ValidationError, match="quantity.uom"):
                ob.add_all([flood.movement("bad", 0, 1), bad])  # all or nothing
            assert ob.added == []
        conn.autocommit = True
        with pytest.raises(ConfigError, match="autocommit"), so.source_outbox(conn):
            pass
        assert so.status(conn) == {"pending": 6, "parked": 0, "sent": 0}

    assert _drain(isolated, source_url).stats.published == 6
    messages = read_all(isolated, topic.name, topic.partitions, expect=6)
    assert Counter(_ids(messages)) == Counter(r["envelope"]["event_id"] for r in committed)
    with psycopg.connect(source_url) as conn:
        assert so.status(conn) == {"pending": 0, "parked": 0, "sent": 6}


def test_the_cli_installs_and_refuses_a_missing_table(isolated: Settings, source_url: str) -> None:
    env = cli_env(isolated, Path(isolated.home))
    missing = run_cli("source-outbox", "relay", "--url", source_url, "--schema", "erp", env=env)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1, missing.stderr
    assert "no table erp.outbox" in missing.stderr and "Traceback" not in missing.stderr
    bad = run_cli("source-outbox", "install", "--url", source_url, "--schema", "Bad-Name", env=env)
    assert bad.returncode == 2 and "--schema" in bad.stderr
    done = run_cli("source-outbox", "install", "--url", source_url, "--schema", "erp", env=env)
    assert done.returncode == 0, done.stderr
    status = run_cli("source-outbox", "status", "--url", source_url, "--schema", "erp", "--json")
    assert status.returncode == 0 and '"pending": 0' in status.stdout, status.stderr


def _relay_process(settings: Settings, url: str, log: Path, **env: str) -> subprocess.Popen[str]:
    """The relay as its own process (batches of 200), its stderr in ``log``."""
    args = ["source-outbox", "relay", "--url", url, "--batch-size", "200"]
    with log.open("w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "supplybus.ops.cli", *args],
            env={**os.environ, **cli_env(settings, Path(settings.home)), **env},
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
        )


def test_kill_9_of_the_relay_loses_nothing(
    isolated: Settings, source_url: str, tmp_path: Path
) -> None:
    """kill -9 mid-stream, then a restart: every committed event is on the topic, copies only
    of ids already sent (the round in hand), and each key's events in order."""
    catalog = EventCatalog.from_settings(isolated)
    topic = catalog.topics.topic_for("StockMovement")
    records = flood.load("kill", keys=20, per_key=150)  # 3,000 events
    with psycopg.connect(source_url) as conn:
        so.install(conn)
    _add(source_url, catalog, records, per_tx=100)

    def sent() -> int:
        with psycopg.connect(source_url) as conn:
            return so.status(conn)["sent"]

    relay = _relay_process(isolated, source_url, tmp_path / "relay.log")
    try:
        wait_for(lambda: sent() >= 400, timeout=30, what="the relay publishing")
    finally:
        relay.send_signal(signal.SIGKILL)
        relay.wait(10)
    landed = sent()
    assert relay.returncode == -signal.SIGKILL and 400 <= landed < 3000, landed

    env = cli_env(isolated, Path(isolated.home))
    again = run_cli(
        "source-outbox", "relay", "--url", source_url, "--until-idle", "--idle-seconds", "0.5",
        env=env,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert sent() == 3000

    messages = read_all(isolated, topic.name, topic.partitions, expect=3000, timeout=30)
    counts = Counter(_ids(messages))
    expected = {r["envelope"]["event_id"]: r for r in records}
    assert set(counts) == set(expected), "lost or foreign events"
    duplicated = sum(c - 1 for c in counts.values())
    assert duplicated <= 5000, duplicated  # at most the round in hand (batch of the relay)
    seen: dict[str, int] = {}
    for event_id in _ids(messages):
        record = expected[event_id]
        n = int(record["reference_id"])
        last = seen.get(record["item_id"], 0)
        assert n <= last or n == last + 1, f"{record['item_id']}: {n} after {last} (a gap)"
        seen[record["item_id"]] = max(last, n)


def test_a_crash_after_the_ack_repeats_that_round_only(
    isolated: Settings, source_url: str, tmp_path: Path
) -> None:
    """Crash point relay-after-ack: predicted duplicates = the first round (200 rows)."""
    catalog = EventCatalog.from_settings(isolated)
    topic = catalog.topics.topic_for("StockMovement")
    records = flood.load("ack", keys=4, per_key=100)
    with psycopg.connect(source_url) as conn:
        so.install(conn)
    _add(source_url, catalog, records, per_tx=50)
    log = tmp_path / "relay.log"
    crashed = _relay_process(isolated, source_url, log, SUPPLYBUS_CRASH_AT="relay-after-ack")
    assert crashed.wait(30) == 137, log.read_text()
    env = cli_env(isolated, Path(isolated.home))
    again = run_cli(
        "source-outbox", "relay", "--url", source_url, "--until-idle", "--idle-seconds", "0.5",
        env=env,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    messages = read_all(isolated, topic.name, topic.partitions, expect=600)
    counts = Counter(_ids(messages))
    first_round = {r["envelope"]["event_id"] for r in records[:200]}
    assert counts == Counter({r["envelope"]["event_id"]: 1 for r in records}) + Counter(first_round)
