"""The webhook receiver end to end: a real uvicorn server, the real database and broker.

Every case ends by running the outbox relay and reading the topic back: each accepted
delivery is published exactly once, and nothing else is."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.events import jsonio
from supplybus.events.catalog import EventCatalog
from supplybus.ops import embedded
from supplybus.producers.webhook import signature as sig
from supplybus.producers.webhook.app import create_app
from supplybus.producers.webhook.intake import event_id_for
from supplybus.producers.webhook.metrics import WebhookMetrics
from tests.helpers import cli_env, drain_relay, read_all, run_cli, wait_for
from tests.requisition_data import VALID, line, submitted

OLD, NEW = "old-secret-0123456789abcdef", "new-secret-0123456789abcdef"
PRIVATE = "Patient Jane Roe, bed 12"  # stands for personal data: never in a log line


@dataclass
class Served:
    url: str
    metrics: WebhookMetrics | None
    registry: CollectorRegistry

    def post(
        self,
        body: bytes,
        delivery: str | None,
        *,
        secret: str = NEW,
        stamp: int | None = None,
        event_type: str = "RequisitionSubmitted",
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        ts = str(int(time.time()) if stamp is None else stamp)
        sent = {
            "Content-Type": "application/json",
            sig.TIMESTAMP_HEADER: ts,
            sig.SIGNATURE_HEADER: sig.sign(secret, ts, body),
        }
        if delivery is not None:
            sent["X-Supplybus-Delivery"] = delivery
        sent.update(headers or {})
        return httpx.post(f"{self.url}/v1/events/{event_type}", content=body, headers=sent)

    def count(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


@contextmanager
def serving(settings: Settings, **overrides: Any) -> Iterator[Served]:
    """The app on uvicorn in a thread, on a free port of 127.0.0.1."""
    configured = replace(settings, **{"webhook_secrets": NEW, **overrides})
    registry = CollectorRegistry()
    metrics = WebhookMetrics(registry)
    app = create_app(configured, metrics)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=10, what="uvicorn started")
    try:
        yield Served(f"http://127.0.0.1:{port}", metrics, registry)
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def requisition(rid: str = "REQ-W1", *, note: str | None = PRIVATE) -> dict[str, Any]:
    record = submitted(rid, [line(1, *VALID[0])])
    del record["envelope"]["event_id"]  # derived from the delivery id
    record["justification"] = note
    parsed: dict[str, Any] = json.loads(jsonio.dumps(record))
    return parsed


def body_of(record: dict[str, Any]) -> bytes:
    return json.dumps(record).encode()


def stored(settings: Settings) -> tuple[list[tuple[str, str]], list[str]]:
    """(delivery id, event id) rows, and the event ids in the outbox from the webhook."""
    with connect(settings) as conn:
        deliveries = conn.execute(
            "SELECT delivery_id, event_id::text FROM webhook_deliveries ORDER BY delivery_id"
        ).fetchall()
        events = conn.execute(
            "SELECT event_id::text FROM outbox WHERE source = 'webhook' ORDER BY id"
        ).fetchall()
    return [(d, e) for d, e in deliveries], [e for (e,) in events]


def relay_and_read(settings: Settings, expect: int) -> list[str]:
    """Run the relay until the outbox is drained; the event ids on the requisitions topic."""
    drain_relay(settings)
    topic = EventCatalog.from_settings(settings).topics.topic_for("RequisitionSubmitted")
    records = read_all(settings, topic.name, topic.partitions, expect, timeout=10 if expect else 3)
    return [dict(m.headers() or [])["sb-event-id"].decode() for m in records]


def test_a_valid_delivery_is_accepted_once_durable_and_published_once(
    isolated: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="supplybus.webhook")
    with serving(isolated) as served:
        answer = served.post(body_of(requisition()), "dlv-1")
    assert answer.status_code == 202, answer.text
    expected = event_id_for("dlv-1")
    assert answer.json() == {"status": "accepted", "event_id": expected, "delivery_id": "dlv-1"}
    assert stored(isolated) == ([("dlv-1", expected)], [expected])
    assert served.count("supplybus_webhook_accepted_total", event_type="RequisitionSubmitted") == 1
    assert relay_and_read(isolated, 1) == [expected]
    lines = [r for r in caplog.records if r.name == "supplybus.webhook"]
    assert any("202 accepted delivery=dlv-1" in r.getMessage() for r in lines)
    assert all(getattr(r, "correlation_id", None) == "REQ-W1" for r in lines)
    text = caplog.text
    assert NEW not in text and PRIVATE not in text and "Jane" not in text


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ({"secret": "a-secret-we-do-not-know-01"}, "signature"),
        ({"headers": {sig.SIGNATURE_HEADER: ""}}, "signature"),
        ({"stamp": int(time.time()) - 301}, "timestamp"),
        ({"stamp": int(time.time()) + 3600}, "timestamp"),
        ({"headers": {sig.TIMESTAMP_HEADER: "yesterday"}}, "timestamp"),
    ],
)
def test_a_bad_signature_or_stale_timestamp_is_401_and_stores_nothing(
    isolated: Settings, how: dict[str, Any], reason: str
) -> None:
    with serving(isolated) as served:
        answer = served.post(body_of(requisition()), "dlv-401", **how)
    assert answer.status_code == 401
    assert answer.json() == {"error": reason}  # which check failed, nothing more
    assert served.count("supplybus_webhook_rejected_total", reason=reason) == 1
    assert stored(isolated) == ([], [])
    assert relay_and_read(isolated, 0) == []


def test_a_tampered_body_fails_the_signature(isolated: Settings) -> None:
    good = body_of(requisition())
    ts = str(int(time.time()))
    tampered = good.replace(b'"REQ-W1"', b'"REQ-W2"')
    with serving(isolated) as served:
        answer = httpx.post(
            f"{served.url}/v1/events/RequisitionSubmitted",
            content=tampered,
            headers={
                "X-Supplybus-Delivery": "dlv-t",
                sig.TIMESTAMP_HEADER: ts,
                sig.SIGNATURE_HEADER: sig.sign(NEW, ts, good),
            },
        )
    assert (answer.status_code, answer.json()) == (401, {"error": "signature"})
    assert stored(isolated) == ([], [])


def test_rotation_old_and_new_secret_both_accepted_then_the_old_one_retired(
    isolated: Settings,
) -> None:
    with serving(isolated, webhook_secrets=f"{OLD},{NEW}") as served:
        by_old = served.post(body_of(requisition("REQ-R1")), "dlv-old", secret=OLD)
        by_new = served.post(body_of(requisition("REQ-R2")), "dlv-new", secret=NEW)
    with serving(isolated, webhook_secrets=NEW) as served:
        retired = served.post(body_of(requisition("REQ-R3")), "dlv-retired", secret=OLD)
    assert (by_old.status_code, by_new.status_code, retired.status_code) == (202, 202, 401)
    ids = sorted([event_id_for("dlv-old"), event_id_for("dlv-new")])
    assert sorted(stored(isolated)[1]) == ids
    assert sorted(relay_and_read(isolated, 2)) == ids


def test_an_invalid_body_is_422_naming_each_field(isolated: Settings) -> None:
    record = requisition()
    record["lines"][0]["quantity"]["value"] = "-3"
    del record["envelope"]["entity_id"]
    with serving(isolated) as served:
        answer = served.post(body_of(record), "dlv-422")
        not_json = served.post(b"{not json", "dlv-422b")
    assert answer.status_code == 422
    errors = answer.json()["errors"]
    fields = {e["field"] for e in errors}
    assert {"lines[0].quantity.value", "envelope.entity_id"} <= fields, errors
    value_error = next(e for e in errors if e["field"] == "lines[0].quantity.value")
    assert value_error["expected"] == "must be > 0" and value_error["got"] == "-3.000"
    assert not_json.status_code == 422 and not_json.json()["errors"][0]["field"] == ""
    assert served.count("supplybus_webhook_rejected_total", reason="invalid") == 2
    assert stored(isolated) == ([], [])
    assert relay_and_read(isolated, 0) == []


def test_unknown_event_type_and_bad_delivery_id_store_nothing(isolated: Settings) -> None:
    body = body_of(requisition())
    with serving(isolated) as served:
        unknown = served.post(body, "dlv-x", event_type="NoSuchEvent")
        missing = served.post(body, None)
        spaced = served.post(body, "has space")
    assert (unknown.status_code, unknown.json()["error"]) == (404, "unknown_type")
    assert (missing.status_code, missing.json()["error"]) == (400, "delivery_id")
    assert spaced.status_code == 400
    assert stored(isolated) == ([], [])


def test_duplicate_deliveries_write_nothing_twice(isolated: Settings) -> None:
    body, other, raced = (body_of(requisition(r)) for r in ("REQ-D1", "REQ-D2", "REQ-D3"))
    with serving(isolated) as served:
        first = served.post(body, "dlv-dup")
        retry = served.post(body, "dlv-dup", stamp=int(time.time()) + 1)  # re-signed later
        ts = str(int(time.time()))
        signed = {sig.TIMESTAMP_HEADER: ts, sig.SIGNATURE_HEADER: sig.sign(NEW, ts, other)}
        original = served.post(other, "dlv-replay-a", headers=signed)
        replay = served.post(other, "dlv-replay-b", headers=signed)  # the same signed request
        reused = served.post(body_of(requisition("REQ-OTHER")), "dlv-dup")
        with ThreadPoolExecutor(8) as pool:  # eight copies of one new delivery at once
            racing = list(pool.map(lambda _: served.post(raced, "dlv-race"), range(8)))
    first_id = event_id_for("dlv-dup")
    assert (first.status_code, retry.status_code) == (202, 200)
    assert retry.json() == {"status": "duplicate", "event_id": first_id, "delivery_id": "dlv-dup"}
    assert (original.status_code, replay.status_code) == (202, 200)
    assert replay.json()["event_id"] == event_id_for("dlv-replay-a")
    assert reused.status_code == 409 and reused.json()["event_id"] == first_id
    assert sorted(r.status_code for r in racing) == [200] * 7 + [202]
    assert {r.json()["event_id"] for r in racing} == {event_id_for("dlv-race")}
    expected = sorted(event_id_for(d) for d in ("dlv-dup", "dlv-replay-a", "dlv-race"))
    deliveries, events = stored(isolated)
    assert sorted(events) == expected and len(deliveries) == 3
    assert served.count("supplybus_webhook_duplicates_total") == 9
    assert served.count("supplybus_webhook_rejected_total", reason="conflict") == 1
    assert sorted(relay_and_read(isolated, 3)) == expected


def test_one_event_id_in_two_deliveries_is_one_event(isolated: Settings) -> None:
    record = requisition()
    record["envelope"]["event_id"] = str(uuid.uuid4())
    with serving(isolated) as served:
        first = served.post(body_of(record), "dlv-e1")
        second = served.post(body_of(record), "dlv-e2")
    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json()["event_id"] == second.json()["event_id"] == record["envelope"]["event_id"]
    assert relay_and_read(isolated, 1) == [record["envelope"]["event_id"]]


def test_an_oversized_body_is_413_declared_or_streamed(isolated: Settings) -> None:
    record = requisition(note="x" * 3000)
    body = body_of(record)
    with serving(isolated, webhook_max_bytes=2048) as served:
        declared = served.post(body, "dlv-big")

        def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
            for start in range(0, len(body), 512):
                yield body[start : start + 512]

        ts = str(int(time.time()))
        streamed = httpx.post(
            f"{served.url}/v1/events/RequisitionSubmitted",
            content=chunks(),
            headers={
                "X-Supplybus-Delivery": "dlv-big-2",
                sig.TIMESTAMP_HEADER: ts,
                sig.SIGNATURE_HEADER: sig.sign(NEW, ts, body),
            },
        )
        small = served.post(body_of(requisition(note=None)), "dlv-small")
    assert (declared.status_code, declared.json()) == (
        413,
        {"error": "too_large", "limit_bytes": 2048},
    )
    assert streamed.status_code == 413
    assert small.status_code == 202
    assert served.count("supplybus_webhook_rejected_total", reason="too_large") == 2
    assert stored(isolated)[1] == [event_id_for("dlv-small")]
    assert relay_and_read(isolated, 1) == [event_id_for("dlv-small")]


def test_overload_is_429_and_the_request_in_hand_completes(isolated: Settings) -> None:
    with serving(isolated, webhook_max_concurrency=1) as served, connect(isolated) as blocker:
        blocker.execute("LOCK TABLE webhook_deliveries IN EXCLUSIVE MODE")  # holds the first
        with ThreadPoolExecutor(1) as pool:
            slow = pool.submit(served.post, body_of(requisition("REQ-S")), "dlv-slow")
            wait_for(
                lambda: served.count("supplybus_webhook_in_flight") == 1,
                timeout=10,
                what="the first request in hand",
            )
            busy = served.post(body_of(requisition("REQ-B")), "dlv-busy")
            blocker.rollback()
            first = slow.result(timeout=20)
        after = served.post(body_of(requisition("REQ-B")), "dlv-busy")
    assert (busy.status_code, busy.json(), busy.headers["Retry-After"]) == (
        429,
        {"error": "busy"},
        "1",
    )
    assert (first.status_code, after.status_code) == (202, 202)
    expected = sorted([event_id_for("dlv-slow"), event_id_for("dlv-busy")])
    assert sorted(relay_and_read(isolated, 2)) == expected


def test_the_broker_down_does_not_matter_the_outbox_holds_the_event(isolated: Settings) -> None:
    no_broker = replace(isolated, kafka_bootstrap_servers=f"127.0.0.1:{embedded.free_port()}")
    with serving(no_broker) as served:
        answer = served.post(body_of(requisition()), "dlv-nb")
    assert answer.status_code == 202
    assert relay_and_read(isolated, 1) == [event_id_for("dlv-nb")]


def test_database_down_is_503_never_202_and_the_retry_is_accepted_once(
    isolated: Settings, services_home: Path
) -> None:
    if os.environ.get("DATABASE_URL"):
        pytest.skip("stops the embedded PostgreSQL; DATABASE_URL names an external one")
    body = body_of(requisition())
    with serving(isolated) as served:
        warm = served.post(body_of(requisition("REQ-WARM")), "dlv-warm")  # pools a connection
        embedded.stop_postgres(services_home)
        try:
            down = [served.post(body, "dlv-down") for _ in range(3)]
        finally:
            embedded.start_postgres(services_home)
        back = served.post(body, "dlv-down")
        again = served.post(body, "dlv-down")
    assert warm.status_code == 202
    assert [r.status_code for r in down] == [503] * 3
    assert down[0].json() == {"error": "unavailable"} and down[0].headers["Retry-After"] == "5"
    assert (back.status_code, again.status_code) == (202, 200)
    assert served.count("supplybus_webhook_rejected_total", reason="unavailable") == 3
    expected = sorted([event_id_for("dlv-warm"), event_id_for("dlv-down")])
    assert sorted(stored(isolated)[1]) == expected
    assert sorted(relay_and_read(isolated, 2)) == expected


def test_an_unreachable_database_url_is_503(isolated: Settings) -> None:
    closed = f"postgresql://sb:pw@127.0.0.1:{embedded.free_port()}/sb"
    with serving(isolated, database_url=closed, connect_timeout_s=1.0) as served:
        answer = served.post(body_of(requisition()), "dlv-closed")
    assert (answer.status_code, answer.json()) == (503, {"error": "unavailable"})
    assert stored(isolated) == ([], [])


@hsettings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzzed_signed_bodies_get_a_4xx_or_are_accepted_never_a_5xx(
    fuzz_server: tuple[Served, Settings], data: st.DataObject
) -> None:
    served, _ = fuzz_server
    record = requisition(f"REQ-F{data.draw(st.integers(0, 10**6))}")
    leaves = st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.just([])
    kind = data.draw(st.sampled_from(["bytes", "replace", "drop"]))
    if kind == "bytes":
        body = data.draw(st.binary(max_size=200))
    else:
        target = (
            record
            if kind == "drop"
            else data.draw(
                st.sampled_from(
                    [record, record["envelope"], record["lines"][0], record["lines"][0]["quantity"]]
                )
            )
        )
        key = data.draw(st.sampled_from(sorted(target)))
        if kind == "drop":
            del target[key]
        else:
            target[key] = data.draw(leaves)
        body = body_of(record)
    answer = served.post(body, f"dlv-fuzz-{uuid.uuid4().hex}")
    assert answer.status_code in (202, 422), answer.text


@pytest.fixture(scope="module")
def fuzz_server(
    kafka_bootstrap: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Served, Settings]]:
    from supplybus.ops import migrate

    settings = Settings(
        home=tmp_path_factory.mktemp("fuzz"),
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=database_url,
        db_schema=f"t_{uuid.uuid4().hex[:12]}",
    )
    migrate.migrate(settings)
    with serving(settings) as served:
        yield served, settings


def test_cli_serves_until_sigterm_and_refuses_bad_setups(
    isolated: Settings, tmp_path: Path
) -> None:
    env = cli_env(isolated, tmp_path / "home") | {"SUPPLYBUS_LOG_LEVEL": "INFO"}
    no_secret = run_cli("serve", "webhook", "--port", str(embedded.free_port()), env=env)
    assert no_secret.returncode == 2
    assert no_secret.stderr.strip().splitlines() == [
        "error: SUPPLYBUS_WEBHOOK_SECRETS: required by `serve webhook` (one secret, or two "
        "comma-separated while rotating)"
    ]
    env["SUPPLYBUS_WEBHOOK_SECRETS"] = f"{NEW},{OLD}"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy_port = str(taken.getsockname()[1])
        in_use = run_cli("serve", "webhook", "--port", busy_port, env=env)
    assert in_use.returncode == 2 and "cannot listen" in in_use.stderr
    assert "Traceback" not in in_use.stderr and len(in_use.stderr.strip().splitlines()) == 1
    port = embedded.free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "supplybus.ops.cli", "serve", "webhook", "--port", str(port)],
        env={k: v for k, v in os.environ.items() if k not in env} | env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _healthy(url), timeout=30, what="the CLI's receiver answering")
        answer = Served(url, None, CollectorRegistry()).post(
            body_of(requisition()), "dlv-cli", secret=OLD
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert answer.status_code == 202, answer.text
    assert proc.returncode == 0, err
    logged = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    ours = [x for x in logged if x["logger"] == "supplybus.webhook"]
    assert ours and ours[0]["correlation_id"] == "REQ-W1" and ours[0]["event_id"]
    assert NEW not in err and OLD not in err and PRIVATE not in err
    assert relay_and_read(isolated, 1) == [event_id_for("dlv-cli")]


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
