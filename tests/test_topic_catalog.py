"""The topic catalog: loading rules (pure) and apply/drift against the real broker."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from supplybus.config import Settings
from supplybus.errors import CatalogError
from supplybus.events.topics import load_catalog
from supplybus.ops.topic_admin import apply, inspect
from tests.helpers import cli_env, run_cli

SHIPPED = Settings().topic_catalog


def _write(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "topics.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _stream(name: str, **extra: object) -> dict[str, Any]:
    return {"name": name, "key": "{id}", "events": [f"E{uuid.uuid4().hex[:6]}"], **extra}


def test_shipped_catalog_derives_lanes_and_dead_letter_topics() -> None:
    catalog = load_catalog(SHIPPED)
    req = catalog.topic("procurement.requisitions.v1")
    assert req.dlq == "procurement.requisitions.v1.dlq"
    assert catalog.topic("procurement.requisitions.v1.critical").lane == "critical"
    assert catalog.topic_for("RequisitionSubmitted", "CRITICAL").name.endswith(".critical")
    assert catalog.topic_for("RequisitionSubmitted", "ROUTINE") is req
    assert catalog.topic("masterdata.items.v1").configs["cleanup.policy"] == "compact"
    for t in catalog.topics:
        if t.role == "stream":
            assert t.dlq in catalog.by_name, t.name


def test_key_template_is_filled_from_event_fields() -> None:
    stock = load_catalog(SHIPPED).topic("inventory.stock-movements.v1")
    assert stock.key_for({"item_id": "I1", "location_id": "L9"}) == "I1@L9"
    with pytest.raises(CatalogError, match="needs field 'location_id'"):
        stock.key_for({"item_id": "I1"})


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"topics": "nope"}, "expected a mapping with a 'topics' list"),
        ({"topics": [{"name": "Bad Name", "key": "{a}", "events": ["E"]}]}, "topics\\[0\\].name"),
        ({"topics": [{"name": "a.b.v1", "key": "nokey", "events": ["E"]}]}, "a.b.v1.key"),
        ({"topics": [{"name": "a.b.v1", "key": "{a}", "events": []}]}, "a.b.v1.events"),
        (
            {"topics": [{"name": "a.b.v1", "key": "{a}", "events": ["E"], "partitions": 0}]},
            "a.b.v1.partitions: expected a positive integer",
        ),
        (
            {"topics": [{"name": "a.b.v1", "key": "{a}", "events": ["E"], "colour": "red"}]},
            "unknown key\\(s\\) colour",
        ),
        (
            {
                "topics": [
                    {"name": "a.b.v1", "key": "{a}", "events": ["E"]},
                    {"name": "a.c.v1", "key": "{a}", "events": ["E"]},
                ]
            },
            "event type E is on a.b.v1 and a.c.v1",
        ),
    ],
)
def test_bad_catalog_names_the_entry(tmp_path: Path, doc: object, message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        load_catalog(_write(tmp_path, doc))


def test_apply_creates_missing_then_reports_partition_drift_without_changing_it(
    settings: Settings, tmp_path: Path
) -> None:
    name = f"test.drift-{uuid.uuid4().hex[:8]}.v1"
    doc: dict[str, Any] = {"defaults": {"partitions": 2}, "topics": [_stream(name, compacted=True)]}
    catalog = load_catalog(_write(tmp_path, doc))
    created = apply(settings, catalog)
    assert {s.spec.name: s.status for s in created} == {name: "created", f"{name}.dlq": "created"}
    assert all(s.status == "ok" for s in inspect(settings, catalog))

    doc["topics"][0]["partitions"] = 5
    changed = load_catalog(_write(tmp_path, doc))
    states = {s.spec.name: s for s in apply(settings, changed)}
    assert states[name].status == "drift"
    assert states[name].drift == ("partitions: catalog 5, broker 2",)
    assert states[name].partitions == 2  # nothing destructive: the broker keeps 2

    env = cli_env(replace(settings, topic_catalog=tmp_path / "topics.yaml"), tmp_path)
    cli = run_cli("topics", "apply", "--json", env=env)
    assert cli.returncode == 1, cli.stderr
    assert "partitions: catalog 5, broker 2" in cli.stdout
    still = {s.spec.name: s for s in inspect(settings, changed)}
    assert still[name].partitions == 2


def test_config_drift_is_reported(settings: Settings, tmp_path: Path) -> None:
    name = f"test.cfg-{uuid.uuid4().hex[:8]}.v1"
    doc: dict[str, Any] = {"topics": [_stream(name, configs={"retention.ms": "1000"})]}
    apply(settings, load_catalog(_write(tmp_path, doc)))
    doc["topics"][0]["configs"] = {"retention.ms": "2000"}
    states = {s.spec.name: s for s in inspect(settings, load_catalog(_write(tmp_path, doc)))}
    assert states[name].drift == ("retention.ms: catalog 2000, broker 1000",)


def test_topics_list_json_via_cli(settings: Settings, tmp_path: Path) -> None:
    doc = {"topics": [_stream(f"test.list-{uuid.uuid4().hex[:8]}.v1", critical_lane=True)]}
    path = _write(tmp_path, doc)
    env = cli_env(replace(settings, topic_catalog=path), tmp_path)
    listed = run_cli("topics", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["status"] for r in rows] == ["missing"] * 4
    assert {r["lane"] for r in rows} == {"routine", "critical"}
    assert run_cli("topics", "apply", env=env).returncode == 0
    rows = json.loads(run_cli("topics", "list", "--json", env=env).stdout)
    assert [r["status"] for r in rows] == ["ok"] * 4
