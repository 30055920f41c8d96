"""Schema governance: each event type's newest version against its earlier ones.

Modes per event type come from ``schemas/compatibility.yaml`` (a default and overrides).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import yaml

from supplybus.errors import ConfigError
from supplybus.events.compat import MODES, Incompatibility, Mode, check
from supplybus.events.schema_store import SchemaStore


@dataclass(frozen=True)
class Verdict:
    event_type: str
    mode: str
    versions: int
    problems: tuple[Incompatibility, ...]


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


def check_store(store: SchemaStore, modes_file: Path | None = None) -> list[Verdict]:
    """A verdict per event type (problems empty when compatible)."""
    default, overrides = load_modes(modes_file or store.directory / "compatibility.yaml")
    unknown = sorted(set(overrides) - set(store.by_type))
    if unknown:
        raise ConfigError(f"compatibility overrides name unknown event types: {', '.join(unknown)}")
    verdicts = []
    for event_type in store.event_types:
        versions = store.versions(event_type)
        mode = overrides.get(event_type, default)
        problems: list[Incompatibility] = []
        if len(versions) > 1:
            problems = check(
                dict(versions[-1].raw),
                [dict(v.raw) for v in versions[:-1]],
                cast(Mode, mode),
                versions=[v.version for v in versions[:-1]],
            )
        verdicts.append(Verdict(event_type, mode, len(versions), tuple(problems)))
    return verdicts
