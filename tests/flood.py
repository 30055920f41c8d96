"""Structured load for runtime tests and its oracle.

K keys, each with sequence numbers 1..N and value n % 7 + 1, so the sum per key is known in
advance. After a run, ``check_exactly_once`` names the anomaly if there is one: lost, duplicate
or out-of-order effects.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterable
from decimal import Decimal
from typing import Any

from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.events.catalog import EventCatalog
from supplybus.events.envelope import deterministic_id, new_envelope
from supplybus.producers.publisher import Publisher


def value_of(n: int) -> Decimal:
    return Decimal(n % 7 + 1)


def movement(
    run: str, key: int, n: int, *, priority: str = "ROUTINE", reason: str = ""
) -> dict[str, Any]:
    event_id = deterministic_id(run, key, n)
    return {
        "envelope": new_envelope(
            "StockMovement",
            source_system="flood",
            entity_id="ENT-1",
            actor="test",
            priority=priority,
            event_id=event_id,
            correlation_id=f"{run}-{key}",
        ),
        "movement_id": event_id,
        "kind": "RECEIPT",
        "item_id": f"K{key:04d}",
        "location_id": "LOC-1",
        "lot_number": None,
        "expiry_date": None,
        "quantity": {"value": value_of(n), "uom": "EA"},
        "counterpart_location_id": None,
        "reference_id": str(n),
        "reason": reason or None,
    }


def with_fields(record: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """``record`` with fields set by path: ``quantity__uom="CS"`` sets record["quantity"]["uom"]."""
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        target = record
        for name in parents:
            target = target[name]
        target[leaf] = value
    return record


def load(run: str, keys: int, per_key: int, **kw: Any) -> list[dict[str, Any]]:
    """Interleaved by sequence number: every key's n=1, then every key's n=2, ..."""
    return [movement(run, k, n, **kw) for n in range(1, per_key + 1) for k in range(keys)]


def publish(
    settings: Settings,
    records: Iterable[dict[str, Any]],
    *,
    per_second: float | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Publish (validated) records, optionally throttled; returns how many were acknowledged."""
    catalog = EventCatalog.from_settings(settings)
    prepared = [catalog.prepare(r) for r in records]
    started = time.monotonic()
    with Publisher.from_settings(settings) as pub:
        for i, out in enumerate(prepared):
            if stop is not None and stop.is_set():
                break
            pub.send(out)
            if per_second and i % 100 == 0:
                pub.producer.poll(0)
                ahead = i / per_second - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        return pub.flush()


def effects(settings: Settings) -> list[tuple[str, int, Decimal]]:
    with connect(settings) as conn:
        rows = conn.execute("SELECT key, n, value FROM applied_effects ORDER BY seq").fetchall()
    return [(r[0], int(r[1]), r[2]) for r in rows]


def count_effects(settings: Settings) -> int:
    with connect(settings) as conn:
        try:
            row = conn.execute("SELECT count(*) FROM applied_effects").fetchone()
        except Exception:  # noqa: BLE001 - table not created yet
            return 0
    return int(row[0]) if row else 0


def check_exactly_once(
    settings: Settings, keys: int, per_key: int, skip: Collection[tuple[str, int]] = frozenset()
) -> None:
    """Exact equalities over the effect table; the failure message names the anomaly."""
    rows = effects(settings)
    seen: dict[str, list[int]] = {}
    for key, n, _ in rows:
        seen.setdefault(key, []).append(n)
    problems: list[str] = []
    for k in range(keys):
        key = f"K{k:04d}"
        got = seen.get(key, [])
        want = [n for n in range(1, per_key + 1) if (key, n) not in skip]
        dupes = sorted({n for n in got if got.count(n) > 1})
        lost = sorted(set(want) - set(got))
        if dupes:
            problems.append(f"{key}: duplicate effects for n={dupes[:5]}")
        if lost:
            problems.append(f"{key}: lost writes n={lost[:5]} ({len(lost)} in all)")
        if got != sorted(got):
            problems.append(f"{key}: non-monotonic order {got[:10]}...")
    expected_total = keys * per_key - len(skip)
    assert not problems, f"{len(rows)} effects for {expected_total} events: " + "; ".join(
        problems[:10]
    )
    assert len(rows) == expected_total
    with connect(settings) as conn:
        sums = dict(
            conn.execute("SELECT key, sum(value) FROM applied_effects GROUP BY key").fetchall()
        )
    for k in range(keys):
        key = f"K{k:04d}"
        want = sum(value_of(n) for n in range(1, per_key + 1) if (key, n) not in skip)
        assert sums.get(key, 0) == want, f"{key}: sum {sums.get(key)} != {want}"
