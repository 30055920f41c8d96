"""`supplybus ingest files` on the real broker and database (issue 20, acceptance 1).

The same CSV dropped twice publishes its events once (read back from the topic) and is
reported "already ingested"; a file with bad lines publishes the good ones and names each bad
line and why in its rejects file; over the reject limit nothing is published and the file is in
failed/; a file still being written (or without its marker) is not read.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.events.catalog import EventCatalog
from tests.helpers import InProcessCli, cli_env, read_all, wait_for

MAPPING = str(Path(__file__).resolve().parent.parent / "schemas" / "mappings" / "item-usage.yaml")
HEADER = "Usage Date;Item No;Location;Qty;Unit;Lot;Expiry;Case Ref;\r\n"


def usage_lines(n: int, start: int = 0) -> str:
    return "".join(
        f"03.11.2026 14:{i % 60:02d};ITEM-{i:04d};LOC-E1-OR;{i % 7 + 1},5;CASE;;;OR-{i};\r\n"
        for i in range(start, start + n)
    )


@pytest.fixture
def cli(isolated: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> InProcessCli:  # fmt: skip
    return InProcessCli(isolated, tmp_path / "home", monkeypatch, capsys)


def movements(settings: Settings, expect: int) -> list[dict[str, object]]:
    catalog = EventCatalog.from_settings(settings)
    spec = catalog.topics.topic_for("StockMovement")
    records = read_all(settings, spec.name, spec.partitions, expect, timeout=20)
    return [catalog.codec.decode(m.value()).record for m in records]


def ingest(cli: InProcessCli, drop: Path, *more: str) -> dict[str, object]:
    result = cli("ingest", "files", str(drop), "--mapping", MAPPING, "--settle-seconds", "0.3",
                 "--json", *more)  # fmt: skip
    assert result.returncode in (0, 1), result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    data["exit"] = result.returncode
    return data


def test_dropped_twice_publishes_once_and_bad_lines_are_rejected(
    isolated: Settings, cli: InProcessCli, tmp_path: Path
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    content = "\ufeff" + HEADER + usage_lines(40)
    (drop / "usage-1.csv").write_text(content, encoding="utf-8")
    bad = (
        HEADER + usage_lines(3, start=100)
        + "03.11.2026 15:00;ITEM-0200;LOC-E1-OR;abc;CASE;;;;\r\n"  # line 5: bad quantity
        + "03.11.2026 15:00;ITEM-0201;LOC-E1-OR;1;CRATE;;;;\r\n"  # line 6: unknown unit
        + '03.11.2026 15:00;ITEM-0202;LOC-E1-OR;1;EA;;;"OR\r\n7";\r\n'  # line 7: good, 2 lines
        + "03.11.2026 15:00;ITEM-0203;LOC-E1-OR;-1;EA;;;;\r\n"  # line 9: quantity not > 0
        + "03.11.2026 15:00;ITEM-0204;LOC-E1-OR;1;EA\r\n"  # line 10: too few fields
        + usage_lines(2, start=300)
    )  # fmt: skip
    (drop / "usage-2.csv").write_bytes(bad.encode("cp1252"))

    first = ingest(cli, drop)
    files = {f["file"]: f for f in first["files"]}  # type: ignore[attr-defined]
    assert files["usage-1.csv"]["status"] == "done" and files["usage-1.csv"]["accepted"] == 40
    two = files["usage-2.csv"]
    assert (two["status"], two["accepted"], two["rejected"]) == ("done", 6, 4)
    assert two["reasons"] == {"bad_decimal": 1, "field_count": 1, "invalid": 1, "unknown_code": 1}
    assert sorted(p.name for p in (drop / "done").iterdir()) == [
        "usage-1.csv", "usage-2.csv", "usage-2.csv.rejects.csv"
    ]  # fmt: skip
    with (drop / "done" / "usage-2.csv.rejects.csv").open(encoding="utf-8", newline="") as f:
        header, *rows = list(csv.reader(f))
    assert header == ["line", "reason", "message", "original"]
    assert [(r[0], r[1]) for r in rows] == [
        ("5", "bad_decimal"), ("6", "unknown_code"), ("9", "invalid"), ("10", "field_count")
    ]  # fmt: skip
    assert rows[0][2] == "Qty: not a number: 'abc'"
    assert rows[0][3] == "03.11.2026 15:00;ITEM-0200;LOC-E1-OR;abc;CASE;;;;"
    assert rows[1][2].startswith("Unit: unknown code 'CRATE' (BOX, BX, CASE")
    assert "quantity.value: must be > 0" in rows[2][2]
    assert rows[3][2] == "expected 8 fields, got 5"

    # the same content dropped again (another name): recognised, nothing published
    (drop / "usage-1-again.csv").write_text(content, encoding="utf-8")
    second = ingest(cli, drop)
    assert [(f["file"], f["status"]) for f in second["files"]] == [  # type: ignore[attr-defined]
        ("usage-1-again.csv", "already-ingested")
    ]
    records = movements(isolated, 46)
    assert len(records) == 46
    assert len({r["envelope"]["event_id"] for r in records}) == 46  # type: ignore[index]
    issue = next(r for r in records if r["item_id"] == "ITEM-0003")
    assert issue["kind"] == "ISSUE" and issue["quantity"]["uom"] == "CS"  # type: ignore[index]
    assert str(issue["quantity"]["value"]) == "4.500"  # type: ignore[index]
    with connect(isolated) as conn:
        rows = conn.execute(
            "SELECT file_name, status, accepted, rejected FROM ingested_files ORDER BY file_name"
        ).fetchall()
    assert rows == [("usage-1.csv", "done", 40, 0), ("usage-2.csv", "done", 6, 4)]


def test_over_the_reject_limit_nothing_is_published_and_the_file_fails(
    isolated: Settings, cli: InProcessCli, tmp_path: Path
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    bad_lines = "".join(f"03.11.2026 15:00;ITEM-{i};LOC;x;EA;;;;\r\n" for i in range(3))
    (drop / "usage.csv").write_text(HEADER + usage_lines(5) + bad_lines, encoding="utf-8")
    result = ingest(cli, drop, "--reject-limit", "2")
    (outcome,) = result["files"]  # type: ignore[misc]
    assert result["exit"] == 1 and outcome["status"] == "failed"
    assert "3 bad line(s), over the reject limit of 2; nothing published" in outcome["message"]
    assert sorted(p.name for p in (drop / "failed").iterdir()) == [
        "usage.csv", "usage.csv.rejects.csv"
    ]  # fmt: skip
    assert movements(isolated, 0) == []
    # fixed and dropped again, it is ingested (a failed file is not "already ingested")
    (drop / "failed" / "usage.csv").rename(drop / "usage.csv")
    result = ingest(cli, drop, "--reject-limit", "3")
    assert result["files"][0]["status"] == "done"  # type: ignore[index]
    assert len(movements(isolated, 5)) == 5


def test_a_file_still_being_written_is_not_read(
    isolated: Settings, cli: InProcessCli, tmp_path: Path
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    growing = drop / "usage.csv"
    growing.write_text(HEADER + usage_lines(2), encoding="utf-8")
    stop = threading.Event()

    def writer() -> None:
        n = 2
        while not stop.is_set():
            with growing.open("a", encoding="utf-8") as f:
                f.write(usage_lines(1, start=n))
            n += 1
            time.sleep(0.05)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        result = ingest(cli, drop)
    finally:
        stop.set()
        thread.join()
    assert result["files"] == [] and result["not_complete"] == ["usage.csv"]
    assert growing.exists() and not (drop / "done").exists()
    # with --marker, a complete file without its marker is left too; with it, it is read
    result = ingest(cli, drop, "--marker")
    assert result["files"] == [] and result["not_complete"] == ["usage.csv"]
    lines = growing.read_text(encoding="utf-8").count("\n") - 1
    (drop / "usage.csv.done").touch()
    result = ingest(cli, drop, "--marker")
    assert result["files"][0]["accepted"] == lines  # type: ignore[index]
    assert not (drop / "usage.csv.done").exists()
    assert len(movements(isolated, lines)) == lines


def test_a_bad_mapping_or_header_is_one_line(
    isolated: Settings, cli: InProcessCli, tmp_path: Path
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    mapping = tmp_path / "m.yaml"
    mapping.write_text("event_type: StockMovement\ncolumns: {A: item_idd}\n")
    result = cli("ingest", "files", str(drop), "--mapping", str(mapping))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: mapping m: item_idd: not a field of StockMovement"
    )
    (drop / "other.csv").write_text("a;b\n1;2\n", encoding="utf-8")
    result = cli("ingest", "files", str(drop), "--mapping", MAPPING, "--settle-seconds", "0.1")
    assert result.returncode == 1
    assert "other.csv: FAILED: other.csv: column 'Usage Date' of mapping item-usage is not in the" \
        " header (a, b)" in result.stdout  # fmt: skip


def test_watch_takes_files_as_they_complete_and_stops_on_sigterm(
    isolated: Settings, tmp_path: Path
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "SUPPLYBUS_HOME")
    }
    env |= cli_env(isolated, tmp_path / "home")  # fmt: skip
    watcher = subprocess.Popen(
        [sys.executable, "-m", "supplybus.ops.cli", "ingest", "files", str(drop), "--mapping",
         MAPPING, "--watch", "--interval", "0.3", "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        (drop / "a.csv").write_text(HEADER + usage_lines(7), encoding="utf-8")
        wait_for(lambda: (drop / "done" / "a.csv").exists(), timeout=30, what="a.csv in done/")
        (drop / "b.csv").write_text(HEADER + usage_lines(3, start=50), encoding="utf-8")
        wait_for(lambda: (drop / "done" / "b.csv").exists(), timeout=30, what="b.csv in done/")
    finally:
        watcher.send_signal(signal.SIGTERM)
        stdout, stderr = watcher.communicate(timeout=20)
    assert watcher.returncode == 0, stderr
    outcomes = [json.loads(line) for line in stdout.splitlines()]
    assert [(o["file"], o["accepted"]) for o in outcomes] == [("a.csv", 7), ("b.csv", 3)]
    assert len(movements(isolated, 10)) == 10
