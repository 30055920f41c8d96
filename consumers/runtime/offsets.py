"""Which offsets a batch commits (pure): the next offset of each partition it read."""

from __future__ import annotations

from collections.abc import Sequence

from confluent_kafka import Message, TopicPartition


def commit_offsets(msgs: Sequence[Message]) -> list[TopicPartition]:
    """One TopicPartition per partition read: the offset after its last record.

    Messages carrying a consumer error have no position and are left out.
    """
    last: dict[tuple[str, int], int] = {}
    for msg in msgs:
        if msg.error() is None:
            key = (str(msg.topic()), int(msg.partition() or 0))
            last[key] = max(last.get(key, -1), int(msg.offset() or 0))
    return [TopicPartition(t, p, o + 1) for (t, p), o in sorted(last.items())]
