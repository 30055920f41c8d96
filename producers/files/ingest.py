"""One dropped CSV file, start to end: recognise, read, map, validate, publish, move.

For each file: (1) one pass over the bytes gives its sha256 and encoding evidence; a content
already ingested for this event type (table ``ingested_files``) is reported "already ingested"
and moved to done/ without publishing; (2) every line is mapped, validated and encoded into a
spool on disk, bad lines into ``<file>.rejects.csv`` (line, reason, message, original text);
(3) over the reject limit (or with no good line) the file moves to failed/ and nothing is
published; otherwise the spool is published in chunks (``send_all`` + ``flush``), the file is
recorded as done, and it moves to done/ (``os.replace``: atomic within one filesystem).

Event ids are ``deterministic_id("file-drop", sha256, event_type, line)``: a crash anywhere
leaves the file in place and the next run publishes the same ids, which downstream skips.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import hashlib
import io
import logging
import os
import pickle
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from supplybus.adapters.kafka import make_producer
from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.errors import ConfigError, SupplybusError, ValidationError
from supplybus.events.catalog import EventCatalog, Outgoing
from supplybus.events.envelope import deterministic_id
from supplybus.metrics import Metrics
from supplybus.producers.files import csv_reader
from supplybus.producers.files.mapping import FileMapping, LineError, check_against_schema, map_row
from supplybus.producers.publisher import Publisher

log = logging.getLogger("supplybus.ingest.files")
Status = Literal["done", "failed", "already-ingested", "skipped"]
Progress = Callable[[str, int, int], None]  # (phase, done, total)
CHUNK = 5_000


@dataclass
class Outcome:
    """What happened to one file."""

    name: str
    status: Status
    lines: int = 0
    accepted: int = 0
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    message: str = ""
    moved_to: str | None = None
    rejects: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.name, "status": self.status, "lines": self.lines,
            "accepted": self.accepted, "rejected": self.rejected,
            "reasons": dict(sorted(self.reasons.items())), "message": self.message,
            "moved_to": self.moved_to, "rejects": self.rejects,
        }  # fmt: skip


class FileChanged(SupplybusError):
    """The file's bytes changed while it was read: it is still being written."""

    code = "FILE_CHANGED"


@dataclass
class _Pass:
    lines: int = 0
    accepted: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def rejected(self) -> int:
        return sum(self.reasons.values())


class _Hashing(io.RawIOBase):
    """A raw reader that hashes and counts the bytes passing through it."""

    def __init__(self, raw: IO[bytes], on_read: Callable[[int], None]) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()
        self.done = 0
        self.on_read = on_read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        buffer[: len(data)] = data
        self.digest.update(data)
        self.done += len(data)
        self.on_read(self.done)
        return len(data)


class FileIngest:
    """Ingests files with one mapping; ``settings`` names the database and broker."""

    def __init__(
        self,
        settings: Settings,
        mapping: FileMapping,
        *,
        done_dir: Path,
        failed_dir: Path,
        reject_limit: int | None = None,
        chunk: int = CHUNK,
        metrics: Metrics | None = None,
        progress: Progress | None = None,
        catalog: EventCatalog | None = None,
    ) -> None:
        self.settings = settings
        self.mapping = mapping
        self.catalog = catalog or EventCatalog.from_settings(settings)
        try:
            self.schema = self.catalog.store.latest(mapping.event_type)
        except (KeyError, SupplybusError) as exc:
            raise ConfigError(f"mapping {mapping.name}: event_type: unknown event type "
                              f"{mapping.event_type!r}") from exc  # fmt: skip
        problems = check_against_schema(mapping, self.schema.raw)
        if problems:
            raise ConfigError(f"mapping {mapping.name}: {problems[0]}")
        self.done_dir = done_dir
        self.failed_dir = failed_dir
        self.reject_limit = reject_limit if reject_limit is not None else mapping.reject_limit
        self.chunk = chunk
        self.metrics = metrics
        self.progress = progress or (lambda phase, done, total: None)
        self._publisher: Publisher | None = None

    def close(self) -> None:
        if self._publisher is not None:
            self._publisher.flush()

    @property
    def publisher(self) -> Publisher:
        if self._publisher is None:  # the producer connects on the first send
            self._publisher = Publisher(self.catalog, make_producer(self.settings))
        return self._publisher

    def ingest(self, path: Path) -> Outcome:
        """Ingest one file (it must be complete: see ``watch.ready_files``)."""
        label = path.name
        try:
            with path.open("rb") as raw:
                found = csv_reader.scan(raw)
        except OSError as exc:
            return Outcome(label, "skipped", message=f"{label}: cannot read ({exc.strerror})")
        try:
            if self._already_ingested(found.sha256):
                moved = _move(path, self.done_dir)
                log.info("ingest: %s already ingested (sha256 %s): moved to %s, nothing "
                         "published", label, found.sha256[:12], moved)  # fmt: skip
                return Outcome(label, "already-ingested", message="already ingested",
                               moved_to=str(moved))  # fmt: skip
            encoding = csv_reader.decide_encoding(found, self.mapping.encoding, label)
        except ConfigError as exc:
            return self._fail(path, found.sha256, message=str(exc), counts=_Pass())
        self.done_dir.mkdir(parents=True, exist_ok=True)
        spooled = tempfile.TemporaryFile(prefix="supplybus-spool-")  # noqa: SIM115
        rejected = tempfile.NamedTemporaryFile(  # noqa: SIM115 - moved beside the file at the end
            "w", encoding="utf-8", newline="", dir=self.done_dir, prefix=f".{label}.",
            suffix=".rejects.tmp", delete=False,
        )  # fmt: skip
        with spooled as spool, rejected as rejects:
            try:
                counts = self._first_pass(path, found, encoding, spool, rejects)
            except FileChanged as exc:
                _unlink(rejects.name)
                log.warning("ingest: %s", exc)
                return Outcome(label, "skipped", message=str(exc))
            except ConfigError as exc:
                _unlink(rejects.name)
                return self._fail(path, found_sha=found.sha256, message=str(exc), counts=_Pass())
            rejects.close()
            too_many = self.reject_limit is not None and counts.rejected > self.reject_limit
            if too_many or (counts.accepted == 0 and counts.rejected > 0):
                limit = self.reject_limit
                why = (f"{counts.rejected} bad line(s), over the reject limit of {limit}"
                       if too_many else f"no good line ({counts.rejected} bad)")  # fmt: skip
                return self._fail(path, found.sha256, f"{why}; nothing published", counts,
                                  rejects_tmp=Path(rejects.name))  # fmt: skip
            try:
                self._publish(spool, counts.accepted)
            except BaseException:
                _unlink(rejects.name)
                raise
        return self._done(path, found.sha256, counts, Path(rejects.name))

    def _first_pass(
        self, path: Path, found: csv_reader.Scan, encoding: str, spool: IO[bytes], rejects: IO[str]
    ) -> _Pass:
        counts = _Pass()
        writer = csv.writer(rejects)
        writer.writerow(["line", "reason", "message", "original"])
        occurred = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
        chunk: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = []
        with path.open("rb") as raw:
            hashing = _Hashing(raw, lambda done: self.progress("read", done, found.size))
            buffered = io.BufferedReader(hashing, csv_reader.CHUNK)
            try:
                for item in self._events(buffered, encoding, found.sha256, occurred, path.name):
                    counts.lines += 1
                    if isinstance(item, csv_reader.BadRow):
                        counts.reasons[item.reason] += 1
                        writer.writerow([item.line, item.reason, item.message,
                                         item.raw.rstrip("\r\n")])  # fmt: skip
                        continue
                    counts.accepted += 1
                    chunk.append((item.topic, item.key, item.value, item.headers))
                    if len(chunk) >= self.chunk:
                        pickle.dump(chunk, spool, protocol=pickle.HIGHEST_PROTOCOL)
                        chunk = []
            except UnicodeDecodeError as exc:
                raise FileChanged(f"{path.name}: changed while read ({exc.reason})") from exc
        if chunk:
            pickle.dump(chunk, spool, protocol=pickle.HIGHEST_PROTOCOL)
        if hashing.digest.hexdigest() != found.sha256:
            raise FileChanged(f"{path.name}: changed while read; left in place for the next poll")
        return counts

    def _events(
        self, stream: IO[bytes], encoding: str, sha: str, occurred: dt.datetime, label: str
    ) -> Iterator[Outgoing | csv_reader.BadRow]:
        mapping = self.mapping
        rows = csv_reader.read_rows(stream, encoding, mapping.delimiter)
        first = next(rows, None)
        if first is None:
            raise ConfigError(f"{label}: empty file, no header line")
        if isinstance(first, csv_reader.BadRow):
            raise ConfigError(f"{label}: the header line is not CSV ({first.message})")
        names, trailing = csv_reader.header_of(first, label)
        missing = [h for h in mapping.headers if h not in names]
        if missing:
            raise ConfigError(f"{label}: column {missing[0]!r} of mapping {mapping.name} is not "
                              f"in the header ({', '.join(names)[:200]})")  # fmt: skip
        envelope = {
            "event_type": self.schema.event_type, "schema_version": self.schema.version,
            "occurred_at": occurred, "causation_id": None, "facility_id": None,
            "priority": "ROUTINE", "actor": f"file-drop:{mapping.name}",
        }  # fmt: skip
        for row in rows:
            if isinstance(row, csv_reader.BadRow):
                yield row
                continue
            cells = csv_reader.cells_by_header(names, trailing, row)
            if isinstance(cells, csv_reader.BadRow):
                yield cells
                continue
            try:
                event = map_row(mapping, cells)
                eid = deterministic_id("file-drop", sha, mapping.event_type, row.line)
                given = event.get("envelope") or {}
                event["envelope"] = envelope | {"event_id": eid, "correlation_id": eid} | given
                for target in mapping.line_ids:
                    _put(event, target, deterministic_id(eid, target))
                yield self.publisher.prepare(event)
            except LineError as exc:
                yield csv_reader.BadRow(row.line, exc.reason, exc.message, row.raw)
            except ValidationError as exc:
                yield csv_reader.BadRow(row.line, "invalid", str(exc), row.raw)

    def _publish(self, spool: IO[bytes], total: int) -> None:
        spool.seek(0)
        sent = 0
        publisher = self.publisher
        while True:
            try:
                chunk = pickle.load(spool)  # our own spool, written above
            except EOFError:
                break
            for topic, key, value, headers in chunk:
                publisher.send(Outgoing(topic, key, value, headers, {}))
            publisher.flush()
            sent += len(chunk)
            self.progress("publish", sent, total)

    def _done(self, path: Path, sha: str, counts: _Pass, rejects_tmp: Path) -> Outcome:
        self._record(path.name, sha, "done", counts, None)
        moved, rejects = self._move_with_rejects(path, self.done_dir, rejects_tmp, counts)
        if self.metrics is not None:
            self.metrics.ingest_accepted.labels("files", self.mapping.event_type).inc(
                counts.accepted
            )
            for reason, n in counts.reasons.items():
                self.metrics.ingest_rejected.labels("files", reason).inc(n)
        log.info("ingest: %s done: %d published, %d rejected %s", path.name, counts.accepted,
                 counts.rejected, dict(counts.reasons))  # fmt: skip
        return Outcome(path.name, "done", counts.lines, counts.accepted, counts.rejected,
                       counts.reasons, moved_to=str(moved), rejects=rejects)  # fmt: skip

    def _fail(
        self,
        path: Path,
        found_sha: str | None,
        message: str,
        counts: _Pass,
        rejects_tmp: Path | None = None,
    ) -> Outcome:
        if found_sha is not None:
            self._record(path.name, found_sha, "failed", counts, message)
        if rejects_tmp is not None:
            moved, rejects = self._move_with_rejects(path, self.failed_dir, rejects_tmp, counts)
        else:
            moved, rejects = _move(path, self.failed_dir), None
        if self.metrics is not None:
            for reason, n in counts.reasons.items():
                self.metrics.ingest_rejected.labels("files", reason).inc(n)
        log.warning("ingest: %s failed: %s", path.name, message)
        return Outcome(path.name, "failed", counts.lines, 0, counts.rejected, counts.reasons,
                       message=message, moved_to=str(moved), rejects=rejects)  # fmt: skip

    def _move_with_rejects(
        self, path: Path, folder: Path, rejects_tmp: Path, counts: _Pass
    ) -> tuple[Path, str | None]:
        moved = _move(path, folder)
        if counts.rejected == 0:
            _unlink(str(rejects_tmp))
            return moved, None
        target = moved.with_name(moved.name + ".rejects.csv")
        os.replace(rejects_tmp, target)  # the temp file is in done/ (same filesystem)
        return moved, str(target)

    def _already_ingested(self, sha: str) -> bool:
        with connect(self.settings) as conn:
            row = conn.execute(
                "SELECT 1 FROM ingested_files WHERE content_sha256 = %s AND event_type = %s"
                " AND status = 'done'",
                (sha, self.mapping.event_type),
            ).fetchone()
        return row is not None

    def _record(self, name: str, sha: str, status: str, counts: _Pass, reason: str | None) -> None:
        with connect(self.settings) as conn:
            conn.execute(
                "INSERT INTO ingested_files (content_sha256, event_type, file_name, mapping,"
                " status, lines, accepted, rejected, reason) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)"
                " ON CONFLICT (content_sha256, event_type) DO UPDATE SET file_name ="
                " EXCLUDED.file_name, mapping = EXCLUDED.mapping, status = EXCLUDED.status,"
                " lines = EXCLUDED.lines, accepted = EXCLUDED.accepted, rejected ="
                " EXCLUDED.rejected, reason = EXCLUDED.reason, finished_at = now()",
                (sha, self.mapping.event_type, name, self.mapping.name, status, counts.lines,
                 counts.accepted, counts.rejected, reason),
            )  # fmt: skip


def _put(event: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = event
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def _move(path: Path, folder: Path) -> Path:
    """``path`` into ``folder`` under a free name (``a.csv``, else ``a-2.csv``, ...)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    n = 2
    while target.exists():
        target = folder / f"{path.stem}-{n}{path.suffix}"
        n += 1
    os.replace(path, target)
    return target


def _unlink(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name)
