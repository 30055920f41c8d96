"""`dlq replay` on the real broker and database: a dry run that predicts exactly which dead
letters fail again and changes nothing (dead letters, ledger, holds, outbox, effects, topics);
a replay through the failed processor only (another processor of the topic sees nothing); the
held events released in order; a second replay that applies nothing; a failure again that
extends the dead letter's history; kill -9 in the middle of 10,000 replays, then the replay
again: each applied exactly once."""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from supplybus.adapters.kafka import read_records
from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.runtime.replay import Replayer
from supplybus.consumers.runtime.runner import Runner
from supplybus.events.catalog import EventCatalog
from supplybus.events.envelope import deterministic_id
from tests import flood
from tests.helpers import InProcessCli, cli_env, run_cli
from tests.processors import GATE_SETUP, gated_sums, keyed_sums
from tests.workers import fresh_group

KEYS, PER_KEY, GATE_N = 6, 8, 3
TABLES = ("dead_letters", "processed_events", "key_holds", "held_events", "outbox",
          "applied_effects")  # fmt: skip


def _on_topic(settings: Settings, topic: str) -> int:
    """How many records the topic holds (read until a quiet second)."""
    with closing(read_records(settings, {topic: 3}, quiet_s=1.0, timeout_s=20.0)) as records:
        return sum(1 for _ in records)


def _snapshot(settings: Settings) -> dict[str, list[Any]]:
    """Every row of the tables a replay may touch, as text."""
    with connect(settings) as conn:
        return {
            t: sorted(str(r) for r in conn.execute(f"SELECT * FROM {t}").fetchall()) for t in TABLES
        }


def _dead_letters(settings: Settings) -> dict[str, tuple[str, str, int]]:
    """dead_letter_id -> (item id, status, attempts)."""
    with connect(settings) as conn:
        rows = conn.execute(
            "SELECT dead_letter_id::text, convert_from(key, 'UTF8'), status, attempts"
            " FROM dead_letters WHERE processor = 'gated-sums'"
        ).fetchall()
    return {d: (k.split("@")[0], s, a) for d, k, s, a in rows}


@pytest.fixture
def gated(isolated: Settings) -> Settings:
    """Two keys gated at n=3 (dead letters, keys held with 5 events each); keyed-sums has
    applied the whole topic."""
    settings = fresh_group(isolated)
    records = flood.load("replay", keys=KEYS, per_key=PER_KEY)
    for r in records:
        if r["item_id"] in ("K0001", "K0002") and r["reference_id"] == str(GATE_N):
            r["reason"] = "gate"
    with connect(settings) as conn:
        conn.execute(GATE_SETUP)
        conn.execute("INSERT INTO blocked_items VALUES ('K0001'), ('K0002')")
        conn.commit()
    flood.publish(settings, records)
    for proc in (keyed_sums(), gated_sums()):  # one after the other: effects in that order
        assert Runner(settings, [proc], until_idle=1.5, signals=False, new=True).run() == 0
    return settings


def test_dry_run_predicts_and_changes_nothing_then_replay_releases_in_order(
    gated: Settings,
) -> None:
    settings = gated
    catalog = EventCatalog.from_settings(settings)
    dead = _dead_letters(settings)
    assert sorted(v[:2] for v in dead.values()) == [("K0001", "open"), ("K0002", "open")]
    by_item = {item: d for d, (item, _, _) in dead.items()}
    with connect(settings) as conn:
        conn.execute("DELETE FROM blocked_items WHERE item_id = 'K0001'")  # the fix, for one
        conn.commit()
    topic = catalog.topics.topic_for("StockMovement").name
    on_topic = _on_topic(settings, topic)
    before = _snapshot(settings)

    replayer = Replayer(gated_sums(), catalog, "tester")
    with connect(settings) as conn:
        predicted = replayer.replay(conn, sorted(dead), dry_run=True)
    assert {r.dead_letter_id: r.outcome for r in predicted} == {
        by_item["K0001"]: "would-apply",
        by_item["K0002"]: "would-fail",
    }
    assert "K0002 is blocked" in next(r.message for r in predicted if r.outcome == "would-fail")
    assert _snapshot(settings) == before, "a dry run changes nothing"

    with connect(settings) as conn:
        done = replayer.replay(conn, sorted(dead))
    assert {r.dead_letter_id: r.outcome for r in done} == {
        by_item["K0001"]: "applied",
        by_item["K0002"]: "failed-again",
    }
    applied: dict[str, list[int]] = {}
    for key, n, _ in flood.effects(settings):
        applied.setdefault(key, []).append(n)
    per_key = list(range(1, PER_KEY + 1))
    assert applied["K0001"] == per_key + per_key, "keyed-sums' run, then gated-sums' in order"
    assert applied["K0002"] == [*per_key, 1, 2], "still held behind its dead letter"
    after = _dead_letters(settings)
    assert after[by_item["K0001"]][1:] == ("replayed", 1)
    assert after[by_item["K0002"]][1:] == ("open", 2), "failed again: one more attempt"
    with connect(settings) as conn:
        log = conn.execute(
            "SELECT dead_letter_id::text, action, outcome FROM dead_letter_log ORDER BY id"
        ).fetchall()
        ledger = conn.execute(
            "SELECT processor, count(*) FROM processed_events GROUP BY 1 ORDER BY 1"
        ).fetchall()
        held = conn.execute("SELECT count(*) FROM held_events").fetchone()
    assert (by_item["K0001"], "replay", "applied") in log
    assert (by_item["K0002"], "dry-run", "would-fail") in log
    assert dict(ledger)["keyed-sums"] == KEYS * PER_KEY, "the other processor saw nothing again"
    assert held == (PER_KEY - GATE_N,)
    assert _on_topic(settings, topic) == on_topic, "nothing published to the source topic"

    with connect(settings) as conn:
        again = replayer.replay(conn, [by_item["K0001"]])
    assert [(r.outcome, r.message) for r in again] == [("already-applied", "replayed before")]
    assert len(flood.effects(settings)) == KEYS * PER_KEY * 2 - (PER_KEY - GATE_N + 1)


def test_replay_cli_dry_run_park_unpark_and_unknown_input(
    gated: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    cli = InProcessCli(gated, tmp_path / "home", monkeypatch, capsys)
    spec = "tests.processors:gated_sums"
    dry = cli("dlq", "replay", "--all", "--processor", spec, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert sorted(r["outcome"] for r in json.loads(dry.stdout)) == ["would-fail", "would-fail"]
    with connect(gated) as conn:
        conn.execute("DELETE FROM blocked_items")
        conn.commit()
    parked, other = (r["dead_letter_id"] for r in json.loads(dry.stdout))
    assert cli("dlq", "park", parked, "--reason", "later").returncode == 0
    done = cli("dlq", "replay", "--all", "--processor", spec)
    assert done.returncode == 0, done.stderr
    assert "1 applied" in done.stdout, "a parked dead letter stays out of --all"
    held = cli("dlq", "replay", parked, "--processor", spec, "--json")
    assert [r["outcome"] for r in json.loads(held.stdout)] == ["not-open"]
    assert cli("dlq", "unpark", parked).returncode == 0
    done = cli("dlq", "replay", "--all", "--processor", spec)
    assert done.returncode == 0 and "1 applied" in done.stdout, done.stderr
    assert flood.count_effects(gated) == KEYS * PER_KEY * 2
    nothing = cli("dlq", "replay", "--all", "--processor", spec)
    assert nothing.returncode == 0 and "no dead letter to replay" in nothing.stdout
    again = cli("dlq", "replay", other[:8], "--processor", spec)
    assert again.returncode == 0 and "already applied" in again.stdout
    bad = cli("dlq", "replay", "--all", "--processor", "no.such:thing")
    assert bad.returncode == 2 and "cannot import" in bad.stderr
    none = cli("dlq", "replay", "--processor", spec)
    assert none.returncode == 2 and "dead letter ids, --all or a filter" in none.stderr


def _insert_dead_letters(settings: Settings, n: int) -> str:
    """``n`` dead letters of gated-sums (StockMovements, one key each), as the runtime would
    have stored them; returns the source topic."""
    catalog = EventCatalog.from_settings(settings)
    topic = catalog.topics.topic_for("StockMovement").name
    with connect(settings) as conn, conn.cursor() as cur:
        with cur.copy(
            'COPY dead_letters (processor, topic, partition, "offset", record_timestamp, key,'
            " value, event_id, event_type, correlation_id, error_class, error_code, message,"
            " stack_digest, dlq_topic, record_digest, dead_letter_id) FROM STDIN"
        ) as copy:
            for i in range(n):
                out = catalog.prepare(flood.movement("crash-replay", i, 1))
                event_id = str(out.envelope["event_id"])
                copy.write_row((
                    "gated-sums", topic, 0, i, "2026-11-29T00:00:00Z", out.key, out.value,
                    event_id, "StockMovement", f"crash-replay-{i}", "BusinessRuleError",
                    "BUSINESS_RULE", "item blocked", "d" * 16, f"{topic}.dlq", f"digest-{i}",
                    deterministic_id("dead-letter", i),
                ))  # fmt: skip
        conn.commit()
    return topic


def test_kill_9_during_a_replay_of_10000_then_again_applies_each_once(
    isolated: Settings, tmp_path: Path
) -> None:
    n = 10_000
    _insert_dead_letters(isolated, n)
    env = cli_env(isolated, tmp_path / "home")
    args = ("dlq", "replay", "--all", "--processor", "tests.processors:gated_sums")
    crashed = run_cli(*args, env={**env, "SUPPLYBUS_CRASH_AT": "mid-replay:3"}, timeout=300)
    assert crashed.returncode == 137, crashed.stderr
    with connect(isolated) as conn:
        (replayed,) = conn.execute(
            "SELECT count(*) FROM dead_letters WHERE status = 'replayed'"
        ).fetchone() or (0,)
    assert replayed == 2000 and flood.count_effects(isolated) == 2000, "two chunks committed"

    again = run_cli(*args, env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"{n - 2000} applied" in again.stdout
    with connect(isolated) as conn:
        counts = conn.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM applied_effects"
        ).fetchone()
        statuses = conn.execute("SELECT status, count(*) FROM dead_letters GROUP BY 1").fetchall()
    assert counts == (n, n) and statuses == [("replayed", n)]
