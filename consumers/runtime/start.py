"""Where a processor starts: ``earliest``, ``latest`` or a time (ADR 0007).

The start matters only for a partition that has NO committed offset for the lane's group (its
first assignment ever); every other partition resumes where the group committed. There the
lane starts at:

- ``earliest``: the first retained record (``auto.offset.reset=earliest``; nothing to do);
- ``latest``: the end of the partition at that assignment;
- a time: the first record whose timestamp is at or after it (ListOffsets by timestamp).

The offsets chosen are committed at once, so a restart before any record arrived does not choose
again (a second "latest" would skip what was published in between).

On Tansu the high watermark under-reports (the base offset of the last record batch + 1), so the
end is found by reading on from it: records older than the moment of the assignment are
history. ListOffsets by timestamp answers 0 for many times there (measured: a time after the
last record, or between two batches with producer timestamps), so a time start is refused on
Tansu (``identity.register``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Literal, TypeAlias

from confluent_kafka import OFFSET_INVALID, Consumer, TopicPartition

from supplybus.adapters.kafka import make_consumer
from supplybus.config import Settings
from supplybus.errors import ConfigError

Start: TypeAlias = Literal["earliest", "latest"] | datetime
Key = tuple[str, int]
_TAIL_QUIET_S = 0.5  # reading on from the high watermark stops after this long without a record
_TAIL_FIRST_S = 5.0  # ... except before the first answer (connect, metadata, first fetch)
_TAIL_LIMIT_S = 10.0  # ... or after this long in all


def check_start(value: object, where: str) -> Start:
    """``value`` as a start, or ConfigError naming ``where`` and what was expected."""
    if value in ("earliest", "latest"):
        return value
    if isinstance(value, datetime) and value.utcoffset() is not None:
        return value
    raise ConfigError(
        f"{where}: expected 'earliest', 'latest' or a timezone-aware datetime, got {value!r}"
    )


def format_start(start: Start) -> str:
    return start.isoformat() if isinstance(start, datetime) else start


def parse_start(text: str) -> Start:
    """The stored form back (``format_start``'s output)."""
    if text in ("earliest", "latest"):
        return text  # type: ignore[return-value]
    return datetime.fromisoformat(text)


def choose(
    committed: Sequence[TopicPartition], found: Mapping[Key, int]
) -> tuple[list[TopicPartition], list[TopicPartition]]:
    """(what to assign, what to commit now): a partition the group committed resumes there
    (``OFFSET_INVALID`` asks librdkafka for the committed offset); another one starts at the
    offset ``found`` for it, which is also committed."""
    assign: list[TopicPartition] = []
    fresh: list[TopicPartition] = []
    for tp in committed:
        key = (tp.topic, tp.partition)
        if tp.offset >= 0 or key not in found:
            assign.append(TopicPartition(tp.topic, tp.partition, OFFSET_INVALID))
            continue
        position = TopicPartition(tp.topic, tp.partition, found[key])
        assign.append(position)
        fresh.append(position)
    return assign, fresh


def start_partitions(
    settings: Settings, consumer: Consumer, partitions: list[TopicPartition], start: Start
) -> list[TopicPartition]:
    """The ``on_assign`` hook: start the partitions the group never committed at ``start``.

    Assigns the partitions itself (``incremental_assign``: the lanes use the cooperative
    protocol) and commits the offsets chosen; returns them. Does nothing for ``earliest`` or
    when every partition has a committed offset (confluent-kafka then assigns them as they are).
    """
    if start == "earliest" or not partitions:
        return []
    committed = consumer.committed(partitions, timeout=settings.connect_timeout_s)
    missing = [tp for tp in committed if tp.offset < 0]
    if not missing:
        return []
    if isinstance(start, datetime):
        found = offsets_at(settings, missing, start)
    else:
        found = end_offsets(settings, missing)
    assign, fresh = choose(committed, found)
    consumer.commit(offsets=fresh, asynchronous=False)
    consumer.incremental_assign(assign)
    return fresh


def offsets_at(
    settings: Settings, partitions: Sequence[TopicPartition], at: datetime
) -> dict[Key, int]:
    """The first offset at or after ``at`` per partition (the end where no record is that
    recent). Needs a broker whose ListOffsets by timestamp works (not Tansu)."""
    reader = _reader(settings)
    try:
        ms = int(at.timestamp() * 1000)
        asked = [TopicPartition(tp.topic, tp.partition, ms) for tp in partitions]
        answers = reader.offsets_for_times(asked, timeout=settings.connect_timeout_s)
    finally:
        reader.close()
    found = {(tp.topic, tp.partition): tp.offset for tp in answers if tp.offset >= 0}
    past_the_end = [tp for tp in partitions if (tp.topic, tp.partition) not in found]
    return found | (end_offsets(settings, past_the_end) if past_the_end else {})


def end_offsets(settings: Settings, partitions: Sequence[TopicPartition]) -> dict[Key, int]:
    """The end of each partition now: the high watermark, then reading on from it past records
    older than now (Tansu's watermark stops at the last batch's base offset)."""
    reader = _reader(settings)
    try:
        now_ms = time.time() * 1000
        ends: dict[Key, int] = {}
        for tp in partitions:
            _, high = reader.get_watermark_offsets(
                tp, timeout=settings.connect_timeout_s, cached=False
            )
            ends[(tp.topic, tp.partition)] = high
        reader.assign([TopicPartition(t, p, off) for (t, p), off in ends.items()])
        reading = set(ends)
        deadline = time.monotonic() + _TAIL_LIMIT_S
        quiet = _TAIL_FIRST_S  # a busy broker may answer the first fetch late: not the end
        while reading and time.monotonic() < deadline:
            msgs = reader.consume(500, timeout=quiet)
            if not msgs:
                break
            quiet = _TAIL_QUIET_S
            for msg in msgs:
                key = (msg.topic() or "", msg.partition() or 0)
                if msg.error() is not None or key not in reading:
                    continue
                if msg.timestamp()[1] >= now_ms:
                    reading.discard(key)  # published since we looked: the first new record
                else:
                    ends[key] = (msg.offset() or 0) + 1
        return ends
    finally:
        reader.close()


def _reader(settings: Settings) -> Consumer:
    """A consumer that assigns partitions and never joins its (unique) group."""
    return make_consumer(settings, f"supplybus-start-{uuid.uuid4().hex}")
