"""Schema versions by number: changes the fingerprint cannot see, the lock of released files."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from supplybus.errors import ConfigError
from supplybus.events import schema_lock
from supplybus.events.governance import check_store
from supplybus.events.samples import sample_record
from supplybus.events.schema_store import default_store, load_store, schemas_dir
from supplybus.events.single_object import SingleObjectCodec
from tests.helpers import run_cli

SHIPPED = default_store()
V1 = SHIPPED.latest("StockMovement")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A copy of the shipped schemas (with compatibility.yaml and schemas.lock) to change."""
    target = tmp_path / "schemas"
    shutil.copytree(schemas_dir(), target, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return target


def _write(root: Path, version: int, raw: dict[str, Any]) -> Path:
    path = root / "inventory" / f"StockMovement.v{version}.avsc"
    path.write_text(json.dumps(raw, indent=2))
    return path


def _field(raw: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in raw["fields"] if f["name"] == name)


def _doc_only(raw: dict[str, Any]) -> None:
    raw["doc"] = "A change of stock at a location (reworded)."
    _field(raw, "reason")["doc"] = "Why, in the operator's words."


def _default_only(raw: dict[str, Any]) -> None:
    _field(raw, "location_id")["default"] = "MAIN"


def _alias_only(raw: dict[str, Any]) -> None:
    _field(raw, "item_id")["aliases"] = ["sku"]
    raw["aliases"] = ["InventoryMovement"]


CHANGES: dict[str, Callable[[dict[str, Any]], None]] = {
    "doc": _doc_only,
    "default": _default_only,
    "alias": _alias_only,
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_change_the_fingerprint_cannot_see_is_a_version(root: Path, change: str) -> None:
    v2 = copy.deepcopy(dict(V1.raw))
    CHANGES[change](v2)
    _write(root, 2, v2)
    store = load_store(root)
    first, second = store.versions("StockMovement")
    assert second.version == 2 and second.fingerprint == first.fingerprint
    assert store.by_fp(first.fingerprint) is second  # the newest version decodes
    [verdict] = [v for v in check_store(store) if v.event_type == "StockMovement"]
    assert verdict.ok and verdict.versions == 2 and verdict.unreleased == (2,)


def test_a_revert_is_a_version(root: Path) -> None:
    v2 = copy.deepcopy(dict(V1.raw))
    v2["fields"].append({"name": "bin", "type": "string", "default": "MAIN"})
    _write(root, 2, v2)
    _write(root, 3, dict(V1.raw))  # back to v1
    store = load_store(root)
    v1, v2_, v3 = store.versions("StockMovement")
    assert v3.fingerprint == v1.fingerprint != v2_.fingerprint
    assert store.by_fp(v1.fingerprint) is v3
    result = run_cli("schemas", "check", "--dir", str(root))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "StockMovement v2, StockMovement v3" in result.stdout  # not yet released


def test_records_of_versions_sharing_a_fingerprint_decode_as_the_newest(root: Path) -> None:
    v2 = copy.deepcopy(dict(V1.raw))
    _default_only(v2)
    _write(root, 2, v2)
    old, new = SingleObjectCodec(SHIPPED), SingleObjectCodec(load_store(root))
    record = sample_record(V1, seed=5)
    data = old.encode(record)
    assert new.encode(record) == data  # same fingerprint, same body
    decoded = new.decode(data)
    assert decoded.version == 2 and decoded.record["item_id"] == record["item_id"]


def test_decimal_scale_change_is_refused_with_the_decimal_reason(root: Path) -> None:
    v2 = copy.deepcopy(dict(V1.raw))
    quantity = _field(v2, "quantity")["type"]
    _field(quantity, "value")["type"]["scale"] = 2
    _write(root, 2, v2)
    result = run_cli("schemas", "check", "--dir", str(root))
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(
        "/fields/quantity/fields/value: BACKWARD v2 reading v1: "
        "decimal precision/scale differ: writer (12,3), reader (12,2)" in line
        for line in lines
    ), result.stdout
    assert any(
        "v1 and v2 share fingerprint" in line and "/fields/quantity/fields/value" in line
        for line in lines
    ), result.stdout
    assert "same schema" not in result.stdout + result.stderr


def test_logical_type_change_names_the_stricter_rule(root: Path) -> None:
    v2 = copy.deepcopy(dict(V1.raw))
    _field(v2, "expiry_date")["type"] = ["null", {"type": "long"}]  # date (int) to long
    _write(root, 2, v2)
    [verdict] = [v for v in check_store(load_store(root)) if v.event_type == "StockMovement"]
    [problem] = verdict.problems
    assert problem.path == "/fields/expiry_date/1"
    assert "logicalType differs: writer date, reader none" in problem.reason
    assert "stricter than Avro" in problem.reason


def test_a_released_schema_edited_in_place_fails_check(root: Path) -> None:
    path = root / "inventory" / "StockMovement.v1.avsc"
    raw = json.loads(path.read_text())
    _doc_only(raw)  # the fingerprint stays: only the lock can see it
    path.write_text(json.dumps(raw))
    result = run_cli("schemas", "check", "--dir", str(root))
    assert result.returncode == 1
    [line] = [x for x in result.stdout.splitlines() if "edited in place" in x]
    assert line.strip().startswith(f"{path}: released version edited in place")
    assert "add StockMovement.v2.avsc instead" in line
    assert "REFUSED" in result.stdout


def test_reformatting_a_released_schema_is_not_an_edit(root: Path) -> None:
    path = root / "inventory" / "StockMovement.v1.avsc"
    path.write_text(json.dumps(json.loads(path.read_text()), indent=8))
    assert all(v.ok for v in check_store(load_store(root)))


def test_a_released_schema_deleted_fails_check(root: Path) -> None:
    (root / "inventory" / "StockMovement.v1.avsc").unlink()
    [verdict] = [v for v in check_store(load_store(root)) if v.event_type == "StockMovement"]
    assert verdict.versions == 0 and not verdict.ok
    assert "released StockMovement v1 has no StockMovement.v1.avsc" in verdict.refusals[0]


def test_lock_appends_new_versions_and_never_rewrites(root: Path) -> None:
    lock = root / schema_lock.LOCK_FILE
    before = lock.read_text()
    v2 = copy.deepcopy(dict(V1.raw))
    _alias_only(v2)
    _write(root, 2, v2)
    result = run_cli("schemas", "lock", "--dir", str(root))
    assert result.returncode == 0, result.stdout + result.stderr
    after = lock.read_text()
    assert after.startswith(before)
    sv2 = load_store(root).version("StockMovement", 2)
    assert after[len(before) :] == f"StockMovement v2 {sv2.content_hash}\n"
    again = run_cli("schemas", "lock", "--dir", str(root))
    assert "nothing to lock" in again.stdout and lock.read_text() == after


def test_lock_refuses_while_a_released_file_is_edited(root: Path) -> None:
    lock = root / schema_lock.LOCK_FILE
    before = lock.read_text()
    path = root / "inventory" / "StockMovement.v1.avsc"
    raw = json.loads(path.read_text())
    _default_only(raw)
    path.write_text(json.dumps(raw))
    _write(root, 2, dict(V1.raw))
    result = run_cli("schemas", "lock", "--dir", str(root))
    assert result.returncode == 1
    assert "nothing locked" in result.stdout and "edited in place" in result.stdout
    assert lock.read_text() == before


def test_a_malformed_lock_line_is_named(root: Path) -> None:
    lock = root / schema_lock.LOCK_FILE
    lock.write_text(lock.read_text() + "StockMovement 2 abc\n")
    with pytest.raises(ConfigError, match=r"schemas.lock: line \d+: expected 'EventType vN"):
        check_store(load_store(root))
    result = run_cli("schemas", "check", "--dir", str(root))
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_every_shipped_version_is_released() -> None:
    lock = schema_lock.lock_path(SHIPPED)
    assert schema_lock.unreleased(SHIPPED, lock) == [], "run `supplybus schemas lock`"
    assert schema_lock.released_problems(SHIPPED, lock) == []
