"""Which dropped files are complete, and the polling loop of ``ingest files --watch``.

A file is complete when (default) its size and modification time are the same in two polls
``settle`` seconds apart, or (``marker=True``) when its marker ``<name>.done`` exists: the
writer creates the marker after closing the file. Hidden files, ``*.rejects.csv`` and
anything not matching the pattern are never read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from supplybus.errors import DeliveryError, ServiceUnavailable
from supplybus.producers.files.ingest import FileIngest, Outcome

log = logging.getLogger("supplybus.ingest.files")
MARKER = ".done"
Signature = tuple[int, int]  # (size, mtime in ns)


@dataclass
class DropFolder:
    """The drop directory and what was seen in it at the last poll."""

    directory: Path
    pattern: str = "*.csv"
    marker: bool = False
    seen: dict[Path, Signature] = field(default_factory=dict)

    def candidates(self) -> dict[Path, Signature]:
        found: dict[Path, Signature] = {}
        for path in sorted(self.directory.glob(self.pattern)):
            if path.name.startswith(".") or path.name.endswith(".rejects.csv"):
                continue
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            if path.is_file():
                found[path] = (stat.st_size, stat.st_mtime_ns)
        return found

    def poll(self) -> tuple[list[Path], list[Path]]:
        """(complete files, files still being written), remembering this poll for the next."""
        current = self.candidates()
        ready: list[Path] = []
        waiting: list[Path] = []
        for path, signature in current.items():
            if self.marker:
                complete = path.with_name(path.name + MARKER).exists()
            else:
                complete = self.seen.get(path) == signature
            (ready if complete else waiting).append(path)
        self.seen = current
        return ready, waiting

    def finished(self, path: Path) -> None:
        """Forget a processed file and remove its marker."""
        self.seen.pop(path, None)
        path.with_name(path.name + MARKER).unlink(missing_ok=True)


def run_once(
    folder: DropFolder,
    ingest: FileIngest,
    *,
    settle_s: float,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[list[Outcome], list[Path]]:
    """Two polls ``settle_s`` apart, then every complete file ingested; returns the outcomes
    and the files left because they were still being written (or have no marker)."""
    if not folder.marker:
        folder.poll()
        sleep(settle_s)
    ready, waiting = folder.poll()
    outcomes = []
    for path in ready:
        outcome = ingest.ingest(path)
        if outcome.status != "skipped":
            folder.finished(path)
        outcomes.append(outcome)
    for path in waiting:
        log.info("ingest: %s not complete yet (being written or no marker): left", path.name)
    return outcomes, waiting


def watch(
    folder: DropFolder,
    ingest: FileIngest,
    *,
    interval_s: float,
    stop: Callable[[], bool],
    on_outcome: Callable[[Outcome], None],
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Poll every ``interval_s`` until ``stop()``; the file in hand is always finished."""
    while not stop():
        ready, _ = folder.poll()
        for path in ready:
            if stop():
                return
            try:
                outcome = ingest.ingest(path)
            except (DeliveryError, ServiceUnavailable) as exc:  # the file stays: next poll
                log.warning("ingest: %s left for the next poll: %s", path.name, exc)
                folder.seen.pop(path, None)
                break
            if outcome.status != "skipped":
                folder.finished(path)
            on_outcome(outcome)
        waited = 0.0
        while waited < interval_s and not stop():
            step = min(0.2, interval_s - waited)
            sleep(step)
            waited += step
