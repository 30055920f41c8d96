"""Kafka client construction, error translation and reading a topic (confluent-kafka)."""

from __future__ import annotations

import logging
import time
import traceback
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
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
    headers: Sequence[tuple[str, bytes | None]],
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


_READ_BATCH = 500  # records asked of each consume() call
_READ_POLL_S = 0.5  # longest wait in one consume() call


def read_records(
    settings: Settings,
    topics: Mapping[str, int],
    *,
    from_beginning: bool = True,
    limit: int | None = None,
    quiet_s: float | None = 3.0,
    at_least: int = 0,
    timeout_s: float | None = None,
    on_error: Callable[[KafkaError], None] | None = None,
) -> Generator[Message, None, None]:
    """The records of ``topics`` (name -> partition count), read by assignment: no group is
    joined, nothing is committed. Use it in ``contextlib.closing`` when you may stop early.

    Stops after ``limit`` records; after ``quiet_s`` seconds without a record once ``at_least``
    arrived (``None``: follow for ever); or ``timeout_s`` after the start. Records that carry
    an error do not count: they go to ``on_error`` (default: skipped).
    """
    consumer = make_consumer(settings, f"supplybus-read-{uuid.uuid4().hex}")
    start = OFFSET_BEGINNING if from_beginning else OFFSET_END
    consumer.assign([TopicPartition(t, p, start) for t, n in topics.items() for p in range(n)])
    doing = f"reading {', '.join(topics)}"
    seen = 0
    last = time.monotonic()
    deadline = None if timeout_s is None else last + timeout_s
    try:
        while limit is None or seen < limit:
            now = time.monotonic()
            waits = [_READ_POLL_S]
            if quiet_s is not None and seen >= at_least:
                waits.append(last + quiet_s - now)
            if deadline is not None:
                waits.append(deadline - now)
            if min(waits) <= 0:
                return
            wanted = _READ_BATCH if limit is None else min(_READ_BATCH, limit - seen)
            with map_kafka_errors(settings, doing):
                batch = consumer.consume(wanted, timeout=min(waits))
            for msg in batch:
                last = time.monotonic()
                error = msg.error()
                if error is not None:
                    if on_error is not None:
                        on_error(error)
                    continue
                seen += 1
                yield msg
    finally:
        consumer.close()  # assigned, never subscribed: there is no group to leave


def release_frames(exc: BaseException) -> None:
    """Clear the locals of the frames an error keeps alive.

    A lane that stops without LeaveGroup (Tansu, ADR 0004) relies on its consumer being
    destroyed so that the group evicts it after the session timeout; a kept error whose
    traceback still holds the consumer would keep it heartbeating without polling, and the
    group would wait for it until max.poll.interval.ms (5 minutes).
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if current.__traceback__ is not None:
            traceback.clear_frames(current.__traceback__)
        current = current.__cause__ or current.__context__
