"""The schema files themselves: shared envelope, catalog coverage, docs, governance CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from fastavro.schema import parse_schema, to_parsing_canonical_form

from supplybus.config import Settings
from supplybus.events.docs import render
from supplybus.events.schema_store import default_store, schemas_dir
from supplybus.events.topics import load_catalog
from tests.helpers import run_cli

STORE = default_store()
CATALOG = load_catalog(Settings().topic_catalog)
REPO = Path(__file__).resolve().parent.parent


def _field_type(sv_raw: dict[str, object], name: str) -> object:
    return next(f["type"] for f in sv_raw["fields"] if f["name"] == name)  # type: ignore[attr-defined, index]


def test_every_schema_carries_the_same_envelope() -> None:
    forms = {
        sv.event_type: to_parsing_canonical_form(
            parse_schema(_field_type(dict(sv.raw), "envelope"))
        )
        for sv in STORE
    }
    assert len(set(forms.values())) == 1, sorted(forms)


def test_every_event_type_has_a_topic_and_every_topic_event_a_schema() -> None:
    assert set(STORE.event_types) == set(CATALOG.by_event_type)
    for event_type, topic in CATALOG.by_event_type.items():
        top_level = {f["name"] for f in STORE.latest(event_type).raw["fields"]}
        needed = {part.split("}")[0] for part in topic.key.split("{")[1:]}
        assert needed <= top_level, (event_type, needed - top_level)


def test_money_is_decimal_everywhere() -> None:
    text = "".join(sv.path.read_text() for sv in STORE)
    assert '"float"' not in text and '"double"' not in text


def test_docs_are_generated_from_the_schemas() -> None:
    committed = (REPO / "docs" / "events.md").read_text()
    assert committed == render(STORE, CATALOG), "run `supplybus schemas docs` and commit"


def test_schemas_check_passes_on_shipped_schemas() -> None:
    result = run_cli("schemas", "check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_schemas_check_reports_a_breaking_change(tmp_path: Path) -> None:
    root = tmp_path / "schemas"
    shutil.copytree(schemas_dir() / "finance", root / "finance")
    v1 = json.loads((root / "finance" / "InvoiceMatched.v1.avsc").read_text())
    v1["fields"].append({"name": "approved_by", "type": "string"})  # no default: breaks BACKWARD
    (root / "finance" / "InvoiceMatched.v2.avsc").write_text(json.dumps(v1))
    result = run_cli("schemas", "check", "--dir", str(root))
    assert result.returncode == 1
    assert "InvoiceMatched" in result.stdout and "INCOMPATIBLE" in result.stdout
    assert "approved_by" in result.stdout


def test_schemas_list_json() -> None:
    result = run_cli("schemas", "list", "--json")
    assert result.returncode == 0
    rows = json.loads(result.stdout)
    assert {r["event_type"] for r in rows} == set(STORE.event_types)
    assert all(len(r["fingerprint"]) == 16 for r in rows)


def test_schemas_check_help_states_the_stricter_logical_type_rules() -> None:
    result = run_cli("schemas", "check", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "precision and scale" in text
    assert "timestamp-millis to -micros" in text and "decimal to bytes" in text
    assert "schemas.lock" in text
