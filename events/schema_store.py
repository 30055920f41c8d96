"""The schema store: every ``.avsc`` version under ``schemas/``, by event type and number.

File layout: ``schemas/<domain>/<EventType>.v<N>.avsc``, numbers contiguous from 1. The newest
version of an event type is its reader schema; every older version stays so that old records
remain readable.

Versions are identified by their number, not by their CRC-64-AVRO fingerprint: the parsing
canonical form behind the fingerprint drops docs, aliases, defaults and logical-type
attributes, so a version that only adds a default (or an alias, or a doc), or that reverts to
an earlier one, shares its predecessor's fingerprint. The fingerprint is only for framing:
versions with one fingerprint encode alike, the encoder writes the newest version's, and
decoding by fingerprint takes the newest version that has it as the writer schema
(``supplybus schemas check`` refuses versions that share a fingerprint but would decode
differently, e.g. a changed decimal scale).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint as avro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from supplybus.errors import ConfigError, DecodeError

_FILE = re.compile(r"^(?P<name>[A-Z][A-Za-z0-9]*)\.v(?P<version>[1-9][0-9]*)\.avsc$")


@dataclass(frozen=True)
class SchemaVersion:
    """One version of one event type's schema."""

    event_type: str
    version: int
    domain: str
    path: Path
    raw: Mapping[str, Any] = field(repr=False)
    parsed: Any = field(repr=False)
    canonical: str = field(repr=False)
    fingerprint: bytes = b""  # CRC-64-AVRO, 8 bytes little-endian as in single-object encoding
    content_hash: str = ""  # sha256 of the JSON (keys sorted): any change of the file's schema

    @property
    def full_name(self) -> str:
        return f"{self.raw.get('namespace', '')}.{self.raw['name']}".lstrip(".")

    @property
    def doc(self) -> str:
        return str(self.raw.get("doc", ""))


@dataclass(frozen=True)
class SchemaStore:
    """All schema versions, loaded once."""

    directory: Path
    by_type: Mapping[str, tuple[SchemaVersion, ...]]
    by_fingerprint: Mapping[bytes, SchemaVersion]  # the newest version with that fingerprint

    def latest(self, event_type: str) -> SchemaVersion:
        try:
            return self.by_type[event_type][-1]
        except KeyError:
            raise ConfigError(
                f"unknown event type {event_type!r}; expected one of "
                f"{', '.join(sorted(self.by_type))}"
            ) from None

    def versions(self, event_type: str) -> tuple[SchemaVersion, ...]:
        self.latest(event_type)
        return self.by_type[event_type]

    def version(self, event_type: str, number: int) -> SchemaVersion:
        versions = self.versions(event_type)
        if not 1 <= number <= len(versions):
            raise ConfigError(f"{event_type} has versions v1..v{len(versions)}, not v{number}")
        return versions[number - 1]

    def by_fp(self, fp: bytes) -> SchemaVersion:
        try:
            return self.by_fingerprint[fp]
        except KeyError:
            raise DecodeError(
                f"unknown writer schema fingerprint {fp.hex()} (no .avsc in {self.directory} "
                "has it: a newer producer, or not a supplybus record)"
            ) from None

    def __iter__(self) -> Iterator[SchemaVersion]:
        for versions in self.by_type.values():
            yield from versions

    @property
    def event_types(self) -> list[str]:
        return sorted(self.by_type)


def schemas_dir() -> Path:
    spec = importlib.util.find_spec("supplybus.schemas")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("supplybus.schemas is not installed: run `make install`")
    return Path(next(iter(spec.submodule_search_locations)))


def load_store(directory: Path | None = None) -> SchemaStore:
    """Read every schema file; errors name the file and what is wrong."""
    root = directory or schemas_dir()
    found: dict[str, list[SchemaVersion]] = {}
    for path in sorted(root.glob("*/*.avsc")):
        sv = _load_one(path)
        versions = found.setdefault(sv.event_type, [])
        if versions and versions[0].domain != sv.domain:
            where = versions[0].path.parent
            raise ConfigError(
                f"{path}: {sv.event_type} also has versions in {where}; keep one folder"
            )
        versions.append(sv)
    by_type: dict[str, tuple[SchemaVersion, ...]] = {}
    fps: dict[bytes, SchemaVersion] = {}
    for event_type, versions in found.items():
        versions.sort(key=lambda v: v.version)
        numbers = [v.version for v in versions]
        if numbers != list(range(1, len(numbers) + 1)):
            raise ConfigError(f"{root}: versions of {event_type} must be v1..vN, found {numbers}")
        by_type[event_type] = tuple(versions)
        fps.update((v.fingerprint, v) for v in versions)  # newest last, so newest wins
    return SchemaStore(directory=root, by_type=by_type, by_fingerprint=fps)


def fingerprint(schema: Any) -> bytes:
    """CRC-64-AVRO of a schema's parsing canonical form, little-endian as framing writes it.

    ``schema`` is JSON (or what ``fastavro.parse_schema`` returns). fastavro's hex digest is
    already in the specification's little-endian byte order.
    """
    return bytes.fromhex(_crc64(to_parsing_canonical_form(fastavro.parse_schema(schema))))


def content_hash(raw: Mapping[str, Any]) -> str:
    """sha256 of the schema JSON with sorted keys and no whitespace: reformatting a file keeps
    it, any change of a name, type, default, doc, alias or attribute changes it."""
    text = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _crc64(canonical: str) -> str:
    return str(avro_fingerprint(canonical, "CRC-64-AVRO"))


@cache
def default_store() -> SchemaStore:
    """The schemas shipped with supplybus (loaded once per process)."""
    return load_store()


def _load_one(path: Path) -> SchemaVersion:
    match = _FILE.match(path.name)
    if match is None:
        raise ConfigError(f"{path}: expected a file name like EventType.v1.avsc")
    try:
        raw = json.loads(path.read_text())
        parsed = fastavro.parse_schema(raw)
    except (OSError, ValueError, fastavro.schema.SchemaParseException) as exc:
        raise ConfigError(f"{path}: not a valid Avro schema ({exc})") from exc
    if raw.get("type") != "record" or raw.get("name") != match["name"]:
        raise ConfigError(f"{path}: expected a record named {match['name']}")
    fields = raw.get("fields") or []
    if not fields or fields[0].get("name") != "envelope":
        raise ConfigError(f"{path}: the first field must be 'envelope'")
    canonical = to_parsing_canonical_form(parsed)
    return SchemaVersion(
        event_type=match["name"],
        version=int(match["version"]),
        domain=path.parent.name,
        path=path,
        raw=raw,
        parsed=parsed,
        canonical=canonical,
        fingerprint=bytes.fromhex(_crc64(canonical)),
        content_hash=content_hash(raw),
    )
