"""Make the broker match the topic catalog: create what is missing, report drift, delete nothing."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import yaml
from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
    NewTopic,
)

from supplybus.adapters.kafka import make_admin, map_kafka_errors
from supplybus.config import Settings
from supplybus.events.topics import TopicCatalog, TopicSpec, load_catalog

Status = Literal["created", "ok", "drift", "missing"]


@dataclass(frozen=True)
class TopicState:
    """How one catalog topic compares with the broker."""

    spec: TopicSpec
    status: Status
    partitions: int | None = None
    drift: tuple[str, ...] = field(default=())


def inspect(settings: Settings, catalog: TopicCatalog) -> list[TopicState]:
    """Compare the broker with the catalog without changing anything."""
    admin = make_admin(settings)
    with map_kafka_errors(settings, "listing topics"):
        metadata = admin.list_topics(timeout=settings.connect_timeout_s)
    existing = {name: len(t.partitions) for name, t in metadata.topics.items()}
    configs = _configs(settings, admin, [t.name for t in catalog.topics if t.name in existing])
    states: list[TopicState] = []
    for spec in catalog.topics:
        if spec.name not in existing:
            states.append(TopicState(spec, "missing"))
            continue
        drift = list(_drift(spec, existing[spec.name], configs.get(spec.name, {})))
        states.append(
            TopicState(spec, "drift" if drift else "ok", existing[spec.name], tuple(drift))
        )
    return states


def apply(settings: Settings, catalog: TopicCatalog) -> list[TopicState]:
    """Create every missing topic; return each topic's state (drift is reported, not fixed)."""
    states = inspect(settings, catalog)
    missing = [s.spec for s in states if s.status == "missing"]
    if not missing:
        return states
    admin = make_admin(settings)
    futures = admin.create_topics(
        [
            NewTopic(
                t.name,
                num_partitions=t.partitions,
                replication_factor=t.replication_factor,
                config=dict(t.configs),
            )
            for t in missing
        ],
        request_timeout=settings.connect_timeout_s,
    )
    for name, future in futures.items():
        with map_kafka_errors(settings, f"creating topic {name}"):
            try:
                future.result()
            except KafkaException as exc:
                if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":  # created meanwhile: fine
                    raise
    created = {t.name for t in missing}
    return [
        TopicState(s.spec, "created", s.spec.partitions) if s.spec.name in created else s
        for s in states
    ]


def _drift(spec: TopicSpec, partitions: int, configs: dict[str, str]) -> Iterable[str]:
    if partitions != spec.partitions:
        yield f"partitions: catalog {spec.partitions}, broker {partitions}"
    for key, wanted in spec.configs.items():
        actual = configs.get(key)
        if actual is not None and actual != wanted:
            yield f"{key}: catalog {wanted}, broker {actual}"


def _configs(settings: Settings, admin: AdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    """Topic configs as the broker reports them (Tansu reports only those set at creation)."""
    if not names:
        return {}
    resources = [ConfigResource(ConfigResource.Type.TOPIC, n) for n in names]
    out: dict[str, dict[str, str]] = {}
    futures = admin.describe_configs(resources, request_timeout=settings.connect_timeout_s)
    for resource, future in futures.items():
        with map_kafka_errors(settings, f"describing topic {resource.name}"):
            entries = future.result()
        out[resource.name] = {k: str(v.value) for k, v in entries.items() if v.value is not None}
    return out


def apply_private(settings: Settings, directory: Path, prefix: str) -> Settings:
    """A private copy of the catalog for one run (a test, a bench) on a shared broker.

    Every topic of ``settings.topic_catalog`` is renamed ``<prefix><name>``, the copy written
    to ``directory/topics.yaml`` and created on the broker; returns settings that use it.
    """
    doc = yaml.safe_load(settings.topic_catalog.read_text())
    for entry in doc["topics"]:
        entry["name"] = prefix + entry["name"]
    path = directory / "topics.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    private = replace(settings, topic_catalog=path)
    apply(private, load_catalog(path))
    return private
