"""The dead-letter workbench (`supplybus dlq list | show | park | unpark | skip | edit`) on the
real broker and database: dead letters made by the requisitions processor (an unknown item:
key held) and by raw bytes that do not decode; listing with groups, filters and pages; show of
both kinds; park/unpark; skip releasing the held events; edit validated and audited; every
action in the log; the listing on 100,000 dead letters; the pure path and value parsing."""

from __future__ import annotations

import copy
import datetime as dt
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
import pytest
from hypothesis import given
from hypothesis import strategies as st

from supplybus.adapters.kafka import make_producer
from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.masterdata.processor import processor as masterdata
from supplybus.consumers.procurement.processor import requisitions
from supplybus.consumers.runtime import dlq_patch, dlq_store
from supplybus.consumers.runtime.apply import BatchApplier
from supplybus.consumers.runtime.decode import BatchDecoder
from supplybus.consumers.runtime.dlq_gauges import DeadLetterGauges
from supplybus.consumers.runtime.runner import Runner
from supplybus.errors import ConfigError
from supplybus.events.catalog import EventCatalog
from supplybus.events.envelope import deterministic_id
from supplybus.metrics import Metrics
from supplybus.ops.cli.dlq import age, parse_since
from supplybus.producers.publisher import Publisher
from tests.helpers import InProcessCli
from tests.requisition_data import SAMPLE, TODAY, VALID, line, requisition
from tests.workers import fresh_group

Record = dict[str, Any]
AT = dt.datetime(TODAY.year, TODAY.month, TODAY.day, 9, 30, tzinfo=dt.UTC)
RAW = b"\xc3\x01not-avro-at-all" + bytes(range(40))
REQUISITIONS = json.loads(
    (Path(__file__).parent.parent / "schemas/procurement/RequisitionSubmitted.v1.avsc").read_text()
)


def _submitted(rid: str, item_id: str, n: int = 1) -> Record:
    item, price = VALID[0]
    ln = line(1, item, price)
    ln["item_id"] = item_id
    record = requisition([ln])
    record["requisition_id"] = rid
    envelope = record["envelope"]
    envelope["event_id"] = deterministic_id("test-dlq-workbench", rid, n)
    envelope["correlation_id"] = rid
    envelope["occurred_at"] = AT
    return record


def _run(settings: Settings, *processors: Any) -> None:
    assert Runner(settings, list(processors), until_idle=1.5, signals=False).run() == 0


def _json(result: Any) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _error(result: Any) -> str:
    """The one-line error of a refused command (exit 2, no traceback)."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def _log(cli: InProcessCli, dead_letter_id: str) -> list[tuple[str, str]]:
    shown = _json(cli("dlq", "show", dead_letter_id, "--json"))
    return [(e["action"], e["outcome"]) for e in shown["log"]]


def test_workbench_on_real_dead_letters(
    isolated: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    settings = fresh_group(isolated)
    catalog = EventCatalog.from_settings(settings)
    with Publisher.from_settings(settings) as pub:
        pub.publish_all(SAMPLE)
    _run(settings, masterdata)

    known = VALID[0][0].item_id
    missing = _submitted("REQ-A", "ITEM-9999")
    later = _submitted("REQ-A", known, 2)  # held behind REQ-A's dead letter
    fixable = _submitted("REQ-B", "ITEM-9998")
    with Publisher.from_settings(settings) as pub:
        pub.publish_all([missing, later, fixable])
    topic = catalog.topics.topic_for("RequisitionSubmitted").name
    producer = make_producer(settings)
    producer.produce(topic, RAW, b"RAW-1", headers=[("origin", b"foreign"), ("bin", b"\xff")])
    assert producer.flush(15) == 0
    _run(settings, requisitions())

    cli = InProcessCli(settings, tmp_path / "home", monkeypatch, capsys)
    listed = _json(cli("dlq", "list", "--json"))
    groups = {(g["processor"], g["error_code"]): g["count"] for g in listed["groups"]}
    assert groups == {("requisitions", "BUSINESS_RULE"): 2, ("requisitions", "DECODE"): 1}
    assert {g["topic"] for g in listed["groups"]} == {topic}
    by_code: dict[str, list[str]] = {}
    for r in listed["rows"]:
        by_code.setdefault(r["error_code"], []).append(r["dead_letter_id"])
    (raw_id,) = by_code["DECODE"]
    with connect(settings) as conn:
        ids = dict(
            conn.execute(
                "SELECT convert_from(key, 'UTF8'), dead_letter_id::text FROM dead_letters"
            ).fetchall()
        )
        original_b = conn.execute(
            "SELECT value FROM dead_letters WHERE dead_letter_id = %s", (ids["REQ-B"],)
        ).fetchone()
    a_id, b_id = ids["REQ-A"], ids["REQ-B"]
    assert ids["RAW-1"] == raw_id and listed["next_after"] is None

    # filters and pages
    assert len(_json(cli("dlq", "list", "--error", "DECODE", "--json"))["rows"]) == 1
    assert _json(cli("dlq", "list", "--processor", "nope", "--json"))["rows"] == []
    assert len(_json(cli("dlq", "list", "--topic", topic, "--since", "1h", "--json"))["rows"]) == 3
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    assert _json(cli("dlq", "list", "--since", future, "--json"))["groups"] == []
    paged: list[str] = []
    after: list[str] = []
    while True:
        page = _json(cli("dlq", "list", "--limit", "2", *after, "--json"))
        paged += [r["dead_letter_id"] for r in page["rows"]]
        if page["next_after"] is None:
            break
        after = ["--after", page["next_after"][:8]]
    assert paged == [r["dead_letter_id"] for r in listed["rows"]] and len(set(paged)) == 3
    text = cli("dlq", "list", "--limit", "1")
    assert text.returncode == 0 and "next page: --after" in text.stdout
    assert "BUSINESS_RULE" in text.stdout and "DECODE" in text.stdout
    usage = cli("dlq", "list", "--since", "yesterday")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr
    assert "Error: Invalid value for --since: 'yesterday'" in usage.stderr

    # show: undecodable (hex and the error), decodable (payload, held key)
    raw = _json(cli("dlq", "show", raw_id[:8], "--json"))
    assert raw["payload"]["hex"] == RAW.hex() and raw["payload"]["size"] == len(RAW)
    assert raw["payload"]["decode_error"].startswith("DECODE")
    assert raw["lineage"]["key"] == "RAW-1" and ["bin", "hex:ff"] in raw["headers"]
    assert ["origin", "foreign"] in raw["headers"] and raw["error"]["code"] == "DECODE"
    assert "do not decode" in _error(cli("dlq", "edit", raw_id, "--set", "requester_id=U-2"))
    shown = cli("dlq", "show", raw_id)
    assert shown.returncode == 0 and "does not decode" in shown.stdout
    assert RAW.hex()[:40] in shown.stdout.replace("\n", "")
    a = _json(cli("dlq", "show", a_id, "--json"))
    assert a["payload"]["decoded"]["requisition_id"] == "REQ-A"
    assert a["payload"]["decoded"]["lines"][0]["item_id"] == "ITEM-9999"
    assert a["event"]["correlation_id"] == "REQ-A" and a["attempts"] == 1
    assert a["held_keys"] == [
        {"key": "REQ-A", "held_since": a["held_keys"][0]["held_since"], "held_events": 1}
    ]
    text = cli("dlq", "show", a_id[:10])
    assert "ITEM-9999" in text.stdout and "keys held behind it" in text.stdout
    assert "no dead letter" in _error(cli("dlq", "show", "00000000"))
    assert "at least 8" in _error(cli("dlq", "show", "abc"))

    # park / unpark: only open <-> parked
    assert cli("dlq", "park", raw_id[:8], "--reason", "vendor asked to wait").returncode == 0
    open_ids = [r["dead_letter_id"] for r in _json(cli("dlq", "list", "--json"))["rows"]]
    assert raw_id not in open_ids and len(open_ids) == 2
    parked = _json(cli("dlq", "list", "--status", "parked", "--json"))
    assert [r["dead_letter_id"] for r in parked["rows"]] == [raw_id]
    assert f"{raw_id} is parked" in _error(cli("dlq", "park", raw_id, "--reason", "again"))
    assert "--reason" in _error(cli("dlq", "park", a_id, "--reason", " "))
    assert cli("dlq", "unpark", raw_id, "--as", "night-shift").returncode == 0
    assert f"{raw_id} is open" in _error(cli("dlq", "unpark", raw_id))
    assert cli("dlq", "park", raw_id, "--reason", "later").returncode == 0
    with connect(settings) as conn:
        held_raw = conn.execute(
            "SELECT count(*) FROM key_holds WHERE dead_letter_id = %s", (raw_id,)
        ).fetchone()
    assert held_raw == (1,), "a parked dead letter keeps its key held"
    skipped = cli("dlq", "skip", raw_id, "--reason", "test record")
    assert skipped.returncode == 0 and "1 hold(s) lifted" in skipped.stdout
    assert f"{raw_id} is resolved" in _error(cli("dlq", "skip", raw_id, "--reason", "x"))
    assert _log(cli, raw_id) == [
        ("park", "done"),
        ("unpark", "done"),
        ("park", "done"),
        ("skip", "done"),
    ]

    # a failure again (the replay of the original bytes) extends the failure history
    applier = BatchApplier(requisitions(), catalog, lambda t: f"{t}.dlq")
    with connect(settings) as conn:
        again = applier.replay(conn, b_id, BatchDecoder(catalog, ("RequisitionSubmitted",)))
        conn.commit()
    assert len(again.dead) == 1
    assert _log(cli, b_id) == [("failed", "failed-again")]

    # edit: refused values name the field; the event id cannot change; a correction is kept
    bad = _error(cli("dlq", "edit", b_id, "--set", "lines.0.quantity.value=-3"))
    assert "lines[0].quantity.value: must be > 0" in bad
    assert "lines.0.line_number: an integer" in _error(
        cli("dlq", "edit", b_id, "--set", "lines.0.line_number=one")
    )
    assert "no such field" in _error(cli("dlq", "edit", b_id, "--set", "lines.0.nope=1"))
    assert "envelope.event_id cannot change" in _error(
        cli("dlq", "edit", b_id, "--set", f"envelope.event_id={a['event']['event_id']}")
    )
    assert "FIELD=VALUE" in _error(cli("dlq", "edit", b_id, "--set", "novalue"))
    edited = cli(
        "dlq",
        "edit",
        b_id[:8],
        "--set",
        f"lines[0].item_id={known}",
        "--set",
        "justification=urgent restock",
        "--set",
        "lines.0.quantity.value=3.5",
    )
    assert edited.returncode == 0, edited.stderr
    assert f'lines.0.item_id: "ITEM-9998" -> "{known}"' in edited.stdout
    b = _json(cli("dlq", "show", b_id, "--json"))
    assert b["payload"]["decoded"]["lines"][0]["item_id"] == "ITEM-9998", "original kept"
    fixed = b["edited"]["decoded"]
    assert fixed["lines"][0]["item_id"] == known and fixed["justification"] == "urgent restock"
    assert fixed["lines"][0]["quantity"]["value"] == "3.500"
    assert fixed["envelope"]["event_id"] == fixable["envelope"]["event_id"]
    assert b["log"][-1]["detail"] == {
        "justification": [None, "urgent restock"],
        "lines.0.item_id": ["ITEM-9998", known],
        "lines.0.quantity.value": ["2.000", "3.500"],
    }
    assert "(edited)" in cli("dlq", "list", "--error", "BUSINESS_RULE").stdout
    # editing again starts from the edited version
    assert cli("dlq", "edit", b_id, "--set", "requester_id=U-9").returncode == 0
    again_shown = _json(cli("dlq", "show", b_id, "--json"))
    assert again_shown["edited"]["decoded"]["lines"][0]["item_id"] == known
    assert again_shown["edited"]["decoded"]["requester_id"] == "U-9"
    with connect(settings) as conn:
        value_now = conn.execute(
            "SELECT value FROM dead_letters WHERE dead_letter_id = %s", (b_id,)
        ).fetchone()
    assert value_now == original_b, "the original bytes never change"
    assert [x for x, _ in _log(cli, b_id)] == ["failed", "edit", "edit"]

    # skip releases the held key: the held event is applied when the processor runs again
    metrics = Metrics()
    DeadLetterGauges(settings, metrics).refresh()
    opened = metrics.registry.get_sample_value
    assert (
        opened(
            "supplybus_dead_letters_open",
            {"processor": "requisitions", "error_code": "BUSINESS_RULE"},
        )
        == 2
    )
    assert (opened("supplybus_dead_letter_oldest_age_seconds") or 0) > 0
    assert cli("dlq", "skip", a_id[:8], "--reason", "duplicate of REQ-A v2").returncode == 0
    _run(settings, requisitions())
    with connect(settings) as conn:
        causes = conn.execute(
            "SELECT causation_id FROM outbox WHERE correlation_id = 'REQ-A'"
            " AND event_type IN ('RequisitionValidated', 'RequisitionRejected')"
        ).fetchall()
        left = conn.execute(
            "SELECT (SELECT count(*) FROM held_events), (SELECT count(*) FROM key_holds"
            " WHERE dead_letter_id = %s), (SELECT status_reason FROM dead_letters"
            " WHERE dead_letter_id = %s)",
            (a_id, a_id),
        ).fetchone()
        logged = conn.execute(
            "SELECT DISTINCT correlation_id FROM dead_letter_log WHERE dead_letter_id = %s",
            (a_id,),
        ).fetchall()
    assert causes == [(later["envelope"]["event_id"],)], "the held event was applied, once"
    assert left == (0, 0, "duplicate of REQ-A v2") and logged == [("REQ-A",)]
    assert _log(cli, a_id) == [("skip", "done")]
    DeadLetterGauges(settings, metrics).refresh()
    assert (
        opened(
            "supplybus_dead_letters_open",
            {"processor": "requisitions", "error_code": "BUSINESS_RULE"},
        )
        == 1
    )
    assert (
        opened("supplybus_dead_letters_open", {"processor": "requisitions", "error_code": "DECODE"})
        is None
    )


_BULK = """
INSERT INTO dead_letters (processor, topic, partition, "offset", record_timestamp, key, value,
    event_type, correlation_id, error_class, error_code, message, stack_digest, dlq_topic,
    record_digest, dead_letter_id, status, first_failed_at, last_failed_at)
SELECT 'proc-' || (n % 4), 'topic.' || (n % 3) || '.v1', n % 3, n, now(), ('K' || n)::bytea,
    '\\xc301'::bytea, 'RequisitionSubmitted', 'REQ-' || n, 'BusinessRuleError',
    CASE WHEN n % 1000 = 1 THEN 'DECODE' ELSE 'BUSINESS_RULE' END,
    'item ITEM-' || n || ' is not in the item master', 'abc', 'topic.dlq', 'digest-' || n,
    gen_random_uuid(), CASE WHEN n % 10 = 0 THEN 'resolved' ELSE 'open' END,
    now() - make_interval(secs => 100000 - n), now() - make_interval(secs => 100000 - n)
FROM generate_series(1, 100000) AS n
"""


def test_list_and_show_on_100k_dead_letters(
    migrated: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """Not a timing assertion: 100,000 dead letters listed, filtered, paged and shown, with
    the time each took printed (pytest -s) and the plans checked to use the indexes."""
    with connect(migrated) as conn:
        conn.execute(_BULK)
        conn.execute("ANALYZE dead_letters")
        conn.commit()
        (deep_id, deep) = conn.execute(
            "SELECT id, dead_letter_id::text FROM dead_letters WHERE id = 90000"
        ).fetchone() or (0, "")
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                "EXPLAIN SELECT id FROM dead_letters WHERE status = 'open' AND id > 90000"
                " ORDER BY id LIMIT 50"
            ).fetchall()
        )
        assert "Index" in plan, plan
    cli = InProcessCli(migrated, tmp_path / "home", monkeypatch, capsys)
    timings: dict[str, float] = {}

    def timed(name: str, *args: str) -> Any:
        started = time.perf_counter()
        result = cli(*args)
        timings[name] = (time.perf_counter() - started) * 1000
        return _json(result) if "--json" in args else result

    first = timed("list (first page)", "dlq", "list", "--json")
    assert sum(g["count"] for g in first["groups"]) == 90000 and len(first["rows"]) == 50
    page = timed("list --after (page at row 90,000)", "dlq", "list", "--after", deep, "--json")
    assert page["rows"][0]["id"] > deep_id
    rare = timed("list --error DECODE", "dlq", "list", "--error", "DECODE", "--json")
    assert sum(g["count"] for g in rare["groups"]) == 100 and len(rare["rows"]) == 50
    narrow = timed(
        "list --processor --since 1h",
        "dlq",
        "list",
        "--processor",
        "proc-1",
        "--since",
        "1h",
        "--json",
    )
    assert narrow["rows"] and all(r["processor"] == "proc-1" for r in narrow["rows"])
    text = timed("list (table)", "dlq", "list", "--status", "all")
    assert text.returncode == 0 and "next page" in text.stdout
    shown = timed("show by prefix", "dlq", "show", deep[:8], "--json")
    assert shown["dead_letter_id"] == deep and shown["payload"]["decode_error"]

    metrics = Metrics()
    with connect(migrated) as conn:
        started = time.perf_counter()
        dlq_store.refresh_metrics(conn, metrics)
        timings["refresh_metrics"] = (time.perf_counter() - started) * 1000
    value = metrics.registry.get_sample_value
    total = sum(
        value("supplybus_dead_letters_open", {"processor": f"proc-{p}", "error_code": c}) or 0
        for p in range(4)
        for c in ("DECODE", "BUSINESS_RULE")
    )
    assert total == 90000 and (value("supplybus_dead_letter_oldest_age_seconds") or 0) > 99000
    print("\n100,000 dead letters: " + ", ".join(f"{k} {v:.0f} ms" for k, v in timings.items()))


# --- pure parts ------------------------------------------------------------------------


def test_values_are_parsed_to_the_field_type() -> None:
    def parsed(path: str, text: str) -> Any:
        return dlq_patch.parse_value(REQUISITIONS, dlq_patch.parse_path(path), text)

    assert parsed("lines.0.item_id", "ITEM-0002") == "ITEM-0002"
    assert parsed("lines[0].line_number", "3") == 3
    assert parsed("envelope.facility_id", "null") is None
    assert parsed("requester_id", "null") == "null", "a required string takes the text"
    assert parsed("envelope.facility_id", '"null"') == "null"
    assert parsed("grant_funded", "TRUE") is True
    assert parsed("lines.0.quantity.value", "1.5") == "1.5"  # converted by the validation
    assert parsed("need_by", "2026-12-01") == "2026-12-01"
    assert parsed("lines.0.quantity", '{"value": "1.5", "uom": "EA"}') == {
        "value": "1.5",
        "uom": "EA",
    }
    for path, text, said in [
        ("lines.0.line_number", "x", "lines.0.line_number: an integer, got 'x'"),
        ("grant_funded", "null", "grant_funded: cannot be null"),
        ("grant_funded", "yes", "true or false"),
        ("nope", "1", "nope: no such field in RequisitionSubmitted"),
        ("lines.0.quantity", "{", "JSON"),
    ]:
        with pytest.raises(ConfigError, match=said):
            parsed(path, text)


def test_sets_apply_in_order_and_keep_the_first_old_value() -> None:
    record = {"a": 1, "lines": [{"item_id": "X", "n": Decimal("1.000")}]}
    schema = {
        "type": "record",
        "name": "T",
        "fields": [
            {"name": "a", "type": "int"},
            {
                "name": "lines",
                "type": {
                    "type": "array",
                    "items": {
                        "type": "record",
                        "name": "L",
                        "fields": [
                            {"name": "item_id", "type": "string"},
                            {
                                "name": "n",
                                "type": {
                                    "type": "bytes",
                                    "logicalType": "decimal",
                                    "precision": 6,
                                    "scale": 3,
                                },
                            },
                        ],
                    },
                },
            },
        ],
    }
    changed, changes = dlq_patch.apply_sets(
        schema, record, [("lines.0.item_id", "Y"), ("a", "2"), ("lines[0].item_id", "Z")]
    )
    assert changed == {"a": 2, "lines": [{"item_id": "Z", "n": Decimal("1.000")}]}
    assert changes == {"lines.0.item_id": ("X", "Z"), "a": (1, 2)}
    assert record["lines"][0]["item_id"] == "X", "the input is not changed"
    with pytest.raises(ConfigError, match=r"lines.3: no such element \(1 in the list\)"):
        dlq_patch.apply_sets(schema, record, [("lines.3.item_id", "Y")])


@given(
    st.lists(
        st.one_of(st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True), st.integers(0, 999)),
        min_size=1,
        max_size=6,
    ),
    st.booleans(),
)
def test_paths_round_trip_in_both_spellings(parts: list[str | int], brackets: bool) -> None:
    dotted = ".".join(str(p) for p in parts)
    spelled = (
        "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")
        if brackets and not isinstance(parts[0], int)
        else dotted
    )
    assert dlq_patch.parse_path(spelled) == tuple(parts)
    assert dlq_patch.show_path(dlq_patch.parse_path(spelled)) == dotted


@given(st.text(max_size=30), st.text(max_size=30))
def test_an_assignment_splits_at_the_first_equals(field: str, value: str) -> None:
    text = f"{field}={value}"
    if "=" in field or not field.strip():
        return
    assert dlq_patch.parse_assignment(text) == (field.strip(), value)


def test_since_and_age() -> None:
    now = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
    assert parse_since("90m", now) == now - dt.timedelta(minutes=90)
    assert parse_since("2d", now) == now - dt.timedelta(days=2)
    assert parse_since("2026-11-29", now) == dt.datetime(2026, 11, 29, tzinfo=dt.UTC)
    assert parse_since("2026-11-29T08:00:00+01:00", now).utcoffset() == dt.timedelta(hours=1)
    assert [age(now - dt.timedelta(seconds=s), now) for s in (5, 300, 7200, 200000, -3)] == [
        "5s",
        "5m",
        "2h",
        "2d",
        "0s",
    ]


@given(st.integers(0, 10**6), st.sampled_from("smhdw"))
def test_relative_since_is_never_after_now(amount: int, unit: str) -> None:
    now = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
    try:
        assert parse_since(f"{amount}{unit}", now) <= now
    except click.BadParameter as exc:
        assert "too far back" in str(exc)


def test_a_filter_refuses_an_unknown_status() -> None:
    with pytest.raises(ConfigError, match="status 'closed': expected one of open"):
        dlq_store.DlqFilter(status="closed")
    assert copy.copy(dlq_store.DlqFilter()).status == "open"
