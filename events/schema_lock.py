"""Released schema versions: ``schemas/schemas.lock``, content hashes that never change.

One line per released version, ``EventType vN sha256`` (the schema JSON's
:func:`~supplybus.events.schema_store.content_hash`). ``supplybus schemas lock`` appends the
versions not yet in it and never rewrites a line; ``supplybus schemas check`` fails when a
released ``.avsc`` was edited in place or deleted, since records written with it may be
read with the edited text (an edit that keeps the fingerprint goes unnoticed otherwise).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from supplybus.errors import ConfigError
from supplybus.events.schema_store import SchemaStore, SchemaVersion

LOCK_FILE = "schemas.lock"
HEADER = """\
# Released schema versions: event type, version, sha256 of the schema JSON (keys sorted).
# Appended by `supplybus schemas lock`, checked by `supplybus schemas check`.
# A released version is never edited: add EventType.v<N+1>.avsc instead.
"""
_LINE = re.compile(
    r"^(?P<type>[A-Z][A-Za-z0-9]*) v(?P<version>[1-9][0-9]*) (?P<hash>[0-9a-f]{64})$"
)


@dataclass(frozen=True)
class Released:
    """One line of the lock."""

    event_type: str
    version: int
    content_hash: str
    line: int


def lock_path(store: SchemaStore) -> Path:
    return store.directory / LOCK_FILE


def read_lock(path: Path) -> dict[tuple[str, int], Released]:
    """The released versions by (event type, number); empty when there is no lock file."""
    if not path.exists():
        return {}
    found: dict[tuple[str, int], Released] = {}
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        text = text.strip()
        if not text or text.startswith("#"):
            continue
        match = _LINE.match(text)
        if match is None:
            raise ConfigError(
                f"{path}: line {number}: expected 'EventType vN sha256', got {text!r}"
            )
        entry = Released(match["type"], int(match["version"]), match["hash"], number)
        key = (entry.event_type, entry.version)
        if key in found:
            raise ConfigError(
                f"{path}: line {number}: {entry.event_type} v{entry.version} is already on "
                f"line {found[key].line}"
            )
        found[key] = entry
    return found


def released_problems(store: SchemaStore, path: Path) -> list[tuple[str, str]]:
    """(event type, one line naming the file) for each released version edited or deleted."""
    problems = []
    for (event_type, version), entry in read_lock(path).items():
        versions = store.by_type.get(event_type, ())
        if version > len(versions):
            problems.append(
                (
                    event_type,
                    f"{path}: line {entry.line}: released {event_type} v{version} has no "
                    f"{event_type}.v{version}.avsc (deleted?): restore it",
                )
            )
            continue
        sv = versions[version - 1]
        if sv.content_hash != entry.content_hash:
            problems.append(
                (
                    event_type,
                    f"{sv.path}: released version edited in place (sha256 differs from "
                    f"{path.name} line {entry.line}): restore it and add "
                    f"{event_type}.v{len(versions) + 1}.avsc instead",
                )
            )
    return problems


def unreleased(store: SchemaStore, path: Path) -> list[SchemaVersion]:
    """The versions not yet in the lock, in store order."""
    locked = read_lock(path)
    return [sv for sv in store if (sv.event_type, sv.version) not in locked]


def append(path: Path, versions: Sequence[SchemaVersion]) -> None:
    """Add ``versions`` to the lock (created with its header if missing); never rewrites."""
    existing: Mapping[tuple[str, int], Released] = read_lock(path)
    again = [sv for sv in versions if (sv.event_type, sv.version) in existing]
    if again:
        raise ConfigError(f"{path}: {again[0].event_type} v{again[0].version} is already locked")
    text = path.read_text() if path.exists() else HEADER
    if text and not text.endswith("\n"):
        text += "\n"
    text += "".join(f"{sv.event_type} v{sv.version} {sv.content_hash}\n" for sv in versions)
    path.write_text(text)
