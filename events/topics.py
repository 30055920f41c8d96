"""The topic catalog: a declarative YAML file, loaded into plain frozen values.

A business stream declares its name, key template and event types; the loader derives its
critical lane (``<name>.critical``) and one dead-letter topic per topic (``<topic>.dlq``).
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml

from supplybus.errors import CatalogError

LaneName = Literal["routine", "critical"]
Role = Literal["stream", "dlq"]
_TOPIC_NAME = re.compile(r"^[a-z][a-z0-9-]*(\.[a-z0-9-]+)+$")
_STREAM_KEYS = {
    "name",
    "description",
    "key",
    "events",
    "critical_lane",
    "compacted",
    "partitions",
    "configs",
}


@dataclass(frozen=True)
class TopicSpec:
    """One physical topic as it must exist on the broker."""

    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, str]
    role: Role = "stream"
    lane: LaneName = "routine"
    key: str = ""
    event_types: tuple[str, ...] = ()
    dlq: str | None = None
    stream: str = ""
    description: str = ""

    def key_for(self, fields: Mapping[str, object]) -> str:
        """The Kafka key of an event with these top-level fields."""
        try:
            return self.key.format_map(fields)
        except KeyError as exc:
            raise CatalogError(
                f"topic {self.name}: key {self.key!r} needs field {exc.args[0]!r}"
            ) from None


@dataclass(frozen=True)
class TopicCatalog:
    path: Path
    topics: tuple[TopicSpec, ...] = field(default=())

    @cached_property
    def by_name(self) -> dict[str, TopicSpec]:
        return {t.name: t for t in self.topics}

    @cached_property
    def by_event_type(self) -> dict[str, TopicSpec]:
        """The routine-lane stream topic of each event type."""
        return {
            et: t
            for t in self.topics
            if t.role == "stream" and t.lane == "routine"
            for et in t.event_types
        }

    def topic(self, name: str) -> TopicSpec:
        try:
            return self.by_name[name]
        except KeyError:
            raise CatalogError(
                f"unknown topic {name!r}: not in the catalog {self.path} "
                "(see `supplybus topics list`)"
            ) from None

    def topic_for(self, event_type: str, priority: str = "ROUTINE") -> TopicSpec:
        """Where an event of this type and priority is published."""
        try:
            routine = self.by_event_type[event_type]
        except KeyError:
            raise CatalogError(
                f"event type {event_type!r} is on no topic of the catalog {self.path}"
            ) from None
        if priority == "CRITICAL":
            return self.by_name.get(f"{routine.name}.critical", routine)
        return routine

    def lanes_of(self, stream: str) -> tuple[TopicSpec, ...]:
        """The stream topic and its critical lane, if any."""
        return tuple(t for t in self.topics if t.role == "stream" and t.stream == stream)


def load_catalog(path: Path) -> TopicCatalog:
    """Read and check the catalog; errors name the file and the offending entry."""
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read the topic catalog ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("topics"), list):
        raise CatalogError(f"{path}: expected a mapping with a 'topics' list")
    defaults = doc.get("defaults") or {}
    topics: list[TopicSpec] = []
    for index, entry in enumerate(doc["topics"]):
        topics.extend(_expand(path, index, entry, defaults))
    names = [t.name for t in topics]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CatalogError(f"{path}: topic(s) declared twice: {', '.join(dupes)}")
    owners: dict[str, str] = {}
    for t in topics:
        if t.lane != "routine":
            continue
        for et in t.event_types:
            if et in owners:
                raise CatalogError(f"{path}: event type {et} is on {owners[et]} and {t.name}")
            owners[et] = t.name
    return TopicCatalog(path=path, topics=tuple(topics))


def _expand(path: Path, index: int, entry: Any, defaults: Mapping[str, Any]) -> list[TopicSpec]:
    where = f"{path}: topics[{index}]"
    if not isinstance(entry, dict):
        raise CatalogError(f"{where}: expected a mapping")
    unknown = sorted(set(entry) - _STREAM_KEYS)
    if unknown:
        raise CatalogError(f"{where}: unknown key(s) {', '.join(unknown)}")
    name = entry.get("name")
    if not isinstance(name, str) or not _TOPIC_NAME.match(name):
        raise CatalogError(
            f"{where}.name: expected a topic name like domain.stream.v1, got {name!r}"
        )
    where = f"{path}: topic {name}"
    key = entry.get("key")
    if not isinstance(key, str) or not _key_fields(key):
        raise CatalogError(
            f"{where}.key: expected a template like '{{requisition_id}}', got {key!r}"
        )
    events = entry.get("events")
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        raise CatalogError(f"{where}.events: expected a non-empty list of event type names")
    partitions = _positive(
        entry.get("partitions", defaults.get("partitions", 1)), f"{where}.partitions"
    )
    rf = _positive(defaults.get("replication_factor", 1), f"{path}: defaults.replication_factor")
    configs = dict(defaults.get("configs") or {})
    if entry.get("compacted"):
        configs = dict(defaults.get("compacted_configs") or {"cleanup.policy": "compact"})
    configs.update(entry.get("configs") or {})
    dlq_defaults = defaults.get("dlq") or {}
    dlq_partitions = _positive(
        dlq_defaults.get("partitions", 1), f"{path}: defaults.dlq.partitions"
    )
    dlq_configs = {k: str(v) for k, v in (dlq_defaults.get("configs") or {}).items()}
    lanes: list[LaneName] = ["routine", "critical"] if entry.get("critical_lane") else ["routine"]
    out: list[TopicSpec] = []
    for lane in lanes:
        topic_name = name if lane == "routine" else f"{name}.critical"
        out.append(
            TopicSpec(
                name=topic_name,
                partitions=partitions,
                replication_factor=rf,
                configs={k: str(v) for k, v in configs.items()},
                lane=lane,
                key=key,
                event_types=tuple(events),
                dlq=f"{topic_name}.dlq",
                stream=name,
                description=str(entry.get("description", "")),
            )
        )
        out.append(
            TopicSpec(
                name=f"{topic_name}.dlq",
                partitions=dlq_partitions,
                replication_factor=rf,
                configs=dlq_configs,
                role="dlq",
                lane=lane,
                stream=name,
                description=f"Dead letters of {topic_name}.",
            )
        )
    return out


def _key_fields(template: str) -> list[str]:
    try:
        return [f for _, f, _, _ in string.Formatter().parse(template) if f]
    except ValueError:
        return []


def _positive(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise CatalogError(f"{where}: expected a positive integer, got {value!r}")
    return value
