"""Schema governance: each event type's newest version against its earlier ones.

Modes per event type come from ``schemas/compatibility.yaml`` (a default and overrides).
Whatever the mode, two things are refused: a released version (``schemas/schemas.lock``)
edited in place or deleted, and versions that share a fingerprint but decode differently.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import yaml

from supplybus.errors import ConfigError
from supplybus.events import schema_lock
from supplybus.events.compat import MODES, Incompatibility, Mode, can_read, check
from supplybus.events.schema_store import SchemaStore, SchemaVersion


@dataclass(frozen=True)
class Verdict:
    """One event type's state: compatibility problems, refusals, versions not yet released."""

    event_type: str
    mode: str
    versions: int
    problems: tuple[Incompatibility, ...]
    refusals: tuple[str, ...] = ()  # released files edited, fingerprints that mislead
    unreleased: tuple[int, ...] = ()  # version numbers not in schemas.lock

    @property
    def ok(self) -> bool:
        return not self.problems and not self.refusals


def load_modes(path: Path) -> tuple[str, Mapping[str, str]]:
    if not path.exists():
        return "BACKWARD", {}
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    default = str(doc.get("default", "BACKWARD"))
    overrides = {str(k): str(v) for k, v in (doc.get("overrides") or {}).items()}
    for where, mode in [("default", default), *overrides.items()]:
        if mode not in MODES:
            raise ConfigError(f"{path}: {where}: expected one of {', '.join(MODES)}, got {mode!r}")
    return default, overrides


def check_store(
    store: SchemaStore, modes_file: Path | None = None, lock_file: Path | None = None
) -> list[Verdict]:
    """A verdict per event type, and per released type whose files are gone."""
    default, overrides = load_modes(modes_file or store.directory / "compatibility.yaml")
    unknown = sorted(set(overrides) - set(store.by_type))
    if unknown:
        raise ConfigError(f"compatibility overrides name unknown event types: {', '.join(unknown)}")
    lock = lock_file or schema_lock.lock_path(store)
    refused: dict[str, list[str]] = {}
    for event_type, line in schema_lock.released_problems(store, lock):
        refused.setdefault(event_type, []).append(line)
    pending: dict[str, list[int]] = {}
    for sv in schema_lock.unreleased(store, lock):
        pending.setdefault(sv.event_type, []).append(sv.version)
    verdicts = []
    for event_type in sorted({*store.event_types, *refused}):
        versions = store.by_type.get(event_type, ())
        mode = overrides.get(event_type, default)
        problems: list[Incompatibility] = []
        if len(versions) > 1:
            problems = check(
                dict(versions[-1].raw),
                [dict(v.raw) for v in versions[:-1]],
                cast(Mode, mode),
                versions=[v.version for v in versions[:-1]],
            )
        refusals = [*refused.get(event_type, ()), *_misleading_fingerprints(versions)]
        verdicts.append(
            Verdict(
                event_type,
                mode,
                len(versions),
                tuple(problems),
                tuple(refusals),
                tuple(pending.get(event_type, ())),
            )
        )
    return verdicts


def _misleading_fingerprints(versions: Sequence[SchemaVersion]) -> list[str]:
    """Versions that share a fingerprint (one canonical form) but would decode differently.

    The canonical form drops logical-type attributes, so e.g. a changed decimal scale keeps
    the fingerprint: a single-object record then does not say which scale wrote it.
    """
    found = []
    for earlier, later in itertools.combinations(versions, 2):
        if earlier.fingerprint != later.fingerprint:
            continue
        paths = sorted(
            {i.path for i in can_read(dict(later.raw), dict(earlier.raw))}
            | {i.path for i in can_read(dict(earlier.raw), dict(later.raw))}
        )
        if paths:
            found.append(
                f"v{earlier.version} and v{later.version} share fingerprint "
                f"{later.fingerprint.hex()} but differ in logical-type attributes at "
                f"{', '.join(paths)}: single-object framing cannot tell which one wrote a "
                "record; change the Avro type too, or add a new field"
            )
    return found
