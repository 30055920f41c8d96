"""Kafka client construction and error translation (confluent-kafka)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient

from supplybus.config import Settings
from supplybus.errors import BrokerUnavailable, ConfigError

#: librdkafka's own log lines go here; the CLI shows them only with --verbose.
RDKAFKA_LOGGER = logging.getLogger("supplybus.librdkafka")


def bootstrap(settings: Settings) -> str:
    if settings.kafka_bootstrap_servers is None:
        raise ConfigError(
            "no Kafka broker: set KAFKA_BOOTSTRAP_SERVERS or run `supplybus up` first"
        )
    return settings.kafka_bootstrap_servers


def _base(settings: Settings) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap(settings),
        "logger": RDKAFKA_LOGGER,
        "socket.connection.setup.timeout.ms": int(settings.connect_timeout_s * 1000),
    }


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """Idempotent producer: acks=all, ordered retries, small linger for batching."""
    conf = _base(settings) | {
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "none",
    }
    return conf | overrides


def consumer_config(settings: Settings, group_id: str, **overrides: Any) -> dict[str, Any]:
    """Manual offset commits, short session timeout (fast joins and crash detection)."""
    conf = _base(settings) | {
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": settings.heartbeat_interval_ms,
        "partition.assignment.strategy": "cooperative-sticky",
    }
    return conf | overrides


def make_producer(settings: Settings, **overrides: Any) -> Producer:
    return Producer(producer_config(settings, **overrides))


#: The header type confluent-kafka's produce() is annotated with.
KafkaHeaders = list[tuple[str, str | bytes | None]]
DeliveryCallback = Callable[[KafkaError | None, Message], None]


def produce(
    producer: Producer,
    topic: str,
    value: bytes | None,
    key: bytes | None,
    headers: Sequence[tuple[str, bytes]],
    on_delivery: DeliveryCallback,
) -> None:
    """Enqueue one record, serving delivery reports while the local queue is full."""
    while True:
        try:
            producer.produce(
                topic,
                value,
                key,
                headers=cast(KafkaHeaders, list(headers)),
                on_delivery=on_delivery,
            )
            return
        except BufferError:
            producer.poll(0.05)


def make_consumer(settings: Settings, group_id: str, **overrides: Any) -> Consumer:
    return Consumer(consumer_config(settings, group_id, **overrides))


def make_admin(settings: Settings) -> AdminClient:
    return AdminClient(_base(settings))


@contextmanager
def map_kafka_errors(settings: Settings, doing: str) -> Iterator[None]:
    """Translate confluent-kafka errors raised inside the block into supplybus errors."""
    try:
        yield
    except KafkaException as exc:
        err = exc.args[0] if exc.args else None
        detail = err.str() if isinstance(err, KafkaError) else str(exc)
        raise BrokerUnavailable(
            f"Kafka at {settings.kafka_bootstrap_servers} failed while {doing}: {detail} "
            "(check KAFKA_BOOTSTRAP_SERVERS or run `supplybus up`)"
        ) from exc


def wait_for_broker(settings: Settings, timeout_s: float | None = None) -> list[str]:
    """Ask the broker for its topics; raise BrokerUnavailable naming the address on timeout."""
    timeout = settings.connect_timeout_s if timeout_s is None else timeout_s
    admin = make_admin(settings)
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise BrokerUnavailable(
            f"cannot reach Kafka at {settings.kafka_bootstrap_servers} within {timeout:g}s "
            "(check KAFKA_BOOTSTRAP_SERVERS or run `supplybus up`)"
        ) from exc
    return sorted(metadata.topics)


def is_tansu(client: Consumer | AdminClient, timeout_s: float = 5.0) -> bool:
    """True when the cluster is a Tansu broker (its default cluster id says so)."""
    try:
        cluster_id = client.list_topics(timeout=timeout_s).cluster_id or ""
    except KafkaException:
        return False
    return "tansu" in cluster_id.lower()


def leaves_group_on_close(settings: Settings, consumer: Consumer) -> bool:
    """Whether a consumer should send LeaveGroup when it stops.

    Tansu 0.6 leaves a group stuck for good when a member leaves during a rebalance; a
    member that just stops sending heartbeats is evicted after the session timeout instead.
    """
    if settings.kafka_leave_group != "auto":
        return settings.kafka_leave_group == "yes"
    return not is_tansu(consumer)


def release(consumer: Consumer, *, leave_group: bool) -> None:
    """Close the consumer, or (without LeaveGroup) let it expire from its group."""
    if leave_group:
        consumer.close()
    # else: dropping the last reference destroys the client without a consumer close
